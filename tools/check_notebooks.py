"""`make test-notebooks`: nbval over the stored notebooks, with `make paper-dry` beside it.

The notebooks read the smoke grid (7 runs x 3 seeds) from ``runs/``; a fresh clone has none, so
something must train it. Inside nbval that is one process on one core while paper-dry uses the
other, and paper-dry ends long before nbval (measured on 2 AMD EPYC cores: nbval 496 s, of which
410 s trained the grid in notebooks 03, 05 and 06; paper-dry 240 s). So the grid is trained
first, by ``pspnet-train`` in two lanes of one torch thread each, and the lanes are cut so that
both end about together:

* lane 1: the VOC PSPNet runs of the smoke preset but the last (4 runs x 3 seeds), then nbval;
* lane 2: the last VOC PSPNet run and the other runs (the leaf run and the U-Net), then
  paper-dry.

nbval starts when both trainings have ended, so no notebook trains and no (run, seed) is trained
twice; the runs are exactly those a notebook would train (same preset, same seeds, one thread,
as in nbval before). Each lane's runs come from the preset, not from a list here.

The lanes and nbval run with ``PSPNET_HOME=outputs/check-notebooks/home``: the grid, the
generated data, the figures and the outputs the notebooks write land there, never in the
project's own ``runs/`` and ``figures/`` (the committed figures were trained at two threads; a
test run must not write over them). The folder is kept, so a second ``make test`` on the same
machine finds the grid trained.

One torch thread per process: two 2-thread processes on 2 cores wait on each other's OpenMP
barriers, two 1-thread processes do ~1.3x the work of one 2-thread process. The training logs
and paper-dry's output are written to ``outputs/check-notebooks/`` and printed after nbval (a
lane's training log only when it failed). Exits 0 only when every step passed.

    .venv/bin/python tools/check_notebooks.py [--preset smoke]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from pspnet_core.config import load_params
from pspnet_core.system import errors

SOURCE_ROOT = Path(__file__).resolve().parents[1]
LOG_DIR = SOURCE_ROOT / "outputs" / "check-notebooks"
HOME = LOG_DIR / "home"
NBVAL = ["-m", "pytest", "--durations=10", "--nbval-lax",
         "--nbval-sanitize-with", "notebooks/sanitize.cfg", "notebooks"]


def lanes(preset: str) -> tuple[list[str], list[str]]:
    """(lane 1, lane 2) of ``preset``'s runs, each in the preset's order: lane 1 the VOC PSPNet
    runs but the last, lane 2 that last one and every other run (the leaf run, the U-Net). With
    paper-dry after lane 2 and nbval after both, the two end about together (smoke, 1 thread
    each: a VOC PSPNet run ~90 s for its 3 seeds, the leaf run ~150 s, the U-Net ~40 s,
    paper-dry ~150 s, nbval ~110 s). A preset with one VOC PSPNet run or none keeps them all in
    lane 1."""
    cfg = load_params(preset)
    voc = [n for n, s in cfg.runs.items() if s.task == "voc" and s.arch == "pspnet"]
    rest = [n for n in cfg.runs if n not in voc]
    if len(voc) > 1 and rest:
        voc, rest = voc[:-1], [n for n in cfg.runs if n == voc[-1] or n in rest]
    return voc, rest


def child_env(home: bool) -> dict[str, str]:
    """One torch thread, no bars; with ``home``, the project root at :data:`HOME`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PSPNET_PROGRESS_BARS": "0"}
    if home:
        env["PSPNET_HOME"] = str(HOME)
    return env


def start(cmd: list[str], log: Path | None, home: bool = True) -> tuple[subprocess.Popen, float]:
    """``cmd`` started in the source root, its output to ``log`` (None: this terminal)."""
    out = open(log, "w") if log else None  # noqa: SIM115 - closed when the process ends
    proc = subprocess.Popen(cmd, cwd=SOURCE_ROOT, env=child_env(home), stdout=out,
                            stderr=subprocess.STDOUT if out else None)
    if out:
        out.close()  # the child holds its own descriptor
    return proc, time.monotonic()


def train_cmd(preset: str, runs: list[str]) -> list[str]:
    return [sys.executable, "-m", "pspnet_core.train", "--params", preset, "--quiet", *runs]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="smoke", help="the preset the stored notebooks use")
    args = ap.parse_args(argv)
    HOME.mkdir(parents=True, exist_ok=True)
    voc, rest = lanes(args.preset)
    logs = {"voc": LOG_DIR / "train-voc.log", "rest": LOG_DIR / "train-rest.log",
            "dry": LOG_DIR / "paper-dry.log"}
    times: dict[str, str] = {}
    procs: list[subprocess.Popen] = []
    try:
        lane1, t1 = start(train_cmd(args.preset, voc), logs["voc"])
        procs.append(lane1)
        lane2, t2 = start(train_cmd(args.preset, rest), logs["rest"]) if rest else (None, 0.0)
        rc_rest = 0
        if lane2 is not None:
            procs.append(lane2)
            rc_rest = lane2.wait()
            times[f"grid: {', '.join(rest)}"] = f"{time.monotonic() - t2:.0f} s"
        dry, t_dry = start([sys.executable, "tools/paper_dry.py"], logs["dry"], home=False)
        procs.append(dry)
        rc_voc = lane1.wait()
        times[f"grid: {', '.join(voc)}"] = f"{time.monotonic() - t1:.0f} s"
        rc_nb = 1
        if rc_voc == 0 and rc_rest == 0:
            print(f"check-notebooks: the {args.preset} grid is trained (one thread per lane); "
                  "nbval next, beside paper-dry", flush=True)
            nb, t_nb = start([sys.executable, *NBVAL], None)
            procs.append(nb)
            rc_nb = nb.wait()
            times["nbval"] = f"{time.monotonic() - t_nb:.0f} s"
        rc_dry = dry.wait()
        times["paper-dry"] = f"{time.monotonic() - t_dry:.0f} s"
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        print("check-notebooks: interrupted", file=sys.stderr)
        return 130
    for name, rc in (("voc", rc_voc), ("rest", rc_rest)):
        if rc:
            print(f"== training lane '{name}' failed (exit {rc}); its log:")
            print(logs[name].read_text()[-6000:])
    if rc_voc or rc_rest:
        print("check-notebooks: nbval did not run (the grid's training failed)")
    print(f"== make paper-dry (ran beside nbval; exit {rc_dry})")
    print(logs["dry"].read_text(), end="")
    print("check-notebooks times: " + "; ".join(f"{k} {v}" for k, v in times.items()))
    return 0 if rc_voc == rc_rest == rc_nb == rc_dry == 0 else 1


if __name__ == "__main__":
    # a bad --preset is one line (exit 2), as in pspnet-train; a bug keeps its traceback
    sys.exit(errors.run_main(main))
