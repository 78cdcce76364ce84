"""Datasets of the study (docs/method.md#data, the paper's data section: VOC2012 split into
1400 training and 500 held-out images, and the leaf disease set): VOC2012 (``voc.py``), its
generated stand-in (``synthetic.py``) or your own folder of images + index masks
(``folder.py``), and the leaf set (``leaf.py``), read through Albumentations (``augment.py``)
and loaded by seeded DataLoaders (``loading.py``).

``build_datasets(run_cfg) -> (train, heldout)``; ``build_eval_dataset(run_cfg, split)``. Each
reader takes ``(root, data: DataConfig, read: ReadSpec)``; ``dataset_root`` is a pure path and
``ensure_dataset`` the one step that generates the synthetic sets.
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
    ReadSpec,
    make_loader,
)
from pspnet_core.data.synthetic import ensure_synthetic_leaf, ensure_synthetic_voc
from pspnet_core.data.voc import VOC_CLASSES, VOCDataset, voc_colormap, voc_datasets
from pspnet_core.metrics import IGNORE_INDEX
from pspnet_core.system import paths

__all__ = [
    "IGNORE_INDEX", "VOC_CLASSES", "DataError", "DatasetNotFoundError", "FolderDataset",
    "LeafDataset", "PairedDataset", "ReadSpec", "VOCDataset", "build_datasets",
    "build_eval_dataset", "build_transform", "denormalize", "dataset_root", "ensure_dataset",
    "make_loader", "voc_colormap", "class_names", "class_palette", "names_and_palette",
]  # fmt: skip


def dataset_root(data: DataConfig, task: Literal["voc", "leaf"]) -> Path:
    """Where ``task``'s data lives, a pure path (nothing is read or written):
    ``resolve(data.root) / data.voc_root`` (holds VOCdevkit/VOC2012, or with
    ``voc_source: folder`` the image and mask folders) or ``/ data.leaf_root`` (holds images/ and
    masks/). An absolute ``voc_root`` / ``leaf_root`` is used as it is."""
    return paths.resolve(data.root) / (data.voc_root if task == "voc" else data.leaf_root)


def ensure_dataset(data: DataConfig, task: Literal["voc", "leaf"]) -> Path:
    """:func:`dataset_root`, with the generated stand-in written there first (once per
    parameter set, ``synthetic.py``) when ``task``'s source is ``synthetic``; a real source
    (VOC2012, a folder) is left as it is and read, or reported missing, by its reader."""
    root = dataset_root(data, task)
    if task == "voc" and data.voc_source == "synthetic":
        ensure_synthetic_voc(root, data.synthetic_voc_images, data.synthetic_size,
                             data.synthetic_seed)
    elif task == "leaf" and data.leaf_source == "synthetic":
        ensure_synthetic_leaf(root, data.synthetic_leaf_images, data.synthetic_size,
                              data.synthetic_seed)
    return root


def _datasets(run_cfg: RunConfig, train_kind: str) -> tuple[PairedDataset, PairedDataset]:
    """(train, held-out) of ``run_cfg``'s task: the DataConfig goes to its reader whole, with
    the one :class:`ReadSpec` of this run (transforms, decode size)."""
    data = run_cfg.data
    fill = 0 if run_cfg.task == "leaf" else IGNORE_INDEX  # leaf: no ignore label
    read = ReadSpec.for_input(
        run_cfg.image_size,
        build_transform(train_kind, run_cfg.image_size, run_cfg.augment, fill, seed=run_cfg.seed),
        build_transform("none", run_cfg.image_size, run_cfg.augment, fill),
    )
    root = ensure_dataset(data, run_cfg.task)
    if run_cfg.task == "leaf":  # leaf_source synthetic or folder ("kaggle" is read as folder)
        return leaf_datasets(root, data, read)
    if data.voc_source == "folder":
        return folder_datasets(root, data, read)
    return voc_datasets(root, data, read)  # voc2012 or its generated stand-in


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
