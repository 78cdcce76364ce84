"""The architecture diagram of the network (Fig. 1)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from pspnet_core.results.figure_base import StudyFigure


def _human(n: int | float) -> str:
    n = float(n)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{int(n)}"


def _shape_text(shape: Any) -> str:
    dims = [int(d) for d in (shape if shape is not None else [])]
    if len(dims) == 4:  # (B, C, H, W): drop the batch
        dims = dims[1:]
    return "\u00d7".join(str(d) for d in dims) if dims else "?"


# ---------------------------------------------------------------- fig01


def _trainable_text(row: Mapping[str, Any]) -> str:
    """"all trainable", "frozen" or "<n> trainable" for a part's parameter row."""
    total, trainable = int(row["total"]), int(row["trainable"])
    if total and trainable == total:
        return "all trainable"
    return "frozen" if total and not trainable else f"{_human(trainable)} trainable"


def _draw_box(ax: Any, x: float, y: float, item: Mapping[str, Any], color: str,
              params: Mapping[str, Mapping[str, Any]], box_w: float) -> None:
    """One part's box: its name, its output shape and its parameter counts (or, for the
    outputs, the upsampling)."""
    part = str(item["part"])
    ax.add_patch(
        FancyBboxPatch(
            (x, y),
            box_w,
            1.0,
            boxstyle="round,pad=0.03,rounding_size=0.08",
            facecolor=color,
            edgecolor="black",
            linewidth=1.0,
        )
    )
    ax.text(
        x + box_w / 2, y + 0.78, part, ha="center", va="center", fontsize=10, fontweight="bold"
    )
    ax.text(
        x + box_w / 2,
        y + 0.5,
        _shape_text(item.get("shape")),
        ha="center",
        va="center",
        fontsize=8.5,
        family="monospace",
    )
    row = params.get(part)
    if row is not None:
        ax.text(
            x + box_w / 2,
            y + 0.2,
            f"{_human(row['total'])} params\n{_trainable_text(row)}",
            ha="center",
            va="center",
            fontsize=7.5,
            color="0.25",
        )
    elif part in ("main", "aux", "output"):
        ax.text(
            x + box_w / 2,
            y + 0.2,
            "bilinear upsample\nto input size",
            ha="center",
            va="center",
            fontsize=7.5,
            color="0.25",
        )


def _draw_arrow(ax: Any, p: tuple[float, float], q: tuple[float, float],
                dashed: bool = False) -> None:
    """An arrow from ``p`` to ``q`` (dashed: the training-only aux branch)."""
    ax.add_patch(
        FancyArrowPatch(
            p,
            q,
            arrowstyle="-|>",
            mutation_scale=12,
            linewidth=1.2,
            linestyle="--" if dashed else "-",
            color="black",
        )
    )


PART_COLORS = {
    "input": "#eeeeee",
    "stem": "#fde0c5",
    "ppm": "#c8e6c9",
    "head": "#f8bbd0",
    "main": "#f8bbd0",
    "output": "#eeeeee",
}


def _draw_main_row(ax: Any, main: Sequence[Mapping[str, Any]],
                   params: Mapping[str, Mapping[str, Any]], box_w: float,
                   gap: float) -> dict[str, float]:
    """The main path's boxes left to right, joined by arrows; returns each part's x."""
    xs = {}
    for i, item in enumerate(main):
        part = str(item["part"])
        x = i * (box_w + gap)
        xs[part] = x
        color = "#bbdefb" if part.startswith("layer") else PART_COLORS.get(part, "#e1bee7")
        _draw_box(ax, x, 0.0, item, color, params, box_w)
        if i:
            _draw_arrow(ax, (x - gap, 0.5), (x, 0.5))
    return xs


