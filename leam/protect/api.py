"""``protect_files``: the plain function behind ``leam protect`` — protect one person's photos, write
them like the originals, and measure every written photo as an attacker would.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from leam._paths import check_outputs, claim_outputs, refuse_repeated_inputs, unique_names, write_file
from leam.data.images import load_image
from leam.errors import LeamError
from leam.face import detector_template, warp_to_photo
from leam.models import FaceModel, default_weights_path, list_models
from leam.models.choice import ModelChoice, load_model_choice, parse_model_args
from leam.protect.core import ProtectConfig, protect_photo
from leam.protect.evaluate import evaluate_photo, match_scores, visible_change
from leam.protect.mask import consensus_map, leam_aggregates
from leam.protect.methods import list_methods, method_spec
from leam.protect.person import PersonPhoto, embed_all, ensemble_name, load_photo, references_for
from leam.protect.save import encode_like, source_format
from leam.protect.summary import summarise_protection

MASKS = tuple(list_methods("mask"))  # as registered when leam loads (``list_methods`` for the current ones)
BASELINES = tuple(list_methods("baseline"))
REPORT_FILES = ("report.html", "results.csv", "summary.csv")  # ``write_protect_report``


@dataclass
class PhotoResult:
    """One input photo: the original and every written version's pixels (as decoded) and mask."""

    source: Path
    original: np.ndarray
    box: tuple[int, int, int, int]
    # method → (written path, pixels as decoded from it, the mask of pixels allowed to change)
    versions: dict[str, tuple[Path, np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass
class ProtectResult:
    ensemble: list[str]
    eval_models: list[str]
    budget: float
    mask: str
    config: ProtectConfig
    references: list[str]  # the reference photos, or "the other photos"
    rows: pd.DataFrame  # one row per photo x version x evaluating model (``leam.protect.summary``)
    photos: list[PhotoResult]
    thresholds: dict[str, str]

    @property
    def outputs(self) -> list[Path]:
        return [p.versions[self.mask][0] for p in self.photos]

    def summary(self) -> pd.DataFrame:
        return summarise_protection(self.rows)

    def lines(self) -> list[str]:
        """A short text summary: per model, match rate and cosine before → after for the main protection."""
        s = self.summary()
        s = s[s["method"] == self.mask]
        return [f"{r.model} ({'in the ensemble' if r.seen else 'not in the ensemble'}): match "
                f"{r.match_before:.0%} → {r.match:.0%}, cosine {r.cosine_before:.3f} → {r.cosine:.3f}, "
                f"SSIM {r.ssim:.3f}, PSNR {r.psnr:.1f} dB" for r in s.itertuples()]


def installed_models() -> list[str]:
    """Registered models whose weights are installed."""
    return [n for n in list_models() if default_weights_path(n) is not None]


def protect_files(
    images: Sequence[str | Path],
    models: Sequence[str | ModelChoice],
    out: str | Path,
    budget: float = 1.0,
    mask: str = "leam",
    references: Sequence[str | Path] | None = None,
    baselines: bool = False,
    eval_models: Sequence[str | ModelChoice] | None = None,
    face: str = "only",
    config: ProtectConfig | None = None,
    detector: str = "dlib",
) -> ProtectResult:
    """Protect ``images`` (one person's photos) against the ensemble ``models`` and write them to ``out``
    under their own names (baselines under ``out/baselines/<method>/``, the masks as ``out/masks/<name>.png``);
    evaluate every written file with ``eval_models`` (default: every installed registered model). A model is
    a registered name or a model file (``ModelChoice``, or ``NAME=PATH[:PRESET]`` as ``--models`` takes it);
    ``detector`` finds the faces (``leam.face.DETECTORS``)."""
    config = config or ProtectConfig()
    if mask not in list_methods("mask"):
        raise LeamError(f"expected --mask in {tuple(list_methods('mask'))}, got {mask!r}")
    if not 0 < budget <= 100:
        raise LeamError(f"--budget is a percentage of the face box in (0, 100], got {budget}")
    if not models:
        raise LeamError(f"expected one or more distinct models, got {list(models)}")
    chosen = _choices(models, eval_models or installed_models())
    models = [c.name for c in parse_model_args(models)]
    if not references and len(images) < 2:
        raise LeamError("give two or more photos of the person (each is protected against the others), "
                        "or --reference PHOTO")
    for path in images:
        source_format(path)
    inputs = {"photo to protect": list(images), "reference": list(references or [])}
    refuse_repeated_inputs(inputs)
    methods = [mask] + (list_methods("baseline") if baselines else [])
    names = output_names(images)
    out = Path(out)
    outputs = check_outputs(protect_outputs(out, names, methods[1:]), inputs)
    evaluators = list(chosen)
    loaded = {n: load_model_choice(c) for n, c in chosen.items()}
    ensemble = [loaded[n] for n in models]
    every = list(loaded.values())
    for m in every:  # a model the detector cannot align: refused before any photo is read
        detector_template(m.spec.template, detector)
    photos = [load_photo(p, every, face, detector) for p in images]
    emb = embed_all(every, photos)
    external = None
    if references:
        ref_photos = [load_photo(p, every, face, detector) for p in references]
        external = embed_all(every, ref_photos)
    refs = [references_for(i, emb, external) for i in range(len(photos))]
    for i, person in enumerate(photos):
        refuse_unrecognised(person.path, every, {n: e[i] for n, e in emb.items()}, refs[i], references is not None)
    maps = _maps(ensemble, photos, refs)
    consensus = _consensus(ensemble, photos, maps) if method_spec(mask).needs_consensus else [None] * len(photos)
    rows, results, files = [], [], {}
    with tempfile.TemporaryDirectory(prefix="leam-protect-") as scratch:  # every file made before any is written
        for i, person in enumerate(photos):
            base = {"identity": "", "image": str(person.path)}
            result = PhotoResult(person.path, person.photo, person.face.box)
            rows += [{**base, "ensemble": "", "method": "none", "budget": 0.0, "seen": False, **r}
                     for r in evaluate_photo(person.photo, person.face.box, every, refs[i], detector, str(person.path))]
            for p in protect_photo(person, ensemble, refs[i], maps[i], [budget], methods, config, consensus[i]):
                target = out / names[i] if p.method == mask else out / "baselines" / p.method / names[i]
                files[target] = encode_like(person.path, p.pixels, config.jpeg_quality)
                (trial := Path(scratch) / f"written{person.path.suffix}").write_bytes(files[target])
                saved = load_image(trial)  # the file as it will be written, decoded again
                result.versions[p.method] = (target, saved, p.mask)
                if p.method == mask:  # which pixels were allowed to change: white
                    files[out / "masks" / f"{names[i]}.png"] = _png(p.mask)
                info = {**base, "ensemble": ensemble_name(models), "method": p.method, "budget": p.budget,
                        "mask_pixels": int(p.mask.sum()), "epsilon": p.epsilon, "objective": p.objective,
                        **visible_change(person.photo, saved, person.face.box)}
                rows += [{**info, "seen": r["model"] in models, **r} for r in evaluate_photo(
                    saved, person.face.box, every, refs[i], detector, f"{target.name} ({p.method}, as written)")]
            results.append(result)
    claim_outputs(outputs)
    for target, data in files.items():
        write_file(target, data)
    thresholds = {m.spec.name: f"{m.spec.threshold_metric} {'>' if m.spec.threshold_metric == 'cosine' else '<'} "
                               f"{m.spec.threshold:g}" for m in every}
    return ProtectResult(list(models), evaluators, budget, mask, config,
                         [str(r) for r in references] if references else ["the other photos given"],
                         pd.DataFrame(rows), results, thresholds)


def refuse_unrecognised(path: Path, models: Sequence[FaceModel], embeddings: dict[str, np.ndarray],
                        references: dict[str, np.ndarray], given: bool) -> None:
    """Refuse (one line, the pairs each model verifies) a photo that no model matches with any of its
    references before protection: the references (or, without ``--reference``, the photo) are then another
    person's, or no model recognises the photo; either way protecting it against them would mean nothing
    (a match rate of 0 % → 0 %)."""
    counts = {m.spec.name: int(round(match_scores(m, embeddings[m.spec.name], references[m.spec.name])["match"]
                                     * len(references[m.spec.name]))) for m in models}
    if any(counts.values()):
        return
    pairs = ", ".join(f"{n} 0 of {len(references[n])}" for n in counts)
    why = ("they show another person, or no model recognises this photo; there is nothing to protect it from "
           "(give --reference photos of this person)" if given else "it shows another person than they do, or no "
           "model recognises it; there is nothing to protect it from (give photos of one person only)")
    raise LeamError(f"{path}: matches none of the {'--reference photos' if given else 'other photos given'} before "
                    f"protection ({pairs} pairs verified at the model's threshold): {why}")


def _choices(models: Sequence[str | ModelChoice], eval_models: Sequence[str | ModelChoice]) -> dict[str, ModelChoice]:
    """{name: choice} of the ensemble, then the evaluation models (a name in both names one model: a bare name
    in ``eval_models`` may name a file of ``models``)."""
    chosen = {c.name: c for c in parse_model_args(models)}
    for c in parse_model_args(eval_models):
        if chosen.setdefault(c.name, c) != c and c.is_file:
            raise LeamError(f"--eval-models {c.spelled()}: {c.name} is another model in --models; "
                            "give each model one name")
    return chosen


def _maps(ensemble: list[FaceModel], photos: list[PersonPhoto], refs: list[dict]) -> list[dict[str, np.ndarray]]:
    maps: list[dict[str, np.ndarray]] = [{} for _ in photos]
    for m in ensemble:
        name = m.spec.name
        agg = leam_aggregates(m, [p.aligned[name] for p in photos], np.stack([r[name].mean(0) for r in refs]))
        for i in range(len(photos)):
            maps[i][name] = agg[i]
    return maps


def _consensus(ensemble: list[FaceModel], photos: list[PersonPhoto], maps: list[dict]) -> list[np.ndarray]:
    """The person's consensus map (``consensus_map``, in the first model's frame) drawn onto each photo."""
    frame = ensemble[0].spec.name
    c = consensus_map(maps, [{m.spec.name: p.aligned[m.spec.name].warp for m in ensemble} for p in photos], frame)
    return [warp_to_photo(c, p.aligned[frame].warp, p.photo.shape[:2]) for p in photos]


def _png(mask: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    return buf.getvalue()


def output_names(images: Sequence[str | Path]) -> list[str]:
    """The photos' file names, unique by construction (``x/a.jpg``, ``y/a.jpg`` and ``z/a-2.jpg`` become
    ``a.jpg``, ``a-3.jpg`` and ``a-2.jpg``) and apart from the other outputs' names."""
    return unique_names([Path(p).name for p in images], reserved=[*REPORT_FILES, "masks", "baselines"])


def protect_outputs(out: Path, names: Sequence[str], baselines: Sequence[str]) -> list[Path]:
    """Every file ``leam protect`` writes: the protected photos, their masks (``masks/<name>.png``), the
    baselines' photos and the report's files."""
    files = [out / n for n in names] + [out / "masks" / f"{n}.png" for n in names]
    files += [out / "baselines" / m / n for m in baselines for n in names]
    return files + [out / f for f in REPORT_FILES]
