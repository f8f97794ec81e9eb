"""Reading ``torch.save`` files without running their code, unless the user says they trust them.

A ``.pth`` file is a pickle: unpickled in full, it can run any code it holds. So leam reads them with
``torch.load(weights_only=True)`` (tensors and plain containers only): a file that needs anything
else, a whole pickled model or a payload hidden in a checkpoint, is refused before any of its code
runs. Inside ``with trust_pickles():`` (the CLI's ``--trust-model-file``, as torch's own
``torch.serialization.safe_globals`` is a context) files are unpickled in full: for files you made.

>>> with trust_pickles():                                   # doctest: +SKIP
...     model = load_model_file("whole_model.pth")
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import torch

from leam.errors import ModelError

_TRUSTED: ContextVar[bool] = ContextVar("leam_trust_pickles", default=False)


@contextmanager
def trust_pickles(trust: bool = True) -> Iterator[None]:
    """Within the block, ``load_torch_file`` unpickles files in full (``weights_only=False``) when
    ``trust``: any code a file holds runs."""
    token = _TRUSTED.set(trust)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def pickles_trusted() -> bool:
    return _TRUSTED.get()


def load_torch_file(path: Path) -> object:
    """``torch.load(path)`` on the CPU, weights only: a file that would unpickle anything but tensors
    and plain containers raises ``ModelError`` before any of its code runs. Inside ``trust_pickles()``
    the file is unpickled in full. A file that is not a ``torch.save`` archive raises ``ValueError``
    (or torch's own error, when trusted)."""
    if pickles_trusted():
        return torch.load(path, map_location="cpu", weights_only=False)
    if not zipfile.is_zipfile(path):  # torch's legacy (pre-1.6) format too: re-save it with a current torch
        raise ValueError("not a torch.save archive (zip) of PyTorch 1.6 or later")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"WeightsUnpickler error: ([^\n]*?)(?: Please use|\n|$)", str(exc))
        raise ModelError(
            f"{path}: refused to unpickle it: leam loads plain state dicts only (torch.load with "
            f"weights_only=True); save one with torch.save(model.state_dict(), path), or, for a file you "
            f"trust, pass --trust-model-file" + (f" ({found.group(1).strip()})" if found else "")
        ) from None
