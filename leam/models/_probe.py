"""Running a user's model once before leam takes it: which layers give feature maps, and whether what it
returns is an embedding leam can explain.

``from_module`` runs two seeded noise images through the wrapped model, one alone and both as a batch, and
refuses (``ModelError``, one line naming the model) an output that is not a float (N, D) tensor with D ≥ 2,
that is NaN or Inf, that is the same for both images (it ignores its input), or that differs for an image alone
and in the batch (the batch's images mix). A model that fails on the batch, or gives one row for it, is run
image by image (a graph made for batch size 1). The batch's time per image is measured: over ``SLOW_SECONDS``
a ``SlowModelWarning`` says so (the CLI in one line): a model 15-70 times slower than the registered ones is
worth knowing of before a study, and any command stops on Ctrl-C (``KeyboardInterrupt`` passes through
every check here, hooks removed and the model's state restored).
"""

from __future__ import annotations

import time
import warnings

import torch
from torch import nn

from leam._finite import check_finite
from leam._torch_state import net_lock, preserved_state
from leam.errors import ModelError

PROBE_SEED = 0
SAME_EMBEDDING = 1e-6  # two images' embeddings closer than this (of the largest value) are the same
BATCH_TOLERANCE = 1e-3  # an image's embedding alone vs in a batch may differ by float rounding, not more
SLOW_SECONDS = 2.0  # per image and forward; the registered models take 0.03-0.15 s on one CPU thread


class SlowModelWarning(UserWarning):
    """A model takes more than ``SLOW_SECONDS`` per image: commands will be slow (the CLI says so in one line)."""


def probe(net: nn.Module, input_size: tuple[int, int], images: torch.Tensor | None = None,
          where: str = "the model") -> tuple[list[str], tuple[int, ...]]:
    """Run ``net`` once on one image (``images``, default zeros (1, 3, H, W)): the modules that output a new
    feature map (N, C, h, w) and run once, in the order they finish (a container that returns its last
    child's tensor is left out), and the output's shape."""
    layers, out = probe_run(net, torch.zeros(1, 3, *input_size) if images is None else images, where)
    return layers, tuple(out.shape)


def probe_run(net: nn.Module, images: torch.Tensor, where: str) -> tuple[list[str], torch.Tensor]:
    """``probe``'s layers and the output itself."""
    found: list[str] = []
    calls: dict[str, int] = {}
    seen: dict[int, torch.Tensor] = {}  # outputs kept alive so that their ids stay unique

    def hook_for(name: str):
        def hook(_m: nn.Module, _i: tuple, out: object) -> None:
            calls[name] = calls.get(name, 0) + 1
            if isinstance(out, torch.Tensor) and out.dim() == 4 and id(out) not in seen:
                seen[id(out)] = out
                found.append(name)

        return hook

    with net_lock(net):
        handles = [m.register_forward_hook(hook_for(n)) for n, m in net.named_modules() if n and n != "input_transform"]
        try:
            out = _run(net, images, where)
        finally:
            for h in handles:
                h.remove()
    return [n for n in found if calls[n] == 1], out


def _run(net: nn.Module, images: torch.Tensor, where: str = "the model") -> torch.Tensor:
    """``net(images)`` without gradients, in eval mode (restored after); any failure is a ``ModelError``
    (a ``KeyboardInterrupt`` passes through)."""
    try:
        with preserved_state(net), torch.no_grad():
            out = net(images)
    except Exception as exc:  # noqa: BLE001 - any failure of a user's model is reported as a ModelError
        raise ModelError(f"{where} fails on a {_shape(images)} input: {_one_line(exc)}") from None
    if not isinstance(out, torch.Tensor):
        raise ModelError(f"{where} returns {type(out).__name__}, expected an embedding tensor (N, D)")
    return out


