"""A study's settings: everything that decides its results, saved in ``run.json``."""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, field

from leam.errors import LeamError
from leam.face import DETECTORS
from leam.face.detect import FACE_CHOICES
from leam.maps import AGGREGATIONS, DEFAULT_AGGREGATION, DEFAULT_DIRECTION, DIRECTIONS
from leam.metrics.regions import DEFAULT_THRESHOLDS, check_thresholds
from leam.metrics.similarity import EMD_GRID
from leam.models.inference import FORWARDS

REFERENCES = ("baseline", "mean")
# The `leam study` option (or argument) that sets each setting; the others are set from Python only.
OPTIONS = {
    "data": "DATA", "models": "--models", "layers": "--layers", "reference": "--reference",
    "direction": "--direction", "aggregation": "--aggregate", "parser": "--parser", "thresholds": "--thresholds",
    "occlusion_percents": "--occlusion-percents", "occlusion_seeds": "--occlusion-seeds",
    "occlusion_layers": "--occlusion-layers", "pairs": "--pairs", "transfer": "--no-transfer", "face": "--face",
    "seed": "--seed", "model_files": "--models", "detector": "--detector", "faithfulness": "--faithfulness",
    "fills": "--fills", "faithfulness_identities": "--faithfulness-identities",
    "faithfulness_photos": "--faithfulness-photos", "forwards": "--forwards",
}
# Settings of the faithfulness phase only: a resume that changes them keeps every other unit (and adding
# --faithfulness to a finished run only adds that phase).
PHASE_SETTINGS = ("faithfulness", "fills", "faithfulness_identities", "faithfulness_photos")
FILLS = ("black", "mean", "blur", "inpaint")  # what deleted pixels show (leam.metrics.faithfulness)
DEFAULT_FILLS = ("black", "mean", "blur")


