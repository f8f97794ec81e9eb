"""LEAM maps: the engine, hooks, aggregation."""

from leam.maps.aggregate import AGGREGATIONS, aggregate_maps, minmax_normalize
from leam.maps.hooks import capture_activations, layer_shapes, resolve_layers
from leam.maps.leam import DIRECTIONS, LEAM, LeamResult, layer_map

__all__ = [
    "AGGREGATIONS",
    "DIRECTIONS",
    "LEAM",
    "LeamResult",
    "aggregate_maps",
    "capture_activations",
    "layer_map",
    "layer_shapes",
    "minmax_normalize",
    "resolve_layers",
]