def _shape(x: torch.Tensor) -> str:
    return "(" + ", ".join(map(str, x.shape)) + ")"


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line, at most ``limit`` characters (torch's messages can run to pages)."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def probe_images(input_size: tuple[int, int], seed: int = PROBE_SEED) -> torch.Tensor:
    """Two different seeded noise images (2, 3, H, W) with values in [0, 255], as leam feeds chips (not
    zeros: a model that prewhitens each image divides a blank one by its zero spread)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (2, 3, *input_size), generator=generator).float()


def batch_run(net: nn.Module, images: torch.Tensor, where: str) -> tuple[torch.Tensor, float]:
    """``net``'s output for the probe ``images`` in one batch and the seconds per image it took. A model that
    fails on the batch, or does not give one row per image, is run image by image from then on (a graph
    made for batch size 1 whose input does not say so), if that works; else the batch's result stands."""
    start, error = time.perf_counter(), None
    try:
        out = _run(net, images, where)
        if out.dim() and out.shape[0] == len(images):
            return out, (time.perf_counter() - start) / len(images)
    except ModelError as exc:
        error = exc
    if not net.one_at_a_time:
        net.one_at_a_time, start = True, time.perf_counter()
        try:
            alone = _run(net, images, where)
            return alone, (time.perf_counter() - start) / len(images)
        except ModelError:
            net.one_at_a_time = False
    if error is not None:
        raise error
    return out, (time.perf_counter() - start) / len(images)


def check_embeddings(one: torch.Tensor, two: torch.Tensor, where: str, label: str) -> None:
    """Refuse (``ModelError``, one line naming ``where``) what the model gave for the first probe image alone
    (``one``) and for both (``two``), unless it is a float embedding (N, D), D ≥ 2, finite, different for the
    two images and the same for an image alone as in a batch."""
    if one.dim() != 2 or tuple(two.shape) != (2, one.shape[1]):
        raise ModelError(f"{where} returns shapes {tuple(one.shape)} and {tuple(two.shape)} for 1 and 2 images, "
                         f"expected embeddings (N, D){_flatten_hint(two)}")
    if not two.is_floating_point():
        raise ModelError(f"{where} returns {str(two.dtype).removeprefix('torch.')} embeddings, expected floating "
                         "point (a whole-number output has no gradient for leam to follow)")
    if two.shape[1] < 2:
        raise ModelError(f"{where} returns embeddings of size 1 (N, 1): the cosine similarity of two single "
                         "numbers is always ±1; expected (N, D) with D ≥ 2")
    check_finite(two.float().cpu().numpy(), label, ["random image 1", "random image 2"])
    scale = float(two.abs().max())
    if float((two[0] - two[1]).abs().max()) <= SAME_EMBEDDING * scale:
        raise ModelError(f"{where} gives the same embedding for two different images: its output does not "
                         "depend on its input, so there is nothing to explain")
    if float((one[0] - two[0]).abs().max()) > BATCH_TOLERANCE * scale:
        raise ModelError(f"{where} gives an image another embedding in a batch of two than alone: each image's "
                         "embedding depends on the others (e.g. batch statistics); expected each embedded on its own")


def _flatten_hint(out: torch.Tensor) -> str:
    """A hint when dropping the size-1 dimensions of a (N, ..., D, ...) output would give (N, D)."""
    if out.dim() > 2 and sum(d != 1 for d in out.shape[1:]) == 1:
        return f" (a Flatten at its end would turn {tuple(out.shape)} into {(out.shape[0], out[0].numel())})"
    return ""


def warn_if_slow(where: str, seconds: float, device: torch.device) -> None:
    """A ``SlowModelWarning`` when one image takes more than ``SLOW_SECONDS`` (a forward without gradients)."""
    if seconds > SLOW_SECONDS:
        warnings.warn(SlowModelWarning(
            f"{where} takes {seconds:.1f} s per image on {device.type} (the registered models 0.03-0.15 s): "
            "an explanation needs about 3 times that, a study hundreds of forwards per photo; Ctrl-C stops any command"
        ), stacklevel=3)
