"""The multi-class op's numbers against float64 formulas, on a held-out sweep.

Held out: C up to 5,000 and logits to 1e4 (the export's sweep stops at C = 1,000), ties, every
row ignored, N = 1 and N = 0. With one row per class (labels a permutation), each per-class sum
is one row's value, so the per-sample Brier score is read from ``brier_sum``; with gamma = 1
and alpha = 1, ``focal_loss / cross_entropy`` is the kernel's own :math:`1 - p_t`. Both must
hold to 1e-4 relative wherever the float64 value is at least 1e-7.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from focal_eval.service.kernel import NON_FINITE as NON_FINITE_ERROR
from focal_eval.service.kernel import library_path
from tests.service.kernel._fused import IGNORE, run_fused, scalar
from tests.service.kernel.build import build_library

BINS = 15
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def one_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kernel built as one generic copy (4 lanes): on x86-64, the baseline processor's."""
    out = tmp_path_factory.mktemp("one_copy") / "one_copy.so"
    return build_library(out, prelude="#define FOCAL_ONE_COPY 1")


@pytest.fixture(params=["by_cpu", "one_copy"])
def library(request: pytest.FixtureRequest) -> Path | None:
    """The installed library (its copy for this processor), then the one-copy build."""
    return None if request.param == "by_cpu" else request.getfixturevalue("one_copy")


def run(
    logits: npt.NDArray[np.float32],
    labels: npt.NDArray[np.int64],
    gamma: float = 2.0,
    alpha: npt.NDArray[np.float32] | None = None,
    threads: int = 2,
    library: Path | None = None,
) -> dict[str, npt.NDArray[Any]]:
    feeds: dict[str, npt.NDArray[Any]] = {
        "logits": logits,
        "labels": labels,
        "alpha": np.ones(logits.shape[1], np.float32) if alpha is None else alpha,
        "gamma": scalar(gamma),
        "ignore_index": scalar(IGNORE, np.int64),
    }
    return run_fused("fused_evaluation", feeds, threads, library)


def reference(logits: npt.NDArray[np.float32], labels: npt.NDArray[np.int64]) -> dict[str, Any]:
    """float64: cross entropy, 1 - p_t (the other classes summed), Brier, confidence."""
    x = logits.astype(np.float64)
    shifted = x - x.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    rows = np.arange(len(x))
    others = p.copy()
    others[rows, labels] = 0.0
    rest = others.sum(axis=1)
    return {
        "cross_entropy": -log_p[rows, labels],
        "rest": rest,
        "brier": (others**2).sum(axis=1) + rest**2,
        "confidence": p.max(axis=1),
    }


def relative_error(got: npt.NDArray[Any], want: npt.NDArray[np.float64]) -> float:
    return float(np.max(np.abs(got.astype(np.float64) - want) / want, initial=0.0))


SWEEP = [
    pytest.param(c, scale, id=f"C={c}-scale={scale:g}")
    for c in (2, 3, 10, 100, 1000, 5000)
    for scale in (1.0, 30.0, 1e4)
]


