"""The one lock helper: an exclusive ``flock`` on a folder itself (not on a file one could
delete), the holder's pid recorded in a small file inside it, and a probe that says whether any
process holds it. The run store locks a run folder with it, the study its outputs folder.
Closing the descriptor (or the process ending, SIGKILL included) releases the lock."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from pspnet_core.system.atomic import atomic_write_text

_BUSY = (errno.EAGAIN, errno.EACCES)


def try_lock(folder: Path) -> int | None:
    """An open descriptor of ``folder`` holding its exclusive lock, or None when another
    process holds it. Follows no symbolic link (``OSError`` for a link, a file or nothing)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        os.close(fd)
        if err.errno in _BUSY:
            return None
        raise
    return fd


def is_locked(folder: Path) -> bool:
    """Whether a process holds ``folder``'s lock now (a shared, non-blocking probe that creates
    nothing and follows no link; an absent folder is not locked)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno in _BUSY:
            return True
        raise
    finally:
        os.close(fd)  # releases the probe's shared lock
    return False


def record_holder(folder: Path, pid_file: str) -> None:
    """Write this process's pid into ``folder/pid_file`` (refused when that is not a file)."""
    target = folder / pid_file
    if os.path.lexists(target) and (os.path.islink(target) or not os.path.isfile(target)):
        if os.path.islink(target):
            target.unlink()
        else:
            raise IsADirectoryError(errno.EISDIR, "not a regular file; remove it", str(target))
    atomic_write_text(target, f"{os.getpid()}\n")


def holder(folder: Path, pid_file: str) -> str:
    """The pid recorded in ``folder/pid_file``, or ``"unknown"`` (never blocks on a FIFO)."""
    path = folder / pid_file
    try:
        if not path.is_file():
            return "unknown"
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            text = fh.read(64).decode("ascii", "replace").strip()
        return text if text.isdigit() else "unknown"
    except OSError:
        return "unknown"
