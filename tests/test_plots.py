"""Figures draw from plain arrays / DataFrames and save atomically as PNG + PDF."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from pspnet_core.data.voc import voc_colormap
from pspnet_core.results import plots

RNG = np.random.default_rng(0)


def test_palette_and_colorize():
    cmap = voc_colormap()
    assert cmap.shape == (256, 3) and cmap.dtype == np.uint8
    assert tuple(cmap[1]) == (128, 0, 0) and tuple(cmap[255]) == (224, 224, 192)
    lab = np.array([[0, 1], [255, 15]])
    rgb = plots.colorize(lab, cmap)
    assert rgb.shape == (2, 2, 3) and tuple(rgb[1, 0]) == (224, 224, 192)
    with pytest.raises(ValueError, match="256, 3"):
        plots.colorize(lab, cmap[:10])


def test_color_for():
    assert plots.color_for("sgd_none") == "tab:green"
    assert plots.color_for("affine") == "tab:blue"
    assert plots.color_for("adam_mix") == "tab:red"
    assert plots.color_for("unet_none") == plots.AUGMENT_COLORS["unet"] == "dimgray"


def test_save_figure_atomic(tmp_path):
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    paths = plots.save_figure(fig, tmp_path / "figs", "fig00_test")
    assert [p.name for p in paths] == ["fig00_test.png", "fig00_test.pdf"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "fig00_test.pdf",
        "fig00_test.png",
    ]
    # saving again overwrites in place; identical PDFs (no creation date)
    first = paths[1].read_bytes()
    plots.save_figure(fig, tmp_path / "figs", "fig00_test.png")
    assert paths[1].read_bytes() == first


def test_architecture_diagram():
    parts = ["input", "stem", "layer1", "layer2", "layer3", "layer4", "ppm", "head", "aux_head"]
    trace = [{"part": p, "shape": (1, 8 * (i + 1), 13, 13)} for i, p in enumerate(parts)]
    rows = [{"part": p, "total": 1000 * i, "trainable": 10 * i} for i, p in enumerate(parts)]
    rows.append({"part": "other", "total": 5, "trainable": 5})
    fig = plots.architecture_diagram(trace, rows)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "layer3" in texts and "aux_head" in texts and "16\u00d713\u00d713" in texts
    assert any("8k params" in t for t in texts)
    assert "aux branch from layer3" in " ".join(texts)


def test_augmentation_grid():
    imgs = RNG.integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    labs = RNG.integers(0, 21, (3, 16, 16))
    labs[:, 0] = 255
    fig = plots.augmentation_grid(imgs, labs, title="fig02")
    assert len(fig.axes) == 6
    shown = fig.axes[1].images[0].get_array()  # axes order: row-major -> [0,1] is an input
    assert shown.shape == (16, 16, 3)
    label_img = fig.axes[3].images[0].get_array()
    assert tuple(label_img[0, 0]) == (224, 224, 192)
    with pytest.raises(ValueError):
        plots.augmentation_grid(imgs, labs[:2])


def test_augmentation_grid_legend_names_the_classes_present():
    imgs = RNG.integers(0, 255, (2, 8, 8, 3), dtype=np.uint8)
    labs = np.zeros((2, 8, 8), int)
    labs[:, :, 4:] = 2
    labs[:, 0] = 255
    fig = plots.augmentation_grid(imgs, labs, names=["sky", "road", "car"])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["0 sky", "2 car", "ignore"]
    assert not plots.augmentation_grid(imgs, labs).legends  # no names: no legend


def test_architecture_diagram_says_what_the_preset_trains():
    """A whole-network preset is not drawn with the paper's frozen backbone."""
    trace = [{"part": p, "shape": (1, 8, 4, 4)} for p in ("stem", "layer1", "layer4", "head")]
    whole = [{"part": p, "total": 100, "trainable": 100} for p in ("stem", "layer1", "layer4",
                                                                    "head")]
    frozen = [dict(r, trainable=0 if r["part"] == "layer4" else 100) for r in whole]
    frozen[1] = dict(frozen[1], trainable=40)
    texts = " ".join(t.get_text() for t in plots.architecture_diagram(
        trace, whole, setting="freeze_backbone: false").axes[0].texts)
    assert "0 trainable" not in texts and "frozen" not in texts
    assert texts.count("all trainable") == 4
    fig = plots.architecture_diagram(trace, frozen)
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "frozen" in texts and "40 trainable" in texts
    fig = plots.architecture_diagram(trace, whole, setting="freeze_backbone: false")
    assert any("(freeze_backbone: false)" in t.get_text() for t in fig.texts)


