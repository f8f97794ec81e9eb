"""FaRL face parser (facer's ``farl/celebm/448`` TorchScript model), from a file the user supplies.

facer (FacePerceiver/facer) publishes FaRL's CelebAMask-HQ parser as a TorchScript file,
``face_parsing.farl.celebm.main_ema_181500_jit.pt``. leam never downloads it:
``create_parser("farl", weights=PATH)``. TorchScript is not pickle, but loading it still runs the
code stored in the file (its graph, with arbitrary TorchScript operations): load only files you
trust, e.g. the release file from facer's GitHub page.

The contract, as facer's ``FaRLFaceParser`` uses the file (read from facer's source):

- input: (N, 3, 448, 448) float RGB in [0, 1] (facer divides uint8 by 255; any normalisation is
  inside the TorchScript module);
- the crop: facer's celebm alignment, an oriented square from the eye centres and the mouth
  corners (the CelebA-HQ/FFHQ rule, see ``leam.parse._crop``) resampled to 448 x 448 with no
  tanh warp (``warp_factor=0``);
- output: a tuple whose first element is (N, 19, h, w) logits over the crop; facer discards the
  second element (not used here);
- classes, in logit order: background, neck, face, cloth, rr, lr, rb, lb, re, le, nose, imouth,
  llip, ulip, hair, eyeg, hat, earr, neck_l (facer's ``label_names``), mapped onto leam's names in
  ``FACER_CELEBM``.

Differences from facer, by design: leam finds the eyes and mouth corners with dlib's 68-point
model (facer uses RetinaFace's five points), samples the crop with leam's own bilinear warp (uint8,
anti-aliased for large faces), and takes the arg-max in the crop before carrying the labels to the
chip with the nearest neighbour (facer resamples the logits). Not verified without the real file:
that it accepts exactly this input and returns logits at 448 x 448 (smaller logit maps are
resized bilinearly), and the left/right sense of facer's names, which follows CelebAMask-HQ's
annotation. The tests use a TorchScript module built with the same contract: real quality needs
the real file.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from leam._finite import check_finite
from leam.errors import ModelError
from leam.face import AlignedFace
from leam.face.align import warp_to_chip
from leam.face.labels import CLASSES, LabelMap
from leam.models._files import existing_file
from leam.parse import register_parser
from leam.parse._crop import head_crop_warp, labels_to_chip

NAME = "farl"
WEIGHTS_FILE = "face_parsing.farl.celebm.main_ema_181500_jit.pt"
INPUT_SIZE = 448

# facer's celebm label names (logit order) -> leam's CelebAMask-HQ names.
FACER_CELEBM: tuple[tuple[str, str], ...] = (
    ("background", "background"), ("neck", "neck"), ("face", "skin"), ("cloth", "cloth"),
    ("rr", "r_ear"), ("lr", "l_ear"), ("rb", "r_brow"), ("lb", "l_brow"), ("re", "r_eye"),
    ("le", "l_eye"), ("nose", "nose"), ("imouth", "mouth"), ("llip", "l_lip"), ("ulip", "u_lip"),
    ("hair", "hair"), ("eyeg", "eye_g"), ("hat", "hat"), ("earr", "ear_r"), ("neck_l", "neck_l"),
)  # fmt: skip
TO_CLASSES = np.array([CLASSES.index(ours) for _, ours in FACER_CELEBM], dtype=np.uint8)


def load_farl(path: str | Path) -> torch.jit.ScriptModule:
    """facer's TorchScript parser at ``path``, on the CPU, in eval mode (runs the file's code)."""
    path = Path(path)
    if not path.is_file():
        if path.exists() or path.is_symlink():  # a folder, pipe or bad link: say which
            existing_file(path, "FaRL TorchScript file")
        raise ModelError(f"FaRL TorchScript file not found at {path}: supply {WEIGHTS_FILE} (facer)")
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated in favour of torch.export; facer ships it
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
            net = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # RuntimeError for anything that is not a TorchScript archive
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: cannot be loaded as a TorchScript module ({first})") from exc
    return net.eval()


class FaRLParser:
    """All 19 CelebAMask-HQ classes, predicted on facer's 448 x 448 celebm crop and carried to the chip."""

    name = NAME
    classes = tuple(ours for _, ours in FACER_CELEBM)

    def __init__(self, net: torch.nn.Module) -> None:
        self.net = net

    def predict(self, crop: np.ndarray, source: str = "the crop") -> np.ndarray:
        """(448, 448) uint8 labels (``CLASSES`` indices) of a (448, 448, 3) uint8 RGB crop."""
        if crop.shape != (INPUT_SIZE, INPUT_SIZE, 3) or crop.dtype != np.uint8:
            raise ValueError(f"expected a ({INPUT_SIZE}, {INPUT_SIZE}, 3) uint8 crop, got {crop.shape} {crop.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float().div(255.0)
        with torch.inference_mode():
            out = self.net(x[None])
        logits = out[0] if isinstance(out, (tuple, list)) else None
        if not isinstance(logits, torch.Tensor) or logits.ndim != 4 or logits.shape[:2] != (1, len(FACER_CELEBM)):
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(out).__name__
            raise ModelError(f"FaRL returned {got}; expected a tuple whose first element is (1, 19, h, w) logits")
        if logits.shape[2:] != (INPUT_SIZE, INPUT_SIZE):
            logits = F.interpolate(logits, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        check_finite(logits.numpy(), f"{self.name} parser", [source], what="face-parsing logits")
        return TO_CLASSES[logits[0].argmax(0).numpy()]

    def parse(self, photo: np.ndarray, face: AlignedFace) -> LabelMap:
        """The label map of ``face`` in its aligned frame."""
        crop = head_crop_warp(photo, face, INPUT_SIZE)
        labels = self.predict(warp_to_chip(photo, crop), face.source)
        return LabelMap(labels_to_chip(labels, crop, face.warp, face.photo_shape), self.classes, self.name)


@register_parser(NAME, f"FaRL (facer's farl/celebm/448 TorchScript), 19 CelebAMask-HQ classes; file: {WEIGHTS_FILE}")
def create(weights: str | Path | None = None) -> FaRLParser:
    if weights is None:
        raise ModelError(
            f"the farl parser needs facer's TorchScript file: supply {WEIGHTS_FILE} with weights=PATH; "
            "leam never downloads it"
        )
    return FaRLParser(load_farl(weights))
