"""Which model a command runs: a registered name, or a user's model file given a name of its own.

``--models dlib-resnet mine=path/to/model.onnx:arcface`` is parsed here, once, for every command that
takes several models (``leam study``, ``verify``, ``protect``, ``protect-eval``): ``NAME=PATH[:PRESET]``
(without a preset, as ``--model-file``: ``arcface``, or ``arcface-raw`` for an ONNX graph that
normalises its input). A file is loaded by ``load_model_file`` under its rules (ONNX external data
checked, pickles refused unless trusted, TorchScript converted), and a run folder keeps its
``file_record`` (path, size, SHA-256, preset) so that a resume can tell when the file changed.

>>> parse_model_arg("mine=/models/w600k_r50.onnx:arcface")          # doctest: +SKIP
ModelChoice(name='mine', path='/models/w600k_r50.onnx', preset='arcface')
>>> parse_model_arg("dlib-resnet")
ModelChoice(name='dlib-resnet', path=None, preset=None)
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from leam.errors import ModelError
from leam.models._files import existing_file
from leam.models._registry import FaceModel, create_model, list_models

SPEC = "NAME=PATH[:PRESET]"


@dataclass(frozen=True)
class ModelChoice:
    """A registered model (``path`` None) or the model file ``path`` under the name ``name``."""

    name: str
    path: str | None = None
    preset: str | None = None

    @property
    def is_file(self) -> bool:
        return self.path is not None

    def spelled(self) -> str:
        """As typed on the command line."""
        if self.path is None:
            return self.name
        return f"{self.name}={self.path}" + (f":{self.preset}" if self.preset else "")


def parse_model_arg(text: str) -> ModelChoice:
    """``NAME`` (registered; checked when loaded) or ``NAME=PATH[:PRESET]`` (a model file; the text after
    the last ``:`` is a preset when it holds no ``/``). The path is made absolute; the file and the preset
    are checked here, the name against the registry by ``parse_model_args``."""
    from leam.models.external import PRESETS

    name, sep, rest = text.partition("=")
    if not sep:
        return ModelChoice(text)
    head, colon, tail = rest.rpartition(":")
    path, preset = (head, tail) if colon and "/" not in tail else (rest, None)
    if not name or not path:
        raise ModelError(f"--models {text}: expected a registered name or {SPEC}, e.g. mine=model.onnx:arcface")
    if preset is not None and preset not in PRESETS:
        raise ModelError(f"--models {text}: unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    existing_file(path, f"--models {name}: model file")
    return ModelChoice(name, str(Path(path).resolve()), preset)


def parse_model_args(texts: Iterable[str | ModelChoice]) -> list[ModelChoice]:
    """Each of ``texts`` parsed (a ``ModelChoice`` kept); a file's name may be neither a registered model's
    nor given twice."""
    choices = [t if isinstance(t, ModelChoice) else parse_model_arg(t) for t in texts]
    names = [c.name for c in choices]
    for c in choices:
        if c.is_file and c.name in list_models():
            raise ModelError(f"--models {c.spelled()}: {c.name} is a registered model; give the file another name")
        if names.count(c.name) > 1:
            raise ModelError(f"--models: {c.name} given twice; give each model once, with a name of its own")
    return choices


def sha256_of(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_record(choice: ModelChoice) -> dict:
    """What a run folder keeps of a file model: its path, size, SHA-256 and preset (None: as decided)."""
    path = existing_file(choice.path, f"--models {choice.name}: model file")
    return {"path": str(path), "size": path.stat().st_size, "sha256": sha256_of(path), "preset": choice.preset}


def changed_files(stored: Mapping[str, dict], wanted: Mapping[str, dict]) -> str | None:
    """A line naming the first model whose file (same path) has other content now than ``stored`` records;
    None when none has."""
    for name, was in stored.items():
        now = wanted.get(name)
        if now and now.get("path") == was.get("path") and now.get("sha256") != was.get("sha256"):
            return (f"the file of model {name}, {was['path']}, changed since the run began (SHA-256 "
                    f"{str(was.get('sha256'))[:12]}… then, {str(now.get('sha256'))[:12]}… now); put the "
                    "original back to resume, or use another --out folder")
    return None


def load_model_choice(choice: ModelChoice | str, record: Mapping | None = None) -> FaceModel:
    """The model ``choice`` names: a registered model with its installed weights, or the file loaded by
    ``load_model_file`` under ``choice.name``. With ``record`` (``file_record``), a file whose SHA-256 is
    no longer the recorded one is refused before it is read."""
    choice = parse_model_arg(choice) if isinstance(choice, str) else choice
    if not choice.is_file:
        return create_model(choice.name)
    from leam.models.external import load_model_file

    if record is not None and sha256_of(existing_file(choice.path, "model file")) != record.get("sha256"):
        raise ModelError(changed_files({choice.name: dict(record)}, {choice.name: {
            "path": record.get("path"), "sha256": sha256_of(choice.path)}}))
    model = load_model_file(choice.path, choice.preset)
    return FaceModel(dataclasses.replace(model.spec, name=choice.name), model.net, model.weights_path, model.extra)


def choice_from_record(name: str, record: Mapping) -> ModelChoice:
    return ModelChoice(name, record["path"], record.get("preset"))

