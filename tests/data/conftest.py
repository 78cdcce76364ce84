"""Tiny generated datasets shared by the data tests (generated once per session, in tmp)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pspnet_core.data.synthetic import ensure_synthetic_leaf, ensure_synthetic_voc


@pytest.fixture(scope="session")
def voc_root(tmp_path_factory) -> Path:
    """A 16-image VOC2012-style tree (holding VOCdevkit/VOC2012)."""
    return ensure_synthetic_voc(tmp_path_factory.mktemp("syn") / "voc", 16, 64, seed=0)


@pytest.fixture(scope="session")
def leaf_root(tmp_path_factory) -> Path:
    """A 9-image leaf tree (images/, masks/: palette 0/1, grey 0/38, grey 0/255 in turn)."""
    return ensure_synthetic_leaf(tmp_path_factory.mktemp("syn") / "leaf", 9, 64, seed=0)
