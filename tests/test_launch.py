"""Scale-out through submitit (``pspnet_core/train/launch.py``, ``pspnet-train --launcher``).

Fast: the flags, the SLURM job script, what is (not) submitted, a SLURM submission through a
fake executor. Slow: ``LocalExecutor`` with 2 concurrent jobs on the tiny preset (stopped after
epoch 1, then resubmitted) ends bit-identical to a sequential run, and a third submission submits
nothing; DDP inside one job (2 gloo processes).
"""

from __future__ import annotations

import contextlib
import json
import os

import pandas as pd
import pytest
from tiny_preset import history_equal, write_tiny

from pspnet_core.config import load_params, resolve_run
from pspnet_core.store import runs
from pspnet_core.train import cli as train
from pspnet_core.train import engine, launch
from pspnet_core.train.grid import get_run


def test_help_shows_the_launcher_and_job_options():
    text = train.build_parser().format_help()
    for flag in ("--launcher {none,local,slurm}", "--wait", "--partition", "--gpus-per-job",
                 "--time", "--mem", "--max-parallel"):
        assert flag in text


@pytest.mark.parametrize("text,minutes", [
    ("240", 240), ("30:30", 31), ("6:00:00", 360), ("1-00", 1440), ("1-02:30", 1590),
    ("1-00:00:01", 1441)])
def test_time_takes_slurm_syntax(text, minutes):
    assert train.wall_minutes(text) == minutes


