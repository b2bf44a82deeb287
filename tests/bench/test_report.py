from __future__ import annotations

import json

import pytest

from bench.__main__ import main
from bench.report import Section, Target, format_section, single, write_json
from bench.timing import Ratio


@pytest.mark.parametrize(
    ("target", "value", "met"),
    [
        pytest.param(Target("<=", 0.6), 0.6, True, id="at-bound"),
        pytest.param(Target("<", 1), 1.0, False, id="strict"),
        pytest.param(Target(">=", 4), 3.9, False, id="below"),
        pytest.param(Target(">=", 20), 46.0, True, id="above"),
    ],
)
def test_target_verdict(target, value, met):
    assert target.met(value) is met


def test_table_and_json_say_the_same(tmp_path):
    section = Section("compute", "test")
    section.add("N=1 C=2", "graph", 0.0123, "s")
    section.compare("N=1 C=2", "graph / floor", Ratio(4.0, 3.5, 4.5, 5), Target("<=", 3))
    section.compare("N=1 C=2", "eager / graph", single(1.1))
    text = format_section(section)
    assert "12.3 ms" in text
    assert "NOT MET" in text
    write_json(tmp_path / "r.json", [section], {"quick": True})
    document = json.loads((tmp_path / "r.json").read_text())
    first, second = document["sections"][0]["comparisons"]
    assert first["met"] is False
    assert first["target"] == "<= 3"
    assert second["met"] is None


def test_unknown_section_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--only", "compute,nope"])
    assert stopped.value.code == 2
    assert "nope" in capsys.readouterr().err
