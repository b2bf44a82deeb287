"""Model-quality monitoring: counters Prometheus can sum, windows, and a lifetime summary.

Everything here is built from the evaluation graph's additive statistics and per-sample
focal loss; every metric is computed by the exported metrics graph (``compute``), never by a
formula written here. Counters only grow (``/reset`` clears windows and the summary, never a
counter: Prometheus' ``rate()`` relies on that).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from service.validation import Batch
from service.window import Statistics, Window, add

PREFIX = "focal_eval"
LOSS_BUCKETS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
WINDOW_GAUGES = (
    "balanced_accuracy",
    "macro_f1",
    "mean_focal_loss",
    "class_balanced_focal_loss",
    "expected_calibration_error",
)
Compute = Callable[[Mapping[str, npt.NDArray[Any]]], dict[str, npt.NDArray[Any]]]


@dataclass
class _Source:
    """Everything monitored for one source tag."""

    num_classes: int
    window: Window
    lifetime: Statistics | None = None
    lifetime_samples: int = 0
    # counters since start: [samples, correct, focal loss, cross entropy]
    totals: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros(4))
    class_totals: npt.NDArray[np.float64] | None = (
        None  # (5, C): samples, correct, predicted, fl, ce
    )
    # cumulative: samples with focal loss <= each of LOSS_BUCKETS, then all of them (+Inf)
    loss_buckets: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(len(LOSS_BUCKETS) + 1, dtype=np.int64)
    )


class Monitor(Collector):
    """Feeds on scored batches; a Prometheus collector of its counters and window gauges."""

    def __init__(
        self,
        compute: Compute,
        statistics_names: list[str],
        max_classes: int,
        window_samples: int,
        window_seconds: float,
    ) -> None:
        self._compute = compute
        self._statistics_names = statistics_names
        self._max_classes = max_classes
        self._window = (window_samples, window_seconds)
        self._sources: dict[str, _Source] = {}
        self._lock = threading.Lock()

    def observe(self, source: str, batch: Batch, outputs: Mapping[str, npt.NDArray[Any]]) -> bool:
        """Add a scored batch to ``source``'s counters, window and lifetime summary.

        Returns False (the batch is left out) when its class count differs from the one this
        source has been monitoring.
        """
        statistics = {name: outputs[name] for name in self._statistics_names}
        confusion = statistics["confusion_matrix"]
        samples = int(confusion.sum())
        loss = outputs["focal_loss"]
        ignored = len(loss) - samples  # their loss is exactly 0: below every bound
        buckets = np.array(
            [np.count_nonzero(loss <= bound) - ignored for bound in LOSS_BUCKETS] + [samples]
        )
        per_class = np.stack(
            [
                confusion.sum(1),
                np.diagonal(confusion),
                confusion.sum(0),
                statistics["focal_loss_sum"],
                statistics["cross_entropy_sum"],
            ]
        ).astype(np.float64)
        with self._lock:
            state = self._sources.get(source)
            if state is None:
                state = self._new_source(batch.num_classes)
                self._sources[source] = state
            if state.num_classes != batch.num_classes:
                return False
            state.window.push(statistics, samples)
            state.lifetime = (
                statistics if state.lifetime is None else add(state.lifetime, statistics)
            )
            state.lifetime_samples += samples
            state.totals += per_class.sum(axis=1)[[0, 1, 3, 4]]
            if state.class_totals is not None:
                state.class_totals += per_class
            state.loss_buckets += buckets
        return True

    def summary(self) -> dict[str, Any]:
        """Per source: the window's and the lifetime's samples, metrics and statistics."""
        with self._lock:
            snapshot = {
                name: (s.num_classes, s.window.total(), s.lifetime, s.lifetime_samples)
                for name, s in self._sources.items()
            }
        return {
            name: {
                "num_classes": num_classes,
                "window": self._described(window, samples, batches),
                "lifetime": self._described(lifetime, lifetime_samples, None),
            }
            for name, (num_classes, (window, samples, batches), lifetime, lifetime_samples) in (
                snapshot.items()
            )
        }

    def reset(self) -> None:
        """Clear the windows and the lifetime summary (counters keep counting)."""
        with self._lock:
            for state in self._sources.values():
                state.window.clear()
                state.lifetime = None
                state.lifetime_samples = 0

    def collect(self) -> Iterator[Any]:
        """Prometheus metric families: quality counters, loss histogram, window gauges."""
        with self._lock:
            sources = {
                name: (
                    s.totals.copy(),
                    None if s.class_totals is None else s.class_totals.copy(),
                    s.loss_buckets.copy(),
                    s.window.total(),
                )
                for name, s in self._sources.items()
            }
        yield from _counter_families(sources)
        yield from self._window_families(sources)

    def _new_source(self, num_classes: int) -> _Source:
        return _Source(
            num_classes=num_classes,
            window=Window(*self._window),
            class_totals=np.zeros((5, num_classes)) if num_classes <= self._max_classes else None,
        )

    def _described(
        self, statistics: Statistics | None, samples: int, batches: int | None
    ) -> dict[str, Any]:
        described: dict[str, Any] = {"samples": samples}
        if batches is not None:
            described["batches"] = batches
        if statistics is not None:
            described["metrics"] = self._compute(statistics)
            described["statistics"] = statistics
        return described

    def _window_families(self, sources: Mapping[str, Any]) -> Iterator[Any]:
        gauges = {
            name: GaugeMetricFamily(
                f"{PREFIX}_window_{name}", f"{name} over the monitoring window", labels=["source"]
            )
            for name in WINDOW_GAUGES
        }
        samples = GaugeMetricFamily(
            f"{PREFIX}_window_samples", "valid samples in the monitoring window", labels=["source"]
        )
        for source, (_, _, _, (window, count, _)) in sources.items():
            samples.add_metric([source], count)
            if window is not None:
                metrics = self._compute(window)
                for name in WINDOW_GAUGES:
                    gauges[name].add_metric([source], float(metrics[name]))
        yield samples
        yield from gauges.values()


def _counter_families(sources: Mapping[str, Any]) -> Iterator[Any]:
    totals = [
        CounterMetricFamily(f"{PREFIX}_{name}", text, labels=["source"])
        for name, text in [
            ("samples", "valid samples monitored"),
            ("correct", "monitored samples predicted correctly"),
            ("focal_loss", "sum of per-sample focal loss"),
            ("cross_entropy", "sum of per-sample cross entropy"),
        ]
    ]
    per_class = [
        CounterMetricFamily(f"{PREFIX}_class_{name}", text, labels=["source", "class"])
        for name, text in [
            ("samples", "monitored samples by true class"),
            ("correct", "correct predictions by true class"),
            ("predicted", "predictions by predicted class"),
            ("focal_loss", "sum of focal loss by true class"),
            ("cross_entropy", "sum of cross entropy by true class"),
        ]
    ]
    histogram = HistogramMetricFamily(
        f"{PREFIX}_sample_focal_loss",
        "per-sample focal loss of monitored samples",
        labels=["source"],
    )
    for source, (summed, by_class, buckets, _) in sources.items():
        for family, value in zip(totals, summed, strict=True):
            family.add_metric([source], float(value))
        if by_class is not None:
            for family, row in zip(per_class, by_class, strict=True):
                for index, value in enumerate(row):
                    family.add_metric([source, str(index)], float(value))
        bounds = [*(f"{b:g}" for b in LOSS_BUCKETS), "+Inf"]
        histogram.add_metric(
            [source],
            list(zip(bounds, buckets.astype(float).tolist(), strict=True)),
            float(summed[2]),
        )
    yield from totals
    yield from per_class
    yield histogram
