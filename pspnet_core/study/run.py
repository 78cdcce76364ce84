"""The batch rerun of the whole study: every notebook through papermill, in order.

Command line (``pspnet-study`` is the installed console script of the same ``main``)::

    pspnet-study --params smoke                           # = python -m pspnet_core.study
    python -m pspnet_core.study --params smoke            # the README's first command
    python -m pspnet_core.study --params paper --only 03 --only 05
    python -m pspnet_core.study --params path/to/my.yaml --only 01,02 --kernel python3
    python -m pspnet_core.study --params smoke --set train.epochs=2
    python -m pspnet_core.study --params smoke --only 04 --param run_name=sgd_none --param seed=1

Executes every ``notebooks/NN_*.ipynb`` in filename order with papermill and an explicit
kernel (default ``pspnet-study``, the kernel the README's setup registers; ``python3`` when that
kernelspec is not installed), passing the parameters ``preset`` (and ``overrides`` when given)
to each notebook's ``parameters`` cell. Notebooks listed in :data:`VARIANTS` run once per
variant with extra parameters (``03_learning_curves`` twice: ``optimizer="sgd"`` and
``"adam"``, written as ``03_learning_curves-sgd.ipynb`` / ``-adam.ipynb``).

Outputs, for preset name P (a preset file's ``name:``, else its file stem)::

    outputs/P/NN_topic[-variant].ipynb    executed notebooks (written as they run)
    outputs/P/NN_topic[-variant].html     nbconvert HTML exports
    outputs/P/index.html                  links to each export + thumbnails of figures/P/*.png

Training comes first (:func:`train_runs`, ``--no-train`` leaves it to the notebooks): every
(run, seed) the preset's ``runs:`` name that is not done, through ``pspnet-train --run all``,
with each epoch line and, after each run, the whole grid's ETA (``progress.GridClock``). A
notebook whose figures need a run the preset does not train is skipped and says why
(``notebook.missing_runs``): status ``skipped`` in the table and the index, not a failure.

Progress: one line per notebook with its elapsed seconds, papermill's cell progress bar on
stderr, and, when a notebook trains (``--no-train``), each run's per-epoch line as the engine
prints it (run, seed, epoch k/N, train and held-out loss, mIoU or Dice, lr, seconds:
``progress.py`` writes and reads it) with an ETA for that run and seed added.
Only those lines (and kernel warnings or errors) of the cells' output reach the terminal, not
the widget bars. Kernels talk over IPC (local sockets in a temporary folder), not TCP. At the
end a table: notebook, status, time, figures written.

``outputs/`` always tells the truth: the index is written before each notebook (the one
running marked ``running``, the rest ``pending``) and rewritten in a ``finally`` at the end,
also on Ctrl-C (``interrupted``) or SIGTERM; a notebook's HTML from an earlier study is deleted
before it reruns, and the outputs of notebooks that did not run (after a failure or an
interrupt) are deleted and listed as ``not run``. Figures older than the study are marked as
such in the index. One study at a time writes a preset's outputs folder: it holds an ``flock`` on
the folder, taken before anything is written, so a second study is refused (exit 1) and leaves the
first one's index alone. The index records the study's pid and state; a study killed without its
``finally`` (SIGKILL, a power cut) leaves ``running`` behind, which :func:`index_state`
(``--status``) turns into ``interrupted`` on the next read (no process holds the folder's lock).

On the first failing notebook the run stops and the command exits 1 with the notebook, the
failing cell (execution count, position in the source notebook, first source line) and the
exception name and value; an interrupt exits 130.

Python API::

    run_study(preset="smoke", only=None, notebooks_dir=NOTEBOOKS_DIR, outputs_dir=None,
              figures_dir=None, kernel="pspnet-study", overrides=None, export_html=True,
              progress_bar=True, log=print, train_first=True) -> StudyResult
    plan(notebooks_dir, only=None) -> list[Job]       # what would run, in order
    choose_kernel(requested) -> str
    write_index(outputs_dir, results, figures_dir, preset) -> Path
"""

from __future__ import annotations

import argparse
import ast
import errno
import fcntl
import html
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pspnet_core.config import ParamsError, load_params, parse_overrides
from pspnet_core.store import provenance
from pspnet_core.store.studystate import OUTPUTS_ENV, STUDY_PID_FILE, index_state
from pspnet_core.study.contract import missing_runs
from pspnet_core.system import errors, process
from pspnet_core.system.atomic import atomic_write_text
from pspnet_core.system.paths import NOTEBOOKS_DIR, resolve
from pspnet_core.system.precision import resolve_precision
from pspnet_core.train.progress import is_resume_line, parse_epoch_line

