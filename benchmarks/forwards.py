"""What computes a study's gradient-free forwards fastest, and how far each choice's numbers are from PyTorch's.

For each model, on real aligned chips of ``../shared/data/lfw-demo`` (the first photo of ``--photos`` people),
the batches a study embeds: each chip's occlusion batch (``occlusion_drops`` with one seed, percents 0.5, 1, 2,
5 and a map: 12 chips, as in the README's study settings) and batches of 64 such chips (the faithfulness
curves' batch). Timed side by side, interleaved (the order rotating every repeat), CPU time of this
one-threaded process (``time.process_time``: steadier than the wall time on a shared machine), median over
the repeats after a warm-up round:

- ``torch``: ``FaceModel.embed``, what studies used (no_grad, the model's state saved and restored per call);
- ``torch inference_mode``: the bare net under ``torch.inference_mode``;
- ``torch channels_last``: the same with the net and input in channels-last memory format;
- ``torch bfloat16``: a bfloat16 copy of the net (the CPU has AVX512-BF16 here);
- ``onnxruntime``: ``leam.models.inference.OnnxEmbedder`` as a study uses it (one thread, PReLU rewritten,
  session runs of ``ONNX_BATCH`` = 4 chips); ``onnxruntime, batches of 32``: the same in runs of 32 chips;
- ``onnxruntime, PReLU kept``: the export without the PReLU rewrite, runs of 4 (models with PReLU only);
- ``openvino`` (only where ``import openvino`` works, an optional package leam does not require): the same
  ONNX bytes as ``onnxruntime`` (``inference.export_onnx``) compiled by OpenVINO for the CPU with
  ``OPENVINO_CONFIG`` (one thread, f32: on a CPU with AVX512-BF16 OpenVINO otherwise computes in bfloat16),
  runs of 4 chips; ``openvino, batches of 16``: runs of 16; ``openvino, static 4``: a model reshaped to a fixed
  batch of 4 (a short last run padded). Each compiled model's precision is checked: a layer computing in
  anything but f32 stops the benchmark.

Agreement with ``torch``: the largest embedding difference relative to the embedding's norm, and the largest
difference of the occlusion drops (cosine to the chip's own embedding, unoccluded minus occluded).

``units``: a study's own units in this one process, each twice in a row (the order alternating), with
``--forwards torch`` and ``onnxruntime``: the identity unit of every model for each of the first
``--identities`` people of lfw-demo (all their photos; align, embed, LEAM, parse, regions, occlusion), then
the transfer units over them, with the README's study settings (``--face central --occlusion-seeds 1``).
CPU per explained photo and model, how much of it the gradient-free forwards take, and the ratio; each
model's one-off ONNX export, session and check (paid once per process) is reported apart.

    python benchmarks/forwards.py batches                           # the five installed models, ~13 minutes
    python benchmarks/forwards.py batches --models dlib-resnet --repeats 5
    python benchmarks/forwards.py units --identities 6              # ~10 minutes
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import copy  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from leam.data.dataset import load_dataset  # noqa: E402
from leam.face import align_file  # noqa: E402
from leam.metrics.occlusion import cosine, occlusion_drops  # noqa: E402
from leam.models import create_model, default_weights_path, inference  # noqa: E402
from leam.parse import create_parser  # noqa: E402
from leam.study.config import StudyConfig  # noqa: E402
from leam.study.units import Unit, identity_unit, transfer_unit, unit_rng  # noqa: E402

DEMO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lfw-demo"
MODELS = ("dlib-resnet", "facenet", "facenet-keras", "arcface-mbf", "sface")
PERCENTS = (0.5, 1, 2, 5)


def study_batches(model, photos: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Each chip's occlusion batch (as ``occlusion_drops`` builds it: one seed, a map, random in the face
    region) with the chip first, and the chips' references (another photo's embedding is not needed: the
    chip's own embedding, so the drops are those of a self-reference)."""
    people = sorted(p for p in DEMO.iterdir() if p.is_dir())[:photos]
    chips = [align_file(sorted(p.glob("*.jpg"))[0], model.spec.template, largest_face=True).chip for p in people]
    batches, rng = [], np.random.default_rng(0)
    for chip in chips:
        seen: list[np.ndarray] = []
        values = rng.random(chip.shape[:2])
        with np.errstate(invalid="ignore"):  # the stand-in embeddings are zeros
            occlusion_drops(lambda x, seen=seen: seen.append(x) or np.zeros((len(x), 1)), chip, np.ones(1), values,
                            PERCENTS, seeds=1, face_region=np.ones(chip.shape[:2], bool), rng=rng, base=np.ones(1))
        batches.append(np.concatenate([chip[None], seen[0]]))
    return batches, np.stack(chips)


