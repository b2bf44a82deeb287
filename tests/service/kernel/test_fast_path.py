"""The fast path: live with the built kernel, and the portable graph whenever it cannot be.

Each state is seen from outside, as an operator sees it: the ``focal_eval_fast_path`` state,
``focal_eval_build_info``, the v2 model metadata and the log line; and /score answers the
same (eager PyTorch's numbers) whichever graph serves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from focal_eval.service.app import create_app
from focal_eval.service.artifacts import default_artifact_dir
from focal_eval.service.core import fast_path
from focal_eval.service.core.settings import Settings
from focal_eval.service.core.tasks import TASKS
from focal_eval.service.kernel import library_path
from tests.service._inputs import batch, label_batch
from tests.service._requests import json_body, scrape
from tests.service.kernel.build import build_library
from tests.service.reference import (
    assert_outputs,
    assert_score_response,
    eager,
    eager_multilabel,
    eager_ranking,
)

# rest = 1 - p_t floored at 0.25 instead of the smallest normal float: the focal loss of
# every confident row is wrong, the rest right, and the library loads as the real one does
WRONG_PRELUDE = "#include <cfloat>\n#undef FLT_MIN\n#define FLT_MIN 0.25f"


def served_states(client: TestClient) -> dict[str, str]:
    """Each task's fast-path state, as /metrics, build_info and the v2 metadata give them."""
    samples = scrape(client)
    states = {
        dict(labels)["task"]: dict(labels)["focal_eval_fast_path"]
        for (name, labels), value in samples.items()
        if name == "focal_eval_fast_path" and value == 1
    }
    info = [dict(labels) for name, labels in samples if name == "focal_eval_build_info"]
    assert info[0]["fast_path"] == states["multiclass"]
    for model, task in (("focal-eval", "multiclass"), ("focal-eval-multilabel", "multilabel")):
        metadata = client.get(f"/v2/models/{model}").json()
        assert metadata["parameters"] == {"fast_path": states[task]}
    return states


def scores_like_eager(client: TestClient) -> None:
    logits, labels = batch(300, 5, seed=3, ignore=7, scale=4.0)
    logits[:5] = 0.0
    logits[np.arange(5), np.arange(5)] = 40.0  # confident rows: where a wrong kernel is wrong
    got = client.post("/score", json=json_body(logits, labels)).json()
    assert_score_response(got, eager(logits, labels))
    got = client.post("/score", json=json_body(logits, labels, ranking=True)).json()
    assert_outputs(got["metrics"], eager(logits, labels) | eager_ranking(logits, labels), "metrics")
    logits, targets = label_batch(200, 6, seed=4, ignore_fraction=0.1)
    logits[:3] = 40.0 * np.sign(logits[:3])
    got = client.post("/score", json=json_body(logits, targets)).json()
    want = eager_multilabel(logits, targets)
    for part in ("metrics", "per_label", "statistics", "per_sample"):
        assert_outputs(got[part], want, part)


def test_the_built_kernel_serves_and_scores_like_eager(
    make_settings: Callable[..., Settings],
) -> None:
    assert library_path() is not None, "the package was installed without its kernel"
    with TestClient(create_app(make_settings())) as client:
        assert served_states(client) == dict.fromkeys(TASKS, "live")
        scores_like_eager(client)


def absent(tmp_path: Path) -> Path:
    return tmp_path / "absent.so"


def unloadable(tmp_path: Path) -> Path:
    path = tmp_path / "not-a-library.so"
    path.write_text("not an ELF file")
    return path


def wrong(tmp_path: Path) -> Path:
    return build_library(tmp_path / "wrong.so", prelude=WRONG_PRELUDE)


@pytest.mark.parametrize(
    ("enabled", "library", "state", "logged"),
    [
        pytest.param(False, None, "off", "FOCAL_FAST_PATH is false", id="off"),
        pytest.param(True, absent, "no_library", "absent.so is missing", id="absent"),
        pytest.param(True, unloadable, "unloadable", "onnxruntime", id="unloadable"),
        pytest.param(True, wrong, "disagrees", "focal_loss: differs by up to", id="wrong"),
    ],
)
def test_the_portable_graph_serves_when_the_kernel_cannot(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    enabled: bool,
    library: Callable[[Path], Path] | None,
    state: str,
    logged: str,
) -> None:
    settings = make_settings(
        fast_path=enabled, kernel_library=None if library is None else library(tmp_path)
    )
    caplog.set_level(logging.INFO, "focal_eval.service.core.fast_path")
    with TestClient(create_app(settings)) as client:
        states = served_states(client)
        scores_like_eager(client)
    # the wrong build is wrong in the multi-class ops only (with ranking too): the
    # multi-label op still agrees
    multilabel = "live" if state == "disagrees" else state
    assert states == {"multiclass": state, "multilabel": multilabel, "ranking": state}
    messages = [r.getMessage() for r in caplog.records if r.name == fast_path.__name__]
    (message,) = [m for m in messages if m.startswith(f"fast path multiclass, {state}: ")]
    assert logged in message
    assert message.endswith("the portable graph serves")


def test_an_artifact_directory_without_the_fused_graph_serves_the_portable_one(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    for path in default_artifact_dir().glob("*.onnx*"):
        if not path.name.startswith("fused_"):
            (tmp_path / path.name).write_bytes(path.read_bytes())
    with TestClient(create_app(make_settings(artifact_dir=tmp_path))) as client:
        assert served_states(client) == dict.fromkeys(TASKS, "no_graph")
        scores_like_eager(client)
