"""The state a study's ``outputs/<preset>/index.html`` records, checked against the study's
hold on the folder: ``running`` only while a process holds the folder's ``flock`` (the study,
``study._study_lock``).

A study killed outright (SIGKILL, a power cut) cannot rewrite its page; whoever reads the state
next does: ``pspnet-study --status``, the next study, and the study's own ``pspnet-train`` child,
which the kernel signals when the study dies (``process.die_with_parent``) and which marks the
page before it exits (``train``). No import of the study itself here: both entry points use it.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

from pspnet_core.system.atomic import atomic_write_text

STUDY_PID_FILE = ".study.pid"
# the environment variable that tells the study's pspnet-train child which folder is its study's
OUTPUTS_ENV = "PSPNET_STUDY_OUTPUTS"
_STATE = re.compile(r'<meta name="pspnet-study" content="pid=(\d+); state=(\w+)">')


def _study_running(out_dir: Path) -> bool:
    """Whether a study holds ``out_dir``'s lock now (a shared, non-blocking probe)."""
    try:
        fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def index_state(outputs_dir: str | Path) -> str:
    """``"absent"``, ``"running"``, ``"finished"`` or ``"interrupted"``: the study state the
    index records, checked. An index that says a study is running while no process holds the
    outputs folder's lock (the study was killed, e.g. SIGKILL or a power cut) is rewritten on this
    read: its running and pending rows become ``interrupted`` / ``not run``."""
    out = Path(outputs_dir)
    target = out / "index.html"
    try:
        page = target.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return "absent"
    found = _STATE.search(page)
    if found is None:
        return "finished"
    pid, state = found.groups()
    if state != "running" or _study_running(out):
        return state
    page = page.replace(found.group(0), f'<meta name="pspnet-study" content="pid={pid}; '
                                         'state=interrupted">')
    page = page.replace('<tr class="running">', '<tr class="interrupted">').replace(
        "<td>running</td>", "<td>interrupted</td>")
    page = page.replace('<tr class="pending">', '<tr class="not-run">').replace(
        "<td>pending</td>", "<td>not run</td>")
    page = page.replace(
        "<strong>study in progress</strong> (this page is rewritten as it goes)",
        f"<strong>study interrupted</strong> (its process, pid {pid}, ended without finishing "
        "this page)")
    atomic_write_text(target, page)
    return "interrupted"
