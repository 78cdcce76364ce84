"""The fault suite (issue 9): every bad file, name, value and kill ends in a clear error, with
nothing lost and nothing executed.

One table, one row per fault. A row builds its fault in a fresh folder, names what must not
change (a run folder, a dataset tree, the whole folder), runs the action and expects either an
error whose text matches ``match`` (``error`` set) or a recovery (``error`` None, ``check`` says
what was repaired). The test hashes the watched files before and after: nothing already saved
may change (files a recovery repairs are listed in ``may_change``), and the pickle payload's
marker file must never appear. Rows that train a model are ``slow``; the determinism test with
loader workers is at the end.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import pickle
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image
from tiny_preset import history_equal, subprocess_env, write_tiny
from torch import nn

from pspnet_core import model as model_mod
from pspnet_core.config import ParamsError, load_params, parse_overrides, resolve_run
from pspnet_core.data import synthetic
from pspnet_core.data.leaf import LeafDataset, leaf_pairs
from pspnet_core.data.loading import DataError
from pspnet_core.data.voc import VOCDataset, voc_colormap, voc_pairs
from pspnet_core.results import analysis
from pspnet_core.store import runs, studystate
from pspnet_core.store.files import DiskFullError, RunFileError, history_csv_text
from pspnet_core.study import cli, execute, plan
from pspnet_core.train import cli as train
from pspnet_core.train import engine
from pspnet_core.train.grid import get_run

MARKER_NAME = "PAYLOAD_RAN"


# ---------------------------------------------------------------- helpers


class Payload:
    """Unpickling this object would create the marker file (what an attacker's code would do)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def snapshot(paths: list[Path], skip: tuple[str, ...] = (".lock",)) -> dict[str, str]:
    """sha256 of every file under ``paths`` (files or folders; symlinks as their target)."""
    out: dict[str, str] = {}
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            if p.name not in skip:
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def history_rows(n: int) -> list[dict[str, Any]]:
    return [{"epoch": e, "train_loss": 1.0 / e, "train_total_loss": 1.4 / e,
             "heldout_loss": 1.1 / e, "heldout_miou": 0.1 * e, "heldout_pixel_acc": 0.5,
             "lr": 0.01, "seconds": 1.5} for e in range(1, n + 1)]


def fake_run(tmp: Path, epochs_saved: int = 2, done: bool = False, run: str = "adam_none"):
    """A run folder written by the store's own functions (no training): a tiny 'model' state,
    the tiny preset's 3 epochs, ``epochs_saved`` of them in the checkpoint."""
    params = write_tiny(tmp / "home")
    rc = resolve_run(load_params(params), run)
    r = runs.Run(rc, runs.run_dir(rc))
    with runs.run_lock(r):
        runs.start_run(r, torch.device("cpu"))
        state = {"model": {"w": torch.arange(4.0)}, "optimizer": {"state": {}, "param_groups": []},
                 "scheduler": {"last_epoch": epochs_saved}, "epoch": epochs_saved,
                 "history": history_rows(epochs_saved), "run_hash": r.hash, "world_size": 1}
        runs.save_epoch(r, state)
        if done:
            runs.mark_done(r)
    return r


def write_preset(tmp: Path, text: str) -> Path:
    path = tmp / "bad.yaml"
    path.write_text(text)
    return path


def tiny_yaml(tmp: Path, **over: Any) -> Path:
    """The tiny preset with dotted overrides applied, as a YAML file."""
    params = write_tiny(tmp / "home")
    tree = yaml.safe_load(params.read_text())
    for dotted, value in over.items():
        node = tree
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    params.write_text(yaml.safe_dump(tree))
    return params


def voc_tree(root: Path, ids: list[str], mask: str = "png", list_text: str | None = None,
             mask_values: int = 1, image_size=(32, 32), mask_size=(32, 32)) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / d).mkdir(parents=True, exist_ok=True)
    for i in ids:
        Image.new("RGB", image_size, (90, 120, 30)).save(voc / "JPEGImages" / f"{i}.jpg")
        label = np.zeros(mask_size[::-1], np.uint8)
        label[8:20, 8:20] = mask_values
        if mask == "png":
            m = Image.fromarray(label, "P")
            m.putpalette(voc_colormap().flatten().tolist())
            m.save(voc / "SegmentationClass" / f"{i}.png")
        else:  # a grayscale JPEG written under the .png name VOC expects
            Image.fromarray(label, "L").save(voc / "SegmentationClass" / f"{i}.png", "JPEG")
    text = list_text if list_text is not None else "".join(f"{i}\n" for i in ids)
    (voc / "ImageSets" / "Segmentation" / "trainval.txt").write_text(text)
    return root


def leaf_tree(root: Path, mask: Image.Image, fmt: str = "PNG") -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    Image.new("RGB", mask.size, (40, 160, 40)).save(root / "images" / "leaf_0.jpg")
    mask.save(root / "masks" / "leaf_0.png", fmt)
    return root


def rgb_mask(background, spot=(255, 255, 255), size=(24, 24)) -> Image.Image:
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[:] = background
    arr[6:14, 6:14] = spot
    return Image.fromarray(arr, "RGB")


def gray_mask(values=(0, 255), mode="L", size=(24, 24)) -> Image.Image:
    arr = np.full((size[1], size[0]), values[0], np.uint8)
    arr[6:14, 6:14] = values[1]
    return Image.fromarray(arr, mode)


def pspnet_weights_check(path: Path) -> Callable[[], Any]:
    def act():
        model_mod.load_weights(model_mod.PSPNet(num_classes=2), path)
    return act


# ---------------------------------------------------------------- rows


@dataclass
class Case:
    act: Callable[[], Any]
    watch: list[Path]
    check: Callable[[Any], None] | None = None
    may_change: tuple[str, ...] = ()


@dataclass
class Row:
    id: str
    setup: Callable[[Path, pytest.MonkeyPatch], Case]
    error: type[BaseException] | tuple[type[BaseException], ...] | None
    match: str = ""
    slow: bool = False


# -- loading never executes


def _pickle_checkpoint(how: str):
    def setup(tmp, mp):
        r = fake_run(tmp, 2)
        torch.save({"model": Payload(tmp / MARKER_NAME), "epoch": 2}, r.checkpoint_path)
        cfg = r.run_cfg
        act = {"open": lambda: runs.open_run(cfg), "checkpoint": lambda: r.checkpoint(),
               "load_model": lambda: analysis.load_model(r), "fit": lambda: engine.fit(cfg),
               "history": lambda: r.history}[how]
        return Case(act, [tmp])
    return setup


def _pickle_weights(kind: str):
    def setup(tmp, mp):
        path = tmp / "weights.pth"
        if kind == "torch":
            torch.save({"layer1.0.conv1.weight": Payload(tmp / MARKER_NAME)}, path)
        else:  # a bare pickle (the legacy format)
            path.write_bytes(pickle.dumps(Payload(tmp / MARKER_NAME)))
        return Case(lambda: model_mod.read_state_dict(path), [tmp])
    return setup


def _hub_cache(content: str):
    def setup(tmp, mp):
        mp.setenv("TORCH_HOME", str(tmp / "torch"))
        mp.setattr(model_mod, "_download", lambda url: pytest.fail("tried to download"))
        path = model_mod.imagenet_cache_file()
        path.parent.mkdir(parents=True)
        if content == "pickle":
            torch.save({"fc.weight": Payload(tmp / MARKER_NAME)}, path)
        else:
            buf = io.BytesIO()
            torch.save({"w": torch.zeros(1000)}, buf)
            path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        return Case(lambda: model_mod.imagenet_state_dict(), [tmp])
    return setup


