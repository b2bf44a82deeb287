"""A real browser (chromium, offline) opens the report: nothing fails, every figure is drawn.

The page has no script of its own, so a copy gets two: at the top of ``<head>`` a listener
that logs any error event (a resource that fails to load, a script error), at the end of
``<body>`` a probe that logs each figure's rendered size and decodes each raster inside the
figures. The only console message allowed is the probe's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib import image

from focal_eval.report.inputs import load
from focal_eval.report.page import build
from tests.browser import load as open_page
from tests.browser import screenshot
from tests.report._inputs import Scored

LISTENER = (
    '<script>addEventListener("error", e => console.log("error " + (e.message ||'
    " e.target.outerHTML.slice(0, 200))), true);</script>"
)
PROBE = """<script>(async () => {
  const figures = [...document.querySelectorAll("figure svg")].map(svg => {
    const box = svg.getBoundingClientRect();
    return [box.width, box.height, svg.querySelectorAll("path, use, text, image").length];
  });
  const images = await Promise.all([...document.querySelectorAll("figure svg image")].map(
    async element => {
      const raster = new Image();
      raster.src = element.getAttribute("xlink:href") || element.getAttribute("href");
      await raster.decode();
      const box = element.getBoundingClientRect();
      return [raster.naturalWidth, box.width, box.height];
    }));
  console.log("probe " + JSON.stringify({figures, images}));
})();</script>"""


def probed(scored: Scored, folder: Path) -> tuple[int, dict[str, Any]]:
    """The report's figure count, and what the probe logged in chromium."""
    page = build(load(scored.path))
    html = page.html.replace("<head>", f"<head>{LISTENER}", 1).replace("</body>", f"{PROBE}</body>")
    path = folder / "probed.html"
    path.write_text(html)
    loaded = open_page(path.as_uri())
    assert len(loaded.console) == 1, loaded.console
    assert loaded.console[0].startswith("probe "), loaded.console
    return len(page.figures), json.loads(loaded.console[0].removeprefix("probe "))


@pytest.mark.parametrize(
    ("fixture", "rasters"),
    [
        pytest.param("evaluated", 2, id="evaluate_slices"),
        pytest.param("multiclass", 2, id="multiclass_curves"),
        pytest.param("wide", 2, id="overview_heatmap"),
        pytest.param("summary", 2, id="summary_two_tasks"),
        pytest.param("binary", 0, id="binary"),
    ],
)
def test_chromium_draws_every_figure_with_no_error(
    fixture: str, rasters: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    scored = request.getfixturevalue(fixture)
    count, probe = probed(scored[0] if isinstance(scored, tuple) else scored, tmp_path)
    assert len(probe["figures"]) == count
    for width, height, marks in probe["figures"]:
        assert width > 100
        assert height > 100
        assert marks > 20
    assert len(probe["images"]) == rasters  # a heatmap's cells and its colour bar
    for natural_width, width, height in probe["images"]:
        assert natural_width > 0
        assert width > 5
        assert height > 200


def test_a_screenshot_shows_the_figures(evaluated: tuple[Scored, object], tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(build(load(evaluated[0].path)).html)
    shot = tmp_path / "report.png"
    screenshot(page.as_uri(), shot, 1200, 1600)
    pixels = image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (1600, 1200)
    blue = np.all(np.abs(pixels - np.array([0x3B, 0x6F, 0xB6]) / 255) < 0.02, axis=-1)
    assert blue.mean() > 0.01  # the reliability diagram's bars