@dataclass(frozen=True)
class StudyConfig:
    """``reference``: "baseline" — each identity's first photo (by name) is the reference of the others,
    as in the reference study; "mean" — each photo against the mean embedding of the identity's other
    photos (leave-one-out)."""

    data: str
    models: tuple[str, ...]
    layers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per model; default: its 9
    reference: str = "baseline"
    direction: str = DEFAULT_DIRECTION
    aggregation: str = DEFAULT_AGGREGATION
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
    detector: str = "dlib"  # of leam.face.DETECTORS; runs written before the choice were dlib's (the default)
    # the models of ``models`` that are files: {name: leam.models.choice.file_record(...)}, path, size, SHA-256
    model_files: dict[str, dict] = field(default_factory=dict)
    # deletion/insertion curves (leam.study.faithfulness): of the first photo(s) of a seeded sample of identities
    faithfulness: bool = False
    fills: tuple[str, ...] = DEFAULT_FILLS
    faithfulness_identities: int = 50  # per model, among those with enough photos for a consensus map
    faithfulness_photos: int = 1  # explained photos per sampled identity
    # what computes the gradient-free forwards (occlusion, transfer, faithfulness curves): of
    # leam.models.inference.FORWARDS; runs written before the choice were torch's (the default here)
    forwards: str = "torch"

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
        object.__setattr__(self, "fills", tuple(self.fills))

    def check(self) -> None:
        """Refuse (``LeamError``, naming the option) settings that cannot make a study: values out of range,
        names given twice, layers of a model not studied. Needs no model; ``run_study`` checks the rest
        (models, their weights and layers, the parser) before it writes anything."""
        _one_of(self.reference, REFERENCES, "reference")
        _one_of(self.face, FACE_CHOICES, "face")
        _one_of(self.detector, DETECTORS, "detector")
        _one_of(self.forwards, FORWARDS, "forwards")
        _one_of(self.direction, DIRECTIONS, "direction")
        _one_of(self.aggregation, AGGREGATIONS, "aggregation")
        _once(self.models, "models")
        for model, record in self.model_files.items():
            if model not in self.models or not {"path", "sha256"} <= set(record):
                raise LeamError(f"model_files {model}: expected a file record (leam.models.choice.file_record) "
                                f"of one of the models {' '.join(self.models)}")
        for model, names in self.layers.items():
            if model not in self.models:
                raise LeamError(f"--layers {model}=...: {model} is not among --models {' '.join(self.models)}; "
                                "give layers only for the models studied")
            if not names or not all(names):
                raise LeamError(f"--layers {model}={','.join(names)}: expected one or more layer names, "
                                f"e.g. {model}=L1,L2 (`leam layers --model {model}` lists them)")
            _once(names, "layers", f" for {model}")
        check_thresholds(self.thresholds, OPTIONS["thresholds"])
        check_thresholds(self.occlusion_percents, OPTIONS["occlusion_percents"])
        if not self.pair_thresholds:
            raise LeamError("pair_thresholds: expected the full map (None) and/or top-p % thresholds in (0, 100]")
        top_p = [p for p in self.pair_thresholds if p is not None]
        if top_p:  # (None,) alone: full maps only
            check_thresholds(top_p, "pair_thresholds")
        if not self.occlusion_layers:
            raise LeamError("--occlusion-layers: expected one or more layer names, 'aggregate' or 'all'")
        _once(self.occlusion_layers, "occlusion_layers")
        _at_least(self.occlusion_seeds, 1, "occlusion_seeds")
        _at_least(self.pairs, 0, "pairs")
        _at_least(self.emd_grid, 2, "emd_grid")
        _at_least(self.seed, 0, "seed")
        if not self.fills:
            raise LeamError(f"--fills: expected one or more of {', '.join(FILLS)}")
        for fill in self.fills:
            _one_of(fill, FILLS, "fills")
        _once(self.fills, "fills")
        _at_least(self.faithfulness_identities, 1, "faithfulness_identities")
        _at_least(self.faithfulness_photos, 1, "faithfulness_photos")

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
        for key in ("models", "thresholds", "occlusion_percents", "pair_thresholds", "emd_layers", "occlusion_layers",
                    "fills"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


def _option(key: str) -> str:
    return OPTIONS.get(key, key)


def _one_of(value: str, choices: tuple[str, ...], key: str) -> None:
    if value not in choices:
        raise LeamError(f"{_option(key)}: expected one of {', '.join(choices)}, got {value!r}")


def _once(names: tuple[str, ...], key: str, where: str = "") -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise LeamError(f"{_option(key)}: {', '.join(twice)} given twice{where}; give each once")


def _at_least(value: int, low: int, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise LeamError(f"{_option(key)}: expected a whole number ≥ {low}, got {value!r}")


def differences(stored: dict, wanted: dict) -> list[str]:
    """What differs between two settings as ``to_dict`` gives them, spelled as ``leam study`` takes them:
    ``["--pairs 200, not 100"]`` (``stored``'s value first).

    >>> differences({"pairs": 200, "seed": 0}, {"pairs": 100, "seed": 0})
    ['--pairs 200, not 100']
    """
    out = []
    for key in dict.fromkeys([*stored, *wanted]):
        was, now = stored.get(key), wanted.get(key)
        if was == now:
            continue
        if key == "transfer":
            out.append("--no-transfer, not without it" if was is False else "without --no-transfer, not with it")
        elif key == "faithfulness":
            out.append("--faithfulness, not without it" if was else "without --faithfulness, not with it")
        else:
            out.append(f"{_option(key)} {_spelled(was)}, not {_spelled(now)}")
    return out


def _spelled(value) -> str:
    """A setting's value as it is typed: lists space-separated, layers as MODEL=L1,L2, numbers short."""
    if value is None:
        return "none"
    if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):  # model_files
        return " ".join(f"{k}={v.get('path')}" + (f":{v['preset']}" if v.get("preset") else "")
                        for k, v in value.items()) or "(no model file)"
    if isinstance(value, dict):
        return " ".join(f"{k}={','.join(v)}" for k, v in value.items()) or "(each model's default)"
    if isinstance(value, (list, tuple)):
        return " ".join(_spelled(v) if v is not None else "full" for v in value) or "(none)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
