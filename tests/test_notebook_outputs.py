"""What the repository shows a reader: every smoke figure tracked under figures/smoke/, and
stored notebooks whose outputs carry no warnings and no machine's absolute paths.

Figure names come from two places that must agree: the notebooks' sources (every ``figNN_*``
string literal: the names passed to ``plots.save_figure`` directly or through a variable) and
the table in docs/method.md#figures. ``make study`` regenerates ``figures/smoke/*.png`` (and
``claims.md``); the PDFs and other presets are git-ignored.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pspnet_core.system.paths import SOURCE_ROOT

NOTEBOOKS = sorted((SOURCE_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
FIG_NAME = re.compile(r"""["'](fig\d\d_[A-Za-z0-9_]+)["']""")
# absolute paths of any machine: home folders, temp and work trees, installed packages
ABS_PATH = re.compile(
    r"(/root/|/home/|/Users/|/tmp/|/var/folders/|/work/|site-packages|dist-packages|"
    r"\b[A-Z]:\\)"
)
TEXT_MIME = re.compile(r"^text/|json$")


def _code(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text())
    return "\n".join(
        "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
    )


def notebook_figures() -> set[str]:
    return {m for nb in NOTEBOOKS for m in FIG_NAME.findall(_code(nb))}


def documented_figures() -> set[str]:
    text = (SOURCE_ROOT / "docs" / "method.md").read_text()
    section = text.split("## Figures", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`(fig\d\d_[A-Za-z0-9_]+)`", section))


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=SOURCE_ROOT, capture_output=True, text=True)


def _need_git() -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed: cannot tell which figures are tracked")
    inside = _git("rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        pytest.skip(f"{SOURCE_ROOT} is not a git checkout: cannot tell which files are tracked")


def test_figure_names_are_found_and_documented():
    found, documented = notebook_figures(), documented_figures()
    assert len(found) >= 13, sorted(found)
    assert found == documented, (
        f"only in the notebooks: {sorted(found - documented)}; only in docs/method.md#figures: "
        f"{sorted(documented - found)}"
    )


def test_every_smoke_figure_is_tracked():
    _need_git()
    tracked = set(_git("ls-files", "--", "figures/smoke").stdout.split())
    want = {f"figures/smoke/{name}.png" for name in notebook_figures() | documented_figures()}
    want.add("figures/smoke/claims.md")
    missing = sorted(want - tracked)
    assert not missing, (
        f"{len(missing)} smoke figure file(s) are not tracked in git: {missing}. Run `make "
        "study` and `git add figures/smoke`."
    )


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("figures/smoke/fig01_architecture.png", False),
        ("figures/smoke/claims.md", False),
        ("figures/smoke/fig01_architecture.pdf", True),
        ("figures/paper/fig01_architecture.png", True),
        ("figures/my_folder/claims.md", True),
    ],
)
def test_figure_ignore_rules(path, ignored):
    _need_git()
    res = _git("check-ignore", "-q", "--no-index", path)
    assert res.returncode == (0 if ignored else 1), f"{path}: ignored should be {ignored}"


def _outputs(nb_path: Path):
    """(cell number, output type, text) of every text output of a stored notebook."""
    nb = json.loads(nb_path.read_text())
    for i, cell in enumerate(nb["cells"], 1):
        for out in cell.get("outputs", []):
            kind = out["output_type"]
            if kind == "stream":
                yield i, f"stream:{out['name']}", "".join(out["text"])
            elif kind == "error":
                yield i, "error", "\n".join(out.get("traceback", [])) + out.get("evalue", "")
            else:
                for mime, data in out.get("data", {}).items():
                    if TEXT_MIME.search(mime):
                        text = data if isinstance(data, str) else json.dumps(data)
                        yield i, mime, "".join(text) if isinstance(text, list) else text


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_notebook_has_no_warnings(nb_path):
    found = [
        f"cell {i}: {text.strip().splitlines()[0][:160]}"
        for i, kind, text in _outputs(nb_path)
        if kind == "stream:stderr" and "Warning" in text
    ]
    assert not found, f"{nb_path.name} stores warnings in its outputs: {found}"


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_notebook_has_no_absolute_paths(nb_path):
    found = []
    for i, kind, text in _outputs(nb_path):
        for m in ABS_PATH.finditer(text):
            found.append(f"cell {i} ({kind}): ...{text[max(0, m.start() - 40):m.end() + 40]!r}")
    meta = json.loads(nb_path.read_text())["metadata"]
    m = ABS_PATH.search(json.dumps(meta))
    if m:
        found.append(f"notebook metadata: {m.group(0)!r}")
    assert not found, f"{nb_path.name} stores absolute paths of a machine: {found[:5]}"


BAR = re.compile(r"\d+%\|")  # a tqdm bar's "37%|" (text or its widget's repr)


@pytest.mark.parametrize("nb_path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_notebook_has_no_progress_bars_or_training_log(nb_path):
    """The study trains before the notebooks run, so a stored notebook shows results only: no
    progress bar frozen at some percentage and no epoch lines of a training it did not do."""
    from pspnet_core.train.progress import parse_epoch_line

    found = []
    for i, kind, text in _outputs(nb_path):
        if BAR.search(text) or "jupyter.widget-view" in kind:
            found.append(f"cell {i} ({kind}): a progress bar")
        if any(parse_epoch_line(line) for line in text.splitlines()):
            found.append(f"cell {i} ({kind}): an epoch line")
    nb = json.loads(nb_path.read_text())
    for i, cell in enumerate(nb["cells"], 1):
        for out in cell.get("outputs", []):
            if any("widget-view" in mime for mime in out.get("data", {})):
                found.append(f"cell {i}: a widget")
    assert not found, f"{nb_path.name}: {found[:5]}"
