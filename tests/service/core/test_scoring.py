"""The scorer: chunked batches give exactly what one graph run (and eager focal/) gives."""

from __future__ import annotations

import json
import shutil
import threading
import time
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
from focal_eval.service.core.batches import reserve_batch
from focal_eval.service.core.errors import RequestError
from focal_eval.service.core.fast_path import FastPath
from focal_eval.service.core.multilabel import multilabel_batch
from focal_eval.service.core.scoring import Scorer, Scorers, chunk_rows
from focal_eval.service.core.settings import Settings
from focal_eval.service.core.tasks import MULTICLASS, MULTILABEL
from focal_eval.service.core.validation import Batch, check_run_finite, multiclass_batch
from focal_eval.service.memory import costs
from focal_eval.service.memory.budget import MemoryBudget
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


@pytest.mark.parametrize(
    ("fast_path", "threads"),
    [(True, 1), (False, 1), (False, 2)],
    ids=["fused", "portable", "portable-side-by-side"],
)
@pytest.mark.parametrize("rows", [7, 64, 1000])
def test_chunked_scoring_equals_eager_on_the_whole_batch(
    monkeypatch: pytest.MonkeyPatch,
    make_settings: Callable[..., Settings],
    rows: int,
    fast_path: bool,
    threads: int,
) -> None:
    monkeypatch.setattr(
        focal_eval.service.core.scoring, "chunk_rows", lambda width, fused=False: rows
    )
    scorer = Scorers.load(make_settings(fast_path=fast_path, threads=threads)).multiclass
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
    scorer = portable_scorer(monkeypatch, make_settings, threads=2)
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


def portable_scorer(
    monkeypatch: pytest.MonkeyPatch,
    make_settings: Callable[..., Settings],
    threads: int,
    rows: int = 64,
) -> Scorer:
    """The multi-class scorer on the portable path, in chunks of ``rows`` rows."""
    monkeypatch.setattr(
        focal_eval.service.core.scoring, "chunk_rows", lambda width, fused=False: rows
    )
    return Scorers.load(make_settings(fast_path=False, threads=threads)).multiclass


def counted_portable_scorer(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings], threads: int
) -> tuple[Scorer, CountingSession]:
    """:func:`portable_scorer`, its runs counted (the first ``threads`` meet at a barrier)."""
    scorer = portable_scorer(monkeypatch, make_settings, threads)
    counted = CountingSession(scorer._statistics, meet=threads)
    monkeypatch.setattr(scorer, "_statistics", counted)
    return scorer, counted


@pytest.mark.parametrize(
    ("threads", "chunks"),
    # 500 rows in chunks of at most 64: 8 in turn, or a multiple of the workers, equal
    [(1, 8), (2, 8), (3, 9)],
)
def test_the_portable_paths_chunks_run_side_by_side_threads_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
    make_settings: Callable[..., Settings],
    threads: int,
    chunks: int,
) -> None:
    """FOCAL_THREADS chunks run at once (each a one-thread run), never more, and score right."""
    scorer, counted = counted_portable_scorer(monkeypatch, make_settings, threads)
    assert scorer.chunk_workers == threads
    assert counted.session.get_session_options().intra_op_num_threads == 1
    assert_scores_as_eager(scorer, seed=threads)
    assert counted.most == threads
    assert counted.started == chunks + 1  # and the run that releases the arena
    assert counted.inside == 0


class HeldChunks:
    """Wraps a scorer's ``_run``: records the chunks run, holds chosen ones until an event.

    ``hold[start] = (event, then)``: the chunk starting at row ``start`` waits for ``event``
    (``began[start]`` is set as a chunk begins, ``fails[start]`` when it fails), then sleeps
    ``then`` seconds.
    """

    def __init__(self, scorer: Scorer) -> None:
        self.run = scorer._run
        self.started: list[int] = []
        self.ended: set[int] = set()
        self.hold: dict[int, tuple[threading.Event, float]] = {}
        self.began: dict[int, threading.Event] = {}
        self.fails: dict[int, threading.Event] = {}

    def __call__(self, batch: Any, rows: slice, *args: Any) -> Any:
        self.started.append(rows.start)
        self.began.setdefault(rows.start, threading.Event()).set()
        if rows.start in self.hold:
            event, then = self.hold[rows.start]
            assert event.wait(30)
            time.sleep(then)
        try:
            return self.run(batch, rows, *args)
        except RequestError:
            self.fails.setdefault(rows.start, threading.Event()).set()
            raise
        finally:
            self.ended.add(rows.start)


def two_overflows(rows: tuple[int, ...]) -> Batch:
    """1,024 rows of 2 classes (16 chunks of 64, two shares); the loss overflows at ``rows``."""
    logits = np.zeros((1024, 2), dtype=np.float32)
    labels = np.zeros(1024, dtype=np.int64)
    for row in rows:
        logits[row] = [3e38, -3e38]  # the cross entropy of label 1 overflows float32
        labels[row] = 1
    return multiclass_batch(logits, labels, None, 2.0, IGNORE_INDEX)


