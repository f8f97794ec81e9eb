"""leam's per-layer maps next to pytorch-grad-cam's, captum's and torchcam's LayerCAM, in one run.

Same model, batch, layers and threads for all. Run it in ``.venv-peers`` (``make bench-peers``; see
benchmarks/README.md).

Every job ends with what leam returns: one (N, H, W) map per layer at the input's size. Jobs:

  leam            ``LEAM(net, layers)(x, ref)``: all layers from one forward and one ``autograd.grad``
  gradcam-layer   pytorch-grad-cam ``LayerCAM``, one object per layer (one forward + backward per layer)
  gradcam-all     pytorch-grad-cam ``LayerCAM`` with all layers in one object: one forward + backward,
                  but it returns only its aggregate (the mean of per-layer maps, normalised again)
  captum-layercam captum ``LayerGradientXActivation`` over all layers, its ``multiply_gradient_acts``
                  overridden to ReLU(g) * A (captum has no LayerCAM); sum over channels, ReLU,
                  ``LayerAttribution.interpolate(..., "bilinear")``, min-max
  captum-gxa      captum ``LayerGradientXActivation`` as shipped: g * A, then the same sum, ReLU,
                  upsampling and min-max. Not LayerCAM (no ReLU on the gradient): timed, and its
                  distance from leam's maps printed, but not expected to agree
  torchcam        torchcam ``LayerCAM`` over all layers (``autograd.grad`` to the hooked outputs), its
                  low-resolution maps (normalised there) upsampled bilinearly and min-max normalised
  bare-train      forward, sum(1 - cos), ``loss.backward()`` with parameters requiring grad
  bare-input      forward, sum(1 - cos), ``autograd.grad`` to the input, parameters frozen

The peers target L = 1 - cos(f(x), e) per image (LayerCAM keeps ReLU(dT/dA) of its target T, leam's
default direction ReLU(dL/dA)), so T = 1 - cos is the same selection; the sign check prints both
pairings. Before timing, each peer's per-layer maps are min-max normalised once more (grad-cam and
torchcam normalise before upsampling, with an epsilon; bilinear upsampling is affine, so normalising
again gives exactly leam's normalisation) and compared with leam's: LayerCAM peers must agree within
1e-5. Then all jobs run interleaved, the order rotating every repeat; the fastest call of each job
(the least disturbed by other processes on a shared machine) and the median are compared.

    .venv-peers/bin/python benchmarks/peers.py --models dlib-resnet facenet --batch 16 --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _timing import measure  # benchmarks/_timing.py: scripts run as benchmarks/NAME.py
from torch import nn

from leam.maps.aggregate import minmax_normalize
from leam.maps.leam import LEAM
from leam.models import FaceModel, create_model

TOLERANCE = 1e-5
DEMO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lfw-demo"
Maps = dict[str, torch.Tensor]  # {layer: (N, H, W)}, or {"aggregate": ...} for grad-cam's aggregate


# ----------------------------------------------------------------------------------------- inputs

def face_batch(model: FaceModel, batch: int, data: Path | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """``batch`` aligned faces and, for each, the embedding of another photo of the person; random
    images and references when ``data`` is missing."""
    if data is None or not data.is_dir():
        gen = torch.Generator().manual_seed(0)
        images = torch.rand(batch, 3, *model.spec.input_size, generator=gen) * 255
        return images, torch.randn(batch, model.spec.embedding_size, generator=gen), "random images"
    from leam.errors import LeamError
    from leam.face import align_file

    chips, refs = [], []
    for person in sorted(p for p in data.iterdir() if p.is_dir()):
        faces = []
        for photo in sorted(person.iterdir()):
            try:
                faces.append(align_file(photo, model.spec.template, "largest").chip)
            except LeamError:
                continue
        if len(faces) < 2:
            continue
        reference = model.embed(faces[0])[0]
        for chip in faces[1:]:
            if len(chips) < batch:
                chips.append(chip)
                refs.append(reference)
        if len(chips) == batch:
            break
    if len(chips) < batch:
        raise SystemExit(f"{data}: only {len(chips)} faces with another photo of the person; lower --batch")
    images = model.chips_to_tensor(np.stack(chips))
    return images, torch.as_tensor(np.stack(refs)), f"{batch} faces of {data.name}, references: another photo"


def one_minus_cos(embeddings: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return 1 - F.cosine_similarity(embeddings, reference, dim=-1)


def upsampled(cams: list[torch.Tensor], size: tuple[int, int]) -> list[torch.Tensor]:
    return [F.interpolate(c.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1) for c in cams]


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)
        p.grad = None


# ------------------------------------------------------------------------------------------- peers

class GradCamTarget:
    """pytorch-grad-cam target: one image's output (D,) → 1 - cos (or cos) to its reference."""

    def __init__(self, reference: torch.Tensor, direction: str = "loss") -> None:
        self.reference, self.direction = reference, direction

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        cos = F.cosine_similarity(output, self.reference, dim=0)
        return 1 - cos if self.direction == "loss" else cos


