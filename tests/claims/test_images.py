"""Claims 4 and 7 on constructed per-image frames and leaf maps."""

from __future__ import annotations

import numpy as np
import pandas as pd
from constructed import SEEDS
from scipy import ndimage

from pspnet_core import claims as C
from pspnet_core.claims import images as I
from pspnet_core.metrics import scene_complexity

# ---------------------------------------------------------------- claim 7


def leaf_maps(seed: int, informative: bool, n: int = 6, size: int = 64):
    """Leaves (ellipses) with disease blobs; outside the leaf is background. ``p`` is a soft
    prediction map that ramps at every edge. With ``informative`` the network is unsure (p
    near 0.5) exactly where it is wrong; without, errors are flipped pixels placed at random
    over the leaf, so confidence carries no information about correctness: only the ramps at
    every edge."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    probs, masks, regions = [], [], []
    for _ in range(n):
        leaf = ((yy - 32) / 26) ** 2 + ((xx - 32) / 18) ** 2 < 1
        mask = np.zeros((size, size), bool)
        for _ in range(3):
            cy, cx = rng.integers(16, 48, 2)
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 < rng.integers(9, 40)
        mask &= leaf
        # a soft copy of the mask: p ramps from 0 to 1 over ~3 px across every edge and is
        # right everywhere (p >= 0.5 exactly on the mask)
        signed = np.where(mask, ndimage.distance_transform_edt(mask),
                          -ndimage.distance_transform_edt(~mask)) - 0.5 * np.where(mask, 1, -1)
        p = 1 / (1 + np.exp(-signed / 1.5))
        if informative:
            wrong = rng.random((size, size)) < 0.1
            p = np.where(wrong, 0.5 + np.where(mask, -0.05, 0.05), p)
        else:
            wrong = rng.random((size, size)) < 0.1
            p = np.where(wrong, 1 - p, p)  # same confidence, opposite side
        probs.append(p)
        masks.append(mask.astype(np.uint8))
        regions.append(leaf)
    return {"probabilities": np.stack(probs), "masks": np.stack(masks),
            "regions": np.stack(regions)}


def test_claim7a_holds_when_uncertainty_marks_errors():
    c = C.claim7(None, {s: leaf_maps(s, informative=True) for s in SEEDS}, n_boot=200)
    assert c.parts[0].verdict == "holds"
    assert c.verdict == "partly holds"  # (b), (c) need a person
    assert [p.verdict for p in c.parts[1:]] == ["not testable here"] * 2


def test_claim7a_pure_geometry_does_not_hold():
    """Blurred edges everywhere, errors independent of confidence: the old band-vs-far
    criterion held here; the AUROC criterion must not."""
    leaf = {s: leaf_maps(s, informative=False) for s in SEEDS}
    c = C.claim7(None, leaf, n_boot=200)
    assert c.parts[0].verdict != "holds"
    auc = [C.confidence_auroc(C.confidence_histograms(v["probabilities"], v["masks"],
                                                      v["regions"])) for v in leaf.values()]
    assert all(abs(a - 0.5) < 0.03 for a in auc)


def test_claim7a_ignores_pixels_outside_the_leaf():
    leaf = leaf_maps(0, informative=False)
    # background made of confidently right pixels and uncertain wrong ones: it would make an
    # AUROC over all pixels look informative, but it is not leaf
    bg = ~leaf["regions"]
    p = leaf["probabilities"].copy()
    p[bg] = np.where(np.arange(bg.sum()) % 2, 0.0, 0.55)
    h_leaf = C.confidence_histograms(p, leaf["masks"], leaf["regions"])
    h_all = C.confidence_histograms(p, leaf["masks"], np.ones_like(bg))
    assert abs(C.confidence_auroc(h_leaf) - 0.5) < 0.03
    assert C.confidence_auroc(h_all) > 0.6


def test_claim7_not_testable_without_outputs():
    assert C.claim7(None, None).verdict == "not testable here"


# ---------------------------------------------------------------- claim 4


def test_complexity_ignores_void_pixels():
    lab = np.zeros((40, 40), np.uint8)
    lab[10:30, 10:30] = 1
    banded = lab.copy()
    inner = ndimage.binary_erosion(lab > 0, iterations=2)
    outer = ndimage.binary_dilation(lab > 0, iterations=2)
    banded[outer & ~inner] = 255  # a VOC-style 5 px border band
    plain, band = scene_complexity(lab)["complexity"], scene_complexity(banded)["complexity"]
    assert abs(band - plain) / plain < 0.2  # the band is one class change, not 5 px of edges
    void = np.full((40, 40), 255, np.uint8)
    assert scene_complexity(void)["complexity"] == 0.0


def gallery(seed: int, train_better: bool, n: int = 20) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    out = {}
    for split in ("train", "heldout"):
        loss = rng.uniform(0.2, 2.0, n)
        cx = loss + rng.normal(0, 0.2, n)
        good = (split == "train") == train_better
        miou = np.clip((0.7 if good else 0.4) - 0.1 * loss + rng.normal(0, 0.02, n), 0, 1)
        out[split] = pd.DataFrame({"loss": loss, "miou": miou, "complexity": cx,
                                   "split": split})
    return out


def test_claim4_holds_and_fails():
    c = C.claim4({s: gallery(s, True) for s in SEEDS}, top_k=5, n_boot=200)
    assert [p.verdict for p in c.parts] == ["holds", "holds"]
    c = C.claim4({s: gallery(s, False) for s in SEEDS}, top_k=5, n_boot=200)
    assert c.parts[1].verdict == "does not hold"


def test_half_samples_never_repeat_an_image():
    idx = I.half_samples(np.random.default_rng(0), 9, 50)
    assert idx.shape == (50, 5)
    assert all(len(set(row)) == len(row) for row in idx.tolist())


def test_claim4_interval_is_not_filled_by_duplicates():
    """One image with a high loss and a low mIoU among identical others: resampling with
    replacement would put it in the top k several times; half-samples cannot."""
    n, k = 12, 4
    loss = np.r_[5.0, np.ones(n - 1)]
    mt = np.r_[0.0, np.full(n - 1, 0.5)]
    it = I.half_samples(np.random.default_rng(0), n, 400)
    gaps = I.top_k_gap(loss[it], mt[it], np.ones((400, n))[:, :6], np.full((400, 6), .5), k // 2)
    assert gaps.min() >= -0.25 - 1e-12  # the image appears at most once in the top 2
