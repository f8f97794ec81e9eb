"""A real small study shared by the study tests."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from leam.study.config import StudyConfig
from tests.conftest import SHARED_DATA

LFW_DEMO = SHARED_DATA / "lfw-demo"
HOSTILE = '<img src=x onerror=alert(1)> "Zoë"'
PEOPLE = {"Arnoldo_Aleman": ("Arnoldo_Aleman", "M"), HOSTILE: ("Angela_Bassett", "F")}


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """A two-model study over two people of lfw-demo (three photos each, linked; one of them in a folder
    named ``HOSTILE``, with an unreadable file besides), with a gender column in the manifest.
    About 6 s on two idle cores."""
    if not LFW_DEMO.is_dir():
        pytest.skip(f"shared test photos not found at {LFW_DEMO} (expected ../shared/data next to the repo)")
    from leam.study.config import StudyConfig
    from leam.study.run import run_study

    root = tmp_path_factory.mktemp("study")
    data = root / "data"
    (data / "extra").mkdir(parents=True)
    rows = []
    for identity, (folder, gender) in PEOPLE.items():
        photos = sorted(p.name for p in (LFW_DEMO / folder).iterdir())[:3]
        (data / identity).mkdir()
        for name in photos:  # only the photos the manifest lists: no file is left out
            (data / identity / name).symlink_to(LFW_DEMO / folder / name)
        rows += [{"path": f"{identity}/{name}", "identity": identity, "gender": gender} for name in photos]
    (data / "extra" / 'not a "photo".jpg').write_bytes(b"this is no JPEG")
    rows.append({"path": 'extra/not a "photo".jpg', "identity": HOSTILE, "gender": "F"})
    with (data / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["path", "identity", "gender"])
        writer.writeheader()
        writer.writerows(rows)
    config = StudyConfig(
        data=str(data), models=("dlib-resnet", "facenet"), face="largest",
        layers={"dlib-resnet": ("stage2.block1", "stage4.block2"), "facenet": ("block35.4", "mixed7a")},
        thresholds=(1, 10, 100), occlusion_percents=(1, 5), occlusion_seeds=1, pair_thresholds=(None, 1),
        pairs=6, emd_grid=15, occlusion_layers=("all",),
    )
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads stall each other when another process holds a core: 6 s became 60 s
    try:
        run_study(config, root / "run")
    finally:
        torch.set_num_threads(threads)
    return root / "run"


def linked_people(root: Path, people: int, photos: int = 3) -> Path:
    """``root`` holding the first ``people`` identities of lfw-demo with their first ``photos`` photos each
    (symlinks to the shared photos, nothing copied); skips the test when the photos are absent."""
    if not LFW_DEMO.is_dir():
        pytest.skip(f"shared photos not found at {LFW_DEMO}")
    for person in sorted(p for p in LFW_DEMO.iterdir() if p.is_dir())[:people]:
        (root / person.name).mkdir()
        for photo in sorted(person.iterdir())[:photos]:
            (root / person.name / photo.name).symlink_to(photo)
    return root


@pytest.fixture(scope="module")
def three_people(tmp_path_factory) -> Path:
    """Three identities of lfw-demo, three photos each."""
    return linked_people(tmp_path_factory.mktemp("data"), 3)


def quick_config(data: Path) -> StudyConfig:
    """A small, fast study of dlib-resnet over ``data``."""
    return StudyConfig(data=str(data), models=("dlib-resnet",), face="largest", pairs=6,
                       occlusion_seeds=2, occlusion_percents=(1, 5), thresholds=(1, 10, 100))


@pytest.fixture(scope="session")
def faithful_run(tmp_path_factory) -> Path:
    """A finished study of dlib-resnet with the faithfulness phase (black fill, two identities scored) over the
    first three people of lfw-demo, four photos each: the population unit holds their specific maps."""
    from dataclasses import replace

    import torch

    from leam.study.run import run_study

    data = linked_people(tmp_path_factory.mktemp("data"), 3, photos=4)
    out = tmp_path_factory.mktemp("faithful") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_study(replace(quick_config(data), faithfulness=True, fills=("black",), faithfulness_identities=2), out)
    finally:
        torch.set_num_threads(threads)
    return out