@pytest.mark.parametrize(("c", "scale"), SWEEP)
def test_one_minus_p_true_and_brier_hold_relative_precision(
    c: int, scale: float, library: Path | None
) -> None:
    rng = np.random.default_rng(c)
    logits = (scale * rng.standard_normal((c, c))).astype(np.float32)
    labels = rng.permutation(c)
    got = run(logits, labels, gamma=1.0, library=library)
    want = reference(logits, labels)
    counted = want["rest"] >= 1e-7
    positive = counted & (got["cross_entropy"] > 0)
    rest = got["focal_loss"][positive] / got["cross_entropy"][positive]
    assert relative_error(rest, want["rest"][positive]) <= 1e-4
    brier = got["brier_sum"][labels]  # class labels[i] holds row i alone
    assert relative_error(brier[counted], want["brier"][counted]) <= 1e-4
    np.testing.assert_allclose(
        got["cross_entropy"], want["cross_entropy"], rtol=1e-4, atol=1e-5 * max(1.0, scale)
    )
    np.testing.assert_array_equal(got["prediction"], logits.argmax(axis=1))


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
def test_per_sample_values_and_statistics_equal_the_float64_formulas(
    gamma: float, library: Path | None
) -> None:
    rng = np.random.default_rng(7)
    n, c = 4000, 37
    logits = (3.0 * rng.standard_normal((n, c))).astype(np.float32)
    labels = rng.integers(0, c, n)
    labels[::5] = IGNORE
    alpha = (0.1 + rng.random(c)).astype(np.float32)
    got = run(logits, labels, gamma, alpha, library=library)
    valid = labels != IGNORE
    safe = np.where(valid, labels, 0)
    want = reference(logits, safe)
    focal = alpha[safe] * want["rest"] ** gamma * want["cross_entropy"]
    for name, values in (("focal_loss", focal), ("cross_entropy", want["cross_entropy"])):
        np.testing.assert_allclose(
            got[name], np.where(valid, values, 0.0), rtol=1e-4, atol=1e-5, err_msg=name
        )
    np.testing.assert_allclose(got["p_true"], np.where(valid, 1 - want["rest"], 0.0), atol=1e-6)
    np.testing.assert_allclose(got["confidence"], want["confidence"], rtol=1e-5)
    prediction = logits.argmax(axis=1)
    confusion = np.zeros((c, c), np.int64)
    np.add.at(confusion, (labels[valid], prediction[valid]), 1)
    np.testing.assert_array_equal(got["confusion_matrix"], confusion)
    per_class = np.zeros(c)
    for name, values in (
        ("focal_loss_sum", focal),
        ("cross_entropy_sum", want["cross_entropy"]),
        ("brier_sum", want["brier"]),
        ("alpha_sum", alpha[safe].astype(np.float64)),
    ):
        expected = per_class.copy()
        np.add.at(expected, labels[valid], values[valid])
        np.testing.assert_allclose(got[name], expected, rtol=1e-5, atol=1e-8, err_msg=name)
    # bin b holds confidences in (b / B, (b + 1) / B]; none of these lies within 1e-6 of an edge
    confidence = want["confidence"][valid]
    assert np.min(np.abs(confidence * BINS - np.round(confidence * BINS))) > 1e-5
    bins = np.clip(np.ceil(confidence * BINS) - 1, 0, BINS - 1).astype(np.int64)
    np.testing.assert_array_equal(got["bin_count"], np.bincount(bins, minlength=BINS))
    correct = (prediction == labels)[valid].astype(np.int64)
    np.testing.assert_array_equal(got["bin_correct"], np.bincount(bins, correct, BINS))
    np.testing.assert_allclose(
        got["bin_confidence_sum"], np.bincount(bins, confidence, BINS), rtol=1e-6
    )


TIES = [  # classes sharing the maximum, in one vector of 8 lanes, across them, in the tail
    pytest.param([4, 7], id="one_vector"),
    pytest.param([12, 3], id="other_lanes"),
    pytest.param([17, 9], id="same_lane"),
    pytest.param([20, 5], id="tail_and_vector"),
    pytest.param([19, 20], id="tail"),
    pytest.param(list(range(21)), id="every_class"),
]


@pytest.mark.parametrize("tied", TIES)
def test_ties_go_to_the_first_class(tied: list[int], library: Path | None) -> None:
    """In a row read in place (the rows after it reach past its partial vector) and the last."""
    logits = np.full((3, 21), 2.5, np.float32)
    logits[1:, tied] = 3.0
    got = run(logits, np.zeros(3, np.int64), library=library)
    assert got["prediction"].tolist() == [0, min(tied), min(tied)]
    np.testing.assert_allclose(got["confidence"][0], 1 / 21, rtol=1e-6)


GUARDED_SHAPES = [(n, c) for n in (1, 2, 5) for c in (1, 2, 3, 5, 7, 8, 9, 37)]

# Runs the fused graph on logits that end where an unreadable page begins, shape after shape,
# and prints each one's logits, predictions and cross entropies (a line each, the shape first
# on stderr): a read past the batch's last logit kills the process.
GUARDED = """
import ctypes, json, mmap, sys
import numpy as np
from tests.service.kernel._fused import IGNORE, run_fused, scalar

kind, library, shapes = sys.argv[1], sys.argv[2] or None, json.loads(sys.argv[3])
page = mmap.PAGESIZE
memory = mmap.mmap(-1, 2 * page)
start = ctypes.addressof(ctypes.c_char.from_buffer(memory))
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
assert libc.mprotect(start + page, page, 0) == 0, ctypes.get_errno()  # PROT_NONE
for n, c in shapes:
    print(f"N={n} C={c}", file=sys.stderr, flush=True)
    logits = np.frombuffer(memory, np.float32, n * c, page - 4 * n * c).reshape(n, c)
    logits[:] = np.random.default_rng(c).standard_normal((n, c))
    feeds = {"logits": logits, "labels": np.arange(n) % c, "alpha": np.ones(c, np.float32),
             "gamma": scalar(0.0), "ignore_index": scalar(IGNORE, np.int64)}
    got = run_fused(kind, feeds, threads=1, library=library)
    print(json.dumps({"logits": logits.tolist(), "prediction": got["prediction"].tolist(),
                      "cross_entropy": got["cross_entropy"].tolist()}), flush=True)
"""


