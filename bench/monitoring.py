"""Monitoring: scoring time with the monitor fed against not fed, on one server.

The same ``.npz`` body is posted with ``?monitor=true`` and ``?monitor=false`` alternately
(one ``focal serve``, one keep-alive connection), so the ratio isolates what feeding the
monitor costs: counters, the loss histogram, the window and the lifetime statistics.
"""

from __future__ import annotations

import io

import httpx
import numpy as np

from bench.data import case_name, make_batch
from bench.report import Section, Target
from bench.timing import interleave
from focal_eval.service.testing import focal_server

CASES = ((64, 10), (10_000, 100), (100_000, 10))
HEADERS = {"content-type": "application/x-npz"}


def npz_body(n: int, c: int) -> bytes:
    """An uncompressed npz of a benchmark batch."""
    batch = make_batch(n, c)
    archive = io.BytesIO()
    np.savez(archive, logits=batch.logits, labels=batch.labels)
    return archive.getvalue()


def run(quick: bool) -> Section:
    """Per-request time, monitor on / off (target: within 1.1x)."""
    section = Section("monitoring", "scoring with the monitor fed vs not (same server)")
    cases = CASES[:2] if quick else CASES
    rounds = 5 if quick else 15
    with focal_server() as server, httpx.Client(timeout=60) as client:
        for n, c in cases:
            body = npz_body(n, c)
            # a source monitors one class count: release it for this case's
            client.post(f"{server.url}/reset").raise_for_status()

            def post(monitor: str, body: bytes = body) -> None:
                response = client.post(
                    f"{server.url}/score",
                    params={"monitor": monitor, "per_sample": "false"},
                    content=body,
                    headers=HEADERS,
                )
                response.raise_for_status()

            timed = interleave(
                {"on": lambda: post("true"), "off": lambda: post("false")},
                rounds,
                budget_s=20 if quick else 60,
            )
            case = case_name(n, c)
            section.add(case, "monitor on", timed.median("on"), "s")
            section.add(case, "monitor off", timed.median("off"), "s")
            section.compare(case, "monitor on / off", timed.ratio("on", "off"), Target("<=", 1.1))
    section.notes.append(
        "npz bodies, per_sample=false; the monitor's work: per-class counters from the"
        " confusion matrix, a per-sample loss histogram, the window and lifetime sums"
    )
    return section