def _damaged_checkpoint(content: bytes | None):
    def setup(tmp, mp):
        r = fake_run(tmp, 2)
        if content is None:  # cut in half
            data = r.checkpoint_path.read_bytes()
            r.checkpoint_path.write_bytes(data[: len(data) // 2])
        else:
            r.checkpoint_path.write_bytes(content)
        return Case(lambda: runs.open_run(r.run_cfg), [tmp])
    return setup


def _checkpoint_layout(state: dict):
    def setup(tmp, mp):
        r = fake_run(tmp, 2)
        torch.save(state, r.checkpoint_path)
        return Case(lambda: r.checkpoint(), [tmp])
    return setup


def _weights_file(content: str):
    def setup(tmp, mp):
        path = tmp / "weights.pth"
        if content == "truncated":
            buf = io.BytesIO()
            torch.save({"w": torch.zeros(5000)}, buf)
            path.write_bytes(buf.getvalue()[:3000])
        elif content == "garbage":
            path.write_text("<html>404 not found</html>")
        elif content == "not_a_dict":
            torch.save([torch.zeros(2)], path)
        elif content == "resnet18":
            from torchvision.models import resnet18
            torch.save(resnet18(weights=None).state_dict(), path)
            return Case(pspnet_weights_check(path), [tmp])
        elif content == "missing":
            return Case(lambda: model_mod.read_state_dict(tmp / "nowhere.pth"), [tmp])
        return Case(lambda: model_mod.read_state_dict(path), [tmp])
    return setup


# -- a run's state lives in one place


def _finalize(via: str):
    def setup(tmp, mp):
        r = fake_run(tmp, 3)  # the last epoch saved, then killed before DONE
        assert not r.done

        def act():
            if via == "fit":
                return engine.fit(r.run_cfg), runs.open_run(r.run_cfg)
            return None, runs.open_run(r.run_cfg)

        def check(out):
            hist, opened = out
            assert opened.done and opened.status == "done" and opened.describe() == "done"
            assert list(opened.history["epoch"]) == [1, 2, 3]
            if hist is not None:
                assert list(hist["epoch"]) == [1, 2, 3]
        return Case(act, [r.checkpoint_path, r.dir / "params.yaml"], check)
    return setup


def _history(kind: str, with_checkpoint: bool, done: bool = False):
    def setup(tmp, mp):
        r = fake_run(tmp, 3 if done else 2, done=done)
        h = r.history_path
        text = h.read_text()
        if kind == "short":
            h.write_text("".join(text.splitlines(keepends=True)[:2]))  # header + one row
        elif kind == "long":
            h.write_text(text + text.splitlines(keepends=True)[-1].replace("2,", "3,", 1))
        elif kind == "cut":
            h.write_text(text[: len(text) - 9])  # mid-line
        elif kind == "binary":
            h.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00garbage")
        elif kind == "empty":
            h.write_text("")
        elif kind == "missing":
            h.unlink()
        if not with_checkpoint:
            r.checkpoint_path.unlink()
            return Case(lambda: runs.open_run(r.run_cfg).history, [tmp])

        def check(opened):
            want = history_csv_text(history_rows(3 if done else 2))
            assert r.history_path.read_text() == want  # rewritten from the checkpoint
            assert len(opened.history) == (3 if done else 2)
        return Case(lambda: runs.open_run(r.run_cfg), [r.checkpoint_path], check)
    return setup


def _env_garbage(tmp, mp):
    r = fake_run(tmp, 2)
    (r.dir / "env.json").write_bytes(b"\xff{not json")
    return Case(lambda: r.env, [tmp])


def _params_garbage(tmp, mp):
    r = fake_run(tmp, 2)
    (r.dir / "params.yaml").write_text("run: [unclosed\n")
    return Case(lambda: runs.load_run_config(r.dir / "params.yaml"), [tmp])


def _second_trainer(tmp, mp):
    r = fake_run(tmp, 1)

    def act():
        with runs.run_lock(r):
            engine.fit(r.run_cfg)
    return Case(act, [tmp])


def _stale_lock(tmp, mp):
    r = fake_run(tmp, 3)
    (r.dir / ".lock").write_text("999999\n")  # left by a dead process: no flock is held

    def check(opened):
        assert opened.done  # the lock was free: the run was finalized
    return Case(lambda: runs.open_run(r.run_cfg), [r.checkpoint_path], check)


def _killed_save(tmp, mp):
    r = fake_run(tmp, 2)
    leftover = r.dir / ".checkpoint.pt.killed.tmp"
    leftover.write_bytes(b"half a checkpoint")

    def act():
        with runs.run_lock(r):
            runs.start_run(r, torch.device("cpu"))

    def check(_):
        assert not leftover.exists() and r.checkpoint()["epoch"] == 2
    return Case(act, [r.checkpoint_path, r.history_path], check)


def _disk_full_patched(which: str):
    def setup(tmp, mp):
        r = fake_run(tmp, 2)
        state = r.checkpoint()
        state["epoch"], state["history"] = 3, history_rows(3)

        def full(*a, **k):
            raise OSError(errno.ENOSPC, "No space left on device")

        def check(_):
            assert not list(r.dir.glob(".*.tmp"))  # no half-written temp file left
            if which == "history":  # the checkpoint (the truth) was saved whole before
                assert r.checkpoint()["epoch"] == 3

        if which == "checkpoint":
            mp.setattr(torch, "save", full)
            return Case(lambda: runs.save_epoch(r, state), [tmp], check)
        mp.setattr(Path, "write_bytes", lambda self, *a, **k: full())
        return Case(lambda: runs.save_epoch(r, state), [r.history_path], check)
    return setup


def _disk_full_tmpfs(tmp, mp):
    mnt = tmp / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    mp.setattr(_disk_full_tmpfs, "mounted", mnt, raising=False)
    params = write_tiny(tmp / "home", runs_dir=str(mnt / "runs"))
    rc = resolve_run(load_params(params), "adam_none")
    r = runs.Run(rc, runs.run_dir(rc))
    with runs.run_lock(r):
        runs.start_run(r, torch.device("cpu"))
        small = {"model": {"w": torch.zeros(4)}, "optimizer": {}, "scheduler": {}, "epoch": 1,
                 "history": history_rows(1), "run_hash": r.hash, "world_size": 1}
        runs.save_epoch(r, small)
    big = dict(small, model={"w": torch.zeros(400_000)}, epoch=2, history=history_rows(2))
    return Case(lambda: runs.save_epoch(r, big), [mnt])


# -- validation at the edge


def _preset(**over):
    def setup(tmp, mp):
        path = tiny_yaml(tmp, **over)
        return Case(lambda: load_params(path), [tmp])
    return setup


def _preset_text(text: str):
    def setup(tmp, mp):
        path = write_preset(tmp, text.replace("MARKER", str(tmp / MARKER_NAME)))
        return Case(lambda: load_params(path), [tmp])
    return setup


def _override(item: str):
    def setup(tmp, mp):
        params = write_tiny(tmp / "home")
        return Case(lambda: load_params(params, parse_overrides([item])), [tmp])
    return setup


def _lr_nan_fit(tmp, mp):
    params = write_tiny(tmp / "home")

    def act():
        get_run(load_params(params, {"sgd.lr": float("nan")}), "sgd_mix")
    return Case(act, [tmp])


def _absolute_paths(tmp, mp):
    mp.setenv("PSPNET_HOME", str(tmp / "elsewhere"))
    params = write_tiny(tmp / "home", figures_dir=str(tmp / "figs"))

    def act():
        cfg = load_params(params)
        return cfg, runs.run_dir(resolve_run(cfg, "adam_none"))

    def check(out):
        cfg, run_dir = out
        assert Path(cfg.runs_dir).is_absolute() and run_dir.parent == tmp / "home" / "runs"
        assert Path(cfg.data.root).is_absolute()
    return Case(act, [tmp], check)


# -- data edge cases


def _voc_ids(line: str):
    def setup(tmp, mp):
        (tmp / "outside").mkdir()
        (tmp / "outside" / "secret.jpg").write_bytes(b"secret")
        root = voc_tree(tmp / "voc", ["a", "b"], list_text=f"a\n{line}\nb\n")
        return Case(lambda: voc_pairs(root), [tmp])
    return setup


def _voc_item(**kw):
    def setup(tmp, mp):
        root = voc_tree(tmp / "voc", ["a"], **kw)
        return Case(lambda: VOCDataset(voc_pairs(root), None)[0], [tmp])
    return setup


def _voc_corrupt_image(tmp, mp):
    root = voc_tree(tmp / "voc", ["a"])
    (root / "VOCdevkit/VOC2012/JPEGImages/a.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return Case(lambda: VOCDataset(voc_pairs(root), None)[0], [tmp])


def _voc_rgb_mask(tmp, mp):
    root = voc_tree(tmp / "voc", ["a"])
    rgb_mask((0, 0, 0), spot=(1, 2, 3), size=(32, 32)).save(
        root / "VOCdevkit/VOC2012/SegmentationClass/a.png")
    return Case(lambda: VOCDataset(voc_pairs(root), None)[0], [tmp])


def _leaf(mask_fn: Callable[[], Image.Image], fmt: str = "PNG", ok: bool = False):
    def setup(tmp, mp):
        root = leaf_tree(tmp / "leaf", mask_fn(), fmt)

        def act():
            return LeafDataset(leaf_pairs(root), None)[0]

        def check(item):
            _, target = item
            assert set(target.unique().tolist()) == {0.0, 1.0}
            assert int(target.sum()) == 64  # the 8x8 spot only, never the background
        return Case(act, [tmp], check if ok else None)
    return setup


def _synthetic_swap(tmp, mp):
    root = synthetic.ensure_synthetic_leaf(tmp / "leaf", 4, 64, seed=0)
    pairs = leaf_pairs(root)  # a reader has listed the files of the first generation
    first = snapshot([p.mask for p in pairs] + [p.image for p in pairs])

    def act():
        synthetic.ensure_synthetic_leaf(tmp / "leaf", 6, 64, seed=1)  # another preset
        return pairs

    def check(listed):
        assert snapshot([p.mask for p in listed] + [p.image for p in listed]) == first
        LeafDataset(listed, None)[0]  # the reader still reads its own generation
        assert len(leaf_pairs(root)) == 6  # new readers see the new one
    return Case(act, [p.mask for p in pairs] + [p.image for p in pairs], check)


CKPT = RunFileError
DELETE = r"delete .*adam_none-\S+ to retrain"
PARAMS = ParamsError

ROWS: list[Row] = [
    # loading never executes
    Row("pickle-checkpoint-open", _pickle_checkpoint("open"), CKPT,
        r"refused to load checkpoint .*checkpoint\.pt: it refers to (io|builtins)\.open.*could run "
        r"code.*" + DELETE),
    Row("pickle-checkpoint-load_model", _pickle_checkpoint("checkpoint"), CKPT,
        r"refused to load checkpoint .*checkpoint\.pt"),
    Row("pickle-checkpoint-fit", _pickle_checkpoint("fit"), CKPT, r"refused to load checkpoint"),
    Row("pickle-weights-file", _pickle_weights("torch"), model_mod.WeightsFileError,
        r"refused to load weights file .*weights\.pth: it refers to (io|builtins)\.open"),
    Row("pickle-weights-legacy-format", _pickle_weights("legacy"), model_mod.WeightsFileError,
        r"refused to load weights file .*weights\.pth"),
    Row("pickle-hub-cache", _hub_cache("pickle"), model_mod.WeightsFileError,
        r"refused to load the cached ImageNet weights file .*resnet50-11ad3fa6\.pth.*delete"),
    # damaged files
    Row("checkpoint-truncated", _damaged_checkpoint(None), CKPT,
        r"checkpoint .*checkpoint\.pt is damaged or not a PyTorch file.*" + DELETE),
    Row("checkpoint-garbage", _damaged_checkpoint(os.urandom(4096)), CKPT,
        r"checkpoint .*checkpoint\.pt is damaged.*" + DELETE),
    Row("checkpoint-text", _damaged_checkpoint(b"hello, not a checkpoint"), CKPT,
        r"checkpoint .*checkpoint\.pt is damaged"),
    Row("checkpoint-empty", _damaged_checkpoint(b""), CKPT, r"checkpoint\.pt is damaged"),
    Row("checkpoint-missing-keys", _checkpoint_layout({"model": {}}), CKPT,
        r"checkpoint .*checkpoint\.pt is inconsistent \(missing \['optimizer'.*" + DELETE),
    Row("checkpoint-history-mismatch", _checkpoint_layout(
        {"model": {}, "optimizer": {}, "scheduler": {}, "epoch": 2,
         "history": history_rows(1)}), CKPT, r"its history does not hold epochs 1\.\.2"),
    Row("weights-truncated", _weights_file("truncated"), model_mod.WeightsFileError,
        r"weights file .*weights\.pth is damaged or not a PyTorch file.*replace it"),
    Row("weights-garbage", _weights_file("garbage"), model_mod.WeightsFileError,
        r"weights file .*weights\.pth is damaged"),
    Row("weights-not-a-state-dict", _weights_file("not_a_dict"), model_mod.WeightsFileError,
        r"weights\.pth does not hold a state dict \(got list\)"),
    Row("weights-missing-file", _weights_file("missing"), FileNotFoundError,
        r"weights file .*nowhere\.pth does not exist"),
    Row("weights-resnet18", _weights_file("resnet18"), model_mod.WeightsFileError,
        r"weights\.pth does not cover the ResNet50 backbone: \d+ of \d+ layer1\.\.layer4 "
        r"tensors are missing.*layer1\.0\.conv3\.weight"),
    Row("hub-cache-truncated", _hub_cache("truncated"), model_mod.WeightsFileError,
        r"^(?!.*weights_only=False).*cached ImageNet weights file .*resnet50-11ad3fa6\.pth is "
        r"damaged.*delete .* so that it is downloaded again"),
    # a run's state lives in one place
    Row("killed-before-DONE-open", _finalize("open"), None),
    Row("killed-before-DONE-fit", _finalize("fit"), None),
    Row("history-one-row-short", _history("short", True), None),
    Row("history-one-row-long", _history("long", True), None),
    Row("history-cut-mid-line", _history("cut", True), None),
    Row("history-binary-garbage", _history("binary", True), None),
    Row("history-empty", _history("empty", True), None),
    Row("history-missing", _history("missing", True), None),
    Row("history-cut-done-run", _history("cut", True, done=True), None),
    Row("history-cut-no-checkpoint", _history("cut", False), CKPT,
        r"history\.csv is damaged \(cut in the middle of a line\); " + DELETE),
    Row("history-short-done-no-checkpoint", _history("short", False, done=True), CKPT,
        r"history\.csv has 1 epoch\(s\) but the run is marked DONE after 3.*" + DELETE),
    Row("history-binary-no-checkpoint", _history("binary", False), CKPT,
        r"history\.csv is damaged \(not UTF-8 text: binary garbage\); " + DELETE),
    Row("history-empty-no-checkpoint", _history("empty", False), CKPT,
        r"history\.csv is damaged \(empty\)"),
    Row("env-json-garbage", _env_garbage, CKPT, r"env\.json is damaged \(not JSON\)"),
    Row("params-yaml-garbage", _params_garbage, PARAMS,
        r"params\.yaml is damaged \(not valid YAML text.*delete .* to retrain"),
    Row("second-trainer", _second_trainer, runs.RunBusyError,
        r"is being trained by another process \(pid \d+\)"),
    Row("stale-lock", _stale_lock, None),
    Row("killed-during-save", _killed_save, None),
    Row("disk-full-checkpoint", _disk_full_patched("checkpoint"), DiskFullError,
        r"cannot save .*checkpoint\.pt: the disk is full.*previous version of the file is "
        r"intact"),
    Row("disk-full-history", _disk_full_patched("history"), DiskFullError,
        r"cannot save .*history\.csv: the disk is full"),
    Row("disk-full-tmpfs", _disk_full_tmpfs, DiskFullError,
        r"cannot save .*checkpoint\.pt: the disk is full"),
    # validation at the edge
    Row("rotate-nan", _preset(**{"augment.rotate": float("nan")}), PARAMS,
        r"augment\.rotate: nan is not allowed; expected a finite number"),
    Row("scale_min-nan", _preset(**{"augment.scale_min": float("nan")}), PARAMS,
        r"augment\.scale_min: nan is not allowed"),
    Row("leaf_heldout_fraction-nan", _preset(**{"data.leaf_heldout_fraction": float("nan")}),
        PARAMS, r"data\.leaf_heldout_fraction: nan is not allowed"),
    Row("aux_weight-inf", _preset(**{"model.aux_weight": float("inf")}), PARAMS,
        r"model\.aux_weight: inf is not allowed"),
    Row("adam-lr-minus-inf-yaml", _preset_text("adam:\n  lr: -.inf\n"), PARAMS,
        r"adam\.lr: -inf is not allowed"),
    Row("sgd-lr-nan-override", _override("sgd.lr=.nan"), PARAMS,
        r"sgd\.lr: nan is not allowed"),
    Row("sgd-lr-nan-no-run-folder", _lr_nan_fit, PARAMS, r"sgd\.lr: nan is not allowed"),
    Row("seed-1e29", _preset(seeds=[10**29]), PARAMS, r"seeds\[0\]: 1000+ is out of range"),
    Row("seed-2**32", _preset(seeds=[2**32]), PARAMS, r"seeds: \[4294967296\] must be distinct "
        r"integers in \[0, 4294967295\]"),
    Row("split_seed-2**32", _preset(**{"data.split_seed": 2**32}), PARAMS,
        r"data\.split_seed: 4294967296 is out of range"),
    Row("n_train-huge", _preset(**{"data.n_train": 10**9}), PARAMS,
        r"data\.n_train: 1000000000 is out of range; allowed \[1, 1000000\]"),
    Row("synthetic-images-huge", _preset(**{"data.synthetic_voc_images": 10**7}), PARAMS,
        r"data\.synthetic_voc_images: 10000000 is out of range"),
    Row("name-dotdot-path", _preset(name="../notebooks"), PARAMS,
        r"name: '\.\./notebooks' is not a valid name"),
    Row("name-absolute", _preset(name="/etc/passwd"), PARAMS, r"name: '/etc/passwd' is not a "
        r"valid name"),
    Row("name-html", _preset(name="<script>alert(1)</script>"), PARAMS,
        r"name: '<script>alert\(1\)</script>' is not a valid name"),
    Row("name-dotdot", _preset(name="a..b"), PARAMS, r"name: 'a\.\.b' is not a valid name"),
    Row("run-name-path", _preset(runs={"../x": {"task": "voc"}}), PARAMS,
        r"runs\.\.\./x: '\.\./x' is not a valid name"),
    Row("run-name-html", _preset(runs={"<b>x</b>": {"task": "voc"}}), PARAMS,
        r"is not a valid name"),
    Row("yaml-syntax", _preset_text("train: {epochs: 3\n"), PARAMS, r"bad\.yaml: not valid YAML"),
    Row("yaml-python-tag", _preset_text(
        "name: !!python/object/apply:builtins.open ['MARKER', 'w']\n"), PARAMS,
        r"bad\.yaml: not valid YAML.*python/object/apply"),
    Row("yaml-unknown-key", _preset(**{"train.epoch": 3}), PARAMS,
        r"unknown key 'train\.epoch'; allowed keys at train: .*epochs"),
    Row("yaml-wrong-type", _preset(**{"train.epochs": "three"}), PARAMS,
        r"train\.epochs: expected an integer, got 'three'"),
    Row("yaml-top-level-list", _preset_text("- 1\n- 2\n"), PARAMS,
        r"expected a mapping at the top level"),
    Row("absolute-paths-work", _absolute_paths, None),
    # data edge cases
    Row("voc-id-parent", _voc_ids("../../outside/secret"), DataError,
        r"trainval\.txt, line 2: image id '\.\./\.\./outside/secret' is not a single file name"),
    Row("voc-id-subfolder", _voc_ids("sub/x"), DataError,
        r"trainval\.txt, line 2: image id 'sub/x' is not a single file name"),
    Row("voc-id-absolute", _voc_ids("/etc/passwd"), DataError,
        r"trainval\.txt, line 2: image id '/etc/passwd' is not a single file name"),
    Row("voc-jpeg-mask", _voc_item(mask="jpeg"), DataError,
        r"mask .*a\.png is a JPEG image: masks must be lossless"),
    Row("voc-corrupt-image", _voc_corrupt_image, DataError,
        r"cannot read image .*a\.jpg \(corrupt or not an image\)"),
    Row("voc-size-mismatch", _voc_item(mask_size=(30, 32)), DataError,
        r"image/mask size mismatch: image .*a\.jpg is 32x32 .* mask .*a\.png is 30x32"),
    Row("voc-label-out-of-range", _voc_item(mask_values=40), DataError,
        r"mask .*a\.png: values \[40\] are outside 0\.\.20"),
    Row("voc-rgb-mask-unknown-colour", _voc_rgb_mask, DataError,
        r"mask .*a\.png: RGB colours .* are not in the VOC colour map"),
    Row("leaf-rgb-near-black-background", _leaf(lambda: rgb_mask((2, 2, 2))), DataError,
        r"leaf mask .*leaf_0\.png: values \[2, 255\] found; a leaf mask holds 0"),
    Row("leaf-rgb-coloured", _leaf(lambda: rgb_mask((0, 0, 0), spot=(200, 30, 30))), DataError,
        r"mask .*leaf_0\.png: an RGB mask with coloured pixels"),
    Row("leaf-gray-0-128", _leaf(lambda: gray_mask((0, 128))), DataError,
        r"leaf mask .*leaf_0\.png: values \[0, 128\] found"),
    Row("leaf-jpeg-mask", _leaf(lambda: gray_mask((0, 255)), fmt="JPEG"), DataError,
        r"mask .*leaf_0\.png is a JPEG image"),
    Row("leaf-rgb-gray-accepted", _leaf(lambda: rgb_mask((0, 0, 0))), None),
    Row("leaf-gray-0-38-accepted", _leaf(lambda: gray_mask((0, 38))), None),
    Row("synthetic-regenerated-under-reader", _synthetic_swap, None),
]

# -- issue 18: rows at the API the notebooks call (the CLI rows are in CLI_ROWS below)


def _weights_removed(act: str):
    def setup(tmp, mp):
        r = fake_run(tmp, 3, done=True)
        r.checkpoint_path.unlink()  # deleted to save space

        def check(out):
            assert list(out["epoch"]) == [1, 2, 3] and out.equals(
                pd.DataFrame(history_rows(3)))
        if act == "load_model":
            return Case(lambda: analysis.load_model(runs.open_run(r.run_cfg)), [tmp])
        return Case(lambda: runs.open_run(r.run_cfg).history, [tmp], check)
    return setup


def _leaf_image(kind: str):
    """A leaf folder of one pair whose image is a photo as users have them."""
    def setup(tmp, mp):
        root = tmp / "leaf"
        (root / "images").mkdir(parents=True)
        (root / "masks").mkdir(parents=True)
        mask = gray_mask((0, 255), size=(24, 32) if kind == "exif-6-mismatch" else (24, 24))
        mask.save(root / "masks" / "leaf_0.png")
        img_path = root / "images" / "leaf_0.png"
        if kind == "16bit-gray":
            arr = np.full((24, 24), 30000, np.uint16)
            arr[:12] = 65535
            Image.fromarray(arr).save(img_path)  # mode I;16: a 16-bit grayscale PNG
        elif kind == "16bit-rgb":
            arr = np.full((24, 24, 3), 30000, np.uint16)
            arr[:12] = 65535
            img_path.write_bytes(png16_rgb(arr))
        elif kind == "float":  # a floating-point TIFF under a .png name (read by content)
            Image.fromarray(np.full((24, 24), 0.5, np.float32)).save(img_path, "TIFF")
        elif kind.startswith("exif-6"):
            img_path = root / "images" / "leaf_0.jpg"
            exif = Image.Exif()
            exif[0x0112] = 6  # stored landscape, displayed rotated 90 degrees
            size = (32, 24) if kind == "exif-6-mismatch" else (24, 24)
            Image.new("RGB", size, (40, 160, 40)).save(img_path, exif=exif.tobytes())
        elif kind == "bomb-mask":
            Image.new("RGB", (24, 24), (40, 160, 40)).save(img_path)
            (root / "masks" / "leaf_0.png").write_bytes(bomb_png(40000, 40000))

        def check(raw):
            image, _ = raw
            if kind in ("16bit-gray", "16bit-rgb"):  # scaled by 1/257, not clipped to white
                assert image[0, 0].tolist() == [255] * 3
                assert abs(image[-1, -1].astype(int) - 30000 / 257).max() <= 1
            else:  # read as stored, exactly as its mask: EXIF is not applied
                assert image.shape[:2] == (24, 24)
                assert np.array_equal(image, np.asarray(Image.open(img_path).convert("RGB")))
        ok = kind in ("16bit-gray", "16bit-rgb", "exif-6-square")
        return Case(lambda: LeafDataset(leaf_pairs(root), None).load_raw(0), [tmp],
                    check if ok else None)
    return setup


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming ``width`` x ``height`` gray pixels, with almost no data: what
    a decompression bomb looks like to a reader before it decodes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1))  # one row; the rest is missing
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def png16_rgb(arr: np.ndarray) -> bytes:
    """A 48-bit (16 bits per channel) RGB PNG of ``arr`` (H, W, 3) uint16, written by hand
    (Pillow cannot write one)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def _done_run_with_network(tmp: Path) -> runs.Run:
    """A finished tiny run whose checkpoint holds a real (untrained) PSPNet: what
    analysis.ranked_losses reads."""
    params = write_tiny(tmp / "home")
    rc = resolve_run(load_params(params), "adam_none")
    r = runs.Run(rc, runs.run_dir(rc))
    torch.manual_seed(0)
    net = model_mod.build_model(rc.model, rc.num_classes)
    with runs.run_lock(r):
        runs.start_run(r, torch.device("cpu"))
        runs.save_epoch(r, {"model": net.state_dict(), "optimizer": {}, "scheduler": {},
                            "epoch": 3, "history": history_rows(3), "run_hash": r.hash})
        runs.mark_done(r)
    return r


def _tamper_npz(path: Path, kind: str, run_hash: str) -> None:
    """Rewrite a signed analysis cache: a plausible hand edit of its losses that keeps the
    signature, a whole file of another run (signed for that run), or garbage."""
    if kind == "garbage":
        path.write_bytes(b"\xff\xfe\x00garbage\x89PNG")
        return
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if kind == "edited":
        arrays["loss"] = arrays["loss"][::-1] * 10
    elif kind == "other-run":
        assert str(arrays.pop(analysis.CACHE_RUN)) == run_hash
        arrays.pop(analysis.CACHE_DIGEST)
        arrays["loss"] = arrays["loss"] * 0.5 + 1  # another run's numbers
        other = "0" * len(run_hash)
        digest = analysis._arrays_digest(other, arrays)
        arrays[analysis.CACHE_RUN], arrays[analysis.CACHE_DIGEST] = (np.asarray(other),
                                                                     np.asarray(digest))
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def _loss_cache(kind: str):
    """The caches analysis.ranked_losses reads, both kinds: predictions' (its n images are the
    whole split) and its own (a subset): an edited, damaged or foreign file is recomputed."""
    def setup(tmp, mp):
        r = _done_run_with_network(tmp)

        def ranked():
            return [analysis.ranked_losses(r, "heldout", n=n, seed=0) for n in (2, 1)]
        first = ranked()
        paths = [analysis._ranked_cache(r, "heldout", n, 0) for n in (2, 1)]
        assert paths[0] == analysis._predictions_cache(r, "heldout") and paths[1] != paths[0]
        for path in paths:
            _tamper_npz(path, kind, r.hash)

        def check(again):
            for got, want in zip(again, first, strict=True):
                pd.testing.assert_frame_equal(got, want)  # recomputed, never the file's values
            for path in paths:  # and rewritten, signed for this run
                assert analysis._read_cache(r, path, analysis.RANKED_KEYS) is not None
        return Case(ranked, [r.checkpoint_path], check)
    return setup


def _params_alias(tmp, mp):
    r = fake_run(tmp, 2)
    (r.dir / "params.yaml").write_text("a: &x [1, 2]\nb: *x\n")
    return Case(lambda: runs.load_run_config(r.dir / "params.yaml"), [tmp])


def _checkpoint_bad_history(tmp, mp):
    r = fake_run(tmp, 2)
    state = r.checkpoint()
    state["history"][1]["train_loss"] = float("nan")
    torch.save(state, r.checkpoint_path)
    return Case(lambda: runs.open_run(r.run_cfg), [tmp])


def _done_early(tmp, mp):
    r = fake_run(tmp, 2)
    runs.mark_done(r)  # DONE after 2 of 3 epochs
    return Case(lambda: runs.open_run(r.run_cfg), [tmp])


ISSUE18_ROWS: list[Row] = [
    Row("done-weights-removed-history-serves", _weights_removed("history"), None),
    Row("done-weights-removed-load-model", _weights_removed("load_model"),
        runs.RunNotTrainedError, r"is done but its weights were removed \(checkpoint\.pt "
        r"deleted.*" + DELETE),
    Row("checkpoint-history-nan", _checkpoint_bad_history, CKPT,
        r"checkpoint .*checkpoint\.pt holds a bad history \(train_loss holds nan"),
    Row("done-before-last-epoch", _done_early, CKPT,
        r"is marked DONE but its checkpoint holds 2 of 3 epochs; delete .*DONE to resume"),
    Row("params-yaml-alias", _params_alias, PARAMS, r"params\.yaml is damaged"),
    Row("png-16bit-gray-scaled", _leaf_image("16bit-gray"), None),
    Row("png-16bit-rgb-scaled", _leaf_image("16bit-rgb"), None),
    Row("tiff-float-refused", _leaf_image("float"), DataError,
        r"image .*leaf_0\.png: floating-point pixels \(mode F\) are not a photo"),
    Row("exif-rotated-mismatch-says-exif", _leaf_image("exif-6-mismatch"), DataError,
        r"image/mask size mismatch: image .*leaf_0\.jpg is 32x24.*EXIF orientation 6 "
        r"\(viewers show it rotated, as 24x32\)"),
    Row("exif-rotated-read-as-stored", _leaf_image("exif-6-square"), None),
    Row("decompression-bomb-mask", _leaf_image("bomb-mask"), DataError,
        r"image .*masks/leaf_0\.png is too large to decode safely"),
    Row("loss-cache-edited", _loss_cache("edited"), None, slow=True),
    Row("loss-cache-garbage", _loss_cache("garbage"), None, slow=True),
    Row("loss-cache-other-run", _loss_cache("other-run"), None, slow=True),
]
ROWS += ISSUE18_ROWS


@pytest.mark.parametrize(
    "row", [pytest.param(r, id=r.id, marks=[pytest.mark.slow] if r.slow else []) for r in ROWS])
def test_fault(row: Row, tmp_path, monkeypatch):
    monkeypatch.setenv("PSPNET_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PSPNET_STOP_AFTER_EPOCH", raising=False)
    marker = tmp_path / MARKER_NAME
    try:
        case = row.setup(tmp_path, monkeypatch)
        before = snapshot(case.watch)
        if row.error is not None:
            with pytest.raises(row.error, match=re.compile(row.match, re.DOTALL)) as err:
                case.act()
            assert "Traceback" not in str(err.value)
            result = None
        else:
            result = case.act()
        after = snapshot(case.watch)
        changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        changed = {k for k in changed if not any(k.endswith(m) for m in case.may_change)}
        if row.error is None:  # recoveries may write the derived files, never the saved state
            changed = {k for k in changed if Path(k).name not in ("history.csv", "DONE")}
        assert not changed, f"saved files changed: {sorted(changed)}"
        assert not marker.exists(), "the pickle payload ran"
        if case.check is not None:
            case.check(result)
    finally:
        mnt = getattr(_disk_full_tmpfs, "mounted", None)
        if mnt is not None and row.id == "disk-full-tmpfs":
            subprocess.run(["umount", str(mnt)], check=False)


def test_the_table_has_forty_rows_or_more():
    assert len(ROWS) >= 40 and len({r.id for r in ROWS}) == len(ROWS)


# ---------------------------------------------------------------- issue 18: the entry points
#
# Each row runs a real entry point: ``pspnet-train`` (``train.main`` in-process, or a
# subprocess where a fault could hang it), ``pspnet-study`` (``cli.main``) or a notebook cell
# (an IPython shell running ``notebook.setup``). It asserts the exit code and the one-line
# message, that no ``Traceback`` appears (``traceback=True``: that one does), and that the watched
# files did not change.


@dataclass
class Entry:
    argv: list[str]
    watch: list[Path]
    tool: str = "train"  # train | study | subprocess | cell (argv[0] is the cell's code)
    check: Callable[[str, str], None] | None = None  # (stdout, stderr)
    hold: Callable[[], Any] | None = None  # a context held while the entry point runs
    may_change: tuple[str, ...] = ()


@dataclass
class CliRow:
    id: str
    setup: Callable[[Path, pytest.MonkeyPatch], Entry]
    code: int
    match: str
    stream: str = "err"
    slow: bool = False
    traceback: bool = False


def tiny_params(tmp: Path, **sections: Any) -> Path:
    return write_tiny(tmp / "home", **sections)


def no_run_folder(tmp: Path) -> Callable[[str, str], None]:
    def check(out, err):
        runs_dir = tmp / "home" / "runs"
        assert not runs_dir.exists() or list(runs_dir.iterdir()) == [], "a run folder was left"
    return check


def _cli(*argv: str, tool: str = "train", **kw: Any):
    """A row whose fault is only in the arguments (the tiny preset, nothing else)."""
    def setup(tmp, mp):
        params = tiny_params(tmp)
        args = [a.replace("PARAMS", str(params)) for a in argv]
        if tool != "cell":
            args = ["--params", str(params), *args] if "--params" not in args else args
        return Entry(args, [tmp / "home"], tool=tool, **kw)
    return setup


def _preset_file(content: bytes | str, *argv: str):
    def setup(tmp, mp):
        path = tmp / "preset.yaml"
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
        return Entry(["--params", str(path), *argv], [tmp])
    return setup


BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
    for p, c in zip("abcdef", "bcdefg", strict=True)) + "name: *g\n"


def _params_folder(suffix: str):
    def setup(tmp, mp):
        folder = tmp / f"presets{suffix}"
        folder.mkdir()
        return Entry(["--params", str(folder), "--list"], [tmp])
    return setup


def _home_is_file(*args: str):
    def setup(tmp, mp):
        params = write_tiny(tmp / "p", runs_dir="runs")  # relative: under PSPNET_HOME
        home = tmp / "homefile"
        home.write_text("not a folder\n")
        mp.setenv("PSPNET_HOME", str(home))
        return Entry(["--params", str(params), *args], [tmp])
    return setup


def _home_is_empty(tmp, mp):
    params = write_tiny(tmp / "p", runs_dir="runs")
    mp.setenv("PSPNET_HOME", "")
    return Entry(["--params", str(params), "--list"], [tmp])


def _device_cuda(tmp, mp):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    params = tiny_params(tmp)
    return Entry(["--params", str(params), "--device", "cuda", "--run", "adam_none"], [tmp],
                 check=no_run_folder(tmp))


def _long_run_name(tmp, mp):
    params = tiny_params(tmp, runs={"r" * 250: {"task": "voc"}})
    return Entry(["--params", str(params), "--run", "all"], [tmp], check=no_run_folder(tmp))


def _fit_raises(exc: BaseException):
    def setup(tmp, mp):
        params = tiny_params(tmp)

        def fit(*a, **k):
            raise exc
        mp.setattr(engine, "fit", fit)
        return Entry(["--params", str(params), "--run", "adam_none"], [tmp])
    return setup


def _leaf_folder(tmp: Path, bad: str) -> Path:
    """A leaf folder of 10 pairs (24 px), one image replaced by ``bad``."""
    root = tmp / "leafdata"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for i in range(10):
        Image.new("RGB", (24, 24), (40, 160, 40)).save(root / "images" / f"leaf_{i}.png")
        gray_mask((0, 255)).save(root / "masks" / f"leaf_{i}.png")
    target = root / "images" / "leaf_3.png"
    if bad == "corrupt":
        target.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    elif bad == "bomb":
        target.write_bytes(bomb_png(40000, 40000))
    return root


def _leaf_train(bad: str, workers: int = 0):
    def setup(tmp, mp):
        root = _leaf_folder(tmp, bad)
        params = tiny_params(tmp, data={"leaf_source": "folder", "leaf_root": str(root),
                                        "num_workers": workers})
        return Entry(["--params", str(params), "--run", "leaf_sgd_affine"], [tmp],
                     check=no_run_folder(tmp))
    return setup


def _list_with_bad_checkpoint(tmp, mp):
    r = fake_run(tmp, 2)
    r.checkpoint_path.write_bytes(b"garbage, not a checkpoint")

    def check(out, err):
        lines = {ln.split()[0]: ln for ln in out.splitlines() if not ln.startswith("#")}
        assert set(lines) == {"sgd_mix", "adam_none", "leaf_sgd_affine"}
        assert "absent" in lines["sgd_mix"] and "absent" in lines["leaf_sgd_affine"]
    return Entry(["--params", str(tmp / "home" / "tiny.yaml"), "--list"], [tmp], check=check)


def _damaged_debug(tmp, mp):
    r = fake_run(tmp, 2)
    r.checkpoint_path.write_bytes(b"garbage, not a checkpoint")
    return Entry(["--params", str(tmp / "home" / "tiny.yaml"), "--run", "adam_none", "--debug"],
                 [tmp])


def _weights_removed_cli(*argv: str, history: str | None = None, old_marker: bool = False):
    """A finished run whose checkpoint.pt was deleted (to save space); ``history`` edits
    history.csv afterwards; ``old_marker`` writes DONE as older versions did (a time only)."""
    def setup(tmp, mp):
        r = fake_run(tmp, 3, done=True)
        r.checkpoint_path.unlink()
        if old_marker:
            r.done_path.write_text("2026-01-01T00:00:00+00:00\n")
        if history is not None:
            frame = pd.read_csv(r.history_path)
            if history == "missing":
                r.history_path.unlink()
            else:
                if history == "nan":
                    frame.loc[1, "train_loss"] = float("nan")
                elif history == "negative":
                    frame.loc[1, "heldout_loss"] = -1.0
                elif history == "1e308":
                    frame.loc[2, "train_loss"] = 1e308
                elif history == "extra-column":
                    frame["injected"] = 1.0
                elif history == "edited":
                    frame.loc[2, "heldout_miou"] = 0.99
                r.history_path.write_text(frame.to_csv(index=False))
        return Entry(["--params", str(tmp / "home" / "tiny.yaml"), *argv], [tmp])
    return setup


def _copied_checkpoint(*argv: str):
    def setup(tmp, mp):
        src = fake_run(tmp, 2, run="adam_none")
        dst = fake_run(tmp, 1, run="sgd_mix")
        dst.checkpoint_path.write_bytes(src.checkpoint_path.read_bytes())
        return Entry(["--params", str(tmp / "home" / "tiny.yaml"), *argv], [tmp])
    return setup


def _lock_file_removed(replace: bool):
    def setup(tmp, mp):
        r = fake_run(tmp, 1)
        ctx = {}

        @contextlib.contextmanager
        def hold():  # a trainer holds the run; then someone deletes (or replaces) .lock
            with runs.run_lock(r):
                (r.dir / ".lock").unlink()
                if replace:
                    (r.dir / ".lock").write_text("")
                ctx["held"] = True
                yield
        return Entry(["--params", str(tmp / "home" / "tiny.yaml"), "--run", "adam_none"],
                     [tmp], hold=hold)
    return setup


def _fifo(name: str, *argv: str):
    def setup(tmp, mp):
        r = fake_run(tmp, 2)
        if name != "checkpoint.pt":
            r.checkpoint_path.unlink()
        (r.dir / name).unlink(missing_ok=True)
        os.mkfifo(r.dir / name)
        return Entry(["--params", str(tmp / "home" / "tiny.yaml"), *argv],
                     [r.dir / "params.yaml"], tool="subprocess")
    return setup


def _outside_folder(tmp: Path) -> Path:
    outside = tmp / "outside"
    outside.mkdir()
    (outside / ".precious.tmp").write_text("a user's file that looks like a temp file\n")
    (outside / "notes.txt").write_text("keep me\n")
    return outside


def _symlinked_run(*argv: str):
    def setup(tmp, mp):
        params = tiny_params(tmp)
        rc = resolve_run(load_params(params), "adam_none")
        link = runs.run_dir(rc)
        link.parent.mkdir(parents=True)
        os.symlink(_outside_folder(tmp), link)

        def check(out, err):
            assert link.is_symlink() and (tmp / "outside" / ".precious.tmp").exists()
        return Entry(["--params", str(params), *argv], [tmp / "outside"], check=check)
    return setup


def _run_folder_is_file(tmp, mp):
    params = tiny_params(tmp)
    path = runs.run_dir(resolve_run(load_params(params), "adam_none"))
    path.parent.mkdir(parents=True)
    path.write_text("a file where the run folder goes\n")
    return Entry(["--params", str(params), "--run", "adam_none"], [tmp])


def _foreign_data(kind: str):
    def setup(tmp, mp):
        params = tiny_params(tmp)
        target = tmp / "home" / "data" / "synthetic" / "voc"
        target.parent.mkdir(parents=True)
        if kind == "file":
            target.write_text("my own notes, not a dataset\n")
        elif kind == "symlink":
            os.symlink(_outside_folder(tmp), target)
        else:
            target.mkdir()
            (target / "mine.txt").write_text("my own data\n")

        def check(out, err):
            no_run_folder(tmp)(out, err)
            assert os.path.lexists(target)
            if kind == "symlink":
                assert os.readlink(target) == str(tmp / "outside")
        return Entry(["--params", str(params), "--run", "adam_none"],
                     [tmp / "home" / "data", tmp / "outside"], check=check)
    return setup


def _study_second(tmp, mp):
    params = tiny_params(tmp)
    out_dir = tmp / "home" / "outputs" / "tiny"
    out_dir.mkdir(parents=True)
    (out_dir / "index.html").write_text("<html>the first study's index</html>\n")

    @contextlib.contextmanager
    def hold():  # the first study holds its outputs folder
        fd = execute._hold_outputs(out_dir)
        try:
            yield
        finally:
            os.close(fd)
    return Entry(["--params", str(params), "--no-html", "--no-progress"], [out_dir],
                 tool="study", hold=hold)


def _study_index(alive: bool):
    def setup(tmp, mp):
        params = tiny_params(tmp)
        out_dir = tmp / "home" / "outputs" / "tiny"
        out_dir.mkdir(parents=True)
        jobs = plan.plan()
        rows = [studystate.Row(jobs[0].name, "running")]
        rows += [studystate.Row(j.name, "pending") for j in jobs[1:]]
        studystate.write(out_dir, preset="tiny", state="running", rows=rows,
                         figures_dir=tmp / "figs")
        hold = None
        if alive:
            @contextlib.contextmanager
            def hold():
                fd = execute._hold_outputs(out_dir)
                try:
                    yield
                finally:
                    os.close(fd)

        def check(out, err):
            page = (out_dir / "index.html").read_text()
            if not alive:
                assert "<td>running</td>" not in page and "<td>pending</td>" not in page
                assert "<td>interrupted</td>" in page and "study interrupted" in page
        return Entry(["--params", str(params), "--status"], [] if not alive else [out_dir],
                     tool="study", hold=hold, check=check)
    return setup


def _cell(code: str):
    def setup(tmp, mp):
        params = tiny_params(tmp)
        return Entry([code.replace("PARAMS", str(params))], [tmp], tool="cell")
    return setup


SETUP = "from pspnet_core.study.notebook import setup, check_index\n"
CLI_ROWS: list[CliRow] = [
    # pattern: no traceback from the command lines
    CliRow("cli-params-folder", _params_folder(""), 2, r"presets is a folder; give a preset"),
    CliRow("cli-params-folder-yaml", _params_folder(".yaml"), 2, r"presets\.yaml is a folder"),
    CliRow("cli-params-not-utf8", _preset_file(b"name: caf\xe9\n", "--list"), 2,
           r"preset\.yaml: not UTF-8 text \(byte 9"),
    CliRow("cli-pspnet-home-is-file", _home_is_file("--run", "adam_none"), 2,
           r"PSPNET_HOME=.*homefile is a file, not a folder"),
    CliRow("cli-pspnet-home-is-file-list", _home_is_file("--list"), 2,
           r"PSPNET_HOME=.*homefile is a file, not a folder"),
    CliRow("cli-pspnet-home-empty", _home_is_empty, 2,
           r"PSPNET_HOME is set to an empty string; unset it"),
    CliRow("cli-device-cuda-without-gpu", _device_cuda, 2,
           r"device 'cuda' requested .*use --device cpu"),
    CliRow("cli-run-name-250-characters", _long_run_name, 2,
           r"runs\.r+\.\.\. is 250 characters long|is 250 characters long; names become"),
    CliRow("cli-ctrl-c", _fit_raises(KeyboardInterrupt()), 130, r"^error: interrupted \(Ctrl-C\)"),
    CliRow("cli-disk-full", _fit_raises(OSError(errno.ENOSPC, "No space left on device")), 1,
           r"adam_none \(seed 0\): No space left on device \(the disk is full"),
    CliRow("cli-disk-full-at-save", _fit_raises(DiskFullError(
        errno.ENOSPC, "cannot save /r/checkpoint.pt: the disk is full; free some space")), 1,
        r"^error: adam_none \(seed 0\): cannot save /r/checkpoint\.pt: the disk is full; free "
        r"some space$"),
    CliRow("cli-read-only", _fit_raises(OSError(errno.EROFS, "Read-only file system", "/r")), 1,
           r"/r: Read-only file system \(the file system is read-only"),
    CliRow("cli-a-bug-keeps-its-traceback", _fit_raises(TypeError("boom")), 1,
           r"Traceback.*TypeError: boom.*an unexpected TypeError \(a bug in pspnet_core",
           traceback=True),
    CliRow("cli-debug-shows-the-traceback", _damaged_debug, 1,
           r"Traceback.*error: adam_none \(seed 0\): checkpoint .* is damaged", traceback=True),
    CliRow("cli-corrupt-image-2-workers", _leaf_train("corrupt", workers=2), 2,
           r"^error: leaf_sgd_affine \(seed 0\): cannot read image .*leaf_3\.png \(corrupt",
           slow=True),
    CliRow("cli-corrupt-image-first-epoch", _leaf_train("corrupt"), 2,
           r"cannot read image .*leaf_3\.png \(corrupt", slow=True),
    CliRow("cli-list-one-bad-run", _list_with_bad_checkpoint, 0,
           r"adam_none\s+s0\s+damaged: checkpoint .*checkpoint\.pt is damaged", stream="out"),
    # 1. DONE without a checkpoint
    CliRow("cli-weights-removed-run", _weights_removed_cli("--run", "adam_none"), 0,
           r"^adam_none: done \(weights removed\), ", stream="out"),
    CliRow("cli-weights-removed-list", _weights_removed_cli("--list"), 0,
           r"adam_none\s+s0\s+done \(weights removed\)", stream="out"),
    CliRow("cli-done-marker-only", _weights_removed_cli("--run", "adam_none", old_marker=True),
           1, r"checkpoint\.pt is missing and DONE holds no record.*" + DELETE),
    CliRow("cli-done-no-checkpoint-no-history-list",
           _weights_removed_cli("--list", history="missing"), 0,
           r"adam_none\s+s0\s+damaged: .*marked DONE but has neither checkpoint\.pt nor "
           r"history\.csv", stream="out"),
    CliRow("cli-doctored-history-nan", _weights_removed_cli("--run", "adam_none", history="nan"),
           1, r"history\.csv is damaged \(train_loss holds nan \(not a finite number\)\)"),
    CliRow("cli-doctored-history-negative",
           _weights_removed_cli("--run", "adam_none", history="negative"), 1,
           r"history\.csv is damaged \(heldout_loss holds a negative value -1\.0\)"),
    CliRow("cli-doctored-history-1e308",
           _weights_removed_cli("--run", "adam_none", history="1e308"), 1,
           r"history\.csv is damaged \(train_loss holds 1e\+308 \(above 1e\+06\)\)"),
    CliRow("cli-doctored-history-extra-column",
           _weights_removed_cli("--run", "adam_none", history="extra-column"), 1,
           r"history\.csv is damaged \(columns \['injected'\] that training never writes\)"),
    CliRow("cli-doctored-history-edited",
           _weights_removed_cli("--list", history="edited"), 0,
           r"adam_none\s+s0\s+damaged: .*history\.csv differs from the history recorded when "
           r"the run finished", stream="out"),
    # 2. a checkpoint copied in from another run
    CliRow("cli-copied-checkpoint-run", _copied_checkpoint("--run", "sgd_mix"), 1,
           r"sgd_mix \(seed 0\): checkpoint .*sgd_mix-s0-\w+/checkpoint\.pt belongs to another "
           r"run \(its run hash is '\w+', this folder's is '\w+'\)"),
    CliRow("cli-copied-checkpoint-list", _copied_checkpoint("--list"), 0,
           r"sgd_mix\s+s0\s+damaged: checkpoint .* belongs to another run", stream="out"),
    # 3. deleting .lock while a trainer holds the run
    CliRow("cli-lock-file-deleted", _lock_file_removed(False), 1,
           r"adam_none \(seed 0\): run 'adam_none' in .* is being trained by another process"),
    CliRow("cli-lock-file-replaced", _lock_file_removed(True), 1,
           r"is being trained by another process \(pid unknown\)"),
    # 4. bounded parsing
    CliRow("cli-yaml-billion-laughs", _preset_file(BILLION_LAUGHS, "--list"), 2,
           r"preset\.yaml: not valid YAML: .*YAML aliases \(\*a\) are not allowed"),
    CliRow("cli-set-yaml-alias", _cli("--set", "seeds=[&x 1, *x]", "--list"), 2,
           r"--set 'seeds=\[&x 1, \*x\]': value is not valid YAML: .*aliases"),
    CliRow("cli-long-value-truncated", _cli("--set", "name=" + "x" * 100_000, "--list"), 2,
           r"name: 'x+\.\.\. \(100002 characters\) is 100000 characters long"),
    CliRow("cli-preset-over-1mb", _preset_file("#" * (2 << 20) + "\n", "--list"), 2,
           r"preset\.yaml: not valid YAML|preset\.yaml: \d+ characters, more than a preset"),
    CliRow("cli-yaml-huge-integer", _preset_file("seeds: [" + "9" * 5000 + "]\n", "--list"), 2,
           r"preset\.yaml: not valid YAML: .*(digits|limit)"),
    CliRow("cli-yaml-nested-deep", _preset_file("a: " + "[" * 50_000 + "\n", "--list"), 2,
           r"preset\.yaml: not valid YAML"),
    # 6. a checkpoint (or history.csv, DONE) that is a named pipe never blocks
    CliRow("cli-checkpoint-fifo-list", _fifo("checkpoint.pt", "--list"), 0,
           r"adam_none\s+s0\s+damaged: .*checkpoint\.pt is a named pipe \(FIFO\)", stream="out"),
    CliRow("cli-checkpoint-fifo-run", _fifo("checkpoint.pt", "--run", "adam_none"), 1,
           r"checkpoint\.pt is a named pipe \(FIFO\), not a file the run store wrote"),
    CliRow("cli-history-fifo-list", _fifo("history.csv", "--list"), 0,
           r"adam_none\s+s0\s+damaged: .*history\.csv is a named pipe", stream="out"),
    CliRow("cli-done-fifo-list", _fifo("DONE", "--list"), 0,
           r"adam_none\s+s0\s+damaged: .*DONE is a named pipe", stream="out"),
    # 7. a run folder that is a symbolic link
    CliRow("cli-run-folder-symlink-run", _symlinked_run("--run", "adam_none"), 1,
           r"run folder .*adam_none-s0-\w+ is a symbolic link \(to .*outside\); the run store "
           r"never follows links"),
    CliRow("cli-run-folder-symlink-list", _symlinked_run("--list"), 0,
           r"adam_none\s+s0\s+damaged: run folder .* is a symbolic link", stream="out"),
    CliRow("cli-run-folder-is-a-file", _run_folder_is_file, 1,
           r"run folder .*adam_none-s0-\w+ is a file, not a folder"),
    # 8. a path the project did not create, at the generated-data folder
    CliRow("cli-generated-data-path-is-users-file", _foreign_data("file"), 2,
           r"synthetic/voc exists and is a file, not a generated dataset; refusing to overwrite"),
    CliRow("cli-generated-data-path-is-users-link", _foreign_data("symlink"), 2,
           r"synthetic/voc exists and is a symbolic link to .*outside that the generator did "
           r"not make"),
    CliRow("cli-generated-data-path-is-users-folder", _foreign_data("folder"), 2,
           r"synthetic/voc exists and is a folder that is not a generated dataset"),
    # 10. a decompression bomb
    CliRow("cli-decompression-bomb", _leaf_train("bomb"), 2,
           r"leaf_sgd_affine \(seed 0\): image .*leaf_3\.png is too large to decode safely",
           slow=True),
    # 6 (item): the study's index under concurrency
    CliRow("study-second-refused", _study_second, 1,
           r"^error: another study \(pid \d+\) is writing .*outputs/tiny"),
    CliRow("study-killed-index-interrupted", _study_index(alive=False), 0,
           r"index\.html: interrupted", stream="out"),
    CliRow("study-running-index-stays-running", _study_index(alive=True), 0,
           r"index\.html: running", stream="out"),
    CliRow("study-set-alias", _cli("--set", "x=[&a 1, *a]", tool="study"), 2,
           r"value is not valid YAML: .*aliases"),
    # item 1: the notebooks' parameters, validated like preset keys (one line in the cell)
    CliRow("cell-unknown-optimizer", _cell(SETUP + "setup('PARAMS', {}, optimizer='rmsprop')"),
           2, r"^error: notebook parameter optimizer: 'rmsprop' is not allowed; use one of "
           r"sgd, adam", stream="out"),
    CliRow("cell-seed-not-in-preset", _cell(SETUP + "setup('PARAMS', {}, seed=7)"), 2,
           r"^error: notebook parameter seed: 7 is not one of the seeds \[0\] of preset 'tiny'",
           stream="out"),
    CliRow("cell-unknown-run-name", _cell(SETUP + "setup('PARAMS', {}, run_name='nope')"), 2,
           r"^error: notebook parameter run_name: 'nope' is not a run of preset 'tiny'",
           stream="out"),
    CliRow("cell-negative-leaf-index", _cell(SETUP + "setup('PARAMS', {}, leaf_index=-1)"), 2,
           r"^error: notebook parameter leaf_index: -1 must be an integer >= 0", stream="out"),
    CliRow("cell-leaf-index-out-of-range", _cell(SETUP + "check_index('leaf_index', 99, 8)"), 2,
           r"^error: notebook parameter leaf_index: 99 is out of range: there are 8 \(0\.\.7\)",
           stream="out"),
    CliRow("cell-overrides-wrong-type", _cell(SETUP + "setup('PARAMS', 'train.epochs=2')"), 2,
           r"^error: notebook parameter overrides: 'train\.epochs=2' must be a mapping",
           stream="out"),
    CliRow("cell-n-show-zero", _cell(SETUP + "setup('PARAMS', {}, n_show=0)"), 2,
           r"^error: notebook parameter n_show: 0 must be an integer >= 1", stream="out"),
    CliRow("cell-override-unknown-key", _cell(SETUP + "setup('PARAMS', {'train.epoch': 3})"), 2,
           r"^error: .*tiny\.yaml: unknown key 'train\.epoch'", stream="out"),
    CliRow("cell-override-alias", _cell(SETUP + "setup('PARAMS', {'seeds': 'x'})"), 2,
           r"^error: .*seeds: expected a list", stream="out"),
    CliRow("cell-later-damaged-run-one-line", _cell(
        SETUP + "cfg, _ = setup('PARAMS', {}, announce=False)\n"
        "from pspnet_core.results import analysis\nfrom pspnet_core.store import runs\n"
        "from pspnet_core.config import resolve_run\n"
        "analysis.load_model(runs.Run(resolve_run(cfg, 'adam_none'), PATH))"
        .replace("PATH", "__import__('pathlib').Path('nowhere')")), 1,
        r"^error: run 'adam_none' has no checkpoint at nowhere/checkpoint\.pt; train it",
        stream="out"),
    CliRow("cell-later-bug-keeps-traceback", _cell(
        SETUP + "cfg, _ = setup('PARAMS', {}, announce=False)\n{}['missing key']"), 1,
        r"Traceback|KeyError.*missing key", stream="out", traceback=True),
]


def _run_cell(code: str) -> tuple[int, str]:
    """Run ``code`` as a notebook cell (an IPython shell); (exit code it stands for, output)."""
    from IPython.core.interactiveshell import InteractiveShell

    buf = io.StringIO()
    shell = InteractiveShell.instance()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        result = shell.run_cell(code)
    err = result.error_in_exec
    return (0 if err is None else getattr(err, "code", 1)), buf.getvalue()


@pytest.mark.parametrize("row", [
    pytest.param(r, id=r.id, marks=[pytest.mark.slow] if r.slow else []) for r in CLI_ROWS])
def test_entry_point_fault(row: CliRow, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PSPNET_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PSPNET_STOP_AFTER_EPOCH", raising=False)
    monkeypatch.delenv("PSPNET_DEBUG", raising=False)
    entry = row.setup(tmp_path, monkeypatch)
    hold = entry.hold() if entry.hold is not None else contextlib.nullcontext()
    with hold:
        before = snapshot(entry.watch)
        if entry.tool == "train":
            code = train.main(entry.argv)
            out, err = capsys.readouterr()
        elif entry.tool == "study":
            code = cli.main(entry.argv)
            out, err = capsys.readouterr()
        elif entry.tool == "cell":
            code, out = _run_cell(entry.argv[0])
            err = out
        else:  # a fault that could hang the command: a subprocess with a deadline
            proc = subprocess.run(
                [sys.executable, "-m", "pspnet_core.train", *entry.argv], cwd=tmp_path,
                env=subprocess_env(Path(os.environ["PSPNET_HOME"])), capture_output=True,
                text=True, timeout=120)
            code, out, err = proc.returncode, proc.stdout, proc.stderr
    text = out if row.stream == "out" else err
    assert code == row.code, (code, out, err)
    assert re.search(row.match, text, re.DOTALL | re.MULTILINE), (out, err)
    assert ("Traceback" in out + err) == row.traceback, (out, err)
    assert len(err) < 6000 or row.traceback, f"{len(err)} characters of stderr"
    after = snapshot(entry.watch)
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    changed = {k for k in changed if not any(k.endswith(m) for m in entry.may_change)}
    assert not changed, f"files changed: {sorted(changed)}"
    if entry.check is not None:
        entry.check(out, err)


def test_issue_18_adds_forty_rows_or_more():
    """The issue-9 suite had 78 rows; issue 18 adds at least 40, every id distinct."""
    assert len(ROWS) + len(CLI_ROWS) >= 78 + 40
    ids = [r.id for r in ROWS] + [r.id for r in CLI_ROWS]
    assert len(set(ids)) == len(ids)


# ---------------------------------------------------------------- determinism with the knobs


class SmallNet(nn.Module):
    """Conv-BN-ReLU-dropout with the PSPNet forward signature: small enough to train three
    epochs in seconds, with BatchNorm statistics and dropout draws that expose any change in
    the batches or the global RNG stream."""

    def __init__(self, k: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Dropout2d(0.1))
        self.main = nn.Conv2d(8, k, 1)
        self.aux = nn.Conv2d(8, k, 1)

    def forward(self, x, with_aux=None):
        with_aux = self.training if with_aux is None else with_aux
        h = self.body(x)
        return self.main(h), (self.aux(h) if with_aux else None)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_same_seed_same_run_with_0_or_2_workers(tmp_path, precision):
    """Through engine.fit: the same seed gives the same history and weights whether batches come
    from the main process or from 2 loader workers (the mixing regime, so the loader, the
    augmentation seeds and the mixing stream all count)."""
    results = {}
    for workers in (0, 2):
        home = tmp_path / f"w{workers}"
        params = write_tiny(home, data_root=tmp_path / "data", precision=precision,
                            data={"num_workers": workers})
        rc = resolve_run(load_params(params), "sgd_mix")
        hist = engine.fit(rc, build_model=lambda cfg, k: SmallNet(k))
        results[workers] = (hist, runs.open_run(rc).checkpoint()["model"])
    (h0, w0), (h2, w2) = results[0], results[2]
    assert len(h0) == 3 and history_equal(h0, h2), (h0, h2)
    assert w0.keys() == w2.keys() and all(torch.equal(w0[k], w2[k]) for k in w0)


def test_progress_bars_iterate_a_loader_once(monkeypatch):
    """tqdm.auto's bar called ``iter()`` on the loader it was handed, starting the workers twice
    per epoch and drawing from the seeded generator an extra time; the engine's bar does not."""
    monkeypatch.setenv(engine.BARS_ENV, "1")  # `make test` turns bars off for nbval
    calls = []

    class Loader:
        def __iter__(self):
            calls.append(1)
            return iter([1, 2, 3])

        def __len__(self):
            return 3

    for quiet in (True, False):
        calls.clear()
        bar = engine._bar(Loader(), quiet, desc="x")
        assert (bar.bar is None) == quiet  # a real tqdm bar when not quiet
        assert list(bar) == [1, 2, 3]
        assert len(calls) == 1


