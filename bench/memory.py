"""Memory of the server process: peaks per body type, and RSS over many requests.

RSS is read from ``/proc/<pid>/status`` of the ``focal serve`` subprocess (Linux only). The
peak is ``VmHWM`` after resetting it through ``/proc/<pid>/clear_refs`` (``5``), cross-checked
by polling ``VmRSS`` every millisecond from a thread (where the reset is not allowed, the poll
alone is used). Bodies are sent raw with httpx, so that no client-side copies muddy the
server's numbers; every peak is taken on a fresh server.

- multipliers: peak over idle / body for JSON, npz (float32, float16), gzip-encoded npz (of its
  decoded size) and v2 binary, at small and large C;
- large payloads: a ~100 MB v2 binary and npz request;
- drift: RSS over many v2 requests of random N, and over many one-row monitored requests
  (the sidecar pattern), whose monitor state must not grow with the count.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from bench.data import Batch, case_name, make_batch
from bench.report import Section, Target, single
from bench.servers import LARGE_JSON
from focal_eval.service.testing import Server, focal_spec, serve

MIB = 2**20
TIMEOUT_S = 300.0
C = 10
HEADER = "Inference-Header-Content-Length"
NPZ = {"content-type": "application/x-npz"}
JSON = {"content-type": "application/json"}
MULTIPLIER_CASES = [(10_000, 100), (100_000, 10), (500_000, 2)]
ONE_ROW_C = 100


def status_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` field in KiB, e.g. ``VmRSS`` or ``VmHWM``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(f"{field} not in /proc/{pid}/status")


def rss_bytes(pid: int) -> int:
    """Resident set size now."""
    return status_kib(pid, "VmRSS") * 1024


def reset_peak(pid: int) -> bool:
    """Reset ``VmHWM`` to the current RSS; False where the kernel or permissions refuse."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@contextmanager
def peak_rss(pid: int, interval_s: float = 0.001) -> Iterator[list[int]]:
    """Poll RSS from a thread while the block runs; yields a list holding the peak after it."""
    result = [rss_bytes(pid)]
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            result[0] = max(result[0], rss_bytes(pid))
            time.sleep(interval_s)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join(timeout=5)


def v2_body(batch: Batch) -> tuple[bytes, dict[str, str]]:
    """A v2 inference request with binary inputs and binary outputs, and its headers."""
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "logits",
                    "datatype": "FP32",
                    "shape": list(batch.logits.shape),
                    "parameters": {"binary_data_size": batch.logits.nbytes},
                },
                {
                    "name": "labels",
                    "datatype": "INT64",
                    "shape": list(batch.labels.shape),
                    "parameters": {"binary_data_size": batch.labels.nbytes},
                },
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    body = b"".join([header, batch.logits.tobytes(), batch.labels.tobytes()])
    headers = {"content-type": "application/octet-stream", HEADER: str(len(header))}
    return body, headers


def npz_body(batch: Batch, dtype: type[np.floating[Any]] = np.float32) -> bytes:
    """An uncompressed ``.npz`` of the batch, its logits in ``dtype``."""
    buffer = io.BytesIO()
    np.savez(buffer, logits=batch.logits.astype(dtype), labels=batch.labels)
    return buffer.getvalue()


def json_body(batch: Batch) -> bytes:
    """The batch as a ``/score`` JSON document (floats as orjson writes float32)."""
    document = {"logits": batch.logits, "labels": batch.labels}
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


def bodies(batch: Batch) -> Iterator[tuple[str, str, bytes, dict[str, str], int]]:
    """``(label, path, body, headers, decoded size)`` of each body type for ``batch``."""
    json_text = json_body(batch)
    yield "JSON", "/score", json_text, {"content-type": "application/json"}, len(json_text)
    for label, dtype in (("npz float32", np.float32), ("npz float16", np.float16)):
        archive = npz_body(batch, dtype)
        yield label, "/score", archive, NPZ, len(archive)
    archive = npz_body(batch)
    headers = {**NPZ, "content-encoding": "gzip"}
    yield "gzip npz", "/score", gzip.compress(archive, 1), headers, len(archive)
    v2, v2_headers = v2_body(batch)
    yield "v2 binary", "/v2/models/focal-eval/infer", v2, v2_headers, len(v2)


