"""Running a study: the training phase first, then each notebook through papermill with an
explicit kernel, the state file and index page kept true at every step
(:mod:`pspnet_core.store.studystate`), one study per outputs folder (:mod:`pspnet_core.store.lock`).

``outputs/`` always tells the truth: the state is written before each notebook (the one running
marked ``running``, the rest ``pending``) and rewritten in a ``finally`` at the end, also on
Ctrl-C (``interrupted``) or SIGTERM; a notebook's HTML from an earlier study is deleted before it
reruns, and the outputs of notebooks that did not run are deleted and listed as ``not run``.
Figures older than the study are marked as such. A second study of the same outputs folder is
refused (exit 1) and leaves the first one's page alone.

On the first failing notebook the study stops and names the notebook, the failing cell
(execution count, position in the source notebook, first source line) and the exception.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pspnet_core.config import StudyConfig, load_params
from pspnet_core.store import lock, provenance, studystate
from pspnet_core.store.studystate import FIGURES_ENV, OUTPUTS_ENV, STUDY_PID_FILE, Row
from pspnet_core.study.contract import contract, missing_runs
from pspnet_core.study.plan import Job, StudyError, notebook_parameters, plan, preset_of
from pspnet_core.study.reproduce import reference_files, reproduction
from pspnet_core.system import process
from pspnet_core.system.atomic import atomic_write_text
from pspnet_core.system.paths import NOTEBOOKS_DIR, resolve
from pspnet_core.system.precision import resolve_precision
from pspnet_core.train.progress import is_resume_line, parse_epoch_line

DEFAULT_KERNEL = "pspnet-study"
FALLBACK_KERNEL = "python3"
FINE = ("ok", "skipped")  # a skipped notebook (no run for its figures) is not a failure


class StudyTrainingError(StudyError):
    """A run of the training phase failed (exit 1, like a failed notebook)."""


class StudyBusyError(StudyError):
    """Another study of the same preset holds the outputs folder's lock (it is running)."""