def test_bands_are_clipped_and_epochs_are_whole():
    seeds = [pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.5, 0.2],
                           "heldout_loss": [1.0, 0.6, 0.3], "heldout_dice": d})
             for d in ([0.0, 0.9, 1.0], [0.02, 0.1, 0.98], [0.0, 0.5, 1.0])]
    fig = plots.learning_curves({"leaf": seeds}, metric="heldout_dice", band="t95")
    ax = fig.axes[1]
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() >= 0.0 and band.max() <= 1.0
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_learning_curves():
    def h(s):
        return pd.DataFrame(
            {
                "epoch": [1, 2, 3],
                "train_loss": np.array([2.0, 1.0, 0.5]) * s,
                "heldout_loss": np.array([2.0, 1.5, 1.4]) * s,
                "heldout_miou": [0.1, 0.2, 0.3],
            }
        )

    fig = plots.learning_curves({"none": h(1), "affine": h(1.1), "mix": h(1.2)}, title="SGD")
    ax_loss, ax_metric = fig.axes[:2]
    assert len(ax_loss.lines) == 6 and len(ax_metric.lines) == 3
    styles = {(line.get_color(), line.get_linestyle()) for line in ax_loss.lines}
    assert ("tab:green", "-") in styles and ("tab:red", "--") in styles
    assert not ax_loss.collections  # one seed: no band


def test_learning_curves_with_seeds():
    def h(s, n=4):
        rng = np.random.default_rng(s)
        return pd.DataFrame({
            "epoch": np.arange(1, n + 1),
            "train_loss": 2.0 * 0.7 ** np.arange(n) + rng.normal(0, 0.05, n),
            "heldout_loss": 1.5 + rng.normal(0, 0.1, n),
            "heldout_miou": 0.2 + rng.normal(0, 0.02, n),
        })

    seeds = [h(0), h(1), h(2, n=3)]  # the third seed stopped after 3 epochs
    fig = plots.learning_curves({"mix": seeds, "unet_none": {0: h(3), 1: h(4)}, "none": h(5)})
    ax_loss, ax_metric = fig.axes[:2]
    # mix: 3 thin + 1 mean per loss; unet: 2 thin + 1 mean; none: mean only
    assert len(ax_loss.lines) == 2 * (4 + 3 + 1) and len(ax_metric.lines) == 4 + 3 + 1
    assert len(ax_loss.collections) == 4 and len(ax_metric.collections) == 2  # bands
    means = [ln for ln in ax_loss.lines if not ln.get_label().startswith("_")]
    assert {(ln.get_color(), ln.get_linestyle()) for ln in means} == {
        (c, st) for c in ("tab:red", "dimgray", "tab:green") for st in ("-", "--")}
    mix_train = next(ln for ln in means if ln.get_label() == "mix train (3 seeds)")
    want = [np.mean([s["train_loss"].iloc[i] for s in seeds if len(s) > i]) for i in range(4)]
    assert np.allclose(mix_train.get_ydata(), want)
    assert "min-max" in fig._suptitle.get_text()
    # the band is min-max of the seeds at each epoch (one seed at epoch 4)
    ep, mean, lo, hi, n = plots.seed_spread(seeds, "heldout_loss")
    vals = np.array([[s["heldout_loss"].iloc[i] for s in seeds] for i in range(3)])
    assert np.allclose(lo[:3], vals.min(1)) and np.allclose(hi[:3], vals.max(1))
    assert list(n) == [3, 3, 3, 2] and list(ep) == [1, 2, 3, 4]
    _, m2, lo2, hi2, _ = plots.seed_spread(seeds, "heldout_loss", band="t95")
    assert np.allclose(m2, mean) and (lo2 <= mean).all() and (hi2 >= mean).all()
    with pytest.raises(ValueError, match="band"):
        plots.seed_spread(seeds, "heldout_loss", band="sd")


