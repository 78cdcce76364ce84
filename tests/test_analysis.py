"""analysis: loading a trained run's network, and per-seed numbers as mean and spread."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_preset import write_tiny

from pspnet_core import data
from pspnet_core.config import load_params
from pspnet_core.model import PSPNet
from pspnet_core.results import analysis
from pspnet_core.results.analysis import seed_table
from pspnet_core.store import runs
from pspnet_core.train.grid import get_run


@pytest.mark.slow
def test_load_model_is_eval_mode_with_checkpoint_weights(reference_run):
    _, _, run = reference_run
    model = analysis.load_model(run, "cpu")
    assert isinstance(model, PSPNet) and not model.training
    state = run.checkpoint()["model"]
    assert model.state_dict().keys() == state.keys()
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_load_model_of_an_untrained_run_says_so(tmp_path):
    r = get_run(load_params(write_tiny(tmp_path)), "adam_none", train=False)
    with pytest.raises(runs.RunNotTrainedError, match="no checkpoint"):
        analysis.load_model(r)


def test_seed_table_mean_sd_min_max():
    table = seed_table({0: {"dice": 0.5, "iou": 0.2}, 1: {"dice": 0.7, "iou": 0.4},
                        2: {"dice": 0.6, "iou": 0.3}})
    assert list(table.columns) == ["seed 0", "seed 1", "seed 2", "mean", "sd", "min", "max"]
    row = table.loc["dice"]
    assert math.isclose(row["mean"], 0.6) and math.isclose(row["sd"], 0.1)
    assert (row["min"], row["max"]) == (0.5, 0.7)


def test_seed_table_one_seed_has_no_sd():
    table = seed_table({3: {"dice": 0.5}})
    assert table.loc["dice", "mean"] == 0.5 and math.isnan(table.loc["dice", "sd"])


def test_gallery_ends_never_share_an_image():
    frame = pd.DataFrame({"index": range(16), "loss": np.linspace(0, 1, 16)})
    ends = analysis.gallery_ends(frame, n_show=16)
    assert ends["k"] == 8 and ends["n"] == 16
    assert not set(ends["lowest"]["index"]) & set(ends["highest"]["index"])
    assert list(ends["highest"]["loss"]) == sorted(ends["highest"]["loss"], reverse=True)
    big = analysis.gallery_ends(pd.DataFrame({"index": range(100), "loss": range(100)}), 16)
    assert big["k"] == 16 and len(big["lowest"]) == len(big["highest"]) == 16


def _leaf_outputs_by_hand():
    p = np.full((2, 20, 20), 0.1)
    m = np.zeros((2, 20, 20), np.uint8)
    regions = np.zeros((2, 20, 20), bool)
    regions[:, 2:18, 2:18] = True
    p[0, 3:9, 3:9] = 0.9  # predicted, not in the mask: 36 px outside
    m[1, 10:14, 10:16] = 1  # in the mask, not predicted: 24 px missed
    p[1, 4:6, 4:6] = 0.8  # a smaller outside component: 4 px
    p[1, 0:2, 0:2] = 0.9  # off the leaf but in padding (exact black): never reported
    images = np.zeros((2, 20, 20, 3), np.uint8)
    return {"ids": ["a", "b"], "images": images, "masks": m, "probabilities": p,
            "regions": regions}


def test_leaf_review_components_largest_first_on_leaf_pixels():
    comps = analysis.leaf_review_components(_leaf_outputs_by_hand(), k=5, pad=1)
    assert [(c["kind"], c["id"], c["area"]) for c in comps] == [
        ("outside", "a", 36), ("outside", "b", 4), ("missed", "b", 24)]
    assert comps[0]["image"].shape == (8, 8, 3) and comps[0]["probability"].shape == (8, 8)


def test_reliability_counts_leaf_pixels_only():
    table = analysis.reliability(_leaf_outputs_by_hand(), bins=10)
    assert len(table) == 10 and table["n"].sum() == 2 * 16 * 16
    assert table.loc[8, "error_rate"] == 1.0  # p = 0.8-0.9: all outside the mask
    assert table.loc[1, "error_rate"] == pytest.approx(24 / (2 * 256 - 36 - 4))


@pytest.mark.slow
def test_leaf_outputs_are_cached_per_run_hash_and_recomputed_when_damaged(tmp_path):
    run = get_run(load_params(write_tiny(tmp_path)), "leaf_sgd_affine")
    first = analysis.leaf_outputs(run)
    cache = run.dir / f"leaf_outputs-{run.hash}.npz"
    assert cache.is_file() and first["regions"].dtype == bool
    assert first["regions"].any() and not first["regions"].all()
    stamp = cache.stat().st_mtime_ns
    again = analysis.leaf_outputs(run)
    assert cache.stat().st_mtime_ns == stamp  # read, not rewritten
    np.testing.assert_array_equal(again["probabilities"], first["probabilities"])
    cache.write_bytes(b"not a zip file")
    healed = analysis.leaf_outputs(run)
    np.testing.assert_array_equal(healed["probabilities"], first["probabilities"])
    assert cache.stat().st_size > 100
    # the same loop as predictions(): the same maps (stored there as float16), the same losses
    pred = analysis.predictions(run, "heldout")
    np.testing.assert_array_equal(pred["probabilities"], first["probabilities"].astype(np.float16))
    np.testing.assert_array_equal(pred["labels"], (first["masks"] > 0.5).astype(np.uint8))
    np.testing.assert_array_equal(pred["predictions"], first["probabilities"] >= 0.5)
    now = analysis.per_image_losses(run, "heldout", n=len(pred["ids"]), seed=0, device="cpu")
    np.testing.assert_array_equal(pred["loss"], now["loss"].to_numpy())


def _on_the_fly(run, split, n, seed) -> pd.DataFrame:
    """What ranked_losses promises, computed now from the one loop (per_image_losses) and
    claim 4(a)'s complexity, with no cache."""
    frame = analysis.per_image_losses(run, split, n=n, seed=seed, device="cpu", with_metrics=True)
    ds = data.build_eval_dataset(run.run_cfg, split)
    frame["complexity"] = [analysis.loss_complexity(ds, int(i)) for i in frame["index"]]
    frame["split"] = split
    return frame.sort_values("loss", kind="stable").reset_index(drop=True)


