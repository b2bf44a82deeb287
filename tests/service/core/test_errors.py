"""One error vocabulary: client values quoted as JSON and cut, anything unexpected a plain 500."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from focal_eval.service.core.errors import SHOWN, cut, show
from tests.service._requests import document


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param("2", '"2"', id="string-in-double-quotes"),
        pytest.param(True, "true", id="bool-as-json"),
        pytest.param(None, "null", id="none-as-null"),
        pytest.param([1.5, None], "[1.5,null]", id="list-as-json"),
        pytest.param({"name": "y"}, '{"name":"y"}', id="object-as-json"),
        pytest.param("bad\nname", '"bad\\nname"', id="control-character-escaped"),
        pytest.param(2**70, "1180591620717411303424", id="integer-beyond-64-bits-as-repr"),
        pytest.param("x" * 100, '"' + "x" * 56 + "...", id="long-value-cut-to-60"),
    ],
)
def test_show_writes_a_client_value_as_its_json_cut_to_60_characters(
    value: Any, shown: str
) -> None:
    assert show(value) == shown
    assert len(show(value)) <= SHOWN


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        pytest.param("logits", 60, "logits", id="short-kept"),
        pytest.param("x" * 60, 60, "x" * 60, id="exactly-the-limit-kept"),
        pytest.param("x" * 61, 60, "x" * 57 + "...", id="over-the-limit-cut"),
        pytest.param("123456789", 5, "12...", id="own-limit"),
    ],
)
def test_cut_keeps_at_most_limit_characters(text: str, limit: int, expected: str) -> None:
    assert cut(text, limit) == expected


def test_unexpected_error_is_a_plain_500_and_is_logged(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(app, raise_server_exceptions=False) as client:

        def broken(batch: Any, keep: Any = None, ranking: Any = None, **options: Any) -> Any:
            raise RuntimeError("secret internals at /opt/graph")

        app.state.runtime.scorers.multiclass.score = broken
        with caplog.at_level(logging.ERROR, logger="focal_eval.service.core.error_handlers"):
            response = client.post("/score", json=document())
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error"}
    assert "secret" not in response.text
    records = [r for r in caplog.records if r.name == "focal_eval.service.core.error_handlers"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert "POST /score" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], RuntimeError)
