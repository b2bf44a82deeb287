"""The report's figures, drawn by matplotlib from :mod:`focal_eval.report.figures`' data.

Each function returns a :class:`~matplotlib.figure.Figure` (no pyplot, no global state: the
style is an ``rc_context`` around each drawing). Large class counts switch layout where a
figure of every class would be unreadable:

- the confusion matrix has its counts written in the cells up to :data:`ANNOTATED_CLASSES`
  classes, and is drawn without them (an overview) up to :data:`OVERVIEW_CLASSES`; the report
  shows a table of the largest confusions beyond :data:`ANNOTATED_CLASSES`.
- per-class values are grouped bars (one group per class, its support under it) up to
  :data:`BARS_CLASSES` classes, and lines over the classes ranked by support beyond.
- ROC and precision-recall curves are drawn per class or label up to :data:`CURVE_ROWS`
  rows, beside the pooled (micro) curve; beyond, the pooled curve alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.typing import RcKeyType

from focal_eval.report.figures import Curve, PerClass, Reliability, differences, row_normalised
from focal_eval.report.glossary import LOWER_IS_BETTER
from focal_eval.report.inputs import Result
from focal_eval.service.core.tasks import MULTICLASS

ANNOTATED_CLASSES = 30
OVERVIEW_CLASSES = 200
BARS_CLASSES = 30
CURVE_ROWS = 10
WIDTH_IN = 7.5  # every figure's width, inches

STYLE: dict[RcKeyType, Any] = {
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e4e4e4",
    "grid.linewidth": 0.6,
    "legend.fontsize": 8.0,
    "legend.frameon": False,
    "text.parse_math": False,  # labels come from data (slice values): "$" is a dollar sign
}
PLURAL = {"class": "classes", "label": "labels"}
BLUE, ORANGE, GREEN, RED, GREY = "#3b6fb6", "#e08a2c", "#4a9a5b", "#c8423b", "#8c8c8c"
P = ParamSpec("P")


def _styled(drawing: Callable[P, Figure]) -> Callable[P, Figure]:
    """``drawing`` in the report's matplotlib style (for its call only: no global change)."""

    @functools.wraps(drawing)
    def styled(*args: P.args, **kwargs: P.kwargs) -> Figure:
        with matplotlib.rc_context(STYLE):
            return drawing(*args, **kwargs)

    return styled


