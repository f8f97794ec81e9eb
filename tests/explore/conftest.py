"""The explorer's tests run on the study tests' real small run (``tests.study.conftest.small_run``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from leam.explore import ExploreResult, explore
from tests.study.conftest import small_run  # noqa: F401  (the fixture, shared with the study tests)


@pytest.fixture(scope="session")
def site(small_run: Path, tmp_path_factory) -> ExploreResult:  # noqa: F811
    """The explorer of ``small_run``, written once (in one process)."""
    return explore(small_run, tmp_path_factory.mktemp("explore") / "site", workers=1)


def copy_run(run: Path, to: Path) -> Path:
    """A copy of ``run`` to change (the session's run stays as the study wrote it)."""
    shutil.copytree(run, to, symlinks=True)
    return to
