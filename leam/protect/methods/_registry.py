"""The protection methods' registry: one ``Method`` subclass per file, registered once by name.

A method says which pixels of a photo may change at a budget (``Method.pixels``) and, unless its
pixels' content is optimised with the other optimised methods' in one PGD batch (``MethodSpec.optimised``),
how it changes them (``Method.protect``). ``leam protect --mask`` offers the methods of role "mask",
``--baselines`` those of role "baseline", ``leam protect-eval --methods`` all; the report takes their
labels, colours and notes from here. Importing the registry loads neither torch nor a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from leam.protect.core import Scene

ROLES = ("mask", "baseline")


@dataclass(frozen=True)
class MethodSpec:
    name: str
    role: str  # "mask": a protection of its own (``leam protect --mask``); "baseline": to compare with
    optimised: bool  # its pixels' content found by projected gradient steps, batched with the others'
    label: str  # the report's legend
    colour: str  # the report's plots
    note: str  # the report's one-phrase description
    pixels_from: str | None = None  # another method whose pixels it changes (its own ``pixels`` unused)
    needs_consensus: bool = False  # needs the person's consensus map drawn onto the photo

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"expected a role in {ROLES}, got {self.role!r}")


@dataclass
class Protected:
    """One protected version of a photo: the method, the budget, the mask and the uint8 pixels."""

    method: str
    budget: float
    mask: np.ndarray  # (H, W) bool, the pixels allowed to change
    pixels: np.ndarray  # (H, W, 3) uint8
    objective: float  # the optimised objective over the ensemble (ProtectConfig.objective; NaN for black)
    epsilon: float


class Method:
    """One protection method (subclass it in a file of its own and decorate it with ``register_method``)."""

    spec: ClassVar[MethodSpec]

    def pixels(self, scene: Scene, count: int, rng: np.random.Generator) -> np.ndarray:
        """(H, W) bool: the ``count`` pixels of ``scene``'s photo this method changes."""
        raise NotImplementedError(f"method {self.spec.name!r} chooses no pixels of its own")

    def protect(self, scene: Scene, masks: Mapping[tuple[str, float], np.ndarray], budgets: Sequence[float],
                done: Sequence[Protected]) -> list[Protected]:
        """The versions of a method that is not optimised in the shared batch, one per budget; ``masks``:
        {(method, budget): pixels} of every method asked for, ``done``: the versions made so far."""
        raise NotImplementedError(f"method {self.spec.name!r} is optimised with the others")


_REGISTRY: dict[str, Method] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Register ``cls`` (a ``Method`` with a ``spec``) under its name; a name registered twice is refused."""
    name = cls.spec.name
    if name in _REGISTRY:
        raise ValueError(f"protection method {name!r} is already registered")
    if cls.spec.pixels_from is not None and cls.spec.pixels_from not in _REGISTRY:
        raise ValueError(f"method {name!r} takes the pixels of {cls.spec.pixels_from!r}, which is not registered")
    _REGISTRY[name] = cls()
    return cls


def list_methods(role: str | None = None) -> list[str]:
    """Names of the registered methods (of ``role``, "mask" or "baseline", when given), in registration order."""
    return [n for n, m in _REGISTRY.items() if role is None or m.spec.role == role]


def get_method(name: str) -> Method:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown protection method {name!r}; expected one of {list_methods()}") from None


def method_spec(name: str) -> MethodSpec:
    return get_method(name).spec
