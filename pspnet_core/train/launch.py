"""Scale-out of a preset's run grid through submitit: one job per (run, seed) not done yet.

    pspnet-train --params paper --run all --launcher slurm --partition gpu --time 240 --wait
    pspnet-train --params smoke --run all --launcher local --max-parallel 2

``slurm`` submits a SLURM job array (``--max-parallel`` caps how many run at once) and returns
after printing the job ids and the grid; ``--wait`` blocks until the jobs end. ``local`` runs the
same jobs as processes of this machine with submitit's ``LocalExecutor``, ``--max-parallel`` at a
time (on a GPU machine each job gets its own ``--gpus-per-job`` GPUs); its queue lives in this
process, so it always waits.

Each job is :class:`TrainPair`: it trains its (run, seed) through the run store
(``grid.get_run``), so the run lock keeps one trainer per run, a finished run returns at once
and an interrupted one resumes from its last checkpoint. A job that SLURM times out or preempts
is requeued by submitit (``Checkpointable``) and resumes the same way; a job killed otherwise
resumes when the grid is submitted again. A pair is not submitted when it is done, when a
process holds its lock (being trained), or (SLURM) when the job recorded for it in
``jobs.json`` is still queued or running.

DDP inside a job: ``--gpus-per-job N`` (N > 1) asks for N GPUs and N tasks on one node; every
task runs :class:`TrainPair`, which exports ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/
``MASTER_ADDR``/``MASTER_PORT`` (submitit's ``TorchDistributedEnvironment``) before training, so
the engine's torchrun path (``WORLD_SIZE > 1``: NCCL on CUDA, gloo on CPU) runs unchanged.
``--procs-per-job`` sets the number of processes apart from the GPUs (e.g. 2 CPU processes in
the tests). A run must resume with the number of processes it started with.

Job logs and submitit's pickles go to ``<runs_dir>/.submitit/`` (``--log-dir`` to change).
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from pspnet_core.config import StudyConfig, resolve_run
from pspnet_core.store import runs
from pspnet_core.system import errors, paths
from pspnet_core.system.atomic import atomic_write_text
from pspnet_core.train.grid import get_run

LAUNCHERS = ("none", "local", "slurm")
JOBS_FILE = "jobs.json"  # SLURM: {run folder name: job id} of the last submission per pair

# JobOptions fields that only a SLURM submission uses
SLURM_ONLY = ("partition", "mem", "account", "cpus_per_job")


class LaunchError(RuntimeError):
    """A launcher option or the scheduler is unusable; the message says what to do."""


@dataclass(frozen=True)
class JobOptions:
    """What each job asks for. ``None`` leaves the choice to the launcher (see the fields)."""

    partition: str | None = None      # SLURM partition (None: the cluster's default)
    gpus_per_job: int | None = None   # None: 1 on SLURM; local: 1 if CUDA is available, else 0
    procs_per_job: int | None = None  # DDP processes per job; None: max(1, gpus_per_job)
    cpus_per_job: int | None = None   # CPU cores per job (SLURM --cpus-per-task x procs)
    time_min: int = 24 * 60           # wall-time limit per job, minutes
    mem: str | None = None            # memory per job, SLURM syntax ("64G"); None: default
    max_parallel: int | None = None   # jobs at once; None: SLURM unlimited, local by GPUs or 1
    account: str | None = None        # SLURM --account
    log_dir: str | None = None        # None: <runs_dir>/.submitit

    def resolved(self, launcher: str) -> JobOptions:
        gpus = self.gpus_per_job
        if gpus is None:
            gpus = 1 if launcher == "slurm" or _cuda_count() else 0
        procs = self.procs_per_job or max(1, gpus)
        for name, value in (("--gpus-per-job", gpus), ("--procs-per-job", procs),
                            ("--time", self.time_min), ("--max-parallel", self.max_parallel),
                            ("--cpus-per-job", self.cpus_per_job)):
            if value is not None and value < (0 if name == "--gpus-per-job" else 1):
                raise LaunchError(f"{name} {value} must be at least "
                                  f"{0 if name == '--gpus-per-job' else 1}")
        if gpus > 1 and procs != gpus:
            raise LaunchError(f"--procs-per-job {procs} must equal --gpus-per-job {gpus} "
                              "(DDP runs one process per GPU)")
        return dataclasses.replace(self, gpus_per_job=gpus, procs_per_job=procs)


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


# ---------------------------------------------------------------- the job


class TrainPair(submitit.helpers.Checkpointable):
    """One job: train (run, seed) of ``cfg`` through the run store; requeued as is on a SLURM
    timeout or preemption (the run store resumes it from its last checkpoint).

    Returns ``{"run", "seed", "status", "dir"}`` and ``"error"`` (a one-line message) when
    training stopped on a user error (missing data or weights, a busy run, a diverged loss).
    """

    def __init__(self, project_root: str | None = None, quiet: bool | None = None):
        # relative data/ and runs/ paths of the preset resolve against the submitter's root
        self.project_root = project_root or str(paths.project_root())
        self.quiet = quiet  # --quiet of the submitting command (None: the preset's setting)

    def __call__(self, cfg: StudyConfig, run: str, seed: int) -> dict[str, Any]:
        os.environ["PSPNET_HOME"] = self.project_root
        os.environ.setdefault("PSPNET_PROGRESS_BARS", "0")  # a log file: epoch lines only
        env = submitit.JobEnvironment()
        if env.num_tasks > 1:  # DDP: the env:// variables torchrun would set
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        out: dict[str, Any] = {"run": run, "seed": seed}
        try:
            # the job's Runtime: built in the job (its device and rank), from the preset's
            # device and quiet settings (or --quiet)
            r = get_run(cfg, run, seed=seed, quiet=self.quiet)
        except Exception as err:  # noqa: BLE001 - an expected error is the job's one line
            if errors.exit_code(err) is None:
                raise  # a bug: submitit keeps its traceback
            r = runs.peek_run(resolve_run(cfg, run, seed))
            out["error"] = errors.one_line(err)
        out.update(status=r.describe(), dir=str(r.dir))
        return out


# ---------------------------------------------------------------- what to submit


@dataclass
class Pair:
    run: str
    seed: int
    r: runs.Run
    state: str = ""    # why it is not submitted ("done", "training (pid 12)", "queued as ...")
    job_id: str = ""   # the job it was submitted as


def lock_holder(r: runs.Run) -> str | None:
    """The pid recorded in the run's lock if a process holds the lock now, else None (a
    shared, non-blocking probe of the run folder's ``flock``, ``runs.lock_holder``; creates
    nothing)."""
    return runs.lock_holder(r)


def slurm_active(job_ids: Sequence[str]) -> set[str]:
    """The ids among ``job_ids`` that ``squeue`` lists for this user (pending or running, one
    line per array element); empty without ``squeue``."""
    if not job_ids or shutil.which("squeue") is None:
        return set()
    out = subprocess.run(
        ["squeue", "-h", "-r", "-o", "%i", "-u", getpass.getuser()],
        capture_output=True, text=True, timeout=60, check=False,
    )
    listed = {line.strip() for line in out.stdout.splitlines() if line.strip()}
    return {j for j in job_ids if j in listed}


def plan(
    cfg: StudyConfig, names: Sequence[str], seeds: Sequence[int], recorded: dict[str, str],
    active: Callable[[Sequence[str]], set[str]] = lambda ids: set(),
) -> tuple[list[Pair], list[Pair]]:
    """(every pair in training order (seed by seed), the pairs to submit): a pair is skipped
    when done, when a process holds its lock, or when its recorded job is still active."""
    pairs = [Pair(n, s, runs.peek_run(resolve_run(cfg, n, s))) for s in seeds for n in names]
    live = active([recorded[p.r.dir.name] for p in pairs if p.r.dir.name in recorded])
    todo = []
    for p in pairs:
        job = recorded.get(p.r.dir.name)
        if p.r.done:
            p.state = "done"
        elif (pid := lock_holder(p.r)) is not None:
            p.state = f"training (pid {pid})"
        elif job is not None and job in live:
            p.state, p.job_id = f"queued as job {job}", job
        else:
            todo.append(p)
    return pairs, todo


def table(pairs: Sequence[Pair]) -> list[str]:
    """``--list``'s lines with a job column: run, seed, job id, status, folder."""
    lines = []
    for p in pairs:
        p.r = runs.peek_run(p.r.run_cfg)  # a damaged run is listed as such
        lines.append(f"{p.run:<18} s{p.seed:<4} {p.job_id or '-':<14} {p.r.describe():<26} "
                     f"{p.r.dir}")
    return lines


