"""The run store: ``runs/<run>-<hash>/``, one folder per training run (docs/architecture.md).

A run folder holds

    params.yaml     the resolved RunConfig (what the hash was computed from)
    env.json        provenance: package versions, git commit, device, seed, host, threads
    checkpoint.pt   model, optimizer, scheduler, completed epochs, RNG states, history
    history.csv     one row per completed epoch (engine.fit documents the columns)
    DONE            written after the last epoch's checkpoint: the run is finished

Every file is written atomically (a temp file in the same folder, then ``os.replace``), and the
checkpoint is written before ``history.csv``: a kill at any moment leaves the previous epoch's
state whole, and the checkpoint (which carries the history) is the source of truth on resume.

This module only stores: ``engine.get_run`` / ``engine.fit`` train into it, ``analysis`` reads
trained runs. A ``.lock`` file held with ``flock`` stops two processes from training the same run
at once (the OS releases it if a process dies).
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from pspnet_core import paths
from pspnet_core.atomic import atomic_path, atomic_write_text
from pspnet_core.config import (
    ParamsError,
    RunConfig,
    StudyConfig,
    _build,
    dump_params,
    resolve_run,
    run_hash,
)
from pspnet_core.model import build_model

PARAMS_FILE = "params.yaml"
HISTORY_FILE = "history.csv"
CHECKPOINT_FILE = "checkpoint.pt"
ENV_FILE = "env.json"
DONE_FILE = "DONE"
LOCK_FILE = ".lock"


class RunBusyError(RuntimeError):
    """Another process holds this run's lock (it is training it now)."""


class RunNotTrainedError(RuntimeError):
    """The run has no checkpoint yet (``get_run(..., train=False)`` of an absent run)."""


# ---------------------------------------------------------------- atomic writes


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


# ---------------------------------------------------------------- locations


def run_dir(run_cfg: RunConfig) -> Path:
    """``<runs_dir>/<run>-<hash>`` (``runs_dir`` resolved against the project root)."""
    return paths.resolve(run_cfg.runs_dir) / f"{run_cfg.run}-{run_hash(run_cfg)}"


def load_run_config(path: str | Path) -> RunConfig:
    """A RunConfig back from a run folder's ``params.yaml``."""
    tree = yaml.safe_load(Path(path).read_text())
    try:
        return _build(RunConfig, tree, "")
    except ParamsError as err:
        raise ParamsError(f"{path}: {err}") from None


@dataclass
class Run:
    """One run folder. ``status`` is ``"done"``, ``"partial"`` or ``"absent"``."""

    run_cfg: RunConfig
    dir: Path

    @property
    def name(self) -> str:
        return self.run_cfg.run

    @property
    def hash(self) -> str:
        return run_hash(self.run_cfg)

    @property
    def done(self) -> bool:
        return (self.dir / DONE_FILE).is_file()

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / CHECKPOINT_FILE

    @property
    def history(self) -> pd.DataFrame:
        """``history.csv`` as a DataFrame (empty if no epoch has completed)."""
        path = self.dir / HISTORY_FILE
        if not path.is_file() or path.stat().st_size == 0:
            return pd.DataFrame()
        return pd.read_csv(path)

    @property
    def epochs_done(self) -> int:
        return len(self.history)

    @property
    def status(self) -> str:
        if self.done:
            return "done"
        if self.checkpoint_path.is_file() or (self.dir / PARAMS_FILE).is_file():
            return "partial"
        return "absent"

    @property
    def env(self) -> dict[str, Any]:
        path = self.dir / ENV_FILE
        return json.loads(path.read_text()) if path.is_file() else {}

    def describe(self) -> str:
        if self.status == "partial":
            return f"partial at epoch {self.epochs_done}/{self.run_cfg.epochs}"
        return self.status

    def checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        if not self.checkpoint_path.is_file():
            raise RunNotTrainedError(
                f"run {self.name!r} has no checkpoint at {self.checkpoint_path}; "
                "train it with engine.get_run(cfg, run) or python -m pspnet_core.train"
            )
        return torch.load(self.checkpoint_path, map_location=map_location, weights_only=False)

    def load_model(self, device: str | torch.device = "cpu"):
        """The trained PSPNet (last completed epoch) in eval mode on ``device``."""
        state = self.checkpoint(map_location="cpu")
        # the checkpoint holds every weight: do not fetch pretrained ones again
        model_cfg = dataclasses.replace(self.run_cfg.model, weights=None)
        model = build_model(model_cfg, self.run_cfg.num_classes)
        model.load_state_dict(state["model"])
        return model.to(device).eval()

    def __repr__(self) -> str:
        return f"Run({self.name!r}, {self.describe()}, dir={str(self.dir)!r})"