def _draw_aux_branch(ax: Any, aux: Sequence[Mapping[str, Any]],
                     main: Sequence[Mapping[str, Any]], xs: Mapping[str, float],
                     params: Mapping[str, Mapping[str, Any]], box_w: float, gap: float) -> None:
    """The auxiliary branch below the main row, fed (dashed) from ``layer3``."""
    src = "layer3" if "layer3" in xs else str(main[len(main) // 2]["part"]) if main else None
    x0 = xs.get(src, 0.0) if src else 0.0
    for j, item in enumerate(aux):
        x = x0 + j * (box_w + gap)
        _draw_box(ax, x, -1.9, item, "#fff9c4", params, box_w)
        if j:
            _draw_arrow(ax, (x - gap, -1.4), (x, -1.4))
    _draw_arrow(ax, (x0 + box_w / 2, -0.05), (x0 + box_w / 2, -0.88), dashed=True)
    ax.text(
        x0 + box_w / 2 + 0.05,
        -0.5,
        f"aux branch from {src} (training only)",
        fontsize=8,
        va="center",
        style="italic",
    )


def _diagram_subtitle(trace: Sequence[Mapping[str, Any]],
                      param_rows: Sequence[Mapping[str, Any]],
                      params: Mapping[str, Mapping[str, Any]], setting: str) -> str:
    """The parameter totals, the setting and the parameter rows that have no box."""
    drawn = {str(t["part"]) for t in trace}
    extra = [r for p, r in params.items() if p not in drawn]
    total = sum(int(r["total"]) for r in param_rows)
    trainable = sum(int(r["trainable"]) for r in param_rows)
    subtitle = (
        f"shapes measured by a forward pass (C\u00d7H\u00d7W); parameters: "
        f"{total:,} total, {trainable:,} trainable" + (f" ({setting})" if setting else "")
    )
    if extra:
        subtitle += "; also " + ", ".join(
            f"{r['part']} {_human(r['total'])}/{_human(r['trainable'])}" for r in extra
        )
    return subtitle


def architecture_diagram(
    trace: Sequence[Mapping[str, Any]],
    param_rows: Sequence[Mapping[str, Any]],
    title: str = "Fig. 1  PSPNet: stem, dilated ResNet50, pyramid pooling, decoder, aux branch",
    setting: str = "",
) -> Figure:
    """Block diagram of the measured structure (fig01).

    ``trace`` (from ``model.trace_shapes``) gives the drawn boxes, in order, each annotated
    with its output shape (C x H x W; the batch dimension is dropped). ``param_rows`` (from
    ``model.parameters_by_part``) adds "total / trainable" parameter counts to the box of the
    same part ("all trainable", "frozen" or the trainable count): pass the rows of the model
    the preset trains, so a whole-network preset is not drawn with the paper's frozen
    backbone; ``setting`` (e.g. "freeze_backbone: false") is said in the subtitle. Parts whose
    name contains "aux" form the auxiliary branch, drawn below and fed from ``layer3``
    (training only). Parameter rows without a box are listed underneath.
    """
    params = {str(r["part"]): r for r in param_rows}
    main = [t for t in trace if "aux" not in str(t["part"]).lower()]
    aux = [t for t in trace if "aux" in str(t["part"]).lower()]
    n = max(len(main), 1)
    box_w, gap = 1.0, 0.45
    width = n * box_w + (n - 1) * gap
    fig = StudyFigure(figsize=(max(8.0, 1.75 * n), 4.6 if aux else 3.2))
    ax = fig.add_axes((0.01, 0.02, 0.98, 0.84))
    ax.set_xlim(-0.2, width + 0.2)
    ax.set_ylim(-2.3 if aux else -0.9, 1.35)
    ax.axis("off")
    xs = _draw_main_row(ax, main, params, box_w, gap)
    if aux:
        _draw_aux_branch(ax, aux, main, xs, params, box_w, gap)
    subtitle = _diagram_subtitle(trace, param_rows, params, setting)
    fig.suptitle(title, fontsize=11, y=0.98)
    fig.text(0.5, 0.885, subtitle, ha="center", fontsize=8.5, color="0.3")
    return fig
