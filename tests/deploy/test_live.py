"""A real Prometheus, deploy/'s rules loaded, scrapes a real server fed known batches.

Every quality recording rule and every quality query of the dashboard equals focal/'s
metric of the same batches; traffic, latency and error queries evaluate and return series.

How the batches are fed (deploy/README.md, "What rate() does to these numbers"): the server
first scores a batch holding every class, which Prometheus scrapes; then the compared batches.
Every rate() over a window holding both sees exactly the compared batches' increase, scaled by
one extrapolation factor that cancels in each ratio. The first batch contains the compared
ones, so that no series' first value is small next to its increase (rate() would otherwise
stop extrapolating it at the counter's zero, with another factor), and adds a better model's
batch, so that the lifetime metrics differ from the compared ones.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
import torch
from sklearn.metrics import recall_score

from focal_eval.focal import compute, update
from focal_eval.focal.metrics import Metrics
from focal_eval.focal.statistics import Statistics
from focal_eval.service.testing import focal_server
from tests.deploy._files import RULES, Target, dashboard, pod, rules, substitute, targets
from tests.prometheus import api, post_score, prometheus, query
from tests.service._inputs import batch
from tests.system import require

C = 5
N = 600  # compared samples
SOURCE = "prod"
WINDOW = "5m"  # every window: holds the whole test
VALUES = {"source": SOURCE, "class": ".*", "window": WINDOW, "__rate_interval": WINDOW}
SETTLE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Reference:
    """focal/'s numbers for the compared batch."""

    statistics: Statistics
    metrics: Metrics
    predictions: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class Fed:
    """The server and Prometheus after the batches, and the time to query them at."""

    server: str
    prometheus: str
    at: float  # Unix time at which every query is evaluated


def compared_batch() -> tuple[np.ndarray, np.ndarray]:
    """Random logits; class 4 never occurs, but is predicted: macro recall < balanced accuracy."""
    logits, labels = batch(N, C, seed=1)
    labels[labels == 4] = 3
    return logits, labels