def torch_variants(model) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    net = model.net.eval()
    last = copy.deepcopy(net).to(memory_format=torch.channels_last)
    half = copy.deepcopy(net).to(torch.bfloat16)

    def bare(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(model.chips_to_tensor(x)).numpy()

    def channels_last(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return last(model.chips_to_tensor(x).contiguous(memory_format=torch.channels_last)).numpy()

    def bfloat16(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return half(model.chips_to_tensor(x).to(torch.bfloat16)).float().numpy()

    return {"torch": lambda x: model.embed(x, 64), "torch inference_mode": bare,
            "torch channels_last": channels_last, "torch bfloat16": bfloat16}


def onnx_variants(model) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    out = {"onnxruntime": inference.OnnxEmbedder(model, threads=1),  # as a study runs it: batches of ONNX_BATCH
           "onnxruntime, batches of 32": inference.OnnxEmbedder(model, threads=1, batch_size=32)}
    if not any("prelu" in type(m).__name__.lower() for m in model.net.modules()):
        return out
    rewrite = inference.decompose_prelu
    inference.decompose_prelu = lambda data: data  # the export as torch writes it
    try:
        kept = inference.onnx_session(inference.export_onnx(model), threads=1)
    finally:
        inference.decompose_prelu = rewrite
    name = kept.get_inputs()[0].name
    out["onnxruntime, PReLU kept"] = lambda x: np.concatenate(
        [kept.run(None, {name: b})[0] for b in np.split(model.chips_to_tensor(x).numpy(), range(4, len(x), 4))])
    return out


OPENVINO_CONFIG = {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}


def openvino_variants(model) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """OpenVINO's variants over ``inference.export_onnx``'s bytes; none (and one line said) without openvino."""
    try:
        import openvino
    except ImportError:
        print(f"  {model.spec.name}: openvino not installed, its variants skipped")
        return {}
    core, data, checked = openvino.Core(), inference.export_onnx(model), set()
    h, w = model.spec.input_size

    def runs(size: int, static: bool = False) -> Callable[[np.ndarray], np.ndarray]:
        net = core.read_model(data)
        if static:
            net.reshape([size, 3, h, w])
        compiled = core.compile_model(net, "CPU", OPENVINO_CONFIG)
        checked.add(f32_precisions(compiled))
        request = compiled.create_infer_request()

        def embed(x: np.ndarray) -> np.ndarray:
            t, out = model.chips_to_tensor(x).numpy(), []
            for i in range(0, len(t), size):
                b = np.ascontiguousarray(t[i : i + size])
                if static and len(b) < size:
                    b = np.concatenate([b, np.zeros((size - len(b), *b.shape[1:]), b.dtype)])
                out.append(request.infer({0: b})[0][: len(t) - i])  # outputs copied (share_outputs=False)
            return np.concatenate(out)
        return embed

    out = {"openvino": runs(4), "openvino, batches of 16": runs(16), "openvino, static 4": runs(4, static=True)}
    print(f"  {model.spec.name}: openvino in f32: {'; '.join(sorted(checked))}")
    return out


def f32_precisions(compiled) -> str:
    """What says that an OpenVINO compiled model computes in f32: its precision hint and the precisions its
    runtime model's layers compute in (``runtimePrecision``: f32 or integer types for every layer but constants,
    which compute nothing; bf16 and f16 nowhere); RuntimeError if not."""
    hint = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    infos = [op.get_rt_info() for op in compiled.get_runtime_model().get_ordered_ops()]
    kinds = {(i["layerType"].astype(str), i["runtimePrecision"].astype(str)) for i in infos}
    computed = {p for layer, p in kinds if layer != "Const"}
    halves = {"bf16", "f16"} & {p for _, p in kinds}
    if "float32" not in hint or computed - {"f32", "i32", "i64", "u8", "boolean"} or halves:
        raise RuntimeError(f"expected OpenVINO to compute in f32, got hint {hint} and layer precisions {sorted(kinds)}")
    return f"hint {hint}, {len(infos)} runtime layers, those not constant in {'/'.join(sorted(computed))}"


def timed(variants: dict[str, Callable], work: list[list[np.ndarray]], repeats: int) -> dict[str, list[float]]:
    """CPU seconds per image of each variant over ``work`` (lists of batches), interleaved."""
    names = list(variants)
    images = sum(len(b) for batches in work for b in batches)
    out: dict[str, list[float]] = {n: [] for n in names}
    for i in range(repeats + 1):  # the first round warms up (and builds the ONNX session)
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.process_time()
            for batches in work:
                for b in batches:
                    variants[name](b)
            if i:
                out[name].append((time.process_time() - start) / images)
    return out


def agreement(embed: Callable, reference: Callable, batches: list[np.ndarray]) -> tuple[float, float]:
    """(max |Δ embedding| / ‖embedding‖, max |Δ drop|) of ``embed`` against ``reference`` on the batches."""
    emb_error = drop_error = 0.0
    for b in batches:
        want, got = reference(b), embed(b)
        emb_error = max(emb_error, inference.parity_error(got, want))
        drops = [cosine(e[:1], e[0])[0] - cosine(e[1:], e[0]) for e in (want, got)]  # self-reference drops
        drop_error = max(drop_error, float(np.abs(drops[1] - drops[0]).max()))
    return emb_error, drop_error


def batches_bench(args: argparse.Namespace) -> None:
    print(f"gradient-free forwards, one thread, CPU ms per image (median of {args.repeats}); torch "
          f"{torch.__version__}, onnxruntime {_version('onnxruntime')}, openvino {_version('openvino')} "
          f"({OPENVINO_CONFIG}); load average {os.getloadavg()[0]:.1f}")
    for name in args.models:
        model = create_model(name)
        batches, chips = study_batches(model, args.photos)
        big = np.concatenate(batches)
        wide = [big[i : i + 64] for i in range(0, len(big) - 63, 64)]
        variants = {**torch_variants(model), **onnx_variants(model), **openvino_variants(model)}
        occl = timed(variants, [batches], args.repeats)
        batch64 = timed(variants, [wide], args.repeats) if wide else {}
        base_o, base_w = statistics.median(occl["torch"]), statistics.median(batch64.get("torch", [np.nan]))
        print(f"\n{name} ({model.spec.input_size[0]} px): {len(batches)} occlusion batches of {len(batches[0])}, "
              f"{len(wide)} batches of 64")
        print(f"  {'variant':<26} {'occl ms':>8} {'x torch':>7} {'b64 ms':>8} {'x torch':>7} {'emb err':>9} "
              f"{'drop err':>9}")
        for v, fn in variants.items():
            o = statistics.median(occl[v])
            w = statistics.median(batch64[v]) if batch64 else np.nan
            emb, drop = agreement(fn, variants["torch"], batches)
            print(f"  {v:<26} {o * 1e3:8.2f} {base_o / o:7.2f} {w * 1e3:8.2f} {base_w / w:7.2f} {emb:9.1e} {drop:9.1e}",
                  flush=True)


class _Arrays(dict):
    """A unit's arrays as ``transfer_unit`` reads a stored ``maps.npz`` (``files``, keys)."""

    @property
    def files(self) -> list[str]:
        return list(self)


def units_bench(args: argparse.Namespace) -> None:
    engines = ("torch", "onnxruntime")
    config = StudyConfig(data=str(DEMO), models=tuple(args.models), face="central", occlusion_seeds=1)
    people = list(load_dataset(DEMO).items())[: args.identities]
    parser = create_parser(config.parser)
    models = {m: create_model(m) for m in args.models}
    embeds, spent = {}, {}
    for name, model in models.items():  # the one-off: export, session, the parity check's PyTorch forward
        start = time.process_time()
        embeds[name] = {e: inference.gradient_free_embed(model, e, threads=1) for e in engines}
        embeds[name]["onnxruntime"](np.zeros((1, *model.spec.input_size, 3), np.uint8))
        spent[name] = time.process_time() - start
    print(f"units of a study in one process, one thread, {len(people)} identities of lfw-demo (after a warm-up round "
          f"on the first), each unit once per engine, the order alternating; load average {os.getloadavg()[0]:.1f}")
    cpu = {(m, k, e): 0.0 for m in models for k in ("identity", "transfer", "forwards") for e in engines}
    explained = dict.fromkeys(models, 0)

    def counted(name: str, engine: str):
        def embed(x: np.ndarray) -> np.ndarray:
            start = time.process_time()
            try:
                return embeds[name][engine](x)
            finally:
                cpu[(name, "forwards", engine)] += time.process_time() - start
        return embed

    for i, (identity, photos) in enumerate([people[0], *people]):  # the first: a warm-up round, not counted
        order, warm = (engines if i % 2 == 0 else engines[::-1]), i > 0
        sources, own = {}, {}
        for name, model in models.items():
            for e in order:
                start = time.process_time()
                tables, arrays = identity_unit(config, model, parser, photos,
                                               unit_rng(config, Unit("identity", name, identity)), counted(name, e))
                cpu[(name, "identity", e)] += (time.process_time() - start) * warm
            if len(tables["images"]):
                sources[name], own[name] = (tables["images"], _Arrays(arrays)), tables["occlusion"]
                explained[name] += int((tables["images"]["role"] == "explained").sum()) * warm
        for name, model in models.items():
            if name in sources and len(sources) > 1:
                for e in order:
                    start = time.process_time()
                    transfer_unit(config, model, identity, sources, own[name], counted(name, e))
                    cpu[(name, "transfer", e)] += (time.process_time() - start) * warm
        if not warm:
            cpu.update(dict.fromkeys(cpu, 0.0))  # the warm-up's forwards too
    print("\nCPU ms per explained photo; 'forwards': of the identity and transfer units; one-off: export + session "
          "+ check, once per process")
    print(f"{'model':<14} {'photos':>6} {'one-off s':>9} | {'identity':>17} {'x':>5} | {'transfer':>17} {'x':>5} | "
          f"{'forwards share':>14} | {'both':>17} {'x':>5}")
    total = dict.fromkeys(engines, 0.0)
    for name in models:
        n = max(explained[name], 1)
        per = {(k, e): cpu[(name, k, e)] / n * 1e3 for k in ("identity", "transfer", "forwards") for e in engines}
        both = {e: per[("identity", e)] + per[("transfer", e)] for e in engines}
        for e in engines:
            total[e] += both[e]
        share = "/".join(f"{per[('forwards', e)] / both[e]:.0%}" for e in engines)
        print(f"{name:<14} {explained[name]:6d} {spent[name]:9.1f} | "
              f"{per[('identity', 'torch')]:8.0f} {per[('identity', 'onnxruntime')]:8.0f} "
              f"{per[('identity', 'torch')] / per[('identity', 'onnxruntime')]:5.2f} | "
              f"{per[('transfer', 'torch')]:8.0f} {per[('transfer', 'onnxruntime')]:8.0f} "
              f"{per[('transfer', 'torch')] / max(per[('transfer', 'onnxruntime')], 1e-9):5.2f} | {share:>14} | "
              f"{both['torch']:8.0f} {both['onnxruntime']:8.0f} {both['torch'] / both['onnxruntime']:5.2f}")
    print(f"{'all (sum)':<14} {'':>6} {sum(spent.values()):9.1f} | {'':>23} | {'':>23} | {'':>14} | "
          f"{total['torch']:8.0f} {total['onnxruntime']:8.0f} {total['torch'] / total['onnxruntime']:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("batches", help="the study's batches by every variant, interleaved")
    p.add_argument("--photos", type=int, default=10, help="people of lfw-demo, one chip each (default 10)")
    p.add_argument("--repeats", type=int, default=3)
    p = sub.add_parser("units", help="identity and transfer units with torch and onnxruntime forwards")
    p.add_argument("--identities", type=int, default=6, help="the first N identities of lfw-demo (default 6)")
    for p in sub.choices.values():
        p.add_argument("--models", nargs="+", default=[m for m in MODELS if default_weights_path(m) is not None])
    args = parser.parse_args()
    torch.set_num_threads(1)
    {"batches": batches_bench, "units": units_bench}[args.what](args)


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    main()
