"""The report as one HTML page: per section the headline metrics, then each figure.

A section shows, in order: the headline metrics; the reliability diagram; for a multi-class
task the confusion matrix (a heatmap with counts up to ``ANNOTATED_CLASSES`` classes, else
the ``TOP_CONFUSIONS`` largest confusions as a table above an overview heatmap, drawn up to
``OVERVIEW_CLASSES`` classes); per class (or label) precision, recall, F1 and losses, with a
folded table of every class; ROC and precision-recall curves where the statistics hold score
histograms (multi-label, binary, and multi-class ``/score`` with ``ranking``); and the parts
(slices, a monitoring window) against the whole. The page has no script and refers to
nothing outside itself: styles are inline, figures are inline SVG.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html import escape

from matplotlib.figure import Figure

from focal_eval.report import draw, figures, tables
from focal_eval.report.embed import inline_svg
from focal_eval.report.glossary import KEY_METRICS
from focal_eval.report.inputs import Document, Result, Section
from focal_eval.service.core.tasks import BINARY, MULTICLASS

TOP_CONFUSIONS = 20
SLICE_PANELS = 4  # of the key metrics, the first ones drawn; the table shows them all

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;
max-width:1100px;margin:0 auto;padding:16px 24px}
h1{font-size:22px;margin:8px 0}h2{font-size:18px;border-bottom:1px solid #ddd;padding-top:12px}
h3{font-size:15px;margin:20px 0 6px}.meta{color:#555}
.metrics{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:8px}
.metric{border:1px solid #e2e2e2;border-radius:6px;padding:6px 10px}
.metric .value{display:block;font-size:18px;font-variant-numeric:tabular-nums}
a.term{color:#2a5599;text-decoration:none;border-bottom:1px dotted #2a5599}
figure{margin:8px 0}figure svg{max-width:100%;height:auto}figcaption{color:#555;font-size:13px}
table{border-collapse:collapse;margin:8px 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #e2e2e2;padding:3px 8px;text-align:right;white-space:nowrap}
caption{text-align:left}
.scroll{overflow-x:auto}.better{color:#21803a}.worse{color:#b3261e}.same{color:#777}
dt{font-weight:600;margin-top:6px}dd{margin-left:16px}
"""


@dataclass(frozen=True)
class Drawn:
    """A figure of the report and the name its file takes (``--format``)."""

    stem: str
    figure: Figure


@dataclass
class Page:
    """The page's HTML and its figures, in the order they appear."""

    html: str = ""
    figures: list[Drawn] = field(default_factory=list)


def build(document: Document) -> Page:
    """The report of ``document``: its HTML and the figures in it."""
    page = Page()
    body = [_header(document)]
    for section in document.sections:
        prefix = f"{re.sub(r'[^a-z0-9_.]+', '-', section.title.lower())}-" if section.title else ""
        body.append(f"<section>{''.join(_section(section, prefix, page))}</section>")
    tasks = list(dict.fromkeys(s.whole.task for s in document.sections))
    names = {task: _shown_names(document, task) for task in tasks}
    body.append(f"<h2>Definitions</h2>{tables.definitions(tasks, names)}")
    title = escape(f"focal report: {document.path.name}")
    page.html = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
    return page


def _header(document: Document) -> str:
    parameters = ", ".join(
        f"{name} {_parameter(value)}" for name, value in document.parameters.items()
    )
    model = escape(document.model[:12] or "unknown")
    return (
        f"<h1>focal report: {escape(document.path.name)}</h1><p class=meta>A {document.kind}"
        f' scored by model <span title="{escape(document.model)}">{model}</span>'
        + (f"; {escape(parameters)}" if parameters else "")
        + ". Metrics are computed from the statistics drawn.</p>"
    )


def _parameter(value: object) -> str:
    if isinstance(value, list):
        return "per class" if value else "none"
    return "none" if value is None else str(value)