def test_bars_env_turns_bars_off_but_not_the_iteration(monkeypatch):
    monkeypatch.setenv(engine.BARS_ENV, "0")
    bar = engine._bar([1, 2, 3], quiet=False, desc="x")
    assert bar.bar is None and list(bar) == [1, 2, 3]


# ---------------------------------------------------------------- round 3: faults never named


def test_checkpoint_of_another_shape_names_the_file(tmp_path):
    """A checkpoint whose tensor has another shape (a checkpoint of another network copied in):
    resuming and ``analysis.load_model`` both end in one RunFileError naming the file."""
    rc = resolve_run(load_params(write_tiny(tmp_path)), "sgd_mix")
    engine.fit(rc, build_model=lambda cfg, k: SmallNet(k), stop_after_epoch=1)
    run = runs.open_run(rc)
    state = run.checkpoint()
    name = next(iter(state["model"]))
    state["model"][name] = torch.zeros(3, 3)  # no tensor of this network has this shape
    runs.save_epoch(run, state)
    before = run.checkpoint_path.read_bytes()
    with pytest.raises(RunFileError, match=rf"{re.escape(str(run.checkpoint_path))}: the "
                                                r"model state does not fit .*delete"):
        engine.fit(rc, build_model=lambda cfg, k: SmallNet(k))
    with pytest.raises(RunFileError, match=re.escape(str(run.checkpoint_path))):
        analysis.load_model(run)
    assert run.checkpoint_path.read_bytes() == before  # nothing lost


