"""The run store: ``runs/<run>-s<seed>-<hash>/``, one folder per training run and seed
(docs/architecture.md).

A run folder holds

    params.yaml     the resolved RunConfig (what the hash was computed from)
    env.json        provenance: package versions, git commit, device, seed, host, threads
    checkpoint.pt   model, optimizer, scheduler, completed epochs, history, run hash, world size
    history.csv     one row per completed epoch (engine.fit documents the columns)
    DONE            written after the last epoch's checkpoint: the run is finished; a small
                    JSON record (run hash, epochs, sha256 of history.csv) that keeps the run
                    "done (weights removed)" when checkpoint.pt is deleted to save space

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

A run is *done* only when its files prove it (:meth:`Run.inspect`): ``DONE`` plus a readable
checkpoint of the last epoch whose stored run hash equals the folder's, with a valid history
(expected columns, epochs 1..N; a ``history.csv`` read without a checkpoint must also hold finite
numbers in range and match the record's sha256). Without ``checkpoint.pt`` but with a matching
record the run is ``done (weights removed)``: its history still serves the figures, and
``checkpoint()`` says that the network must be retrained. Anything else is ``damaged`` (with the
file and the remedy); :func:`list_runs` shows every run, marking damaged ones, and never aborts.
The store opens only regular files (a FIFO or device named ``checkpoint.pt`` is refused, never
read) and never follows a run folder that is a symbolic link.

This module only stores (it builds no network): ``engine.get_run`` / ``engine.fit`` train into
it, ``analysis`` reads trained runs (``analysis.load_model(run)`` rebuilds the network). An
``flock`` on the run *folder's* file descriptor, held for the whole run, stops two processes from
training the same run at once (the OS releases it if a process dies; deleting the ``.lock`` file,
which only records the holder's pid, does not release it). A run that fails before its first
checkpoint leaves no folder behind. Checkpoints are read with ``torchfile.load_torch_file``.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import platform
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from pspnet_core.config import (
    ParamsError,
    RunConfig,
    StudyConfig,
    build_config_section,
    dump_params,
    load_yaml_text,
    resolve_run,
    run_hash,
)
from pspnet_core.store import lock
from pspnet_core.store.provenance import package_version
from pspnet_core.system import paths
from pspnet_core.system.atomic import atomic_path, atomic_write_text
from pspnet_core.system.torchfile import load_torch_file

PARAMS_FILE = "params.yaml"
HISTORY_FILE = "history.csv"
CHECKPOINT_FILE = "checkpoint.pt"
ENV_FILE = "env.json"
DONE_FILE = "DONE"
LOCK_FILE = ".lock"
# what the store itself writes into a run folder before the first checkpoint exists: a run that
# fails then (bad data, a full disk) leaves no folder behind
_STARTUP_FILES = (PARAMS_FILE, ENV_FILE, LOCK_FILE)

DONE_STATES = ("done", "done (weights removed)")
WEIGHTS_REMOVED = "done (weights removed)"


class RunBusyError(RuntimeError):
    """Another process holds this run's lock (it is training it now)."""


class RunNotTrainedError(RuntimeError):
    """The run has no checkpoint (never trained, or its weights were removed)."""


class RunFileError(RuntimeError):
    """A file of a run folder is damaged, unsafe or inconsistent; the message names the file and
    says what to do (usually: delete the run folder to retrain)."""


def load_state(target: Any, state: Any, path: Path, what: str = "model") -> None:
    """``target.load_state_dict(state)`` (a network, optimizer or schedule) with a failure (a
    tensor of another shape, a missing or extra key: a checkpoint of another network) raised as
    :class:`RunFileError` naming the checkpoint file."""
    try:
        target.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as err:
        first = " ".join(str(err).split())[:300]
        raise RunFileError(
            f"{path}: the {what} state does not fit this run's {what} ({first}); the checkpoint "
            f"is of another network or damaged: delete {path.parent} to retrain the run"
        ) from None


class DiskFullError(OSError):
    """A save failed because the disk is full; the previous version of the file is intact."""


CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "epoch", "history")
HISTORY_KEYS = ("epoch", "train_loss", "heldout_loss", "lr")
# every column engine.fit writes, by task: a history.csv with any other column was not written
# by the engine
HISTORY_COLUMNS = {
    "voc": ("epoch", "train_loss", "train_total_loss", "train_clean_loss", "heldout_loss",
            "heldout_miou", "heldout_pixel_acc", "lr", "seconds"),
    "leaf": ("epoch", "train_loss", "train_total_loss", "train_clean_loss", "heldout_loss",
             "heldout_dice", "heldout_iou", "heldout_pixel_acc", "lr", "seconds"),
}
_LOSSES = ("train_loss", "train_total_loss", "train_clean_loss", "heldout_loss")
_FRACTIONS = ("heldout_miou", "heldout_pixel_acc", "heldout_dice", "heldout_iou")
LOSS_MAX = 1e6  # a cross-entropy / BCE far above any real epoch mean: a doctored file
_MAX_TEXT = 16 * 2**20  # history.csv, params.yaml, env.json, DONE: never read more


def _retrain(run_dir: Path) -> str:
    return f"delete {run_dir} to retrain"


# ---------------------------------------------------------------- safe file access


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def regular_file(path: Path, run_dir: Path) -> bool:
    """True for a regular file (links followed), False when absent; anything else (a FIFO that
    would block a reader forever, a device, a folder) is a :class:`RunFileError`."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):  # absent (or a parent is a file)
        return False
    except OSError as err:
        raise RunFileError(f"{path} cannot be read ({err.strerror}); {_retrain(run_dir)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise RunFileError(
            f"{path} is {_kind(st.st_mode)}, not a file the run store wrote; it is never opened: "
            f"remove it or {_retrain(run_dir)}"
        )
    return True


def _read_bytes(path: Path, run_dir: Path, limit: int = _MAX_TEXT) -> bytes | None:
    """The bytes of a regular file (None when absent), at most ``limit``."""
    if not regular_file(path, run_dir):
        return None
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # never blocks, even if swapped for a FIFO
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise RunFileError(f"{path} is larger than {limit} bytes: not a file the run store "
                           f"wrote; {_retrain(run_dir)}")
    return data


def check_run_dir(run_dir: Path, runs_root: Path | None = None) -> None:
    """A run folder must be a real folder inside the runs folder: a symbolic link (to anywhere)
    is refused, so that no sweep or write ever reaches outside ``runs/``."""
    if os.path.islink(run_dir):
        raise RunFileError(
            f"run folder {run_dir} is a symbolic link (to {os.readlink(run_dir)}); the run store "
            "never follows links out of the runs folder: remove the link (its target is "
            "untouched) and train again, or point runs_dir at the real folder"
        )
    if runs_root is not None and os.path.lexists(run_dir):
        real, root = Path(os.path.realpath(run_dir)), Path(os.path.realpath(runs_root))
        if real.parent != root:
            raise RunFileError(f"run folder {run_dir} resolves to {real}, outside {root}; "
                               "remove it")
    if os.path.lexists(run_dir) and not os.path.isdir(run_dir):
        raise RunFileError(f"run folder {run_dir} is a file, not a folder; remove it to train")


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
        kept = ("the previous version of the file is intact and training resumes from the "
                "last saved epoch" if Path(path).exists() else
                "nothing was saved (there was no earlier version), so the run starts again from "
                "its first epoch")
        raise DiskFullError(
            errno.ENOSPC,
            f"cannot save {path}: the disk is full (no space left on device); free some space "
            f"and run again: {kept}",
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


def check_history_values(df: pd.DataFrame, task: str | None = None) -> str | None:
    """Why the history table ``df`` cannot be the engine's (None when it can): the required
    columns, no column the engine never writes (``task`` given), epochs 1..n, numeric values,
    finite losses in [0, LOSS_MAX], lr and seconds finite and >= 0, metrics in [0, 1] (or
    NaN: a held-out set without a class)."""
    missing = [c for c in HISTORY_KEYS if c not in df.columns]
    if missing:
        return f"missing columns {missing}"
    if task in HISTORY_COLUMNS:
        extra = [c for c in df.columns if c not in HISTORY_COLUMNS[task]]
        if extra:
            return f"columns {extra[:5]} that training never writes"
    if df.empty:
        return "no rows"
    if not all(pd.api.types.is_numeric_dtype(df[c]) for c in df.columns):
        return "non-numeric values"
    if df["epoch"].tolist() != list(range(1, len(df) + 1)):
        return f"epochs {df['epoch'].tolist()[:10]} are not 1..{len(df)}"
    for col in df.columns:
        values = df[col].astype(float)
        finite = values.map(math.isfinite)
        if col in _FRACTIONS:
            bad = values[finite & ((values < 0) | (values > 1))]
            if len(bad):
                return f"{col} {float(bad.iloc[0])!r} is outside [0, 1]"
            if values.map(math.isinf).any():
                return f"{col} holds inf"
            continue
        if not finite.all():
            return f"{col} holds {float(values[~finite].iloc[0])!r} (not a finite number)"
        if (values < 0).any():
            return f"{col} holds a negative value {float(values[values < 0].iloc[0])!r}"
        if col in _LOSSES and (values > LOSS_MAX).any():
            return f"{col} holds {float(values[values > LOSS_MAX].iloc[0])!r} (above {LOSS_MAX:g})"
    return None


def read_history_csv(path: Path, run_dir: Path, task: str | None = None) -> pd.DataFrame:
    """A ``history.csv`` checked strictly (used only when there is no checkpoint to derive it
    from): UTF-8 text ending in a newline, the engine's columns, epochs 1..n, finite numbers in
    range (:func:`check_history_values`)."""
    def bad(why: str) -> RunFileError:
        return RunFileError(f"{path} is damaged ({why}); {_retrain(run_dir)}")

    data = _read_bytes(path, run_dir)
    if data is None:
        raise bad("missing")
    try:
        text = data.decode("utf-8")
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
    why = check_history_values(df, task)
    if why:
        raise bad(why)
    return df


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- locations


def run_dir(run_cfg: RunConfig) -> Path:
    """``<runs_dir>/<run>-s<seed>-<hash>`` (``runs_dir`` resolved against the project root).

    The seed is part of the hash too; it is in the name so that a listing shows the grid."""
    name = f"{run_cfg.run}-s{run_cfg.seed}-{run_hash(run_cfg)}"
    return paths.resolve(run_cfg.runs_dir) / name


def load_run_config(path: str | Path) -> RunConfig:
    """A RunConfig back from a run folder's ``params.yaml``."""
    path = Path(path)
    data = _read_bytes(path, path.parent)
    if data is None:
        raise ParamsError(f"{path} does not exist")
    try:
        tree = load_yaml_text(data.decode("utf-8"), str(path))
    except (UnicodeDecodeError, ParamsError) as err:
        why = type(err).__name__ if isinstance(err, UnicodeDecodeError) else "YAMLError"
        raise ParamsError(
            f"{path} is damaged (not valid YAML text: {why}); delete {path.parent} to retrain"
        ) from None
    try:
        return build_config_section(RunConfig, tree)
    except ParamsError as err:
        raise ParamsError(f"{path}: {err}") from None


