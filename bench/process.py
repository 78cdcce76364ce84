"""Process start and exit: what an entry point or a notebook kernel pays before and after its work,
with and without ``process.freeze_imports`` (``gc.freeze`` once the imports are done).

CI starts many short processes: every notebook under nbval, paper-dry and the own-data study is
a kernel; many tests start ``pspnet-train`` or ``pspnet-study``. This prints, as a markdown
table (median of ``--repeats``, each in a fresh process):

* a Python process that imports ``pspnet_core.results.explore`` (the heaviest import of the package:
  torch, torchvision, albumentations, pandas, matplotlib, ipywidgets): wall time to its end,
  and the part of it after the last statement (interpreter shutdown), frozen or not;
* a papermill notebook in the ``python3`` kernel that imports the explorer and calls
  ``notebook.setup`` (which freezes in a kernel), or imports it without setup: wall time, and
  the time from the end of the last cell to the end of the notebook (the kernel's shutdown).

Never asserts on time. Prints the CPU (bench/machine.py).

    .venv/bin/python bench/process.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import describe

IMPORT = "import time, pspnet_core.results.explore"


def process_exit(freeze: bool) -> tuple[float, float]:
    """(wall s, s after the last statement) of a process importing the explorer."""
    freezing = ("; from pspnet_core.system import process; process.freeze_imports()"
                if freeze else "")
    code = f"{IMPORT}{freezing}; print(time.time())"
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    end = time.time()
    return end - t0, end - float(out.split()[-1])


def kernel_exit(folder: Path, setup: bool, preset: str) -> tuple[float, float]:
    """(wall s, s from the end of the last cell to the end) of a papermill notebook."""
    import nbformat
    import papermill as pm

    src = ("from pspnet_core.results import explore\n"
           "from pspnet_core.study.notebook import setup\n")
    if setup:
        src += f"cfg, fig_dir = setup({preset!r}, announce=False)\n"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = folder / "exit.ipynb"
    nbformat.write(nb, path)
    t0 = time.perf_counter()
    out = pm.execute_notebook(str(path), str(folder / "out.ipynb"), kernel_name="python3",
                              progress_bar=False, log_output=False)
    wall = time.perf_counter() - t0
    end = dt.datetime.fromisoformat(out.metadata.papermill.end_time)
    last = dt.datetime.fromisoformat(out.cells[-1].metadata.papermill.end_time)
    return wall, (end - last).total_seconds()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--params", default="smoke", help="preset for notebook.setup")
    args = ap.parse_args()
    print(describe())
    rows = []
    for freeze in (False, True):
        runs = [process_exit(freeze) for _ in range(args.repeats)]
        label = "python -c 'import pspnet_core.results.explore'" + (" + freeze" if freeze else "")
        rows.append((label,
                     statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)))
    with tempfile.TemporaryDirectory() as tmp:
        for setup in (False, True):
            runs = [kernel_exit(Path(tmp), setup, args.params) for _ in range(args.repeats)]
            rows.append((f"notebook: import explore{', setup (freezes)' if setup else ''}",
                         statistics.median(r[0] for r in runs),
                         statistics.median(r[1] for r in runs)))
    print(f"\nmedian of {args.repeats}\n")
    print("| process | wall s | after the last statement s |")
    print("|---|---|---|")
    for name, wall, tail in rows:
        print(f"| {name} | {wall:.2f} | {tail:.2f} |")


if __name__ == "__main__":
    main()
