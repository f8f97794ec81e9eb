"""A study's settings: everything that decides its results, saved in ``run.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from leam.face.detect import FACE_CHOICES
from leam.metrics.regions import DEFAULT_THRESHOLDS
from leam.metrics.similarity import EMD_GRID

REFERENCES = ("baseline", "mean")


@dataclass(frozen=True)
class StudyConfig:
    """``reference``: "baseline" — each identity's first photo (by name) is the reference of the others,
    as in the reference study; "mean" — each photo against the mean embedding of the identity's other
    photos (leave-one-out)."""

    data: str
    models: tuple[str, ...]
    layers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per model; default: its 9
    reference: str = "baseline"
    direction: str = "loss"
    aggregation: str = "mean"
    parser: str = "landmarks"
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    occlusion_percents: tuple[float, ...] = (0.5, 1, 2, 5)
    occlusion_seeds: int = 5
    occlusion_layers: tuple[str, ...] = ("aggregate",)  # maps whose top pixels are occluded; "all": every one
    pair_thresholds: tuple[float | None, ...] = (None, 1, 5, 10)  # None: the full map
    pairs: int = 200  # same-identity pairs per model (and as many different-identity pairs)
    emd_grid: int = EMD_GRID
    emd_layers: tuple[str, ...] = ("aggregate",)
    transfer: bool = True
    face: str = "only"  # of several faces in a photo: "only" (record a failure), "largest" or "central"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.reference not in REFERENCES:
            raise ValueError(f"expected reference in {REFERENCES}, got {self.reference!r}")
        if self.face not in FACE_CHOICES:
            raise ValueError(f"expected face in {FACE_CHOICES}, got {self.face!r}")
        if not self.models:
            raise ValueError("expected at least one model")
        # one spelling for numbers, so a run started from Python and resumed from the CLI agree
        for key in ("thresholds", "occlusion_percents"):
            object.__setattr__(self, key, tuple(float(v) for v in getattr(self, key)))
        pair = tuple(None if v is None else float(v) for v in self.pair_thresholds)
        object.__setattr__(self, "pair_thresholds", pair)
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "occlusion_layers", tuple(self.occlusion_layers))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = {k: list(v) for k, v in self.layers.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> StudyConfig:
        d = dict(d)
        d["layers"] = {k: tuple(v) for k, v in d.get("layers", {}).items()}
        if "largest_face" in d:  # runs written before the face rule
            d.setdefault("face", "largest" if d.pop("largest_face") else "only")
        for key in ("models", "thresholds", "occlusion_percents", "pair_thresholds", "emd_layers", "occlusion_layers"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)