def test_a_later_share_failing_first_still_gives_the_first_error_in_row_order(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    """Overflows in chunk 4 (first share) and 9 (second); chunk 0 waits for chunk 9 to fail.

    The 422 names row 300, as running the chunks in turn would; the first share goes on to
    its own error (a later share's error stops nothing before it) and stops there.
    """
    scorer = portable_scorer(monkeypatch, make_settings, threads=2)
    held = HeldChunks(scorer)
    held.fails[576] = threading.Event()
    held.hold[0] = (held.fails[576], 0.0)
    monkeypatch.setattr(scorer, "_run", held)
    with pytest.raises(RequestError) as error:
        scorer.score(two_overflows((300, 600)))
    assert error.value.message.startswith("logits: the focal loss of row 300 overflows float32")
    assert sorted(held.started) == [0, 64, 128, 192, 256, 512, 576]


def test_an_earlier_share_failing_stops_the_later_ones_and_waits_for_their_runs(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    """An overflow in chunk 1, held until the second share has begun its first chunk.

    That chunk goes on after the failure, slowly; then its share stops, and the error reaches
    the caller only once the chunk has ended: no run goes on for a request that has been
    answered.
    """
    scorer = portable_scorer(monkeypatch, make_settings, threads=2)
    held = HeldChunks(scorer)
    held.began[512], held.fails[64] = threading.Event(), threading.Event()
    held.hold[64] = (held.began[512], 0.0)
    held.hold[512] = (held.fails[64], 0.3)
    monkeypatch.setattr(scorer, "_run", held)
    with pytest.raises(RequestError) as error:
        scorer.score(two_overflows((100,)))
    assert 512 in held.ended  # the held chunk had ended when the error was raised
    assert error.value.message.startswith("logits: the focal loss of row 100 overflows float32")
    assert sorted(held.started) == [0, 64, 512]


def test_the_same_batch_gives_the_same_bits_side_by_side(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings]
) -> None:
    """The shares' sums are added in share order, whatever the timing: repeated scores agree."""
    scorer = portable_scorer(monkeypatch, make_settings, threads=3, rows=50)
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
@pytest.mark.parametrize("width", [100, 2048])
def test_a_further_chunk_at_once_adds_its_work_not_the_metrics(
    task: str, histogram_bins: int, width: int
) -> None:
    """A second chunk at once reserves its per-element work and more, but not the C x C again."""
    fixed = costs.RESPONSE_CHUNK + costs.FIXED
    one = costs.scoring(task, 10**6, width, 0, histogram_bins) - fixed
    two = costs.scoring(task, 10**6, width, 0, histogram_bins, chunks_at_once=2) - fixed
    per_element = costs.ELEMENT_WORK if task == MULTICLASS else costs.MULTILABEL_ELEMENT_WORK
    assert chunk_rows(width) * per_element * width < two - one <= one
    if (task, width, histogram_bins) == (MULTICLASS, 2048, 0):  # C x C metrics: once
        assert two - one < 0.7 * one


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        pytest.param("two", 2, id="two-fit"),
        pytest.param("one", 1, id="only-one-fits"),
        pytest.param("none", None, id="none-fits"),
    ],
)
def test_a_batch_that_does_not_fit_side_by_side_is_admitted_in_turn(
    budget: str, expected: int | None
) -> None:
    logits = np.zeros((20_000, 1000), np.float32)  # arrays of their own, not views of a body
    labels = np.zeros(20_000, np.int64)

    def cost(at_once: int) -> int:
        held = logits.nbytes + labels.nbytes
        work = costs.scoring(MULTICLASS, 20_000, 1000, 0, 0, at_once)
        return held + costs.conversion(logits, labels) + work

    limit = {"two": cost(2), "one": cost(2) - 1, "none": cost(1) - 1}[budget]
    reservation = MemoryBudget(limit).reservation()
    arrays = (logits, labels, None)
    if expected is None:
        with pytest.raises(RequestError) as error:
            reserve_batch(reservation, b"", arrays, MULTICLASS, 0, 5000, chunks_at_once=2)
        assert error.value.status_code == 413
        assert reservation.nbytes == 0
    else:
        at_once = reserve_batch(reservation, b"", arrays, MULTICLASS, 0, 5000, chunks_at_once=2)
        assert at_once == expected
        assert reservation.nbytes == cost(expected)


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
@pytest.mark.parametrize(
    ("fast_path", "threads"),
    [(True, 1), (False, 1), (False, 2)],
    ids=["fused", "portable", "portable-side-by-side"],
)
def test_a_non_finite_logit_in_a_later_chunk_is_422_naming_its_row(
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    make_settings: Callable[..., Settings],
    fast_path: bool,
    threads: int,
    task: str,
    value: float,
) -> None:
    """The fused kernel refuses it as it reads the row, the portable path before each run."""
    monkeypatch.setattr(
        focal_eval.service.core.scoring, "chunk_rows", lambda width, fused=False: 10
    )
    logits = np.zeros((30, 3), dtype=np.float32)
    logits[23, 2] = value
    logits[27, 0] = value
    scorers = Scorers.load(make_settings(fast_path=fast_path, threads=threads))
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