@pytest.mark.slow
def test_ranked_losses_and_predictions_are_the_loops_numbers(reference_run):
    """ranked_losses reads predictions() (the whole split) or caches its subset, and either way
    equals, bit for bit, what the loop computes on the fly; predictions' losses are
    per_image_losses', its complexity claim 4(a)'s; the held-out mean is the training's own
    held-out loss (engine.evaluate, the same forward pass)."""
    _, _, run = reference_run
    for split in ("train", "heldout"):
        ds = data.build_eval_dataset(run.run_cfg, split)
        pred = analysis.predictions(run, split)
        whole = _on_the_fly(run, split, len(ds), 0)
        np.testing.assert_array_equal(pred["loss"], whole.sort_values("index")["loss"])
        np.testing.assert_array_equal(
            pred["complexity"], [analysis.loss_complexity(ds, i) for i in range(len(ds))])
        ranked = analysis.ranked_losses(run, split, n=100, seed=0)
        assert list(ranked.columns) == list(analysis.RANKED_COLUMNS)
        pd.testing.assert_frame_equal(ranked, whole, check_exact=True)
        assert analysis._ranked_cache(run, split, 100, 0) == analysis._predictions_cache(run, split)
    subset = analysis.ranked_losses(run, "train", n=2, seed=3)  # 2 of 4: its own cache
    cache = analysis._ranked_cache(run, "train", 2, 3)
    assert cache.is_file() and cache.name.startswith("ranked_losses-train-n2-seed3-")
    pd.testing.assert_frame_equal(subset, _on_the_fly(run, "train", 2, 3), check_exact=True)
    pd.testing.assert_frame_equal(analysis.ranked_losses(run, "train", n=2, seed=3), subset,
                                  check_exact=True)  # from the cache
    held = analysis.predictions(run, "heldout")["loss"]
    last = run.history.iloc[-1]
    assert float(held.mean()) == pytest.approx(float(last["heldout_loss"]), rel=1e-12)


