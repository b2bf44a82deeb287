"""The OpenAPI document is valid and true: what it states is what ``/score`` accepts and returns."""

# ruff: noqa: E501 (a table of requests, one per line)

from __future__ import annotations

import copy
import io
import re
from collections.abc import Iterator
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import numpy as np
import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from openapi_spec_validator import validate

from focal_eval.service.app import create_app
from focal_eval.service.score.codec import QUERY_FIELDS
from tests.service._inputs import batch
from tests.service.conftest import make_settings
from tests.service.reference import (
    DEFAULT_GAMMA,
    DEFAULT_IGNORE_INDEX,
    assert_score_response,
    eager,
    near_bin_edge,
)

SCORE = ("paths", "/score", "post")
DOCUMENTED_ERRORS = {400, 408, 413, 415, 422, 503}


@pytest.fixture(scope="module")
def scoring() -> Iterator[TestClient]:
    """One client for the module (hypothesis runs many examples through it)."""
    with TestClient(create_app(make_settings(max_body_bytes=2**20))) as client:
        yield client


def openapi(client: TestClient) -> dict[str, Any]:
    app: FastAPI = client.app  # type: ignore[assignment]
    return app.openapi()


def operation(document: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = document
    for key in SCORE:
        node = node[key]
    return node


def resolved(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the document's components beside it, so that its $refs resolve."""
    return {**schema, "components": document.get("components", {})}


def request_schema(document: dict[str, Any]) -> dict[str, Any]:
    content = operation(document)["requestBody"]["content"]["application/json"]
    return resolved(document, content["schema"])


def response_schema(document: dict[str, Any], status: str) -> dict[str, Any]:
    content = operation(document)["responses"][status]["content"]["application/json"]
    return resolved(document, content["schema"])


def check(schema: dict[str, Any], instance: Any) -> None:
    jsonschema.Draft202012Validator(schema).validate(instance)


def test_openapi_document_is_valid(scoring: TestClient) -> None:
    validate(openapi(scoring))


def test_documented_example_is_valid_and_scored_as_eager_focal(scoring: TestClient) -> None:
    document = openapi(scoring)
    schema = request_schema(document)
    (example,) = schema["examples"]
    check(schema, example)
    response = scoring.post("/score", json=example)
    assert response.status_code == 200, response.text
    got = response.json()
    check(response_schema(document, "200"), got)
    logits, labels = np.asarray(example["logits"], np.float32), np.asarray(example["labels"])
    assert_score_response(got, eager(logits, labels, gamma=example["gamma"]))


@pytest.mark.parametrize(
    ("options", "ignored"),
    [
        pytest.param({}, 2, id="defaults"),
        pytest.param({"per_sample": False}, 0, id="per_sample_false"),
        pytest.param({"alpha": [1.0, 2.0, 0.5, 1.0]}, 0, id="alpha"),
        pytest.param({}, 20, id="all_ignored_null_metrics"),
    ],
)
def test_score_response_matches_the_stated_schema(
    scoring: TestClient, options: dict[str, Any], ignored: int
) -> None:
    logits, labels = batch(20, 4, seed=31, ignore=ignored)
    body = {"logits": logits.tolist(), "labels": labels.tolist(), **options}
    response = scoring.post("/score", json=body)
    assert response.status_code == 200, response.text
    check(response_schema(openapi(scoring), "200"), response.json())


@pytest.mark.parametrize(
    ("body", "task"),
    [
        pytest.param({"logits": [[2.0, 0.1], [0.3, 1.0]], "labels": [0, 0], "ranking": True}, "multiclass", id="ranking"),
        pytest.param({"logits": [[2.0, -1.0, 0.5]], "labels": [[1, 0, -100]]}, "multilabel", id="multilabel"),
        pytest.param({"logits": [2.0, -1.0, 0.5], "labels": [1, 0, 1], "per_sample": False}, "binary", id="binary"),
        pytest.param({"logits": [[0.9], [0.0]], "labels": [1, 0], "inputs": "probabilities"}, "binary", id="binary_probabilities"),
    ],
)  # fmt: skip
def test_every_task_s_response_matches_the_stated_schema(
    scoring: TestClient, body: dict[str, Any], task: str
) -> None:
    response = scoring.post("/score", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["task"] == task
    check(response_schema(openapi(scoring), "200"), response.json())


@pytest.mark.parametrize("status", ["400", "413", "415", "422", "503"])
def test_documented_errors_use_the_error_schema(scoring: TestClient, status: str) -> None:
    schema = response_schema(openapi(scoring), status)
    check(schema, {"error": "labels: expected integers, got floats"})
    with pytest.raises(jsonschema.ValidationError):
        check(schema, {"detail": [{"msg": "field required"}]})


def sized(schema: dict[str, Any]) -> dict[str, Any]:
    """The request schema with small list sizes, so that examples stay quick to score."""
    bounded = copy.deepcopy(schema)
    properties = bounded["properties"]
    rows, flat = properties["logits"]["anyOf"]  # (N, C) or (N,)
    rows.update(maxItems=6)
    rows["items"].update(maxItems=5)
    flat.update(maxItems=6)
    for labels in properties["labels"]["anyOf"]:  # (N,) or (N, L)
        labels.update(maxItems=6)
    properties["labels"]["anyOf"][1]["items"].update(maxItems=5)
    properties["alpha"]["anyOf"][0].update(maxItems=5)
    return bounded


def from_object_schema(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects of ``schema``: each property drawn by hypothesis-jsonschema's ``from_schema``.

    hypothesis-jsonschema 0.23 cannot draw objects with this Hypothesis (it calls a private
    API that has changed), so the object is put together here exactly as the schema states:
    the required properties, any subset of the optional ones, nothing else.
    """
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    properties = {name: from_schema(sub) for name, sub in schema["properties"].items()}
    required = set(schema["required"])
    return st.fixed_dictionaries(
        {name: s for name, s in properties.items() if name in required},
        optional={name: s for name, s in properties.items() if name not in required},
    )


STATED_REQUEST = sized(request_schema(create_app(make_settings()).openapi()))


@st.composite
def coherent_requests(draw: st.DrawFn) -> dict[str, Any]:
    """Requests the schema allows whose N, C and alpha length agree, so that most are scored.

    Every value is still drawn from the stated schema of its property.
    """
    properties = STATED_REQUEST["properties"]
    n, c = draw(st.integers(1, 6)), draw(st.integers(2, 5))
    number = properties["logits"]["anyOf"][0]["items"]["items"]
    row = {"type": "array", "items": number, "minItems": c, "maxItems": c}
    label = {**properties["labels"]["anyOf"][0]["items"], "minimum": 0, "maximum": c - 1}
    data = {
        "logits": draw(from_schema({"type": "array", "items": row, "minItems": n, "maxItems": n})),
        "labels": draw(
            from_schema({"type": "array", "items": label, "minItems": n, "maxItems": n})
        ),
    }
    for name in ("gamma", "ignore_index", "per_sample"):
        if draw(st.booleans()):
            data[name] = draw(from_schema(properties[name]))
    if draw(st.booleans()):
        alpha = {**properties["alpha"]["anyOf"][0], "minItems": c, "maxItems": c}
        data["alpha"] = draw(from_schema(alpha))
    return data


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(from_object_schema(STATED_REQUEST), coherent_requests()))
def test_requests_generated_from_the_schema_never_get_a_5xx(
    scoring: TestClient, data: dict[str, Any]
) -> None:
    check(STATED_REQUEST, data)  # what was drawn is what the document allows
    response = scoring.post("/score", json=data)
    document = openapi(scoring)
    event(f"status {response.status_code}")
    assert response.status_code < 500, response.text
    if response.status_code != 200:
        assert response.status_code in DOCUMENTED_ERRORS
        body = response.json()
        check(response_schema(document, str(response.status_code)), body)
        assert set(body) == {"error"}, body
        assert body["error"], body
        return
    got = response.json()
    check(response_schema(document, "200"), got)
    if got["task"] != "multiclass" or data.get("inputs") == "probabilities" or data.get("ranking"):
        return  # their values: tests/service/score/test_tasks.py
    logits, labels = np.asarray(data["logits"], np.float32), np.asarray(data["labels"])
    gamma = DEFAULT_GAMMA if data.get("gamma") is None else data["gamma"]
    ignore_index = data.get("ignore_index")
    ignore_index = DEFAULT_IGNORE_INDEX if ignore_index is None else ignore_index
    want = eager(logits, labels, data.get("alpha"), gamma, ignore_index)
    assert_score_response(
        got,
        want,
        per_sample=data.get("per_sample", True),
        loose_bins=near_bin_edge(want, labels, ignore_index),
    )


# --- every operation, as the document states it ---------------------------------------------

PATH_VALUES = {"name": "focal-eval", "version": "1", "asset": "dashboard.js"}
QUERY_VALUES = {"boolean": "false", "number": "1.5", "integer": "-100", "string": "canary"}


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def binary_body(path: str, content_type: str) -> tuple[bytes, dict[str, str]]:
    """A valid body for a binary content type the document states."""
    logits, labels = batch(4, 3, seed=5)
    if content_type == "application/x-npz":
        buffer = io.BytesIO()
        np.savez(buffer, logits=logits, labels=labels)
        return buffer.getvalue(), {}
    assert content_type == "application/octet-stream"
    assert path.endswith("/infer")
    header = orjson.dumps(
        {
            "inputs": [
                {"name": "logits", "shape": [4, 3], "datatype": "FP32",
                 "parameters": {"binary_data_size": logits.nbytes}},
                {"name": "labels", "shape": [4], "datatype": "INT64",
                 "parameters": {"binary_data_size": labels.astype(np.int64).nbytes}},
            ]
        }
    )  # fmt: skip
    body = header + logits.tobytes() + labels.astype(np.int64).tobytes()
    return body, {"Inference-Header-Content-Length": str(len(header))}


def requests_for(path: str, operation: dict[str, Any]) -> list[dict[str, Any]]:
    """One request per stated content type, built from the document alone (binary: by hand)."""
    url = path.format(**PATH_VALUES)
    content = operation.get("requestBody", {}).get("content", {})
    if not content:
        return [{"url": url}]
    built: list[dict[str, Any]] = []
    for content_type, media in content.items():
        headers: dict[str, str] = {"content-type": content_type}
        if content_type == "application/json":
            example = media.get("example") or media["schema"]["examples"][0]
            built.append({"url": url, "content": orjson.dumps(example), "headers": headers})
        else:
            body, extra = binary_body(path, content_type)
            built.append({"url": url, "content": body, "headers": {**headers, **extra}})
    return built


def test_every_operation_answers_a_request_built_from_its_description(
    scoring: TestClient,
) -> None:
    document = openapi(scoring)
    for path, method, operation in operations(document):
        stated = set(operation["responses"])
        for request in requests_for(path, operation):
            response = scoring.request(method.upper(), **request)
            where = f"{method.upper()} {path} {request.get('headers', {}).get('content-type')}"
            assert str(response.status_code) in stated, (where, response.status_code)
            assert response.status_code == 200, (where, response.text[:300])
            schema = operation["responses"]["200"].get("content", {}).get("application/json")
            if schema and "$ref" in schema.get("schema", {}):
                check(resolved(document, schema["schema"]), response.json())


def test_path_parameters_are_exactly_each_templates_and_nothing_is_phantom(
    scoring: TestClient,
) -> None:
    for path, method, operation in operations(openapi(scoring)):
        placeholders = set(re.findall(r"{(\w+)}", path))
        parameters = operation.get("parameters", [])
        in_path = {p["name"] for p in parameters if p["in"] == "path"}
        assert in_path == placeholders, (method, path)
        in_query = {p["name"] for p in parameters if p["in"] == "query"}
        expected = {"/score": set(QUERY_FIELDS), "/reset": {"source"}}.get(path, set())
        assert in_query == expected, (method, path, in_query)


@pytest.mark.parametrize(
    ("query", "expect"),
    [
        pytest.param({"per_sample": "false"}, lambda got: "per_sample" not in got, id="per_sample"),
        pytest.param({"gamma": "1.5"}, lambda got: got["parameters"]["gamma"] == 1.5, id="gamma"),
        pytest.param({"ignore_index": "1"}, lambda got: got["parameters"]["ignore_index"] == 1,
                     id="ignore_index"),
        pytest.param({"monitor": "false"}, lambda got: got["monitored"] is False, id="monitor"),
        pytest.param({"source": "canary"}, lambda got: got["monitored"] is True, id="source"),
    ],
)  # fmt: skip
def test_every_stated_query_parameter_of_score_is_honoured(
    scoring: TestClient, query: dict[str, str], expect: Any
) -> None:
    stated = {p["name"] for p in operation(openapi(scoring))["parameters"]}
    assert set(query) <= stated
    body, _ = binary_body("/score", "application/x-npz")
    response = scoring.post(
        "/score", content=body, params=query, headers={"content-type": "application/x-npz"}
    )
    assert response.status_code == 200, response.text
    assert expect(response.json())


def test_a_query_parameter_the_document_does_not_state_is_422(scoring: TestClient) -> None:
    body, _ = binary_body("/score", "application/x-npz")
    response = scoring.post(
        "/score",
        content=body,
        params={"weights": "1"},
        headers={"content-type": "application/x-npz"},
    )
    assert response.status_code == 422
    assert response.json()["error"].startswith("weights: unknown query parameter (accepted:")
