"""The explorer's data layer (pspnet_core/results/explore.py), per-class IoU, a preset's classes and
palette, and the folder source's separate held-out folder pair; the slow tests train (the
session's reference run) or run notebook 07 on a generated own-data preset: 11 named classes,
void 11, a separate held-out folder."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pspnet_core.config import ParamsError, load_params, resolve_run, run_hash
from pspnet_core.data import build_datasets, class_names, class_palette, names_and_palette
from pspnet_core.data.voc import VOC_CLASSES, voc_colormap
from pspnet_core.metrics import IGNORE_INDEX
from pspnet_core.results import analysis, explore, explore_widgets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from street_preset import STREET, STREET_COLORS, street_folders, street_overrides  # noqa: E402
from tiny_preset import write_tiny  # noqa: E402

# ---------------------------------------------------------------- classes and palette


def test_voc_names_and_palette_by_default():
    cfg = load_params("smoke")
    assert class_names(cfg.data) == list(VOC_CLASSES) and len(VOC_CLASSES) == 21
    assert (class_palette(cfg.data) == voc_colormap()).all()
    names, _ = names_and_palette(resolve_run(cfg, "leaf_sgd_affine"))
    assert names == ["healthy", "disease"]


def test_folder_preset_names_colours_and_plain_defaults(tmp_path):
    cfg = load_params("smoke", street_overrides(tmp_path))
    assert class_names(cfg.data) == STREET
    pal = class_palette(cfg.data)
    assert tuple(pal[0]) == (128, 128, 128) and tuple(pal[10]) == (0, 128, 192)
    assert tuple(pal[IGNORE_INDEX]) == tuple(voc_colormap()[IGNORE_INDEX])  # ignore: cream
    plain = load_params("smoke", {"data.voc_source": "folder", "data.num_classes": 11,
                                  "data.ignore_index": 11})
    assert class_names(plain.data) == [f"class {i}" for i in range(11)]


def test_classes_are_validated_and_not_hashed(tmp_path):
    with pytest.raises(ParamsError, match="data.classes: 2 names given but data.num_classes is 21"):
        load_params("smoke", {"data.classes": ["a", "b"]})
    with pytest.raises(ParamsError, match="class_colors\\[0\\]: 'red'"):
        load_params("smoke", {"data.classes": STREET, "data.num_classes": 11,
                              "data.class_colors": ["red"] + STREET_COLORS[1:]})
    with pytest.raises(ParamsError, match="heldout_images and data.heldout_masks go together"):
        load_params("smoke", {"data.heldout_images": "val"})
    base = load_params("smoke")
    named = load_params("smoke", {"data.classes": [f"c{i}" for i in range(21)]})
    assert run_hash(resolve_run(base, "sgd_mix")) == run_hash(resolve_run(named, "sgd_mix"))


# ---------------------------------------------------------------- held-out folder pair


def test_separate_heldout_folder(tmp_path):
    root = street_folders(tmp_path / "streets")
    cfg = load_params("smoke", street_overrides(root, **{"train.image_size": 64}))
    train, held = build_datasets(resolve_run(cfg, "sgd_affine"))
    assert len(train) == 6 and len(held) == 3
    assert all(i.startswith("0001TP") for i in train.ids)
    assert all(i.startswith("0016E5") for i in held.ids)
    _, raw = held.load_raw(0)
    assert (raw[:3] == IGNORE_INDEX).all() and raw[3:].max() == 10  # void 11 -> 255
    same = load_params("smoke", street_overrides(root, **{"data.heldout_images": "",
                                                          "data.heldout_masks": "",
                                                          "data.n_heldout": 2}))
    assert run_hash(resolve_run(cfg, "sgd_affine")) != run_hash(resolve_run(same, "sgd_affine"))
    tr2, ho2 = build_datasets(resolve_run(same, "sgd_affine"))
    assert all(i.startswith("0001TP") for i in tr2.ids + ho2.ids)  # one folder, drawn apart
    too_many = load_params("smoke", street_overrides(root, **{"data.n_heldout": 5}))
    with pytest.raises(Exception, match="val has 4 image/mask pairs but data.n_heldout = 5"):
        build_datasets(resolve_run(too_many, "sgd_affine"))


# ---------------------------------------------------------------- tables


def fake_predictions(k: int = 3, n: int = 4, size: int = 8, leaf: bool = False) -> dict:
    """What analysis.predictions returns, built by hand: image i predicts class i % k
    everywhere; its label is half class 0, half class 1, a row of ignore."""
    rng = np.random.default_rng(1)
    labels = np.zeros((n, size, size), np.uint8)
    labels[:, :, size // 2:] = 1
    if not leaf:
        labels[:, 0] = IGNORE_INDEX
    preds = np.stack([np.full((size, size), i % k, np.uint8) for i in range(n)])
    kk = 2 if leaf else k
    conf = np.zeros((n, kk, kk), np.int64)
    for i in range(n):
        keep = labels[i] != IGNORE_INDEX
        np.add.at(conf[i], (labels[i][keep], preds[i][keep]), 1)
    out = {"index": np.arange(n), "ids": [f"img{i}" for i in range(n)], "labels": labels,
           "predictions": preds, "confusion": conf, "loss": np.array([0.5, 2.0, 1.0, 3.0][:n]),
           "complexity": rng.random(n)}
    if leaf:
        out["probabilities"] = rng.random((n, size, size)).astype(np.float16)
    return out


def test_image_table_columns_and_values():
    pred = fake_predictions()
    table = explore.image_table(pred, ["bg", "cat", "dog"])
    assert list(table.columns[:6]) == ["index", "id", "loss", "miou", "pixel_acc", "complexity"]
    assert [c for c in table.columns if c.startswith("IoU ")] == ["IoU bg", "IoU cat", "IoU dog"]
    # image 0 predicts class 0 everywhere: IoU bg = 1/2 (half the labelled pixels), cat 0
    row = table.iloc[0]
    assert row["IoU bg"] == pytest.approx(0.5) and row["IoU cat"] == 0.0
    assert np.isnan(row["IoU dog"]) and row["miou"] == pytest.approx(0.25)
    assert row["pixel_acc"] == pytest.approx(0.5)
    # image 2 predicts "dog" (absent from its label): every IoU 0, mIoU 0
    assert table.iloc[2]["miou"] == 0.0 and table.iloc[2]["IoU dog"] == 0.0


def test_leaf_table_has_dice_and_iou():
    pred = fake_predictions(k=2, leaf=True)
    table = explore.image_table(pred, ["healthy", "disease"], task="leaf")
    assert {"dice", "iou", "pixel_acc"} <= set(table.columns) and "miou" not in table.columns
    # image 1 predicts disease everywhere: Dice = 2*half / (half + all)
    assert table.iloc[1]["dice"] == pytest.approx(2 / 3)
    assert table.iloc[1]["iou"] == pytest.approx(0.5)


def test_sort_table_nan_last_and_ties_by_index():
    t = pd.DataFrame({"index": [0, 1, 2, 3], "id": list("abcd"),
                      "loss": [1.0, np.nan, 3.0, 1.0]})
    assert explore.sort_table(t, "loss")["id"].tolist() == ["c", "a", "d", "b"]
    assert explore.sort_table(t, "loss", descending=False)["id"].tolist() == ["a", "d", "c", "b"]
    with pytest.raises(KeyError, match="no column 'miou'"):
        explore.sort_table(t, "miou")


def test_threshold_metrics_error_map_and_classes_present():
    p = np.array([[0.9, 0.6], [0.4, 0.1]])
    m = np.array([[1, 0], [1, 0]])
    at5 = explore.threshold_metrics(p, m, 0.5)  # tp 1, fp 1, fn 1
    assert at5["dice"] == pytest.approx(0.5) and at5["iou"] == pytest.approx(1 / 3)
    at3 = explore.threshold_metrics(p, m, 0.3)  # tp 2, fp 1
    assert at3["dice"] == pytest.approx(0.8) and at3["iou"] == pytest.approx(2 / 3)
    assert explore.threshold_metrics(p, m, 0.95)["dice"] == 0.0
    region = np.array([[1, 0], [0, 0]], bool)
    assert explore.threshold_metrics(p, m, 0.5, region)["iou"] == 1.0
    assert explore.threshold_metrics(np.zeros((2, 2)), np.zeros((2, 2)), 0.5)["dice"] == 1.0
    lab = np.array([[0, 1], [255, 2]])
    err = explore.error_map(lab, np.array([[0, 2], [0, 2]]))
    assert tuple(err[0, 0]) == explore.ERROR_COLORS["correct"]
    assert tuple(err[0, 1]) == explore.ERROR_COLORS["wrong"]
    assert tuple(err[1, 0]) == explore.ERROR_COLORS["ignore"]
    assert explore.classes_present(lab, np.array([[5]])) == [0, 1, 2, 5]


# ---------------------------------------------------------------- selections (no training)


@pytest.fixture
def street_explorer(tmp_path, monkeypatch):
    """An Explorer of an 11-class folder preset whose predictions are filled in by hand."""
    monkeypatch.setenv("PSPNET_HOME", str(tmp_path))
    cfg = load_params(write_tiny(tmp_path), street_overrides(
        tmp_path / "streets", runs={"sgd_affine": {"regime": "affine"},
                                    "sgd_none": {"regime": "none"},
                                    "leaf_sgd_affine": {"task": "leaf"}}, seeds=[0, 1]))
    ex = explore.Explorer(cfg)
    for run, seed in (("sgd_affine", 0), ("sgd_affine", 1), ("sgd_none", 0)):
        for split in ("heldout", "train"):
            ex._pred[(run, seed, split)] = fake_predictions(k=11, n=4)
    ex._pred[("leaf_sgd_affine", 0, "heldout")] = fake_predictions(k=2, leaf=True)
    monkeypatch.setattr(ex, "image", lambda *a: np.zeros((8, 8, 3), np.uint8))
    return ex


def test_selection_and_figures_use_the_presets_classes(street_explorer):
    ex = street_explorer
    assert ex.names_palette("sgd_affine")[0] == STREET
    table = ex.table("sgd_affine", 0, "heldout")
    assert "IoU sky" in table.columns and "IoU bicyclist" in table.columns
    worst = explore.sort_table(table, "loss").iloc[0]
    assert worst["id"] == "img3"
    sel = ex.selection("sgd_affine", 0, "heldout", int(worst["index"]))
    assert sel["prediction"].shape == sel["label"].shape == (8, 8)
    assert sel["error"].shape == (8, 8, 3) and sel["row"]["id"] == "img3"
    fig = ex.image_figure("sgd_affine", 0, "heldout", 3)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["0 sky", "1 building", "3 road", "ignore"]
    assert len(explore.figure_png(fig)) > 1000
    cmp = ex.compare_figure(("sgd_affine", 0), ("sgd_none", 0), "heldout", "img1")
    assert "sgd_affine seed 0 vs sgd_none seed 0" in cmp.get_suptitle()
    with pytest.raises(KeyError, match="not in the heldout split"):
        ex.compare_figure(("sgd_affine", 0), ("sgd_none", 0), "heldout", "nope")


def test_leaf_selection_threshold(street_explorer):
    ex = street_explorer
    lo = ex.selection("leaf_sgd_affine", 0, "heldout", 0, threshold=0.0)
    hi = ex.selection("leaf_sgd_affine", 0, "heldout", 0, threshold=1.01)
    assert lo["prediction"].all() and not hi["prediction"].any()
    assert lo["threshold"]["iou"] == pytest.approx(0.5)  # half the leaf is disease
    assert hi["threshold"]["dice"] == 0.0
    fig = ex.image_figure("leaf_sgd_affine", 0, "heldout", 0, threshold=0.3)
    assert "at p >= 0.3: Dice" in fig.get_suptitle()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["0 healthy", "1 disease"]


def test_no_trained_run_is_said(street_explorer):
    ex = street_explorer
    assert ex.ready_runs() == []  # nothing in the run store: the explorer trains nothing
    grid = explore.run_grid(ex.cfg)
    assert set(grid["status"]) == {"absent"} and len(grid) == 3 * 2
    widget = explore_widgets.study(ex.cfg)
    assert "No trained run" in widget.value


# ---------------------------------------------------------------- with a trained run (slow)


@pytest.mark.slow
def test_predictions_cache_table_and_widgets(reference_run, monkeypatch):
    home, params, run = reference_run
    monkeypatch.setenv("PSPNET_HOME", str(home))
    pred = analysis.predictions(run, "heldout")
    cache = run.dir / f"predictions-heldout-{run.hash}.npz"
    assert cache.is_file()
    k = run.run_cfg.num_classes
    assert pred["confusion"].shape == (2, k, k) and pred["labels"].dtype == np.uint8
    again = analysis.predictions(run, "heldout")  # from the cache
    seen = []
    ex = explore.Explorer(load_params(params))
    mine = analysis.prediction_arrays(run, "heldout", progress=lambda *a: seen.append(a),
                                      get_model=lambda: ex.model("sgd_mix", run.run_cfg.seed))
    assert seen[0][2].startswith("loading the network of sgd_mix")
    assert seen[-1][:2] == (2, 2) and "predicting held-out images of sgd_mix" in seen[-1][2]
    for key, value in pred.items():  # the explorer's first load is the same loop: bit-equal
        assert (np.asarray(mine[key]) == np.asarray(value)).all(), key
    assert again["ids"] == pred["ids"] and (again["predictions"] == pred["predictions"]).all()
    ranked = analysis.ranked_losses(run, "heldout", n=2, seed=0).sort_values("index")
    assert np.array_equal(ranked["loss"], pred["loss"])  # the same per-image loss (read)
    cache.write_bytes(b"damaged")
    assert analysis.predictions(run, "heldout")["loss"].shape == (2,)  # recomputed
    table = analysis.per_class_iou_table({"sgd_mix": {0: run}}, "heldout", list(VOC_CLASSES))
    assert table.index[0] == "background" and table.index[-1] == "mean (mIoU)"
    cm = pred["confusion"].sum(0)
    assert table.loc["mean (mIoU)", "sgd_mix"] == pytest.approx(
        float(np.nanmean(analysis.iou_per_class(cm))))

    cfg = load_params(params)
    tabs = explore_widgets.study(cfg, run="sgd_mix", split="heldout")
    images_tab = tabs.children[1]
    rows = images_tab.children[3].children[0]
    image = images_tab.children[-1]
    first = image.value
    assert len(first) > 1000 and len(rows.options) == 2
    rows.value = rows.options[1][1]  # another image: the shown PNG changes
    assert image.value != first
    classes = images_tab.children[3].children[1].children[0]
    classes.value = 1  # p(aeroplane)
    assert image.value != first


# ---------------------------------------------------------------- widgets (no training)


def _ready(ex, monkeypatch):
    """The fixture's runs shown as trained (their predictions are the hand-made ones)."""
    trained = {"sgd_affine": [0, 1], "sgd_none": [0], "leaf_sgd_affine": [0]}
    monkeypatch.setattr(ex, "trained", lambda name: trained[name])
    monkeypatch.setattr(ex, "ready_runs", lambda: list(trained))
    monkeypatch.setattr(explore, "explorer", lambda *a, **k: ex)


