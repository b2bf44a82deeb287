from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from focal_eval.export.cli import main
from focal_eval.export.manifest import manifest_path, write_manifest
from focal_eval.export.parity import ATOL, RTOL, Parity


def _exit_status(argv: list[str]) -> int | str | None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    return caught.value.code


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(
            ["--gamma", "-1"],
            "Expected argument `gamma` to be a finite float >= 0, but got -1.0",
            id="gamma-negative",
        ),
        pytest.param(
            ["--gamma", "nan"],
            "Expected argument `gamma` to be a finite float >= 0, but got nan",
            id="gamma-nan",
        ),
        pytest.param(
            ["--gamma", "inf"],
            "Expected argument `gamma` to be a finite float >= 0, but got inf",
            id="gamma-inf",
        ),
        pytest.param(
            ["--gamma=-inf"],
            "Expected argument `gamma` to be a finite float >= 0, but got -inf",
            id="gamma-minus-inf",
        ),
        pytest.param(
            ["--num-bins", "0"],
            "Expected argument `num_bins` to be an integer >= 1, but got 0",
            id="num-bins-zero",
        ),
        pytest.param(
            ["--num-bins", "-3"],
            "Expected argument `num_bins` to be an integer >= 1, but got -3",
            id="num-bins-negative",
        ),
        pytest.param(
            ["--score-bins", "0"],
            "Expected argument `score_bins` to be an integer >= 1, but got 0",
            id="score-bins-zero",
        ),
        pytest.param(
            ["--score-bins", "-3"],
            "Expected argument `score_bins` to be an integer >= 1, but got -3",
            id="score-bins-negative",
        ),
        pytest.param(
            ["--score-bins", "1.5"],
            "argument --score-bins: invalid int value: '1.5'",
            id="score-bins-not-an-integer",
        ),
        pytest.param(
            ["--opset", "12"], "Expected argument `opset` to be >= 18, but got 12", id="opset-12"
        ),
        pytest.param(
            ["--gamma", "abc"], "argument --gamma: invalid float value: 'abc'", id="gamma-abc"
        ),
        pytest.param(
            ["--formats", "onnx,foo"],
            "Expected argument `formats` among ('onnx', 'torchscript', 'pt2'), but got ['foo']",
            id="unknown-format",
        ),
    ],
)
def test_bad_argument_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    out = tmp_path / "artifacts" / "v1"
    assert _exit_status(["--out", str(out), *arguments]) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", f"focal export: {message}\n")
    assert not (tmp_path / "artifacts").exists()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(lambda root: root / "file" / "out", "Not a directory", id="under-a-file"),
        pytest.param(lambda root: root / "file", "File exists", id="is-a-file"),
    ],
)
def test_unwritable_out_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Any, reason: str
) -> None:
    (tmp_path / "file").write_text("kept")
    out: Path = make(tmp_path)
    assert _exit_status(["--out", str(out), "--formats", "onnx"]) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (
        "",
        f"focal export: --out: cannot write {str(out)!r} ({reason})\n",
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file"]
    assert (tmp_path / "file").read_text() == "kept"


# --- the manifest never holds NaN ------------------------------------------------------------


def _strict_json(path: Path) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} in {path.name}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _write(artifact: Path, defaults: dict[str, Any], parity: dict[str, object]) -> Path:
    return write_manifest(
        artifact,
        kind="evaluation",
        format="onnx",
        inputs=[],
        outputs=[],
        defaults=defaults,
        parity=parity,
        opset=18,
    )


DEFAULTS = {"gamma": 2.0, "ignore_index": -100, "num_bins": 15, "alpha": None}


@pytest.mark.parametrize(
    ("defaults", "parity"),
    [
        pytest.param({**DEFAULTS, "gamma": math.nan}, {}, id="nan-gamma"),
        pytest.param(DEFAULTS, {"max_abs_error": math.nan}, id="nan-error"),
        pytest.param(DEFAULTS, {"max_rel_error": math.inf}, id="inf-error"),
    ],
)
def test_manifest_writer_refuses_non_finite_numbers_and_writes_nothing(
    tmp_path: Path, defaults: dict[str, Any], parity: dict[str, object]
) -> None:
    artifact = tmp_path / "evaluation.onnx"
    artifact.write_bytes(b"graph")
    with pytest.raises(ValueError, match=r"^Out of range float values are not JSON compliant"):
        _write(artifact, defaults, parity)
    assert not manifest_path(artifact).exists()


@pytest.mark.parametrize(
    ("abs_error", "rel_error", "shown"),
    [
        pytest.param(math.nan, math.inf, (None, None), id="nan-and-inf"),
        pytest.param(-math.inf, 0.5, (None, 0.5), id="minus-inf"),
        pytest.param(1e-7, 0.0, (1e-7, 0.0), id="finite"),
    ],
)
def test_parity_errors_that_are_not_finite_are_written_as_null(
    tmp_path: Path, abs_error: float, rel_error: float, shown: tuple[float | None, ...]
) -> None:
    parity = Parity(3, abs_error, rel_error, 0, ("case 2: focal_loss is NaN",))
    artifact = tmp_path / "evaluation.onnx"
    artifact.write_bytes(b"graph")
    written = _strict_json(_write(artifact, DEFAULTS, parity.as_dict()))
    assert written["parity"] == {
        "cases": 3,
        "max_abs_error": shown[0],
        "max_rel_error": shown[1],
        "count_mismatches": 0,
        "atol": ATOL,
        "rtol": RTOL,
        "passed": False,
        "failures": ["case 2: focal_loss is NaN"],
    }
    assert written["defaults"] == DEFAULTS