def test_loss_gallery():
    n = 16
    imgs = RNG.integers(0, 255, (n, 12, 12, 3), dtype=np.uint8)
    labs = RNG.integers(0, 21, (n, 12, 12))
    logits = RNG.normal(size=(n, 21, 12, 12))
    fig = plots.loss_gallery(imgs, labs, logits, RNG.random(n), [f"id{i}" for i in range(n)])
    assert len(fig.axes) == 3 * n
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == n and titles[0].startswith("id0  loss ")
    with pytest.raises(ValueError, match="lengths differ"):
        plots.loss_gallery(imgs, labs, logits, [1.0], ["a"])


def test_leaf_panels():
    yy, xx = np.mgrid[:32, :32]
    mask = ((yy - 16) ** 2 + (xx - 16) ** 2 < 50).astype(np.float32)
    prob = np.clip(mask * 0.8 + RNG.random((32, 32)) * 0.2, 0, 1)
    img = RNG.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    f11, f12, f13 = plots.leaf_panels(img, mask, prob)
    assert all(isinstance(f, Figure) for f in (f11, f12, f13))
    heat = f13.axes[0].images[0]
    assert heat.get_clim() == (0.0, 1.0)
    assert len(f13.axes) == 3  # heatmap, overlay, colour bar
    assert f11._repr_png_()[:4] == b"\x89PNG"  # shows in Jupyter without pyplot


def test_gallery_legend_names_the_presets_classes_in_its_colours():
    """An 11-class street preset (void mapped to 255): the gallery's legend lists the classes
    shown in labels or predictions, "<id> <name>" in the preset's palette, plus "ignore"."""
    from pspnet_core.config import load_params
    from pspnet_core.data import class_names, class_palette

    names = ["sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car",
             "pedestrian", "bicyclist"]
    colors = ["#808080", "#800000", "#c0c0c0", "#804080", "#3c28de", "#808000", "#c08080",
              "#404080", "#400080", "#404000", "#0080c0"]
    cfg = load_params("smoke", {"data.num_classes": 11, "data.ignore_index": 11,
                                "data.classes": names, "data.class_colors": colors})
    palette = class_palette(cfg.data)
    labels = np.zeros((2, 8, 8), np.int64)
    labels[:, :, 4:] = 10
    labels[:, 0] = 255
    preds = np.full((2, 8, 8), 3, np.int64)
    fig = plots.loss_gallery(np.zeros((2, 8, 8, 3), np.uint8), labels, preds, [0.5, 1.5],
                             ["a", "b"], palette, class_names=class_names(cfg.data))
    legend = fig.legends[0]
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == ["0 sky", "3 road", "10 bicyclist", "ignore"]
    faces = [tuple(np.round(np.array(h.get_facecolor()[:3]) * 255).astype(int))
             for h in legend.legend_handles]
    assert faces[:3] == [tuple(palette[0]), tuple(palette[3]), tuple(palette[10])]
    assert faces[0] == (128, 128, 128) and faces[2] == (0, 128, 192)
    assert "background" not in texts and not any("aeroplane" in t for t in texts)


def test_leaf_review_figure_draws_the_off_leaf_hand():
    """The hand marked as disease off the leaf (tests/test_analysis.py) gets a column captioned
    "off leaf" with its area, its crop and its analog output."""
    from test_analysis import hand_on_leaf_photo

    from pspnet_core.results import analysis

    leaf = hand_on_leaf_photo()
    hand = leaf.pop("hand")
    comps = analysis.leaf_review_components(leaf)
    fig = plots.leaf_review_figure(comps)
    titles = [ax.get_title() for ax in fig.axes]
    assert f"off leaf\nhand\n{hand.sum()} px" in titles
    shown = [im.get_array() for ax in fig.axes for im in ax.images]
    assert any(np.asarray(a).max() == pytest.approx(0.95) for a in shown)
    assert "off the leaf" in fig._suptitle.get_text()