def test_first_load_shows_progress_disables_controls_and_keeps_the_image(street_explorer,
                                                                          monkeypatch):
    ex = street_explorer
    _ready(ex, monkeypatch)
    del ex._pred[("sgd_affine", 1, "heldout")]  # never loaded: choosing it is a first load
    seen = []

    def compute(run, split, device="auto", get_model=None, progress=None, **_):
        progress(0, 4, "predicting held-out images of sgd_affine seed 1")
        loading = progress.__self__  # the tab's Loading: what the reader sees meanwhile
        progress(2, 4, "predicting held-out images of sgd_affine seed 1")
        seen.append({"label": loading.label.value, "bar": (loading.bar.value, loading.bar.max),
                     "shown": loading.box.layout.display,
                     "disabled": all(c.disabled for c in loading.controls),
                     "image": loading.image.layout.visibility})
        out = fake_predictions(k=11, n=4)
        return {**out, "ids": np.asarray(out["ids"], dtype=str)}

    monkeypatch.setattr(analysis, "prediction_arrays", compute)
    tabs = explore_widgets.study(ex.cfg, run="sgd_affine")
    images = tabs.children[1]
    run_w, seed_w = images.children[0].children[:2]
    rows_w = images.children[3].children[0]
    assert not seen  # the first selection and Compare's were loaded
    rows_w.value = 1  # img1
    seed_w.value = 1
    assert seen == [{"label": "<small>predicting held-out images of sgd_affine seed 1: 2/4</small>",
                     "bar": (2, 4), "shown": "", "disabled": True, "image": "hidden"}]
    loading_box = images.children[2].children[1]
    assert loading_box.layout.display == "none" and not run_w.disabled
    assert images.children[-1].layout.visibility == "visible"
    assert "of sgd_affine seed 1" in images.children[2].children[0].value
    assert rows_w.value == 1  # the chosen image (by id) is kept
    assert len(images.children[-1].value) > 1000
    run_w.value = "sgd_none"  # loaded already: no progress shown
    assert len(seen) == 1 and rows_w.value == 1


