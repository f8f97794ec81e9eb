"""What LEAM costs next to a plain forward + backward of the default model, measured in one run.

On one fixed random batch of 150x150 images with fixed random 128-d references, at one thread count,
three jobs are timed, interleaved (the order rotates every repeat), and their medians compared:

  (a) leam      LEAM maps for the 9 default layers of ``dlib-resnet`` (one engine call)
  (b) train     forward, loss = sum(1 - cos(f(x), e)), ``loss.backward()`` with parameters requiring
                grad: the usual training-style backward (weight gradients included)
  (c) input     forward, the same loss, ``torch.autograd.grad`` to the input with parameters frozen

Target: time(leam) / time(train) <= 1.1, i.e. all nine per-layer maps cost no more than one
training-style forward + backward (LEAM needs no weight gradients; its extra work is nine
LayerCAM sums and upsamplings).

    python benchmarks/leam_vs_backward.py --batch 16 --repeats 10 --threads 2
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F
from _timing import measure  # benchmarks/_timing.py: scripts run as benchmarks/NAME.py
from torch import nn

from leam.maps.leam import LEAM
from leam.models import create_model

TARGET = 1.1


def one_minus_cos(embeddings: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(embeddings, reference, dim=1)).sum()


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    for p in net.parameters():
        p.requires_grad_(flag)
        p.grad = None


def jobs(net: nn.Module, layers: list[str], images: torch.Tensor, reference: torch.Tensor):
    """{name: (prepare, run)}: ``prepare`` sets the model up untimed, ``run`` is the timed work."""
    engine = LEAM(net, layers)

    def leam() -> None:
        engine(images, reference)

    def train() -> None:
        one_minus_cos(net(images), reference).backward()

    def to_input() -> None:
        x = images.detach().requires_grad_(True)
        torch.autograd.grad(one_minus_cos(net(x), reference), x)

    return {
        "leam": (lambda: set_requires_grad(net, True), leam),
        "train": (lambda: set_requires_grad(net, True), train),
        "input": (lambda: set_requires_grad(net, False), to_input),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16, help="images per call (default 16)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per job (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per job first (default 2)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = create_model("dlib-resnet")
    net, layers = model.net.eval(), list(model.spec.default_layers)
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 3, *model.spec.input_size, generator=gen) * 255
    reference = torch.randn(args.batch, model.spec.embedding_size, generator=gen)

    times = measure(jobs(net, layers, images, reference), args.repeats, args.warmup)
    median = {name: statistics.median(t) for name, t in times.items()}

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"{args.repeats} repeats (median) after {args.warmup} warm-up, model dlib-resnet, {len(layers)} layers"
    )
    labels = {
        "leam": "(a) leam: maps for the default layers",
        "train": "(b) forward + loss.backward(), params require grad",
        "input": "(c) forward + autograd.grad to the input, params frozen",
    }
    for name, label in labels.items():
        print(f"  {label:<58} {median[name] * 1e3:8.1f} ms  {args.batch / median[name]:7.1f} images/s")
    ratio_b, ratio_c = median["leam"] / median["train"], median["leam"] / median["input"]
    verdict = "met" if ratio_b <= TARGET else "NOT met"
    print(f"  time(leam) / time(b) = {ratio_b:.3f}   (target <= {TARGET}: {verdict})")
    print(f"  time(leam) / time(c) = {ratio_c:.3f}")


if __name__ == "__main__":
    main()
