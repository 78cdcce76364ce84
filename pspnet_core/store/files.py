"""What a run folder's files may be and how they are written and read back: regular files only,
bounded reads, atomic and disk-full-safe writes, the history table's columns and value ranges."""

from __future__ import annotations

import errno
import hashlib
import io
import math
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from pspnet_core.system.atomic import atomic_path, atomic_write_text


class RunFileError(RuntimeError):
    """A file of a run folder is damaged, unsafe or inconsistent; the message names the file and
    says what to do (usually: delete the run folder to retrain)."""



class DiskFullError(OSError):
    """A save failed because the disk is full; the previous version of the file is intact."""



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