@dataclass
class Run:
    """One run folder. ``status`` is ``"done"``, ``"done (weights removed)"``, ``"partial"``,
    ``"absent"`` or ``"damaged"`` (:meth:`inspect` says why)."""

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
    def checkpoint_path(self) -> Path:
        return self.dir / CHECKPOINT_FILE

    @property
    def history_path(self) -> Path:
        return self.dir / HISTORY_FILE

    @property
    def done_path(self) -> Path:
        return self.dir / DONE_FILE

    def _has_checkpoint(self) -> bool:
        check_run_dir(self.dir)
        return regular_file(self.checkpoint_path, self.dir)

    def _marked_done(self) -> bool:
        check_run_dir(self.dir)
        return regular_file(self.done_path, self.dir)

    def _checkpoint_meta(self) -> tuple[int, list[dict[str, Any]]] | None:
        """(epoch, history) of the checkpoint, read memory-mapped (cheap) and cached until the
        file changes (a damaged file's error too); None without a checkpoint."""
        if not self._has_checkpoint():
            self._meta = None
            return None
        st = self.checkpoint_path.stat()
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._meta is None or self._meta[0] != key:
            try:
                state = self._load_checkpoint("cpu", mmap=True)
                self._meta = (key, (int(state["epoch"]), [dict(r) for r in state["history"]]),
                              shapes_digest(state["model"]))
            except RunFileError as err:
                self._meta = (key, err, None)
        if isinstance(self._meta[1], RunFileError):
            raise RunFileError(str(self._meta[1]))
        return self._meta[1]

    def _checkpoint_shapes(self) -> str | None:
        """:func:`shapes_digest` of the checkpoint's network (after :meth:`_checkpoint_meta`)."""
        return self._meta[2] if self._meta is not None else None

    def done_record(self) -> dict[str, Any] | None:
        """The JSON record in ``DONE`` (None for an older marker holding only a time)."""
        data = _read_bytes(self.done_path, self.dir, limit=64 * 1024)
        if data is None:
            return None
        try:
            record = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def inspect(self) -> tuple[str, str | None]:
        """``(status, problem)``: what the files prove. Never raises for a damaged folder
        (``problem`` says what is wrong and what to do); OS errors other than damage pass."""
        try:
            return self._inspect(), None
        except (RunFileError, ParamsError) as err:
            return "damaged", str(err)

    def _inspect(self) -> str:
        check_run_dir(self.dir)
        if not os.path.isdir(self.dir):
            return "absent"
        meta = self._checkpoint_meta()
        marked = self._marked_done()
        if meta is not None:
            epoch, history = meta
            why = check_history_values(pd.DataFrame(history))
            if why:
                raise RunFileError(f"checkpoint {self.checkpoint_path} holds a bad history "
                                   f"({why}); {_retrain(self.dir)}")
            recorded = (self.done_record() or {}).get("model_shapes_sha256") if marked else None
            if recorded is not None and recorded != self._checkpoint_shapes():
                raise RunFileError(
                    f"checkpoint {self.checkpoint_path} holds tensors of other shapes than the "
                    f"network run {self.name!r} finished with (recorded in {self.done_path}): it "
                    f"was replaced or edited; {_retrain(self.dir)}"
                )
            if marked and epoch < self.run_cfg.epochs:
                raise RunFileError(
                    f"run {self.name!r} in {self.dir} is marked DONE but its checkpoint holds "
                    f"{epoch} of {self.run_cfg.epochs} epochs; delete {self.done_path} to resume "
                    f"or {_retrain(self.dir)}"
                )
            return "done" if marked else "partial"
        if marked:
            self._weights_free_history()  # raises unless the record vouches for history.csv
            return WEIGHTS_REMOVED
        if regular_file(self.history_path, self.dir) or regular_file(self.dir / PARAMS_FILE,
                                                                     self.dir):
            return "partial"
        return "absent"

    def _weights_free_history(self) -> pd.DataFrame:
        """The history of a finished run whose checkpoint was deleted: ``history.csv`` checked
        strictly and against the sha256 recorded in ``DONE`` when the run finished."""
        if not regular_file(self.history_path, self.dir):
            raise RunFileError(
                f"run {self.name!r} in {self.dir} is marked DONE but has neither "
                f"{CHECKPOINT_FILE} nor {HISTORY_FILE}; {_retrain(self.dir)}"
            )
        df = read_history_csv(self.history_path, self.dir, self.run_cfg.task)
        if len(df) != self.run_cfg.epochs:
            raise RunFileError(
                f"{self.history_path} has {len(df)} epoch(s) but the run is marked DONE after "
                f"{self.run_cfg.epochs} (the file was cut); {_retrain(self.dir)}"
            )
        record = self.done_record()
        if record is None:
            raise RunFileError(
                f"run {self.name!r} in {self.dir}: {CHECKPOINT_FILE} is missing and {DONE_FILE} "
                f"holds no record of the finished history (written by an older version), so "
                f"nothing proves {HISTORY_FILE}; {_retrain(self.dir)}"
            )
        if record.get("run_hash") != self.hash or record.get("epochs") != self.run_cfg.epochs:
            raise RunFileError(
                f"{self.done_path} records run hash {str(record.get('run_hash'))[:16]!r}, "
                f"not this folder's {self.hash!r} (copied from another run); "
                f"{_retrain(self.dir)}"
            )
        data = _read_bytes(self.history_path, self.dir) or b""
        if record.get("history_sha256") != _sha256(data):
            raise RunFileError(
                f"{self.history_path} differs from the history recorded when the run finished "
                f"(edited after training); {CHECKPOINT_FILE} is gone, so it cannot be rebuilt: "
                f"{_retrain(self.dir)}"
            )
        return df

    @property
    def status(self) -> str:
        return self.inspect()[0]

    @property
    def problem(self) -> str | None:
        return self.inspect()[1]

    @property
    def done(self) -> bool:
        return self.status in DONE_STATES

    @property
    def weights_removed(self) -> bool:
        return self.status == WEIGHTS_REMOVED

    @property
    def history(self) -> pd.DataFrame:
        """One row per completed epoch (empty if none has): the checkpoint's history, else the
        recorded ``history.csv`` of a run whose weights were removed, else a strictly checked
        ``history.csv`` (:func:`read_history_csv`)."""
        meta = self._checkpoint_meta()
        if meta is not None:
            return pd.DataFrame(meta[1])
        if self._marked_done():
            return self._weights_free_history()
        if not regular_file(self.history_path, self.dir):
            return pd.DataFrame()
        return read_history_csv(self.history_path, self.dir, self.run_cfg.task)

    @property
    def epochs_done(self) -> int:
        meta = self._checkpoint_meta()
        return meta[0] if meta is not None else len(self.history)

    def reconcile(self) -> Run:
        """Make the folder agree with its checkpoint: rewrite a ``history.csv`` that differs from
        the checkpoint's history (missing, short, long, damaged), and finalize (write ``DONE``
        with its record) a run whose checkpoint holds the last epoch. Writes only when the run's
        lock is free (a trainer holding it writes both itself); returns ``self``, or raises
        :class:`RunFileError` (what is wrong, what to do) for a folder its files do not prove:
        it is neither trained over nor served."""
        self._repair()
        status, problem = self.inspect()
        if status == "damaged":
            raise RunFileError(problem)
        return self

    def _repair(self) -> None:
        check_run_dir(self.dir)
        meta = self._checkpoint_meta()
        if meta is None or check_history_values(pd.DataFrame(meta[1])) is not None:
            return  # nothing to repair from (a bad checkpoint is reported, never copied)
        epoch, history = meta
        want = history_csv_text(history)
        try:
            have = _read_bytes(self.history_path, self.dir)
        except RunFileError:
            have = None
        final = epoch >= self.run_cfg.epochs
        record = self.done_record() if final else None
        finish = final and (record is None or record.get("history_sha256") != _sha256(
            want.encode()) or record.get("run_hash") != self.hash)
        if have == want.encode() and not finish:
            return
        try:
            with run_lock(self):
                if self._checkpoint_meta() != meta:  # a trainer saved in between: next time
                    return
                if have != want.encode():
                    if os.path.lexists(self.history_path) and not os.path.isfile(
                            self.history_path):
                        return  # a FIFO or folder in its place: reported, never replaced
                    _atomic_text(self.history_path, want)
                if finish:
                    mark_done(self, history)
        except (RunBusyError, OSError):
            pass  # being trained now, or a read-only/full disk: the checkpoint still rules
        return

    @property
    def env(self) -> dict[str, Any]:
        path = self.dir / ENV_FILE
        try:
            data = _read_bytes(path, self.dir, limit=2**20)
        except RunFileError as err:
            raise RunFileError(f"{err} (env.json is provenance only)") from None
        if data is None:
            return {}
        try:
            env = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise RunFileError(
                f"{path} is damaged (not JSON); it is provenance only: delete that file (it is "
                "rewritten on the next training start) or " + _retrain(self.dir)
            ) from None
        if not isinstance(env, dict):
            raise RunFileError(f"{path} is damaged (not a JSON object); delete that file")
        return env

    def describe(self) -> str:
        status, problem = self.inspect()
        if status == "partial":
            try:
                return f"partial at epoch {self.epochs_done}/{self.run_cfg.epochs}"
            except RunFileError as err:
                status, problem = "damaged", str(err)
        if status == "damaged":
            return f"damaged: {problem}"
        return status

    def checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        if not self._has_checkpoint():
            if self._marked_done():
                raise RunNotTrainedError(
                    f"run {self.name!r} in {self.dir} is done but its weights were removed "
                    f"({CHECKPOINT_FILE} deleted, e.g. to save space): its history is kept for "
                    f"the figures that need only that; to use the network, {_retrain(self.dir)}"
                )
            raise RunNotTrainedError(
                f"run {self.name!r} has no checkpoint at {self.checkpoint_path}; "
                "train it with engine.get_run(cfg, run) or python -m pspnet_core.train"
            )
        return self._load_checkpoint(map_location)

    def _load_checkpoint(self, map_location: Any, mmap: bool = False) -> dict[str, Any]:
        """``weights_only=True`` load, then a check of the layout, the history and the run
        hash (a checkpoint copied in from another run is refused)."""
        path = self.checkpoint_path
        regular_file(path, self.dir)  # a FIFO would block torch.load forever
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
        stored = state.get("run_hash")  # absent only in checkpoints older than the field
        if stored is not None and stored != self.hash:
            raise RunFileError(
                f"checkpoint {path} belongs to another run (its run hash is "
                f"{str(stored)[:16]!r}, this folder's is {self.hash!r}): it was copied in or "
                f"moved; put it back where it came from or {_retrain(self.dir)}"
            )
        return state

    def __repr__(self) -> str:
        return f"Run({self.name!r}, {self.describe()}, dir={str(self.dir)!r})"


