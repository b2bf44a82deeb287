"""Model-quality monitoring: counters Prometheus can sum, windows, and a lifetime summary.

Everything here is built from the evaluation graph's additive statistics and per-sample
focal loss; every metric is computed by the exported metrics graph (``compute``), never by a
formula written here.

Per source tag, two kinds of state:

- counters (:class:`_Counters`), which only grow: ``/reset`` never touches them, Prometheus'
  ``rate()`` relies on that. Per class they are arrays of at most ``max_classes`` values.
- the window and lifetime summary (:class:`_Summary`), pinned to the class count of the
  source's first batch and released by ``/reset``.

A batch is monitored only if its class count is at most ``max_classes`` and equals its
source's pinned count. Any other batch is scored but not fed: it is counted in
``focal_eval_unmonitored_batches_total{source, reason}`` (``too_many_classes`` /
``class_count``), logged (at most once a minute per source and reason), and its response
says ``"monitored": false`` with the reason. Memory is therefore bounded by the settings,
never by the traffic (:meth:`Monitor.max_bytes`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from focal_eval.service.monitoring import PREFIX
from focal_eval.service.monitoring.window import Statistics, Window, max_buckets

logger = logging.getLogger(__name__)

LOSS_BUCKETS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
WINDOW_GAUGES = (
    "balanced_accuracy",
    "macro_f1",
    "mean_focal_loss",
    "class_balanced_focal_loss",
    "expected_calibration_error",
)
TOTALS = {
    "samples": "valid samples monitored",
    "correct": "monitored samples predicted correctly",
    "focal_loss": "sum of per-sample focal loss",
    "cross_entropy": "sum of per-sample cross entropy",
}
PER_CLASS = {
    "samples": "monitored samples by true class",
    "correct": "correct predictions by true class",
    "predicted": "predictions by predicted class",
    "focal_loss": "sum of focal loss by true class",
    "cross_entropy": "sum of cross entropy by true class",
}
TOO_MANY_CLASSES = "too_many_classes"
CLASS_COUNT = "class_count"
LOG_EVERY_S = 60.0

Compute = Callable[[Mapping[str, npt.NDArray[Any]]], dict[str, npt.NDArray[Any]]]
StatisticsBytes = Callable[[int], int]


@dataclass
class _Counters:
    """What one source has fed since start; never reset."""

    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TOTALS, 0.0))
    per_class: dict[str, npt.NDArray[np.float64]] = field(
        default_factory=lambda: {name: np.zeros(0) for name in PER_CLASS}
    )
    # cumulative: samples with focal loss <= each of LOSS_BUCKETS, then all of them (+Inf)
    loss_buckets: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(len(LOSS_BUCKETS) + 1, dtype=np.int64)
    )

    def add(self, totals: Mapping[str, float], per_class: Mapping[str, npt.NDArray[Any]]) -> None:
        for name, value in totals.items():
            self.totals[name] += value
        for name, values in per_class.items():
            held = self.per_class[name]
            if len(held) < len(values):
                held = self.per_class[name] = np.concatenate(
                    [held, np.zeros(len(values) - len(held))]
                )
            held[: len(values)] += values


@dataclass
class _Summary:
    """One source's window and lifetime statistics, for its pinned class count."""

    num_classes: int
    window: Window
    lifetime: Statistics
    lifetime_samples: int = 0


@dataclass(frozen=True)
class Refusal:
    """Why a batch is not monitored: a reason label and a sentence for people."""

    reason: str
    message: str


@dataclass
class _Skipped:
    """Unmonitored batches of one (source, reason): counted, and logged now and then."""

    count: int = 0
    logged_count: int = 0
    logged_at: float = -LOG_EVERY_S


class Monitor(Collector):
    """Feeds on scored batches; a Prometheus collector of its counters and window gauges."""

    def __init__(
        self,
        compute: Compute,
        statistics_names: list[str],
        max_classes: int,
        window_samples: int,
        window_seconds: float,
        window_buckets: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._compute = compute
        self._statistics_names = statistics_names
        self._max_classes = max_classes
        self._window = (window_samples, window_seconds, window_buckets)
        self._counters: dict[str, _Counters] = {}
        self._summaries: dict[str, _Summary] = {}
        self._skipped: dict[tuple[str, str], _Skipped] = {}
        self._clock = clock
        self._lock = threading.Lock()

    @staticmethod
    def max_bytes(
        sources: int, max_classes: int, window_buckets: int, statistics_bytes: StatisticsBytes
    ) -> int:
        """The most the monitor holds: per source, its buckets, lifetime, a sum being made.

        ``statistics_bytes(C)`` is the size of one batch's statistics at C classes; the
        per-class counters add 5 float64 per class per source.
        """
        per_source = (max_buckets(window_buckets) + 2) * statistics_bytes(max_classes)
        return sources * (per_source + len(PER_CLASS) * 8 * max_classes)

    def refusal(self, source: str, num_classes: int) -> Refusal | None:
        """Why a batch of ``num_classes`` for ``source`` would not be monitored, or None."""
        if num_classes > self._max_classes:
            return Refusal(
                TOO_MANY_CLASSES,
                f"the batch has {num_classes} classes, more than the monitor keeps"
                f" (FOCAL_MONITOR_MAX_CLASSES={self._max_classes})",
            )
        summary = self._summaries.get(source)
        if summary is not None and summary.num_classes != num_classes:
            return Refusal(
                CLASS_COUNT,
                f"source {source!r} monitors {summary.num_classes} classes and the batch has"
                f" {num_classes} (POST /reset?source={source} to monitor another count)",
            )
        return None

    def observe(self, source: str, outputs: Mapping[str, npt.NDArray[Any]]) -> str | None:
        """Feed a scored batch to ``source``; None if fed, else why not (counted, logged)."""
        statistics = {name: outputs[name] for name in self._statistics_names}
        confusion = statistics["confusion_matrix"]
        num_classes = len(confusion)
        samples = int(confusion.sum())
        loss = outputs["focal_loss"]
        ignored = len(loss) - samples  # their loss is exactly 0: below every bound
        buckets = [np.count_nonzero(loss <= bound) - ignored for bound in LOSS_BUCKETS]
        per_class = {
            "samples": confusion.sum(1),
            "correct": np.diagonal(confusion),
            "predicted": confusion.sum(0),
            "focal_loss": statistics["focal_loss_sum"],
            "cross_entropy": statistics["cross_entropy_sum"],
        }
        totals = {name: float(values.sum()) for name, values in per_class.items()}
        del totals["predicted"]
        with self._lock:
            refusal = self.refusal(source, num_classes)
            if refusal is not None:
                self._skip(source, refusal)
                return refusal.reason
            summary = self._summaries.get(source)
            if summary is None:
                window = Window(*self._window, clock=self._clock)
                summary = self._summaries[source] = _Summary(num_classes, window, {})
            summary.window.push(statistics, samples)
            if summary.lifetime:
                for name, values in summary.lifetime.items():
                    np.add(values, statistics[name], out=values)
            else:
                summary.lifetime = {name: values.copy() for name, values in statistics.items()}
            summary.lifetime_samples += samples
            counters = self._counters.setdefault(source, _Counters())
            counters.add(totals, per_class)
            counters.loss_buckets += np.array([*buckets, samples])
        return None

    def summary(self) -> dict[str, Any]:
        """Per source: the window's and the lifetime's samples, metrics and statistics.

        Runs the metrics graph: call it from a worker thread.
        """
        with self._lock:
            snapshot = {
                name: (
                    s.num_classes,
                    (*s.window.total(), s.window.buckets),
                    {key: values.copy() for key, values in s.lifetime.items()},
                    s.lifetime_samples,
                )
                for name, s in self._summaries.items()
            }
        return {
            name: {
                "num_classes": num_classes,
                "window": {
                    **self._described(window, samples, batches),
                    "buckets": buckets,
                },
                "lifetime": self._described(lifetime, lifetime_samples, None),
            }
            for name, (
                num_classes,
                (window, samples, batches, buckets),
                lifetime,
                lifetime_samples,
            ) in snapshot.items()
        }

    def reset(self, source: str | None = None) -> None:
        """Release the windows and lifetime summaries (of one source, or all); counters stay.

        The released sources take the class count of their next batch.
        """
        with self._lock:
            if source is None:
                self._summaries.clear()
            else:
                self._summaries.pop(source, None)

    def collect(self) -> Iterator[Any]:
        """Prometheus metric families: quality counters, loss histogram, window gauges."""
        with self._lock:
            counters = {
                name: (
                    dict(c.totals),
                    {key: values.copy() for key, values in c.per_class.items()},
                    c.loss_buckets.copy(),
                )
                for name, c in self._counters.items()
            }
            windows = {name: s.window.total()[:2] for name, s in self._summaries.items()}
            skipped = {key: s.count for key, s in self._skipped.items()}
        yield from _counter_families(counters)
        yield _skipped_family(skipped)
        yield from self._window_families(windows)

    def _skip(self, source: str, refusal: Refusal) -> None:
        """Count an unmonitored batch; log the first, then at most once a minute."""
        skipped = self._skipped.setdefault((source, refusal.reason), _Skipped())
        skipped.count += 1
        now = self._clock()
        if now - skipped.logged_at < LOG_EVERY_S:
            return
        logger.warning(
            "not monitoring a batch for source %r: %s (%d such batches since the last report,"
            " %d in all)",
            source,
            refusal.message,
            skipped.count - skipped.logged_count,
            skipped.count,
        )
        skipped.logged_at, skipped.logged_count = now, skipped.count

    def _described(
        self, statistics: Statistics | None, samples: int, batches: int | None
    ) -> dict[str, Any]:
        described: dict[str, Any] = {"samples": samples}
        if batches is not None:
            described["batches"] = batches
        if statistics:
            described["metrics"] = self._compute(statistics)
            described["statistics"] = statistics
        return described

    def _window_families(
        self, windows: Mapping[str, tuple[Statistics | None, int]]
    ) -> Iterator[Any]:
        gauges = {
            name: GaugeMetricFamily(
                f"{PREFIX}_window_{name}", f"{name} over the monitoring window", labels=["source"]
            )
            for name in WINDOW_GAUGES
        }
        samples = GaugeMetricFamily(
            f"{PREFIX}_window_samples", "valid samples in the monitoring window", labels=["source"]
        )
        for source, (window, count) in windows.items():
            samples.add_metric([source], count)
            if window is not None:
                metrics = self._compute(window)
                for name in WINDOW_GAUGES:
                    gauges[name].add_metric([source], float(metrics[name]))
        yield samples
        yield from gauges.values()


CounterSnapshot = tuple[dict[str, float], dict[str, npt.NDArray[Any]], npt.NDArray[np.int64]]


def _counter_families(sources: Mapping[str, CounterSnapshot]) -> Iterator[Any]:
    totals = {
        name: CounterMetricFamily(f"{PREFIX}_{name}", text, labels=["source"])
        for name, text in TOTALS.items()
    }
    per_class = {
        name: CounterMetricFamily(f"{PREFIX}_class_{name}", text, labels=["source", "class"])
        for name, text in PER_CLASS.items()
    }
    histogram = HistogramMetricFamily(
        f"{PREFIX}_sample_focal_loss",
        "per-sample focal loss of monitored samples",
        labels=["source"],
    )
    bounds = [*(f"{b:g}" for b in LOSS_BUCKETS), "+Inf"]
    for source, (summed, by_class, buckets) in sources.items():
        for name, family in totals.items():
            family.add_metric([source], summed[name])
        for name, family in per_class.items():
            for index, value in enumerate(by_class[name]):
                family.add_metric([source, str(index)], float(value))
        histogram.add_metric(
            [source],
            list(zip(bounds, buckets.astype(float).tolist(), strict=True)),
            summed["focal_loss"],
        )
    yield from totals.values()
    yield from per_class.values()
    yield histogram


def _skipped_family(skipped: Mapping[tuple[str, str], int]) -> CounterMetricFamily:
    family = CounterMetricFamily(
        f"{PREFIX}_unmonitored_batches",
        "batches that asked to be monitored but were not (reason: too_many_classes, class_count)",
        labels=["source", "reason"],
    )
    for (source, reason), count in skipped.items():
        family.add_metric([source, reason], count)
    return family