def test_bad_time_and_job_flag_without_launcher_are_one_line_errors(tmp_path, capsys):
    params = write_tiny(tmp_path)
    with pytest.raises(SystemExit):
        train.main(["--params", str(params), "--run", "all", "--launcher", "slurm",
                    "--time", "6h"])
    assert "not a SLURM time" in capsys.readouterr().err
    assert train.main(["--params", str(params), "--run", "all", "--partition", "gpu"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --partition is a job option: add --launcher local or --launcher slurm\n"
    assert train.main(["--params", str(params), "--run", "all", "--launcher", "local",
                       "--gpus-per-job", "2", "--procs-per-job", "1"]) == 2
    assert "must equal --gpus-per-job 2" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any(
        p.name != ".submitit" for p in (tmp_path / "runs").iterdir())


def test_slurm_without_sbatch_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(launch.shutil, "which", lambda name: None)
    params = write_tiny(tmp_path)
    assert train.main(["--params", str(params), "--run", "all", "--launcher", "slurm"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --launcher slurm needs SLURM's sbatch and srun")
    assert err.count("\n") == 1


def test_slurm_job_script_carries_the_job_options(tmp_path, monkeypatch):
    monkeypatch.setattr(launch.submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    cfg = load_params(write_tiny(tmp_path))
    opts = launch.JobOptions(partition="gpu", gpus_per_job=2, time_min=360, mem="64G",
                             max_parallel=4, cpus_per_job=16, account="lab").resolved("slurm")
    assert opts.procs_per_job == 2
    ex = launch.slurm_executor(tmp_path / "logs", cfg, opts)
    script = ex._make_submission_file_text("python -m x", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=360", "#SBATCH --mem=64G",
                 "#SBATCH --gpus-per-node=2", "#SBATCH --ntasks-per-node=2",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --account=lab", "#SBATCH --nodes=1",
                 "#SBATCH --job-name=pspnet-tiny", "#SBATCH --signal=USR2@120"):
        assert line in script, line
    assert ex.parameters["array_parallelism"] == 4
    # the defaults: one GPU, one process, the cluster's partition
    one = launch.JobOptions().resolved("slurm")
    assert (one.gpus_per_job, one.procs_per_job, one.partition) == (1, 1, None)


@pytest.mark.slow
def test_plan_skips_done_training_and_queued_pairs(reference_run, tmp_path):
    _, params, ref = reference_run
    cfg = load_params(params)
    names = ["sgd_mix", "adam_none", "leaf_sgd_affine"]
    busy = runs.open_run(resolve_run(cfg, "adam_none", 0))
    queued = runs.open_run(resolve_run(cfg, "leaf_sgd_affine", 0))
    with runs.run_lock(busy):  # another process would hold it while training
        pairs, todo = launch.plan(cfg, names, [0], {queued.dir.name: "77_2"},
                                  active=lambda ids: set(ids))
    assert [p.state for p in pairs] == [
        "done", f"training (pid {os.getpid()})", "queued as job 77_2"]
    assert todo == []
    assert launch.lock_holder(busy) is None and not busy.dir.exists()  # the probe left nothing
    pairs, todo = launch.plan(cfg, names, [0], {queued.dir.name: "77_2"})  # job 77_2 ended
    assert [p.run for p in todo] == ["adam_none", "leaf_sgd_affine"]
    assert ref.done


class FakeJob:
    def __init__(self, job_id: str, result: dict | None = None, error: str | None = None):
        self.job_id, self._result, self._error = job_id, result, error
        self.paths = type("P", (), {"stderr": f"/logs/{job_id}_0_log.err"})()

    def results(self):
        if self._error:
            raise RuntimeError(self._error)
        return [self._result]


class FakeSlurm:
    """What ``launch`` uses of a ``SlurmExecutor``: ``batch()`` and ``submit``."""

    def __init__(self, first_id: int):
        self.next, self.submitted = first_id, []

    @contextlib.contextmanager
    def batch(self):
        yield

    def submit(self, fn, cfg, run, seed):
        assert isinstance(fn, launch.TrainPair)
        job = FakeJob(f"{self.next}_{len(self.submitted)}",
                      {"run": run, "seed": seed, "status": "done", "dir": f"/runs/{run}"})
        self.submitted.append((run, seed))
        return job


def test_slurm_submission_prints_ids_records_them_and_skips_queued_jobs(tmp_path, monkeypatch,
                                                                        capsys):
    params = write_tiny(tmp_path, seeds=[0, 1])
    fake = FakeSlurm(500)
    monkeypatch.setattr(launch.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(launch, "slurm_executor", lambda folder, cfg, opts: fake)
    active: set[str] = set()
    monkeypatch.setattr(launch, "slurm_active", lambda ids: {i for i in ids if i in active})
    args = ["--params", str(params), "--run", "all", "--launcher", "slurm", "--partition", "gpu"]
    assert train.main(args) == 0
    out = capsys.readouterr().out.splitlines()
    ids = [f"500_{k}" for k in range(6)]
    assert out[0].startswith("submitted 6 job(s) to SLURM: " + " ".join(ids))
    names = list(load_params(params).runs)
    assert fake.submitted == [(n, s) for s in (0, 1) for n in names]
    grid = out[1:7]  # the --list table with a job column, in training order
    assert [ln.split()[:4] for ln in grid] == [
        [n, f"s{s}", f"500_{k}", "absent"] for k, (n, s) in enumerate(fake.submitted)]
    record = json.loads((tmp_path / "runs" / ".submitit" / launch.JOBS_FILE).read_text())
    assert sorted(record.values()) == ids
    # all still queued: a second submission submits nothing
    active.update(ids[:5])
    fake2 = FakeSlurm(600)
    monkeypatch.setattr(launch, "slurm_executor", lambda folder, cfg, opts: fake2)
    assert train.main(args) == 0
    out = capsys.readouterr().out
    assert "skipping 5 pair(s)" in out and "queued as job 500_0" in out
    assert fake2.submitted == [(names[-1], 1)]  # its job left the queue unfinished
    record = json.loads((tmp_path / "runs" / ".submitit" / launch.JOBS_FILE).read_text())
    assert sorted(record.values()) == [*ids[:5], "600_0"]


def test_wait_reports_each_job_in_one_line(tmp_path, capsys):
    p = launch.Pair("sgd_mix", 0, r=None)
    lines: list[str] = []
    trace = ("Job (task=0) failed during processing with trace:\n----------------------\n"
             "Traceback (most recent call last):\n  File \"/x/y.py\", line 3, in f\n"
             "    raise ValueError('boom')\nValueError: train.batch_size 3 is odd\n"
             "----------------------\nYou can check full logs with 'job.stderr(0)'")
    assert not launch._report(p, FakeJob("9", error=trace), lines.append, lines.append)
    assert lines[-1] == ("error: sgd_mix (seed 0): job 9 failed: ValueError: train.batch_size 3 "
                         "is odd (log: /logs/9_0_log.err)")
    assert not launch._report(p, FakeJob("9", {"error": "VOC2012 not found at /v"}),
                              lines.append, lines.append)
    assert lines[-1] == "error: sgd_mix (seed 0): VOC2012 not found at /v"
    assert launch._report(p, FakeJob("9", {"status": "done", "dir": "/r"}), lines.append,
                          lines.append)
    assert lines[-1] == "sgd_mix (seed 0): done, /r (job 9)"


# ---------------------------------------------------------------- LocalExecutor, for real


def _history_csv(run: runs.Run) -> pd.DataFrame:
    return pd.read_csv(run.history_path)


@pytest.mark.slow
def test_local_executor_two_at_a_time_resumes_and_equals_a_sequential_run(
        reference_run, tmp_path, monkeypatch, capsys):
    ref_home, _, ref = reference_run
    params = write_tiny(tmp_path / "launch", data_root=ref_home / "data")
    args = ["--params", str(params), "--run", "sgd_mix", "--run", "adam_none",
            "--launcher", "local", "--max-parallel", "2"]
    # 1) both jobs stop after epoch 1 (a job killed mid-run), running at the same time
    monkeypatch.setenv(engine.STOP_ENV, "1")
    assert train.main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "2 at a time" in out and out.count("partial at epoch 1/3") >= 2
    cfg = load_params(params)
    got = {n: runs.open_run(resolve_run(cfg, n, 0)) for n in ("sgd_mix", "adam_none")}
    starts = [pd.Timestamp(r.env["started"]) for r in got.values()]
    ends = [pd.Timestamp.fromtimestamp(r.checkpoint_path.stat().st_mtime, tz="UTC")
            for r in got.values()]
    assert max(starts) < min(ends)  # the two jobs overlapped
    # 2) resubmitted: both resume from their checkpoints and finish
    monkeypatch.delenv(engine.STOP_ENV)
    assert train.main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.count(": done, ") == 2
    for r in got.values():
        assert r.done and len(r.env["previous_starts"]) == 1
    # 3) equal bit for bit to the same pairs trained one after the other in one process
    seq_params = write_tiny(tmp_path / "seq", data_root=ref_home / "data")
    seq = get_run(load_params(seq_params), "adam_none")
    for want, have in ((ref, got["sgd_mix"]), (seq, got["adam_none"])):
        assert history_equal(_history_csv(want), _history_csv(have))
        assert history_equal(want.history, have.history)
    # 4) a second submission of a finished grid submits nothing
    jobs_before = sorted((tmp_path / "launch" / "runs" / ".submitit").iterdir())
    assert train.main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("nothing to submit: all 2 (run, seed) pairs")
    assert sorted((tmp_path / "launch" / "runs" / ".submitit").iterdir()) == jobs_before


@pytest.mark.slow
def test_ddp_inside_one_local_job(reference_run, tmp_path, monkeypatch, capsys):
    """``--procs-per-job 2``: submitit starts 2 tasks, TrainPair exports the torchrun variables,
    the engine trains with gloo over 2 CPU processes (one run, one history)."""
    ref_home, _, _ = reference_run
    params = write_tiny(tmp_path, data_root=ref_home / "data", train={"batch_size": 4})
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert train.main(["--params", str(params), "--run", "sgd_mix", "--launcher", "local",
                       "--procs-per-job", "2", "--gpus-per-job", "0"]) == 0, \
        capsys.readouterr().err
    run = runs.open_run(resolve_run(load_params(params), "sgd_mix"))
    assert run.done and run.env["world_size"] == 2 and run.checkpoint()["world_size"] == 2
    assert list(run.history["epoch"]) == [1, 2, 3]


def test_slurm_only_options_are_refused_by_the_local_launcher(tmp_path):
    cfg = load_params(write_tiny(tmp_path))
    with pytest.raises(launch.LaunchError, match=r"--partition, --mem only applies to "
                                                 r"--launcher slurm"):
        launch.launch(cfg, ["sgd_mix"], [0], "local",
                      launch.JobOptions(partition="gpu", mem="8G"))
    assert not (tmp_path / "runs").exists()  # nothing submitted, no log folder


def test_local_executor_leaves_no_literal_job_id_folder(tmp_path):
    """submitit's local job controller creates the folder it is given before substituting
    ``%j``: the local executor writes into the log folder itself, the logs named by job id."""
    folder = tmp_path / ".submitit"
    ex = launch.local_executor(folder, launch.JobOptions(gpus_per_job=0).resolved("local"))
    job = ex.submit(int, "7")
    assert job.result() == 7
    names = [p.name for p in folder.rglob("*")]
    assert not [n for n in names if "%" in n], names
    assert any(n.startswith(f"{job.job_id}_0_log") for n in names), names