def _section(section: Section, prefix: str, page: Page) -> Iterator[str]:
    whole = section.whole
    unit = "class" if whole.task == MULTICLASS else "label"
    if section.title:
        yield f"<h2>{escape(section.title)}</h2>"
    width = "" if whole.task == BINARY else f", {whole.width} {draw.PLURAL[unit]}"
    samples = f"{whole.samples:,} samples{width} ({whole.task})"
    yield f"<p class=meta>{escape(whole.label)}: {samples}</p>"
    yield tables.headline(whole)
    yield "<h3>Calibration</h3>"
    bins = figures.reliability(whole)
    yield _figure(page, f"{prefix}reliability", draw.reliability_figure(bins, whole), _RELIABILITY)
    if whole.task == MULTICLASS:
        yield "<h3>Confusion matrix</h3>"
        yield from _confusion(whole, prefix, page)
    if whole.task != BINARY:
        values = figures.per_class(whole)
        yield f"<h3>Per {unit}</h3>"
        each = "samples" if unit == "class" else "decisions"
        caption = f"Sorted by support; losses are means over the {unit}'s {each}."
        yield _figure(page, f"{prefix}per-{unit}", draw.per_class_figure(values, unit), caption)
        yield tables.per_class_table(values, unit)
    if "positive_histogram" in whole.statistics:
        yield "<h3>ROC and precision-recall</h3>"
        yield _curves(whole, unit, prefix, page)
    if section.parts:
        names = KEY_METRICS[whole.task]
        yield f"<h3>{escape(section.parts_title)} against {escape(whole.label)}</h3>"
        yield f'<div class="scroll">{tables.slices_table(whole, section.parts, names)}</div>'
        drawn = draw.slices_figure(whole, section.parts, names[:SLICE_PANELS])
        caption = "Each part's metric less the whole's: green better, red worse."
        yield _figure(page, f"{prefix}slices", drawn, caption)


_RELIABILITY = (
    "Per confidence bin: the bars are the accuracy (multi-label: the fraction of positive"
    " targets), red the gap to the bin's mean confidence (the dots); a calibrated model lies on"
    " the diagonal. The expected calibration error is the gaps weighted by the counts below."
)


def _confusion(whole: Result, prefix: str, page: Page) -> Iterator[str]:
    confusion = whole.statistics["confusion_matrix"]
    classes = len(confusion)
    if classes <= draw.ANNOTATED_CLASSES:
        caption = "Rows are true classes, normalised to 1; cells hold the counts."
        yield _figure(page, f"{prefix}confusion", draw.confusion_figure(confusion, True), caption)
        return
    yield tables.confusions_table(figures.top_confusions(confusion, TOP_CONFUSIONS), classes)
    if classes <= draw.OVERVIEW_CLASSES:
        caption = "Overview: rows are true classes, normalised to 1."
        yield _figure(page, f"{prefix}confusion", draw.confusion_figure(confusion, False), caption)


def _curves(whole: Result, unit: str, prefix: str, page: Page) -> str:
    s, m = whole.statistics, whole.metrics
    positive, negative = s["positive_histogram"], s["negative_histogram"]
    rows = len(positive)
    if whole.task == BINARY:
        label = f"AUROC {m['auroc']:.3f}, AP {m['average_precision']:.3f}"
        drawn = draw.curves_figure([(label, figures.curve(positive[0], negative[0]))], None)
        return _figure(page, f"{prefix}curves", drawn, "From the score histograms (100 bins).")
    per_row = []
    if rows <= draw.CURVE_ROWS:
        auroc, ap = whole.per_class["auroc"], whole.per_class["average_precision"]
        per_row = [
            (f"{unit} {k} ({auroc[k]:.3f}, {ap[k]:.3f})", figures.curve(positive[k], negative[k]))
            for k in range(rows)
        ]
    pooled = (
        f"pooled ({m['micro_auroc']:.3f}, {m['micro_average_precision']:.3f})",
        figures.curve(positive.sum(0), negative.sum(0)),
    )
    caption = (
        f"From the score histograms (100 bins); in brackets AUROC and average precision."
        f" Macro AUROC {m['macro_auroc']:.4f}, macro AP {m['macro_average_precision']:.4f}"
        + ("." if per_row else f"; {rows} {draw.PLURAL[unit]}: the pooled curve only.")
    )
    return _figure(page, f"{prefix}curves", draw.curves_figure(per_row, pooled), caption)


def _figure(page: Page, stem: str, figure: Figure, caption: str) -> str:
    page.figures.append(Drawn(stem, figure))
    svg = inline_svg(figure, f"f{len(page.figures)}")
    return f"<figure><div>{svg}</div><figcaption>{escape(caption)}</figcaption></figure>"


def _shown_names(document: Document, task: str) -> list[str]:
    """Every metric name the page shows for ``task``, in order of first appearance."""
    names: dict[str, None] = {}
    for section in document.sections:
        if section.whole.task == task:
            names |= dict.fromkeys(section.whole.metrics)
            names |= dict.fromkeys(section.whole.per_class)
    return list(names)
