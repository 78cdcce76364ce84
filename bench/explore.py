"""Explorer benchmark: seconds to a redrawn figure after a new selection (notebook 07).

For the first finished run of a preset (or ``--run``), times (a) the first load of a (run, seed,
split): ``analysis.predictions`` (read from the run folder's cache, or computed once) and the image
table, and then (b) each redraw the widgets do on a new selection, as PNG bytes: another image
of the table, another sort order, the curves of other runs, the leaf threshold slider. The goal
in issue 19 is under half a second per redraw on smoke after the first load. Trains nothing;
prints a markdown table; never asserts on time.

    .venv/bin/python bench/explore.py [--params smoke] [--run sgd_mix] [--split heldout]
"""

from __future__ import annotations

import argparse
import statistics
import time

from machine import describe

from pspnet_core.results import explore


def timed(fn, repeats: int = 1) -> float:
    """Median seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="smoke")
    ap.add_argument("--run", default=None, help="a finished run (default: the first one)")
    ap.add_argument("--split", default="heldout", choices=("heldout", "train"))
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
    rows = [("first load: predictions + table", timed(lambda: ex.table(run, seed, args.split)))]
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
        ex.probability(run, seed, args.split, indices[-1])  # loads the network once
        rows.append(("first class probability of an image (a forward pass)", timed(
            lambda: ex.probability(run, seed, args.split, indices[0]))))
        cls = iter(list(range(1, len(ex.names_palette(run)[0]))) * args.repeats)
        rows.append(("redraw: another class's probability", timed(lambda: explore.figure_png(
            ex.image_figure(run, seed, args.split, indices[0], class_index=next(cls))),
            args.repeats)))
    rows.append(("redraw: curves of the finished runs", timed(lambda: explore.figure_png(
        ex.curves_figure(ready[:3], list(ex.cfg.seeds))), args.repeats)))

    print(describe())
    print(f"explorer, preset {ex.cfg.name}, run {run} seed {seed}, {args.split} split "
          f"({len(table)} images); median of {args.repeats}\n")
    print("| step | seconds |\n|---|---|")
    for name, sec in rows:
        print(f"| {name} | {sec:.3f} |")


if __name__ == "__main__":
    main()
