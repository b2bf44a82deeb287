"""``/dashboard`` in a real headless browser, on a real server fed known batches.

The numbers on the page must be ``/summary``'s own, every figure drawn, and the confusion
matrix's colours the row-normalised counts (computed here with numpy from the raw labels).
"""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import httpx
import numpy as np
import pytest

from focal_eval.service.testing import Server, focal_server
from tests.browser import load
from tests.service._inputs import batch, label_batch
from tests.service._requests import json_body

C, LABELS = 6, 4
CHART_HEIGHT = 280  # dashboard.css: .chart


class _Page(HTMLParser):
    """The attributes of every element with an id or a ``data-`` attribute, with its source."""

    def __init__(self) -> None:
        super().__init__()
        self.source: str | None = None
        self.elements: list[tuple[str | None, str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "section" and "data-source" in found:
            self.source = found["data-source"]
        if "id" in found or any(name.startswith("data-") for name in found):
            self.elements.append((self.source, tag, found))


@pytest.fixture(scope="module")
def fed() -> Iterator[tuple[Server, dict[str, Any], np.ndarray, np.ndarray]]:
    """A server fed a multi-class source (prod) and a multi-label one (tags); its /summary."""
    logits, labels = batch(600, C, 7, ignore_fraction=0.05)
    label_logits, targets = label_batch(300, LABELS, 8, ignore_fraction=0.05)
    with focal_server({"FOCAL_MONITOR_SOURCES": "prod,tags", "FOCAL_THREADS": "1"}) as server:
        for body in (
            json_body(logits[:250], labels[:250], source="prod", per_sample=False),
            json_body(logits[250:], labels[250:], source="prod", per_sample=False),
            json_body(label_logits, targets, source="tags", per_sample=False),
        ):
            response = httpx.post(server.url + "/score", json=body, timeout=30)
            assert response.status_code == 200, response.text
        summary = httpx.get(server.url + "/summary", timeout=30).json()
        yield server, summary, logits, labels


@pytest.fixture(scope="module")
def page(fed: tuple[Server, dict[str, Any], np.ndarray, np.ndarray]) -> _Page:
    """The page after its scripts ran; it logged nothing to the console.

    With ``refresh=1`` the page reads /summary every second of chromium's virtual time and
    redraws its charts in place each time.
    """
    loaded = load(fed[0].url + "/dashboard?refresh=1")
    assert loaded.console == []
    parsed = _Page()
    parsed.feed(loaded.dom)
    return parsed


def test_every_number_on_the_page_is_the_summarys(
    fed: tuple[Server, dict[str, Any], np.ndarray, np.ndarray], page: _Page
) -> None:
    sources = fed[1]["sources"]
    shown = [(s, a) for s, tag, a in page.elements if tag == "td" and "data-metric" in a]
    assert {s for s, _ in shown} == {"prod", "tags"}
    for source, attributes in shown:
        scope = sources[source][attributes["data-scope"]]
        metric = attributes["data-metric"]
        want = scope["samples"] if metric == "samples" else scope["metrics"][metric]
        assert float(attributes["data-value"]) == want, (source, attributes)
    assert len(shown) == 2 * (1 + 9) * 2  # two sources, samples + 9 headline metrics, 2 scopes


def test_every_figure_is_drawn(page: _Page) -> None:
    canvases = [(s, a) for s, tag, a in page.elements if tag == "canvas"]
    figures = sorted((s, a["data-figure"]) for s, tag, a in page.elements if tag == "figure")
    assert figures == [
        ("prod", "per-class"),
        ("prod", "reliability"),
        ("tags", "per-class"),
        ("tags", "reliability"),
    ]
    for source, attributes in canvases:
        assert int(attributes["data-points"]) > 0, source
        # Chart.js sized the canvas to its box (.chart, 280 px high): it ran, and the box held
        assert int(attributes["width"]) > 0, source
        assert int(attributes["height"]) == CHART_HEIGHT, source
    ids = {a["id"]: a for _, _, a in page.elements if "id" in a}
    assert "data-updated" in ids["status"]  # /summary was read and rendered
    assert "hidden" in ids["no-charts"]
    assert "hidden" in ids["no-sources"]


def test_the_confusion_colours_are_row_normalised_counts(
    fed: tuple[Server, dict[str, Any], np.ndarray, np.ndarray], page: _Page
) -> None:
    logits, labels = fed[2], fed[3]
    valid = labels >= 0
    confusion = np.zeros((C, C))
    np.add.at(confusion, (labels[valid], logits[valid].argmax(1)), 1)
    want = confusion / confusion.sum(1, keepdims=True)
    shares = [(s, float(a["data-share"])) for s, _, a in page.elements if "data-share" in a]
    assert {s for s, _ in shares} == {"prod"}
    np.testing.assert_allclose(np.reshape([v for _, v in shares], (C, C)), want, rtol=1e-12)