@pytest.mark.parametrize("kind", ["fused_evaluation", "fused_evaluation_ranking"])
def test_no_logit_past_the_batch_is_read(kind: str, library: Path | None) -> None:
    """A row's last partial vector is read whole only where the rows after it reach."""
    given = "" if library is None else str(library)
    done = subprocess.run(
        [sys.executable, "-c", GUARDED, kind, given, json.dumps(GUARDED_SHAPES)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]  # its last line: the shape it died in
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == len(GUARDED_SHAPES)
    for (n, c), got in zip(GUARDED_SHAPES, results, strict=True):
        logits, labels = np.array(got["logits"], np.float32), np.arange(n) % c
        assert got["prediction"] == logits.argmax(axis=1).tolist(), (n, c)
        want = reference(logits, labels)["cross_entropy"]
        np.testing.assert_allclose(
            got["cross_entropy"], want, rtol=1e-5, atol=1e-6, err_msg=f"N={n} C={c}"
        )


def test_every_row_ignored_gives_zero_losses_and_empty_statistics() -> None:
    logits = np.random.default_rng(1).standard_normal((50, 4)).astype(np.float32)
    got = run(logits, np.full(50, IGNORE))
    for name in ("focal_loss", "cross_entropy", "p_true"):
        assert not got[name].any(), name
    np.testing.assert_array_equal(got["prediction"], logits.argmax(axis=1))
    for name in ("confusion_matrix", "focal_loss_sum", "alpha_sum", "bin_count"):
        assert not got[name].any(), name


@pytest.mark.parametrize("n", [0, 1])
def test_the_smallest_batches(n: int) -> None:
    logits = np.array([[0.0, 2.0, -1.0]], np.float32)[:n]
    got = run(logits, np.ones(n, np.int64), gamma=0.0)
    assert got["focal_loss"].shape == (n,)
    assert int(got["confusion_matrix"].sum()) == n
    if n:
        want = reference(logits, np.ones(1, np.int64))
        np.testing.assert_allclose(got["focal_loss"], want["cross_entropy"], rtol=1e-6)


def test_statistics_do_not_depend_on_the_thread_count() -> None:
    rng = np.random.default_rng(2)
    logits = (2.0 * rng.standard_normal((20_000, 31))).astype(np.float32)
    labels = rng.integers(0, 31, 20_000)
    one, two = run(logits, labels, threads=1), run(logits, labels, threads=2)
    for name in one:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)


def test_a_label_out_of_range_is_an_error_not_a_read_past_the_row() -> None:
    logits = np.zeros((3, 4), np.float32)
    with pytest.raises(
        Exception, match=r"FocalEvaluation: labels must be in \[0, C\).*row 1 has 4"
    ):
        run(logits, np.array([0, 4, 1]))


NON_FINITE = [
    pytest.param(np.nan, id="nan"),
    pytest.param(np.inf, id="inf"),
    pytest.param(-np.inf, id="minus_inf"),
]


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("kind", ["fused_evaluation", "fused_evaluation_ranking"])
@pytest.mark.parametrize("column", [0, 36], ids=["first_class", "last_class"])
@pytest.mark.parametrize("row", [201, 299], ids=["read_in_place", "last_row"])
def test_a_non_finite_logit_fails_the_run(
    kind: str, value: float, column: int, row: int, library: Path | None
) -> None:
    """Anywhere in a row of 37 classes: the last class is in the row's partial vector, read
    with the next row's first logits, or copied in the batch's last row."""
    logits = np.random.default_rng(3).standard_normal((300, 37)).astype(np.float32)
    logits[row, column] = value
    feeds: dict[str, npt.NDArray[Any]] = {
        "logits": logits,
        "labels": np.zeros(300, np.int64),
        "alpha": np.ones(37, np.float32),
        "gamma": scalar(2.0),
        "ignore_index": scalar(IGNORE, np.int64),
    }
    with pytest.raises(Exception, match=f"FocalEvaluation[A-Za-z]*: {NON_FINITE_ERROR}"):
        run_fused(kind, feeds, library=library)


def test_the_largest_finite_logits_are_finite() -> None:
    logits = np.array([[3e38, -3e38, 0.0], [-3.4e38, 1.0, 3.4e38]], np.float32)
    outputs = run(logits, np.array([0, 2]))
    np.testing.assert_array_equal(outputs["prediction"], [0, 2])


@pytest.mark.skipif(platform.machine() != "x86_64", reason="CPU dispatch is built on x86-64")
def test_the_library_carries_a_baseline_an_avx2_and_an_avx512_row_loop() -> None:
    library = library_path()
    assert library is not None
    content = library.read_bytes()
    for clone in (b"score_rows", b".arch_x86_64_v3", b".arch_x86_64_v4", b".resolver"):
        assert clone in content, clone