def first_batch(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The compared batch, then a better model's batch with every class."""
    better, truth = batch(N, C, seed=2)
    better[np.arange(N), truth] += 3.0
    return np.concatenate([logits, better]), np.concatenate([labels, truth])


def side_requests(url: str) -> None:
    """A batch the monitor refuses (3 classes for a 5-class source) and a 422."""
    logits, labels = batch(20, 3, seed=3)
    assert post_score(url, logits, labels, source=SOURCE)["monitored"] is False
    response = httpx.post(f"{url}/score", json={"logits": [[0.0, 1.0]], "labels": [7]}, timeout=10)
    assert response.status_code == 422


def scraped(url: str, samples: int) -> float:
    """Wait until Prometheus holds ``samples`` monitored samples; the scrape's Unix time."""
    selector = f'focal_eval_samples_total{{source="{SOURCE}"}}'
    (result,) = query(url, f"timestamp({selector} == {samples})")
    return float(result["value"][1])


def settled(url: str, scrape: float) -> float:
    """Wait until every rule group has evaluated a second after ``scrape``; the time now.

    Each group's latest evaluation shows as the timestamp of a series it writes.
    """
    written = (
        f'source:focal_eval_samples:rate5m{{source="{SOURCE}"}}',
        f'source:focal_eval_samples:rate1h{{source="{SOURCE}"}}',
        'ALERTS{alertname="FocalEvalUnmonitoredBatches"}',
    )
    for selector in written:
        query(url, f"timestamp({selector}) > {scrape + 1.0}", timeout_s=SETTLE_TIMEOUT_S)
    return time.time()


@pytest.fixture(scope="module")
def reference() -> Reference:
    logits, labels = compared_batch()
    per_sample, statistics = update(torch.from_numpy(logits), torch.from_numpy(labels))
    return Reference(statistics, compute(statistics), per_sample.prediction.numpy(), labels)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    require("prometheus", "prometheus", "apt-get install prometheus")  # before the server
    logits, labels = compared_batch()
    env = {"FOCAL_THREADS": "1", "FOCAL_MONITOR_SOURCES": f"{SOURCE},canary"}
    with focal_server(env) as server:
        post_score(server.url, *first_batch(logits, labels), source=SOURCE)
        side_requests(server.url)
        directory = tmp_path_factory.mktemp("prometheus")
        with prometheus([server.address], directory, [RULES]) as url:
            scraped(url, 2 * N)
            for rows in (slice(0, 250), slice(250, N)):  # scraped together or apart: the same
                post_score(server.url, logits[rows], labels[rows], source=SOURCE)
            side_requests(server.url)
            at = settled(url, scraped(url, 3 * N))
            yield Fed(server.url, url, at)


def values(fed: Fed, promql: str, label: str) -> dict[str, float]:
    """The query's value by ``label``, at the fixture's time; it must return a series."""
    result = query(fed.prometheus, promql, at=fed.at, timeout_s=0)
    keyed = {r["metric"].get(label, ""): float(r["value"][1]) for r in result}
    assert len(keyed) == len(result), f"{promql!r} has series beyond {label}"
    return keyed


# --- focal/'s numbers, keyed as the queries' results are ------------------------------------


def support(ref: Reference) -> np.ndarray:
    return ref.statistics.confusion_matrix.sum(1).numpy()


def predicted(ref: Reference) -> np.ndarray:
    return ref.statistics.confusion_matrix.sum(0).numpy()


def macro_recall(ref: Reference) -> float:
    """Mean recall over classes that occurred or were predicted (focal/'s 0 for the latter)."""
    present = (support(ref) + predicted(ref)) > 0
    return float(ref.metrics.recall.numpy()[present].mean())


def by_class(per_class: torch.Tensor, where: np.ndarray) -> dict[str, float]:
    return {str(k): float(v) for k, v in enumerate(per_class.tolist()) if where[k]}


def by_bin(ref: Reference, numerator: torch.Tensor) -> dict[str, float]:
    count = ref.statistics.bin_count.numpy()
    return {str(b): float(numerator[b]) / count[b] for b in range(len(count)) if count[b] > 0}


def per_source(value: Callable[[Metrics], torch.Tensor]) -> Callable[[Reference], dict[str, float]]:
    return lambda ref: {SOURCE: value(ref.metrics).item()}


COUNTS = 1e-9  # ratios of counts: exact up to float rounding
SUMS = 1e-5  # ratios with sums of float32 losses or confidences (onnxruntime vs torch)


@dataclass(frozen=True)
class Expected:
    """What a quality query returns: values by ``label``, from focal/, to ``rel``."""

    label: str
    value: Callable[[Reference], dict[str, float]]
    rel: float = COUNTS


QUALITY_QUERIES = {
    ("Balanced accuracy", "A"): Expected("source", per_source(lambda m: m.balanced_accuracy)),
    ("Macro recall", "A"): Expected("source", lambda ref: {SOURCE: macro_recall(ref)}),
    ("Accuracy", "A"): Expected("source", per_source(lambda m: m.accuracy)),
    ("Loss", "A"): Expected("source", per_source(lambda m: m.mean_focal_loss), SUMS),
    ("Loss", "B"): Expected("source", per_source(lambda m: m.mean_cross_entropy), SUMS),
    ("Loss", "C"): Expected("source", per_source(lambda m: m.class_balanced_focal_loss), SUMS),
    ("Expected calibration error", "A"): Expected(
        "source", per_source(lambda m: m.expected_calibration_error), SUMS
    ),
    ("Reliability", "A"): Expected("bin", lambda ref: by_bin(ref, ref.statistics.bin_correct)),
    ("Reliability", "B"): Expected(
        "bin", lambda ref: by_bin(ref, ref.statistics.bin_confidence_sum), SUMS
    ),
    ("Samples by confidence bin", "A"): Expected(
        "bin",
        lambda ref: {
            str(b): count / N for b, count in enumerate(ref.statistics.bin_count.tolist())
        },
    ),
    ("Recall by class", "A"): Expected(
        "class", lambda ref: by_class(ref.metrics.recall, support(ref) > 0)
    ),
    ("Precision by class", "A"): Expected(
        "class", lambda ref: by_class(ref.metrics.precision, predicted(ref) > 0)
    ),
}
# evaluated, and must return series; their values are rates of traffic, not focal/'s
TRAFFIC_QUERIES = {
    ("Samples by class", "A"),
    ("Requests by route and status", "A"),
    ("Samples", "A"),
    ("Samples", "B"),
    ("Unmonitored batches", "A"),
    ("Memory for requests", "A"),
    ("Memory for requests", "B"),
    ("Requests in flight", "A"),
    ("Latency by route", "A"),
    ("Latency by route", "B"),
    ("Latency by route", "C"),
    ("Request body size by route", "A"),
    ("5xx ratio by route", "A"),
    ("Errors by route and status", "A"),
}

# recording rule -> the dashboard query it must equal (its window is the test's WINDOW too)
QUALITY_RULES = {
    "source:focal_eval_balanced_accuracy": ("Balanced accuracy", "A"),
    "source:focal_eval_macro_recall": ("Macro recall", "A"),
    "source:focal_eval_accuracy": ("Accuracy", "A"),
    "source:focal_eval_focal_loss": ("Loss", "A"),
    "source:focal_eval_expected_calibration_error": ("Expected calibration error", "A"),
    "source_class:focal_eval_recall": ("Recall by class", "A"),
}


def compare(got: dict[str, float], expected: Expected, ref: Reference) -> None:
    want = expected.value(ref)
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=expected.rel, abs=1e-12), key


# --- the rules ----------------------------------------------------------------------------


def test_every_rule_is_loaded_and_evaluates_without_error(fed: Fed) -> None:
    loaded = [rule for group in api(fed.prometheus, "rules")["groups"] for rule in group["rules"]]
    names = [str(r["record"] if "record" in r else r["alert"]) for r in rules()]
    assert sorted(rule["name"] for rule in loaded) == sorted(names)
    assert [(r["name"], r["lastError"]) for r in loaded if r["health"] != "ok"] == []


