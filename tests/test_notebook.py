"""support and notebook: which notebooks a preset's runs support (the study skips the
others, a notebook stops saying why)."""

from __future__ import annotations

import pytest

from pspnet_core.config import load_params
from pspnet_core.study.contract import missing_runs
from pspnet_core.study.notebook import NotebookError, augmentation_run, setup

STREETS = {"runs": {"sgd_affine": {"task": "voc", "optimizer": "sgd", "regime": "affine"},
                    "unet_none": {"task": "voc", "optimizer": "sgd", "regime": "none",
                                  "arch": "unet"}},
           "claims.claim6_run": "sgd_affine"}


def test_the_smoke_preset_supports_every_notebook():
    cfg = load_params("smoke")
    for stem in ("01_architecture", "02_augmentation", "04_error_galleries", "05_leaf_disease",
                 "06_claims", "07_explore"):
        assert missing_runs(cfg, stem, {}) is None, stem
    for optimizer in ("sgd", "adam"):
        assert missing_runs(cfg, "03_learning_curves", {"optimizer": optimizer}) is None
    assert augmentation_run(cfg) == "sgd_mix"


def test_a_preset_without_some_runs_says_which_figures_it_cannot_draw():
    cfg = load_params("smoke", STREETS)
    assert missing_runs(cfg, "01_architecture", {}) is None
    assert missing_runs(cfg, "02_augmentation", {}) is None
    assert augmentation_run(cfg) == "sgd_affine"  # no sgd_mix: the first PSPNet VOC run
    assert missing_runs(cfg, "03_learning_curves", {"optimizer": "sgd"}) is None
    assert missing_runs(cfg, "03_learning_curves", {"optimizer": "adam"}) == (
        "preset 'smoke' trains no adam run on the segmentation task (runs: sgd_affine, "
        "unet_none); Fig. 10 needs one")
    why = missing_runs(cfg, "04_error_galleries", {})
    assert "no run 'sgd_mix'" in why and "Figs. 6-9" in why and "run_name" in why
    assert missing_runs(cfg, "04_error_galleries", {"run_name": "sgd_affine"}) is None
    assert missing_runs(cfg, "05_leaf_disease", {}) == (
        "preset 'smoke' trains no leaf run (runs: sgd_affine, unet_none); Figs. 11-15 need one")
    leafy = load_params("smoke", {"runs": {**STREETS["runs"], "my_leaf": {
        "task": "leaf", "optimizer": "sgd", "regime": "affine"}}}, claims__claim6_run="sgd_affine")
    assert "no run 'leaf_sgd_affine'" in missing_runs(leafy, "05_leaf_disease", {})
    assert missing_runs(leafy, "05_leaf_disease", {"run_name": "my_leaf"}) is None
    assert "is not a leaf run" in missing_runs(leafy, "05_leaf_disease",
                                               {"run_name": "sgd_affine"})
    assert missing_runs(cfg, "06_claims", {}) is None
    assert missing_runs(cfg, "07_explore", {}) is None


def test_a_leaf_only_preset_has_no_augmentation_figures():
    cfg = load_params("smoke", {"runs": {"leaf_sgd_affine": {
        "task": "leaf", "optimizer": "sgd", "regime": "affine"}}})
    assert "no PSPNet run" in missing_runs(cfg, "02_augmentation", {})
    with pytest.raises(NotebookError, match="no PSPNet run"):
        augmentation_run(cfg)


def test_setup_stops_a_notebook_whose_optimizer_has_no_run(capsys):
    with pytest.raises(NotebookError, match="trains no adam run"):
        setup("smoke", STREETS, optimizer="adam")
    cfg, _ = setup("smoke", STREETS, optimizer="sgd")
    assert list(cfg.runs) == ["sgd_affine", "unet_none"]
    assert "preset 'smoke'" in capsys.readouterr().out


@pytest.mark.parametrize("example", ["my_folder", "rice_voc"])
def test_the_own_data_examples_train_two_runs_and_say_what_they_skip(example):
    """The README's own-data presets train what they name (two SGD runs), not the paper's
    seven; the study skips the Adam curves and the leaf figures, saying why."""
    from pspnet_core.system.paths import SOURCE_ROOT

    cfg = load_params(SOURCE_ROOT / "params" / "examples" / f"{example}.yaml")
    assert list(cfg.runs) == ["sgd_affine", "sgd_mix"]
    assert "no adam run" in missing_runs(cfg, "03_learning_curves", {"optimizer": "adam"})
    assert "no leaf run" in missing_runs(cfg, "05_leaf_disease", {})
    for stem in ("02_augmentation", "04_error_galleries", "06_claims", "07_explore"):
        assert missing_runs(cfg, stem, {}) is None, stem


def test_the_contract_table_matches_every_notebooks_parameters_cell():
    """The one table (study/contract.py) and each notebook's parameters cell name the same
    parameters in the same order; plan() refuses a notebook that drifted."""
    from pspnet_core.study import contract, plan
    from pspnet_core.system.paths import NOTEBOOKS_DIR

    stems = {p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")}
    assert stems == set(contract.NOTEBOOKS)
    for stem in stems:
        assert plan.declared_parameters(NOTEBOOKS_DIR / f"{stem}.ipynb") == list(
            contract.parameter_names(stem))


def test_setup_refuses_a_name_papermill_injected_that_the_notebook_does_not_take():
    """``-p optimiser adam`` (misspelt) reaches the kernel as a variable of papermill's
    injected cell; setup names it and the valid ones instead of drawing the default figure."""
    from pspnet_core.study.notebook import injected_names

    class Shell:
        user_ns = {"In": ["", "# Parameters\npreset = \"smoke\"\noptimiser = \"adam\"\n"]}

    assert injected_names(Shell()) == {"preset", "optimiser"}
    assert injected_names(type("Bare", (), {"user_ns": {"In": ["x = 1"]}})()) is None


@pytest.mark.slow
def test_papermill_with_a_misspelt_parameter_fails_before_any_figure(tmp_path):
    """The real path: papermill executes notebook 03 with ``-p optimiser adam``; it exits
    non-zero with the one-line error naming the valid parameters, and writes no figure."""
    import os
    import subprocess
    import sys

    from tiny_preset import subprocess_env, write_tiny

    from pspnet_core.system.paths import NOTEBOOKS_DIR

    params = write_tiny(tmp_path)
    out = tmp_path / "03.ipynb"
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", str(NOTEBOOKS_DIR / "03_learning_curves.ipynb"),
         str(out), "-k", "python3", "-p", "preset", str(params), "-p", "optimiser", "adam",
         "--cwd", str(NOTEBOOKS_DIR)],
        env=subprocess_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    text = out.read_text() + proc.stderr
    assert "unknown notebook parameter 'optimiser'" in text
    assert "03_learning_curves's parameters: preset, overrides, optimizer" in text
    figures = [p for p in tmp_path.rglob("*.png")]
    assert figures == [], figures
    assert os.path.isfile(out)
