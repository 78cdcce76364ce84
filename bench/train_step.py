"""Training-step benchmark: forward + backward + SGD step of PSPNet with a frozen backbone.

fp32 vs bf16 autocast vs fp32 channels_last, at 97x97 and 193x193, batch 8, on the CPU.
Each configuration runs in its own subprocess so that its peak memory is its own:
``peak RSS`` is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of that process (the high-water
mark of resident memory: Python, torch, model, optimizer and the step's activations), and
``step peak - model`` subtracts the RSS measured after building the model and optimizer, i.e.
roughly what the training step itself needs. The step's FLOPs are counted once with
``torch.utils.flop_counter.FlopCounterMode``; ``% peak`` is the step's achieved FLOP rate over the
machine's own square-matmul peak in the same precision (``bench/machine.py``), measured in the
same run, so that numbers from different CPUs compare. Prints a markdown table; never asserts
on time.

    .venv/bin/python bench/train_step.py [--steps 3] [--batch 8] [--sizes 97 193]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
import warnings
from contextlib import nullcontext

import torch
from machine import describe, matmul_peak
from torch.utils.flop_counter import FlopCounterMode

MODES = ("fp32", "bf16", "channels_last")


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def one_config(mode: str, size: int, batch: int, steps: int) -> dict:
    from pspnet_core.losses import total_loss
    from pspnet_core.model import PSPNet

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # frozen random backbone: fine for timing
        model = PSPNet(num_classes=21, freeze_backbone=True).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, 21, (batch, size, size))
    if mode == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if mode == "bf16" else nullcontext()
    base = rss_mib()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast:
            out = model(x)
        total_loss(out, y).backward()
        opt.step()

    step()  # warm-up (allocator, oneDNN primitive cache)
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t0) / steps
    return {
        "mode": mode,
        "size": size,
        "batch": batch,
        "s_per_step": dt,
        "img_s": batch / dt,
        "peak_mib": rss_mib(),
        "model_mib": base,
        "gflop_s": flops / dt / 1e9,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--sizes", type=int, nargs="+", default=[97, 193])
    ap.add_argument("--one", nargs=2, metavar=("MODE", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_config(args.one[0], int(args.one[1]), args.batch, args.steps)))
        return

    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    print(
        f"{describe()}; {platform.machine()}; batch {args.batch}, {args.steps} timed steps "
        "after 1 warm-up, frozen backbone, SGD momentum 0.9\n"
        f"matmul peak (2048^2, this run): fp32 {peaks['fp32']:.0f} GFLOP/s, "
        f"bf16 {peaks['bf16']:.0f} GFLOP/s\n"
    )
    print("| input | mode | s/step | images/s | GFLOP/s | % of matmul peak | peak RSS MiB "
          "| step peak - model MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for mode in MODES:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                mode,
                str(size),
                "--batch",
                str(args.batch),
                "--steps",
                str(args.steps),
            ]
            r = json.loads(
                subprocess.run(cmd, check=True, capture_output=True, text=True)
                .stdout.strip()
                .splitlines()[-1]
            )
            peak = peaks["bf16" if mode == "bf16" else "fp32"]
            print(
                f"| {size}x{size} | {mode} | {r['s_per_step']:.2f} | {r['img_s']:.2f} | "
                f"{r['gflop_s']:.0f} | {100 * r['gflop_s'] / peak:.0f} % | "
                f"{r['peak_mib']:.0f} | {r['peak_mib'] - r['model_mib']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