@pytest.mark.parametrize("window", ["5m", "1h"])
@pytest.mark.parametrize("rule", list(QUALITY_RULES))
def test_quality_recording_rule_equals_focal(
    fed: Fed, reference: Reference, rule: str, window: str
) -> None:
    expected = QUALITY_QUERIES[QUALITY_RULES[rule]]
    operation = "mean" if rule.endswith("focal_loss") else "rate"
    recorded = f'{rule}:{operation}{window}{{source="{SOURCE}"}}'
    compare(values(fed, recorded, expected.label), expected, reference)


@pytest.mark.parametrize("window", ["5m", "1h"])
@pytest.mark.parametrize(
    ("counter", "counts"),
    [
        pytest.param("class_samples", support, id="samples"),
        pytest.param("class_predicted", predicted, id="predicted"),
        pytest.param(
            "class_correct",
            lambda ref: ref.statistics.confusion_matrix.diagonal().numpy(),
            id="correct",
        ),
    ],
)
def test_per_class_rates_are_the_counts_over_one_common_factor(
    fed: Fed,
    reference: Reference,
    counter: str,
    counts: Callable[[Reference], np.ndarray],
    window: str,
) -> None:
    selector = f'{{source="{SOURCE}"}}'
    rates = values(fed, f"source_class:focal_eval_{counter}:rate{window}{selector}", "class")
    (total,) = values(fed, f"source:focal_eval_samples:rate{window}{selector}", "source").values()
    got = {int(k): rate / total for k, rate in rates.items()}
    want = {k: count / N for k, count in enumerate(counts(reference).tolist())}
    assert got == pytest.approx(want, rel=COUNTS, abs=1e-12)


def test_one_day_levels_are_recorded(fed: Fed) -> None:
    (level,) = values(fed, "source:focal_eval_balanced_accuracy:avg1d_rate1h", "source").values()
    assert 0 < level < 1
    recalls = values(fed, "source_class:focal_eval_recall:avg1d_rate1h", "class")
    assert set(recalls) == {"0", "1", "2", "3"}  # the classes that occurred


def test_route_rules_count_requests_and_no_5xx(fed: Fed) -> None:
    assert values(fed, "route:focal_eval_requests:rate5m", "route")["/score"] > 0
    assert values(fed, "route:focal_eval_requests_5xx:ratio_rate5m", "route")["/score"] == 0


def test_only_the_unmonitored_batches_alert_fires(fed: Fed) -> None:
    firing = query(fed.prometheus, 'ALERTS{alertstate="firing"}', at=fed.at, timeout_s=0)
    assert [
        (r["metric"]["alertname"], r["metric"]["source"], r["metric"]["reason"]) for r in firing
    ] == [("FocalEvalUnmonitoredBatches", SOURCE, "class_count")]


# --- the dashboard ------------------------------------------------------------------------


def test_every_dashboard_query_is_checked() -> None:
    keys = [target.key for target in targets(dashboard())]
    assert len(set(keys)) == len(keys)
    assert set(keys) == set(QUALITY_QUERIES) | TRAFFIC_QUERIES
    assert not set(QUALITY_QUERIES) & TRAFFIC_QUERIES


@pytest.mark.parametrize("target", targets(dashboard()), ids=lambda t: f"{t.panel}-{t.ref}")
def test_dashboard_query_evaluates_to_series(fed: Fed, target: Target) -> None:
    result = query(fed.prometheus, substitute(target.expr, VALUES), at=fed.at, timeout_s=0)
    # a route without requests in the window has no latency quantile (NaN): others do
    assert any(np.isfinite(float(r["value"][1])) for r in result)


@pytest.mark.parametrize("key", list(QUALITY_QUERIES), ids="-".join)
def test_dashboard_quality_query_equals_focal(
    fed: Fed, reference: Reference, key: tuple[str, str]
) -> None:
    (target,) = (t for t in targets(dashboard()) if t.key == key)
    expected = QUALITY_QUERIES[key]
    compare(values(fed, substitute(target.expr, VALUES), expected.label), expected, reference)


def test_dashboard_variables_list_the_source_and_its_classes(fed: Fed) -> None:
    found: dict[str, list[str]] = {}
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
        assert match is not None
        selector = substitute(match.group(1), VALUES)
        found[variable["name"]] = api(
            fed.prometheus, f"label/{match.group(2)}/values", **{"match[]": selector}
        )
    assert found == {"source": [SOURCE], "class": [str(k) for k in range(C)]}


def test_macro_recall_is_scikit_learns(reference: Reference) -> None:
    labels, predictions = reference.labels, reference.predictions
    expected = recall_score(labels, predictions, average="macro", zero_division=0)
    assert macro_recall(reference) == pytest.approx(expected, rel=1e-12)
    # class 4 is predicted but never occurs
    assert macro_recall(reference) < reference.metrics.balanced_accuracy.item()


# --- Kubernetes ---------------------------------------------------------------------------


def test_annotated_path_serves_the_metrics(fed: Fed) -> None:
    path = pod()["metadata"]["annotations"]["prometheus.io/path"]
    response = httpx.get(f"{fed.server}{path}", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "focal_eval_calibration_samples_total" in response.text