def test_cached_arrays_trusts_only_its_own_signed_file(tmp_path):
    """The one cache format: read back only when written for this run and unchanged since;
    edited, another run's, unsigned (an older format) or damaged files are recomputed."""
    run = SimpleNamespace(done=True, hash="a1b2c3d4e5f6")
    path = tmp_path / f"predictions-heldout-{run.hash}.npz"
    arrays = {"loss": np.array([0.5, 1.5]), "ids": np.array(["a", "b"])}
    fresh = {"loss": np.array([2.0, 3.0]), "ids": np.array(["a", "b"])}

    def never():
        raise AssertionError("recomputed a valid cache")
    analysis.cached_arrays(run, path, ("loss", "ids"), lambda: arrays)
    got = analysis.cached_arrays(run, path, ("loss", "ids"), never)
    np.testing.assert_array_equal(got["loss"], arrays["loss"])

    def rewrite(**change):
        with np.load(path, allow_pickle=False) as z:
            stored = {k: z[k] for k in z.files} | change
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **stored)
    for change in ({"loss": np.array([15.0, 5.0])},  # a hand edit under the old signature
                   {analysis.CACHE_RUN: np.asarray("0" * 12),  # another run's, signed for it
                    analysis.CACHE_DIGEST: np.asarray(analysis._arrays_digest("0" * 12,
                                                                              arrays))}):
        analysis.cached_arrays(run, path, ("loss", "ids"), lambda: arrays)
        rewrite(**change)
        got = analysis.cached_arrays(run, path, ("loss", "ids"), lambda: fresh)
        np.testing.assert_array_equal(got["loss"], fresh["loss"])  # recomputed
        again = analysis.cached_arrays(run, path, ("loss", "ids"), never)  # and rewritten
        np.testing.assert_array_equal(again["loss"], fresh["loss"])
    with open(path, "wb") as fh:  # unsigned: a cache written before caches were signed
        np.savez_compressed(fh, **arrays)
    assert analysis.cached_arrays(run, path, ("loss",), lambda: fresh)["loss"][0] == 2.0
    path.write_bytes(b"PK\x03\x04 damaged")
    assert analysis.cached_arrays(run, path, ("loss",), lambda: fresh)["loss"][0] == 2.0
    running = SimpleNamespace(done=False, hash="f" * 12)  # an unfinished run: never cached
    other = tmp_path / "other.npz"
    analysis.cached_arrays(running, other, ("loss",), lambda: fresh)
    assert not other.exists()


