"""A study's state file, ``outputs/<preset>/study.json``, and the page rendered from it,
``index.html`` (the Jinja2 template ``templates/index.html.j2``).

The state lists every notebook run of the study (name, status, seconds, its HTML and executed
notebook, the figures it wrote, its error or note) and the study's own state: ``running``,
``finished``, ``failed`` (a notebook failed) or ``interrupted``. ``running`` holds only while a
process holds the outputs folder's lock (:mod:`pspnet_core.store.lock`): a study killed outright
(SIGKILL, a power cut) cannot rewrite its page, so whoever reads the state next does
(:func:`index_state`): ``pspnet-study --status``, the next study, and the study's own
``pspnet-train`` child, which the kernel signals when the study dies. ``--status`` and the page
read the same file, so they never disagree.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pspnet_core.store import lock, provenance
from pspnet_core.system.atomic import atomic_write_text

STATE_FILE = "study.json"
INDEX_FILE = "index.html"
STUDY_PID_FILE = ".study.pid"
# the environment variable that tells the study's pspnet-train child which folder is its study's
OUTPUTS_ENV = "PSPNET_STUDY_OUTPUTS"
# the environment variable that tells a study's notebook kernels where their figures go: the
# reference folder figures/<preset> for a whole study, outputs/<preset>/figures for a partial
# one; a notebook run outside a study (JupyterLab, papermill) writes to outputs/<preset>/figures
FIGURES_ENV = "PSPNET_STUDY_FIGURES"
STATES = ("running", "finished", "failed", "interrupted")
TEMPLATE = Path(__file__).parent / "templates" / "index.html.j2"


@dataclass
class Row:
    """One notebook run as the page lists it; paths relative to the outputs folder."""

    name: str
    status: str  # ok | skipped | failed | interrupted | running | pending | not run
    seconds: float | None = None
    html: str | None = None
    ipynb: str | None = None
    figures: list[str] = field(default_factory=list)
    text: str | None = None  # the error, or why it was skipped


def write(out_dir: Path, *, preset: str, state: str, rows: list[Row], figures_dir: Path,
          since: float | None = None, seconds: float | None = None) -> Path:
    """Write the state file, then the page rendered from it (both atomic); the page's path."""
    if state not in STATES:
        raise ValueError(f"study state {state!r} is not one of {STATES}")
    record = {"preset": preset, "pid": os.getpid(), "state": state, "since": since,
              "seconds": seconds, "figures_dir": str(Path(figures_dir).resolve()),
              "rows": [asdict(r) for r in rows]}
    atomic_write_text(out_dir / STATE_FILE, json.dumps(record, indent=1) + "\n")
    return render(out_dir, record)


def read(out_dir: Path) -> dict[str, Any] | None:
    """The state file's record, or None when there is none or it is unreadable."""
    try:
        record = json.loads((out_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("state") in STATES else None


def _href(out_dir: Path, path: Path) -> str:
    return Path(os.path.relpath(path, out_dir)).as_posix()


def _provenance(out_dir: Path, fig_dir: Path) -> dict[str, Any] | None:
    """Per figure its notebook, preset hash, machine and runs read; the code commit; links to
    results.csv, the reproduction report and provenance.json."""
    try:
        data = json.loads((fig_dir / provenance.FILE).read_text())
    except (OSError, ValueError):
        return None
    code = data.get("code", {})
    figures = [{"name": name, "notebook": rec.get("notebook", ""),
                "preset_hash": rec.get("preset_hash", ""),
                "machine": f"{rec.get('cpu', '')} / {rec.get('isa', '')}",
                "runs": ", ".join(f"{r[0]} s{r[1]} ({r[2]})" for r in rec.get("runs", [])) or "-"}
               for name, rec in sorted(data.get("figures", {}).items())]
    files = (out_dir / "results.csv", out_dir / "reproduction.md", fig_dir / provenance.FILE)
    links = [{"href": _href(out_dir, p), "name": p.name} for p in files if p.is_file()]
    return {"commit": str(code.get("commit")), "dirty": bool(code.get("dirty")),
            "links": links, "figures": figures}


def render(out_dir: Path, record: dict[str, Any]) -> Path:
    """``index.html`` from a state record: each notebook's HTML and executed notebook (linked
    when they exist), the figure thumbnails (captioned when older than the study), provenance.
    Links are relative, so the folder tree can be moved or served as is."""
    import jinja2

    fig_dir = Path(record["figures_dir"])
    since = record.get("since")
    rows = []
    for row in record["rows"]:
        shown = dict(row)
        for key in ("html", "ipynb"):
            shown[key] = row[key] if row.get(key) and (out_dir / row[key]).exists() else None
        rows.append(shown)
    figures = [{"href": _href(out_dir, p), "name": p.stem,
                "older": since is not None and p.stat().st_mtime < since}
               for p in (sorted(fig_dir.glob("*.png")) if fig_dir.is_dir() else [])]
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE.parent),
                             autoescape=True, keep_trailing_newline=True)
    page = env.get_template(TEMPLATE.name).render(
        preset=record["preset"], pid=record["pid"], state=record["state"],
        seconds=record.get("seconds"), rows=rows,
        executed=sum(r["status"] not in ("running", "pending", "not run") for r in rows),
        figures=figures, figures_dir=_href(out_dir, fig_dir),
        provenance=_provenance(out_dir, fig_dir))
    target = out_dir / INDEX_FILE
    atomic_write_text(target, page)
    return target


def index_state(outputs_dir: str | Path) -> str:
    """``"absent"``, ``"running"``, ``"finished"``, ``"failed"`` or ``"interrupted"``: the state
    the study recorded, checked. A state that says running while no process holds the outputs
    folder's lock (the study was killed) is rewritten on this read, page included: its running
    and pending rows become ``interrupted`` / ``not run``."""
    out = Path(outputs_dir)
    record = read(out)
    if record is None:
        return "absent"
    if record["state"] != "running" or lock.is_locked(out):
        return record["state"]
    for row in record["rows"]:
        row["status"] = {"running": "interrupted", "pending": "not run"}.get(row["status"],
                                                                            row["status"])
    record["state"] = "interrupted"
    atomic_write_text(out / STATE_FILE, json.dumps(record, indent=1) + "\n")
    render(out, record)
    return "interrupted"
