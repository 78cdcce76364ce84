"""Process housekeeping shared by the entry points (``pspnet-train``, ``pspnet-study``, a
notebook's :func:`notebook.setup`): :func:`freeze_imports`, and :func:`die_with_parent` for a
child process that must not outlive the command that started it.

Once the imports are done, the objects they made (torch, torchvision, albumentations, pandas,
matplotlib, IPython: several hundred thousand modules, functions, classes and constants) live as
long as the process. Python's cyclic garbage collector still walks every one of them in each
full collection and once more while the interpreter shuts down. :func:`freeze_imports` moves
them to the permanent generation (``gc.freeze``), where no collection looks; objects made later
(models, batches, figures) are collected as before, and reference counting still frees
everything at once when its last reference goes.

Measured on 2 AMD EPYC cores (bench/README.md, "Process start and exit"): a notebook kernel that
had imported ``pspnet_core.results.explore`` took 2.4-3.0 s from the end of its last cell to the
end of
the notebook under papermill, 0.3 s with the imports frozen.
"""

from __future__ import annotations

import ctypes
import gc
import signal
import sys

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def freeze_imports() -> None:
    """Exempt every object alive now from the cyclic collector, for the rest of the process
    (``gc.freeze``). Call it once the imports are done, in a process of its own: a program's
    entry point or a notebook kernel, not a library caller's process."""
    gc.freeze()


def die_with_parent() -> None:
    """``preexec_fn`` of a child process: the kernel sends it SIGTERM when its parent dies, even
    by SIGKILL (Linux ``prctl(PR_SET_PDEATHSIG)``), so a killed ``pspnet-study`` leaves no
    orphaned ``pspnet-train`` training on. Elsewhere a no-op (the child then outlives a
    SIGKILLed parent, as any process does)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass
