"""Model-quality monitoring: counters Prometheus can sum, windows, and a lifetime summary.

Everything here is built from the evaluation graphs' additive statistics and per-sample
focal loss; every metric is computed by the exported metrics graphs (``compute``), never by a
formula written here.

Per source tag, two kinds of state:

- counters (:class:`_Counters`), which only grow: ``/reset`` never touches them, Prometheus'
  ``rate()`` relies on that. Per class (or label) they are arrays of at most ``max_classes``
  values; per calibration bin, of the graph's bin count. What a task counts is its
  :class:`Counting`.
- the window and lifetime summary (:class:`_Summary`), pinned to the task and the class (or
  label) count of the source's first batch and released by ``/reset``.

A batch is monitored only if its class or label count is at most ``max_classes`` and its task
and count are its source's pinned ones. Any other batch is scored but not fed: it is counted
in ``focal_eval_unmonitored_batches_total{source, reason}`` (``too_many_classes``,
``class_count``, ``task``), logged (at most once a minute per source and reason), and its
response says ``"monitored": false`` with the reason. Memory is therefore bounded by the
settings, never by the traffic (:meth:`Monitor.max_bytes`).
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

from focal_eval.service.core.scoring import Scorers
from focal_eval.service.core.tasks import MULTICLASS, MULTILABEL
from focal_eval.service.monitoring import PREFIX
from focal_eval.service.monitoring.window import Statistics, Window, max_buckets

logger = logging.getLogger(__name__)

LOSS_BUCKETS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
TOTALS = {
    "samples": "valid samples monitored",
    "correct": "monitored samples predicted correctly (multiclass)",
    "focal_loss": "sum of per-sample focal loss",
    "cross_entropy": "sum of per-sample cross entropy (multiclass)",
}
PER_CLASS = {
    "class_samples": "monitored samples by true class",
    "class_correct": "correct predictions by true class",
    "class_predicted": "predictions by predicted class",
    "class_focal_loss": "sum of focal loss by true class",
    "class_cross_entropy": "sum of cross entropy by true class",
    "label_true_positives": "monitored decisions by label: positives predicted positive",
    "label_false_positives": "monitored decisions by label: negatives predicted positive",
    "label_false_negatives": "monitored decisions by label: positives predicted negative",
    "label_true_negatives": "monitored decisions by label: negatives predicted negative",
}
# per equal-width confidence bin: ECE = sum_b |observed_b - predicted_b| / sum_b samples_b
PER_BIN = {
    "calibration_samples": "monitored samples (multilabel: decisions) by confidence bin",
    "calibration_predicted": "sum of confidence (multilabel: of probability) by confidence bin",
    "calibration_observed": "correct predictions (multilabel: positives) by confidence bin",
}
COUNTED_BY = {"class": "class", "label": "label", "calibration": "bin"}  # name prefix: label
TOO_MANY_CLASSES = "too_many_classes"
CLASS_COUNT = "class_count"
TASK = "task"
LOG_EVERY_S = 60.0

Compute = Callable[[Mapping[str, npt.NDArray[Any]]], dict[str, npt.NDArray[Any]]]
StatisticsBytes = Callable[[int], int]
Counted = tuple[dict[str, float], dict[str, npt.NDArray[Any]]]


@dataclass(frozen=True)
class Counting:
    """What one task's monitored batches count: Prometheus' view of its statistics.

    ``count(statistics)`` gives the batch's totals (names of ``TOTALS``) and its per-class or
    per-label counts (names of ``PER_CLASS``, the class or label count first) and per-bin
    calibration counts (``PER_BIN``); ``window_gauges`` are the metrics shown as
    ``focal_eval_window_<name>`` per source.
    """

    statistics: list[str]
    compute: Compute
    count: Callable[[Statistics], Counted]
    window_gauges: tuple[str, ...]


def multiclass_counts(statistics: Statistics) -> Counted:
    """Totals and per-class counts of a multi-class batch, from its confusion matrix."""
    confusion = statistics["confusion_matrix"]
    per_class = {
        "class_samples": confusion.sum(1),
        "class_correct": np.diagonal(confusion),
        "class_predicted": confusion.sum(0),
        "class_focal_loss": statistics["focal_loss_sum"],
        "class_cross_entropy": statistics["cross_entropy_sum"],
        "calibration_samples": statistics["bin_count"],
        "calibration_predicted": statistics["bin_confidence_sum"],
        "calibration_observed": statistics["bin_correct"],
    }
    totals = {
        "samples": float(confusion.sum()),
        "correct": float(np.trace(confusion)),
        "focal_loss": float(statistics["focal_loss_sum"].sum()),
        "cross_entropy": float(statistics["cross_entropy_sum"].sum()),
    }
    return totals, per_class


def multilabel_counts(statistics: Statistics) -> Counted:
    """Totals and per-label decisions of a multi-label (or binary) batch."""
    per_label = {
        "label_true_positives": statistics["true_positive"],
        "label_false_positives": statistics["false_positive"],
        "label_false_negatives": statistics["false_negative"],
        "label_true_negatives": statistics["true_negative"],
        "calibration_samples": statistics["bin_count"],
        "calibration_predicted": statistics["bin_probability_sum"],
        "calibration_observed": statistics["bin_positive"],
    }
    totals = {
        "samples": float(statistics["samples"]),
        "focal_loss": float(statistics["focal_loss_sum"].sum()),
    }
    return totals, per_label


def countings(scorers: Scorers) -> dict[str, Counting]:
    """Each loaded task's :class:`Counting`, from its scorer's statistics and metrics graph."""
    found = {
        MULTICLASS: Counting(
            scorers.multiclass.statistics_names,
            scorers.multiclass.compute_metrics,
            multiclass_counts,
            MULTICLASS_GAUGES,
        )
    }
    if scorers.multilabel is not None:
        found[MULTILABEL] = Counting(
            scorers.multilabel.statistics_names,
            scorers.multilabel.compute_metrics,
            multilabel_counts,
            MULTILABEL_GAUGES,
        )
    return found


MULTICLASS_GAUGES = (
    "balanced_accuracy",
    "macro_f1",
    "mean_focal_loss",
    "class_balanced_focal_loss",
    "expected_calibration_error",
)
MULTILABEL_GAUGES = (
    "macro_f1",
    "micro_f1",
    "macro_average_precision",
    "mean_focal_loss",
    "expected_calibration_error",
)


@dataclass
class _Counters:
    """What one source has fed since start; never reset.

    Per-class and per-label counts are kept apart, should the source change task after a reset;
    the calibration counts are not (both tasks count confidence bins, and Prometheus sees one
    series per bin).
    """

    totals: dict[str, float] = field(default_factory=dict)
    per_class: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    # cumulative: samples with focal loss <= each of LOSS_BUCKETS, then all of them (+Inf)
    loss_buckets: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(len(LOSS_BUCKETS) + 1, dtype=np.int64)
    )

    def add(self, totals: Mapping[str, float], per_class: Mapping[str, npt.NDArray[Any]]) -> None:
        for name, value in totals.items():
            self.totals[name] = self.totals.get(name, 0.0) + value
        for name, values in per_class.items():
            held = self.per_class.get(name, np.zeros(0))
            if len(held) < len(values):
                held = np.concatenate([held, np.zeros(len(values) - len(held))])
            held[: len(values)] += values
            self.per_class[name] = held


@dataclass
class _Summary:
    """One source's window and lifetime statistics, for its pinned task and width."""

    task: str
    width: int  # classes or labels
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
    """Feeds on scored batches; a Prometheus collector of its counters and window gauges.

    ``tasks`` maps each task the server scores (``multiclass``, ``multilabel``) to its
    :class:`Counting`.
    """

    def __init__(
        self,
        tasks: Mapping[str, Counting],
        max_classes: int,
        window_samples: int,
        window_seconds: float,
        window_buckets: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tasks = dict(tasks)
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

        ``statistics_bytes(C)`` is the size of the largest statistics one batch of C classes
        or labels gives; the counters add, per source, a float64 per class (or label) per
        count, and a float64 per calibration bin per count: no more than the statistics of
        no class hold (``statistics_bytes(0)``, the bins' three arrays among them).
        """
        per_source = (max_buckets(window_buckets) + 2) * statistics_bytes(max_classes)
        counters = len(PER_CLASS) * 8 * max_classes + statistics_bytes(0)
        return sources * (per_source + counters)

    def refusal(self, source: str, task: str, width: int) -> Refusal | None:
        """Why a ``task`` batch of ``width`` classes or labels would not be monitored, or None."""
        noun = "labels" if task == MULTILABEL else "classes"
        if width > self._max_classes:
            return Refusal(
                TOO_MANY_CLASSES,
                f"the batch has {width} {noun}, more than the monitor keeps"
                f" (FOCAL_MONITOR_MAX_CLASSES={self._max_classes})",
            )
        summary = self._summaries.get(source)
        if summary is not None and summary.task != task:
            return Refusal(
                TASK,
                f"source {source!r} monitors {summary.task} batches and the batch is {task}"
                f" (POST /reset?source={source} to monitor another task)",
            )
        if summary is not None and summary.width != width:
            return Refusal(
                CLASS_COUNT,
                f"source {source!r} monitors {summary.width} {noun} and the batch has"
                f" {width} (POST /reset?source={source} to monitor another count)",
            )
        return None

    def observe(
        self, source: str, task: str, outputs: Mapping[str, npt.NDArray[Any]]
    ) -> str | None:
        """Feed a scored ``task`` batch to ``source``; None if fed, else why not (counted)."""
        counting = self._tasks[task]
        statistics = {name: outputs[name] for name in counting.statistics}
        totals, per_class = counting.count(statistics)
        width = len(next(iter(per_class.values())))
        samples = int(totals["samples"])
        loss = outputs["focal_loss"]
        ignored = len(loss) - samples  # their loss is exactly 0: below every bound
        buckets = [np.count_nonzero(loss <= bound) - ignored for bound in LOSS_BUCKETS]
        with self._lock:
            refusal = self.refusal(source, task, width)
            if refusal is not None:
                self._skip(source, refusal)
                return refusal.reason
            summary = self._summaries.get(source)
            if summary is None:
                window = Window(*self._window, clock=self._clock)
                summary = self._summaries[source] = _Summary(task, width, window, {})
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
        """Per source: its task, the window's and the lifetime's samples, metrics, statistics.

        Runs the metrics graphs: call it from a worker thread.
        """
        with self._lock:
            snapshot = {
                name: (
                    s.task,
                    s.width,
                    (*s.window.total(), s.window.buckets),
                    {key: values.copy() for key, values in s.lifetime.items()},
                    s.lifetime_samples,
                )
                for name, s in self._summaries.items()
            }
        return {
            name: {
                "task": task,
                "num_labels" if task == MULTILABEL else "num_classes": width,
                "window": {
                    **self._described(task, window, samples, batches),
                    "buckets": buckets,
                },
                "lifetime": self._described(task, lifetime, lifetime_samples, None),
            }
            for name, (
                task,
                width,
                (window, samples, batches, buckets),
                lifetime,
                lifetime_samples,
            ) in snapshot.items()
        }

    def reset(self, source: str | None = None) -> None:
        """Release the windows and lifetime summaries (of one source, or all); counters stay.

        The released sources take the task and count of their next batch.
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
                source: (
                    dict(c.totals),
                    {name: values.copy() for name, values in c.per_class.items()},
                    c.loss_buckets.copy(),
                )
                for source, c in self._counters.items()
            }
            windows = {name: (s.task, *s.window.total()[:2]) for name, s in self._summaries.items()}
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
        self, task: str, statistics: Statistics | None, samples: int, batches: int | None
    ) -> dict[str, Any]:
        described: dict[str, Any] = {"samples": samples}
        if batches is not None:
            described["batches"] = batches
        if statistics:
            described["metrics"] = self._tasks[task].compute(statistics)
            described["statistics"] = statistics
        return described

    def _window_families(
        self, windows: Mapping[str, tuple[str, Statistics | None, int]]
    ) -> Iterator[Any]:
        names = dict.fromkeys(name for c in self._tasks.values() for name in c.window_gauges)
        gauges = {
            name: GaugeMetricFamily(
                f"{PREFIX}_window_{name}", f"{name} over the monitoring window", labels=["source"]
            )
            for name in names
        }
        samples = GaugeMetricFamily(
            f"{PREFIX}_window_samples", "valid samples in the monitoring window", labels=["source"]
        )
        for source, (task, window, count) in windows.items():
            samples.add_metric([source], count)
            if window is not None:
                counting = self._tasks[task]
                metrics = counting.compute(window)
                for name in counting.window_gauges:
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
        name: CounterMetricFamily(
            f"{PREFIX}_{name}", text, labels=["source", COUNTED_BY[name.split("_", 1)[0]]]
        )
        for name, text in (PER_CLASS | PER_BIN).items()
    }
    histogram = HistogramMetricFamily(
        f"{PREFIX}_sample_focal_loss",
        "per-sample focal loss of monitored samples",
        labels=["source"],
    )
    bounds = [*(f"{b:g}" for b in LOSS_BUCKETS), "+Inf"]
    for source, (summed, by_class, buckets) in sources.items():
        for name, value in summed.items():
            totals[name].add_metric([source], value)
        for name, values in by_class.items():
            for index, value in enumerate(values):
                per_class[name].add_metric([source, str(index)], float(value))
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
        "batches that asked to be monitored but were not (reason: too_many_classes,"
        " class_count, task)",
        labels=["source", "reason"],
    )
    for (source, reason), count in skipped.items():
        family.add_metric([source, reason], count)
    return family