def _one_pair(tmp_path, mask: np.ndarray):
    """A PairedDataset of one image/mask pair written as PNGs (gray image, mask as class ids)."""
    from PIL import Image

    from pspnet_core.data.loading import Pair, PairedDataset

    Image.fromarray(np.full((*mask.shape, 3), 120, np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(mask).save(tmp_path / "a_mask.png")

    def with_transform(tf):
        return PairedDataset([Pair("a", tmp_path / "a.png", tmp_path / "a_mask.png")], tf,
                             num_classes=21)
    return with_transform


def test_scene_complexity_region_leaves_padding_out():
    from pspnet_core.metrics import scene_complexity

    scene = np.ones((20, 20), np.uint8)
    scene[:, 10:] = 2  # one vertical boundary: 20 of 400 pixels
    padded = np.full((30, 20), 255, np.uint8)
    padded[5:25] = scene
    region = np.zeros((30, 20), bool)
    region[5:25] = True
    assert scene_complexity(scene)["complexity"] == pytest.approx(20 / 400)
    assert scene_complexity(padded, region=region)["complexity"] == pytest.approx(20 / 400)
    # without the region the padding takes the nearest labels and dilutes the share
    assert scene_complexity(padded)["complexity"] == pytest.approx(30 / 600)


def test_claim4_complexity_is_taken_on_the_pixels_the_loss_sees(tmp_path):
    """Claim 4(a): a busy strip that the central square crop cuts away counts in the raw mask,
    not in the complexity of the evaluated crop; letterbox padding never counts."""
    from pspnet_core.config import AugmentConfig
    from pspnet_core.data.augment import build_transform
    from pspnet_core.losses import segmentation_loss
    from pspnet_core.metrics import scene_complexity

    mask = np.zeros((60, 100), np.uint8)
    mask[20:40, 40:60] = 1  # one simple object in the centre
    mask[:, :18] = (np.indices((60, 18)).sum(0) % 2 + 2).astype(np.uint8)  # checkerboard strip
    pair = _one_pair(tmp_path, mask)
    crop = pair(build_transform("none", 60, AugmentConfig(eval_geometry="center_crop"), 255))
    raw = scene_complexity(crop.load_raw(0)[1])["complexity"]
    target = crop[0][1]
    ours = analysis.loss_complexity(crop, 0)
    # the crop is the central 60 x 60 square: no padding, so every pixel is a loss pixel
    logits = torch.zeros(1, 21, 60, 60, requires_grad=True)
    segmentation_loss(logits, target[None], reduction="per_image").sum().backward()
    seen = (logits.grad[0].abs().sum(0) > 0).numpy()  # the pixels the loss is computed on
    assert seen.all()
    assert ours == pytest.approx(scene_complexity(target.numpy())["complexity"])
    assert ours == pytest.approx(79 / 3600)  # the object's 4 x 20 edge pixels, one shared
    assert raw > 8 * ours  # the raw mask counts the cut-away strip
    # letterbox: 100 x 60 -> 60 x 36 plus 255 padding, which the loss ignores and so do we
    box = pair(build_transform("none", 60, AugmentConfig(eval_geometry="letterbox"), 255))
    target = box[0][1].numpy()
    logits = torch.zeros(1, 21, 60, 60, requires_grad=True)
    segmentation_loss(logits, torch.from_numpy(target)[None].long(),
                      reduction="per_image").sum().backward()
    seen = (logits.grad[0].abs().sum(0) > 0).numpy()
    assert 0 < seen.sum() < seen.size and (target[~seen] == 255).all()
    rows = np.flatnonzero(seen.any(1))
    content = target[rows[0]:rows[-1] + 1]  # the letterboxed scene without its padding
    assert (content != 255).all()
    assert analysis.loss_complexity(box, 0) == pytest.approx(
        scene_complexity(content)["complexity"])
    assert analysis.loss_complexity(box, 0) != pytest.approx(
        scene_complexity(target)["complexity"])


def hand_on_leaf_photo() -> dict:
    """A held-out leaf photo with a hand beside the leaf: green leaf disk, skin-coloured palm
    and four fingers on a bluish table; the network says p = 0.95 on the whole hand (the
    paper's Fig. 13 red circle), 0.05 elsewhere. The leaf region comes from metrics.leaf_region
    on the photo itself."""
    from pspnet_core.metrics import leaf_region

    h, w = 96, 128
    yy, xx = np.mgrid[:h, :w]
    image = np.full((h, w, 3), (110, 100, 140), np.uint8)  # bluish grey table
    leaf = (yy - 48) ** 2 + (xx - 36) ** 2 < 30**2
    image[leaf] = (40, 150, 40)
    hand = (yy - 62) ** 2 / 14**2 + (xx - 100) ** 2 / 11**2 < 1  # palm
    for x0 in (90, 96, 102, 108):  # fingers
        hand |= (yy >= 26) & (yy < 62) & (xx >= x0) & (xx < x0 + 4)
    image[hand] = (224, 172, 140)
    mask = np.zeros((h, w), np.uint8)
    mask[40:50, 30:40] = 1  # a labelled spot on the leaf
    p = np.full((h, w), 0.05)
    p[hand] = 0.95
    p[40:50, 30:40] = 0.9
    region = leaf_region(image, mask)
    return {"ids": ["hand"], "images": image[None], "masks": mask[None],
            "probabilities": p[None], "regions": region[None], "hand": hand}


def test_leaf_review_shows_a_hand_marked_as_disease_off_the_leaf():
    """Claim 7(c): a hand with p = 0.95 lies outside the leaf region, so the on-leaf kinds
    cannot show it; the review lists it as the largest "off_leaf" component, whole."""
    leaf = hand_on_leaf_photo()
    hand = leaf.pop("hand")
    assert not (hand & leaf["regions"][0]).any()  # the hand is off the leaf region
    comps = analysis.leaf_review_components(leaf, k=6, pad=2)
    assert [c["kind"] for c in comps] == ["off_leaf"]  # nothing outside the mask or missed
    c = comps[0]
    assert c["area"] == hand.sum() and c["id"] == "hand"
    y0, y1, x0, x1 = c["box"]
    assert hand[y0:y1, x0:x1].sum() == hand.sum()  # the crop holds the whole hand
    assert c["probability"].max() == pytest.approx(0.95) and not c["region"].any()
    assert analysis.leaf_review_components(leaf, k_off_leaf=0) == []
