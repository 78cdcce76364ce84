"""Seconds per epoch (train + held-out evaluation) for a preset's run, fp32 vs bf16 autocast.

    .venv/bin/python bench/epoch.py                    # smoke preset, run sgd_mix, 2 epochs each
    .venv/bin/python bench/epoch.py --params paper --run sgd_mix --epochs 1 --device cuda

Trains outside the run store (nothing is cached); prints a table and writes
bench/RESULTS-engine.md. Timing only: no assertions.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from pathlib import Path

import torch

from pspnet_core import data
from pspnet_core.config import load_params, resolve_run
from pspnet_core.data.loading import make_loader
from pspnet_core.model import build_model
from pspnet_core.train import engine
from pspnet_core.train.runtime import runtime_for

OUT = Path(__file__).with_name("RESULTS-engine.md")


def seconds_per_epoch(rc, runtime, epochs: int) -> list[dict[str, float]]:
    device = runtime.device
    train_ds, heldout_ds = data.build_datasets(rc)
    engine.seed_everything(rc.seed)
    model = build_model(rc.model, rc.num_classes).to(device)
    if rc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = engine.build_optimizer(model, rc)
    held = make_loader(heldout_ds, rc.eval_batch_size, train=False, seed=rc.seed)
    rows = []
    for epoch in range(1, epochs + 1):
        loader = make_loader(train_ds, rc.batch_size, train=True, seed=epoch)
        gen = torch.Generator().manual_seed(epoch) if rc.augment == "mix" else None
        t0 = time.perf_counter()
        out = engine.train_one_epoch(model, loader, opt, rc, runtime, epoch,
                                     mix_generator=gen)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        ev = engine.evaluate(model, held, rc, runtime)
        t2 = time.perf_counter()
        rows.append({"train_s": t1 - t0, "eval_s": t2 - t1, "loss": out["train_loss"],
                     "heldout": ev["loss"]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="smoke")
    ap.add_argument("--run", default="sgd_mix")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default=None)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    cfg = load_params(args.params)
    rc = resolve_run(cfg, args.run)
    runtime = runtime_for(cfg, args.device, quiet=True)
    device = runtime.device
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = platform.processor() or platform.machine()
    lines = [
        f"# Engine benchmark: seconds per epoch ({args.params} / {args.run})", "",
        f"`bench/epoch.py --params {args.params} --run {args.run} --epochs {args.epochs}`; "
        f"{len(data.build_datasets(rc)[0])} train / {rc.data.n_heldout} held-out images, "
        f"{rc.image_size} px, batch {rc.batch_size}; device {device} "
        f"({where}), torch {torch.__version__}, {torch.get_num_threads()} threads.",
        "Epoch 1 includes warm-up; 'steady' is the mean of the later epochs.", "",
        "| precision | train s per epoch | held-out eval s | steady epoch s | last train loss |",
        "|---|---|---|---|---|",
    ]
    for precision in ("fp32", "bf16"):
        r = dataclasses.replace(rc, precision=precision)
        rows = seconds_per_epoch(r, runtime, args.epochs)
        later = rows[1:] or rows
        steady = sum(x["train_s"] + x["eval_s"] for x in later) / len(later)
        train_s = ", ".join(f"{x['train_s']:.1f}" for x in rows)
        eval_s = ", ".join(f"{x['eval_s']:.1f}" for x in rows)
        lines.append(
            f"| {precision} | {train_s} | {eval_s} | {steady:.1f} | {rows[-1]['loss']:.3f} |"
        )
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        OUT.write_text(text)
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
