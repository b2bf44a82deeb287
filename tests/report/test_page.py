"""The page: valid HTML that refers to nothing outside itself, small, with every figure the
statistics allow and the layout each class count calls for."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from focal_eval.report import draw, page
from focal_eval.report.glossary import DEFINITIONS
from focal_eval.report.inputs import load
from tests.report._inputs import Scored, confused, post

VOID = {"meta", "br", "img", "input", "link", "hr", "source", "wbr"}


class Elements(HTMLParser):
    """Every start tag with its attributes; checks that non-void elements nest and close."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        assert self.open[-1:] == [tag], f"</{tag}> closes <{self.open[-1:]}>"
        self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(html: str) -> Elements:
    elements = Elements()
    elements.feed(html)
    elements.close()
    assert elements.open == ["html"] or not elements.open, elements.open[-5:]
    return elements


def built(scored: Scored) -> page.Page:
    return page.build(load(scored.path))


@pytest.mark.parametrize(
    ("fixture", "figures"),
    [
        pytest.param("multiclass", 4, id="multiclass_score"),
        pytest.param("multilabel_scored", 3, id="multilabel_score"),
        pytest.param("binary", 2, id="binary_score"),
        pytest.param("summary", 8, id="summary"),
        pytest.param("evaluated", 4, id="evaluate"),
    ],
)
def test_page_is_html_with_every_figure_inline_and_nothing_outside(
    fixture: str, figures: int, request: pytest.FixtureRequest
) -> None:
    scored = request.getfixturevalue(fixture)
    built_page = built(scored[0] if isinstance(scored, tuple) else scored)
    elements = parsed(built_page.html)
    assert len(built_page.figures) == figures
    tags = [tag for tag, _ in elements.tags]
    assert tags.count("figure") == tags.count("figcaption") == figures
    assert sum(1 for tag, a in elements.tags if tag == "svg" and "viewbox" in a) == figures
    assert not {"script", "link", "iframe", "object", "embed"} & set(tags)
    for tag, attributes in elements.tags:
        for name in ("src", "href", "xlink:href"):
            value = attributes.get(name) or "#"
            assert value.startswith(("#", "data:image/png;base64,")), (tag, name, value[:60])
    assert re.findall(r"url\((?!#)", built_page.html) == []
    assert not re.findall(r"@import|@font-face", built_page.html)
    assert "http" not in built_page.html  # not even the SVG namespaces: the parser knows them


def test_ids_are_unique_and_every_reference_has_its_target(multiclass: Scored) -> None:
    html = built(multiclass).html
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids))
    references = set(re.findall(r'href="#([^"]+)"', html)) | set(
        re.findall(r"url\(#([^)]+)\)", html)
    )
    assert references <= set(ids)


def test_every_metric_has_a_definition_in_a_footnote_and_on_hover(multiclass: Scored) -> None:
    document = load(multiclass.path)
    elements = parsed(page.build(document).html)
    shown = [*document.sections[0].whole.metrics, *document.sections[0].whole.per_class]
    footnotes = {a["id"] for tag, a in elements.tags if tag == "dt"}
    assert footnotes == {f"def-multiclass-{name}" for name in shown}
    terms = {a["href"]: a["title"] for tag, a in elements.tags if tag == "a"}
    for name in document.sections[0].whole.metrics:
        assert terms[f"#def-multiclass-{name}"] == DEFINITIONS["multiclass"][name]


@pytest.mark.parametrize("fixture", ["multiclass", "multilabel_scored", "binary"])
def test_the_glossary_defines_every_metric_the_graphs_compute(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    whole = load(request.getfixturevalue(fixture).path).sections[0].whole
    for name in [*whole.metrics, *whole.per_class]:
        assert DEFINITIONS[whole.task].get(name), name


def test_up_to_30_classes_the_matrix_has_its_counts_in_the_cells(multiclass: Scored) -> None:
    built_page = built(multiclass)
    confusion = load(multiclass.path).sections[0].whole.statistics["confusion_matrix"]
    figure = next(d.figure for d in built_page.figures if d.stem == "confusion")
    cells = [t.get_text() for t in figure.axes[0].texts]
    assert cells == [str(count) for count in confusion.reshape(-1) if count]
    assert "largest confusions" not in built_page.html


def test_past_30_classes_a_table_of_the_20_largest_confusions_and_an_overview(
    wide: Scored,
) -> None:
    built_page = built(wide)
    elements = parsed(built_page.html)
    assert "The 20 largest confusions of 40 classes" in "".join(elements.text)
    rows = [tag for tag, _ in elements.tags].count("tr")
    assert rows >= 21  # the confusions' header and 20 rows (and the per-class table's)
    overview = next(d.figure for d in built_page.figures if d.stem == "confusion")
    assert len(overview.axes[0].texts) == 0  # no counts: 1,600 cells would be unreadable


def test_past_200_classes_no_heatmap_and_per_class_lines(
    client: TestClient, tmp_path: Path
) -> None:
    logits, labels = confused(1500, draw.OVERVIEW_CLASSES + 1, seed=9)
    scored = post(client, tmp_path / "r.json", logits, labels)
    stems = [d.stem for d in built(scored).figures]
    assert stems == ["reliability", "per-class"]


def test_report_of_100_classes_is_under_a_megabyte(client: TestClient, tmp_path: Path) -> None:
    logits, labels = confused(5000, 100, seed=10)
    scored = post(client, tmp_path / "r.json", logits, labels, ranking=True)
    html = built(scored).html
    assert len(html.encode()) < 2**20


def test_the_same_input_gives_the_same_page(multiclass: Scored) -> None:
    assert built(multiclass).html == built(multiclass).html


def test_slices_table_shows_each_slices_difference_from_all_rows(
    evaluated: tuple[Scored, np.ndarray],
) -> None:
    scored, _ = evaluated
    section = load(scored.path).sections[0]
    text = "".join(parsed(page.build(load(scored.path)).html).text)
    for part in section.parts:
        change = part.metrics["accuracy"] - section.whole.metrics["accuracy"]
        assert f"{part.metrics['accuracy']:.4f} ({change:+.4f})" in text
