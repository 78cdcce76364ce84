"""Loading a PyTorch file safely: ``torch.load(weights_only=True)`` with errors that say what to do.

Used by the run store (checkpoints, ``runs.py``) and by the model (weights files and the ImageNet
hub cache, ``model.py``). A file that holds Python objects besides tensors and plain containers
is refused before anything of it runs; a truncated or garbage file is reported as damaged. The
caller names the file (``what``), the remedy and the exception class to raise.
"""

from __future__ import annotations

import os
import pickletools
import re
import warnings
from pathlib import Path
from typing import Any

import torch


class TorchFileError(ValueError):
    """A PyTorch file is unsafe (a pickle that would run code) or damaged; the message names the
    file and what to do. The default error of :func:`load_torch_file`."""


def _pickle_globals(path: Path, limit: int = 16 * 2**20) -> list[str]:
    """The callables a raw (legacy-format) pickle names, read with ``pickletools`` (which parses
    opcodes and never executes them); [] when the file is not a readable pickle."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit)
        strings: list[str] = []
        found: list[str] = []
        for op, arg, _ in pickletools.genops(data):
            if op.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif isinstance(arg, str):
                strings.append(arg)
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
        return found
    except Exception:
        return []


def _load_failure(err: Exception, path: Path) -> tuple[bool, str]:
    """(unsafe, short reason) of a failed ``torch.load(..., weights_only=True)``; torch's own
    hint to retry with ``weights_only=False`` is dropped (that is exactly what must not happen)."""
    text = str(err)
    found = re.search(r"GLOBAL (\S+)", text)
    if found or "Unsupported global" in text:
        return True, f"it refers to {found.group(1)}" if found else "it refers to Python code"
    code = [g for g in _pickle_globals(path) if not g.startswith(("torch.", "collections."))]
    if code:
        return True, f"it refers to {code[0]}"
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if "weights_only" in first or "Weights only" in first or len(first) > 160:
        first = ""
    return False, type(err).__name__ + (f": {first}" if first else "")


def load_torch_file(
    path: str | os.PathLike,
    *,
    what: str,
    remedy: str,
    error: type[Exception] = TorchFileError,
    map_location: Any = "cpu",
    mmap: bool = False,
) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never code.

    A file holding other Python objects is refused, a truncated or garbage file is reported as
    damaged; both raise ``error`` with a message naming ``what`` + ``path`` and ending with
    ``remedy``. ``mmap`` maps tensor storage instead of reading it (cheap to peek at metadata).
    A missing file is ``FileNotFoundError``.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pickle protocol.*")
            try:
                return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
            except RuntimeError as err:
                if not (mmap and "mmap can only be used" in str(err)):
                    raise
                return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # UnpicklingError, RuntimeError (zip), EOFError, KeyError, ...
        unsafe, reason = _load_failure(err, path)
        if unsafe:
            raise error(
                f"refused to load {what} {path}: {reason}, i.e. it holds Python objects besides "
                "tensors and plain containers, and unpickling it could run code (files written "
                f"by this project never do); {remedy}"
            ) from None
        raise error(
            f"{what} {path} is damaged or not a PyTorch file (truncated, partly written or "
            f"overwritten; {reason}); {remedy}"
        ) from None
