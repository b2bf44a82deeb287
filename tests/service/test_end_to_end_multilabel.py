"""Multi-label and binary over a real ``focal serve`` on 127.0.0.1: JSON, npz and tritonclient.

Every number against eager ``focal.update_multilabel`` / ``compute_multilabel`` on the same
arrays; the v2 model ``focal-eval-multilabel`` through the real ``tritonclient.http``.
"""

from __future__ import annotations

import io

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from tritonclient.utils import np_to_triton_dtype

from tests.service._inputs import IGNORE_INDEX, label_batch
from tests.service.reference import MULTILABEL_MANIFEST, assert_outputs, eager_multilabel

MODEL = "focal-eval-multilabel"


def test_multilabel_json_over_http_matches_eager(server_url: str) -> None:
    logits, targets = label_batch(200, 6, seed=60, ignore_fraction=0.1)
    body = orjson.dumps(
        {"logits": logits, "labels": targets, "threshold": 0.4, "alpha": 0.5},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    response = httpx.post(
        f"{server_url}/score", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    document = response.json()
    want = eager_multilabel(logits, targets, alpha=0.5, threshold=0.4)
    assert document["task"] == "multilabel"
    assert document["valid"] == int(np.count_nonzero(targets != IGNORE_INDEX))
    for part in ("metrics", "per_label", "statistics", "per_sample"):
        assert_outputs(document[part], want, part)


def test_binary_npz_over_http_matches_eager(server_url: str) -> None:
    logits, targets = label_batch(300, 1, seed=61)
    archive = io.BytesIO()
    np.savez(archive, logits=logits[:, 0], labels=targets[:, 0].astype(np.uint8))
    response = httpx.post(
        f"{server_url}/score",
        content=archive.getvalue(),
        params={"per_sample": "false"},
        headers={"content-type": "application/x-npz"},
    )
    assert response.status_code == 200, response.text
    document = response.json()
    want = eager_multilabel(logits, targets)
    assert document["task"] == "binary"
    assert "per_sample" not in document
    for name in ("precision", "recall", "f1", "auroc", "average_precision"):
        assert document["metrics"][name] == pytest.approx(float(want[name][0]), rel=1e-5)
    assert_outputs(document["statistics"], want, "statistics")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_infers_the_multilabel_model(server_url: str, binary: bool) -> None:
    logits, targets = label_batch(120, 4, seed=62, ignore_fraction=0.1)
    client = triton.InferenceServerClient(server_url.removeprefix("http://"), network_timeout=30.0)
    metadata = client.get_model_metadata(MODEL)
    stated = [entry["name"] for entry in MULTILABEL_MANIFEST["inputs"]]
    assert [entry["name"] for entry in metadata["inputs"]] == stated
    inputs = []
    for name, array in (
        ("logits", logits),
        ("targets", targets),
        ("threshold", np.array([0.6], np.float32)),
    ):
        tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        inputs.append(tensor.set_data_from_numpy(array, binary_data=binary))
    names = [entry["name"] for entry in MULTILABEL_MANIFEST["outputs"]]
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in names]
    result = client.infer(MODEL, inputs, outputs=outputs)
    want = eager_multilabel(logits, targets, threshold=0.6)
    assert_outputs({name: result.as_numpy(name) for name in names}, want, "v2")