@dataclass
class JobResult:
    job: Job
    status: str  # "ok" | "skipped" | "failed" | "interrupted"
    seconds: float
    output: Path | None = None  # executed .ipynb
    html: Path | None = None
    error: str | None = None
    figures: list[str] = field(default_factory=list)  # figure files (re)written by this run
    note: str | None = None  # why a notebook was skipped (contract.missing_runs)


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
    included) and then marks ``outputs_dir``'s state interrupted
    (:func:`pspnet_core.store.studystate.index_state`)."""
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


def _describe_failure(job: Job, output: Path, err: Exception, shown: Path) -> str:
    """Name the notebook and the failing cell of a papermill error (``output``: the executed
    notebook as written so far; ``shown``: where it will be kept)."""
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
        f"  traceback in the executed notebook: {shown}"
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


def _figure_state(fig_dir: Path) -> dict[str, int]:
    if not fig_dir.is_dir():
        return {}
    return {p.name: p.stat().st_mtime_ns for p in fig_dir.iterdir()
            if p.suffix == ".png" or p.name == "claims.md"}


def _written(before: dict[str, int], after: dict[str, int]) -> list[str]:
    """Names of the figures written (PNG stems; ``claims.md`` as it is)."""
    return sorted(k if k.endswith(".md") else Path(k).stem
                  for k, v in after.items() if before.get(k) != v)


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


def _kernel_config(ipc_dir: Path):
    """nbclient config: the kernel talks over IPC sockets in ``ipc_dir`` (no TCP, so no
    "Kernel is running over TCP without encryption" warning, and no open ports)."""
    from traitlets.config import Config

    cfg = Config()
    cfg.KernelManager.transport = "ipc"
    cfg.KernelManager.ip = str(ipc_dir / "kernel")
    return cfg


@dataclass
class _Study:
    """One study as it runs: what it runs with, and the rows its page lists."""

    name: str
    value: str  # the notebooks' ``preset`` parameter
    cfg: StudyConfig
    nb_dir: Path
    out_dir: Path
    fig_dir: Path  # where this study's notebooks write their figures
    ref_dir: Path  # the reference folder (figures/<preset>): results.csv, the committed figures
    jobs: list[Job]
    per_job: dict[str, dict[str, Any]]
    skips: dict[str, str | None]
    since: float
    results: list[JobResult] = field(default_factory=list)
    pending: list[Job] = field(default_factory=list)

    def rows(self, running: Job | None, finished: bool) -> list[Row]:
        def rel(path: Path | None) -> str | None:
            return None if path is None else os.path.relpath(path, self.out_dir)

        def earlier(job: Job) -> tuple[str | None, str | None, str | None]:
            """An earlier study's outputs of a notebook this study has not (re)run: linked,
            and said so; nothing is deleted before its replacement exists."""
            html, ipynb = (self.out_dir / f"{job.name}{ext}" for ext in (".html", ".ipynb"))
            kept = [p for p in (html, ipynb) if p.is_file()]
            return (rel(html) if html.is_file() else None, rel(ipynb) if ipynb.is_file() else None,
                    "outputs linked here are an earlier study's" if kept else None)

        rows = []
        for r in self.results:
            if r.status == "interrupted":
                html, ipynb, note = earlier(r.job)
                rows.append(Row(r.job.name, r.status, r.seconds, html, ipynb, r.figures,
                                "; ".join(t for t in (r.error, note) if t)))
            else:
                rows.append(Row(r.job.name, r.status, r.seconds, rel(r.html), rel(r.output),
                                r.figures, r.error or r.note))
        waiting = ([running] if running is not None else []) + self.pending
        for job in waiting:
            status = "not run" if finished else ("running" if job is running else "pending")
            html, ipynb, note = earlier(job)
            rows.append(Row(job.name, status, None, html, ipynb, [], note))
        return rows

    def state(self, finished: bool) -> str:
        if not finished:
            return "running"
        if any(r.status == "interrupted" for r in self.results):
            return "interrupted"
        ok = all(r.status in FINE for r in self.results) and not self.pending
        return "finished" if ok else "failed"

    def write(self, running: Job | None = None, seconds: float | None = None) -> Path:
        finished = seconds is not None
        return studystate.write(self.out_dir, preset=self.name, state=self.state(finished),
                                rows=self.rows(running, finished), figures_dir=self.fig_dir,
                                since=self.since, seconds=seconds)


def _prepare(preset: str | os.PathLike, only: str | Iterable[str] | None,
             notebooks_dir: str | Path, outputs_dir: str | Path | None,
             figures_dir: str | Path | None, overrides: dict[str, Any] | None,
             notebook_params: dict[str, Any] | None) -> _Study:
    """Validate everything a study needs before it writes anything."""
    name, value, default_figs = preset_of(preset, overrides)
    nb_dir = Path(notebooks_dir).resolve()
    jobs = plan(nb_dir, only)
    per_job = notebook_parameters(jobs, notebook_params)
    cfg = load_params(value, overrides)  # preset_of has validated it
    skips = {job.name: missing_runs(cfg, job.notebook.stem, {**per_job[job.name],
                                                            **job.parameters})
             for job in jobs}
    out_dir = Path(outputs_dir) if outputs_dir is not None else resolve("outputs") / name
    ref_dir = Path(figures_dir) if figures_dir is not None else default_figs
    partial = only is not None or bool(notebook_params)
    fig_dir = out_dir / "figures" if partial else ref_dir  # a partial study: never the reference
    return _Study(name, value, cfg, nb_dir, out_dir, fig_dir, ref_dir, jobs, per_job, skips,
                  time.time(), pending=list(jobs))


def _hold_outputs(out_dir: Path) -> int:
    """The outputs folder's lock (:mod:`pspnet_core.store.lock`), taken before anything is
    written; :class:`StudyBusyError` naming the holder when another study has it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = lock.try_lock(out_dir)
    if fd is None:
        raise StudyBusyError(
            f"another study (pid {lock.holder(out_dir, STUDY_PID_FILE)}) is writing {out_dir}; "
            "wait for it to finish or stop it: its index.html is left as it is")
    lock.record_holder(out_dir, STUDY_PID_FILE)
    return fd


def _execute(st: _Study, job: Job, kernel_name: str, ipc_dir: Path, overrides: dict | None,
             progress_bar: bool, echo: bool, log: Callable[[str], None]) -> JobResult:
    """Run one notebook with papermill into the outputs folder; its result (``failed`` with
    the notebook and cell named, ``interrupted`` when Ctrl-C or SIGTERM stopped it)."""
    import papermill as pm

    output = st.out_dir / f"{job.name}.ipynb"
    running = st.out_dir / f".{job.name}.running.ipynb"  # replaces ``output`` once it ended
    params: dict[str, Any] = {"preset": st.value, **st.per_job[job.name], **job.parameters}
    if overrides:
        params["overrides"] = dict(overrides)
    t = time.perf_counter()
    before = _figure_state(st.fig_dir)
    sinks = (EpochEcho(log, "stdout"), EpochEcho(log, "stderr")) if echo else (None,) * 2
    status, error = "interrupted", "interrupted (Ctrl-C or SIGTERM) while running"
    try:
        pm.execute_notebook(str(job.notebook), str(running), parameters=params,
                            kernel_name=kernel_name, cwd=str(st.nb_dir),
                            progress_bar=progress_bar, request_save_on_cell_execute=True,
                            stdout_file=sinks[0], stderr_file=sinks[1],
                            config=_kernel_config(ipc_dir))
        status, error = "ok", None
    except Exception as err:  # noqa: BLE001 - reported with the notebook and cell
        status, error = "failed", _describe_failure(job, running, err, output)
    finally:
        for sink in sinks:
            if sink is not None:
                sink.close()
        if status != "interrupted" and running.is_file():
            os.replace(running, output)  # the earlier study's notebook stays until now
        running.unlink(missing_ok=True)  # an interrupted run's half: the earlier one is kept
        ran = status != "interrupted" and output.exists()
        result = JobResult(job, status, time.perf_counter() - t, output if ran else None, None,
                           error,
                           _written(before, _figure_state(st.fig_dir)))
        st.results.append(result)
        provenance.mark_notebook(st.fig_dir, result.figures, job.notebook.stem)
    return result


