"""Datasets of the study (docs/method.md#data): VOC2012 (or its generated stand-in, or your own
folder of images + index masks: ``folder.py``) and the leaf disease set, read through
Albumentations (``augment.py``) and loaded by seeded DataLoaders
(``loading.py``).

``build_datasets(run_cfg) -> (train, heldout)``; ``build_eval_dataset(run_cfg, split)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pspnet_core.config import DataConfig, RunConfig
from pspnet_core.data.augment import build_transform, denormalize
from pspnet_core.data.classes import class_names, class_palette, names_and_palette
from pspnet_core.data.folder import FolderDataset, folder_datasets
from pspnet_core.data.leaf import LeafDataset, leaf_datasets
from pspnet_core.data.loading import (
    DataError,
    DatasetNotFoundError,
    PairedDataset,
    make_loader,
)
from pspnet_core.data.synthetic import ensure_synthetic_leaf, ensure_synthetic_voc
from pspnet_core.data.voc import VOC_CLASSES, VOCDataset, voc_colormap, voc_datasets
from pspnet_core.metrics import IGNORE_INDEX
from pspnet_core.system import paths

__all__ = [
    "IGNORE_INDEX", "VOC_CLASSES", "DataError", "DatasetNotFoundError", "FolderDataset",
    "LeafDataset",
    "PairedDataset", "VOCDataset", "build_datasets", "build_eval_dataset", "build_transform",
    "denormalize", "dataset_root", "make_loader", "voc_colormap", "class_names", "class_palette",
    "names_and_palette",
]  # fmt: skip


def dataset_root(data: DataConfig, task: Literal["voc", "leaf"]) -> Path:
    """``resolve(data.root) / data.voc_root`` (holds VOCdevkit/VOC2012, or with
    ``voc_source: folder`` the image and mask folders) or ``/ data.leaf_root`` (holds images/ and
    masks/); generated first when the source is synthetic. An absolute ``voc_root`` /
    ``leaf_root`` is used as it is."""
    base = paths.resolve(data.root)
    if task == "voc":
        root = base / data.voc_root
        if data.voc_source == "synthetic":
            ensure_synthetic_voc(root, data.synthetic_voc_images, data.synthetic_size,
                                 data.synthetic_seed)
        return root
    root = base / data.leaf_root
    if data.leaf_source == "synthetic":
        ensure_synthetic_leaf(root, data.synthetic_leaf_images, data.synthetic_size,
                              data.synthetic_seed)
    return root


def _datasets(run_cfg: RunConfig, train_kind: str) -> tuple[PairedDataset, PairedDataset]:
    data = run_cfg.data
    leaf = run_cfg.task == "leaf"
    fill = 0 if leaf else IGNORE_INDEX
    train_tf = build_transform(train_kind, run_cfg.image_size, run_cfg.augment, fill,
                               seed=run_cfg.seed)
    eval_tf = build_transform("none", run_cfg.image_size, run_cfg.augment, fill)
    root = dataset_root(data, run_cfg.task)
    if leaf:  # leaf_source synthetic or folder ("kaggle" is read as folder): one layout
        return leaf_datasets(root, data.leaf_heldout_fraction, data.split_seed, train_tf, eval_tf,
                             decode_size=2 * run_cfg.image_size)
    if data.voc_source == "folder":  # JPEGs decode at >= 2x the input size (loading.open_rgb)
        return folder_datasets(root, data.n_train, data.n_heldout, data.split_seed, train_tf,
                               eval_tf, run_cfg.num_classes, data.ignore_index,
                               decode_size=2 * run_cfg.image_size,
                               images=data.folder_images, masks=data.folder_masks,
                               heldout_images=data.heldout_images,
                               heldout_masks=data.heldout_masks)
    return voc_datasets(root, data.voc_image_set, data.n_train, data.n_heldout, data.split_seed,
                        train_tf, eval_tf, run_cfg.num_classes, data.download,
                        decode_size=2 * run_cfg.image_size)


def build_datasets(run_cfg: RunConfig) -> tuple[PairedDataset, PairedDataset]:
    """(train, held-out): train augmented with the ``affine`` preset (also under ``mix``, which
    mixes batches on top) or ``none``; held-out always the deterministic ``none`` path."""
    return _datasets(run_cfg, "none" if run_cfg.regime == "none" else "affine")


def build_eval_dataset(
    run_cfg: RunConfig, split: Literal["train", "heldout"] = "train"
) -> PairedDataset:
    """``split`` through the deterministic ``none`` transform (galleries rank training images
    without augmentation)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    train, heldout = _datasets(run_cfg, "none")
    return train if split == "train" else heldout