DEFAULT_KERNEL = "pspnet-study"
FALLBACK_KERNEL = "python3"

# notebook stem -> [(suffix, extra parameters)]; every other notebook runs once, no suffix
VARIANTS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "03_learning_curves": [("sgd", {"optimizer": "sgd"}), ("adam", {"optimizer": "adam"})],
}


# the notebooks that read trained runs (01 draws the network, 02 the augmentation)
READS_RUNS = ("03_learning_curves", "04_error_galleries", "05_leaf_disease", "06_claims",
              "07_explore")
FINE = ("ok", "skipped")  # a skipped notebook (no run for its figures) is not a failure


class StudyError(RuntimeError):
    """The study could not start (bad preset, no notebooks, no kernel)."""


class StudyTrainingError(StudyError):
    """A run of the training phase failed (exit 1, like a failed notebook)."""


class StudyBusyError(StudyError):
    """Another study of the same preset holds the outputs folder's lock (it is running)."""


@dataclass(frozen=True)
class Job:
    """One notebook execution: source notebook, output stem, extra parameters."""

    notebook: Path
    name: str  # output stem, e.g. "03_learning_curves-sgd"
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobResult:
    job: Job
    status: str  # "ok" | "failed" | "interrupted"
    seconds: float
    output: Path | None = None  # executed .ipynb
    html: Path | None = None
    error: str | None = None
    figures: list[str] = field(default_factory=list)  # figure files (re)written by this run
    note: str | None = None  # why a notebook was skipped (notebook.missing_runs)


@dataclass
class StudyResult:
    preset: str
    results: list[JobResult]
    index: Path | None
    seconds: float

    @property
    def ok(self) -> bool:
        return all(r.status in FINE for r in self.results)

    @property
    def error(self) -> str | None:
        return next((r.error for r in self.results if r.error), None)


# ---------------------------------------------------------------- planning


def _split_only(only: str | Iterable[str] | None) -> list[str]:
    if only is None:
        return []
    items = [only] if isinstance(only, str) else list(only)
    return [p.strip() for item in items for p in str(item).split(",") if p.strip()]


def plan(notebooks_dir: str | Path = NOTEBOOKS_DIR, only: str | Iterable[str] | None = None):
    """The jobs to run, in filename order; ``only`` keeps notebooks whose filename starts with
    one of the given prefixes (``"03"``, ``"03_learning"``; repeatable or comma-separated)."""
    nb_dir = Path(notebooks_dir)
    notebooks = sorted(p for p in nb_dir.glob("[0-9][0-9]_*.ipynb") if p.is_file())
    if not notebooks:
        raise StudyError(f"no notebooks NN_*.ipynb in {nb_dir}")
    prefixes = _split_only(only)
    if prefixes:
        chosen = [p for p in notebooks if any(p.name.startswith(x) for x in prefixes)]
        if not chosen:
            raise StudyError(
                f"--only {','.join(prefixes)} matches no notebook; available: "
                + ", ".join(p.name for p in notebooks)
            )
        notebooks = chosen
    jobs = []
    for nb in notebooks:
        for suffix, extra in VARIANTS.get(nb.stem, [("", {})]):
            jobs.append(Job(nb, f"{nb.stem}-{suffix}" if suffix else nb.stem, dict(extra)))
    return jobs


def declared_parameters(notebook: str | Path) -> list[str]:
    """Names assigned at the top level of a notebook's cell tagged ``parameters``."""
    nb = json.loads(Path(notebook).read_text())
    for cell in nb.get("cells", []):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            tree = ast.parse("".join(cell.get("source", "")))
            return [t.id for node in tree.body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)]
    return []


def notebook_parameters(jobs: Sequence[Job], values: dict[str, Any] | None) -> dict[str, dict]:
    """``{job name: parameters}``: each ``--param`` value goes to the notebooks whose
    ``parameters`` cell declares it (a variant's own parameters win, e.g. 03's ``optimizer``).
    A name no planned notebook declares is an error listing the ones that exist."""
    values = dict(values or {})
    reserved = {"preset", "overrides"} & set(values)
    if reserved:
        raise StudyError(f"--param {sorted(reserved)[0]}: use --params / --set for the preset "
                         "and its overrides")
    declared = {job.name: set(declared_parameters(job.notebook)) for job in jobs}
    known = set().union(*declared.values()) if declared else set()
    unknown = sorted(set(values) - known)
    if unknown:
        raise StudyError(
            f"--param {unknown[0]}: no notebook in this study declares it; notebook parameters: "
            + ", ".join(sorted(known - {"preset", "overrides"})))
    return {job.name: {k: v for k, v in values.items() if k in declared[job.name]}
            for job in jobs}


