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

import errno
import hashlib
import io
import os
import pickle
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from tiny_preset import history_equal, write_tiny
from torch import nn

from pspnet_core import analysis, engine, runs
from pspnet_core import model as model_mod
from pspnet_core.config import ParamsError, load_params, parse_overrides, resolve_run
from pspnet_core.data import synthetic
from pspnet_core.data.leaf import LeafDataset, leaf_pairs
from pspnet_core.data.loading import DataError
from pspnet_core.data.voc import VOCDataset, voc_colormap, voc_pairs

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
            want = runs.history_csv_text(history_rows(3 if done else 2))
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
        engine.get_run(load_params(params, {"sgd.lr": float("nan")}), "sgd_mix")
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


CKPT = runs.RunFileError
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
    Row("disk-full-checkpoint", _disk_full_patched("checkpoint"), runs.DiskFullError,
        r"cannot save .*checkpoint\.pt: the disk is full.*previous version of the file is "
        r"intact"),
    Row("disk-full-history", _disk_full_patched("history"), runs.DiskFullError,
        r"cannot save .*history\.csv: the disk is full"),
    Row("disk-full-tmpfs", _disk_full_tmpfs, runs.DiskFullError,
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