def send(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> None:
    """POST and insist on 200."""
    response = client.post(url, content=body, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"{url}: HTTP {response.status_code}: {response.text[:300]}")


def peak_during(server: Server, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, int]:
    """Idle RSS before, and peak RSS during, one request (max of VmHWM and the poll)."""
    with httpx.Client(timeout=TIMEOUT_S) as client:
        idle = rss_bytes(server.pid)
        hwm_reset = reset_peak(server.pid)
        with peak_rss(server.pid) as polled:
            send(client, url, body, headers)
        peak = max(polled[0], status_kib(server.pid, "VmHWM") * 1024 if hwm_reset else 0)
    return idle, peak


def multipliers(section: Section, cases: list[tuple[int, int]]) -> None:
    """Peak over idle / decoded body size, per body type and case, each on a fresh server."""
    for n, c in cases:
        batch = make_batch(n, c)
        for label, path, body, headers, decoded in bodies(batch):
            with serve(focal_spec(LARGE_JSON)) as (server,):
                idle, peak = peak_during(server, server.url + path, body, headers)
            # the targets; float16 is reported beside them (against a body half as large,
            # the graph's fixed per-chunk work weighs twice as much)
            target = None if "float16" in label else Target("<=", 8 if label == "JSON" else 4)
            section.compare(
                case_name(n, c),
                f"{label}: peak over idle / body",
                single((peak - idle) / decoded),
                target,
            )


async def _one_row_flood(url: str, requests: int, concurrency: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    bodies = [
        orjson.dumps(
            {
                "logits": rng.standard_normal((1, ONE_ROW_C)).tolist(),
                "labels": [i % ONE_ROW_C],
                "per_sample": False,
            }
        )
        for i in range(64)
    ]
    remaining = requests

    async def worker(client: httpx.AsyncClient, index: int) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            response = await client.post(url, content=bodies[remaining % len(bodies)], headers=JSON)
            if response.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {response.status_code}: {response.text[:300]}")

    async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
        await asyncio.gather(*(worker(client, index) for index in range(concurrency)))


def one_row_growth(server: Server, requests: int, warmup: int) -> tuple[int, int]:
    """RSS after ``warmup`` one-row monitored requests (C=100), and after ``requests``."""
    url = f"{server.url}/score"
    asyncio.run(_one_row_flood(url, warmup, 4, seed=1))
    after_warmup = rss_bytes(server.pid)
    asyncio.run(_one_row_flood(url, requests - warmup, 4, seed=2))
    return after_warmup, rss_bytes(server.pid)


def drift(server: Server, requests: int, warmup: int, seed: int = 0) -> tuple[int, int, int]:
    """RSS after ``warmup`` requests, at the end, and the highest seen between (every 50)."""
    rng = np.random.default_rng(seed)
    url = f"{server.url}/v2/models/focal-eval/infer"
    after_warmup = highest = 0
    with httpx.Client(timeout=TIMEOUT_S) as client:
        for index in range(requests):
            n = int(rng.integers(1, 50_001))
            send(client, url, *v2_body(make_batch(n, C, seed=index)))
            if index + 1 == warmup:
                after_warmup = rss_bytes(server.pid)
            if index + 1 > warmup and (index + 1) % 50 == 0:
                highest = max(highest, rss_bytes(server.pid))
    return after_warmup, rss_bytes(server.pid), highest


def run(quick: bool) -> Section:
    """Peaks per body type; a ~100 MB request as a multiple of the payload; RSS drift."""
    section = Section("memory", "server RSS (/proc/<pid>/status of focal serve)")
    multipliers(section, MULTIPLIER_CASES[:1] if quick else MULTIPLIER_CASES)
    rows = 250_000 if quick else 2_500_000  # logits: 10 MB / 100 MB float32 at C=10
    batch = make_batch(rows, C)
    requests, warmup = (150, 50) if quick else (2000, 200)
    # a fresh process for each peak and for the drift; they boot together and wait idle
    with serve(focal_spec(), focal_spec(), focal_spec()) as (v2_server, npz_server, server):
        for label, target, path, (body, headers) in (
            ("v2 binary", v2_server, "/v2/models/focal-eval/infer", v2_body(batch)),
            ("npz", npz_server, "/score?per_sample=true", (npz_body(batch), NPZ)),
        ):
            idle, peak = peak_during(target, target.url + path, body, headers)
            case = f"{label}, N={rows} C={C}"
            section.add(case, "payload (request body)", len(body) / MIB, "MiB")
            section.add(case, "idle RSS before", idle / MIB, "MiB")
            section.add(case, "peak RSS during", peak / MIB, "MiB")
            section.compare(
                case, "(peak - idle) / payload", single((peak - idle) / len(body)), Target("<=", 3)
            )
            section.compare(case, "peak / payload", single(peak / len(body)))
        start, end, highest = drift(server, requests, warmup)
    one_row, one_row_warmup = (2_000, 200) if quick else (20_000, 1_000)
    with serve(focal_spec()) as (server,):
        start_one, end_one = one_row_growth(server, one_row, one_row_warmup)
    case = f"{one_row} one-row monitored JSON requests, C={ONE_ROW_C}, 4 in flight"
    section.add(case, f"RSS after {one_row_warmup}", start_one / MIB, "MiB")
    section.add(case, "RSS at the end", end_one / MIB, "MiB")
    section.compare(
        case,
        f"growth after the first {one_row_warmup} (%)",
        single(100 * (end_one - start_one) / start_one),
        Target("<", 10),
    )
    case = f"{requests} v2 binary requests, N in [1, 50000], C={C}"
    section.add(case, f"RSS after {warmup} warm-up requests", start / MIB, "MiB")
    section.add(case, "RSS at the end", end / MIB, "MiB")
    section.add(case, "highest RSS after warm-up", highest / MIB, "MiB")
    section.compare(
        case, "growth after warm-up (%)", single(100 * (end - start) / start), Target("<", 10)
    )
    section.notes.append(
        "peak: max of VmHWM (reset via /proc/<pid>/clear_refs) and a 1 ms VmRSS poll; each"
        " peak on a fresh server; responses carry every output (per-sample arrays included)"
    )
    return section