def test_sorting_by_a_class_shows_it_and_compare_offers_one_task(street_explorer, monkeypatch):
    ex = street_explorer
    _ready(ex, monkeypatch)
    tabs = explore_widgets.study(ex.cfg, run="sgd_affine")
    images = tabs.children[1]
    sort_w = images.children[1].children[0]
    sort_w.value = "IoU building"
    rows = images.children[3].children[0]
    assert all("IoU building" in label for label, _ in rows.options)
    compare = tabs.children[2]
    a_run, b_run = compare.children[0].children[0], compare.children[1].children[0]
    assert list(b_run.options) == ["sgd_affine", "sgd_none"]  # not the leaf run
    img_w = compare.children[2].children[1]
    img_w.value = "img2"
    a_run.value = "sgd_none"
    assert img_w.value == "img2"  # changing run A keeps the image
    a_run.value = "leaf_sgd_affine"
    assert list(b_run.options) == ["leaf_sgd_affine"]
    status, image = compare.children[-2], compare.children[-1]
    assert "Error" not in status.value and len(image.value) > 1000


def test_colour_scales_messages_and_readable_compare(street_explorer, monkeypatch):
    ex = street_explorer
    monkeypatch.setattr(ex, "probability", lambda *a: np.full((11, 8, 8), 0.5, np.float32))
    fig = ex.image_figure("sgd_affine", 0, "heldout", 1, class_index=1)
    assert len(fig.axes) == 6  # five panels and the probability's colour bar
    fig = ex.image_figure("leaf_sgd_affine", 0, "heldout", 0)
    assert fig.axes[-1].get_ylabel() == "p(disease)"
    none = ex.curves_figure(["sgd_affine"], [])
    assert "No seed selected" in none.texts[0].get_text()
    cmp = ex.compare_figure(("sgd_affine", 0), ("sgd_none", 0), "heldout", "img1")
    assert min(ax.title.get_fontsize() for ax in cmp.axes) >= 10
    assert explore.row_label({"id": "a", "loss": 1.0, "miou": np.nan}, "miou") == \
        "a  loss 1.000  miou n/a"


def test_own_classes_without_colours_get_a_categorical_palette(tmp_path):
    """Class 0 is black only when it is background by name; distinct colours otherwise."""
    over = street_overrides(tmp_path)
    over.pop("data.class_colors", None)
    cfg = load_params("smoke", over)
    pal = class_palette(cfg.data)
    assert cfg.data.class_colors in ((), [], None) or not cfg.data.class_colors
    assert tuple(pal[0]) != (0, 0, 0)  # sky is not VOC's black background
    assert len({tuple(c) for c in pal[:11]}) == 11
    assert tuple(pal[IGNORE_INDEX]) == tuple(voc_colormap()[IGNORE_INDEX])
    named = load_params("smoke", {**over, "data.classes": ["background", *STREET[1:]]})
    assert tuple(class_palette(named.data)[0]) == (0, 0, 0)
    assert len({tuple(c) for c in class_palette(named.data)[:11]}) == 11
