"""The explorer's ipywidgets layer: ``study(preset)`` (notebook 07) builds the Curves, Images and
Compare tabs over the data layer of :mod:`pspnet_core.results.explore`.

*Curves*: runs x seeds, loss and mIoU / Dice per epoch with the bands of Figs. 5/10. *Images*:
every image of a (run, seed, split) in a table sortable by loss, mIoU, complexity or one class's
IoU; a chosen row shows input | label | prediction | error map with the class names and
colours; a VOC-like run also the probability of a chosen class, the leaf run its heatmap with a
threshold slider and the Dice / IoU at that threshold. *Compare*: two (run, seed) pairs of one
task on the same image. A first load shows a progress bar ("predicting held-out images of
sgd_mix seed 0: 48/100") with the tab's controls disabled and the old image hidden
(:class:`Loading`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd

from pspnet_core.config import StudyConfig
from pspnet_core.results import explore, plots
from pspnet_core.results.explore import (
    SPLIT_NAMES,
    SPLITS,
    SPREADS,
    Explorer,
    figure_png,
    metric_columns,
    row_label,
    sort_table,
)


def _show_error(image: Any, status: Any, err: Exception) -> None:
    """A tab's load failed: its image cleared (no old figure left under the message)."""
    image.value = b""
    status.value = f"<span style='color:#b00'>{type(err).__name__}: {err}</span>"


def study(preset: str | StudyConfig = "smoke", overrides: dict[str, Any] | None = None,
          run: str | None = None, seed: int | None = None, split: str = "heldout") -> Any:
    """The explorer of a preset's trained runs as an ipywidgets ``Tab`` (Curves, Images,
    Compare); ``run`` / ``seed`` / ``split`` choose the first selection of the Images tab."""
    import ipywidgets as w

    ex = explore.explorer(preset, overrides)  # looked up there: tests replace it
    ready = ex.ready_runs()
    if not ready:
        return w.HTML(f"<b>No trained run of preset {ex.cfg.name!r} yet.</b> Train one with "
                      f"<code>pspnet-train --params {ex.cfg.name} --run NAME</code>, or run "
                      "notebooks 03-05, then rerun this cell.")
    run = run if run in ready else ready[0]
    tabs = w.Tab(children=[_curves_tab(w, ex, ready), _images_tab(w, ex, ready, run, seed, split),
                           _compare_tab(w, ex, ready, run, split)])
    for i, t in enumerate(("Curves", "Images", "Compare")):
        tabs.set_title(i, t)
    tabs.add_class("pspnet-explorer")
    return tabs


def _show(image_widget: Any, status: Any, fig_fn) -> None:
    """Draw ``fig_fn()`` into an Image widget; errors go to the status line and clear the
    figure (an old figure under an error would look like the answer)."""
    t0 = time.perf_counter()
    try:
        image_widget.value = figure_png(fig_fn())
        status.value = f"<small>drawn in {time.perf_counter() - t0:.2f} s</small>"
    except Exception as err:  # shown to the reader; the widget stays usable
        image_widget.value = b""
        status.value = f"<span style='color:#b00'>{type(err).__name__}: {err}</span>"
    image_widget.layout.visibility = "visible"  # hidden while a first load ran (Loading)


class Loading:
    """The progress line of a tab (an ``IntProgress`` bar and a label, hidden when idle) and
    the controls it disables while a selection is computed, so what the controls show is
    never drawn over by the previous selection's image."""

    def __init__(self, w: Any, image: Any) -> None:
        self.bar = w.IntProgress(value=0, min=0, max=1, layout=w.Layout(width="240px"))
        self.label = w.HTML()
        self.bar.add_class("pspnet-progress")
        self.label.add_class("pspnet-progress-label")
        self.box = w.HBox([self.bar, self.label])
        self.box.layout.display = "none"
        self.image = image
        self.controls: list[Any] = []

    def progress(self, done: int, total: int, what: str) -> None:
        """A :data:`Progress` callback: "<what> <done>/<total>" and the bar."""
        self.bar.max = max(int(total), 1)
        self.bar.value = int(done)
        self.label.value = f"<small>{what}: {done}/{total}</small>"

    @contextmanager
    def busy(self, what: str):
        """Controls disabled, the old image hidden and ``what`` shown until the block ends."""
        was = [c.disabled for c in self.controls]
        for c in self.controls:
            c.disabled = True
        self.image.layout.visibility = "hidden"
        self.bar.value, self.bar.max = 0, 1
        self.label.value = f"<small>{what}...</small>"
        self.box.layout.display = ""
        try:
            yield self.progress
        finally:  # the image is shown again by the next draw (_show), never the old one
            self.box.layout.display = "none"
            for c, d in zip(self.controls, was, strict=True):
                c.disabled = d