def gradcam_layer(net, layers, x, ref, direction="loss") -> Maps:
    from pytorch_grad_cam import LayerCAM

    targets = [GradCamTarget(r, direction) for r in ref]
    out = {}
    for name in layers:
        with LayerCAM(net, [net.get_submodule(name)]) as cam:
            out[name] = torch.from_numpy(cam(input_tensor=x, targets=targets))
    return out


def gradcam_all(net, layers, x, ref) -> Maps:
    from pytorch_grad_cam import LayerCAM

    with LayerCAM(net, [net.get_submodule(n) for n in layers]) as cam:
        return {"aggregate": torch.from_numpy(cam(input_tensor=x, targets=[GradCamTarget(r) for r in ref]))}


def _captum(net, layers, x, ref, relu_gradient: bool) -> Maps:
    from captum.attr import LayerAttribution, LayerGradientXActivation

    class LayerCAMAttribution(LayerGradientXActivation):
        """captum's gradient × activation with LayerCAM's ReLU on the gradient."""

        def multiply_gradient_acts(self, gradients, evals):
            return tuple(F.relu(g) * a for g, a in zip(gradients, evals))

    cls = LayerCAMAttribution if relu_gradient else LayerGradientXActivation
    attribution = cls(lambda images, e: one_minus_cos(net(images), e), [net.get_submodule(n) for n in layers])
    attrs = attribution.attribute(x, additional_forward_args=(ref,))
    size = tuple(x.shape[-2:])
    cams = {name: F.relu(a.sum(1, keepdim=True)) for name, a in zip(layers, attrs)}
    return {n: minmax_normalize(LayerAttribution.interpolate(c, size, "bilinear").squeeze(1)) for n, c in cams.items()}


def captum_layercam(net, layers, x, ref) -> Maps:
    return _captum(net, layers, x, ref, relu_gradient=True)


def captum_gxa(net, layers, x, ref) -> Maps:
    return _captum(net, layers, x, ref, relu_gradient=False)


def torchcam_layercam(net, layers, x, ref) -> Maps:
    from torchcam.methods import LayerCAM

    with LayerCAM(net, list(layers), input_shape=tuple(x.shape[1:])) as cam:
        scores = one_minus_cos(net(x), ref).unsqueeze(1)  # (N, 1): one "class", our objective
        cams = cam(class_idx=0, scores=scores)
    return {name: minmax_normalize(m) for name, m in zip(layers, upsampled(cams, tuple(x.shape[-2:])))}


PEERS: dict[str, Callable[..., Maps]] = {
    "gradcam-layer": gradcam_layer,
    "gradcam-all": gradcam_all,
    "captum-layercam": captum_layercam,
    "captum-gxa": captum_gxa,
    "torchcam": torchcam_layercam,
}
LAYERCAM_PEERS = ("gradcam-layer", "captum-layercam", "torchcam")  # must agree with leam within TOLERANCE


def available_peers() -> tuple[dict[str, Callable[..., Maps]], dict[str, str]]:
    """The peers whose library imports, and why each other one is left out."""
    modules = {"gradcam-layer": "pytorch_grad_cam", "gradcam-all": "pytorch_grad_cam", "captum-layercam": "captum",
               "captum-gxa": "captum", "torchcam": "torchcam.methods"}
    found, missing = {}, {}
    for name, fn in PEERS.items():
        try:
            __import__(modules[name])
            found[name] = fn
        except ImportError as exc:
            missing[name] = f"{modules[name]} does not import ({exc})"
    return found, missing


# -------------------------------------------------------------------------------------- agreement

def max_difference(maps: Maps, want: Maps) -> float:
    """Largest |a - b| over images, pixels and layers, each map min-max normalised (again)."""
    return max(float((minmax_normalize(m.detach().double()) - minmax_normalize(want[k].double())).abs().max())
               for k, m in maps.items())


