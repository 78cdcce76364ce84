"""`make paper-dry`: the ``paper`` preset end to end at toy size, offline (issue 16, item 1).

The paper preset (``params/paper.yaml``) runs unchanged except its counts and its input size,
through every notebook via the study command (``python -m pspnet_core.study --params paper
--set ...``): frozen ImageNet-layout ResNet50 weights read from the torch hub cache, the listing's
``augment.preset: paper`` / ``normalize: paper`` / ``blur: 1.x`` / ``center_crop`` pipeline,
``channels_last``, 8 loader workers, poly Adam, ``frozen_bn: train``, the width-64 U-Net, all
7 runs. Only what the real preset would download or read from disk is generated:

* VOC2012 at VOC's own image size (500x375, every fourth image portrait 375x500) in the real
  layout: ``data/VOCdevkit/VOC2012/{JPEGImages, SegmentationClass (palette PNGs),
  ImageSets/Segmentation/trainval.txt}``, drawn by ``pspnet_core.data.synthetic.voc_scene``;
* the leaf set at 500x375 in the Kaggle layout ``data/leaf-disease/{images, masks}``
  (``leaf_scene``; masks palette 0/1, grayscale 0/38 and 0/255 in turn, like the Kaggle set);
* a randomly initialised torchvision ResNet50 state dict (``torch.save``) at exactly the file
  the torch hub cache holds ResNet50_Weights.DEFAULT in (``model.imagenet_cache_file()``
  under ``TORCH_HOME``), so the real ``weights: imagenet`` loading code runs, offline.

Everything lives under one git-ignored folder (default ``outputs/paper-dry/``): the study runs
with ``PSPNET_HOME`` and ``TORCH_HOME`` pointing into it, so its data, runs, figures and executed
notebooks land there (``data/``, ``runs/``, ``figures/paper/``, ``outputs/paper/``, ``torch/``)
and the project's own ``runs/``, ``figures/`` and ``outputs/paper/`` are never touched. Runs,
figures and executed notebooks of an earlier dry run are deleted first (every run trains again),
the runs also after a dry run that passed (their checkpoints take about 2 GB); the generated
inputs are kept while their parameters match.

The check: every figure the notebooks write (fig01..fig15 PNGs) and ``claims.md`` must be in
``figures/paper/`` of the dry-run folder; otherwise (or when the study fails) the command exits 1
naming what is missing.

Counts, and why: 2 training images in batches of 2 (``train.batch_size: 2``: the preset's 8
would need 8 images, since loaders drop the last partial batch); 2 held-out images; 5 leaves
(``leaf_heldout_fraction: 0.2``: 4 train, 1 held out); 1 epoch (VOC and leaf); 1 seed; galleries
rank 4 images per split and show 2. The input is 161 px instead of 473 (the dilated stride-8
network then has a 21 x 21 map instead of 60 x 60; every layer, pyramid bin and head is the
same): at 473 px the dry run took 520 s in fp32 on 2 cores, the largest step of CI, for a
geometry the unit tests check at 473 (``tests/test_model.py``: the 2048 x 60 x 60 map;
``tests/test_paper_dry.py``: the paper pipeline's 473 px crop of these generated images). The
precision is the preset's ``auto``: bf16 where the CPU computes it natively, fp32 elsewhere (an
AVX2-only CPU would take ~15x longer in bf16).

    .venv/bin/python tools/paper_dry.py [--root outputs/paper-dry] [--generate-only]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

SOURCE_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = SOURCE_ROOT / "outputs" / "paper-dry"
PRESET = "paper"

VOC_SIZE = (500, 375)  # (width, height): PASCAL VOC2012's commonest image size
N_TRAIN, N_HELDOUT = 2, 2
N_LEAF = 5  # leaf_heldout_fraction 0.2 -> 4 train, 1 held out
# the only keys set on the command line: counts (the batch of 2: the preset's 8 drops partial
# batches, so 2 training images need batches of 2)
OVERRIDES: dict[str, object] = {
    "data.n_train": N_TRAIN,
    "data.n_heldout": N_HELDOUT,
    "seeds": [0],
    "train.epochs": 1,
    "train.leaf_epochs": 1,
    "train.batch_size": 2,
    "train.eval_batch_size": 2,
    "train.image_size": 161,
    "train.leaf_image_size": 161,
    "gallery.n_random": 4,
    "gallery.n_show": 2,
}
# what the notebooks write into figures/<preset>/ (issue 16: the 13 figures and claims.md;
# notebook 05 also writes fig14 and fig15)
FIGURES = (
    "fig01_architecture", "fig02_affine", "fig03_mixup", "fig04_cutmix",
    "fig05_learning_curves_sgd", "fig06_train_lowest", "fig07_train_highest",
    "fig08_heldout_lowest", "fig09_heldout_highest", "fig10_learning_curves_adam",
    "fig11_leaf_image", "fig12_leaf_mask", "fig13_leaf_heatmap", "fig14_leaf_reliability",
    "fig15_leaf_review",
)  # fmt: skip
MARKER = ".paper-dry.json"
WORKER_WARNING = "ignore::UserWarning:torch.utils.data.dataloader"


# ---------------------------------------------------------------- generated inputs


def _size(i: int) -> tuple[int, int]:
    """(width, height) of image ``i``: 500x375, every fourth one portrait (VOC has both)."""
    w, h = VOC_SIZE
    return (h, w) if i % 4 == 1 else (w, h)


def _scene_at(image: Image.Image, label: np.ndarray, size: tuple[int, int]):
    """A generated scene resized to ``size``: bilinear image, nearest-neighbour labels."""
    return (image.resize(size, Image.Resampling.BILINEAR),
            np.asarray(Image.fromarray(label).resize(size, Image.Resampling.NEAREST)))


def _fresh(target: Path, params: dict) -> bool:
    """Whether ``target`` holds a finished generation with ``params``."""
    try:
        return json.loads((target / MARKER).read_text()) == params
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def _generation(target: Path, params: dict) -> Iterator[Path]:
    """Write into a temporary sibling, mark it finished, then move it to ``target``."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        (tmp / MARKER).write_text(json.dumps(params, sort_keys=True) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_voc(root: str | Path, n: int = N_TRAIN + N_HELDOUT, seed: int = 0) -> Path:
    """``root/VOCdevkit/VOC2012`` in the real layout with ``n`` images at 500x375 (palette
    masks with VOC's colour map and 255 borders; train/val/trainval lists). Returns ``root``."""
    from pspnet_core.data.synthetic import voc_scene
    from pspnet_core.data.voc import voc_colormap

    root = Path(root)
    devkit = root / "VOCdevkit"
    params = {"kind": "voc", "n": n, "seed": seed, "size": list(VOC_SIZE), "version": 1}
    if _fresh(devkit, params):
        return root
    palette = voc_colormap().flatten().tolist()
    ids = [f"2012_{i:06d}" for i in range(n)]
    with _generation(devkit, params) as out:
        voc = out / "VOC2012"
        jpg, seg, sets = voc / "JPEGImages", voc / "SegmentationClass", voc / "ImageSets"
        for d in (jpg, seg, sets / "Segmentation"):
            d.mkdir(parents=True)
        for i, image_id in enumerate(ids):
            rng = np.random.default_rng(np.random.SeedSequence([seed, 1, i]))
            image, label = _scene_at(*voc_scene(rng, max(VOC_SIZE) * 7 // 8), _size(i))
            image.save(jpg / f"{image_id}.jpg", quality=92)
            mask = Image.fromarray(label, "P")
            mask.putpalette(palette)
            mask.save(seg / f"{image_id}.png")
        lists = {"train": ids[: n - n // 4], "val": ids[n - n // 4:], "trainval": ids}
        for name, lst in lists.items():
            (sets / "Segmentation" / f"{name}.txt").write_text("".join(f"{x}\n" for x in lst))
    return root


def write_leaf(root: str | Path, n: int = N_LEAF, seed: int = 0) -> Path:
    """``root/{images, masks}`` (the Kaggle leaf layout) with ``n`` leaves at 500x375."""
    from pspnet_core.data.synthetic import leaf_scene

    root = Path(root)
    params = {"kind": "leaf", "n": n, "seed": seed, "size": list(VOC_SIZE), "version": 1}
    if _fresh(root, params):
        return root
    with _generation(root, params) as out:
        (out / "images").mkdir()
        (out / "masks").mkdir()
        for i in range(n):
            rng = np.random.default_rng(np.random.SeedSequence([seed, 2, i]))
            image, mask = _scene_at(*leaf_scene(rng, max(VOC_SIZE) * 7 // 8), _size(i))
            stem = f"leaf_{i:05d}"
            image.save(out / "images" / f"{stem}.jpg", quality=92)
            if i % 3 == 0:  # the three encodings of the Kaggle set
                m = Image.fromarray(mask, "P")
                m.putpalette([0, 0, 0, 255, 255, 255])
            else:
                m = Image.fromarray(mask * (38 if i % 3 == 1 else 255), "L")
            m.save(out / "masks" / f"{stem}.png")
    return root


@contextlib.contextmanager
def torch_home(path: str | Path) -> Iterator[Path]:
    """``TORCH_HOME`` set to ``path`` inside the block (torch.hub reads it on every call)."""
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(path)
    try:
        yield Path(path)
    finally:
        if old is None:
            os.environ.pop("TORCH_HOME", None)
        else:
            os.environ["TORCH_HOME"] = old


def write_imagenet_weights(home: str | Path, seed: int = 0) -> Path:
    """A randomly initialised torchvision ResNet50 state dict saved where the hub cache under
    ``TORCH_HOME=home`` keeps ResNet50_Weights.DEFAULT (``model.imagenet_cache_file()``), so
    ``weights: imagenet`` loads it without a download. Returns the file."""
    import torch
    from torchvision.models import resnet50

    from pspnet_core.model import imagenet_cache_file

    with torch_home(home):
        path = imagenet_cache_file()
    stamp = path.with_name(path.name + ".paper-dry")
    if path.is_file() and stamp.is_file() and stamp.read_text().strip() == str(seed):
        return path
    torch.manual_seed(seed)
    state = resnet50(weights=None).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
    stamp.write_text(f"{seed}\n")
    return path


def generate(root: str | Path) -> dict[str, Path]:
    """Every input of the dry run under ``root`` (as the paper preset's paths resolve there)."""
    root = Path(root)
    return {
        "voc": write_voc(root / "data"),
        "leaf": write_leaf(root / "data" / "leaf-disease"),
        "weights": write_imagenet_weights(root / "torch"),
    }


# ---------------------------------------------------------------- run and check


def missing_outputs(fig_dir: str | Path) -> list[str]:
    """The figures (``<name>.png``) and ``claims.md`` not in ``fig_dir``."""
    fig_dir = Path(fig_dir)
    wanted = [f"{name}.png" for name in FIGURES] + ["claims.md"]
    return [name for name in wanted if not (fig_dir / name).is_file()]


def study_command(overrides: dict[str, object] = OVERRIDES) -> list[str]:
    cmd = [sys.executable, "-m", "pspnet_core.study", "--params", PRESET, "--no-progress"]
    for key, value in overrides.items():
        cmd += ["--set", f"{key}={json.dumps(value)}"]
    return cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tools/paper_dry.py",
        description="The paper preset unchanged except counts, through every notebook, on "
        "generated VOC/leaf data at 500x375 and generated ResNet50 weights (offline).",
    )
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                        help="the dry run's folder (default: outputs/paper-dry)")
    parser.add_argument("--generate-only", action="store_true",
                        help="write the inputs, run nothing")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    t0 = time.perf_counter()
    made = generate(root)
    print(f"paper-dry: inputs in {root} ({time.perf_counter() - t0:.1f} s): "
          f"VOC {N_TRAIN + N_HELDOUT} + leaf {N_LEAF} images at 500x375, "
          f"ResNet50 weights {made['weights'].relative_to(root)}", flush=True)
    if args.generate_only:
        return 0
    for old in ("runs", "figures", "outputs"):  # every dry run trains and draws afresh
        shutil.rmtree(root / old, ignore_errors=True)
    env = dict(os.environ, PSPNET_HOME=str(root), TORCH_HOME=str(root / "torch"),
               PSPNET_PROGRESS_BARS="0")
    # the preset's 8 loader workers run as they are on a 2-core machine too; torch's note that
    # 8 exceeds the cores would be echoed twice per loader: silenced here, not in the preset
    env["PYTHONWARNINGS"] = ",".join(
        w for w in (os.environ.get("PYTHONWARNINGS"), WORKER_WARNING) if w)
    cmd = study_command()
    print("paper-dry: PSPNET_HOME=" + str(root) + " TORCH_HOME=" + str(root / "torch") + " "
          + " ".join(cmd[1:]), flush=True)
    t1 = time.perf_counter()
    rc = subprocess.run(cmd, cwd=SOURCE_ROOT, env=env, check=False).returncode
    fig_dir = root / "figures" / PRESET
    missing = missing_outputs(fig_dir)
    took = f"study {time.perf_counter() - t1:.0f} s, total {time.perf_counter() - t0:.0f} s"
    if rc != 0 or missing:
        problems = [f"the study exited {rc}"] if rc != 0 else []
        if missing:
            problems.append(f"missing from {fig_dir}: {', '.join(missing)}")
        print(f"paper-dry FAILED ({took}): " + "; ".join(problems), file=sys.stderr)
        return 1
    # the toy runs' checkpoints (about 2 GB) serve nothing once the figures are checked; a
    # failed dry run keeps them for a look
    shutil.rmtree(root / "runs", ignore_errors=True)
    print(f"paper-dry ok ({took}): {len(FIGURES)} figures and claims.md in {fig_dir} "
          f"(index: {root / 'outputs' / PRESET / 'index.html'}; the runs were deleted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
