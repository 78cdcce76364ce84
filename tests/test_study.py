"""study.py: plans, kernels, and real papermill runs of throwaway notebooks; sanitize.cfg."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from pspnet_core import study
from pspnet_core.paths import SOURCE_ROOT

PARAMS_CELL = 'preset = "smoke"\noverrides = {}'


def _nb(path: Path, *sources: str, extra_params: str = "", markdown: bool = True) -> Path:
    params = new_code_cell(PARAMS_CELL + extra_params)
    params.metadata["tags"] = ["parameters"]
    cells = [new_markdown_cell("# throwaway")] if markdown else []
    cells += [params] + [new_code_cell(s) for s in sources]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


@pytest.fixture()
def notebooks(tmp_path):
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    figs = tmp_path / "figures" / "smoke"
    _nb(
        nb_dir / "01_figure.ipynb",
        "from matplotlib.figure import Figure\nfrom pspnet_core import plots\n"
        "fig = Figure()\nfig.subplots().plot([0, 1])\n"
        f"plots.save_figure(fig, {str(figs)!r}, 'fig01_test')\n"
        "print('preset', preset, 'overrides', overrides)",
    )
    _nb(
        nb_dir / "02_fail.ipynb",
        "raise ValueError('boom in cell two')",
        "print('never')",
        markdown=False,
    )
    _nb(
        nb_dir / "03_learning_curves.ipynb",
        "print('optimizer is', optimizer)",
        extra_params='\noptimizer = "sgd"',
    )
    (nb_dir / "notes.ipynb").write_text("not a study notebook")  # no NN_ prefix: ignored
    return nb_dir, figs


def test_plan_variants_and_only(notebooks):
    nb_dir, _ = notebooks
    names = [j.name for j in study.plan(nb_dir)]
    assert names == ["01_figure", "02_fail", "03_learning_curves-sgd", "03_learning_curves-adam"]
    jobs = study.plan(nb_dir, ["03"])
    assert [j.parameters for j in jobs] == [{"optimizer": "sgd"}, {"optimizer": "adam"}]
    assert [j.name for j in study.plan(nb_dir, "01, 02")] == ["01_figure", "02_fail"]
    assert [j.name for j in study.plan(nb_dir, ["01", "02_f"])] == ["01_figure", "02_fail"]
    with pytest.raises(study.StudyError, match="matches no notebook.*01_figure"):
        study.plan(nb_dir, "9")
    with pytest.raises(study.StudyError, match="no notebooks"):
        study.plan(nb_dir / "missing")


def test_choose_kernel_falls_back():
    logs = []
    assert study.choose_kernel("no-such-kernel-xyz", logs.append) == "python3"
    assert "not installed" in logs[0]
    assert study.choose_kernel("python3", logs.append) == "python3"


def test_bad_preset_is_a_study_error(notebooks, tmp_path):
    nb_dir, _ = notebooks
    with pytest.raises(study.StudyError, match="no preset"):
        study.run_study("no_such_preset", notebooks_dir=nb_dir, outputs_dir=tmp_path / "o")


@pytest.mark.slow
def test_run_study_success_then_failure(notebooks, tmp_path):
    nb_dir, figs = notebooks
    out = tmp_path / "outputs" / "smoke"
    logs: list[str] = []
    common = dict(
        notebooks_dir=nb_dir,
        outputs_dir=out,
        figures_dir=figs,
        kernel="python3",
        progress_bar=False,
        log=logs.append,
    )
    res = study.run_study("smoke", only=["01", "03"], overrides={"train.epochs": 2}, **common)
    assert res.ok and res.error is None
    assert [r.job.name for r in res.results] == [
        "01_figure",
        "03_learning_curves-sgd",
        "03_learning_curves-adam",
    ]
    assert (figs / "fig01_test.png").is_file()
    for name in ("01_figure", "03_learning_curves-sgd", "03_learning_curves-adam"):
        assert (out / f"{name}.ipynb").is_file() and (out / f"{name}.html").is_file()
    adam = nbformat.read(out / "03_learning_curves-adam.ipynb", as_version=4)
    outputs = "".join(
        o.get("text", "") for c in adam.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "optimizer is adam" in outputs
    first = nbformat.read(out / "01_figure.ipynb", as_version=4)
    assert "'train.epochs': 2" in str(first.cells)
    assert any(re.match(r"\[1/3\] 01_figure: ok in \d+\.\d s", line) for line in logs)
    assert "total wall time" in logs[-1]

    index = res.index.read_text()
    links = re.findall(r'(?:href|src)="([^"]+)"', index)
    assert "01_figure.html" in links and "03_learning_curves-adam.html" in links
    assert "../../figures/smoke/fig01_test.png" in links
    for link in links:  # relative links resolve
        assert not link.startswith("/") and (out / link).exists(), link

    # the full study stops at 02_fail, names it and its cell, and still writes the index
    logs.clear()
    res = study.run_study("smoke", **common)
    assert not res.ok
    assert [r.status for r in res.results] == ["ok", "failed"]
    err = res.error
    assert "notebook 02_fail.ipynb failed in cell 2 " in err and "In [3]" in err
    assert "ValueError: boom in cell two" in err and "raise ValueError" in err
    index = res.index.read_text()
    assert 'class="failed"' in index and "boom in cell two" in index
    assert "02_fail.html" in index and "03_learning_curves" not in index
    assert "FAILED" in logs[-1]


def test_main_exit_codes(monkeypatch, capsys):
    class Fake:
        ok = False
        error = "notebook 02_fail.ipynb failed in cell 2"

    seen = {}

    def fake_run(preset, **kw):
        seen.update(kw, preset=preset)
        return Fake()

    monkeypatch.setattr(study, "run_study", fake_run)
    code = study.main(
        [
            "--params",
            "paper",
            "--only",
            "03",
            "--only",
            "04,05",
            "--override",
            "train.epochs=2",
            "--kernel",
            "k",
        ]
    )
    assert code == 1 and "02_fail.ipynb" in capsys.readouterr().err
    assert seen["preset"] == "paper" and seen["only"] == ["03", "04,05"]
    assert seen["overrides"] == {"train.epochs": 2} and seen["kernel"] == "k"
    Fake.ok = True
    assert study.main([]) == 0 and seen["preset"] == "smoke"

    def bad(preset, **kw):
        raise study.StudyError("no preset 'x'")

    monkeypatch.setattr(study, "run_study", bad)
    assert study.main(["--params", "x"]) == 2


def test_sanitize_cfg():
    from nbval.plugin import get_sanitize_patterns

    text = (SOURCE_ROOT / "notebooks" / "sanitize.cfg").read_text()
    patterns = get_sanitize_patterns(text)
    assert len(patterns) >= 8

    def clean(s: str) -> str:
        for regex, replace in patterns:
            s = re.sub(regex, replace, s)
        return s

    assert clean("runs/sgd_mix-0123456789ab/history.csv") == "runs/sgd_mix-RUNHASH/history.csv"
    assert clean("epoch 3 took 12.3 s") == "epoch 3 took DURATION"
    assert clean("speed 4.56 it/s") == "speed RATE"
    assert clean("<Model at 0x7f3a2c1b9d90>") == "<Model at 0xADDRESS>"
    assert clean("saved /tmp/pytest-1/figs/a.png") == "saved ABSPATH"
    assert clean("started 2024-05-01T12:30:05.123") == "started DATE"
    assert clean("at 12:30:05") == "at TIME"
    # what must stay comparable is left alone
    stable = "stem (1, 128, 25, 25) 112,448 params, 23 layers, 3 shapes"
    assert clean(stable) == stable
