"""The one error boundary of every user-facing entry point: ``pspnet-train``, ``pspnet-study``,
``notebook.setup`` (and the notebooks' parameters). Only this module prints an error and maps
it to an exit code; the commands raise.

An expected failure is printed as one line, ``error: <message>``, naming the file, key or value
and what to do, and ends the command with a stable exit code:

    2    bad input: a preset key or value, a data file, a weights file, a launcher option
    1    a failed run or notebook: a damaged or busy run folder, a full or read-only disk, a
         non-finite loss, a failing notebook cell,
         any other OS error
    130  Ctrl-C (or SIGTERM turned into KeyboardInterrupt)

A traceback is printed only with ``--debug`` (or ``PSPNET_DEBUG=1``), or for a real bug (an
exception this module does not know: then it says so). Errors are recognised by class name along
the MRO, so this bottom-layer module imports nothing of the package and every layer's errors
(``config.ParamsError``, ``data.loading.DataError``, ``files.RunFileError``, ...) are known here.

:func:`one_line` also unwraps what a DataLoader worker re-raises ("Caught DataError in
DataLoader worker process 0. Original Traceback ...": the last line is the worker's message) and
truncates long values (:func:`shorten`).
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, TextIO

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

DEBUG_ENV = "PSPNET_DEBUG"
MAX_MESSAGE = 2000  # characters of one error line (a 58 MB YAML value never reaches stderr)

# expected errors, by class name (anywhere in the MRO)
BAD_INPUT = frozenset({
    "ParamsError", "DataError", "DatasetNotFoundError", "WeightsFileError",
    "WeightsUnavailableError", "TorchFileError", "LaunchError", "StudyError",
    "DeviceUnavailableError", "ParameterError", "HomeError", "ResultsFileError",
})
FAILED_RUN = frozenset({
    "RunFileError", "RunBusyError", "RunNotTrainedError", "DiskFullError", "NonFiniteLossError",
    "StudyBusyError", "StudyTrainingError", "StudyFailedError",
})
# OS errors whose errno says what is wrong with a path the user gave or the disk
_OS_HINTS = {
    errno.ENOSPC: "the disk is full; free some space and run again",
    errno.EDQUOT: "the disk quota is exceeded; free some space and run again",
    errno.EROFS: "the file system is read-only; point runs_dir / figures_dir elsewhere",
    errno.EACCES: "permission denied; check the folder's permissions or point the preset's "
                  "folders elsewhere",
    errno.EPERM: "operation not permitted; check the folder's permissions",
    errno.ENAMETOOLONG: "a file name is too long; use shorter preset or run names",
    errno.ENOTDIR: "a path that must be a folder is a file (check PSPNET_HOME, runs_dir, "
                   "data.root)",
    errno.EISDIR: "a path that must be a file is a folder",
    errno.ENOENT: "no such file or folder",
    errno.ELOOP: "too many levels of symbolic links",
}


def shorten(text: Any, limit: int = 200) -> str:
    """``text`` (any object: its ``str``) cut to ``limit`` characters, saying how long it was."""
    s = text if isinstance(text, str) else str(text)
    if len(s) <= limit:
        return s
    return f"{s[:limit]}... ({len(s)} characters)"


def _names(err: BaseException) -> set[str]:
    return {c.__name__ for c in type(err).__mro__}


def exit_code(err: BaseException) -> int | None:
    """2, 1 or 130 for an expected error; None for a bug (an unknown exception)."""
    if isinstance(err, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    names = _names(err)
    if "NotebookError" in names and isinstance(getattr(err, "code", None), int):
        return err.code
    if names & FAILED_RUN:  # first: StudyBusyError and StudyTrainingError are StudyErrors too
        return EXIT_FAILED
    if names & BAD_INPUT:
        return EXIT_BAD_INPUT
    if isinstance(err, OSError):
        return EXIT_FAILED
    if isinstance(err, UnicodeDecodeError):
        return EXIT_BAD_INPUT
    if _worker_message(str(err)) is not None:  # a DataLoader worker's error, re-raised
        return EXIT_BAD_INPUT if "DataError" in str(err) else EXIT_FAILED
    return None


def _worker_message(text: str) -> str | None:
    """The worker's own last line of a DataLoader "Original Traceback", without its class."""
    if "Original Traceback" not in text:
        return None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    last = lines[-1].strip() if lines else ""
    head, sep, rest = last.partition(": ")
    if sep and "." in head and " " not in head:  # "pspnet_core.data.loading.DataError: ..."
        return rest
    return last


def one_line(err: BaseException) -> str:
    """The error as one line (worker tracebacks unwrapped, OS errors explained, truncated)."""
    if isinstance(err, KeyboardInterrupt):
        return "interrupted (Ctrl-C); nothing half-written is kept: run the same command again " \
               "to resume"
    text = str(err)
    worker = _worker_message(text)
    if worker is not None:
        text = worker
    elif isinstance(err, OSError) and not (_names(err) & (BAD_INPUT | FAILED_RUN)):
        hint = _OS_HINTS.get(err.errno or -1)
        where = err.filename if err.filename is not None else ""
        what = err.strerror or text
        text = f"{where}: {what}" if where else what
        if hint and hint != what.lower():
            text += f" ({hint})"
    elif isinstance(err, OSError) and text.startswith("[Errno") and err.strerror:
        text = err.strerror  # DiskFullError and friends: their message, without "[Errno 28]"
    elif isinstance(err, UnicodeDecodeError):
        text = f"a file is not UTF-8 text ({err.reason} at byte {err.start})"
    text = " ".join(text.split()) if "\n" in text else text
    return shorten(text or type(err).__name__, MAX_MESSAGE)


def locate(err: BaseException, where: str) -> None:
    """Mark ``err`` with the run (or file) it happened in; :func:`report` starts its line with
    it (``error: sgd_mix (seed 0): ...``). The innermost mark wins."""
    if getattr(err, "pspnet_where", None) is None:
        try:
            err.pspnet_where = where  # type: ignore[attr-defined]
        except AttributeError:  # an exception type with __slots__: reported without it
            pass


def debug_requested(argv: Sequence[str] | None = None) -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0") or "--debug" in (argv or ())


def report(err: BaseException, *, debug: bool = False, stream: TextIO | None = None,
           prefix: str = "") -> int:
    """Print ``err`` the way the boundary does and return the exit code."""
    stream = stream if stream is not None else sys.stderr
    code = exit_code(err)
    if debug or code is None:
        traceback.print_exception(err, file=stream)
    if code is None:
        print(f"error: an unexpected {type(err).__name__} (a bug in pspnet_core: please report "
              f"it with the traceback above): {shorten(str(err), MAX_MESSAGE)}", file=stream)
        return EXIT_FAILED
    where = getattr(err, "pspnet_where", None)
    prefix = f"{prefix}{where}: " if where else prefix
    print(f"error: {prefix}{one_line(err)}", file=stream)
    return code


def run_main(body: Callable[[], int], argv: Sequence[str] | None = None,
             stream: TextIO | None = None) -> int:
    """``body()`` inside the boundary: its return value, or the exit code of what it raised
    (``SystemExit`` from argparse passes through)."""
    try:
        return body()
    except SystemExit:
        raise
    except BaseException as err:  # noqa: BLE001 - the boundary: every error ends here
        return report(err, debug=debug_requested(argv), stream=stream)