@_styled
def reliability_figure(bins: Reliability, result: Result) -> Figure:
    """Accuracy (or fraction positive) per confidence bin, its gap, and the bin counts below.

    The gap is the bin's mean confidence less its accuracy (multi-label: mean p less the
    fraction of positive targets).
    """
    multiclass = result.task == MULTICLASS
    figure = Figure(figsize=(WIDTH_IN, 5.0), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    centers = (bins.edges[:-1] + bins.edges[1:]) / 2
    width = np.diff(bins.edges) * 0.92
    filled = bins.count > 0
    observed = "accuracy" if multiclass else "fraction positive"
    top.bar(centers[filled], bins.accuracy[filled], width[filled], color=BLUE, label=observed)
    top.bar(
        centers[filled],
        (bins.confidence - bins.accuracy)[filled],
        width[filled],
        bottom=bins.accuracy[filled],
        fill=False,
        hatch="////",
        edgecolor=RED,
        linewidth=0.8,
        label=f"gap to the mean {'confidence' if multiclass else 'p'} (dots)",
    )
    top.plot([0, 1], [0, 1], "--", color=GREY, linewidth=1, label="perfectly calibrated")
    top.plot(bins.confidence[filled], bins.accuracy[filled], "o", color="black", markersize=3)
    ece = result.metrics["expected_calibration_error"]
    top.set(ylim=(0, 1), xlim=(0, 1), ylabel=observed, title=f"Reliability (ECE {ece:.4f})")
    top.legend(loc="upper left")
    bottom.bar(centers, bins.count, width, color=GREY)
    bottom.set(
        ylabel="samples" if multiclass else "decisions",
        xlabel="confidence (top-class probability)" if multiclass else "predicted probability p",
    )
    return figure


@_styled
def confusion_figure(confusion: np.ndarray, annotated: bool) -> Figure:
    """The confusion matrix normalised by row, its counts in the cells when ``annotated``."""
    classes = len(confusion)
    side = min(max(3.0, 0.26 * classes + 1.8), WIDTH_IN)
    figure = Figure(figsize=(side + 1.0, side), layout="constrained")
    axes = figure.subplots()
    rates = row_normalised(confusion)
    image = axes.imshow(rates, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    axes.grid(False)
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the true class's samples")
    axes.set(xlabel="predicted class", ylabel="true class", title="Confusion matrix (by row)")
    if annotated:
        ticks = np.arange(classes)
        axes.set_xticks(ticks, [str(k) for k in ticks])
        axes.set_yticks(ticks, [str(k) for k in ticks])
        size = 8.0 if classes <= 12 else 6.0 if classes <= 20 else 4.5
        for (row, column), count in np.ndenumerate(confusion):
            if count:
                light = rates[row, column] > 0.55
                colour = "white" if light else "black"
                axes.text(column, row, str(count), ha="center", va="center", size=size, c=colour)
    return figure


@_styled
def per_class_figure(values: PerClass, unit: str) -> Figure:
    """Precision, recall and F1 per class by support, and the mean losses below.

    Bars show the support under each group; lines (many classes) have a panel of it on top.
    """
    count = len(values.order)
    bars = count <= BARS_CLASSES
    figure = Figure(figsize=(WIDTH_IN, 5.6 if bars else 6.4), layout="constrained")
    ratios = [3, 2] if bars else [1.2, 3, 2]
    *support, top, bottom = figure.subplots(len(ratios), 1, sharex=True, height_ratios=ratios)
    scores = [("precision", values.precision, BLUE), ("recall", values.recall, ORANGE)]
    scores.append(("F1", values.f1, GREEN))
    entropy = "cross entropy" if unit == "class" else "binary cross entropy"
    losses = [("focal loss", values.focal_loss, RED), (entropy, values.cross_entropy, GREY)]
    if bars:
        _grouped_bars(top, scores)
        _grouped_bars(bottom, losses)
        labels = [f"{k}\nn={n}" for k, n in zip(values.order, values.support, strict=True)]
        bottom.set_xticks(np.arange(count), labels, fontsize=7 if count > 12 else 8)
        bottom.set_xlabel(f"{unit} (most support first; n: support)")
    else:
        rank = np.arange(count)
        support[0].fill_between(rank, values.support, step="mid", color=GREY, label="support")
        support[0].set(ylim=(0, None), ylabel="support", title=f"Per {unit}, by support")
        for name, series, colour in scores:
            top.plot(rank, series, color=colour, linewidth=0.9, label=name)
        for name, series, colour in losses:
            bottom.plot(rank, series, color=colour, linewidth=0.9, label=name)
        bottom.set_xlabel(f"{count} {PLURAL[unit]} ranked by support (most first)")
    top.set(ylim=(0, 1.05), ylabel="score", title="Precision, recall, F1")
    each = "sample" if unit == "class" else "decision"
    bottom.set(ylabel=f"mean per {each}", title=f"Mean focal loss and {entropy}")
    for axes in (*support, top, bottom):
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return figure


def _grouped_bars(axes: Axes, series: Sequence[tuple[str, np.ndarray, str]]) -> None:
    width = 0.8 / len(series)
    for i, (name, values, colour) in enumerate(series):
        offset = (i - (len(series) - 1) / 2) * width
        axes.bar(np.arange(len(values)) + offset, values, width, color=colour, label=name)


@_styled
def curves_figure(curves: Sequence[tuple[str, Curve]], pooled: tuple[str, Curve] | None) -> Figure:
    """ROC and precision-recall curves: one per named row, and the pooled one in black."""
    figure = Figure(figsize=(WIDTH_IN, 3.7), layout="constrained")
    roc, pr = figure.subplots(1, 2)
    drawn: list[tuple[str, Curve, dict[str, Any]]] = [(n, c, {"linewidth": 1.1}) for n, c in curves]
    if pooled is not None:
        drawn.append((pooled[0], pooled[1], {"linewidth": 1.8, "color": "black"}))
    for label, c, style in drawn:
        roc.plot(c.false_positive_rate, c.true_positive_rate, label=label, **style)
        pr.plot(c.recall, c.precision, drawstyle="steps-pre", label=label, **style)
    roc.plot([0, 1], [0, 1], "--", color=GREY, linewidth=1)
    roc.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="false positive rate", ylabel="true positive rate")
    roc.set_title("ROC")
    pr.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
    pr.set_title("Precision-recall")
    pr.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7)
    return figure


@_styled
def slices_figure(whole: Result, parts: Sequence[Result], names: Sequence[str]) -> Figure:
    """Each part's difference from the whole in each of ``names``: green better, red worse."""
    height = 1.3 + 0.24 * len(parts)
    figure = Figure(figsize=(WIDTH_IN, height), layout="constrained")
    panels = figure.subplots(1, len(names), sharey=True, squeeze=False)[0]
    rows = np.arange(len(parts))
    changes = np.array([differences(whole, part, tuple(names)) for part in parts])
    for axes, name, change in zip(panels, names, changes.T, strict=True):
        better = change < 0 if name in LOWER_IS_BETTER else change > 0
        axes.barh(rows, change, color=np.where(better, GREEN, RED), height=0.7)
        axes.axvline(0, color="black", linewidth=0.8)
        axes.set_title(
            f"{name.replace('_', ' ')}\n({whole.label} {whole.metrics[name]:.4f})", size=8
        )
        axes.grid(axis="y", visible=False)
        axes.tick_params(axis="x", labelsize=7)
    panels[0].set_yticks(rows, [part.label for part in parts], fontsize=7)
    panels[0].invert_yaxis()
    figure.suptitle(f"Difference from {whole.label}", fontsize=9)
    return figure
