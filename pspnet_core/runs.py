"""The run store: ``runs/<run>-s<seed>-<hash>/``, one folder per training run and seed
(docs/architecture.md).

A run folder holds

    params.yaml     the resolved RunConfig (what the hash was computed from)
    env.json        provenance: package versions, git commit, device, seed, host, threads
    checkpoint.pt   model, optimizer, scheduler, completed epochs, history, run hash, world size
    history.csv     one row per completed epoch (engine.fit documents the columns)
    DONE            written after the last epoch's checkpoint: the run is finished

Every file is written atomically (a temp file in the same folder, then ``os.replace``), and the
checkpoint is written before ``history.csv``: a kill at any moment leaves the previous epoch's
state whole. The checkpoint (which carries the history) is the one source of truth;
``history.csv`` is a derived view. Opening a run (:func:`open_run`) reconciles the two: a
``history.csv`` that is missing, shorter, longer or damaged is rewritten from the checkpoint, and
a checkpoint of the last epoch without ``DONE`` (a kill between the two) is finalized.

Loading never executes code: checkpoints hold only tensors and plain containers (no RNG objects:
every epoch reseeds from ``(seed, epoch)``) and are read with ``torch.load(weights_only=True)``.
A damaged or unsafe file is a :class:`RunFileError` naming it and saying what to do; a save that
hits a full disk is a :class:`DiskFullError` naming the path (the previous files stay intact).

This module only stores (it builds no network): ``engine.get_run`` / ``engine.fit`` train into
it, ``analysis`` reads trained runs (``analysis.load_model(run)`` rebuilds the network). A
``.lock`` file held with ``flock`` stops two processes from training the same run at once (the OS
releases it if a process dies). Checkpoints are read with ``torchfile.load_torch_file``.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
    build_config_section,
    dump_params,
    resolve_run,
    run_hash,
)
from pspnet_core.torchfile import load_torch_file

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


class RunFileError(RuntimeError):
    """A file of a run folder is damaged, unsafe or inconsistent; the message names the file and
    says what to do (usually: delete the run folder to retrain)."""


class DiskFullError(OSError):
    """A save failed because the disk is full; the previous version of the file is intact."""


CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "epoch", "history")
HISTORY_KEYS = ("epoch", "train_loss", "heldout_loss", "lr")


def _retrain(run_dir: Path) -> str:
    return f"delete {run_dir} to retrain"


# ---------------------------------------------------------------- atomic writes


@contextmanager
def _disk_full_is_clear(path: str | Path) -> Iterator[None]:
    """Turn ENOSPC (and torch's opaque "file write failed" on a full disk) into a
    :class:`DiskFullError` naming ``path``."""
    try:
        yield
    except DiskFullError:
        raise
    except (OSError, RuntimeError) as err:
        full = isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)
        if not full and ("write failed" in str(err) or "unexpected pos" in str(err)):
            try:
                full = shutil.disk_usage(Path(path).parent).free < 64 * 2**20
            except OSError:
                full = False
        if not full:
            raise
        raise DiskFullError(
            errno.ENOSPC,
            f"cannot save {path}: the disk is full (no space left on device); free some space "
            "and run again: the previous version of the file is intact and training resumes "
            "from the last saved epoch",
        ) from None


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    with _disk_full_is_clear(path), atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a Python file: a full disk raises OSError(ENOSPC)
            torch.save(obj, fh)


def _atomic_text(path: Path, text: str) -> None:
    with _disk_full_is_clear(path):
        atomic_write_text(path, text)


def history_csv_text(history: list[dict[str, Any]]) -> str:
    """The exact text of ``history.csv`` for a checkpoint's history."""
    return pd.DataFrame(history).to_csv(index=False)


def read_history_csv(path: Path, run_dir: Path) -> pd.DataFrame:
    """A ``history.csv`` checked strictly (used only when there is no checkpoint to derive it
    from): UTF-8 text ending in a newline, the engine's columns, epochs 1..n, all numeric."""
    def bad(why: str) -> RunFileError:
        return RunFileError(f"{path} is damaged ({why}); {_retrain(run_dir)}")

    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise bad("not UTF-8 text: binary garbage") from None
    if not text.strip():
        raise bad("empty")
    if not text.endswith("\n"):
        raise bad("cut in the middle of a line")
    try:
        df = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        raise bad(f"not a CSV table: {str(err).splitlines()[0]}") from None
    missing = [c for c in HISTORY_KEYS if c not in df.columns]
    if missing:
        raise bad(f"missing columns {missing}")
    if df.empty:
        raise bad("no rows")
    if not all(pd.api.types.is_numeric_dtype(df[c]) for c in df.columns) or df[
            list(HISTORY_KEYS)].isna().any().any():
        raise bad("non-numeric or missing values")
    if df["epoch"].tolist() != list(range(1, len(df) + 1)):
        raise bad(f"epochs {df['epoch'].tolist()} are not 1..{len(df)}")
    return df


# ---------------------------------------------------------------- locations


def run_dir(run_cfg: RunConfig) -> Path:
    """``<runs_dir>/<run>-s<seed>-<hash>`` (``runs_dir`` resolved against the project root).

    The seed is part of the hash too; it is in the name so that a listing shows the grid."""
    name = f"{run_cfg.run}-s{run_cfg.seed}-{run_hash(run_cfg)}"
    return paths.resolve(run_cfg.runs_dir) / name


def load_run_config(path: str | Path) -> RunConfig:
    """A RunConfig back from a run folder's ``params.yaml``."""
    try:
        tree = yaml.safe_load(Path(path).read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise ParamsError(
            f"{path} is damaged (not valid YAML text: {type(err).__name__}); "
            f"delete {Path(path).parent} to retrain"
        ) from None
    try:
        return build_config_section(RunConfig, tree)
    except ParamsError as err:
        raise ParamsError(f"{path}: {err}") from None


@dataclass
class Run:
    """One run folder. ``status`` is ``"done"``, ``"partial"`` or ``"absent"``."""

    run_cfg: RunConfig
    dir: Path
    _meta: Any = field(default=None, init=False, repr=False, compare=False)

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
    def history_path(self) -> Path:
        return self.dir / HISTORY_FILE

    def _checkpoint_meta(self) -> tuple[int, list[dict[str, Any]]] | None:
        """(epoch, history) of the checkpoint, read memory-mapped (cheap) and cached until the
        file changes; None without a checkpoint."""
        try:
            st = self.checkpoint_path.stat()
        except FileNotFoundError:
            self._meta = None
            return None
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._meta is None or self._meta[0] != key:
            state = self._load_checkpoint("cpu", mmap=True)
            self._meta = (key, (int(state["epoch"]), [dict(r) for r in state["history"]]))
        return self._meta[1]

    @property
    def history(self) -> pd.DataFrame:
        """One row per completed epoch (empty if none has): the checkpoint's history, else a
        strictly checked ``history.csv`` (:func:`read_history_csv`)."""
        meta = self._checkpoint_meta()
        if meta is not None:
            return pd.DataFrame(meta[1])
        if not self.history_path.is_file():
            if self.done:
                raise RunFileError(
                    f"run {self.name!r} in {self.dir} is marked DONE but has neither "
                    f"{CHECKPOINT_FILE} nor {HISTORY_FILE}; {_retrain(self.dir)}"
                )
            return pd.DataFrame()
        df = read_history_csv(self.history_path, self.dir)
        if self.done and len(df) != self.run_cfg.epochs:
            raise RunFileError(
                f"{self.history_path} has {len(df)} epoch(s) but the run is marked DONE after "
                f"{self.run_cfg.epochs} (the file was cut); {_retrain(self.dir)}"
            )
        return df

    @property
    def epochs_done(self) -> int:
        meta = self._checkpoint_meta()
        return meta[0] if meta is not None else len(self.history)

    def reconcile(self) -> Run:
        """Make the folder agree with its checkpoint: rewrite a ``history.csv`` that differs from
        the checkpoint's history (missing, short, long, damaged), and finalize (write ``DONE``) a
        run whose checkpoint holds the last epoch. Writes only when the run's lock is free (a
        trainer holding it writes both itself); returns ``self``."""
        meta = self._checkpoint_meta()
        if meta is None:
            return self
        epoch, history = meta
        want = history_csv_text(history)
        try:
            have = self.history_path.read_bytes()
        except FileNotFoundError:
            have = None
        finish = epoch >= self.run_cfg.epochs and not self.done
        if have == want.encode() and not finish:
            return self
        try:
            with run_lock(self):
                if self._checkpoint_meta() != meta:  # a trainer saved in between: next time
                    return self
                if have != want.encode():
                    _atomic_text(self.history_path, want)
                if finish:
                    mark_done(self)
        except (RunBusyError, OSError):
            pass  # being trained now, or a read-only/full disk: the checkpoint still rules
        return self

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
        if not path.is_file():
            return {}
        try:
            env = json.loads(path.read_bytes().decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise RunFileError(
                f"{path} is damaged (not JSON); it is provenance only: delete that file (it is "
                "rewritten on the next training start) or " + _retrain(self.dir)
            ) from None
        if not isinstance(env, dict):
            raise RunFileError(f"{path} is damaged (not a JSON object); delete that file")
        return env

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
        return self._load_checkpoint(map_location)

    def _load_checkpoint(self, map_location: Any, mmap: bool = False) -> dict[str, Any]:
        """``weights_only=True`` load, then a check of the layout and of the history."""
        path = self.checkpoint_path
        state = load_torch_file(path, what="checkpoint", remedy=_retrain(self.dir),
                                error=RunFileError, map_location=map_location, mmap=mmap)

        def bad(why: str) -> RunFileError:
            return RunFileError(f"checkpoint {path} is inconsistent ({why}); "
                                + _retrain(self.dir))

        if not isinstance(state, dict):
            raise bad(f"a {type(state).__name__}, not a checkpoint dict")
        missing = [k for k in CHECKPOINT_KEYS if k not in state]
        if missing:
            raise bad(f"missing {missing}")
        epoch, history = state["epoch"], state["history"]
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not (
                1 <= epoch <= self.run_cfg.epochs):
            raise bad(f"epoch {epoch!r} is not in 1..{self.run_cfg.epochs}")
        if (not isinstance(history, list) or len(history) != epoch or not all(
                isinstance(r, dict) and r.get("epoch") == i + 1 for i, r in enumerate(history))):
            raise bad(f"its history does not hold epochs 1..{epoch}")
        return state

    def __repr__(self) -> str:
        return f"Run({self.name!r}, {self.describe()}, dir={str(self.dir)!r})"


def open_run(run_cfg: RunConfig) -> Run:
    """The run's folder, reconciled with its checkpoint (:meth:`Run.reconcile`)."""
    return Run(run_cfg=run_cfg, dir=run_dir(run_cfg)).reconcile()


def list_runs(cfg: StudyConfig) -> pd.DataFrame:
    """The run x seed grid of the preset, one row per (run, seed) in preset order: status,
    completed epochs, hash and folder. ``.pivot(index="run", columns="seed", values="status")``
    shows it as a grid."""
    rows = []
    for name in cfg.runs:
        for seed in cfg.seeds:
            r = open_run(resolve_run(cfg, name, seed))
            rows.append(_grid_row(name, seed, r))
    return pd.DataFrame(rows)


def _grid_row(name: str, seed: int, r: Run) -> dict[str, Any]:
    return {
        "run": name,
        "seed": seed,
        "status": r.status,
        "epochs_done": r.epochs_done,
        "epochs": r.run_cfg.epochs,
        "hash": r.hash,
        "dir": str(r.dir),
    }


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
    _atomic_text(r.dir / PARAMS_FILE, dump_params(r.run_cfg))
    env = environment(r.run_cfg, device, world_size)
    try:
        old = r.env
    except RunFileError:  # damaged provenance: rewritten below
        old = {}
    if old.get("started"):
        env["previous_starts"] = old.get("previous_starts", []) + [old.get("started")]
    env["started"] = pd.Timestamp.now(tz="UTC").isoformat()
    _atomic_text(r.dir / ENV_FILE, json.dumps(env, indent=2) + "\n")


def save_epoch(r: Run, state: dict[str, Any]) -> None:
    """Checkpoint first (it carries the history), then its view history.csv (both atomic)."""
    atomic_torch_save(state, r.checkpoint_path)
    _atomic_text(r.history_path, history_csv_text(state["history"]))


def mark_done(r: Run) -> None:
    _atomic_text(r.dir / DONE_FILE, pd.Timestamp.now(tz="UTC").isoformat() + "\n")


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