def choose_kernel(requested: str = DEFAULT_KERNEL, log: Callable[[str], None] = print) -> str:
    """``requested`` if that kernelspec is installed, else ``python3`` (with a note)."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    if requested in specs:
        return requested
    if FALLBACK_KERNEL in specs:
        log(
            f"kernel {requested!r} is not installed (have: {', '.join(sorted(specs))}); "
            f"using {FALLBACK_KERNEL!r}. Register it with: python -m ipykernel install "
            f"--sys-prefix --name {DEFAULT_KERNEL}"
        )
        return FALLBACK_KERNEL
    raise StudyError(
        f"no kernel {requested!r} and no {FALLBACK_KERNEL!r}; installed: "
        f"{', '.join(sorted(specs)) or 'none'}"
    )


def train_runs(preset_value: str, overrides: dict[str, Any] | None,
               log: Callable[[str], None] = print, outputs_dir: Path | None = None) -> None:
    """Train every (run, seed) the preset names that is not done yet, before any notebook runs:
    ``pspnet-train --run all`` in a child process, its lines (epoch lines, the whole grid's ETA
    after each run, ``<run>: done, <folder>``) forwarded to ``log``. The notebooks then only
    read the run store, so their stored outputs hold no training log. :class:`StudyError`
    (with the child's error line) when a run fails. The child dies with the study (SIGKILL
    included) and then marks ``outputs_dir``'s index interrupted (``studyindex``)."""
    import subprocess

    cmd = [sys.executable, "-m", "pspnet_core.train", "--params", preset_value, "--run", "all"]
    for key, value in (overrides or {}).items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]  # JSON is YAML: parse_overrides reads it
    env = {**os.environ, "PSPNET_PROGRESS_BARS": "0", "PYTHONUNBUFFERED": "1"}
    if outputs_dir is not None:
        env[OUTPUTS_ENV] = str(Path(outputs_dir).resolve())
    log("training: every (run, seed) of the preset that is not done (pspnet-train --run all)")
    last = ""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env, cwd=str(resolve(".")),
                          preexec_fn=process.die_with_parent) as proc:  # noqa: PLW1509
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                last = line
                log(f"    {line}")
        code = proc.wait()
    if code == 130:
        raise KeyboardInterrupt
    if code != 0:
        raise StudyTrainingError(f"training failed (pspnet-train exit {code}): {last}")


def _preset(
    preset: str | os.PathLike, overrides: dict[str, Any] | None = None
) -> tuple[str, str, Path]:
    """(name, value for the notebooks' ``preset`` parameter, figures dir) of a preset with the
    notebooks' ``overrides`` applied (they may move ``figures_dir`` or rename the preset)."""
    raw = str(preset)
    is_path = Path(raw).suffix in (".yaml", ".yml") or os.sep in raw
    value = str(Path(raw).resolve()) if is_path else raw  # notebooks run in notebooks/
    try:
        cfg = load_params(value, overrides)
    except ParamsError as err:
        raise StudyError(str(err)) from None
    return cfg.name, value, resolve(cfg.figures_dir) / cfg.name


# ---------------------------------------------------------------- execution


def _describe_failure(job: Job, output: Path, err: Exception) -> str:
    """Name the notebook and the failing cell of a papermill error."""
    from papermill.exceptions import PapermillExecutionError

    where = f"notebook {job.notebook.name}"
    if job.parameters:
        where += " (" + ", ".join(f"{k}={v!r}" for k, v in job.parameters.items()) + ")"
    if not isinstance(err, PapermillExecutionError):
        return f"{where} failed: {type(err).__name__}: {err}"
    cell = "a cell"
    try:  # position in the source notebook: skip papermill's injected-parameters cell
        import nbformat

        nb = nbformat.read(output, as_version=4)
        # papermill puts an error banner cell on top of the saved notebook; cell_index is
        # counted without it
        cells = [
            c for c in nb.cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])
        ]
        before = cells[: err.cell_index]
        injected = sum("injected-parameters" in c.metadata.get("tags", []) for c in before)
        cell = f"cell {err.cell_index - injected + 1}"
    except Exception:  # noqa: BLE001 - best effort; exec_count is still reported
        pass
    first = next((ln for ln in str(err.source).splitlines() if ln.strip()), "").strip()
    return (
        f"{where} failed in {cell} (counting markdown cells; In [{err.exec_count}] of the "
        f"executed notebook): {first[:80]!r}\n  {err.ename}: {err.evalue}\n"
        f"  traceback in the executed notebook: {output}"
    )