def test_batch_larger_than_the_training_set_names_the_key(tmp_path):
    with pytest.raises(ParamsError, match=r"train\.batch_size \(8\) is larger than "
                                          r"data\.n_train \(4\)"):
        load_params(write_tiny(tmp_path, train={"batch_size": 8}))
    # a leaf set the config cannot count: the engine names the key when it has the images
    params = write_tiny(tmp_path, train={"batch_size": 4},
                        runs={"leaf_sgd_affine": {"task": "leaf", "optimizer": "sgd",
                                                  "regime": "affine"}},
                        data={"synthetic_leaf_images": 4, "leaf_heldout_fraction": 0.5})
    rc = resolve_run(load_params(params), "leaf_sgd_affine")
    with pytest.raises(ParamsError, match=r"train\.batch_size: 2 training images of run "
                                          r"'leaf_sgd_affine' give no full batch of 4"):
        engine.fit(rc, build_model=lambda cfg, k: SmallNet(k))


def test_a_symlink_loop_as_an_image_is_named_as_such(tmp_path):
    root = _leaf_folder(tmp_path, "none")
    target = root / "images" / "leaf_3.png"
    target.unlink()
    target.symlink_to(target)  # a loop: the link points at itself
    with pytest.raises(DataError, match=r"leaf_3\.png is a symbolic link that leads to no file"):
        leaf_pairs(root)


