"""leam: Layer Embedding Activation Mapping — which parts of a person's face an FR model relies on."""

__version__ = "0.1.0"
