"""``focal report``: the page and the figure files it writes; each bad input's exact message
and exit status (1: a bad input file, 2: usage), as ``focal evaluate`` has them."""

# ruff: noqa: E501 (tables of inputs and their exact messages, one per line)

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from focal_eval.report.cli import main
from focal_eval.service.cli import main as focal
from tests.report._inputs import Scored

PNG = b"\x89PNG\r\n\x1a\n"


def test_writes_the_page_and_each_figure_as_png_and_svg_beside_it(
    evaluated: tuple[Scored, object], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.html"
    status = focal(
        ["report", str(evaluated[0].path), "--out", str(out), "--format", "png", "--format", "svg"]
    )
    assert status == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    stems = ["reliability", "confusion", "per-class", "slices"]
    expected = sorted(f"{stem}.{suffix}" for stem in stems for suffix in ("png", "svg"))
    assert sorted(p.name for p in (tmp_path / "report_files").iterdir()) == expected
    for stem in stems:
        assert (tmp_path / "report_files" / f"{stem}.png").read_bytes().startswith(PNG)
        root = ElementTree.parse(tmp_path / "report_files" / f"{stem}.svg").getroot()
        assert (
            root.tag == "{http://www.w3.org/2000/svg}svg"
        )  # a stand-alone file keeps its namespace
    message = capsys.readouterr().err
    assert message.startswith("focal report: 4 figures, ")
    assert message.endswith(f" -> {out}; figures in {tmp_path / 'report_files'}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "report.html",
        "report_files",
    ]  # no partial files


def test_without_format_no_figure_folder(multiclass: Scored, tmp_path: Path) -> None:
    assert main([str(multiclass.path), "--out", str(tmp_path / "r.html")]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def summary_without_samples(path: Path) -> Path:
    source = {
        "task": "multiclass",
        "num_classes": 3,
        "window": {"samples": 0, "batches": 0, "buckets": 0},
        "lifetime": {"samples": 0},
    }
    path.write_text(json.dumps({"model_id": "x", "sources": {"default": source}}))
    return path


def with_statistics(scored: Scored, path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    document = json.loads(json.dumps(scored.document))
    change(document)
    path.write_text(json.dumps(document))
    return path


BAD_INPUTS = [
    pytest.param(lambda p, s: p / "absent.json", "{path}: no such file", id="missing"),
    pytest.param(lambda p, s: p, "{path}: cannot be read (Is a directory)", id="folder"),
    pytest.param(
        lambda p, s: (p / "x.json").write_text("hello") and p / "x.json",
        "{path}: not JSON (unexpected character, expected a JSON value: line 1 column 1 (char 0))",
        id="not_json",
    ),
    pytest.param(
        lambda p, s: (p / "x.json").write_text("") or p / "x.json",
        "{path}: not JSON (Input is a zero-length, empty document: line 1 column 1 (char 0))",
        id="empty",
    ),
    pytest.param(
        lambda p, s: (p / "x.json").write_text("[1, 2]") and p / "x.json",
        "{path}: not a /score response (an object with statistics and shape), a /summary response (sources) or a focal evaluate result (statistics and inputs)",
        id="array",
    ),
    pytest.param(
        lambda p, s: (p / "x.json").write_text('{"metrics": {}}') and p / "x.json",
        "{path}: not a /score response (an object with statistics and shape), a /summary response (sources) or a focal evaluate result (statistics and inputs)",
        id="compute_response",
    ),
    pytest.param(
        lambda p, s: with_statistics(s, p / "x.json", lambda d: d.update(task="regression")),
        "{path}: task: expected one of multiclass, multilabel, binary, got 'regression'",
        id="task",
    ),
    pytest.param(
        lambda p, s: with_statistics(s, p / "x.json", lambda d: d["statistics"].pop("bin_count")),
        "{path}: statistics.bin_count: missing (required)",
        id="missing_statistic",
    ),
    pytest.param(
        lambda p, s: with_statistics(
            s, p / "x.json", lambda d: d["statistics"].update(focal_loss_sum=[1.0])
        ),
        "{path}: statistics.focal_loss_sum: shape [1], but the others have C = 6",
        id="shape",
    ),
    pytest.param(
        lambda p, s: with_statistics(
            s, p / "x.json", lambda d: d["statistics"]["bin_correct"].__setitem__(0, -1)
        ),
        "{path}: statistics.bin_correct: expected finite values >= 0 (every statistic is a sum of such terms)",
        id="negative",
    ),
    pytest.param(
        lambda p, s: with_statistics(s, p / "x.json", lambda d: d.update(statistics=[1])),
        "{path}: statistics: expected an object of named arrays",
        id="statistics_list",
    ),
    pytest.param(
        lambda p, s: with_statistics(
            s, p / "x.json", lambda d: d.update(inputs=[], slices=[{"by": {"region": "eu"}}])
        ),
        "{path}: slices[0].statistics: expected an object of named arrays",
        id="slice_without_statistics",
    ),
    pytest.param(
        lambda p, s: with_statistics(
            s, p / "x.json", lambda d: d.update(inputs=[], slices=[{"statistics": d["statistics"]}])
        ),
        "{path}: slices[0].by: expected an object",
        id="slice_without_by",
    ),
    pytest.param(
        lambda p, s: with_statistics(s, p / "x.json", lambda d: d.update(inputs=[], slices={})),
        "{path}: slices: expected a list",
        id="slices_object",
    ),
    pytest.param(
        lambda p, s: (p / "x.json").write_text('{"sources": {"default": 3}}') and p / "x.json",
        "{path}: sources.default: expected an object",
        id="source",
    ),
    pytest.param(
        lambda p, s: summary_without_samples(p / "x.json"),
        "{path}: a /summary response with no monitored samples in any source",
        id="summary_empty",
    ),
]


@pytest.mark.parametrize(("make", "message"), BAD_INPUTS)
def test_a_bad_input_file_is_one_line_and_status_1(
    make: Callable[[Path, Scored], Path],
    message: str,
    multiclass: Scored,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = make(tmp_path, multiclass)
    out = tmp_path / "r.html"
    assert main([str(path), "--out", str(out)]) == 1
    assert capsys.readouterr().err == f"focal report: {message.format(path=path)}\n"
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["x.json"],
            "focal report: the following arguments are required: --out",
            id="no_out",
        ),
        pytest.param(
            ["x.json", "--out", "r.html", "--format", "pdf"],
            "focal report: argument --format: invalid choice: 'pdf' (choose from 'png', 'svg')",
            id="format",
        ),
        pytest.param(
            ["x.json", "--out", "/absent/r.html"],
            "focal report: --out: no folder /absent to write r.html in",
            id="no_folder",
        ),
    ],
)
def test_usage_errors_are_one_line_and_status_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status: int | str | None
    try:
        status = focal(["report", *argv])
    except SystemExit as exit_:
        status = exit_.code  # argparse exits
    assert status == 2
    assert capsys.readouterr().err == f"{message}\n"


def test_without_matplotlib_focal_report_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else find_spec(name, *a),
    )
    assert focal(["report", "x.json", "--out", "r.html"]) == 2
    assert capsys.readouterr().err == (
        "focal report needs the report extra (matplotlib missing): pip install 'focal-eval[report]'\n"
    )


def test_focal_usage_lists_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert focal(["--help"]) == 0
    assert "  report    one offline HTML page" in capsys.readouterr().out
