"""Hostile and careless clients of a focal-eval server, for the container's load test.

``python -m tests.container.hostile_clients PORT SECONDS CLIENTS`` runs CLIENTS threads for
SECONDS, each repeating one behaviour (assigned round robin), and prints the outcomes as JSON:
``[[behaviour, outcome, count], ...]``, an outcome being an HTTP status, ``closed`` (no
response on the socket) or ``transport error: <type>``. The test runs it as a separate,
niced process: on this 2-core machine the load generator shares the CPUs with the server,
which in a pod it would not.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import numpy as np
import orjson

TIMEOUT_S = 5.0  # the server's body, header and write timeouts in the test
PAUSE_S = 0.02  # between one client's requests
MIB = 2**20


@dataclass
class Outcomes:
    """What each behaviour's requests ended with: an HTTP status, or ``cut`` / ``closed``."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, behaviour: str, outcome: object) -> None:
        with self.lock:
            self.counts[(behaviour, str(outcome))] += 1


def _npz(logits: np.ndarray, labels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, logits=logits, labels=labels)
    return buffer.getvalue()


def _status_of(sock: socket.socket) -> str:
    """The status code of the response on ``sock``, or ``closed`` if none comes."""
    try:
        head = sock.recv(64)
    except OSError:
        return "closed"
    return head.split(b" ")[1].decode() if head.startswith(b"HTTP/1.1 ") else "closed"


def _raw(port: int, head: bytes, body: bytes = b"", rcvbuf: int | None = None) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=3 * TIMEOUT_S)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    # answered before the body ended (503, 413), and closed: read what was said
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        sock.sendall(head + body)
    return sock


def _post_head(path: str, content_type: str, length: int, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: focal\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


Behaviour = Callable[[int, httpx.Client], str]


def behaviours() -> dict[str, Behaviour]:
    """Each behaviour sends one request (or one burst) and returns how it ended."""
    rng = np.random.default_rng(0)
    many_classes = orjson.dumps({"logits": [[0.0] * 100_000], "labels": [0]})
    big = _npz(rng.standard_normal((100_000, 100), dtype=np.float32), rng.integers(0, 100, 100_000))
    wide = _npz(rng.standard_normal((1, 2048), dtype=np.float32), np.array([3]))
    long_response = _npz(
        rng.standard_normal((200_000, 2), dtype=np.float32), rng.integers(0, 2, 200_000)
    )
    bomb = gzip.compress(b"PK\x03\x04" + bytes(200 * MIB), 9)  # begins as an archive: inflated
    one_rows = [
        orjson.dumps(
            {"logits": rng.standard_normal((1, 100)).tolist(), "labels": [k], "per_sample": False}
        )
        for k in range(20)
    ]
    json_type, npz_type = "application/json", "application/x-npz"

    def classes_past_the_cap(port: int, client: httpx.Client) -> str:
        response = client.post("/score", content=many_classes, headers={"content-type": json_type})
        return str(response.status_code)

    def huge_declared_length(port: int, client: httpx.Client) -> str:
        with _raw(port, _post_head("/score", npz_type, 256 * MIB), b"PK" * 512) as sock:
            return _status_of(sock)

    def slow_reader(port: int, client: httpx.Client) -> str:
        head = _post_head("/score?per_sample=true", npz_type, len(long_response))
        with _raw(port, head, long_response, rcvbuf=4096) as sock:
            status = _status_of(sock)
            time.sleep(TIMEOUT_S + 3)  # read nothing more: the server cuts it off
            return status

    def stalled_upload(port: int, client: httpx.Client) -> str:
        with _raw(port, _post_head("/score", npz_type, MIB), b"PK\x03\x04") as sock:
            return _status_of(sock)

    def one_row_flood(port: int, client: httpx.Client) -> str:
        statuses = {
            client.post("/score", content=body, headers={"content-type": json_type}).status_code
            for body in one_rows
        }
        return ",".join(map(str, sorted(statuses)))

    def big_npz(port: int, client: httpx.Client) -> str:
        response = client.post(
            "/score",
            content=big,
            params={"per_sample": "false"},
            headers={"content-type": npz_type},
        )
        return str(response.status_code)

    def classes_at_the_cap(port: int, client: httpx.Client) -> str:
        response = client.post(
            "/score", content=wide, params={"monitor": "false"}, headers={"content-type": npz_type}
        )
        return str(response.status_code)

    def gzip_bomb(port: int, client: httpx.Client) -> str:
        response = client.post(
            "/score", content=bomb, headers={"content-type": npz_type, "content-encoding": "gzip"}
        )
        return str(response.status_code)

    def oversized_headers(port: int, client: httpx.Client) -> str:
        head = f"GET /healthz HTTP/1.1\r\nHost: focal\r\nX-Pad: {'a' * 40_000}\r\n\r\n"
        with _raw(port, head.encode()) as sock:
            return _status_of(sock)

    def hang_up_mid_body(port: int, client: httpx.Client) -> str:
        head = _post_head("/score", npz_type, len(big))
        with _raw(port, head, big[: len(big) // 3]):
            pass
        return "closed"

    return {
        function.__name__: function
        for function in (
            classes_past_the_cap,
            huge_declared_length,
            slow_reader,
            stalled_upload,
            one_row_flood,
            big_npz,
            classes_at_the_cap,
            gzip_bomb,
            oversized_headers,
            hang_up_mid_body,
        )
    }


def _client_loop(
    name: str, behaviour: Behaviour, port: int, stop: threading.Event, outcomes: Outcomes
) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        while not stop.wait(PAUSE_S):
            try:
                outcomes.add(name, behaviour(port, client))
            except (httpx.TransportError, OSError) as error:
                outcomes.add(name, f"transport error: {type(error).__name__}")


def run(port: int, seconds: float, clients: int) -> Counter[tuple[str, str]]:
    """Run ``clients`` threads of the behaviours for ``seconds``; their outcomes."""
    stop, outcomes = threading.Event(), Outcomes()
    kinds = list(behaviours().items())
    threads = [
        threading.Thread(
            target=_client_loop, args=(*kinds[index % len(kinds)], port, stop, outcomes)
        )
        for index in range(clients)
    ]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError("a client did not stop within 60 s")
    return outcomes.counts


if __name__ == "__main__":
    port, seconds, clients = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    counts = run(port, seconds, clients)
    print(json.dumps([[name, outcome, count] for (name, outcome), count in counts.items()]))