# ---------------------------------------------------------------- executors


def log_dir(cfg: StudyConfig, opts: JobOptions) -> Path:
    return paths.resolve(opts.log_dir) if opts.log_dir else (
        paths.resolve(cfg.runs_dir) / ".submitit")


def slurm_executor(folder: Path, cfg: StudyConfig, opts: JobOptions) -> submitit.SlurmExecutor:
    """A ``SlurmExecutor`` with the job options (one node; ``procs_per_job`` tasks); logs in
    ``folder/<job id>`` (sbatch and the job itself substitute ``%j``; nothing creates it
    literally)."""
    ex = submitit.SlurmExecutor(folder=folder / "%j")
    params: dict[str, Any] = dict(
        job_name=f"pspnet-{cfg.name}", time=opts.time_min, nodes=1,
        ntasks_per_node=opts.procs_per_job, gpus_per_node=opts.gpus_per_job or None,
        partition=opts.partition, mem=opts.mem,
        cpus_per_task=(-(-opts.cpus_per_job // opts.procs_per_job)
                       if opts.cpus_per_job else None),
        signal_delay_s=120,  # the time an epoch's checkpoint needs before the kill
    )
    if opts.max_parallel:
        params["array_parallelism"] = opts.max_parallel
    if opts.account:
        params["account"] = opts.account
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex


def local_executor(folder: Path, opts: JobOptions) -> submitit.LocalExecutor:
    """A ``LocalExecutor`` writing into ``folder`` itself: its job controller creates the
    folder it is given before substituting the job id (submitit 1.5), so ``folder / "%j"``
    would leave a literal ``%j`` folder; the log names carry the job id
    (``<pid>_<task>_log.out``), so one flat folder keeps jobs apart."""
    ex = submitit.LocalExecutor(folder=folder)
    ex.update_parameters(timeout_min=opts.time_min, tasks_per_node=opts.procs_per_job,
                         gpus_per_node=opts.gpus_per_job)
    return ex


# ---------------------------------------------------------------- submitting


def _outcome(job: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(result of task 0, None) or (None, a one-line reason the job failed)."""
    try:
        return job.results()[0], None
    except Exception as err:  # FailedJobError / UncompletedJobError: the log has the rest
        return None, f"{failure_line(str(err))} (log: {job.paths.stderr})"


def failure_line(message: str) -> str:
    """The line that says why a job failed: the exception line that ends the traceback of a
    submitit ``FailedJobError``, else the message's first line."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    if not lines:
        return "no message"
    if "with trace" in lines[0]:
        body = [ln for ln in lines[1:] if not ln.startswith("You can check")
                and set(ln) != {"-"}]
        body = [ln for ln in body if not ln.startswith(("File ", "/", "'"))]
        if body:
            return body[-1]
    return lines[0]


def _report(p: Pair, job: Any, say: Callable[[str], None], err: Callable[[str], None]) -> bool:
    """Print how ``job`` (pair ``p``) ended; True if it trained its run without error."""
    result, failed = _outcome(job)
    if failed is not None:
        err(f"error: {p.run} (seed {p.seed}): job {job.job_id} failed: {failed}")
        return False
    if result.get("error"):
        err(f"error: {p.run} (seed {p.seed}): {result['error']}")
        return False
    say(f"{p.run} (seed {p.seed}): {result['status']}, {result['dir']} (job {job.job_id})")
    return True


def launch(
    cfg: StudyConfig, names: Sequence[str], seeds: Sequence[int], launcher: str,
    opts: JobOptions, *, wait: bool = False, poll_s: float = 1.0, quiet: bool | None = None,
    say: Callable[[str], None] = print,
    err: Callable[[str], None] = lambda m: print(m, file=sys.stderr),
) -> int:
    """Submit the pairs of ``names`` x ``seeds`` not done yet; exit status (0: all submitted
    jobs ended well, or nothing to do; 1: a job failed). ``quiet``: the jobs' (None: the
    preset's ``quiet:``)."""
    if launcher not in ("local", "slurm"):
        raise LaunchError(f"--launcher must be one of local, slurm (got {launcher!r})")
    if launcher == "local":  # SLURM-only options would be silently ignored on this machine
        given = [f"--{flag.replace('_', '-')}" for flag in SLURM_ONLY
                 if getattr(opts, flag) is not None]
        if given:
            raise LaunchError(f"{', '.join(given)} only applies to --launcher slurm; the local "
                              "launcher runs the jobs on this machine (drop it, or use slurm)")
    opts = opts.resolved(launcher)
    folder = log_dir(cfg, opts)
    folder.mkdir(parents=True, exist_ok=True)
    record_path = folder / JOBS_FILE
    recorded = _read_record(record_path) if launcher == "slurm" else {}
    pairs, todo = plan(cfg, names, seeds, recorded,
                       slurm_active if launcher == "slurm" else (lambda ids: set()))
    skipped = [p for p in pairs if p.state]
    if not todo:
        say(f"nothing to submit: all {len(pairs)} (run, seed) pairs are done, training or "
            "queued")
        for line in table(pairs):
            say(line)
        return 0
    if skipped:
        say(f"skipping {len(skipped)} pair(s): " + ", ".join(
            f"{p.run} s{p.seed} {p.state}" for p in skipped))
    if launcher == "slurm":
        return _launch_slurm(cfg, pairs, todo, opts, folder, record_path, recorded,
                             wait=wait, say=say, err=err, quiet=quiet)
    return _launch_local(cfg, pairs, todo, opts, folder, poll_s=poll_s, say=say, err=err,
                         quiet=quiet)


def _read_record(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _launch_slurm(cfg, pairs, todo, opts, folder, record_path, recorded, *, wait, say, err,
                  quiet=None):
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise LaunchError("--launcher slurm needs SLURM's sbatch and srun on PATH (run this on a "
                          "login node of the cluster); --launcher local runs the jobs on this "
                          "machine")
    ex = slurm_executor(folder, cfg, opts)
    fn = TrainPair(quiet=quiet)
    with ex.batch():
        jobs = [ex.submit(fn, cfg, p.run, p.seed) for p in todo]
    for p, job in zip(todo, jobs, strict=True):
        p.job_id = str(job.job_id)
        recorded[p.r.dir.name] = p.job_id
    atomic_write_text(record_path, json.dumps(recorded, indent=2, sort_keys=True) + "\n")
    say(f"submitted {len(jobs)} job(s) to SLURM: {' '.join(p.job_id for p in todo)} "
        f"(logs: {folder})")
    for line in table(pairs):
        say(line)
    if not wait:
        say("watch: squeue --me; pspnet-train --params ... --list")
        return 0
    ok = all([_report(p, job, say, err) for p, job in zip(todo, jobs, strict=True)])
    for line in table(pairs):
        say(line)
    return 0 if ok else 1


def _launch_local(cfg, pairs, todo, opts, folder, *, poll_s, say, err, quiet=None):
    gpus = opts.gpus_per_job or 0
    n_gpus = _cuda_count()
    if gpus and n_gpus and gpus > n_gpus:
        raise LaunchError(f"--gpus-per-job {gpus} but this machine has {n_gpus} GPU(s)")
    slots = opts.max_parallel or (max(1, n_gpus // gpus) if gpus and n_gpus else 1)
    if gpus and n_gpus:
        slots = min(slots, n_gpus // gpus)  # each running job holds its own GPUs
    ex = local_executor(folder, opts)
    fn = TrainPair(quiet=quiet)
    queue = list(todo)
    running: dict[int, tuple[Pair, Any]] = {}
    ok = True
    say(f"running {len(todo)} job(s) with submitit's LocalExecutor, {slots} at a time "
        f"(logs: {folder})")
    while queue or running:
        for slot in [s for s in range(slots) if s not in running]:
            if not queue:
                break
            p = queue.pop(0)
            if gpus and n_gpus:
                ex.update_parameters(visible_gpus=list(range(slot * gpus, (slot + 1) * gpus)))
            job = ex.submit(fn, cfg, p.run, p.seed)
            p.job_id = str(job.job_id)
            running[slot] = (p, job)
            say(f"{p.run} (seed {p.seed}): started as job {p.job_id}")
        for slot, (p, job) in list(running.items()):
            if job.done():
                ok = _report(p, job, say, err) and ok
                del running[slot]
        if running:
            time.sleep(poll_s)
    for line in table(pairs):
        say(line)
    return 0 if ok else 1
