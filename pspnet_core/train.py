"""Command line: train runs into the run store, or list them.

    python -m pspnet_core.train --params smoke --run sgd_mix      # every seed (or return if done)
    python -m pspnet_core.train --params smoke --run all          # every (run, seed) of the preset
    python -m pspnet_core.train --params smoke --run sgd_mix --seed 1   # one seed of the preset
    python -m pspnet_core.train --params smoke --list             # the run x seed grid
    python -m pspnet_core.train --params smoke --run sgd_mix --set train.epochs=2 --set seeds=[5]
    python -m pspnet_core.train --params smoke sgd_mix adam_mix   # run names also positional
    torchrun --nproc_per_node 2 -m pspnet_core.train --params paper sgd_mix   # DDP

Under torchrun give run names positionally: torchrun's own parser rejects ``--run`` as an
ambiguous abbreviation of its ``--run-path``.

``--set key=value`` values are parsed as YAML (``2`` int, ``0.5`` float, ``true`` bool, ``null``).
Every run is trained once per seed of the preset's ``seeds`` (each in its own folder
``<run>-s<seed>-<hash>``), seed by seed: all runs of the first seed, then the next; ``--seed``
(repeatable) picks some of them. A finished run returns at once and prints where it is; an
interrupted one resumes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pspnet_core import engine, runs
from pspnet_core.config import ParamsError, load_params, parse_overrides, resolve_run
from pspnet_core.data.loading import DataError, DatasetNotFoundError
from pspnet_core.model import WeightsUnavailableError

# errors whose message already says what is wrong and what to do: printed without a traceback
USER_ERRORS: tuple[type[BaseException], ...] = (
    ParamsError, DataError, DatasetNotFoundError, WeightsUnavailableError,
    engine.NonFiniteLossError, runs.RunBusyError,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pspnet-train" if Path(sys.argv[0]).name == "pspnet-train"
        else "python -m pspnet_core.train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--params", default="smoke", help="preset name in params/ or a .yaml path")
    p.add_argument("--run", action="append", default=[],
                   help="run name (repeatable); 'all' trains every run of the preset")
    p.add_argument("names", nargs="*", metavar="RUN", help="run names (same as --run)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter, dotted key, YAML value (repeatable)")
    p.add_argument("--seed", action="append", type=int, default=[],
                   help="only this seed of the preset's seeds (repeatable; default: all)")
    p.add_argument("--list", action="store_true",
                   help="list the preset's run x seed grid and the status of each")
    p.add_argument("--device", default=None, help="override the preset's device (auto/cpu/cuda)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.run = [*args.run, *args.names]
    try:
        overrides = parse_overrides(args.set)
        if args.device:
            overrides["device"] = args.device
        if args.quiet:
            overrides["quiet"] = True
        cfg = load_params(args.params, overrides)
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    seeds = list(dict.fromkeys(args.seed)) or list(cfg.seeds)
    bad = [s for s in seeds if s not in cfg.seeds]
    if bad:
        print(f"error: --seed {bad[0]} is not one of the preset's seeds {list(cfg.seeds)}; "
              "add it with --set 'seeds=[...]'", file=sys.stderr)
        return 2
    if args.list:
        table = runs.list_runs(cfg)
        for row in table[table["seed"].isin(seeds)].itertuples():
            r = runs.open_run(resolve_run(cfg, row.run, row.seed))
            print(f"{row.run:<18} s{row.seed:<4} {r.describe():<26} {row.dir}")
        if not args.run:
            return 0
    if not args.run:
        print("error: give --run NAME (or --run all) or --list", file=sys.stderr)
        return 2
    names = list(cfg.runs) if "all" in args.run else args.run
    for name in names:
        try:
            resolve_run(cfg, name)
        except ParamsError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    rank0 = int(os.environ.get("RANK", "0")) == 0
    for seed, name in ((s, n) for s in seeds for n in names):  # the folder name shows the seed
        r = runs.open_run(resolve_run(cfg, name, seed))
        if r.done:
            if rank0:
                print(f"{name}: done, {r.dir}")
            continue
        try:
            engine.fit(r.run_cfg)
        except USER_ERRORS as err:  # a message that names the file/key and the remedy
            print(f"error: {name} (seed {seed}): {err}", file=sys.stderr)
            return 1
        if rank0:
            state = "done" if r.done else r.describe()
            print(f"{name}: {state}, {r.dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
