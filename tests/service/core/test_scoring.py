"""The scorer: chunked batches give exactly what one graph run (and eager focal/) gives."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

import focal_eval.service.core.scoring
from focal_eval.focal import Metrics, PerSample, Statistics, compute, update
from focal_eval.service.app import create_app
from focal_eval.service.artifacts import ArtifactError, default_artifact_dir
from focal_eval.service.core.errors import RequestError
from focal_eval.service.core.fast_path import FastPath
from focal_eval.service.core.multilabel import multilabel_batch
from focal_eval.service.core.scoring import Scorer, Scorers, chunk_rows
from focal_eval.service.core.settings import Settings
from focal_eval.service.core.tasks import MULTICLASS, MULTILABEL
from focal_eval.service.core.validation import check_run_finite, multiclass_batch
from focal_eval.service.memory import costs
from tests.service._inputs import IGNORE_INDEX, batch, class_weights
from tests.service._requests import LOGITS, document, json_body
from tests.service.reference import (
    DEFAULT_IGNORE_INDEX,
    assert_error,
    assert_score_response,
    eager,
)

NAMES = PerSample._fields + Statistics._fields + Metrics._fields


def test_chunk_rows_bounds_the_work_per_run() -> None:
    assert chunk_rows(2) == 2**16  # the per-row intermediates bound it from above
    assert chunk_rows(10) == 2**19 // 10
    assert chunk_rows(1000) == 1000  # the C x C confusion matrix bounds it from below
    assert chunk_rows(2, fused=True) == 2**16
    assert chunk_rows(100, fused=True) == 2**21 // 100  # four times the logits
    assert chunk_rows(1000, fused=True) == 2**21 // 1000
    assert chunk_rows(5000, fused=True) == 5000


@pytest.mark.parametrize("task", [MULTICLASS, MULTILABEL])
@pytest.mark.parametrize("width", [2, 3, 10, 100, 150, 1000, 4096, 5000])
def test_a_fused_chunk_fits_in_what_a_portable_chunk_reserves(
    make_settings: Callable[..., Settings], task: str, width: int
) -> None:
    """Requests reserve a portable chunk's work; the fused kernel's larger chunk fits in it.

    The kernel keeps, per chunk, its per-sample outputs and a float32 copy of the logits (plus
    an int64 copy of multi-label targets); the reservation prices the portable graph's.
    """
    scorers = Scorers.load(make_settings())
    scorer = scorers.multiclass if task == MULTICLASS else scorers.multilabel
    assert scorer is not None
    assert scorer.fast_path.live
    rows = chunk_rows(width, fused=True)
    per_logit = 4 if task == MULTICLASS else 4 + 8
    fused = rows * (scorer.row_bytes(scorer.per_sample_names) + per_logit * width)
    reserved = costs.scoring(task, rows, width, 0) - costs.RESPONSE_CHUNK - costs.FIXED
    assert fused <= reserved


@pytest.mark.parametrize("fast_path", [True, False], ids=["fused", "portable"])
@pytest.mark.parametrize("rows", [7, 64, 1000])
def test_chunked_scoring_equals_eager_on_the_whole_batch(
    monkeypatch: pytest.MonkeyPatch,
    make_settings: Callable[..., Settings],
    rows: int,
    fast_path: bool,
) -> None:
    monkeypatch.setattr(
        focal_eval.service.core.scoring, "chunk_rows", lambda width, fused=False: rows
    )
    scorer = Scorers.load(make_settings(fast_path=fast_path)).multiclass
    assert scorer.fast_path.live is fast_path
    assert_scores_as_eager(scorer, seed=rows)


def assert_scores_as_eager(scorer: Scorer, seed: int) -> None:
    """``scorer`` gives eager focal/'s numbers on a seeded 500 x 6 batch."""
    rng = np.random.default_rng(seed)
    logits, labels = batch(500, 6, rng, scale=3.0)
    labels[::9] = IGNORE_INDEX
    alpha = class_weights(rng, 6)
    outputs = scorer.score(multiclass_batch(logits, labels, alpha, 1.5, IGNORE_INDEX))
    assert list(outputs) == list(NAMES)
    per_sample, statistics = update(
        torch.from_numpy(logits), torch.from_numpy(labels), torch.from_numpy(alpha), 1.5
    )
    expected = dict(zip(NAMES, (*per_sample, *statistics, *compute(statistics)), strict=True))
    for name in NAMES:
        got, want = outputs[name], expected[name].numpy()
        assert got.shape == want.shape, name
        if want.dtype.kind in "iu":
            np.testing.assert_array_equal(got, want, err_msg=name)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)