def _curves_tab(w: Any, ex: Explorer, ready: list[str]) -> Any:
    runs = w.SelectMultiple(options=ready, value=tuple(ready[:3]), rows=min(7, len(ready)),
                            description="runs")
    seeds = w.SelectMultiple(options=list(ex.cfg.seeds), value=tuple(ex.cfg.seeds),
                             rows=min(5, len(ex.cfg.seeds)), description="seeds")
    train = w.Checkbox(value=True, description="train loss")
    held = w.Checkbox(value=True, description="held-out loss")
    spread = w.Dropdown(options=list(SPREADS), value="band + single seeds", description="spread")
    band = w.Dropdown(options=list(plots.BANDS), value="minmax", description="band")
    metric = w.Dropdown(options=["auto", "heldout_miou", "heldout_pixel_acc", "heldout_dice",
                                 "heldout_iou"], value="auto", description="metric")
    image, status = w.Image(format="png"), w.HTML()
    image.add_class("pspnet-curves-image")

    def redraw(*_):
        splits = [s for s, on in (("train", train.value), ("heldout", held.value)) if on]
        _show(image, status, lambda: ex.curves_figure(
            list(runs.value), list(seeds.value), splits, band.value, spread.value,
            None if metric.value == "auto" else metric.value))

    for c in (runs, seeds, train, held, spread, band, metric):
        c.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([runs, seeds, w.VBox([train, held, spread, band, metric])]),
                   status, image])


def _keep(options: Sequence[Any], wanted: Any) -> Any:
    """``wanted`` when it is one of the option values (``(label, value)`` or plain), else the
    first value (None without options)."""
    values = [o[1] if isinstance(o, tuple) else o for o in options]
    return wanted if wanted in values else (values[0] if values else None)


def _first_load(ex: Explorer, name: str, sd: int, sp: str, info: Any,
                loading: Loading) -> pd.DataFrame:
    """The image table of a (run, seed, split); a first load says what is computed and how
    far, with the tab's controls disabled."""
    if ex.loaded(name, sd, sp):
        return ex.table(name, sd, sp)
    info.value = (f"<small>loading the {SPLIT_NAMES.get(sp, sp)} images of {name} "
                  f"seed {sd}...</small>")
    with loading.busy(f"loading {name} seed {sd}") as progress:
        return ex.table(name, sd, sp, progress)


def _fill_rows(ex: Explorer, name: str, table: pd.DataFrame, sort_w: Any, desc_w: Any,
               rows_w: Any, chosen: str | None) -> str | None:
    """The sort columns and the ordered image list; the image ``chosen`` (an id) stays
    selected when the table has it. Returns the id of the selected image."""
    metric = metric_columns(ex.task(name))[0]
    cols = ["loss", *metric_columns(ex.task(name)), "complexity"] + [
        c for c in table.columns if c.startswith("IoU ")]
    if sort_w.options != tuple(cols):
        sort_w.options = cols
        sort_w.value = "loss"
    ordered = sort_table(table, sort_w.value, desc_w.value)
    records = ordered.to_dict("records")
    rows_w.options = [(row_label(r, metric, sort_w.value), int(r["index"]))
                      for r in records]
    by_id = {str(r["id"]): int(r["index"]) for r in records}
    rows_w.value = by_id.get(chosen, int(ordered["index"].iloc[0]) if records else None)
    return next((i for i, v in by_id.items() if v == rows_w.value), None)


def _fill_classes(ex: Explorer, name: str, class_w: Any) -> None:
    """The run's classes as the p(class) choices (kept when unchanged)."""
    names, _ = ex.names_palette(name)
    # -1: no class (a Dropdown shows the value None as an empty box)
    opts = [("(none)", -1)] + [(f"{i} {n}", i) for i, n in enumerate(names)]
    if list(class_w.options) != opts:
        class_w.options = opts
        class_w.value = -1


