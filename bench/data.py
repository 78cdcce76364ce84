"""Data-pipeline throughput: images/s of the ``affine`` preset (read JPEG + PNG, augment,
normalize, collate) at the paper's 473 and the smoke size 97, with 0 and 2 loader workers,
beside the training step's images/s (the loader must not be the bottleneck).

Source images are generated in a temporary folder at about VOC's size for 473 (~430 px sides)
and at the smoke size for 97 (~128 px). Prints a markdown table and writes it to
bench/RESULTS-data.md. Never asserts on time.

    .venv/bin/python bench/data.py [--images 48] [--epochs 2] [--train-473]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pspnet_core.config import AugmentConfig, ModelConfig  # noqa: E402
from pspnet_core.data.augment import build_transform  # noqa: E402
from pspnet_core.data.loading import make_loader  # noqa: E402
from pspnet_core.data.synthetic import ensure_synthetic_voc  # noqa: E402
from pspnet_core.data.voc import VOCDataset, voc_pairs  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS-data.md"


def loader_rate(root: Path, size: int, workers: int, n_images: int, epochs: int) -> float:
    ds = VOCDataset(voc_pairs(root)[:n_images], build_transform("affine", size, AugmentConfig()))
    loader = make_loader(ds, batch_size=8, train=True, seed=0, num_workers=workers)
    seen = 0
    start = time.perf_counter()
    for _ in range(epochs):  # worker start-up is counted: it is paid every epoch
        for x, _y in loader:
            seen += x.shape[0]
    return seen / (time.perf_counter() - start)


def train_rate(size: int, device: str, batch: int = 8, steps: int = 3) -> str:
    """Images/s of one forward + backward + SGD step of PSPNet (random init)."""
    try:
        from pspnet_core.model import build_model
    except ImportError as err:  # the model lands in its own issue
        return f"n/a ({err})"
    model = build_model(ModelConfig(weights=None), 21).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 21, (batch, size, size), device=device)

    def step():
        main, aux = model(x, with_aux=True)
        loss = torch.nn.functional.cross_entropy(main, y, ignore_index=255)
        if aux is not None:
            loss = loss + 0.4 * torch.nn.functional.cross_entropy(aux, y, ignore_index=255)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return f"{batch * steps / (time.perf_counter() - start):.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=48, help="images per epoch")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-473", action="store_true",
                    help="also time the 473 training step on CPU (slow); always done on CUDA")
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, source in ((473, 430), (97, 128)):
            t0 = time.perf_counter()
            root = ensure_synthetic_voc(Path(tmp) / f"voc{source}", args.images, source, seed=0)
            gen = time.perf_counter() - t0
            rates = [loader_rate(root, size, w, args.images, args.epochs) for w in (0, 2)]
            if size == 473 and device == "cpu" and not args.train_473:
                train = "skipped on CPU (--train-473)"
            else:
                train = train_rate(size, device)
            rows.append((size, source, gen, *rates, train))
    lines = [
        f"# Data pipeline throughput ({time.strftime('%Y-%m-%d')})",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), training on {device}. "
        f"Affine preset, batch 8, {args.images} images x {args.epochs} epochs per cell "
        "(worker start-up included). Training step: PSPNet random init, batch 8, fwd+bwd+SGD.",
        "",
        "| input | source px | generate 1 set (s) | loader 0 workers (img/s) "
        "| loader 2 workers (img/s) | train step (img/s) |",
        "|---|---|---|---|---|---|",
    ]
    for size, source, gen, r0, r2, train in rows:
        lines.append(f"| {size} | ~{source} | {gen:.2f} | {r0:.1f} | {r2:.1f} | {train} |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text)
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