def test_an_id_list_not_utf8_is_named(tmp_path):
    root = synthetic.ensure_synthetic_voc(tmp_path / "voc", 6, 32, seed=0)
    ids = root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "trainval.txt"
    ids.write_bytes(b"ok\nbad\xff\n")
    with pytest.raises(DataError, match=r"trainval\.txt is not UTF-8 text \(byte 6"):
        voc_pairs(root)


def test_a_full_disk_at_the_first_checkpoint_does_not_promise_an_old_version(tmp_path,
                                                                              monkeypatch):
    params = write_tiny(tmp_path / "home")
    r = runs.open_run(resolve_run(load_params(params), "adam_none"))
    state = {"model": {"w": torch.arange(4.0)}, "optimizer": {"state": {}, "param_groups": []},
             "scheduler": {"last_epoch": 1}, "epoch": 1, "history": history_rows(1),
             "run_hash": r.hash, "world_size": 1}

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    with runs.run_lock(r):
        runs.start_run(r, torch.device("cpu"))
        monkeypatch.setattr(torch, "save", full)
        with pytest.raises(DiskFullError, match=r"checkpoint\.pt: the disk is full.*nothing "
                                                     r"was saved \(there was no earlier"):
            runs.save_epoch(r, state)
    assert not r.checkpoint_path.exists() and not list(r.dir.glob(".*.tmp"))