def sign_check(net, layers, x, ref) -> dict[tuple[str, str], float]:
    """grad-cam with target 1 - cos and cos vs leam's directions "loss" and "similarity"."""
    check = layers[len(layers) // 2 :][:2]
    out = {}
    for leam_direction in ("loss", "similarity"):
        want = LEAM(net, check, leam_direction)(x, ref).maps
        for target in ("loss", "similarity"):
            out[(leam_direction, target)] = max_difference(gradcam_layer(net, check, x, ref, target), want)
    return out


# ---------------------------------------------------------------------------------------- timing


def bench_model(name: str, args: argparse.Namespace, peers: dict[str, Callable[..., Maps]]) -> bool:
    model = create_model(name)
    net, layers = model.net.eval(), list(model.spec.default_layers)
    x, ref, source = face_batch(model, args.batch, None if args.random else Path(args.data))
    engine = LEAM(net, layers)
    print(f"\n== {name}: {len(layers)} layers ({', '.join(layers)}), input {tuple(x.shape)}, {source}")

    leam_result = engine(x, ref)
    want: Maps = dict(leam_result.maps)
    want["aggregate"] = leam_result.aggregate("mean")
    ok = True
    print(f"agreement with leam's maps (max |difference| after min-max; LayerCAM peers must be <= {TOLERANCE:g}):")
    for peer, fn in peers.items():
        diff = max_difference(fn(net, layers, x, ref), want)
        must = peer in LAYERCAM_PEERS
        verdict = ("agrees" if diff <= TOLERANCE else "DISAGREES") if must else "(another formula: not expected)"
        if peer == "gradcam-all":
            verdict = "(aggregate: grad-cam normalises each layer before upsampling, leam after)"
        ok &= diff <= TOLERANCE or not must
        print(f"  {peer:<16} {diff:.2e}  {verdict}")
    if "gradcam-layer" in peers:
        print("sign check, grad-cam target vs leam direction (max |difference|, 2 layers):")
        for (direction, target), diff in sign_check(net, layers, x, ref).items():
            label = "1 - cos" if target == "loss" else "cos"
            print(f"  leam --direction {direction:<10} vs grad-cam target {label:<7} {diff:.2e}")

    def with_grad(flag: bool) -> Callable[[], None]:
        return lambda: set_requires_grad(net, flag)

    def train() -> None:
        one_minus_cos(net(x), ref).sum().backward()

    def to_input() -> None:
        xi = x.detach().requires_grad_(True)
        torch.autograd.grad(one_minus_cos(net(xi), ref).sum(), xi)

    cases = {"leam": (with_grad(True), lambda: engine(x, ref))}
    cases |= {peer: (with_grad(True), lambda fn=fn: fn(net, layers, x, ref)) for peer, fn in peers.items()}
    cases |= {"bare-train": (with_grad(True), train), "bare-input": (with_grad(False), to_input)}
    times = measure(cases, args.repeats, args.warmup)
    set_requires_grad(net, True)
    best = {k: min(v) for k, v in times.items()}
    median = {k: statistics.median(v) for k, v in times.items()}

    print(f"timing: {args.repeats} repeats after {args.warmup} warm-up, interleaved; load average "
          f"{os.getloadavg()[0]:.1f} at the end. Fastest call (least disturbed by other processes) and median:")
    print(f"  {'job':<16} {'best ms':>9} {'images/s':>9} {'job / leam':>11} {'median ms':>10} {'job / leam':>11}")
    for k in times:
        print(f"  {k:<16} {best[k] * 1e3:9.1f} {args.batch / best[k]:9.1f} {best[k] / best['leam']:11.2f} "
              f"{median[k] * 1e3:10.1f} {median[k] / median['leam']:11.2f}")
    for peer, bound in (("gradcam-layer", 9.0), ("gradcam-all", 1.0), ("bare-train", 1 / 1.1)):
        if peer in best:
            label = "leam <= 1.1 x bare-train" if peer == "bare-train" else f"leam >= {bound:g} x {peer}"
            ratio, ratio_median = best[peer] / best["leam"], median[peer] / median["leam"]
            print(f"  target {label:<28} time({peer}) / time(leam) = {ratio:.2f} best, {ratio_median:.2f} median: "
                  f"{'met' if ratio >= bound else 'NOT met'} (best)")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["dlib-resnet"], help="registered models (default dlib-resnet)")
    parser.add_argument("--batch", type=int, default=16, help="images per call (default 16)")
    parser.add_argument("--repeats", type=int, default=11, help="timed calls per job (default 11)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per job first (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch (and OpenCV) threads (default 2)")
    parser.add_argument("--data", default=str(DEMO), help="faces, <identity>/<photos> (default: lfw-demo)")
    parser.add_argument("--random", action="store_true", help="random images and references instead of faces")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    try:
        import cv2

        cv2.setNumThreads(args.threads)
    except ImportError:
        pass
    peers, missing = available_peers()
    versions = {m: getattr(sys.modules.get(m), "__version__", "?") for m in ("captum", "torchcam")}
    try:
        from importlib.metadata import version

        versions["grad-cam"] = version("grad-cam")
    except Exception:  # noqa: BLE001 - only for the printout
        versions["grad-cam"] = "?"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}; peers: "
          + ", ".join(f"{k} {v}" for k, v in versions.items()))
    for peer, why in missing.items():
        print(f"  left out {peer}: {why}")
    ok = all([bench_model(name, args, peers) for name in args.models])
    if not ok:
        raise SystemExit("a LayerCAM peer disagrees with leam's maps (see above)")


if __name__ == "__main__":
    main()
