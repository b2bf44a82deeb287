"""The commands' parser: a usage error is one line on stderr and exit status 2."""

from __future__ import annotations

import pytest

from focal_eval.service.arguments import OneLineErrors


def test_a_usage_error_is_one_line_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    parser = OneLineErrors(prog="focal example")
    parser.add_argument("--count", type=int, required=True)
    with pytest.raises(SystemExit) as stopped:
        parser.parse_args(["--count", "many"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err == "focal example: argument --count: invalid int value: 'many'\n"