@pytest.mark.parametrize("where", ["synthetic-data", "figure"])
def test_a_full_disk_mid_write_names_the_path(tmp_path, monkeypatch, where):
    """A write that fails mid-file (ENOSPC from write(), which names no file) is reported with
    the folder or file it was writing; nothing half-written is left."""
    import matplotlib.pyplot as plt

    from pspnet_core.results import plots

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "synthetic-data":
        monkeypatch.setattr(Image.Image, "save", full)
        with pytest.raises(OSError) as info:
            synthetic.ensure_synthetic_voc(tmp_path / "data" / "voc", 4, 32, seed=0)
        assert info.value.filename == str(tmp_path / "data")
        assert not [p for p in (tmp_path / "data").iterdir() if ".tmp-" in p.name]
    else:
        fig = plt.figure()
        plots.save_figure(fig, tmp_path / "figs", "fig99")
        before = (tmp_path / "figs" / "fig99.png").read_bytes()
        monkeypatch.setattr(type(fig), "savefig", full)
        with pytest.raises(OSError) as info:
            plots.save_figure(fig, tmp_path / "figs", "fig99")
        plt.close(fig)
        assert info.value.filename == str(tmp_path / "figs" / "fig99.png")
        assert (tmp_path / "figs" / "fig99.png").read_bytes() == before  # the old one kept
    from pspnet_core.system import errors
    assert str(info.value.filename) in errors.one_line(info.value)


def test_a_finished_run_whose_checkpoint_was_replaced_by_another_shape_is_damaged(tmp_path,
                                                                                  capsys):
    """--list and --run used to say 'done' (exit 0) for a finished run whose checkpoint was
    replaced by one of another network; DONE now records the tensors' shapes."""
    r = fake_run(tmp_path, 3, done=True)
    assert runs.open_run(r.run_cfg).status == "done"
    state = r.checkpoint()
    state["model"]["w"] = torch.zeros(2, 2)  # another network's tensor
    runs.save_epoch(r, state)
    with pytest.raises(RunFileError, match="holds tensors of other shapes"):
        runs.open_run(r.run_cfg)
    again = runs.peek_run(r.run_cfg)
    assert again.status == "damaged" and "holds tensors of other shapes" in again.describe()
    params = str(tmp_path / "home" / "tiny.yaml")
    assert train.main(["--params", params, "--list"]) == 0  # the grid is listed, marked
    assert "holds tensors of other shapes" in capsys.readouterr().out
    assert train.main(["--params", params, "--run", "adam_none"]) != 0
    assert "holds tensors of other shapes" in capsys.readouterr().err
