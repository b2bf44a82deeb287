"""The report's tables, as HTML: headline metrics, largest confusions, per class, slices.

Every value is escaped; numbers are shown to 4 significant decimals, an undefined metric
(NaN) as an en dash. A metric's name links to its definition at the foot of the page and
shows it on hover.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import numpy as np

from focal_eval.report.figures import Confusions, PerClass, differences
from focal_eval.report.glossary import COUNTS, LOWER_IS_BETTER, definition
from focal_eval.report.inputs import Result

UNDEFINED = "&ndash;"  # HTML


def number(value: float) -> str:
    """A metric for people, as HTML: 4 decimals, NaN (undefined) as an en dash.

    Example:
        >>> number(0.123456), number(12.0), number(float("nan"))
        ('0.1235', '12.0000', '&ndash;')
    """
    return UNDEFINED if math.isnan(value) else f"{value:.4f}"


def metric_name(task: str, name: str) -> str:
    """The metric's name, linked to its definition (and the definition on hover)."""
    title = escape(definition(task, name), quote=True)
    return f'<a class="term" href="#def-{task}-{name}" title="{title}">{escape(name)}</a>'


def headline(result: Result) -> str:
    """The result's scalar metrics, one cell each."""
    cells = "".join(
        f'<div class="metric"><span class="value">{_shown(name, value)}</span>'
        f"{metric_name(result.task, name)}</div>"
        for name, value in result.metrics.items()
    )
    return f'<div class="metrics">{cells}</div>'


def definitions(tasks: Sequence[str], names: dict[str, list[str]]) -> str:
    """The definitions of the metrics shown, per task, as the page's footnotes."""
    blocks = []
    for task in tasks:
        items = "".join(
            f'<dt id="def-{task}-{name}">{escape(name)}</dt>'
            f"<dd>{escape(definition(task, name)) or UNDEFINED}</dd>"
            for name in names[task]
        )
        blocks.append(f"<h3>{escape(task)}</h3><dl>{items}</dl>")
    return "".join(blocks)


def confusions_table(top: Confusions, classes: int) -> str:
    """The largest off-diagonal counts: true class, predicted class, count, share of the row."""
    rows = "".join(
        f"<tr><td>{t}</td><td>{p}</td><td>{c:,}</td><td>{r:.1%}</td></tr>"
        for t, p, c, r in zip(top.true, top.predicted, top.count, top.rate, strict=True)
    )
    return (
        f"<table><caption>The {len(top.count)} largest confusions of {classes} classes"
        "</caption><thead><tr><th>true class</th><th>predicted as</th><th>samples</th>"
        f"<th>share of the true class</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def per_class_table(values: PerClass, unit: str) -> str:
    """Every class's values in order of support, folded (it is long for many classes)."""
    entropy = "cross entropy" if unit == "class" else "binary cross entropy"
    rows = "".join(
        f"<tr><td>{k}</td><td>{n:,}</td><td>{number(p)}</td><td>{number(r)}</td>"
        f"<td>{number(f)}</td><td>{number(fl)}</td><td>{number(ce)}</td></tr>"
        for k, n, p, r, f, fl, ce in zip(
            values.order,
            values.support,
            values.precision,
            values.recall,
            values.f1,
            values.focal_loss,
            values.cross_entropy,
            strict=True,
        )
    )
    return (
        f"<details><summary>Every {unit} ({len(values.order)}), most support first</summary>"
        f"<table><thead><tr><th>{unit}</th><th>support</th><th>precision</th><th>recall</th>"
        f"<th>F1</th><th>mean focal loss</th><th>mean {entropy}</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></details>"
    )


def slices_table(whole: Result, parts: Sequence[Result], names: Sequence[str]) -> str:
    """Each part's metrics beside the whole's, with the difference, coloured better / worse."""
    head = "".join(f"<th>{metric_name(whole.task, name)}</th>" for name in names)
    rows = [
        f"<tr><th>{escape(whole.label)}</th><td>{whole.samples:,}</td>"
        + "".join(f"<td>{number(whole.metrics[name])}</td>" for name in names)
        + "</tr>"
    ]
    for part in parts:
        cells = "".join(
            f"<td>{number(part.metrics[name])} {_difference(name, change)}</td>"
            for name, change in zip(names, differences(whole, part, tuple(names)), strict=True)
        )
        rows.append(f"<tr><th>{escape(part.label)}</th><td>{part.samples:,}</td>{cells}</tr>")
    return (
        f'<table class="slices"><thead><tr><th></th><th>samples</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _shown(name: str, value: float) -> str:
    return f"{int(value):,}" if name in COUNTS and not math.isnan(value) else number(value)


def _difference(name: str, change: float) -> str:
    """``(+0.0123)``, green when better than the whole, red when worse."""
    if np.isnan(change):
        return ""
    better = (change < 0) if name in LOWER_IS_BETTER else (change > 0)
    kind = "same" if change == 0 else "better" if better else "worse"
    return f'<span class="{kind}">({change:+.4f})</span>'
