"""Memory of the server process: the peak during one large binary request, and drift over many.

RSS is read from ``/proc/<pid>/status`` of the ``focal serve`` subprocess (Linux only). The
peak is ``VmHWM`` after resetting it through ``/proc/<pid>/clear_refs`` (``5``), cross-checked
by polling ``VmRSS`` every millisecond from a thread (where the reset is not allowed, the poll
alone is used). The payload is sent as a raw v2 binary body (and as an ``.npz`` body) with
httpx, so that no client-side copies muddy the server's numbers.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import orjson

from bench.data import Batch, make_batch
from bench.report import Section, Target, single
from bench.servers import Server, focal_spec, serve

MIB = 2**20
TIMEOUT_S = 300.0
C = 10
HEADER = "Inference-Header-Content-Length"
NPZ = {"content-type": "application/x-npz"}


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


def npz_body(batch: Batch) -> bytes:
    """An uncompressed ``.npz`` of the batch."""
    buffer = io.BytesIO()
    np.savez(buffer, logits=batch.logits, labels=batch.labels)
    return buffer.getvalue()


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
    """Peak RSS over idle for a ~100 MB request, as a multiple of the payload; RSS drift."""
    section = Section("memory", "server RSS (/proc/<pid>/status of focal serve)")
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
