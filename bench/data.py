"""Data-pipeline throughput: images/s of the ``affine`` preset (read JPEG + PNG, augment,
normalize, collate) at the paper's 473 and the smoke size 97, with 0 and 2 loader workers,
beside the training step's images/s (the loader must not be the bottleneck).

Source images are generated in a temporary folder at about VOC's size for 473 (~430 px sides)
and at the smoke size for 97 (~128 px). Prints a markdown table and writes it to
bench/RESULTS-data.md. Never asserts on time.

Also (first, a few seconds): reduced JPEG decoding of the leaf reader on a Kaggle-size
2160x1440 photo: ``LeafDataset.load_raw`` decoding whole vs with ``decode_size`` = twice the
input (``Image.draft``), for the smoke (81 px) and paper (473 px) inputs; ``--leaf-only`` stops
after that table.

    .venv/bin/python bench/data.py [--images 48] [--epochs 2] [--train-473] [--leaf-only]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pspnet_core.config import AugmentConfig, ModelConfig  # noqa: E402
from pspnet_core.data.augment import build_transform  # noqa: E402
from pspnet_core.data.leaf import LeafDataset, leaf_pairs  # noqa: E402
from pspnet_core.data.loading import (  # noqa: E402
    make_loader,
    open_rgb,
    read_image,
    read_mask,
)
from pspnet_core.data.synthetic import ensure_synthetic_voc  # noqa: E402
from pspnet_core.data.voc import VOCDataset, voc_pairs  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "RESULTS-data.md"


def leaf_decode_table(repeats: int = 15) -> str:
    """ms per ``load_raw`` of one 2160x1440 leaf JPEG (+ its PNG mask), whole vs reduced."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "leaf"
        (root / "images").mkdir(parents=True)
        (root / "masks").mkdir()
        w, h = 2160, 1440
        rng = np.random.default_rng(0)  # smooth gradients + mild noise (~330 KiB)
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 255 // (w + h))], -1)
        rgb = np.clip(base + rng.normal(0, 3, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(root / "images" / "leaf_big.jpg", quality=90)
        mask = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (h / 3) ** 2).astype(np.uint8) * 38
        Image.fromarray(mask, "L").save(root / "masks" / "leaf_big.png")
        kib = (root / "images" / "leaf_big.jpg").stat().st_size / 1024
        pairs = leaf_pairs(root)
        pair = pairs[0]

        def before(_index: int):  # the reader until now: whole decode, np.unique for the mask rule
            image = read_image(pair.image)
            mask = read_mask(pair.mask)
            np.unique(mask)
            return image, (mask > 0).astype(np.uint8)

        rows = [("before: whole decode, np.unique mask check", None, before)]
        for label, decode in (("now, smoke 81 px: decode_size 162", 162),
                              ("now, paper 473 px: decode_size 946", 946)):
            rows.append((label, decode, LeafDataset(pairs, None, decode_size=decode).load_raw))
        for _, _decode, fn in rows:
            fn(0)  # warm-up (file cache)
        total = [float("inf")] * len(rows)
        img = [float("inf")] * len(rows)
        for _ in range(repeats):  # interleaved, best kept: a shared machine is noisy
            for i, (_, decode, fn) in enumerate(rows):
                total[i] = min(total[i], best_ms(fn, 0, repeats=1))
                img[i] = min(img[i], best_ms(open_rgb, pair.image, decode, repeats=1))
        out = []
        for i, (label, _decode, fn) in enumerate(rows):
            image, _ = fn(0)
            out.append((label, image.shape[1], image.shape[0], img[i], total[i]))
    whole = out[0][4]
    lines = [
        f"Leaf reader on one 2160x1440 JPEG ({kib:.0f} KiB) + its 0/38 PNG mask, best of "
        f"{repeats} interleaved (the machine may be shared: small differences are noise).",
        "",
        "| reader | decoded WxH | image decode ms | load_raw ms (image + mask + checks) "
        "| speed-up |",
        "|---|---|---|---|---|",
    ]
    for label, dw, dh, img_ms, total in out:
        lines.append(f"| {label} | {dw}x{dh} | {img_ms:.1f} | {total:.1f} | "
                     f"{whole / total:.1f}x |")
    return "\n".join(lines) + "\n"


def best_ms(fn, *args, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


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
    ap.add_argument("--leaf-only", action="store_true",
                    help="only the leaf reader's reduced-decoding table")
    args = ap.parse_args()
    from machine import describe

    leaf = leaf_decode_table()
    print(f"{describe()}; {time.strftime('%Y-%m-%d')}\n\n{leaf}")
    if args.leaf_only:
        return
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
    lines += ["", leaf]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text)
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