def _images_tab(w: Any, ex: Explorer, ready: list[str], run: str, seed: int | None,
                split: str) -> Any:
    run_w = w.Dropdown(options=ready, value=run, description="run")
    run_w.add_class("pspnet-run")
    seed_w = w.Dropdown(options=ex.trained(run), description="seed")
    if seed in ex.trained(run):
        seed_w.value = seed
    split_w = w.ToggleButtons(options=list(SPLITS), value=split if split in SPLITS else "heldout",
                              description="split")
    split_w.add_class("pspnet-split")
    sort_w = w.Dropdown(description="sort by")
    desc_w = w.Checkbox(value=True, description="highest first")
    rows_w = w.Select(rows=12, description="image", layout=w.Layout(width="560px"))
    rows_w.add_class("pspnet-image-list")
    class_w = w.Dropdown(description="p(class)")
    thr_w = w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.01, description="threshold",
                          continuous_update=False)
    image, status, info = w.Image(format="png"), w.HTML(), w.HTML()
    image.add_class("pspnet-image")
    loading = Loading(w, image)
    loading.controls = [run_w, seed_w, split_w, sort_w, desc_w, rows_w, class_w, thr_w]
    state = {"busy": False}

    def draw(*_):
        if state["busy"] or rows_w.value is None:
            return
        leaf = ex.task(run_w.value) == "leaf"
        class_w.layout.display = "none" if leaf else ""
        thr_w.layout.display = "" if leaf else "none"
        _show(image, status, lambda: ex.image_figure(
            run_w.value, seed_w.value, split_w.value, rows_w.value,
            class_index=None if leaf or class_w.value in (None, -1) else class_w.value,
            threshold=thr_w.value))

    def refill(*_):
        if state["busy"]:  # a control set by the code itself: one redraw at the end
            return
        state["busy"] = True
        name, sd, sp = run_w.value, seed_w.value, split_w.value
        chosen = state.get("id")  # the image shown: kept when the new selection has it
        try:
            table = _first_load(ex, name, sd, sp, info, loading)
            state["id"] = _fill_rows(ex, name, table, sort_w, desc_w, rows_w, chosen)
            _fill_classes(ex, name, class_w)
            info.value = (f"<small>{len(table)} {sp} images of {name} seed {sd}; mean loss "
                          f"{table['loss'].mean():.3f}</small>")
        except Exception as err:
            _show_error(image, status, err)
        finally:
            state["busy"] = False
        draw()

    def remember(*_):
        if rows_w.value is not None and not state["busy"]:
            table = ex.table(run_w.value, seed_w.value, split_w.value)
            hit = table.loc[table["index"] == rows_w.value, "id"]
            state["id"] = str(hit.iloc[0]) if len(hit) else None

    def new_run(*_):
        state["busy"] = True
        seeds = ex.trained(run_w.value)
        seed_w.options = seeds
        seed_w.value = _keep(seeds, seed_w.value)
        state["busy"] = False
        refill()

    run_w.observe(new_run, names="value")
    for c in (seed_w, split_w, sort_w, desc_w):
        c.observe(refill, names="value")
    rows_w.observe(remember, names="value")
    for c in (rows_w, class_w, thr_w):
        c.observe(draw, names="value")
    refill()
    return w.VBox([w.HBox([run_w, seed_w, split_w]), w.HBox([sort_w, desc_w]),
                   w.VBox([info, loading.box]),
                   w.HBox([rows_w, w.VBox([class_w, thr_w])]), status, image])


def _compare_tab(w: Any, ex: Explorer, ready: list[str], run: str, split: str) -> Any:
    peers = ex.same_task(run, ready)
    other = next((r for r in peers if r != run), run)
    a_run = w.Dropdown(options=ready, value=run, description="run A")
    a_seed = w.Dropdown(options=ex.trained(run), description="seed A")
    b_run = w.Dropdown(options=peers, value=other, description="run B")
    b_seeds = ex.trained(other)
    b_seed = w.Dropdown(options=b_seeds, description="seed B")
    if other == run and len(b_seeds) > 1:
        b_seed.value = b_seeds[1]
    split_w = w.ToggleButtons(options=list(SPLITS), value=split if split in SPLITS else "heldout",
                              description="split")
    img_w = w.Dropdown(description="image", layout=w.Layout(width="420px"))
    image, status = w.Image(format="png"), w.HTML()
    image.add_class("pspnet-compare-image")
    loading = Loading(w, image)
    loading.controls = [a_run, a_seed, b_run, b_seed, split_w, img_w]
    state = {"busy": False}

    def draw(*_):
        if state["busy"] or img_w.value is None:
            return
        _show(image, status, lambda: ex.compare_figure(
            (a_run.value, a_seed.value), (b_run.value, b_seed.value), split_w.value,
            img_w.value))

    def table_of(name: str, sd: int, sp: str) -> pd.DataFrame:
        if ex.loaded(name, sd, sp):
            return ex.table(name, sd, sp)
        with loading.busy(f"loading {name} seed {sd}") as progress:
            return ex.table(name, sd, sp, progress)

    def refill(*_):
        if state["busy"]:  # a control set by the code itself: one redraw at the end
            return
        state["busy"] = True
        chosen = img_w.value  # the image shown: kept when both runs have it
        try:
            peers = ex.same_task(a_run.value, ready)  # B: runs of A's task only
            if list(b_run.options) != peers:
                b_run.options = peers
            b_run.value = _keep(peers, b_run.value if b_run.value in peers else
                                next((r for r in peers if r != a_run.value), a_run.value))
            for r, s in ((a_run, a_seed), (b_run, b_seed)):
                seeds = ex.trained(r.value)
                if list(s.options) != seeds:
                    s.options = seeds
                s.value = _keep(seeds, s.value)
            table = sort_table(table_of(a_run.value, a_seed.value, split_w.value), "loss")
            table_of(b_run.value, b_seed.value, split_w.value)
            img_w.options = [(f"{r['id']} (A loss {r['loss']:.3f})", r["id"])
                             for r in table.to_dict("records")]
            img_w.value = _keep(img_w.options, chosen)
        except Exception as err:
            _show_error(image, status, err)
        finally:
            state["busy"] = False
        draw()

    for c in (a_run, a_seed, split_w, b_run, b_seed):
        c.observe(refill, names="value")
    img_w.observe(draw, names="value")
    refill()
    return w.VBox([w.HBox([a_run, a_seed]), w.HBox([b_run, b_seed]), w.HBox([split_w, img_w]),
                   loading.box, status, image])
