"""The explorer's pictures, as files under ``SITE/img/`` (pages link them; nothing is a data URI).

Chips (photos) are JPEG; maps are 8-bit palette PNGs whose palette is the colour scale at ``LEVELS`` steps
(3.3 kB for a 112-pixel map where an RGB PNG overlay takes 8–15 kB: at the scale of LFW the pictures are
most of the site). A page lays a map at half opacity over its chip, as ``leam.report.render.overlay`` blends
them. Pictures are written through a temporary file and a rename, without fsync: they are drawn again from
the run whenever the explorer's manifest does not list them as done.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from PIL import Image

from leam._io import TEMPORARY_PREFIX, TEMPORARY_SUFFIX, write_error
from leam.explore import maps
from leam.explore.jobs import Job, file_stem

LEVELS = 64  # colours of a map's palette
DIVERGING_LEVELS = 65  # odd: 0 is the middle colour
MAP_CMAP = "jet"  # as the report
DIFFERENCE_CMAP = "RdBu_r"  # red: the person's maps weigh the pixel more than the population's
JPEG_QUALITY = 88
CONSENSUS, FACE, DIFFERENCE = "consensus.png", "face.jpg", "difference.png"
PRIOR, SPECIFIC = "prior.png", "specific.png"  # the prior the specific map was found against, and that map
WHAT = ("photos", "consensus", "difference", "specific")  # the groups of a job's pictures, each drawn when it changed


def chip_file(job: Job, index: int) -> str:
    """The chip of photo ``index`` of ``job``, relative to the site."""
    return f"img/{job.key}/c{index}.jpg"


def map_file(job: Job, index: int, layer: int | None) -> str:
    """The map of photo ``index``: its aggregate (``layer`` None) or its ``layer``-th layer's."""
    return f"img/{job.key}/m{index}-{'a' if layer is None else layer}.png"


def person_file(job: Job, name: str) -> str:
    """One of ``CONSENSUS``, ``FACE``, ``DIFFERENCE``, ``PRIOR``, ``SPECIFIC`` of ``job``."""
    return f"img/{job.key}/{name}"


def population_files(model: str) -> tuple[str, str]:
    """(the population's mean map, its mean face) of ``model``, relative to the site."""
    stem = file_stem(model)
    return f"img/population/{stem}.png", f"img/population/{stem}-face.jpg"


def job_files(job: Job, layers: int, difference: bool = True, specific: bool = False) -> dict[str, list[str]]:
    """{group of ``WHAT``: the files it draws} for ``job`` with ``layers`` layers per photo (``difference``:
    whether the job has a population prior to differ from; ``specific``: whether the run's population unit
    holds the person's specific map)."""
    photos = [chip_file(job, i) for i in (*job.references, *job.explained)]
    for i in job.explained:
        photos += [map_file(job, i, None), *(map_file(job, i, k) for k in range(layers))]
    return {"photos": photos, "consensus": [person_file(job, CONSENSUS), person_file(job, FACE)],
            "difference": [person_file(job, DIFFERENCE)] if difference else [],
            "specific": [person_file(job, PRIOR), person_file(job, SPECIFIC)] if difference and specific else []}


def _palette(cmap: str, levels: int) -> list[int]:
    rgb = (colormaps[cmap](np.linspace(0.0, 1.0, levels))[:, :3] * 255).round().astype(np.uint8)
    return rgb.ravel().tolist()


def map_png(values: np.ndarray) -> bytes:
    """A map in [0, 1] (clipped) as a palette PNG of the ``MAP_CMAP`` scale."""
    index = (np.clip(np.nan_to_num(values.astype(np.float64)), 0.0, 1.0) * (LEVELS - 1)).round().astype(np.uint8)
    return _png(index, _palette(MAP_CMAP, LEVELS))


def difference_png(values: np.ndarray) -> bytes:
    """A difference in [-1, 1] as a palette PNG of the ``DIFFERENCE_CMAP`` scale (0: its middle colour)."""
    v = np.clip(np.nan_to_num(values.astype(np.float64)), -1.0, 1.0)
    index = ((v + 1.0) / 2.0 * (DIVERGING_LEVELS - 1)).round().astype(np.uint8)
    return _png(index, _palette(DIFFERENCE_CMAP, DIVERGING_LEVELS))


def _png(index: np.ndarray, palette: list[int]) -> bytes:
    im = Image.fromarray(index, "L")
    im.putpalette(palette)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def jpeg(rgb: np.ndarray) -> bytes:
    """An RGB picture (uint8, or floats in 0–255) as JPEG."""
    buf = io.BytesIO()
    Image.fromarray(np.clip(np.asarray(rgb, dtype=np.float64).round(), 0, 255).astype(np.uint8)).save(
        buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def save(site: Path, relative: str, data: bytes) -> None:
    """Write ``data`` to ``site/relative`` through a temporary file and a rename (never half-written); a failed
    write (disk full, file-size limit) is a ``LeamError`` naming the file and why."""
    path = site / relative
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMPORARY_PREFIX, suffix=TEMPORARY_SUFFIX)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise


def draw_job(site: Path, arrays, job: Job, layers: list[str], own: maps.Sums, consensus: np.ndarray,
             prior: np.ndarray | None, what: set[str], specific: np.ndarray | None = None) -> int:
    """Draw the groups ``what`` (of ``WHAT``) of ``job``'s pictures from its unit's ``arrays``; returns how many
    files were written. A missing prior leaves the difference undrawn, a missing ``specific`` map (the
    population unit's) the prior and specific pictures."""
    files = job_files(job, len(layers), prior is not None, specific is not None)
    written = 0
    if "photos" in what:
        for i in (*job.references, *job.explained):
            save(site, chip_file(job, i), jpeg(arrays[f"{i}/chip"]))
            written += 1
        for i in job.explained:
            save(site, map_file(job, i, None), map_png(arrays[f"{i}/aggregate"]))
            for k, layer in enumerate(layers):
                save(site, map_file(job, i, k), map_png(arrays[f"{i}/{layer}"]))
            written += 1 + len(layers)
    if "consensus" in what:
        save(site, files["consensus"][0], map_png(maps.normalised(consensus)))
        save(site, files["consensus"][1], jpeg(own.chips / own.count))
        written += 2
    if "difference" in what and files["difference"]:
        save(site, files["difference"][0], difference_png(maps.difference(consensus, prior)))
        written += 1
    if "specific" in what and files["specific"]:
        save(site, files["specific"][0], map_png(maps.normalised(prior)))
        save(site, files["specific"][1], map_png(specific))
        written += 2
    return written


def draw_population(site: Path, model: str, total: maps.Sums) -> None:
    """The population's mean map (scaled to its own range) and mean face of ``model``."""
    map_path, face_path = population_files(model)
    save(site, map_path, map_png(maps.normalised(total.maps / total.count)))
    save(site, face_path, jpeg(total.chips / total.count))