def _export_html(ipynb: Path) -> Path | None:
    import nbformat
    from nbconvert import HTMLExporter

    if not ipynb.is_file():
        return None
    nb = nbformat.read(ipynb, as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
    target = ipynb.with_suffix(".html")
    atomic_write_text(target, body)
    return target


# ---------------------------------------------------------------- progress on the terminal

ALERT_LINE = re.compile(r"Warning|Error|Traceback")


def _eta(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class EpochEcho:
    """A file-like sink for a notebook's stream output (papermill's ``stdout_file`` /
    ``stderr_file``): whole lines that are the engine's epoch or resume lines go to ``log``,
    the epoch lines with an ETA for their run; on stderr also lines naming a warning or an
    error. Progress bars (carriage-return redraws) and everything else are dropped."""

    def __init__(self, log: Callable[[str], None], stream: str = "stdout", indent: str = "    "):
        self.log = log
        self.stream = stream
        self.indent = indent
        self._buf = ""
        self._spent: dict[tuple[str, int], list[float]] = {}  # (run, seed) -> epoch seconds

    def write(self, text: str) -> int:
        self._buf += text
        *lines, self._buf = re.split(r"\r\n|\n", self._buf)
        for line in lines:
            self._line(line.rsplit("\r", 1)[-1])  # a bar redraw keeps only its last state
        return len(text)

    def flush(self) -> None:  # papermill flushes after every message; lines are kept whole
        pass

    def close(self) -> None:
        if self._buf:
            self._line(self._buf.rsplit("\r", 1)[-1])
        self._buf = ""

    def _line(self, line: str) -> None:
        line = line.rstrip()
        epoch = parse_epoch_line(line)
        if epoch is not None:
            spent = self._spent.setdefault((epoch.run, epoch.seed), [])
            spent.append(epoch.seconds)
            left = (epoch.epochs - epoch.epoch) * sum(spent) / len(spent)
            eta = f" ETA {_eta(left)}" if epoch.epoch < epoch.epochs else ""
            self.log(f"{self.indent}{line}{eta}")
        elif is_resume_line(line):
            self.log(f"{self.indent}{line}")
        elif self.stream == "stderr" and ALERT_LINE.search(line):
            self.log(f"{self.indent}[stderr] {line}")


# ---------------------------------------------------------------- the index


def _figure_state(fig_dir: Path) -> dict[str, int]:
    if not fig_dir.is_dir():
        return {}
    return {p.name: p.stat().st_mtime_ns for p in fig_dir.iterdir()
            if p.suffix == ".png" or p.name == "claims.md"}


def _written(before: dict[str, int], after: dict[str, int]) -> list[str]:
    """Names of the figures written (PNG stems; ``claims.md`` as it is)."""
    return sorted(k if k.endswith(".md") else Path(k).stem
                  for k, v in after.items() if before.get(k) != v)


# ---------------------------------------------------------------- one study per outputs folder



def _study_lock(out_dir: Path) -> int:
    """An ``flock`` on the outputs folder itself (not a file one could delete), held by the
    running study; :class:`StudyBusyError` naming the holder's pid when another has it. The
    refused study writes nothing: the running one's index stays as it is."""
    fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in (errno.EAGAIN, errno.EACCES):
            try:
                pid = (out_dir / STUDY_PID_FILE).read_text().strip()[:20] or "unknown"
            except OSError:
                pid = "unknown"
            raise StudyBusyError(
                f"another study (pid {pid}) is writing {out_dir}; wait for it to finish or "
                "stop it: its index.html is left as it is"
            ) from None
        raise
    atomic_write_text(out_dir / STUDY_PID_FILE, f"{os.getpid()}\n")
    return fd


def write_index(
    outputs_dir: str | Path,
    results: Sequence[JobResult],
    figures_dir: str | Path,
    preset: str,
    seconds: float | None = None,
    pending: Sequence[Job] = (),
    running: Job | None = None,
    since: float | None = None,
) -> Path:
    """``outputs_dir/index.html``: each executed notebook's HTML and the figure thumbnails
    (links relative to the index, so the folder tree can be moved or served as is).

    ``running`` is listed as running and ``pending`` as pending while the study runs (or as
    ``not run`` when it has ended: ``seconds`` given). Figures last written before ``since``
    (a ``time.time()``) are captioned as older than this study.
    """
    out = Path(outputs_dir)
    fig_dir = Path(figures_dir)
    finished = seconds is not None

    def rel(p: Path) -> str:
        return html.escape(Path(os.path.relpath(p, out)).as_posix(), quote=True)

    rows = []
    for r in results:
        link = (
            f'<a href="{rel(r.html)}">{html.escape(r.job.name)}</a>'
            if r.html and r.html.exists()
            else html.escape(r.job.name)
        )
        nb = f'<a href="{rel(r.output)}">.ipynb</a>' if r.output and r.output.exists() else ""
        text = r.error or r.note
        err = f"<pre>{html.escape(text)}</pre>" if text else ""
        figs_w = html.escape(", ".join(r.figures))
        rows.append(
            f'<tr class="{r.status}"><td>{link}</td><td>{nb}</td><td>{r.status}</td>'
            f"<td>{r.seconds:.1f} s</td><td>{figs_w}</td><td>{err}</td></tr>"
        )
    waiting = ([running] if running is not None else []) + list(pending)
    for job in waiting:
        status = "running" if job is running and not finished else (
            "not run" if finished else "pending")
        rows.append(
            f'<tr class="{status.replace(" ", "-")}"><td>{html.escape(job.name)}</td><td></td>'
            f"<td>{status}</td><td></td><td></td><td></td></tr>"
        )
    figs = sorted(fig_dir.glob("*.png")) if fig_dir.is_dir() else []

    def caption(p: Path) -> str:
        old = since is not None and p.stat().st_mtime < since
        return html.escape(p.stem) + (" <em>(from an earlier study)</em>" if old else "")

    thumbs = "\n".join(
        f'<figure><a href="{rel(p)}"><img src="{rel(p)}" alt="{html.escape(p.stem)}"></a>'
        f"<figcaption>{caption(p)}</figcaption></figure>"
        for p in figs
    )
    if finished:
        ok = all(r.status in FINE for r in results) and not waiting
        state = "finished" if ok else "did not finish"
        total = f"; study {state} in {seconds:.0f} s"
    else:
        total = "; <strong>study in progress</strong> (this page is rewritten as it goes)"
    study_state = "finished" if finished else "running"  # index_state checks the pid's lock
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="pspnet-study" content="pid={os.getpid()}; state={study_state}">
<title>PSPNet study: {html.escape(preset)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ padding: 4px 10px; border-bottom: 1px solid #ddd; }}
tr.failed td, tr.interrupted td {{ background: #fdd; }}
tr.not-run td, tr.pending td {{ color: #888; }} tr.running td {{ background: #ffd; }}
pre {{ white-space: pre-wrap; margin: 0; }}
figure {{ display: inline-block; margin: 6px; text-align: center; }}
figure img {{ max-width: 260px; max-height: 200px; border: 1px solid #ccc; }}
</style></head><body>
<h1>PSPNet study &mdash; preset <code>{html.escape(preset)}</code></h1>
<p>{len(results)} of {len(results) + len(waiting)} notebook run(s) executed{total};
generated by <code>pspnet-study</code> (<code>python -m pspnet_core.study</code>).</p>
<h2>Executed notebooks</h2>
<table><tr><th>notebook</th><th></th><th>status</th><th>time</th><th>figures written</th>
<th>error or note</th></tr>
{chr(10).join(rows)}
</table>
<h2>Figures ({len(figs)})</h2>
{thumbs or "<p>no figures yet in " + html.escape(rel(fig_dir)) + "</p>"}
{_provenance_html(out, fig_dir, rel)}
</body></html>
"""
    target = out / "index.html"
    atomic_write_text(target, page)
    return target


def _provenance_html(out: Path, fig_dir: Path, rel: Callable[[Path], str]) -> str:
    """The index's provenance section: per figure its notebook, preset hash and runs read;
    the code commit and machine; links to results.csv and the reproduction report."""
    try:
        data = json.loads((fig_dir / provenance.FILE).read_text())
    except (OSError, ValueError):
        return ""
    code = data.get("code", {})
    rows = []
    for name, rec in sorted(data.get("figures", {}).items()):
        runs = ", ".join(f"{r[0]} s{r[1]} ({r[2]})" for r in rec.get("runs", [])) or "-"
        cells = [name, rec.get("notebook", ""), rec.get("preset_hash", ""),
                 f"{rec.get('cpu', '')} / {rec.get('isa', '')}", runs]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    files = (out / "results.csv", out / "reproduction.md", fig_dir / provenance.FILE)
    links = " ".join(f'<a href="{rel(p)}">{p.name}</a>' for p in files if p.is_file())
    commit = html.escape(str(code.get("commit"))) + (" (with uncommitted changes)"
                                                     if code.get("dirty") else "")
    return (f"<h2>Provenance</h2><p>code commit {commit}; {links}</p>"
            "<table><tr><th>figure</th><th>notebook</th><th>preset hash</th><th>machine</th>"
            f"<th>runs read (run, seed, hash)</th></tr>{''.join(rows)}</table>")


def summary_table(results: Sequence[JobResult], pending: Sequence[Job] = ()) -> str:
    """The closing table on the terminal: notebook, status, time, figures written."""
    rows = [("notebook", "status", "time", "figures written")]
    for r in results:
        figs = ", ".join(r.figures)
        figs = f"{len(r.figures)}" + (f" ({figs})" if figs else "")
        rows.append((r.job.name, r.status, f"{r.seconds:.1f} s", r.note if r.note else figs))
    rows += [(j.name, "not run", "", "") for j in pending]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row[:3], widths, strict=True)) + "  " + row[3]
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * len(rows[0][3]))
    return "\n".join(line.rstrip() for line in lines)


def _remove(*paths: Path) -> None:
    for p in paths:
        p.unlink(missing_ok=True)


def _kernel_config(ipc_dir: Path):
    """nbclient config: the kernel talks over IPC sockets in ``ipc_dir`` (no TCP, so no
    "Kernel is running over TCP without encryption" warning, and no open ports)."""
    from traitlets.config import Config

    cfg = Config()
    cfg.KernelManager.transport = "ipc"
    cfg.KernelManager.ip = str(ipc_dir / "kernel")
    return cfg


def run_study(
    preset: str | os.PathLike = "smoke",
    only: str | Iterable[str] | None = None,
    notebooks_dir: str | Path = NOTEBOOKS_DIR,
    outputs_dir: str | Path | None = None,
    figures_dir: str | Path | None = None,
    kernel: str = DEFAULT_KERNEL,
    overrides: dict[str, Any] | None = None,
    export_html: bool = True,
    progress_bar: bool = True,
    log: Callable[[str], None] = print,
    echo: bool = True,
    notebook_params: dict[str, Any] | None = None,
    train_first: bool = True,
    update_reference: bool = False,
) -> StudyResult:
    """Execute the study's notebooks for ``preset`` (a name in params/ or a .yaml path).

    Stops at the first failing notebook; the index is written either way (also when
    interrupted: the :class:`KeyboardInterrupt` is re-raised after it is written). ``echo``
    forwards the engine's epoch lines to ``log``. ``notebook_params`` (``--param``) go to the
    notebooks that declare them (:func:`notebook_parameters`). Returns a :class:`StudyResult`
    (``.ok``, ``.error``, ``.results``, ``.index``, ``.seconds``).

    The reference a rerun is compared with (``figures/<preset>/results.csv``, tracked for smoke)
    is written only on purpose: with ``update_reference`` (``--update-reference``; ``make
    notebooks``), or by a whole study when there is none yet. A partial study (``only`` or
    ``notebook_params``) never writes it, nor the code commit in ``provenance.json``.

    ``train_first``: train the preset's whole run grid first (:func:`train_runs`); otherwise
    the notebooks train what they read. A notebook whose figures need a run the preset does
    not train is skipped, with the reason (``notebook.missing_runs``) in the summary and index.
    """
    import papermill as pm

    t0 = time.perf_counter()
    since = time.time()
    name, value, default_figs = _preset(preset, overrides)
    nb_dir = Path(notebooks_dir).resolve()
    out_dir = Path(outputs_dir) if outputs_dir is not None else resolve("outputs") / name
    fig_dir = Path(figures_dir) if figures_dir is not None else default_figs
    jobs = plan(nb_dir, only)
    per_job = notebook_parameters(jobs, notebook_params)
    cfg = load_params(value, overrides)  # _preset has validated it
    skips = {job.name: missing_runs(cfg, job.notebook.stem, {**per_job[job.name],
                                                            **job.parameters})
             for job in jobs}
    reference = _reference(fig_dir)  # read before the notebooks overwrite it
    kernel_name = choose_kernel(kernel, log)
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"study: preset {name!r}, {len(jobs)} notebook run(s), kernel {kernel_name!r} -> {out_dir}")
    log(f"precision {resolve_precision(cfg.precision, cfg.device).describe()}")
    results: list[JobResult] = []
    pending = list(jobs)
    index: Path | None = None
    lock = _study_lock(out_dir)  # before any write: a refused second study changes nothing
    ipc_dir = Path(tempfile.mkdtemp(prefix="pspnet-kernel-"))
    job: Job | None = None
    try:
        if train_first and any(j.notebook.stem in READS_RUNS and not skips[j.name]
                               for j in pending):
            write_index(out_dir, results, fig_dir, name, pending=pending, since=since)
            train_runs(value, overrides, log, out_dir)
        while pending:
            job = pending.pop(0)
            i = len(results) + 1
            if skips[job.name]:
                results.append(JobResult(job, "skipped", 0.0, note=skips[job.name]))
                log(f"[{i}/{len(jobs)}] {job.name}: skipped: {skips[job.name]}")
                job = None
                continue
            output = out_dir / f"{job.name}.ipynb"
            _remove(output.with_suffix(".html"))  # never next to a notebook being rewritten
            write_index(out_dir, results, fig_dir, name, pending=pending, running=job,
                        since=since)
            params: dict[str, Any] = {"preset": value, **per_job[job.name], **job.parameters}
            if overrides:
                params["overrides"] = dict(overrides)
            extra = " ".join(f"{k}={v}" for k, v in {**per_job[job.name],
                                                       **job.parameters}.items())
            log(f"[{i}/{len(jobs)}] {job.notebook.name} {extra}".rstrip() + " ...")
            t = time.perf_counter()
            before = _figure_state(fig_dir)
            sinks = (EpochEcho(log, "stdout"), EpochEcho(log, "stderr")) if echo else (None,) * 2
            status, error = "interrupted", "interrupted (Ctrl-C or SIGTERM) while running"
            try:
                pm.execute_notebook(
                    str(job.notebook),
                    str(output),
                    parameters=params,
                    kernel_name=kernel_name,
                    cwd=str(nb_dir),
                    progress_bar=progress_bar,
                    request_save_on_cell_execute=True,
                    stdout_file=sinks[0],
                    stderr_file=sinks[1],
                    config=_kernel_config(ipc_dir),
                )
                status, error = "ok", None
            except Exception as err:  # noqa: BLE001 - reported with the notebook and cell
                status, error = "failed", _describe_failure(job, output, err)
            finally:
                for sink in sinks:
                    if sink is not None:
                        sink.close()
                seconds = time.perf_counter() - t
                result = JobResult(job, status, seconds, output if output.exists() else None,
                                   None, error, _written(before, _figure_state(fig_dir)))
                results.append(result)
                provenance.mark_notebook(fig_dir, result.figures, job.notebook.stem)
                log(f"[{i}/{len(jobs)}] {job.name}: {status} in {seconds:.1f} s")
            if export_html and status != "interrupted":
                try:
                    result.html = _export_html(output)
                except Exception as err:  # noqa: BLE001 - an export problem must not hide results
                    log(f"  (HTML export of {output.name} failed: {type(err).__name__}: {err})")
            job = None
            if status == "failed":
                break
    finally:
        shutil.rmtree(ipc_dir, ignore_errors=True)
        if job is not None and not (results and results[-1].job is job):
            pending.insert(0, job)  # interrupted before it started
        for job in pending:  # outputs of an earlier study that this one did not reproduce
            _remove(out_dir / f"{job.name}.html", out_dir / f"{job.name}.ipynb")
        total = time.perf_counter() - t0
        if results and all(r.status in FINE for r in results) and not pending:
            partial = only is not None or bool(notebook_params)
            _reproduction(value, overrides, out_dir, fig_dir, reference, log,
                          write_reference=update_reference or (
                              not partial and "results.csv" not in reference),
                          mark_code=not partial)
        index = write_index(out_dir, results, fig_dir, name, total, pending=pending,
                            since=since)
        log(summary_table(results, pending))
        log(f"precision {resolve_precision(cfg.precision, cfg.device).describe()}")
        log(f"index: {index}")
        ok = all(r.status in FINE for r in results) and not pending
        log(
            f"study {'finished' if ok else 'FAILED'}: {len(results)}/{len(jobs)} notebook "
            f"run(s), total wall time {total:.1f} s"
        )
        os.close(lock)  # releases the outputs folder
    return StudyResult(name, results, index, total)


# ---------------------------------------------------------------- reproduction


def _reference(fig_dir: Path) -> dict[str, str]:
    """The committed results.csv and claims.md of this preset, as they were before the rerun."""
    out = {}
    for name in ("results.csv", "claims.md"):
        try:
            out[name] = (fig_dir / name).read_text()
        except OSError:
            pass
    return out


def _reproduction(preset: Any, overrides: dict[str, Any] | None, out_dir: Path,
                  fig_dir: Path, reference: dict[str, str], log: Callable[[str], None],
                  *, write_reference: bool = False, mark_code: bool = True) -> None:
    """After a finished study: results.csv in outputs/ (and, with ``write_reference``, as the
    reference in the figure folder), the code commit in provenance.json (``mark_code``), and
    the reproduction report against the reference (printed and written to
    outputs/<preset>/reproduction.md)."""
    import pandas as pd

    from pspnet_core.study import reproduce

    cfg = load_params(preset, overrides or None)
    table = reproduce.results_table(cfg)
    text = table.to_csv(index=False)
    atomic_write_text(out_dir / "results.csv", text)
    if write_reference:
        atomic_write_text(fig_dir / "results.csv", text)
    elif "results.csv" in reference:
        log(f"  (the reference {fig_dir / 'results.csv'} is kept; this rerun's numbers are in "
            f"{out_dir / 'results.csv'}; --update-reference makes them the reference)")
    if mark_code:
        provenance.mark_notebook(fig_dir, [], "", commit=provenance.code_commit())
    comparison = pd.DataFrame()
    if "results.csv" in reference:
        try:
            comparison = reproduce.compare(
                reproduce.read_results(reference["results.csv"], fig_dir / "results.csv"), table)
        except reproduce.ResultsFileError as err:
            log(f"  (reference unreadable: {err}; no comparison)")
    claims_now = (fig_dir / "claims.md").read_text() if (fig_dir / "claims.md").is_file() else ""
    changes = (reproduce.verdict_changes(reference["claims.md"], claims_now)
               if "claims.md" in reference and claims_now else [])
    text = reproduce.report(comparison, changes, provenance.machine())
    atomic_write_text(out_dir / "reproduction.md", text)
    log(text.rstrip())


# ---------------------------------------------------------------- command line


def _terminal_log(line: str) -> None:
    """Print above papermill's progress bar (tqdm clears and redraws it)."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()


def _sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt(f"signal {signum}")


# ---------------------------------------------------------------- storing executed notebooks

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def clean_executed(nb: Any) -> Any:
    """An executed notebook made fit to store in the repository (in place; returned):

    - papermill's injected-parameters cell is dropped (the stored notebook runs with the
      defaults of its own ``parameters`` cell, which the study passed unchanged);
    - widget outputs (tqdm's bars in a kernel with ipywidgets) and the widget state in the
      notebook metadata are dropped: they carry no result and would bloat the file;
    - papermill's absolute input/output paths become the notebook's file name.
    """
    nb.cells = [c for c in nb.cells
                if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell.outputs = [o for o in cell.get("outputs", [])
                            if WIDGET_MIME not in o.get("data", {})]
    nb.metadata.pop("widgets", None)
    pm_meta = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if pm_meta.get(key):
            pm_meta[key] = Path(str(pm_meta[key])).name
    pm_meta.pop("parameters", None)
    return nb


def store_notebooks(result: StudyResult, notebooks_dir: str | Path = NOTEBOOKS_DIR,
                    log: Callable[[str], None] = print) -> list[Path]:
    """Copy each notebook's executed version (the first variant of a notebook that runs in
    several) over its source in ``notebooks_dir``, cleaned by :func:`clean_executed`: what nbval
    compares against and what a reader sees on the repository page."""
    import nbformat

    stored, seen = [], set()
    for r in result.results:
        source = r.job.notebook
        if r.status != "ok" or r.output is None or source.name in seen:
            continue
        seen.add(source.name)
        nb = clean_executed(nbformat.read(r.output, as_version=4))
        target = Path(notebooks_dir) / source.name
        atomic_write_text(target, nbformat.writes(nb) + "\n")
        stored.append(target)
        log(f"stored {r.output.name} -> {target.name}")
    return stored


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
    try:
        overrides = parse_overrides(args.set)
        nb_params = parse_overrides(args.param)
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.status:
        name = _preset(args.params, overrides or None)[0]
        out_dir = resolve("outputs") / name
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
    except (StudyBusyError, StudyTrainingError) as err:  # refused, or a run failed
        print(f"error: {err}", file=sys.stderr)
        return 1
    except StudyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; outputs/ marks the notebook as interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if not result.ok:
        print(f"error: {result.error}", file=sys.stderr)
        return 1
    if args.store:
        store_notebooks(result, log=_terminal_log)
    return 0