def open_run(run_cfg: RunConfig) -> Run:
    return Run(run_cfg=run_cfg, dir=run_dir(run_cfg))


def list_runs(cfg: StudyConfig) -> pd.DataFrame:
    """Every run of the preset with its status, completed epochs, hash and folder."""
    rows = []
    for name in cfg.runs:
        r = open_run(resolve_run(cfg, name))
        rows.append(
            {
                "run": name,
                "status": r.status,
                "epochs_done": r.epochs_done,
                "epochs": r.run_cfg.epochs,
                "hash": r.hash,
                "dir": str(r.dir),
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- writing a run


def _git_commit() -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=paths.SOURCE_ROOT, capture_output=True,
            text=True, timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=paths.SOURCE_ROOT,
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        return {"git_commit": commit, "git_dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def environment(run_cfg: RunConfig, device: torch.device, world_size: int = 1) -> dict[str, Any]:
    """What ``env.json`` records."""
    packages = ["torch", "torchvision", "albumentations", "numpy", "pandas", "pillow", "pyyaml"]
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "packages": {p: _version(p) for p in packages},
        "device": str(device),
        "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "world_size": world_size,
        "torch_threads": torch.get_num_threads(),
        "seed": run_cfg.seed,
        "precision": run_cfg.precision,
        "run": run_cfg.run,
        "hash": run_hash(run_cfg),
    }
    info.update(_git_commit())
    return info


def start_run(r: Run, device: torch.device, world_size: int = 1) -> None:
    """Write ``params.yaml`` and ``env.json`` (env.json is rewritten on every (re)start), and
    remove temp files a killed writer left behind (called with the run's lock held)."""
    r.dir.mkdir(parents=True, exist_ok=True)
    for leftover in r.dir.glob(".*.tmp"):  # e.g. half a checkpoint from a SIGKILL mid-save
        leftover.unlink(missing_ok=True)
    atomic_write_text(r.dir / PARAMS_FILE, dump_params(r.run_cfg))
    env = environment(r.run_cfg, device, world_size)
    old = r.env
    if old.get("started"):
        env["previous_starts"] = old.get("previous_starts", []) + [old.get("started")]
    env["started"] = pd.Timestamp.now(tz="UTC").isoformat()
    atomic_write_text(r.dir / ENV_FILE, json.dumps(env, indent=2) + "\n")


def save_epoch(r: Run, state: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """Checkpoint first, then history.csv (both atomic)."""
    atomic_torch_save(state, r.checkpoint_path)
    atomic_write_text(r.dir / HISTORY_FILE, pd.DataFrame(history).to_csv(index=False))


def mark_done(r: Run) -> None:
    atomic_write_text(r.dir / DONE_FILE, pd.Timestamp.now(tz="UTC").isoformat() + "\n")


@contextmanager
def run_lock(r: Run) -> Iterator[None]:
    """Exclusive, non-blocking ``flock`` on ``<run>/.lock``; :class:`RunBusyError` if held."""
    r.dir.mkdir(parents=True, exist_ok=True)
    path = r.dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except OSError as err:
            if err.errno in (errno.EAGAIN, errno.EACCES):
                holder = path.read_text().strip() or "unknown"
                raise RunBusyError(
                    f"run {r.name!r} in {r.dir} is being trained by another process "
                    f"(pid {holder}); wait for it or stop it"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        if held and [p.name for p in r.dir.iterdir()] == [LOCK_FILE]:
            # training failed before writing anything (bad data, no weights): leave no
            # empty run folder behind that would list as a run
            path.unlink(missing_ok=True)
            r.dir.rmdir()
        os.close(fd)  # closing releases the lock