def open_run(run_cfg: RunConfig) -> Run:
    """The run's folder, reconciled with its checkpoint (:meth:`Run.reconcile`)."""
    return Run(run_cfg=run_cfg, dir=run_dir(run_cfg)).reconcile()


def peek_run(run_cfg: RunConfig) -> Run:
    """The run's folder, reconciled where its files allow, never raising for a damaged one
    (listings: its ``status`` is then ``"damaged"`` and ``describe()`` says why)."""
    r = Run(run_cfg=run_cfg, dir=run_dir(run_cfg))
    try:
        r.reconcile()
    except (RunFileError, ParamsError, OSError):
        pass  # reported by r.status / r.describe()
    return r


def list_runs(cfg: StudyConfig) -> pd.DataFrame:
    """The run x seed grid of the preset, one row per (run, seed) in preset order: status,
    completed epochs, hash, folder and ``describe`` (a damaged run says why). One bad run folder
    never hides the others: it is listed as ``damaged``.
    ``.pivot(index="run", columns="seed", values="status")`` shows it as a grid."""
    rows = []
    for name in cfg.runs:
        for seed in cfg.seeds:
            rows.append(_grid_row(name, seed, peek_run(resolve_run(cfg, name, seed))))
    return pd.DataFrame(rows)


def _grid_row(name: str, seed: int, r: Run) -> dict[str, Any]:
    status, _ = r.inspect()
    try:
        epochs_done = r.epochs_done if status != "damaged" else None
        describe = r.describe()
    except (RunFileError, ParamsError) as err:
        status, epochs_done, describe = "damaged", None, f"damaged: {err}"
    return {
        "run": name,
        "seed": seed,
        "status": status,
        "epochs_done": epochs_done,
        "epochs": r.run_cfg.epochs,
        "hash": r.hash,
        "dir": str(r.dir),
        "describe": describe,
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


def environment(run_cfg: RunConfig, device: torch.device, world_size: int = 1) -> dict[str, Any]:
    """What ``env.json`` records."""
    packages = ["torch", "torchvision", "albumentations", "numpy", "pandas", "pillow", "pyyaml"]
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "packages": {p: package_version(p) for p in packages},
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
    remove temp files a killed writer left behind and a ``DONE`` that no finished checkpoint
    backs (called with the run's lock held)."""
    check_run_dir(r.dir, paths.resolve(r.run_cfg.runs_dir))
    r.dir.mkdir(parents=True, exist_ok=True)
    check_run_dir(r.dir, paths.resolve(r.run_cfg.runs_dir))
    for leftover in r.dir.glob(".*.tmp"):  # e.g. half a checkpoint from a SIGKILL mid-save
        if leftover.is_file() and not leftover.is_symlink():
            leftover.unlink(missing_ok=True)
    if os.path.lexists(r.done_path):  # training (again): the run is not done until it ends
        r.done_path.unlink()
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


def shapes_digest(model_state: Any) -> str | None:
    """sha256 of a state dict's sorted (name, shape) pairs; None when it is not a mapping."""
    if not isinstance(model_state, dict):
        return None
    pairs = sorted((str(k), list(getattr(v, "shape", ()))) for k, v in model_state.items())
    return _sha256(json.dumps(pairs).encode())


def mark_done(r: Run, history: list[dict[str, Any]] | None = None) -> None:
    """Write ``DONE``: the finishing time and the weights-free record (run hash, epochs, sha256
    of ``history.csv`` as written from ``history``, default: the checkpoint's), and the digest
    of the network's tensor names and shapes (:func:`shapes_digest`), so a checkpoint replaced
    later by one of another network is reported as damaged, not done."""
    meta = r._checkpoint_meta()
    if history is None:
        history = meta[1] if meta is not None else None
    record: dict[str, Any] = {"finished": pd.Timestamp.now(tz="UTC").isoformat(),
                              "run_hash": r.hash, "epochs": r.run_cfg.epochs}
    if history is not None:
        record["history_sha256"] = _sha256(history_csv_text(history).encode())
    if meta is not None and r._checkpoint_shapes() is not None:
        record["model_shapes_sha256"] = r._checkpoint_shapes()
    _atomic_text(r.done_path, json.dumps(record) + "\n")


def lock_holder(r: Run) -> str | None:
    """The pid recorded in ``.lock`` if a process holds the run's lock now, else None (a
    shared, non-blocking probe of the run folder; creates nothing, follows no link)."""
    return lock.holder(r.dir, LOCK_FILE) if lock.is_locked(r.dir) else None


def _cleanup_failed_start(r: Run) -> None:
    """Training failed before the first checkpoint (bad data, no weights, a full disk): remove
    what the store wrote, so no empty run folder lists as a run. Anything else is kept."""
    try:
        names = [p.name for p in r.dir.iterdir()]
    except OSError:
        return
    if CHECKPOINT_FILE in names:
        return
    ours = [n for n in names if n in _STARTUP_FILES or (n.startswith(".") and n.endswith(".tmp"))]
    if len(ours) != len(names):
        return
    for n in ours:
        p = r.dir / n
        if p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
    try:
        r.dir.rmdir()
    except OSError:
        pass


@contextmanager
def run_lock(r: Run) -> Iterator[None]:
    """Exclusive, non-blocking ``flock`` on the run folder itself, held for the whole block;
    :class:`RunBusyError` if another process holds it. ``.lock`` only records the holder's pid:
    deleting it does not let a second trainer in. A run folder that is a symbolic link is
    refused (:func:`check_run_dir`); a block that fails before the first checkpoint leaves no
    folder behind."""
    root = paths.resolve(r.run_cfg.runs_dir)
    for _ in range(5):
        check_run_dir(r.dir, root)
        r.dir.mkdir(parents=True, exist_ok=True)
        check_run_dir(r.dir, root)
        fd = lock.try_lock(r.dir)
        if fd is None:
            raise RunBusyError(
                f"run {r.name!r} in {r.dir} is being trained by another process "
                f"(pid {lock.holder(r.dir, LOCK_FILE)}); wait for it or stop it")
        try:  # the folder we locked must still be the one at the path (not removed meanwhile)
            same = os.stat(r.dir, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:
        raise RunBusyError(f"run folder {r.dir} keeps being replaced; is another process "
                           "deleting it?")
    ok = False
    try:
        lock_file = r.dir / LOCK_FILE
        if os.path.lexists(lock_file) and not os.path.islink(lock_file) \
                and not os.path.isfile(lock_file):
            raise RunFileError(f"{lock_file} is not a regular file; remove it")
        lock.record_holder(r.dir, LOCK_FILE)
        yield
        ok = True
    finally:
        try:
            if not ok:
                _cleanup_failed_start(r)
            elif [p.name for p in r.dir.iterdir()] == [LOCK_FILE]:
                _cleanup_failed_start(r)
        finally:
            os.close(fd)  # closing releases the lock
