"""The docs name the smoke preset's sizes the code has: a sentence in docs/method.md or the
README that states a number of images, epochs, pixels, runs or seeds is read back and compared
with ``params/smoke.yaml`` as loaded (cheap checks of the statements that drifted before)."""

from __future__ import annotations

import re

import pytest

from pspnet_core.config import load_params
from pspnet_core.system.paths import SOURCE_ROOT

METHOD = (SOURCE_ROOT / "docs" / "method.md").read_text()
README = (SOURCE_ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def smoke():
    return load_params("smoke")


def _one(pattern: str, text: str) -> re.Match:
    found = re.search(pattern, text, re.S)
    assert found, f"the docs no longer say {pattern!r}: update this test with the sentence"
    return found


def test_method_md_states_the_smoke_sizes_the_preset_has(smoke):
    m = _one(r"`smoke` sizes: (\d+) generated (\d+) px scenes, (\d+) of them for training and "
             r"(\d+) held out, an\s+(\d+)x(\d+) input, batch (\d+), (\d+) epochs \(leaf: (\d+) "
             r"generated leaves, (\d+) % held out, (\d+) epochs\), (\w+)\s+seeds", METHOD)
    d, t = smoke.data, smoke.train
    words = {"two": 2, "three": 3, "four": 4, "five": 5}
    assert int(m[1]) == d.synthetic_voc_images and int(m[2]) == d.synthetic_size
    assert (int(m[3]), int(m[4])) == (d.n_train, d.n_heldout)
    assert int(m[5]) == int(m[6]) == t.image_size and int(m[7]) == t.batch_size
    assert int(m[8]) == t.epochs and int(m[9]) == d.synthetic_leaf_images
    assert int(m[10]) == round(100 * d.leaf_heldout_fraction) and int(m[11]) == t.leaf_epochs
    assert words[m[12]] == len(smoke.seeds)
    runs = _one(r"chosen so that (\d+) runs x (\d+) seeds train", METHOD)
    assert (int(runs[1]), int(runs[2])) == (len(smoke.runs), len(smoke.seeds))


def test_method_md_gallery_sentence_matches_the_preset(smoke):
    m = _one(r"N < 2 x `gallery.n_show` \(smoke: (\d+)\s+held-out images\)", METHOD)
    assert int(m[1]) == smoke.data.n_heldout < 2 * smoke.gallery.n_show


def test_readme_smoke_step_and_run_match_the_preset(smoke):
    t = smoke.train
    step = _one(r"The smoke step is PSPNet at (\d+) px, batch (\d+)", README)
    assert (int(step[1]), int(step[2])) == (t.image_size, t.batch_size)
    run = _one(r"one smoke PSPNet run \((\d+) images, (\d+) px, (\d+) epochs", README)
    assert (int(run[1]), int(run[2]), int(run[3])) == (smoke.data.n_train, t.image_size,
                                                      t.epochs)
    stride = _one(r"one smoke training step \(stride (\d+), batch (\d+), (\d+) px", README)
    assert (int(stride[1]), int(stride[2]), int(stride[3])) == (
        smoke.model.output_stride, t.batch_size, t.image_size)
