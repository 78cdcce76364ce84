"""tools/paper_dry.py (`make paper-dry`): its generated inputs are what the real readers and the
real ImageNet loader take, at the paper preset's own paths; its check names what is missing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pspnet_core import data, model
from pspnet_core.config import load_params, resolve_run
from pspnet_core.data.voc import voc_pairs

TOOL = Path(__file__).resolve().parents[1] / "tools" / "paper_dry.py"


@pytest.fixture(scope="module")
def paper_dry():
    spec = importlib.util.spec_from_file_location("paper_dry", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules["paper_dry"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("paper_dry", None)


def test_voc_and_leaf_are_read_by_the_real_readers_at_the_paper_presets_paths(
    paper_dry, tmp_path, monkeypatch
):
    monkeypatch.setenv("PSPNET_HOME", str(tmp_path))
    paper_dry.write_voc(tmp_path / "data", n=4)
    paper_dry.write_leaf(tmp_path / "data" / "leaf-disease", n=5)
    cfg = load_params("paper", {"data.n_train": 2, "data.n_heldout": 2, "data.num_workers": 0,
                                "train.batch_size": 2})

    pairs = voc_pairs(tmp_path / "data", "trainval")  # data.root + voc_root "."
    assert len(pairs) == 4
    train, heldout = data.build_datasets(resolve_run(cfg, "sgd_none"))
    assert (len(train), len(heldout)) == (2, 2)
    sizes = set()
    for ds in (train, heldout):
        for i in range(len(ds)):
            image, mask = ds.load_raw(i)
            sizes.add(image.shape[:2])
            assert mask.shape == image.shape[:2]
            assert set(mask.ravel().tolist()) <= set(range(21)) | {255}
    assert sizes <= {(375, 500), (500, 375)} and (375, 500) in sizes  # VOC's 500x375
    image, label = train[0]  # through the paper pipeline: the 473 px central crop
    assert tuple(image.shape) == (3, 473, 473) and tuple(label.shape) == (473, 473)

    leaf_train, leaf_heldout = data.build_datasets(resolve_run(cfg, "leaf_sgd_affine"))
    assert (len(leaf_train), len(leaf_heldout)) == (4, 1)  # leaf_heldout_fraction 0.2
    image, mask = leaf_train.load_raw(0)
    assert image.shape[:2] in {(375, 500), (500, 375)} and set(mask.ravel().tolist()) <= {0, 1}


def test_generation_is_kept_while_its_parameters_match(paper_dry, tmp_path):
    root = paper_dry.write_voc(tmp_path, n=2)
    jpg = root / "VOCdevkit" / "VOC2012" / "JPEGImages" / "2012_000000.jpg"
    stamp = jpg.stat().st_mtime_ns
    paper_dry.write_voc(tmp_path, n=2)
    assert jpg.stat().st_mtime_ns == stamp
    paper_dry.write_voc(tmp_path, n=3)  # other parameters: a fresh tree
    assert len(list(jpg.parent.glob("*.jpg"))) == 3


def test_weights_are_found_by_the_real_imagenet_loader_offline(paper_dry, tmp_path, monkeypatch):
    path = paper_dry.write_imagenet_weights(tmp_path / "torch")

    def offline(url):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(model, "_download", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert model.imagenet_cache_file() == path
    state = model.imagenet_state_dict()
    assert "layer4.2.bn3.running_var" in state and "fc.weight" in state
    net = model.PSPNet(21, weights="imagenet", freeze_backbone=True)
    assert torch.equal(net.state_dict()["layer4.2.conv3.weight"], state["layer4.2.conv3.weight"])


def test_the_check_names_every_missing_figure_and_claims(paper_dry, tmp_path):
    assert len(paper_dry.missing_outputs(tmp_path)) == len(paper_dry.FIGURES) + 1
    for name in paper_dry.FIGURES[1:]:
        (tmp_path / f"{name}.png").write_bytes(b"png")
    assert paper_dry.missing_outputs(tmp_path) == ["fig01_architecture.png", "claims.md"]
    cmd = paper_dry.study_command()
    assert cmd[1:5] == ["-m", "pspnet_core.study", "--params", "paper"]
    keys = {arg.split("=")[0] for arg in cmd if "=" in arg}
    assert keys == set(paper_dry.OVERRIDES)  # counts only


def test_the_command_fails_naming_what_is_missing_and_passes_when_all_is_written(
    paper_dry, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(paper_dry, "generate",
                        lambda root: {"weights": Path(root) / "torch" / "w.pth"})
    written = list(paper_dry.FIGURES[:-1])
    seen = {}

    def study(cmd, cwd, env, check):  # what the study would write into the dry-run folder
        home = Path(env["PSPNET_HOME"])
        seen.update(home=home, torch=env["TORCH_HOME"], cmd=cmd)
        fig = home / "figures" / "paper"
        fig.mkdir(parents=True)
        (home / "runs").mkdir()
        for name in written:
            (fig / f"{name}.png").write_bytes(b"png")
        if len(written) == len(paper_dry.FIGURES):
            (fig / "claims.md").write_text("# Claims\n")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(paper_dry.subprocess, "run", study)
    assert paper_dry.main(["--root", str(tmp_path)]) == 1
    assert "missing from" in (err := capsys.readouterr().err)
    assert "fig15_leaf_review.png, claims.md" in err
    assert seen["home"] == tmp_path and seen["torch"] == str(tmp_path / "torch")
    assert (tmp_path / "runs").is_dir()  # a failed dry run keeps its runs

    written.append(paper_dry.FIGURES[-1])  # a rerun starts afresh: figures, runs deleted
    assert paper_dry.main(["--root", str(tmp_path)]) == 0
    assert "paper-dry ok" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()
