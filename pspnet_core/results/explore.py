"""The data layer of the explorer of a preset's trained runs (notebook 07; its widgets,
``explore_widgets.study(preset)``, are in :mod:`pspnet_core.results.explore_widgets`).

Plain functions and the :class:`Explorer` cache; no widgets, what the tests call:
:func:`run_grid`, :meth:`Explorer.histories`, :func:`image_table`, :func:`sort_table`,
:func:`error_map`, :func:`threshold_metrics`, :func:`classes_present`, and the figures
:meth:`Explorer.curves_figure`, :meth:`Explorer.image_figure`,
:meth:`Explorer.compare_figure`. Predictions are
:func:`pspnet_core.results.analysis.predictions` (the one inference loop and cache format):
read from the run folder or computed once per (run, seed, split) with the network the explorer
keeps per (run, seed), a ``progress(done, total, what)`` callback saying how far; the explorer
keeps what it read in memory, so a new selection only redraws.

The explorer trains nothing: it shows the runs the store holds (``get_run(...,
train=False)``); the notebooks (or ``pspnet-train``) train them.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from pspnet_core import data
from pspnet_core.config import StudyConfig, load_params
from pspnet_core.metrics import (
    IGNORE_INDEX,
    dice_from_counts,
    iou_from_counts,
    per_class_iou,
    pixel_accuracies,
)
from pspnet_core.results import analysis, plots
from pspnet_core.results.figure_base import _blank
from pspnet_core.store.runs import Run, list_runs
from pspnet_core.train.grid import get_run

SPLITS = ("heldout", "train")
SPREADS = {"band + single seeds": (True, True), "band": (True, False),
           "single seeds": (False, True)}
ERROR_COLORS = {"correct": (235, 235, 235), "wrong": (214, 39, 40), "ignore": (224, 224, 192)}
SPLIT_NAMES = {"heldout": "held-out", "train": "training"}
# images per forward pass of a first load: on 2 CPU cores a batch of 16 small images costs about
# half as much per image as batches of 1-4 (bench/explore.py)
MODELS_KEPT = 2  # networks kept in memory (the last ones used)

# progress(done, total, what): what a first load computes and how far (the widgets' bar)
Progress = analysis.Progress

# ---------------------------------------------------------------- data layer: tables


def run_grid(cfg: StudyConfig) -> pd.DataFrame:
    """The run store's grid (:func:`pspnet_core.store.runs.list_runs`: one row per (run, seed)
    of the preset, a damaged folder listed as such) with each run's task; nothing is
    trained."""
    table = list_runs(cfg)
    table.insert(2, "task", [cfg.runs[name].task for name in table["run"]])
    return table[["run", "seed", "task", "status", "epochs_done", "epochs"]]


def metric_columns(task: str) -> list[str]:
    """The per-image quality columns of :func:`image_table` for a task."""
    return ["dice", "iou", "pixel_acc"] if task == "leaf" else ["miou", "pixel_acc"]


def image_table(pred: Mapping[str, Any], names: Sequence[str], task: str = "voc") -> pd.DataFrame:
    """Every image of a split (:func:`analysis.predictions`): ``index``, ``id``, ``loss``, the
    image's own ``miou`` (classes present in its label or prediction) or, for the leaf run,
    ``dice`` / ``iou`` of the disease class, ``pixel_acc``, ``complexity`` and one ``IoU <name>``
    column per class (NaN where the class is in neither label nor prediction)."""
    conf = np.asarray(pred["confusion"], dtype=np.float64)  # (N, K, K)
    iou = per_class_iou(torch.as_tensor(conf)).numpy()  # (N, K): metrics' one definition
    acc = pixel_accuracies(torch.as_tensor(conf)).numpy()  # (N,)
    frame = pd.DataFrame({"index": np.asarray(pred["index"], dtype=int),
                          "id": [str(i) for i in pred["ids"]],
                          "loss": np.asarray(pred["loss"], dtype=float)})
    if task == "leaf":
        t, fp, fn = conf[:, 1, 1], conf[:, 0, 1], conf[:, 1, 0]
        frame["dice"] = [dice_from_counts(*c) for c in zip(t, fp, fn, strict=True)]
        frame["iou"] = [iou_from_counts(*c) for c in zip(t, fp, fn, strict=True)]
    else:
        with np.errstate(all="ignore"):
            frame["miou"] = [np.nanmean(r) if np.isfinite(r).any() else np.nan for r in iou]
    frame["pixel_acc"] = acc
    frame["complexity"] = np.asarray(pred["complexity"], dtype=float)
    for k, name in enumerate(names[: iou.shape[1]]):
        frame[f"IoU {name}"] = iou[:, k]
    return frame


def sort_table(table: pd.DataFrame, by: str = "loss", descending: bool = True) -> pd.DataFrame:
    """``table`` sorted by column ``by`` (NaN last, ties in index order)."""
    if by not in table.columns:
        raise KeyError(f"no column {by!r}; columns: {', '.join(table.columns)}")
    return table.sort_values([by, "index"], ascending=[not descending, True],
                             na_position="last", kind="stable").reset_index(drop=True)


def row_label(row: Mapping[str, Any], metric: str, sort_by: str | None = None) -> str:
    """One line of the image list: id, loss, the task's quality number and the value sorted
    by when it is another column (a class's IoU, the complexity; NaN: "n/a")."""
    def num(col: str) -> str:
        value = float(row.get(col, np.nan))
        return f"{value:.3f}" if np.isfinite(value) else "n/a"

    text = f"{row['id']}  loss {num('loss')}  {metric} {num(metric)}"
    if sort_by and sort_by not in ("loss", metric):
        text += f"  {sort_by} {num(sort_by)}"
    return text


def classes_present(*maps: Any) -> list[int]:
    """Sorted class ids found in label / prediction maps (255 = ignore left out)."""
    found: set[int] = set()
    for m in maps:
        found |= {int(v) for v in np.unique(np.asarray(m))}
    return sorted(found - {IGNORE_INDEX})


def error_map(label: Any, prediction: Any) -> np.ndarray:
    """uint8 (H, W, 3): light grey where the prediction equals the label, red where it does not,
    cream on ignored pixels (label 255)."""
    lab, pr = np.asarray(label), np.asarray(prediction)
    out = np.empty(lab.shape + (3,), np.uint8)
    out[:] = ERROR_COLORS["correct"]
    out[(lab != pr) & (lab != IGNORE_INDEX)] = ERROR_COLORS["wrong"]
    out[lab == IGNORE_INDEX] = ERROR_COLORS["ignore"]
    return out


def threshold_metrics(probability: Any, mask: Any, threshold: float = 0.5,
                      region: Any = None) -> dict[str, float]:
    """Dice and IoU of ``probability >= threshold`` against ``mask > 0.5`` (within ``region``
    when given): the leaf run's numbers at a chosen threshold."""
    p = np.asarray(probability, dtype=np.float32) >= threshold
    m = np.asarray(mask) > 0.5
    if region is not None:
        keep = np.asarray(region, dtype=bool)
        p, m = p[keep], m[keep]
    tp = float(np.count_nonzero(p & m))
    fp = float(np.count_nonzero(p & ~m))
    fn = float(np.count_nonzero(~p & m))
    return {"threshold": float(threshold), "dice": dice_from_counts(tp, fp, fn),
            "iou": iou_from_counts(tp, fp, fn), "tp": tp, "fp": fp, "fn": fn}


def legend_handles(ids: Sequence[int], names: Sequence[str], palette: np.ndarray,
                   ignore: bool = False) -> list[Any]:
    """Colour patches ``"<id> <name>"`` for a figure legend (plus the ignore colour)."""
    return plots.class_legend_handles(ids, names, palette, ignore)


def figure_png(fig: Any, dpi: int = plots.DISPLAY_DPI) -> bytes:
    """PNG bytes of a figure (what the widgets show)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def message_figure(text: str) -> Any:
    """A small figure that only says ``text`` (nothing to draw for the selection)."""
    fig = plots.StudyFigure(figsize=(8.0, 1.2))
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=12)
    return fig


def run_colors(names: Sequence[str]) -> dict[str, str]:
    """A distinct colour per run (tab10 order), so two runs of one regime differ."""
    palette = [f"tab:{c}" for c in ("blue", "orange", "green", "red", "purple", "brown",
                                    "pink", "gray", "olive", "cyan")]
    return {n: palette[i % len(palette)] for i, n in enumerate(names)}


# ---------------------------------------------------------------- data layer: the cache


class Explorer:
    """The preset's runs, their predictions and datasets, read once and kept in memory.

    Every accessor takes a run name, a seed and a split; a (run, seed) that is not trained
    raises :class:`pspnet_core.store.runs.RunNotTrainedError` (nothing is trained here).
    """

    def __init__(self, cfg: StudyConfig) -> None:
        self.cfg = cfg
        self._runs: dict[tuple[str, int], Run] = {}
        self._pred: dict[tuple[str, int, str], dict[str, Any]] = {}
        self._tables: dict[tuple[str, int, str], pd.DataFrame] = {}
        self._ds: dict[tuple[str, str, str], Any] = {}
        self._models: dict[tuple[str, int], Any] = {}
        self._probs: dict[tuple[str, int, str, int], np.ndarray] = {}  # the last few images

    # runs ---------------------------------------------------------------
    def run(self, name: str, seed: int) -> Run:
        key = (name, int(seed))
        if key not in self._runs:
            self._runs[key] = get_run(self.cfg, name, train=False, seed=int(seed))
        return self._runs[key]

    def task(self, name: str) -> str:
        return self.cfg.runs[name].task

    def trained(self, name: str) -> list[int]:
        """Seeds of run ``name`` with a finished run in the store."""
        return [s for s in self.cfg.seeds if self.run(name, s).done]

    def ready_runs(self) -> list[str]:
        """Runs of the preset with at least one finished seed, in preset order."""
        return [n for n in self.cfg.runs if self.trained(n)]

    def names_palette(self, name: str) -> tuple[list[str], np.ndarray]:
        return data.names_and_palette(self.run(name, self.cfg.seeds[0]).run_cfg)

    # curves -------------------------------------------------------------
    def histories(self, names: Sequence[str], seeds: Sequence[int]) -> dict[str, list[Any]]:
        """``{run: [history per chosen seed]}`` of the runs with at least one epoch."""
        out = {}
        for n in names:
            frames = [self.run(n, s).history for s in seeds if s in self.cfg.seeds]
            frames = [f for f in frames if len(f)]
            if frames:
                out[n] = frames
        return out

    def curves_figure(self, names: Sequence[str], seeds: Sequence[int] | None = None,
                      splits: Sequence[str] = ("train", "heldout"), band: str = "minmax",
                      spread: str = "band + single seeds", metric: str | None = None) -> Any:
        """Loss and held-out mIoU (leaf runs alone: Dice) per epoch of the chosen runs and
        seeds, as :func:`plots.learning_curves` draws Figs. 5/10."""
        seeds = list(self.cfg.seeds) if seeds is None else list(seeds)
        if not names or not seeds:
            return message_figure("No " + ("run" if not names else "seed") + " selected: "
                                  "choose one or more in the list above.")
        hist = self.histories(names, seeds)
        if metric is None:
            leaf_only = bool(names) and all(self.task(n) == "leaf" for n in names)
            metric = "heldout_dice" if leaf_only else "heldout_miou"
        show_band, show_seeds = SPREADS[spread]
        title = (f"runs {', '.join(hist)}; seeds {seeds}" if hist else
                 f"no history of runs {', '.join(names)} for seeds {seeds}")
        return plots.learning_curves(hist, colors=run_colors(list(names)), title=title,
                                     metric=metric, band=band if show_band else "none",
                                     splits=tuple(splits), seed_lines=show_seeds)

    # images -------------------------------------------------------------
    def model(self, name: str, seed: int) -> Any:
        """The network of a (run, seed) on the CPU, loaded once (first loads and class
        probabilities share it)."""
        key = (name, int(seed))
        if key not in self._models:
            if len(self._models) >= MODELS_KEPT:  # a ResNet50 is ~100 MB: keep the last few
                self._models.pop(next(iter(self._models)))
            # the run's own memory format (analysis.load_model): the explorer's first load
            # writes the same cache as analysis.predictions, so it must give the same bits
            self._models[key] = analysis.load_model(self.run(name, seed), "cpu")
        return self._models[key]

    def loaded(self, name: str, seed: int, split: str) -> bool:
        """Whether the predictions of a (run, seed, split) are in memory (a redraw only)."""
        return (name, int(seed), split) in self._pred

    def predictions(self, name: str, seed: int, split: str,
                    progress: Progress | None = None) -> dict[str, Any]:
        """:func:`analysis.predictions` of a (run, seed, split): read from the run folder's
        cache, else computed once (the network this explorer keeps; ``progress`` says how far)
        and cached there; kept in memory."""
        key = (name, int(seed), split)
        if key not in self._pred:
            self._pred[key] = analysis.predictions(
                self.run(name, seed), split, "cpu", get_model=lambda: self.model(name, seed),
                progress=progress)
        return self._pred[key]

    def table(self, name: str, seed: int, split: str,
              progress: Progress | None = None) -> pd.DataFrame:
        """:func:`image_table` of a (run, seed, split) (a first load: ``progress``)."""
        key = (name, int(seed), split)
        if key not in self._tables:
            names, _ = self.names_palette(name)
            self._tables[key] = image_table(self.predictions(name, seed, split, progress),
                                            names, self.task(name))
        return self._tables[key]

    def _dataset(self, name: str, seed: int, split: str) -> Any:
        run = self.run(name, seed)
        key = (name, run.hash, split)
        if key not in self._ds:
            self._ds[key] = data.build_eval_dataset(run.run_cfg, split)
        return self._ds[key]

    def image(self, name: str, seed: int, split: str, index: int) -> np.ndarray:
        """The evaluation input uint8 (H, W, 3) of dataset image ``index``."""
        rc = self.run(name, seed).run_cfg
        img, _ = self._dataset(name, seed, split)[int(index)]
        return data.denormalize(img, rc.augment.normalize)

    def probability(self, name: str, seed: int, split: str, index: int) -> np.ndarray:
        """Softmax (or the leaf run's sigmoid) maps (K, H, W) of one image; the network is
        loaded once per (run, seed) and the maps of the last 8 images are kept, so choosing
        another class of the same image only redraws. The leaf run's maps come from the cache."""
        if self.task(name) == "leaf":
            return np.asarray(self.predictions(name, seed, split)["probabilities"][int(index)],
                              dtype=np.float32)[None]
        cached = self._probs.get((name, int(seed), split, int(index)))
        if cached is not None:  # another class of the same image: no forward pass
            return cached
        img, _ = self._dataset(name, seed, split)[int(index)]
        probs = analysis.class_probability(self.model(name, seed), self.run(name, seed), img)
        if len(self._probs) >= 8:
            self._probs.pop(next(iter(self._probs)))
        self._probs[(name, int(seed), split, int(index))] = probs
        return probs

    def selection(self, name: str, seed: int, split: str, index: int,
                  threshold: float = 0.5) -> dict[str, Any]:
        """Everything one image row shows: input, label, prediction (the leaf run: at
        ``threshold``), error map, its table row and, for the leaf run, the analog map and
        the Dice / IoU at ``threshold``."""
        pred = self.predictions(name, seed, split)
        pos = int(np.flatnonzero(np.asarray(pred["index"]) == int(index))[0])
        label = np.asarray(pred["labels"][pos])
        out: dict[str, Any] = {"image": self.image(name, seed, split, index), "label": label,
                               "row": self.table(name, seed, split).iloc[pos].to_dict(),
                               "run": name, "seed": int(seed), "split": split}
        if self.task(name) == "leaf":
            p = np.asarray(pred["probabilities"][pos], dtype=np.float32)
            out["probability"] = p
            out["prediction"] = (p >= threshold).astype(np.uint8)
            out["threshold"] = threshold_metrics(p, label, threshold)
        else:
            out["prediction"] = np.asarray(pred["predictions"][pos])
        out["error"] = error_map(label, out["prediction"])
        return out

    def index_of(self, name: str, seed: int, split: str, image_id: str) -> int | None:
        """Dataset index of ``image_id`` in a (run, seed, split), or None."""
        ids = self.predictions(name, seed, split)["ids"]
        idx = self.predictions(name, seed, split)["index"]
        return next((int(i) for i, x in zip(idx, ids, strict=True) if str(x) == image_id), None)

    def image_figure(self, name: str, seed: int, split: str, index: int,
                     class_index: int | None = None, threshold: float = 0.5) -> Any:
        """input | label | prediction | error map of one image, the classes present in label
        or prediction in a legend; plus the probability of ``class_index`` (multi-class) or the
        analog heatmap with the ``threshold`` contour (leaf)."""
        sel = self.selection(name, seed, split, index, threshold)
        names, palette = self.names_palette(name)
        leaf = self.task(name) == "leaf"
        extra = leaf or class_index is not None
        fig = plots.StudyFigure(figsize=(2.6 * (5 if extra else 4), 3.6), layout="constrained")
        axes = fig.subplots(1, 5 if extra else 4)
        axes[0].imshow(sel["image"])
        axes[1].imshow(plots.colorize(sel["label"], palette), interpolation="nearest")
        axes[2].imshow(plots.colorize(sel["prediction"], palette), interpolation="nearest")
        axes[3].imshow(sel["error"], interpolation="nearest")
        titles = ["input", "label", "prediction" + (f" (p >= {threshold:g})" if leaf else ""),
                  "error (red: wrong)"]
        if leaf:
            p = sel["probability"]
            shown = axes[4].imshow(p, cmap="inferno", vmin=0, vmax=1)
            fig.colorbar(shown, ax=axes[4], fraction=0.046, pad=0.02, label="p(disease)")
            if p.min() < threshold < p.max():
                axes[4].contour(p, levels=[threshold], colors=["cyan"], linewidths=0.8)
            titles.append("disease likelihood")
        elif class_index is not None:
            prob = self.probability(name, seed, split, index)[int(class_index)]
            shown = axes[4].imshow(prob, cmap="viridis", vmin=0, vmax=1)
            fig.colorbar(shown, ax=axes[4], fraction=0.046, pad=0.02, label="probability")
            titles.append(f"p({names[int(class_index)]})")
        for ax, t in zip(axes, titles, strict=True):
            _blank(ax)
            ax.set_title(t, fontsize=9)
        row = sel["row"]
        numbers = "  ".join(f"{m} {row[m]:.3f}" for m in ["loss", *metric_columns(self.task(name))]
                            if m in row)
        if leaf:
            t = sel["threshold"]
            numbers += f"  |  at p >= {threshold:g}: Dice {t['dice']:.3f}, IoU {t['iou']:.3f}"
        fig.suptitle(f"{name}, seed {seed}, {split} image {row['id']}: {numbers}", fontsize=10)
        ids = classes_present(sel["label"], sel["prediction"])
        handles = legend_handles(ids, names, palette,
                                 ignore=bool((sel["label"] == IGNORE_INDEX).any()))
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8) or 1,
                   fontsize=8, frameon=False)
        return fig

    def compare_figure(self, a: tuple[str, int], b: tuple[str, int], split: str,
                       image_id: str) -> Any:
        """Two (run, seed) pairs on the same image (by id): input and label once, then each
        one's prediction and error map, with its per-image numbers."""
        idx_a, idx_b = (self.index_of(*x, split, image_id) for x in (a, b))
        if idx_a is None or idx_b is None:
            missing = a if idx_a is None else b
            raise KeyError(f"image {image_id!r} is not in the {split} split of run "
                           f"{missing[0]} seed {missing[1]} (compare runs of one task)")
        sa = self.selection(*a, split, idx_a)
        sb = self.selection(*b, split, idx_b)
        names, palette = self.names_palette(a[0])
        # two rows of three (input | A | A errors over label | B | B errors): the figure is
        # shown at the notebook's width, so its text stays readable
        fig = plots.StudyFigure(figsize=(9.0, 6.6), layout="constrained")
        axes = fig.subplots(2, 3)
        panels = [(sa["image"], "input")]
        for (run, seed), s in ((a, sa), (b, sb)):
            metric = metric_columns(self.task(run))[0]
            panels += [(plots.colorize(s["prediction"], palette),
                        f"{run} seed {seed}\nloss {s['row']['loss']:.3f}, {metric} "
                        f"{s['row'][metric]:.3f}"),
                       (s["error"], f"{run} seed {seed}: errors")]
            if len(panels) == 3:
                panels.append((plots.colorize(sa["label"], palette), "label"))
        for ax, (img, t) in zip(axes.ravel(), panels, strict=True):
            ax.imshow(img, interpolation="nearest")
            _blank(ax)
            ax.set_title(t, fontsize=11)
        fig.suptitle(f"{split} image {image_id}: {a[0]} seed {a[1]} vs {b[0]} seed {b[1]}",
                     fontsize=12)
        ids = classes_present(sa["label"], sa["prediction"], sb["prediction"])
        handles = legend_handles(ids, names, palette,
                                 ignore=bool((sa["label"] == IGNORE_INDEX).any()))
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6) or 1,
                   fontsize=10, frameon=False)
        return fig

    def same_task(self, name: str, names: Sequence[str]) -> list[str]:
        """The runs of ``names`` with the task of run ``name`` (what Compare can pair)."""
        return [n for n in names if self.task(n) == self.task(name)]


def explorer(preset: str | StudyConfig = "smoke",
             overrides: dict[str, Any] | None = None) -> Explorer:
    """The data layer of a preset (a name, a path, or a loaded config)."""
    cfg = preset if isinstance(preset, StudyConfig) else load_params(preset, overrides or None)
    return Explorer(cfg)