def test_concurrent_chunked_batches_on_the_portable_path_each_score_as_eager(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    # the statistics-only graph's session (its arena) is shared, and each batch releases it
    monkeypatch.setattr(
        focal_eval.service.core.scoring, "chunk_rows", lambda width, fused=False: 64
    )
    scorer = Scorers.load(make_settings(fast_path=False)).multiclass
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda seed: assert_scores_as_eager(scorer, seed), range(12)))


class CountingSession:
    """A session that counts the runs inside it at once; the first ``meet`` wait for each other.

    A barrier the first runs must all reach before any goes on: if they ran one after
    another, the first would wait alone and the barrier break (a failure, not a hang).
    """

    def __init__(self, session: Any, meet: int) -> None:
        self.session = session
        self.started = self.inside = self.most = 0
        self.lock = threading.Lock()
        self.meet = meet
        self.barrier = threading.Barrier(meet, timeout=30)

    def run(self, *args: Any) -> Any:
        with self.lock:
            self.started += 1
            self.inside += 1
            self.most = max(self.most, self.inside)
            first = self.started <= self.meet
        try:
            if first and self.meet > 1:
                self.barrier.wait()
            return self.session.run(*args)
        finally:
            with self.lock:
                self.inside -= 1


def counted_portable_scorer(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings], threads: int
) -> tuple[Scorer, CountingSession]:
    """The multi-class scorer on the portable path, chunks of 64 rows, its runs counted."""
    monkeypatch.setattr(
        focal_eval.service.core.scoring, "chunk_rows", lambda width, fused=False: 64
    )
    scorer = Scorers.load(make_settings(fast_path=False, threads=threads)).multiclass
    counted = CountingSession(scorer._statistics, meet=threads)
    monkeypatch.setattr(scorer, "_statistics", counted)
    return scorer, counted


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_portable_paths_chunks_run_side_by_side_threads_at_a_time(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings], threads: int
) -> None:
    """FOCAL_THREADS chunks run at once (each a one-thread run), never more, and score right."""
    scorer, counted = counted_portable_scorer(monkeypatch, make_settings, threads)
    assert scorer.chunk_workers == threads
    assert_scores_as_eager(scorer, seed=threads)  # 500 rows: 8 chunks
    assert counted.most == threads
    assert counted.started == 8 + 1  # and the run that releases the arena
    assert counted.inside == 0


