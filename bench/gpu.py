"""GPU benchmark of the ``paper`` preset: what one GPU machine does, and what the study would take.

On a machine with CUDA it prints

1. the CPU and GPU models (with torch, CUDA and cuDNN versions);
2. images/s of one training step at 473 px, batch 8 (frozen backbone, bf16 autocast,
   channels_last: the preset's settings) for each network/task of the preset, with
   ``cudnn.benchmark`` off (what the engine runs) and on;
3. one ``paper``-preset epoch of ``sgd_mix`` (training + held-out evaluation, the preset's 8
   loader workers) on generated data at about VOC's size (500 px synthetic images, the preset's
   1400 training / 500 held-out images; ``--train-images`` to shrink), through ``engine.fit``
   with a random frozen backbone (no download; the timing is the same);
4. the projected wall time of ``make study PRESET=paper`` on this machine: every (run, seed) for
   its epochs, each epoch scaled from the measured one by its network's step time and its
   training-set size (the leaf set's size is an assumption, ``--leaf-train-images``); the
   notebooks' own work after training (figures, galleries) is not included.

On a machine without CUDA it says that it needs a GPU and exits 0.

    .venv/bin/python bench/gpu.py [--steps 20] [--train-images 1400] [--heldout-images 500]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from machine import describe

from pspnet_core import data
from pspnet_core.config import RunConfig, load_params, resolve_run
from pspnet_core.losses import main_and_total
from pspnet_core.model import build_model
from pspnet_core.system.device import autocast
from pspnet_core.train import engine
from pspnet_core.train.grid import get_run


def gpu_line() -> str:
    p = torch.cuda.get_device_properties(0)
    return (f"{p.name}, {p.total_memory / 2**30:.0f} GiB, compute capability {p.major}.{p.minor},"
            f" {torch.cuda.device_count()} GPU(s); torch {torch.__version__}, CUDA "
            f"{torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")


def step_seconds(run_cfg: RunConfig, steps: int, benchmark: bool) -> float:
    """Seconds per training step (forward + backward + optimizer) of ``run_cfg``'s network at its
    image size, batch, precision and memory format, on random data."""
    torch.backends.cudnn.benchmark = benchmark
    dev = torch.device("cuda", 0)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a random frozen backbone: fine for timing
        model = build_model(dataclasses.replace(run_cfg.model, weights=None),
                            run_cfg.num_classes, arch=run_cfg.arch).to(dev).train()
    if run_cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = engine.build_optimizer(model, run_cfg)
    b, s = run_cfg.batch_size, run_cfg.image_size
    x = torch.randn(b, 3, s, s, device=dev)
    if run_cfg.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, max(2, run_cfg.num_classes), (b, s, s), device=dev)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(dev, run_cfg.precision):
            out = model(x, with_aux=True)
        _, total = main_and_total(out, y, run_cfg.model.aux_weight)
        total.backward()
        opt.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    torch.backends.cudnn.benchmark = False
    return (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--params", default="paper", help="preset (default paper)")
    p.add_argument("--steps", type=int, default=20, help="timed training steps per network")
    p.add_argument("--train-images", type=int, default=None,
                   help="training images of the measured epoch (default: the preset's)")
    p.add_argument("--heldout-images", type=int, default=None,
                   help="held-out images of the measured epoch (default: the preset's)")
    p.add_argument("--leaf-train-images", type=int, default=470,
                   help="training images assumed for the leaf runs in the projection "
                        "(default 470: 80%% of a ~588-image leaf set)")
    p.add_argument("--skip-epoch", action="store_true", help="only the step benchmark")
    args = p.parse_args(argv)

    print(f"CPU: {describe()}, {os.cpu_count()} cores, {platform.platform()}")
    if not torch.cuda.is_available():
        print("bench/gpu.py needs a CUDA GPU: torch.cuda.is_available() is False here, so "
              "nothing was measured. Run it on a GPU machine: .venv/bin/python bench/gpu.py")
        return 0
    print(f"GPU: {gpu_line()}")
    cfg = load_params(args.params, {"device": "cuda"})
    seed = cfg.seeds[0]
    run_cfgs = {name: resolve_run(cfg, name, seed) for name in cfg.runs}

    # ---- 1. the training step of each kind of network of the preset
    kinds: dict[tuple, list[str]] = {}
    for name, rc in run_cfgs.items():
        kinds.setdefault((rc.arch, rc.task, rc.num_classes, rc.image_size, rc.batch_size),
                         []).append(name)
    step_s: dict[tuple, float] = {}
    print(f"\n## Training step ({args.steps} steps after 3 warm-up; precision "
          f"{cfg.precision}, channels_last {cfg.channels_last}, frozen backbone "
          f"{cfg.model.freeze_backbone})\n")
    print("| network | task | px | batch | runs | images/s (cudnn.benchmark off: the engine) "
          "| images/s (benchmark on) | peak GPU memory |")
    print("|---|---|---|---|---|---|---|---|")
    for key, names in kinds.items():
        rc = run_cfgs[names[0]]
        torch.cuda.reset_peak_memory_stats()
        off = step_seconds(rc, args.steps, benchmark=False)
        on = step_seconds(rc, args.steps, benchmark=True)
        torch.cuda.empty_cache()
        step_s[key] = off
        mem = torch.cuda.max_memory_allocated() / 2**30
        print(f"| {rc.arch} | {rc.task} | {rc.image_size} | {rc.batch_size} | "
              f"{', '.join(names)} | {rc.batch_size / off:.1f} | {rc.batch_size / on:.1f} | "
              f"{mem:.1f} GiB |")
    if args.skip_epoch:
        return 0

    # ---- 2. one epoch of sgd_mix through engine.fit on generated data
    name = "sgd_mix" if "sgd_mix" in cfg.runs else next(iter(cfg.runs))
    n_train = args.train_images or cfg.data.n_train
    n_held = args.heldout_images or cfg.data.n_heldout
    with tempfile.TemporaryDirectory(prefix="pspnet-gpu-bench-") as tmp:
        over = {
            "device": "cuda", "quiet": True, "seeds": [seed], "runs_dir": str(Path(tmp, "runs")),
            "data.root": str(Path(tmp, "data")), "data.voc_source": "synthetic",
            "data.voc_root": "synthetic/voc", "data.synthetic_size": 500,
            "data.synthetic_voc_images": n_train + n_held, "data.n_train": n_train,
            "data.n_heldout": n_held, "model.weights": None, "train.epochs": 1,
        }
        ecfg = load_params(args.params, over)
        t0 = time.perf_counter()
        data.build_datasets(resolve_run(ecfg, name, seed))  # generate once, outside the timing
        gen = time.perf_counter() - t0
        t0 = time.perf_counter()
        run = get_run(ecfg, name, seed=seed)
        wall = time.perf_counter() - t0
        epoch_s = float(run.history["seconds"].iloc[0])
    print(f"\n## One epoch of {name} ({n_train} training / {n_held} held-out generated 500 px "
          f"images, {cfg.data.num_workers} loader workers)\n")
    print(f"epoch {epoch_s:.1f} s (training + held-out evaluation); engine.fit wall {wall:.1f} s "
          f"(model build, loaders, checkpoint); data generation {gen:.1f} s, not counted")
    ref = run_cfgs[name]
    ref_key = (ref.arch, ref.task, ref.num_classes, ref.image_size, ref.batch_size)
    per_image = epoch_s / n_train  # seconds of a training image, evaluation share included

    # ---- 3. the projected study
    total = 0.0
    print(f"\n## Projected `make study PRESET={args.params}` training on this machine "
          f"({len(cfg.seeds)} seeds)\n")
    print("| run | epochs | training images | epoch s | run s (all seeds) |")
    print("|---|---|---|---|---|")
    for rn, rc in run_cfgs.items():
        key = (rc.arch, rc.task, rc.num_classes, rc.image_size, rc.batch_size)
        images = args.leaf_train_images if rc.task == "leaf" else cfg.data.n_train
        e = per_image * images * step_s[key] / step_s[ref_key]
        s = e * rc.epochs * len(cfg.seeds)
        total += s
        print(f"| {rn} | {rc.epochs} | {images} | {e:.1f} | {s:.0f} |")
    print(f"\nprojected: {total / 3600:.1f} h of training for {len(run_cfgs)} runs x "
          f"{len(cfg.seeds)} seeds on one GPU ({total / 3600 / len(run_cfgs) / len(cfg.seeds):.2f}"
          " h per job with `--launcher slurm`), plus the notebooks' figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
