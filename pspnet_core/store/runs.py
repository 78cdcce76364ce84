"""The run store: ``runs/<run>-s<seed>-<hash>/``, one folder per training run and seed
(docs/architecture.md).

A run folder holds

    params.yaml     the resolved RunConfig (what the hash was computed from)
    env.json        provenance: package versions, code commit, device, seed, host, threads
                    (:func:`pspnet_core.store.provenance.environment`)
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

This module only stores (it builds no network): ``train.grid.get_run`` / ``train.engine.fit``
train into it, ``analysis`` reads trained runs (``analysis.load_model(run)`` rebuilds the
network). An ``flock`` on the run *folder's* file descriptor, held for the whole run, stops two
processes from training the same run at once (the OS releases it if a process dies; deleting the
``.lock`` file, which only records the holder's pid, does not release it). A run that fails
before its first checkpoint leaves no folder behind. Checkpoints are read with
``torchfile.load_torch_file``.

This module is the run state model; what the files may be and how they are written and read
back (regular files only, atomic writes, the history table) is :mod:`pspnet_core.store.files`.
"""

from __future__ import annotations

import json
import os
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
from pspnet_core.store.files import (
    RunFileError,
    _atomic_text,
    _read_bytes,
    _retrain,
    _sha256,
    atomic_torch_save,
    check_history_values,
    check_run_dir,
    history_csv_text,
    read_history_csv,
    regular_file,
)
from pspnet_core.store.provenance import environment
from pspnet_core.system import paths
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


CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "epoch", "history")


# ---------------------------------------------------------------- locations


def run_dir(run_cfg: RunConfig) -> Path:
    """``<runs_dir>/<run>-s<seed>-<hash>`` (``runs_dir`` resolved against the project root).

    The seed is part of the hash too; it is in the name so that a listing shows the grid."""
    name = f"{run_cfg.run}-s{run_cfg.seed}-{run_hash(run_cfg)}"
    return paths.resolve(run_cfg.runs_dir) / name


LEGACY_RUNTIME_KEYS = ("device", "quiet")  # in params.yaml of older runs; ignored when read


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
    if isinstance(tree, dict):
        # params.yaml written before the Runtime split lists the process's device and quiet
        # flag; they were never hashed and are not part of a run: ignore them
        for key in LEGACY_RUNTIME_KEYS:
            tree.pop(key, None)
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
                "train it with pspnet_core.train.grid.get_run(cfg, run) or "
                "python -m pspnet_core.train"
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
