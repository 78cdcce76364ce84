"""The run store: layout, atomic writes, lock, cache/resume, determinism, kill + resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from tiny_preset import history_equal, subprocess_env, train_cli, write_tiny

from pspnet_core.config import load_params, resolve_run, run_hash
from pspnet_core.store import provenance, runs
from pspnet_core.store.files import RunFileError
from pspnet_core.train import engine
from pspnet_core.train.grid import get_run


def _weights(run: runs.Run) -> dict[str, torch.Tensor]:
    return run.checkpoint()["model"]


def assert_same_run(a: runs.Run, b: runs.Run) -> None:
    ha, hb = a.history, b.history
    assert len(ha) == len(hb) == a.run_cfg.epochs
    assert history_equal(ha, hb), pd.concat({"a": ha, "b": hb}, axis=1).to_string()
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.mark.slow
def test_layout_and_provenance(reference_run):
    home, params, run = reference_run
    rc = resolve_run(load_params(params), "sgd_mix")
    assert run.dir == runs.run_dir(rc) and run.dir.parent == home / "runs"
    names = {p.name for p in run.dir.iterdir()}
    assert {"params.yaml", "history.csv", "checkpoint.pt", "env.json", "DONE"} <= names
    assert not [n for n in names if n.endswith(".tmp")]
    assert runs.load_run_config(run.dir / "params.yaml") == rc
    env = run.env
    assert env["seed"] == 0 and env["device"] == "cpu" and env["packages"]["torch"]
    assert env["hash"] == run_hash(rc) and "git_commit" in env and "hostname" in env
    assert env["code_paths"] == list(provenance.CODE_PATHS)  # git_commit: their last commit
    assert set(env["packages"]) == set(provenance.PACKAGES)
    ckpt = run.checkpoint()
    assert ckpt["epoch"] == 3 and len(ckpt["history"]) == 3
    assert {"model", "optimizer", "scheduler", "epoch", "history"} <= set(ckpt)
    assert "rng" not in ckpt  # every epoch reseeds from (seed, epoch): no RNG objects to pickle
    # tensors and plain containers only: it loads with weights_only=True
    torch.load(run.checkpoint_path, weights_only=True)
    hist = run.history
    assert list(hist["epoch"]) == [1, 2, 3]
    for col in ("train_loss", "heldout_loss", "heldout_miou", "heldout_pixel_acc", "lr",
                "seconds"):
        assert hist[col].notna().all(), col
    # poly decay stepped once per epoch (docs/method.md#optimizers):
    # lr0 * (1 - (epoch-1)/EPOCHS)^0.9
    sgd = rc.optim
    expected = [sgd.lr * (1 - (e - 1) / rc.epochs) ** sgd.poly_power for e in hist["epoch"]]
    assert hist["lr"].tolist() == pytest.approx(expected, rel=1e-12)
    assert run.status == "done" and run.describe() == "done"


@pytest.mark.slow
def test_finished_run_is_returned_without_training(reference_run, monkeypatch):
    _, params, run = reference_run
    mtime = run.checkpoint_path.stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("fit must not be called for a finished run")

    monkeypatch.setattr(engine, "fit", boom)
    again = get_run(load_params(params), "sgd_mix")
    assert again.dir == run.dir and again.done
    assert run.checkpoint_path.stat().st_mtime_ns == mtime


def test_absent_run_without_training(tmp_path):
    params = write_tiny(tmp_path)
    r = get_run(load_params(params), "adam_none", train=False)
    assert r.status == "absent" and r.history.empty
    with pytest.raises(runs.RunNotTrainedError, match="no checkpoint"):
        r.checkpoint()
    table = runs.list_runs(load_params(params))
    assert set(table["status"]) == {"absent"} and len(table) == 3


def test_lock_refuses_second_trainer(tmp_path):
    params = write_tiny(tmp_path)
    run = runs.open_run(resolve_run(load_params(params), "adam_none"))
    with runs.run_lock(run):
        with pytest.raises(runs.RunBusyError, match=f"pid {os.getpid()}"):
            engine.fit(run.run_cfg)
    with runs.run_lock(run):  # released again
        pass


@pytest.mark.slow
def test_same_seed_identical_history_and_resume_after_stop(reference_run, tmp_path):
    """Fresh run, same seed, other folder: epoch 1 equals the reference's; stopped there and
    resumed, it ends bit-identical (history minus seconds, and every weight)."""
    ref_home, _, ref = reference_run
    params = write_tiny(tmp_path, data_root=ref_home / "data")
    cfg = load_params(params)
    hist = engine.fit(resolve_run(cfg, "sgd_mix"), stop_after_epoch=1)
    partial = get_run(cfg, "sgd_mix", train=False)
    assert partial.status == "partial" and partial.epochs_done == 1 and len(hist) == 1
    assert partial.describe() == "partial at epoch 1/3"
    assert history_equal(partial.history, ref.history.iloc[:1])
    resumed = get_run(cfg, "sgd_mix")
    assert resumed.done and resumed.dir != ref.dir
    assert len(resumed.env.get("previous_starts", [])) == 1
    assert_same_run(resumed, ref)


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_uninterrupted(reference_run, tmp_path):
    ref_home, _, ref = reference_run
    # a checkpoint after every epoch (the default waits 60 s between saves)
    params = write_tiny(tmp_path, data_root=ref_home / "data", checkpoint_seconds=0)
    run = runs.open_run(resolve_run(load_params(params), "sgd_mix"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pspnet_core.train", "--params", str(params), "--run", "sgd_mix"],
        cwd=tmp_path, env=subprocess_env(tmp_path), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 300
        while not run.checkpoint_path.exists():  # appears (atomically) after epoch 1
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint after 300 s"
            time.sleep(0.05)
        time.sleep(0.5)  # let it get into epoch 2
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not run.done and run.status == "partial"
    k = run.checkpoint()["epoch"]
    assert 1 <= k < 3 and len(run.history) in (k - 1, k)  # history.csv follows the checkpoint
    # what a kill in the middle of a checkpoint save leaves: a temp file beside the checkpoint
    leftover = run.dir / ".checkpoint.pt.killed.tmp"
    leftover.write_bytes(b"half a checkpoint")
    out = train_cli(tmp_path, params, "--run", "sgd_mix")
    assert out.returncode == 0, out.stderr
    assert "sgd_mix: done" in out.stdout
    assert run.done and not leftover.exists()  # swept on restart
    assert_same_run(run, ref)


# ---------------------------------------------------------------- issue 18: the lock and the folder


def _partial(tmp_path, epochs_saved: int = 1) -> runs.Run:
    rc = resolve_run(load_params(write_tiny(tmp_path)), "adam_none")
    r = runs.Run(rc, runs.run_dir(rc))
    with runs.run_lock(r):
        runs.start_run(r, torch.device("cpu"))
        runs.save_epoch(r, {"model": {"w": torch.zeros(2)}, "optimizer": {}, "scheduler": {},
                            "epoch": epochs_saved, "run_hash": r.hash,
                            "history": [{"epoch": e, "train_loss": 1.0, "heldout_loss": 1.0,
                                         "lr": 0.1} for e in range(1, epochs_saved + 1)]})
    return r


def test_the_lock_is_the_folder_not_the_lock_file(tmp_path):
    r = _partial(tmp_path)
    with runs.run_lock(r):
        assert runs.lock_holder(r) == str(os.getpid())
        (r.dir / runs.LOCK_FILE).unlink()  # deleting the pid record releases nothing
        with pytest.raises(runs.RunBusyError, match=r"being trained by another process"):
            with runs.run_lock(r):
                pass
    assert runs.lock_holder(r) is None
    with runs.run_lock(r):  # free again once the holder closed it
        pass


def test_a_failure_before_the_first_checkpoint_leaves_no_folder(tmp_path):
    rc = resolve_run(load_params(write_tiny(tmp_path)), "adam_none")
    r = runs.Run(rc, runs.run_dir(rc))
    with pytest.raises(RuntimeError, match="bad data"), runs.run_lock(r):
        runs.start_run(r, torch.device("cpu"))
        raise RuntimeError("bad data in epoch 1")
    assert not r.dir.exists() and runs.open_run(rc).status == "absent"
    # a file the store did not write is never removed (nor its folder)
    with pytest.raises(RuntimeError), runs.run_lock(r):
        (r.dir / "notes.txt").write_text("mine\n")
        raise RuntimeError("bad data")
    assert (r.dir / "notes.txt").read_text() == "mine\n"


def test_a_symlinked_run_folder_is_never_followed(tmp_path):
    rc = resolve_run(load_params(write_tiny(tmp_path)), "adam_none")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".x.tmp").write_text("keep\n")
    link = runs.run_dir(rc)
    link.parent.mkdir(parents=True)
    link.symlink_to(outside)
    r = runs.Run(rc, link)
    with pytest.raises(RunFileError, match="is a symbolic link"):
        with runs.run_lock(r):
            pass
    assert (outside / ".x.tmp").exists() and r.status == "damaged"
    assert runs.lock_holder(r) is None


def test_done_record_and_weights_removed(tmp_path):
    r = _partial(tmp_path, 3)
    opened = runs.open_run(r.run_cfg)  # finalized: DONE with its record
    record = opened.done_record()
    assert record["run_hash"] == r.hash and record["epochs"] == 3
    assert opened.status == "done" and opened.done
    hist = opened.history
    r.checkpoint_path.unlink()
    again = runs.open_run(r.run_cfg)
    assert again.status == "done (weights removed)" and again.done
    assert again.history.equals(hist)
    with pytest.raises(runs.RunNotTrainedError, match="weights were removed"):
        again.checkpoint()
    table = runs.list_runs(load_params(tmp_path / "tiny.yaml"))
    row = table[table["run"] == "adam_none"].iloc[0]
    assert row["status"] == "done (weights removed)" and row["epochs_done"] == 3


def test_list_runs_marks_a_damaged_run_and_lists_the_rest(tmp_path):
    r = _partial(tmp_path, 2)
    r.checkpoint_path.write_bytes(b"not a checkpoint")
    table = runs.list_runs(load_params(tmp_path / "tiny.yaml"))
    assert len(table) == 3
    bad = table[table["run"] == "adam_none"].iloc[0]
    assert bad["status"] == "damaged" and bad["describe"].startswith("damaged: checkpoint")
    assert set(table[table["run"] != "adam_none"]["status"]) == {"absent"}


@pytest.mark.slow
def test_ctrl_c_is_one_line_and_exit_130(tmp_path):
    """SIGINT to a training pspnet-train: exit 130, one line, no traceback, and a run killed
    before its first checkpoint leaves no folder."""
    params = write_tiny(tmp_path)
    run = runs.Run(resolve_run(load_params(params), "sgd_mix"),
                   runs.run_dir(resolve_run(load_params(params), "sgd_mix")))
    proc = subprocess.Popen(
        [sys.executable, "-m", "pspnet_core.train", "--params", str(params), "--run", "sgd_mix"],
        cwd=tmp_path, env=subprocess_env(tmp_path), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not (run.dir / "env.json").exists():  # training has started
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and err.strip().startswith("error: interrupted (Ctrl-C)"), err
    assert len(err.strip().splitlines()) == 1, err
    if not run.checkpoint_path.exists():
        assert not run.dir.exists()
