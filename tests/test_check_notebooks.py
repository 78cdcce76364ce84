"""tools/check_notebooks.py (`make test-notebooks`): the grid's two training lanes come from the
preset and cover every run once; nbval and the lanes write under their own project root."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_preset import write_tiny

from pspnet_core.config import load_params

TOOL = Path(__file__).resolve().parents[1] / "tools" / "check_notebooks.py"


@pytest.fixture(scope="module")
def check_notebooks():
    spec = importlib.util.spec_from_file_location("check_notebooks", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_lanes_split_voc_pspnet_runs_from_the_rest(check_notebooks):
    voc, rest = check_notebooks.lanes("smoke")
    runs = load_params("smoke").runs
    assert sorted(voc + rest) == sorted(runs) and not set(voc) & set(rest)
    assert all(runs[n].task == "voc" and runs[n].arch == "pspnet" for n in voc)
    # the last VOC PSPNet run goes with the leaf run and the U-Net (the lanes end together)
    pspnet_voc = [n for n, s in runs.items() if s.task == "voc" and s.arch == "pspnet"]
    assert voc == pspnet_voc[:-1]
    assert {(runs[n].task, runs[n].arch) for n in rest} == {("leaf", "pspnet"), ("voc", "unet"),
                                                            ("voc", "pspnet")}


def test_a_preset_with_only_voc_runs_has_an_empty_second_lane(check_notebooks, tmp_path):
    preset = write_tiny(tmp_path, name="two.yaml")
    tree = yaml.safe_load(preset.read_text())
    tree["runs"] = {"sgd_affine": {"regime": "affine"}, "adam_mix": {"optimizer": "adam",
                                                                      "regime": "mix"}}
    preset.write_text(yaml.safe_dump(tree, sort_keys=False))
    assert check_notebooks.lanes(str(preset)) == (["sgd_affine", "adam_mix"], [])


def test_children_run_one_thread_and_only_the_lanes_and_nbval_in_the_test_home(
        check_notebooks):
    lane = check_notebooks.child_env(home=True)
    dry = check_notebooks.child_env(home=False)
    assert lane["OMP_NUM_THREADS"] == dry["OMP_NUM_THREADS"] == "1"
    assert Path(lane["PSPNET_HOME"]) == check_notebooks.HOME
    assert check_notebooks.HOME.is_relative_to(check_notebooks.SOURCE_ROOT / "outputs")
    assert dry.get("PSPNET_HOME") == os.environ.get("PSPNET_HOME")  # paper-dry sets its own
    cmd = check_notebooks.train_cmd("smoke", ["sgd_none"])
    assert cmd[1:] == ["-m", "pspnet_core.train", "--params", "smoke", "--quiet", "sgd_none"]
    assert sys.executable == cmd[0]


def test_an_unknown_preset_is_one_line_with_exit_2_and_starts_nothing(tmp_path):
    proc = subprocess.run([sys.executable, str(TOOL), "--preset", "no-such-preset"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no preset 'no-such-preset'" in proc.stderr and "Traceback" not in proc.stderr
    assert "check-notebooks times" not in proc.stdout  # no lane, nbval or paper-dry ran