def _run_notebooks(st: _Study, execute: Callable[[Job], JobResult], export_html: bool,
                   log: Callable[[str], None]) -> None:
    """Each pending notebook in order (a skipped one says why), its HTML exported, the state
    written before each; stops after the first failure. A job interrupted before it started
    goes back to the pending list."""
    n = len(st.jobs)
    while st.pending:
        job = st.pending.pop(0)
        i = len(st.results) + 1
        if st.skips[job.name]:
            st.results.append(JobResult(job, "skipped", 0.0, note=st.skips[job.name]))
            log(f"[{i}/{n}] {job.name}: skipped: {st.skips[job.name]}")
            continue
        try:
            st.write(running=job)
        except BaseException:
            st.pending.insert(0, job)
            raise
        extra = " ".join(f"{k}={v}" for k, v in {**st.per_job[job.name],
                                                   **job.parameters}.items())
        log(f"[{i}/{n}] {job.notebook.name} {extra}".rstrip() + " ...")
        result = execute(job)
        log(f"[{i}/{n}] {job.name}: {result.status} in {result.seconds:.1f} s")
        if export_html and result.status != "interrupted" and result.output is not None:
            try:
                result.html = _export_html(result.output)
            except Exception as err:  # noqa: BLE001 - an export problem must not hide results
                log(f"  (HTML export of {job.name}.ipynb failed: {type(err).__name__}: {err})")
        if result.status == "failed":
            break


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

    Stops at the first failing notebook; the state and page are written either way (also when
    interrupted: the :class:`KeyboardInterrupt` is re-raised after). ``echo`` forwards the
    engine's epoch lines to ``log``. ``notebook_params`` (``--param``) go to the notebooks
    whose contract lists them (:func:`notebook_parameters`).

    The reference a rerun is compared with (``figures/<preset>/results.csv``, tracked for smoke)
    is written only on purpose: with ``update_reference`` (``--update-reference``; ``make
    notebooks``), or by a whole study when there is none yet. A partial study (``only`` or
    ``notebook_params``) never writes it, nor the code commit in ``provenance.json``.

    ``train_first``: train the preset's whole run grid first (:func:`train_runs`); otherwise
    the notebooks train what they read.
    """
    t0 = time.perf_counter()
    st = _prepare(preset, only, notebooks_dir, outputs_dir, figures_dir, overrides,
                  notebook_params)
    reference = reference_files(st.ref_dir)  # read before the notebooks overwrite it
    kernel_name = choose_kernel(kernel, log)
    n = len(st.jobs)
    log(f"study: preset {st.name!r}, {n} notebook run(s), kernel {kernel_name!r} -> {st.out_dir}")
    precision = resolve_precision(st.cfg.precision, st.cfg.device).describe()
    log(f"precision {precision}")
    held = _hold_outputs(st.out_dir)  # before any write: a refused second study changes nothing
    ipc_dir = Path(tempfile.mkdtemp(prefix="pspnet-kernel-"))
    previous_figures = os.environ.get(FIGURES_ENV)
    os.environ[FIGURES_ENV] = str(st.fig_dir.resolve())  # the kernels inherit it
    if st.fig_dir != st.ref_dir:
        log(f"figures of this partial study go to {st.fig_dir} (the reference {st.ref_dir} is "
            "written only by a whole study)")
    index: Path | None = None
    try:
        if train_first and any(contract(j.notebook.stem).reads_runs and not st.skips[j.name]
                               for j in st.pending):
            st.write()
            train_runs(st.value, overrides, log, st.out_dir)
        _run_notebooks(st, lambda job: _execute(st, job, kernel_name, ipc_dir, overrides,
                                                progress_bar, echo, log), export_html, log)
    finally:
        shutil.rmtree(ipc_dir, ignore_errors=True)
        if previous_figures is None:
            os.environ.pop(FIGURES_ENV, None)
        else:
            os.environ[FIGURES_ENV] = previous_figures
        total = time.perf_counter() - t0
        if st.state(finished=True) == "finished":
            partial = only is not None or bool(notebook_params)
            reproduction(st.value, overrides, st.out_dir, st.fig_dir, st.ref_dir, reference, log,
                         write_reference=update_reference or (
                             not partial and "results.csv" not in reference),
                         mark_code=not partial)
        index = st.write(seconds=total)
        log(summary_table(st.results, st.pending))
        log(f"precision {precision}")
        log(f"index: {index}")
        log(f"study {'finished' if st.state(True) == 'finished' else 'FAILED'}: "
            f"{len(st.results)}/{n} notebook run(s), total wall time {total:.1f} s")
        os.close(held)  # releases the outputs folder
    return StudyResult(st.name, st.results, index, total)
