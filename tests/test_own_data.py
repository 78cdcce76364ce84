"""Own data end to end: an 11-class street-scene preset (void 11, its own class names and
colours, a separate held-out folder) runs the whole study (issue: your data, your questions).

Generated data in the layout such a set ships in (``street_preset.street_folders``). On its own
file so that ``pytest -n 2 --dist loadfile`` can put it beside the rest: it is the longest test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pspnet_core.config import load_params
from pspnet_core.results import explore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from street_preset import STREET, street_folders, street_overrides  # noqa: E402
from tiny_preset import subprocess_env, write_tiny  # noqa: E402


@pytest.mark.slow
def test_own_data_preset_runs_the_whole_study(tmp_path):
    """An 11-class street preset with void 11, its own names and colours and a separate
    held-out folder, that trains two runs (sgd_affine, sgd_mix; 1 seed, 1 epoch): the whole
    study runs on it. The training phase trains both; the notebooks without a run to draw
    (03 for Adam, 05 for the leaf run) are skipped and say why; every other notebook runs,
    shows the preset's classes and never mentions VOC's 21."""
    root = street_folders(tmp_path / "data" / "streets")
    preset = write_tiny(tmp_path, name="streets.yaml", seeds=[0], train={"epochs": 1})
    tree = yaml.safe_load(preset.read_text())
    tree["name"] = "streets"
    tree["quiet"] = False  # epoch lines on
    tree["runs"] = {"sgd_affine": {"regime": "affine"}, "sgd_mix": {"regime": "mix"}}
    tree["figures_dir"] = str(tmp_path / "figures")
    for key, value in street_overrides(root).items():
        tree["data"][key.split(".", 1)[1]] = value
    preset.write_text(yaml.safe_dump(tree))
    proc = subprocess.run(
        [sys.executable, "-m", "pspnet_core.study", "--params", str(preset), "--no-html",
         "--no-progress"],
        cwd=tmp_path, env=subprocess_env(tmp_path, PSPNET_PROGRESS_BARS="0"),
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    out = proc.stdout
    print(out)
    # the training phase: both runs, with the whole grid's ETA after each
    assert "sgd_affine s0 epoch 1/1" in out and "sgd_mix s0 epoch 1/1" in out
    assert "grid: 1/2 (run, seed) done, 1 of 2 epochs left, about" in out
    assert "grid: 2/2 (run, seed) done\n" in out
    assert "03_learning_curves-adam: skipped: preset 'streets' trains no adam run" in out
    assert "05_leaf_disease: skipped: preset 'streets' trains no leaf run" in out
    outputs = tmp_path / "outputs" / "streets"
    ran = sorted(p.stem for p in outputs.glob("*.ipynb"))
    assert ran == ["01_architecture", "02_augmentation", "03_learning_curves-sgd",
                   "04_error_galleries", "06_claims", "07_explore"]
    texts = {}
    for name in ran:
        nb = json.loads((outputs / f"{name}.ipynb").read_text())
        texts[name] = "\n".join(
            "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/html", ""))
            + "".join(o.get("data", {}).get("text/plain", ""))
            for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))
        assert "21 classes" not in texts[name] and "K = 21" not in texts[name], name
        # the notebooks only read: the training phase trained everything first
        assert "epoch 1/1" not in texts[name], name
    assert "K = 11 classes" in texts["01_architecture"]
    assert "bicyclist" in texts["03_learning_curves-sgd"]  # the per-class IoU table
    assert "explorer opens with sgd_mix" in texts["07_explore"]
    figures = sorted(p.stem for p in (tmp_path / "figures" / "streets").glob("fig*.png"))
    assert figures == ["fig01_architecture", "fig02_affine", "fig03_mixup", "fig04_cutmix",
                       "fig05_learning_curves_sgd", "fig06_train_lowest",
                       "fig07_train_highest", "fig08_heldout_lowest", "fig09_heldout_highest"]
    index = (outputs / "index.html").read_text()
    assert index.count("<td>skipped</td>") == 2 and "trains no adam run" in index
    results = pd.read_csv(outputs / "results.csv")
    assert sorted(results["run"]) == ["sgd_affine", "sgd_mix"]

    cfg = load_params(preset)
    ex = explore.Explorer(cfg)
    assert ex.ready_runs() == ["sgd_affine", "sgd_mix"]
    held = ex.table("sgd_affine", 0, "heldout")
    assert len(held) == 3 and all(i.startswith("0016E5") for i in held["id"])
    assert [c for c in held.columns if c.startswith("IoU ")] == [f"IoU {n}" for n in STREET]
    fig = ex.image_figure("sgd_affine", 0, "heldout", int(held["index"].iloc[0]))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "0 sky" in labels and "ignore" in labels
