"""Explorer benchmark: the first load of a (run, seed, split) and each redraw (notebook 07).

For the first finished run of a preset (or ``--run``), times (a) the first load:
:func:`analysis.prediction_arrays` (the one inference loop the explorer's first load runs) of
``--images`` smoke-size images (the split's evaluation images repeated to that count; default
100, as issue 28 asks) and where its time goes (loading the network: building it and reading
the checkpoint; the forward passes at batch size 1, the preset's ``eval_batch_size`` and 16,
and with channels_last; the per-image scene complexity), and the split's own images; then (b)
each redraw the widgets do on a new selection, as PNG bytes: another image of the table, another
sort order, the curves of other runs, the leaf threshold slider. Trains nothing and writes
nothing (no prediction cache); prints the CPU, the load average and a markdown table; never
asserts on time.

    .venv/bin/python bench/explore.py [--params smoke] [--run sgd_mix] [--split heldout]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import torch
from machine import describe

from pspnet_core import data
from pspnet_core.metrics import scene_complexity
from pspnet_core.model import build_model
from pspnet_core.results import analysis, explore


def timed(fn, repeats: int = 1) -> float:
    """Median seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class Repeated:
    """The first ``n`` items of a dataset repeated cyclically (ids made unique)."""

    def __init__(self, ds, n: int) -> None:
        self.ds, self.n = ds, n
        self.transform = ds.transform  # analysis.loss_complexity sends masks through it
        base = list(getattr(ds, "ids", range(len(ds))))
        self.ids = [f"{base[i % len(ds)]}-{i // len(ds)}" for i in range(n)]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.ds[i % len(self.ds)]

    def load_raw(self, i: int):
        return self.ds.load_raw(i % len(self.ds))


def forward_seconds(model, images: torch.Tensor, batch: int, precision: str,
                    channels_last: bool = False) -> float:
    """Seconds of the main head's forward passes over ``images`` in batches of ``batch``."""
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(images), batch):
            analysis.predict(model, images[s:s + batch], precision, channels_last)
    return time.perf_counter() - t0


def first_load_rows(ex, run_name: str, seed: int, split: str, n: int) -> list[tuple[str, float]]:
    """Where a first load of ``n`` images spends its time, and the whole of it."""
    run = ex.run(run_name, seed)
    rc = run.run_cfg
    ds = Repeated(data.build_eval_dataset(rc, split), n)
    model_cfg = dataclasses.replace(rc.model, weights=None, freeze_backbone=False)
    rows = [("  build the network (random init)", timed(
                lambda: build_model(model_cfg, rc.num_classes, arch=rc.arch))),
            ("  read the checkpoint", timed(lambda: run.checkpoint(map_location="cpu")))]
    model = analysis.load_model(run, "cpu")
    images = torch.stack([ds[i][0] for i in range(n)])
    rows.append((f"  read and normalise {n} images", timed(lambda: [ds[i] for i in range(n)])))
    forward_seconds(model, images[:16], 16, rc.precision)  # warm
    few = images[:16]  # batch 1 is slow: timed on 16 images, scaled to n
    rows.append((f"  forward passes, batch 1 (16 timed, x {n / len(few):.2f})",
                 forward_seconds(model, few, 1, rc.precision) * n / len(few)))
    for b in sorted({rc.eval_batch_size, 16} - {1}):
        rows.append((f"  forward passes, batch {b}" + (" (eval_batch_size: what infer uses)"
                     if b == rc.eval_batch_size else ""),
                     forward_seconds(model, images, b, rc.precision)))
    cl = analysis.load_model(run, "cpu").to(memory_format=torch.channels_last)
    rows.append((f"  forward passes, batch {rc.eval_batch_size}, channels_last",
                 forward_seconds(cl, images, rc.eval_batch_size, rc.precision, True)))
    rows.append(("  scene complexity of every label", timed(
        lambda: [scene_complexity(ds.load_raw(i)[1]) for i in range(n)])))

    def after(dataset=None):  # what the explorer does: a fresh Explorer loads the network
        fresh = explore.Explorer(ex.cfg)
        return analysis.prediction_arrays(run, split, "cpu", dataset=dataset,
                                          get_model=lambda: fresh.model(run_name, seed))

    own = len(data.build_eval_dataset(rc, split))
    rows.insert(0, (f"first load: {n} images, network loaded, predictions + metrics",
                    timed(lambda: after(ds))))
    rows.insert(1, (f"first load of the split's own {own} images",
                    min(timed(after) for _ in range(2))))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="smoke")
    ap.add_argument("--run", default=None, help="a finished run (default: the first one)")
    ap.add_argument("--split", default="heldout", choices=("heldout", "train"))
    ap.add_argument("--images", type=int, default=100, help="images of the first load")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    ex = explore.explorer(args.params)
    ready = ex.ready_runs()
    if not ready:
        print(f"no finished run of preset {ex.cfg.name!r}: train one first "
              f"(pspnet-train --params {args.params} --run NAME)")
        return
    run = args.run if args.run in ready else ready[0]
    seed = ex.trained(run)[0]
    rows = first_load_rows(ex, run, seed, args.split, args.images)
    # what the explorer itself does (its cache in memory only: nothing written to the run)
    ex._pred[(run, seed, args.split)] = analysis.prediction_arrays(
        ex.run(run, seed), args.split, "cpu", get_model=lambda: ex.model(run, seed))
    table = ex.table(run, seed, args.split)
    indices = table["index"].tolist()[: max(2, args.repeats)]
    leaf = ex.task(run) == "leaf"

    def draw(index: int, threshold: float = 0.5) -> bytes:
        return explore.figure_png(ex.image_figure(run, seed, args.split, index,
                                                  threshold=threshold))

    draw(indices[0])  # the dataset is opened on the first draw
    it = iter(indices * args.repeats)
    rows.append(("redraw: another image", timed(lambda: draw(next(it)), args.repeats)))
    rows.append(("redraw: another sort order",
                 timed(lambda: explore.sort_table(table, "complexity"), args.repeats)))
    if leaf:
        thr = iter([0.3, 0.5, 0.7] * args.repeats)
        rows.append(("redraw: leaf threshold slider",
                     timed(lambda: draw(indices[0], next(thr)), args.repeats)))
    else:
        rows.append(("first class probability of an image (a forward pass)", timed(
            lambda: ex.probability(run, seed, args.split, indices[0]))))
        cls = iter(list(range(1, len(ex.names_palette(run)[0]))) * args.repeats)
        rows.append(("redraw: another class's probability", timed(lambda: explore.figure_png(
            ex.image_figure(run, seed, args.split, indices[0], class_index=next(cls))),
            args.repeats)))
    rows.append(("redraw: curves of the finished runs", timed(lambda: explore.figure_png(
        ex.curves_figure(ready[:3], list(ex.cfg.seeds))), args.repeats)))

    print(describe())
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"(times are inflated when it is above the core count)")
    print(f"explorer, preset {ex.cfg.name}, run {run} seed {seed}, {args.split} split "
          f"({len(table)} images; first load timed on {args.images}); redraws: median of "
          f"{args.repeats}\n")
    print("| step | seconds |\n|---|---|")
    for name, sec in rows:
        print(f"| {name} | {sec:.3f} |")


if __name__ == "__main__":
    main()
