"""The ``pspnet-study`` command: the batch rerun of the whole study.

    pspnet-study --params smoke                           # = python -m pspnet_core.study
    python -m pspnet_core.study --params paper --only 03 --only 05
    python -m pspnet_core.study --params path/to/my.yaml --only 01,02 --kernel python3
    python -m pspnet_core.study --params smoke --set train.epochs=2
    python -m pspnet_core.study --params smoke --only 04 --param run_name=sgd_none --param seed=1
    python -m pspnet_core.study --params smoke --status

Trains every (run, seed) the preset names that is not done (``pspnet-train --run all`` in a
child process), then executes every ``notebooks/NN_*.ipynb`` in filename order with papermill
(``03_learning_curves`` twice: ``optimizer="sgd"`` and ``"adam"``), exporting each to HTML.
Outputs, for preset name P: ``outputs/P/NN_topic[-variant].ipynb`` and ``.html``,
``outputs/P/study.json`` (the state) and ``outputs/P/index.html`` (rendered from it), and after
a finished study ``results.csv`` and ``reproduction.md``. Errors end in the one boundary
(:mod:`pspnet_core.system.errors`): one line, exit 2 bad input, 1 a failed notebook or run,
130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from pspnet_core.config import parse_overrides
from pspnet_core.store.studystate import index_state
from pspnet_core.study.execute import DEFAULT_KERNEL, run_study
from pspnet_core.study.plan import preset_of
from pspnet_core.study.storing import store_notebooks
from pspnet_core.system import errors, process
from pspnet_core.system.paths import resolve


class StudyFailedError(RuntimeError):
    """A notebook of the study failed (its message names the notebook and the cell)."""


def _terminal_log(line: str) -> None:
    """Print above papermill's progress bar (tqdm clears and redraws it)."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()


def _sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # run as a program (not called by a test)
        process.freeze_imports()
    prog = Path(sys.argv[0]).name
    parser = argparse.ArgumentParser(
        prog=prog if prog == "pspnet-study" else "python -m pspnet_core.study",
        description="Rerun the study: execute every notebook with papermill, export HTML, "
        "write outputs/<preset>/index.html.",
    )
    parser.add_argument("--params", default="smoke", help="preset name in params/ or a .yaml path")
    parser.add_argument(
        "--only",
        action="append",
        metavar="PREFIX",
        help="run only notebooks whose filename starts with PREFIX (repeatable, or a,b,c)",
    )
    parser.add_argument("--kernel", default=DEFAULT_KERNEL, help="Jupyter kernel name")
    parser.add_argument(
        "--set",
        "--override",
        dest="set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter in every notebook: dotted key, YAML value (repeatable), "
        "e.g. train.epochs=2 (the same syntax as pspnet_core.train.cli)",
    )
    parser.add_argument(
        "--param",
        dest="param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a notebook parameter (YAML value), passed to the notebooks whose parameters cell "
        "declares it, e.g. run_name=sgd_none or seed=1 (repeatable)",
    )
    parser.add_argument("--no-train", action="store_true",
                        help="do not train the preset's runs first; the notebooks train what "
                        "they read (as in JupyterLab)")
    parser.add_argument("--no-html", action="store_true", help="skip the HTML exports")
    parser.add_argument("--no-progress", action="store_true", help="no per-cell progress bar")
    parser.add_argument(
        "--update-reference",
        action="store_true",
        help="make this study's results.csv the reference later reruns are compared with "
        "(figures/<preset>/results.csv); without it the reference is written only when there "
        "is none, and never by --only or --param runs",
    )
    parser.add_argument(
        "--store",
        action="store_true",
        help="after a successful study, store the executed notebooks over notebooks/*.ipynb "
        "(what nbval compares against; `make notebooks` does this for the smoke preset)",
    )
    parser.add_argument("--status", action="store_true",
                        help="print the state outputs/<preset>/index.html records (running, "
                        "finished, interrupted: a killed study's index is marked so) and exit")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an error (default: one line)")
    args = parser.parse_args(argv)
    return errors.run_main(lambda: _main(args), ["--debug"] if args.debug else [])


def _main(args: argparse.Namespace) -> int:
    """The command inside the boundary: every error is raised, :func:`errors.run_main` prints
    it as one line and maps it to the exit code."""
    overrides = parse_overrides(args.set)
    nb_params = parse_overrides(args.param)
    if args.status:
        out_dir = resolve("outputs") / preset_of(args.params, overrides or None)[0]
        print(f"{out_dir / 'index.html'}: {index_state(out_dir)}")
        return 0
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _sigterm)  # a kill also ends with a truthful index
    except ValueError:  # not the main thread
        previous = None
    try:
        result = run_study(
            args.params,
            only=args.only,
            kernel=args.kernel,
            overrides=overrides or None,
            notebook_params=nb_params or None,
            export_html=not args.no_html,
            progress_bar=not args.no_progress,
            log=_terminal_log,
            train_first=not args.no_train,
            update_reference=args.update_reference,
        )
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if not result.ok:
        raise StudyFailedError(result.error)
    if args.store:
        store_notebooks(result, log=_terminal_log)
    return 0
