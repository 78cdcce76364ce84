"""Mixing + loss benchmark: our (labels_a, labels_b, lam) targets vs the paper's approach.

Ours: ``mixup``/``cutmix`` (vectorized) -> ``MixedTarget`` -> ``segmentation_loss``.
Paper: a per-sample Python loop that builds one-hot float maps (B, K, H, W), blends them
(Mixup) or pastes a box into them (CutMix), then ``-(q * log_softmax(logits)).sum() / q.sum()``.
Batch 16, K = 21, 473x473 by default. Timed: mixing + loss forward + backward to the logits.
"Target MiB" is the size of the target tensors the loss reads (``nbytes``). Prints a markdown
table; never asserts on time.

    .venv/bin/python bench/mixing.py [--batch 16] [--classes 21] [--size 473] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from pspnet_core.losses import MixedTarget, segmentation_loss
from pspnet_core.mixing import cutmix, mixup


def nbytes(target) -> int:
    parts = target if isinstance(target, MixedTarget) else (target,)
    return sum(t.numel() * t.element_size() for t in parts)


def paper_onehot(labels: torch.Tensor, k: int) -> torch.Tensor:
    """(H, W) -> (K, H, W) float, all-zero at 255 (the paper's eq. 2 target)."""
    q = torch.zeros(k + 1, *labels.shape)
    q.scatter_(0, torch.where(labels == 255, k, labels)[None], 1.0)
    return q[:k]


def paper_mix(images, labels, kind: str, k: int, g: torch.Generator):
    """The paper's snippet, per sample, over one-hot float maps (H/W the right way round)."""
    b, _, h, w = images.shape
    perm = torch.randperm(b, generator=g)
    onehot = torch.stack([paper_onehot(labels[i], k) for i in range(b)])  # (B, K, H, W)
    out_x, out_q = images.clone(), onehot.clone()
    for i in range(b):
        j = perm[i]
        if kind == "mixup":
            a = torch.rand((), generator=g).item()
            out_x[i] = a * images[i] + (1 - a) * images[j]
            out_q[i] = a * onehot[i] + (1 - a) * onehot[j]
        else:
            s = 1 - torch.rand((), generator=g).item()
            cy, cx = torch.rand((), generator=g).item() * h, torch.rand((), generator=g).item() * w
            y0, y1 = max(int(cy - s * h / 2), 0), min(int(cy + s * h / 2), h)
            x0, x1 = max(int(cx - s * w / 2), 0), min(int(cx + s * w / 2), w)
            out_x[i, :, y0:y1, x0:x1] = images[j, :, y0:y1, x0:x1]
            out_q[i, :, y0:y1, x0:x1] = onehot[j, :, y0:y1, x0:x1]
    return out_x, out_q


def paper_loss(logits, q):
    return -(q * F.log_softmax(logits, 1)).sum() / q.sum()


def run(method: str, kind: str, images, labels, logits, k: int, repeats: int):
    g = torch.Generator().manual_seed(0)
    times, size = [], 0
    for _ in range(repeats + 1):  # first one is warm-up
        x = logits.detach().clone().requires_grad_(True)
        t0 = time.perf_counter()
        if method == "ours":
            _, target, _ = (mixup if kind == "mixup" else cutmix)(images, labels, g)
            loss = segmentation_loss(x, target)
        else:
            _, target = paper_mix(images, labels, kind, k, g)
            loss = paper_loss(x, target)
        loss.backward()
        times.append(time.perf_counter() - t0)
        size = nbytes(target)
    return min(times[1:]), size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--classes", type=int, default=21)
    ap.add_argument("--size", type=int, default=473)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    b, k, s = args.batch, args.classes, args.size
    g = torch.Generator().manual_seed(0)
    images = torch.randn(b, 3, s, s, generator=g)
    labels = torch.randint(0, k, (b, s, s), generator=g)
    labels[torch.rand(b, s, s, generator=g) < 0.05] = 255
    logits = torch.randn(b, k, s, s, generator=g)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {b}, K={k}, "
        f"{s}x{s}, best of {args.repeats} after 1 warm-up; mixing + loss fwd + bwd\n"
    )
    print("| kind | method | ms/batch | images/s | target MiB |")
    print("|---|---|---|---|---|")
    for kind in ("mixup", "cutmix"):
        for method in ("ours", "paper"):
            dt, size = run(method, kind, images, labels, logits, k, args.repeats)
            print(
                f"| {kind} | {method} | {dt * 1e3:.0f} | {b / dt:.1f} | {size / 2**20:.1f} |",
                flush=True,
            )
    # same draws cannot be shared between the two implementations; check equal loss on one blend
    lam = torch.rand(b, generator=g)
    perm = torch.randperm(b, generator=g)
    oh = torch.stack([paper_onehot(labels[i], k) for i in range(b)])
    q = lam.view(-1, 1, 1, 1) * oh + (1 - lam.view(-1, 1, 1, 1)) * oh[perm]
    ours = segmentation_loss(logits, MixedTarget(labels, labels[perm], lam)).item()
    paper = paper_loss(logits, q).item()
    print(f"\nsame Mixup blend: ours {ours:.6f} vs paper eq. (3) {paper:.6f}")


if __name__ == "__main__":
    main()
