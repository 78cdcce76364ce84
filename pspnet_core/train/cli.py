"""Command line: train runs into the run store, or list them.

    python -m pspnet_core.train --params smoke --run sgd_mix      # every seed (or return if done)
    python -m pspnet_core.train --params smoke --run all          # every (run, seed) of the preset
    python -m pspnet_core.train --params smoke --run sgd_mix --seed 1   # one seed of the preset
    python -m pspnet_core.train --params smoke --list             # the run x seed grid
    python -m pspnet_core.train --params smoke --run sgd_mix --set train.epochs=2 --set seeds=[5]
    python -m pspnet_core.train --params smoke sgd_mix adam_mix   # run names also positional
    torchrun --nproc_per_node 2 -m pspnet_core.train --params paper sgd_mix   # DDP
    pspnet-train --params paper --run all --launcher slurm --partition gpu --time 6:00:00
    pspnet-train --params smoke --run all --launcher local --max-parallel 2

Under torchrun give run names positionally: torchrun's own parser rejects ``--run`` as an
ambiguous abbreviation of its ``--run-path``.

``--set key=value`` values are parsed as YAML (``2`` int, ``0.5`` float, ``true`` bool, ``null``).
Every run is trained once per seed of the preset's ``seeds`` (each in its own folder
``<run>-s<seed>-<hash>``), seed by seed: all runs of the first seed, then the next; ``--seed``
(repeatable) picks some of them. A finished run returns at once and prints where it is; an
interrupted one resumes.

``--launcher slurm`` submits one submitit job per (run, seed) not done yet (a SLURM job array)
and prints the job ids and the grid; ``--wait`` blocks until they end. ``--launcher local`` runs
the same jobs on this machine, ``--max-parallel`` at a time, and waits. ``--gpus-per-job N > 1``
trains each run with DDP over N GPUs of one node. See ``pspnet_core/train/launch.py``.

Errors (``pspnet_core/system/errors.py``): one line ``error: ...`` naming the file, key or value and
what to do; exit 2 for bad input (arguments, preset), 1 for a failed run (damaged or busy run
folder, bad data, full or read-only disk), 130 for Ctrl-C. ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
from pathlib import Path

from pspnet_core.config import ParamsError, load_params, parse_overrides, resolve_run
from pspnet_core.store import runs
from pspnet_core.store.studystate import OUTPUTS_ENV, index_state
from pspnet_core.system import errors, process
from pspnet_core.system.precision import resolve_precision
from pspnet_core.train import launch
from pspnet_core.train.grid import get_grid
from pspnet_core.train.runtime import runtime_for


def wall_minutes(text: str) -> int:
    """``--time`` in SLURM's syntax -> minutes (seconds rounded up): ``MM``, ``MM:SS``,
    ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``."""
    try:
        days, dash, rest = text.strip().partition("-")
        if not dash:
            days, rest = "0", text.strip()
        parts = [int(x) for x in rest.split(":")]
        if any(x < 0 for x in parts) or int(days) < 0:
            raise ValueError
        if dash:  # D-HH[:MM[:SS]]
            h, m, sec = (parts + [0, 0])[:3] if len(parts) <= 3 else (None, None, None)
        else:     # MM, MM:SS, HH:MM:SS
            h, m, sec = {1: (0, *parts, 0), 2: (0, *parts), 3: tuple(parts)}.get(
                len(parts), (None, None, None))
        if h is None:
            raise ValueError
        minutes = int(days) * 24 * 60 + h * 60 + m + (1 if sec else 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a SLURM time (MM, HH:MM:SS or D-HH:MM:SS)") from None
    if minutes < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: at least one minute")
    return minutes


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
    p.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"),
                   help="train on this device instead of the preset's `device:` setting")
    p.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    p.add_argument("--debug", action="store_true",
                   help="print the traceback of an error (default: one line)")
    g = p.add_argument_group(
        "scale-out (submitit)",
        "one job per (run, seed) not done yet; each trains through the run store, so a job "
        "killed mid-run resumes when the grid is submitted again")
    g.add_argument("--launcher", choices=launch.LAUNCHERS, default="none",
                   help="none: train here, one pair after another (default); slurm: submit a "
                        "SLURM job array; local: run the jobs on this machine with submitit's "
                        "LocalExecutor, --max-parallel at a time (always waits)")
    g.add_argument("--wait", action="store_true",
                   help="slurm: block until the jobs end and report each")
    g.add_argument("--partition", help="SLURM partition (default: the cluster's)")
    g.add_argument("--gpus-per-job", type=int, metavar="N",
                   help="GPUs per job (slurm default 1; local: 1 if CUDA else 0); N > 1 "
                        "trains each run with DDP, one process per GPU")
    g.add_argument("--procs-per-job", type=int, metavar="N",
                   help="DDP processes per job (default: --gpus-per-job, at least 1)")
    g.add_argument("--cpus-per-job", type=int, metavar="N", help="CPU cores per job (SLURM)")
    g.add_argument("--time", type=wall_minutes, default=24 * 60, metavar="LIMIT",
                   help="wall-time limit per job, SLURM syntax: MM, HH:MM:SS, D-HH:MM:SS "
                        "(default 24:00:00);"
                        " a job timed out on SLURM is requeued and resumes")
    g.add_argument("--mem", help="memory per job, SLURM syntax (e.g. 64G)")
    g.add_argument("--max-parallel", type=int, metavar="N",
                   help="jobs running at once (slurm: array limit, default none; local: "
                        "default GPUs / --gpus-per-job, or 1 without CUDA)")
    g.add_argument("--account", help="SLURM account")
    g.add_argument("--log-dir", help="submitit logs and pickles (default <runs_dir>/.submitit)")
    return p


JOB_FLAGS = ("wait", "partition", "gpus_per_job", "procs_per_job", "cpus_per_job", "mem",
             "max_parallel", "account", "log_dir")


def main(argv: list[str] | None = None) -> int:
    """The command line inside the error boundary (``errors.run_main``): every expected error
    is one line with exit code 2 (bad input), 1 (a failed run) or 130 (Ctrl-C)."""
    as_program = argv is None  # run as a program (not called by a test or a notebook)
    if as_program:
        process.freeze_imports()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if as_program and os.environ.get(OUTPUTS_ENV):
        _follow_study(Path(os.environ[OUTPUTS_ENV]))
    args.run = [*args.run, *args.names]
    return errors.run_main(lambda: _main(args), argv if not args.debug else [*argv, "--debug"])


def _follow_study(outputs_dir: Path) -> None:
    """As the study's child (``study.train_runs``): on SIGTERM, which the kernel sends when the
    study dies, mark the study's index interrupted, then stop like Ctrl-C (exit 130; the run
    store keeps the last saved epoch)."""
    parent = os.getppid()

    def stop(signum, frame):  # noqa: ANN001, ARG001 - a signal handler's signature
        if os.getppid() != parent:  # the study is gone: nobody else will say so
            index_state(outputs_dir)
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread
        pass


def _main(args: argparse.Namespace) -> int:
    """The command inside the boundary: every error is raised, :func:`errors.run_main` prints
    it as one line and maps it to the exit code (a run's own error is prefixed with the run)."""
    cfg = load_params(args.params, parse_overrides(args.set))
    if args.device:
        # the device decides what `precision: auto` resolves to (a hashed field), so the runs
        # resolved here, listed and trained, resolve against the device they train on
        cfg = dataclasses.replace(cfg, device=args.device)
    quiet = True if args.quiet else None  # --quiet, else the preset's `quiet:` setting
    seeds = list(dict.fromkeys(args.seed)) or list(cfg.seeds)
    bad = [s for s in seeds if s not in cfg.seeds]
    if bad:
        raise ParamsError(f"--seed {bad[0]} is not one of the preset's seeds {list(cfg.seeds)}; "
                          "add it with --set 'seeds=[...]'")
    chosen = resolve_precision(cfg.precision, cfg.device)
    if args.list:  # every run, a damaged one marked as such: one bad folder never hides the grid
        print(f"# preset {cfg.name!r}, precision {chosen.describe()}\n"
              f"# {'run':<16} {'seed':<5} {'status':<26} folder")
        table = runs.list_runs(cfg)
        for row in table[table["seed"].isin(seeds)].itertuples():
            state = errors.shorten(row.describe, 300)
            print(f"{row.run:<18} s{row.seed:<4} {state:<26} {row.dir}")
        if not args.run:
            return 0
    if not args.run:
        raise ParamsError("give --run NAME (or --run all) or --list")
    names = list(cfg.runs) if "all" in args.run else args.run
    for name in names:
        resolve_run(cfg, name)  # ParamsError naming the preset's runs
    if args.launcher != "none":
        opts = launch.JobOptions(
            partition=args.partition, gpus_per_job=args.gpus_per_job,
            procs_per_job=args.procs_per_job, cpus_per_job=args.cpus_per_job,
            time_min=args.time, mem=args.mem, max_parallel=args.max_parallel,
            account=args.account, log_dir=args.log_dir,
        )
        return launch.launch(cfg, names, seeds, args.launcher, opts, wait=args.wait,
                             quiet=quiet)
    given = [f for f in JOB_FLAGS if getattr(args, f) not in (None, False)]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise ParamsError(f"{flag} is a job option: add --launcher local or --launcher slurm")
    # this process's Runtime, built once (an unavailable device is bad input, exit 2, before
    # any run folder is touched)
    runtime = runtime_for(cfg, quiet=quiet)
    rank0 = runtime.rank == 0

    def log(line: str) -> None:
        if rank0:
            print(line, flush=True)

    def say_done(name: str, seed: int, r: runs.Run) -> None:
        status = r.status
        log(f"{name}: {status if status in runs.DONE_STATES else r.describe()}, {r.dir}")

    get_grid(cfg, names, seeds=seeds, log=log, on_run=say_done, runtime=runtime)
    return 0
