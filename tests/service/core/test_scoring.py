"""The scorer: chunked batches give exactly what one graph run (and eager focal/) gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import service.core.scoring
from focal import Metrics, PerSample, Statistics, compute, update
from service.core.errors import RequestError
from service.core.scoring import Scorer, chunk_rows
from service.core.settings import Settings
from service.core.validation import make_batch

NAMES = PerSample._fields + Statistics._fields + Metrics._fields


def test_chunk_rows_bounds_the_work_per_run() -> None:
    assert chunk_rows(2) == 2**16  # the per-row intermediates bound it from above
    assert chunk_rows(10) == 2**19 // 10
    assert chunk_rows(1000) == 1000  # the C x C confusion matrix bounds it from below


@pytest.mark.parametrize("rows", [7, 64, 1000])
def test_chunked_scoring_equals_eager_on_the_whole_batch(
    monkeypatch: pytest.MonkeyPatch, rows: int
) -> None:
    monkeypatch.setattr(service.core.scoring, "chunk_rows", lambda num_classes: rows)
    rng = np.random.default_rng(rows)
    logits = (rng.standard_normal((500, 6)) * 3).astype(np.float32)
    labels = rng.integers(0, 6, 500)
    labels[::9] = -100
    alpha = rng.random(6).astype(np.float32) + 0.5
    scorer = Scorer.load(Settings(threads=1))
    outputs = scorer.score(make_batch(logits, labels, alpha, 1.5, -100))
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


def test_an_overflow_in_a_later_chunk_names_its_row_in_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(service.core.scoring, "chunk_rows", lambda num_classes: 10)
    logits = np.zeros((30, 2), dtype=np.float32)
    logits[23] = [3e38, -3e38]  # finite, but the cross entropy of label 1 overflows
    labels = np.zeros(30, dtype=np.int64)
    labels[23] = 1
    scorer = Scorer.load(Settings(threads=1))
    with pytest.raises(RequestError) as error:
        scorer.score(make_batch(logits, labels, None, 2.0, -100))
    assert error.value.status_code == 422
    assert error.value.message.startswith("logits: the cross entropy of row 23 overflows float32")