def test_the_first_error_in_row_order_is_raised_after_every_run_has_ended(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    """16 chunks in two shares; overflows in chunk 4 (the first share) and 9 (the second).

    Whichever worker meets its error first, the 422 names row 300 (chunk 4), as it would if
    the chunks ran in turn; each share stops at its own error, so chunks 5-7 and 10-15 never
    run; and no run is still going when the error reaches the caller.
    """
    scorer, counted = counted_portable_scorer(monkeypatch, make_settings, threads=2)
    logits = np.zeros((1024, 2), dtype=np.float32)
    labels = np.zeros(1024, dtype=np.int64)
    for row in (300, 600):
        logits[row] = [3e38, -3e38]  # the cross entropy of label 1 overflows
        labels[row] = 1
    with pytest.raises(RequestError) as error:
        scorer.score(multiclass_batch(logits, labels, None, 2.0, IGNORE_INDEX))
    assert error.value.message.startswith("logits: the focal loss of row 300 overflows float32")
    assert counted.inside == 0
    assert counted.started == 5 + 2 + 1  # chunks 0-4, 8-9, and the arena's release


def test_the_same_batch_gives_the_same_bits_side_by_side(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    """The shares' sums are added in share order, whatever the timing: repeated scores agree."""
    monkeypatch.setattr(
        focal_eval.service.core.scoring, "chunk_rows", lambda width, fused=False: 50
    )
    scorer = Scorers.load(make_settings(fast_path=False, threads=3)).multiclass
    rng = np.random.default_rng(5)
    logits, labels = batch(1000, 7, rng, scale=4.0)
    scored = [scorer.score(multiclass_batch(logits, labels, None, 2.0, -1)) for _ in range(5)]
    for outputs in scored[1:]:
        for name, values in outputs.items():
            assert values.tobytes() == scored[0][name].tobytes(), name


@pytest.mark.parametrize(
    ("fast_path", "threads", "rows", "width", "expected"),
    [
        pytest.param(True, 2, 10**6, 100, 1, id="fused"),
        pytest.param(False, 1, 10**6, 100, 1, id="one-thread"),
        pytest.param(False, 2, 100, 100, 1, id="one-run"),
        pytest.param(False, 2, 2**19 // 100 + 1, 100, 2, id="two-chunks"),
        pytest.param(False, 4, 3 * 1000, 1000, 3, id="three-chunks-four-threads"),
        pytest.param(False, 4, 10**6, 10, 4, id="many-chunks"),
    ],
)
def test_chunks_at_once_is_what_the_scorer_runs_side_by_side(
    make_settings: Callable[..., Settings],
    fast_path: bool,
    threads: int,
    rows: int,
    width: int,
    expected: int,
) -> None:
    scorer = Scorers.load(make_settings(fast_path=fast_path, threads=threads)).multiclass
    assert scorer.chunks_at_once(rows, width) == expected


def test_ranking_on_the_portable_path_prices_its_chunks_side_by_side(
    make_settings: Callable[..., Settings],
) -> None:
    """The fused graph scores, but a batch's ranking runs its own graph's chunks, two at once."""
    scorers = Scorers.load(make_settings(fast_path=True, threads=2))
    assert scorers.ranking is not None
    scorer = scorers.multiclass
    scorer.ranking_path = FastPath("off", "test: the ranked fused graph is not live")
    assert scorer.chunks_at_once(10**6, 100) == 1
    assert scorer.chunks_at_once(10**6, 100, scorers.ranking) == 2


@pytest.mark.parametrize("task", [MULTICLASS, MULTILABEL])
@pytest.mark.parametrize("histogram_bins", [0, 100], ids=["no-ranking", "ranking"])
def test_the_reservation_counts_each_chunk_running_at_once(task: str, histogram_bins: int) -> None:
    """Each running chunk has its own work and its share's sums; the kept outputs are one."""
    fixed, kept = costs.RESPONSE_CHUNK + costs.FIXED, 8 * 10**6
    one = costs.scoring(task, 10**6, 100, 8, histogram_bins) - fixed - kept
    two = costs.scoring(task, 10**6, 100, 8, histogram_bins, chunks_at_once=2) - fixed - kept
    assert one > 0
    assert two == 2 * one


def artifacts_copy(tmp_path: Path) -> Path:
    """A copy of the shipped artifacts to change."""
    return Path(shutil.copytree(default_artifact_dir(), tmp_path / "artifacts"))


def test_without_a_statistics_graph_the_evaluation_graph_scores_the_chunks(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    # an export from before the statistics-only graphs
    directory = artifacts_copy(tmp_path)
    for path in directory.glob("*_statistics.onnx*"):
        path.unlink()
    monkeypatch.setattr(
        focal_eval.service.core.scoring, "chunk_rows", lambda width, fused=False: 64
    )
    settings = make_settings(fast_path=False, artifact_dir=directory)
    assert_scores_as_eager(Scorers.load(settings).multiclass, seed=3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            lambda manifest: manifest["defaults"].update(num_bins=10),
            "its num_bins 10 is not the evaluation graph's 15: export them together",
            id="other-bins",
        ),
        pytest.param(
            lambda manifest: manifest["outputs"].pop(),
            "its inputs and outputs are not those of evaluation.onnx without the metrics:"
            " export them together",
            id="other-outputs",
        ),
    ],
)
def test_a_statistics_graph_from_another_export_is_refused(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    change: Callable[[dict[str, Any]], object],
    message: str,
) -> None:
    directory = artifacts_copy(tmp_path)
    path = directory / "evaluation_statistics.onnx.manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError) as error:
        Scorers.load(make_settings(artifact_dir=directory))
    assert str(error.value) == f"{directory / 'evaluation_statistics.onnx'}: {message}"


@pytest.mark.parametrize("fast_path", [True, False], ids=["fused", "portable"])
def test_an_overflow_in_a_later_chunk_names_its_row_in_the_batch(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings], fast_path: bool
) -> None:
    monkeypatch.setattr(
        focal_eval.service.core.scoring, "chunk_rows", lambda width, fused=False: 10
    )
    logits = np.zeros((30, 2), dtype=np.float32)
    logits[23] = [3e38, -3e38]  # finite, but the cross entropy of label 1 overflows
    labels = np.zeros(30, dtype=np.int64)
    labels[23] = 1
    scorer = Scorers.load(make_settings(fast_path=fast_path)).multiclass
    with pytest.raises(RequestError) as error:
        scorer.score(multiclass_batch(logits, labels, None, 2.0, IGNORE_INDEX))
    assert error.value.status_code == 422
    assert error.value.message.startswith("logits: the focal loss of row 23 overflows float32")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "minus_inf"])
