"""Concurrency: many small requests from a bounded async load generator, ours against naive.

Each level (1, 8, 32 requests in flight) sends a fixed number of ``POST /score`` JSON requests
(N=64, C=10, the same body for both servers) from ``concurrency`` httpx workers sharing one
connection pool, each request bounded by a timeout and the whole level by a deadline. The
requests are split into chunks, sent to the two servers alternately (ours, naive, ours, ...),
and the throughput ratio is the median of the per-chunk-pair ratios; latency percentiles are
over every request of a server at that level.

Our server answers 503 beyond ``FOCAL_MAX_IN_FLIGHT`` (default 8); it runs here with
``FOCAL_MAX_IN_FLIGHT=32`` so that every level is served, and any non-200 answer is counted
separately (and left out of latency and throughput).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

import httpx
import orjson

from bench.data import case_name, make_batch
from bench.report import Section, Target
from bench.servers import naive_spec
from bench.timing import paired_ratio
from focal_eval.service.testing import Server, focal_spec, serve

LEVELS = (1, 8, 32)
N, C = 64, 10
TIMEOUT_S = 30.0
HEADERS = {"content-type": "application/json"}


@dataclass(frozen=True)
class Load:
    """One burst: latencies of successful requests, failures, and elapsed seconds."""

    latencies: list[float]
    failures: int
    elapsed: float

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return len(self.latencies) / self.elapsed


async def burst(url: str, body: bytes, concurrency: int, requests: int) -> Load:
    """Send ``requests`` POSTs of ``body`` with at most ``concurrency`` in flight."""
    latencies: list[float] = []
    failures = 0
    remaining = requests
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            try:
                response = await client.post(url, content=body, headers=HEADERS)
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                failures += 1

    async with httpx.AsyncClient(limits=limits, timeout=TIMEOUT_S) as client:
        start = time.perf_counter()
        deadline = TIMEOUT_S + requests * 1.0  # generous; a hung server cannot hang the bench
        await asyncio.wait_for(
            asyncio.gather(*(worker(client) for _ in range(concurrency))), deadline
        )
        elapsed = time.perf_counter() - start
    return Load(latencies, failures, elapsed)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, by the inclusive method."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def level(
    ours: Server, naive: Server, body: bytes, concurrency: int, requests: int, chunks: int
) -> dict[str, list[Load]]:
    """Alternate chunks of one level between the servers: ours, naive, ours, naive, ..."""
    loads: dict[str, list[Load]] = {"ours": [], "naive": []}
    per_chunk = max(concurrency, requests // chunks)
    for index in range(chunks):
        pair = (("ours", ours), ("naive", naive))
        for name, server in pair if index % 2 == 0 else pair[::-1]:
            loads[name].append(
                asyncio.run(burst(f"{server.url}/score", body, concurrency, per_chunk))
            )
    return loads


def run(quick: bool) -> Section:
    """Throughput and p50 / p99 latency at each level, ours against naive."""
    section = Section("concurrency", f"small requests ({case_name(N, C)}) under load")
    batch = make_batch(N, C)
    body = orjson.dumps(
        {"logits": batch.logits.tolist(), "labels": batch.labels.tolist(), "per_sample": True}
    )
    requests, chunks = (60, 2) if quick else (2000, 6)
    with serve(focal_spec({"FOCAL_MAX_IN_FLIGHT": "32"}), naive_spec()) as (ours, naive):
        for server in (ours, naive):  # warm up both
            asyncio.run(burst(f"{server.url}/score", body, 4, 20))
        for concurrency in LEVELS:
            case = f"concurrency {concurrency}"
            loads = level(ours, naive, body, concurrency, requests, chunks)
            for name in ("ours", "naive"):
                latencies = [t for load in loads[name] for t in load.latencies]
                elapsed = sum(load.elapsed for load in loads[name])
                section.add(case, f"{name} throughput", len(latencies) / elapsed, "req/s")
                section.add(case, f"{name} p50 latency", percentile(latencies, 0.5), "s")
                section.add(case, f"{name} p99 latency", percentile(latencies, 0.99), "s")
                section.add(
                    case, f"{name} failed requests", sum(load.failures for load in loads[name]), ""
                )
            section.compare(
                case,
                "ours / naive throughput",
                paired_ratio(
                    [load.throughput for load in loads["ours"]],
                    [load.throughput for load in loads["naive"]],
                ),
                Target(">=", 2) if concurrency == 8 else None,
            )
            section.compare(
                case,
                "ours / naive p99 latency",
                paired_ratio(
                    [percentile(load.latencies, 0.99) for load in loads["ours"]],
                    [percentile(load.latencies, 0.99) for load in loads["naive"]],
                ),
                Target("<", 1) if concurrency == 8 else None,
            )
    section.notes.append(
        f"{requests} requests per server per level in {chunks} alternating chunks; httpx"
        f" AsyncClient, one pool of `concurrency` connections, {TIMEOUT_S:g} s timeout each"
    )
    section.notes.append(
        "ours runs with FOCAL_MAX_IN_FLIGHT=32 (default 8 would answer 503 at level 32);"
        " failed requests (non-200 or transport errors) are counted, not timed"
    )
    section.notes.append(
        "the load generator shares the 2 CPUs with the server: throughput is a lower bound,"
        " compressed toward the client's own ceiling for the faster server"
    )
    return section