@pytest.mark.parametrize("task", [MULTICLASS, MULTILABEL])
@pytest.mark.parametrize("fast_path", [True, False], ids=["fused", "portable"])
def test_a_non_finite_logit_in_a_later_chunk_is_422_naming_its_row(
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    make_settings: Callable[..., Settings],
    fast_path: bool,
    task: str,
    value: float,
) -> None:
    """The fused kernel refuses it as it reads the row, the portable path checks first."""
    monkeypatch.setattr(
        focal_eval.service.core.scoring, "chunk_rows", lambda width, fused=False: 10
    )
    logits = np.zeros((30, 3), dtype=np.float32)
    logits[23, 2] = value
    logits[27, 0] = value
    scorers = Scorers.load(make_settings(fast_path=fast_path))
    if task == MULTICLASS:
        scorer, batch = (
            scorers.multiclass,
            multiclass_batch(logits, np.zeros(30, np.int64), None, 2.0, -1),
        )
    else:
        assert scorers.multilabel is not None
        scorer = scorers.multilabel
        batch = multilabel_batch(
            MULTILABEL, logits, np.zeros((30, 3), np.int64), 0.25, 2.0, 0.5, -1
        )
    assert scorer.fast_path.live is fast_path
    with pytest.raises(RequestError) as error:
        scorer.score(batch)
    assert error.value.status_code == 422
    assert error.value.message == (
        "logits: 2 values are NaN or infinite (first in row 23); a float64 value beyond the"
        " float32 range counts as infinite"
    )
    assert "logits must be finite" not in capfd.readouterr().err  # not onnxruntime's to log


@pytest.mark.parametrize("rows", [64, 1000], ids=["chunked", "one-run"])
def test_the_portable_path_with_ranking_checks_each_logit_once(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings], rows: int
) -> None:
    """Each run checks its own rows; the ranking graph's runs follow, on logits checked."""
    checked: list[int] = []

    def counting(chunk: np.ndarray, logits: np.ndarray) -> None:
        checked.append(len(chunk))
        check_run_finite(chunk, logits)

    monkeypatch.setattr(focal_eval.service.core.scoring, "check_run_finite", counting)
    monkeypatch.setattr(
        focal_eval.service.core.scoring, "chunk_rows", lambda width, fused=False: rows
    )
    scorers = Scorers.load(make_settings(fast_path=False))
    assert scorers.ranking is not None
    logits, labels = batch(200, 4, seed=11)
    outputs = scorers.multiclass.score(
        multiclass_batch(logits, labels, None, 2.0, IGNORE_INDEX), ranking=scorers.ranking
    )
    assert set(scorers.ranking.output_names) <= set(outputs)
    assert sorted(checked) == ([8, 64, 64, 64] if rows == 64 else [200])


def test_loss_overflowing_float32_is_422_not_a_null_that_reads_undefined(
    client: TestClient,
) -> None:
    # finite logits whose spread overflows float32: the cross entropy is infinite, and JSON
    # would carry it as null, which the schema documents as "undefined"
    logits = [[3e38, -3e38, 0.0], LOGITS[1]]
    response = client.post("/score", json=document(logits=logits, labels=[1, 2]))
    assert_error(response, 422, "logits: the focal loss of row 0 overflows float32")


# --- defaults: settings, else the manifest; the request wins -------------------------------


def test_settings_defaults_apply_when_the_request_omits_them(
    make_settings: Callable[..., Settings],
) -> None:
    alpha, gamma, ignore_index = [0.25, 1.0, 2.0], 0.5, -1
    logits, labels = batch(40, 3, seed=5, ignore=4, ignore_index=ignore_index)
    settings = make_settings(gamma=gamma, alpha=alpha, ignore_index=ignore_index)
    with TestClient(create_app(settings)) as client:
        got = client.post("/score", json=json_body(logits, labels)).json()
    assert_score_response(got, eager(logits, labels, alpha, gamma, ignore_index))
    assert got["valid"] == 36
    assert got["parameters"] == {"gamma": gamma, "ignore_index": ignore_index, "alpha": alpha}


def test_request_values_override_settings_defaults(make_settings: Callable[..., Settings]) -> None:
    logits, labels = batch(40, 3, seed=6, ignore=3)
    options: dict[str, Any] = {
        "gamma": 3.0,
        "alpha": [1.0, 0.5, 0.0],
        "ignore_index": DEFAULT_IGNORE_INDEX,
    }
    settings = make_settings(gamma=0.5, alpha=[0.25, 1.0, 2.0], ignore_index=-1)
    with TestClient(create_app(settings)) as client:
        got = client.post("/score", json=json_body(logits, labels, **options)).json()
    assert_score_response(got, eager(logits, labels, **options))
    assert got["parameters"] == options
