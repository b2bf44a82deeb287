"""Bounded connections on a real ``focal serve``: header limits, timeouts, the cap, slow readers.

Every test talks to a server subprocess on 127.0.0.1 over raw sockets (byte-level control of
what arrives when) or httpx (ordinary requests), and reads the server's own account of what
happened from ``/metrics`` and its log. Timeouts are set to about a second through the
environment so that the file stays fast; assertions on time only bound it generously.
"""

from __future__ import annotations

import io
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager

import httpx
import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from focal_eval.service.testing import HOST, Server, focal_spec, serve
from tests.service._inputs import batch
from tests.service.http._raw import (
    SOCKET_TIMEOUT_S,
    V2_INFER,
    Reply,
    connect,
    focal_loss64,
    receive_reply,
    upload_head,
    v2_binary_body,
)

GAMMA = 2.0

MAX_HEADER_BYTES = 8192
MAX_HEADERS = 20
HEADER_TIMEOUT_S = 1.0
IDLE_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 4.0
MAX_IN_FLIGHT = 2
MAX_CONNECTIONS = 8

TOO_LARGE = f"headers: over {MAX_HEADER_BYTES} bytes (FOCAL_MAX_HEADER_BYTES)"
TOO_MANY = f"headers: more than {MAX_HEADERS} fields (FOCAL_MAX_HEADERS)"
HEADERS_LATE = "headers: not received within 1 s (FOCAL_HEADER_TIMEOUT_S)"
BODY_LATE = "body: not received within 4 s"
ALL_BUSY = f"server: {MAX_CONNECTIONS} connections are busy (FOCAL_MAX_CONNECTIONS); retry shortly"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# --- servers whose output (and open-files limit) the tests read and set -----------------------
@contextmanager
def running(env: Mapping[str, str], open_files: int | None = None) -> Iterator[Server]:
    """One ``focal serve`` with ``env``, on one onnxruntime thread; ``open_files``: its limit."""
    with serve(focal_spec({"FOCAL_THREADS": "1", **env}, open_files=open_files)) as (server,):
        yield server


BOUNDED_ENV = {
    "FOCAL_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
    "FOCAL_MAX_HEADERS": str(MAX_HEADERS),
    "FOCAL_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
    "FOCAL_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S),
    "FOCAL_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
    "FOCAL_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
    "FOCAL_LOG_LEVEL": "info",
}
CAPPED_ENV = {
    "FOCAL_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    "FOCAL_IDLE_TIMEOUT_S": "30",  # idle connections stay until evicted
    "FOCAL_HEADER_TIMEOUT_S": "30",
    "FOCAL_BODY_TIMEOUT_S": "30",  # busy uploads stay busy
}


@pytest.fixture(scope="module")
def bounded() -> Iterator[Server]:
    """Small header limits, 1 s header and idle timeouts, 4 s body timeout, 2 scoring slots."""
    with running(BOUNDED_ENV) as server:
        yield server


@pytest.fixture
def capped() -> Iterator[Server]:
    """A fresh server capped at 8 connections (fresh: the cap tests count every connection)."""
    with running(CAPPED_ENV) as server:
        yield server


# --- raw HTTP ----------------------------------------------------------------------------------
def seconds_until_closed(sock: socket.socket, within: float = SOCKET_TIMEOUT_S) -> float:
    """Read (and drop) until the server closes; the seconds that took. Fails after ``within``."""
    start = time.monotonic()
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open for {within:g} s") from None
    return time.monotonic() - start


def is_open(sock: socket.socket) -> bool:
    """Whether the server has neither closed nor written to ``sock`` (nothing readable)."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def readable_within(sock: socket.socket, seconds: float) -> bool:
    readable, _, _ = select.select([sock], [], [], seconds)
    return bool(readable)


def request_head(fields: list[tuple[str, str]], target: str = "/healthz") -> bytes:
    lines = [f"GET {target} HTTP/1.1", *(f"{name}: {value}" for name, value in fields)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def head_of(size: int, count: int) -> bytes:
    """A GET /healthz head of exactly ``size`` bytes (request line to the blank line) and
    ``count`` header fields: Host, fillers, and a padding field that makes up the size."""
    fields = [("Host", HOST)] + [(f"X-F{k}", "v") for k in range(count - 2)]
    unpadded = request_head([*fields, ("X-Pad", "")])
    assert len(unpadded) <= size
    return request_head([*fields, ("X-Pad", "p" * (size - len(unpadded)))])


# --- scoring and metrics -----------------------------------------------------------------------
def score_body(logits: np.ndarray, labels: np.ndarray) -> bytes:
    document = {"logits": logits, "labels": labels, "gamma": GAMMA}
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)


def mean_focal_loss(logits: np.ndarray, labels: np.ndarray, gamma: float = GAMMA) -> float:
    """Float64 hand formula: mean of -(1 - p_t)^gamma log p_t."""
    return float(np.mean(focal_loss64(logits, labels, gamma)))


def assert_scores(server: Server, seed: int = 0) -> None:
    """A normal /score request is answered 200 with the right loss."""
    logits, labels = batch(50, 3, seed)
    response = httpx.post(
        f"{server.url}/score",
        content=score_body(logits, labels),
        headers={"content-type": "application/json"},
        timeout=SOCKET_TIMEOUT_S,
    )
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["n"] == len(labels)
    assert document["metrics"]["mean_focal_loss"] == pytest.approx(
        mean_focal_loss(logits, labels), rel=1e-4
    )


def parse_samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(server: Server) -> Samples:
    response = httpx.get(f"{server.url}/metrics", timeout=SOCKET_TIMEOUT_S)
    assert response.status_code == 200
    return parse_samples(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for a labelled series not created yet."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def closed(samples: Samples, reason: str) -> float:
    return value(samples, "focal_eval_connections_closed_total", reason=reason)


def in_flight(samples: Samples) -> float:
    return value(samples, "focal_eval_requests_in_flight")


def reserved(samples: Samples) -> float:
    return value(samples, "focal_eval_memory_reserved_bytes")


def scrape_until(server: Server, done: Callable[[Samples], bool], within: float = 20.0) -> Samples:
    """Scrape until ``done(samples)`` or ``within`` seconds; the last samples either way."""
    deadline = time.monotonic() + within
    while True:
        samples = scrape(server)
        if done(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


# --- 1. header size and count ------------------------------------------------------------------
LONG_TARGET = "/healthz?q=" + "q" * MAX_HEADER_BYTES


@pytest.mark.parametrize(
    ("head", "status", "message"),
    [
        pytest.param(head_of(MAX_HEADER_BYTES, MAX_HEADERS), 200, None, id="at-both-limits"),
        pytest.param(head_of(MAX_HEADER_BYTES - 100, MAX_HEADERS), 200, None, id="just-under"),
        pytest.param(head_of(2000, MAX_HEADERS + 1), 431, TOO_MANY, id="one-field-too-many"),
        pytest.param(head_of(MAX_HEADER_BYTES + 200, 4), 431, TOO_LARGE, id="200-bytes-over"),
        pytest.param(head_of(40_000, 3), 431, TOO_LARGE, id="one-40-KB-header"),
        pytest.param(request_head([("Host", HOST)], LONG_TARGET), 431, TOO_LARGE, id="long-url"),
    ],
)
def test_headers_within_the_limits_get_200_and_over_either_limit_get_431(
    bounded: Server, head: bytes, status: int, message: str | None
) -> None:
    before = scrape(bounded)
    with connect(bounded) as sock:
        sock.sendall(head)  # one write
        reply = receive_reply(sock)
        assert reply.status == status, reply.body
        if message is None:
            assert orjson.loads(reply.body)["status"] == "ok"
        else:
            assert reply.error == message
            assert reply.headers["content-type"] == "application/json"
            assert reply.headers["connection"] == "close"
            seconds_until_closed(sock)
    refused = closed(scrape(bounded), "header_too_large") - closed(before, "header_too_large")
    assert refused == (1 if status == 431 else 0)


def test_a_header_that_grows_in_small_pieces_gets_431_before_it_ends(bounded: Server) -> None:
    before = scrape(bounded)
    with connect(bounded) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\nX-Grow: ".encode())
        sent = 0
        while sent < 4 * MAX_HEADER_BYTES and not readable_within(sock, 0.005):
            sock.sendall(b"g" * 512)  # the header never ends: only its size can refuse it
            sent += 512
        reply = receive_reply(sock)  # (unbounded, it would be the header timeout's 408)
        assert (reply.status, reply.error) == (431, TOO_LARGE)
        seconds_until_closed(sock)
    assert closed(scrape(bounded), "header_too_large") == closed(before, "header_too_large") + 1


# 8209 bytes from "GET" to the blank line: over 8192 by any count that includes the request
# line (the parsed count, URL and fields only, makes it exactly 8192).
OVER_BY_ITS_REQUEST_LINE = head_of(MAX_HEADER_BYTES + 17, 3)


@pytest.mark.parametrize(
    "split_at",
    [
        pytest.param(None, id="one-write"),
        pytest.param(MAX_HEADER_BYTES + 1, id="split-just-past-the-limit"),
        pytest.param(1000, id="split-early"),
    ],
)
def test_a_heads_verdict_does_not_depend_on_how_it_is_split(
    bounded: Server, split_at: int | None
) -> None:
    """The same head over the limit gets 431 however it is split into writes (TCP segments)."""
    head = OVER_BY_ITS_REQUEST_LINE
    with connect(bounded) as sock:
        if split_at is None:
            sock.sendall(head)
        else:
            sock.sendall(head[:split_at])
            time.sleep(0.1)  # let the server take the first piece on its own
            if not readable_within(sock, 0):
                sock.sendall(head[split_at:])
        reply = receive_reply(sock)
    assert (reply.status, reply.error) == (431, TOO_LARGE)


# --- 2. header and idle timeouts ---------------------------------------------------------------
@pytest.mark.parametrize(
    "dribble",
    [
        pytest.param(False, id="stalled-mid-header"),
        pytest.param(True, id="one-byte-every-100-ms"),
    ],
)
def test_headers_not_complete_within_the_header_timeout_get_408_and_are_closed(
    bounded: Server, dribble: bool
) -> None:
    before = scrape(bounded)
    with connect(bounded) as sock:
        start = time.monotonic()
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ".encode())
        if dribble:  # activity does not extend the deadline: it runs from the first byte
            while not readable_within(sock, 0.1) and time.monotonic() - start < 5:
                sock.sendall(b"s")
        reply = receive_reply(sock)
        elapsed = time.monotonic() - start
        assert (reply.status, reply.error) == (408, HEADERS_LATE)
        assert reply.headers["connection"] == "close"
        assert 0.5 * HEADER_TIMEOUT_S <= elapsed < 5.0
        seconds_until_closed(sock)
    assert closed(scrape(bounded), "header_timeout") == closed(before, "header_timeout") + 1


def test_a_connection_that_never_sends_a_byte_is_closed_after_the_idle_timeout(
    bounded: Server,
) -> None:
    before = scrape(bounded)
    with connect(bounded) as sock:
        elapsed = seconds_until_closed(sock)
    assert 0.5 * IDLE_TIMEOUT_S <= elapsed < 5.0
    assert closed(scrape(bounded), "idle") == closed(before, "idle") + 1


def test_a_keep_alive_connection_is_closed_after_the_idle_timeout_following_a_response(
    bounded: Server,
) -> None:
    before = scrape(bounded)
    with connect(bounded) as sock:
        sock.sendall(request_head([("Host", HOST)]))
        reply = receive_reply(sock)
        assert reply.status == 200
        assert "connection" not in reply.headers  # kept alive, for now
        elapsed = seconds_until_closed(sock)
    assert 0.5 * IDLE_TIMEOUT_S <= elapsed < 5.0
    assert closed(scrape(bounded), "idle") == closed(before, "idle") + 1


# --- 3. the connection cap ---------------------------------------------------------------------
def test_idle_connections_past_the_cap_evict_the_oldest_and_health_still_answers(
    capped: Server,
) -> None:
    with ExitStack() as stack:

        def opened() -> socket.socket:
            sock = stack.enter_context(connect(capped))
            time.sleep(0.02)  # distinct opening times: "oldest" is well defined
            return sock

        def get(sock: socket.socket, path: str) -> Reply:
            sock.sendall(request_head([("Host", HOST)], path))
            return receive_reply(sock)

        first = opened()
        before = parse_samples(get(first, "/metrics").body.decode())
        idle = [opened() for _ in range(20)]
        health = opened()
        reply = get(health, "/healthz")
        assert reply.status == 200
        assert orjson.loads(reply.body)["status"] == "ok"
        last = opened()
        after = parse_samples(get(last, "/metrics").body.decode())
        # 23 connections opened in order, 8 allowed: each from the 9th on evicts the oldest
        # idle one, so the first 15 go (first, idle[0..13]) and the newest 8 stay.
        evicted = [first, *idle[:14]]
        for sock in evicted:
            seconds_until_closed(sock, within=5.0)
        assert all(is_open(sock) for sock in [*idle[14:], health])
        assert closed(after, "evicted") - closed(before, "evicted") == len(evicted)
        assert closed(after, "connection_cap") == closed(before, "connection_cap") == 0
    response = httpx.get(f"{capped.url}/healthz", timeout=SOCKET_TIMEOUT_S)
    assert response.status_code == 200


def test_a_connection_past_the_cap_is_refused_503_when_every_connection_is_busy(
    capped: Server,
) -> None:
    logits, labels = batch(50, 3)
    body = score_body(logits, labels)
    with ExitStack() as stack:
        uploads = [stack.enter_context(connect(capped)) for _ in range(MAX_CONNECTIONS)]
        for sock in uploads:
            sock.sendall(upload_head("/score", len(body)) + body[:10])
        time.sleep(1.0)  # every upload is past its headers: busy, not idle
        with connect(capped) as refused:  # sends nothing: refused on arrival
            reply = receive_reply(refused)
            assert (reply.status, reply.error) == (503, ALL_BUSY)
            assert reply.headers["retry-after"] == "1"
            assert reply.headers["connection"] == "close"
            assert reply.headers["content-type"] == "application/json"
            seconds_until_closed(refused)
        for sock in uploads:  # busy connections were left alone: each upload completes
            sock.sendall(body[10:])
            reply = receive_reply(sock)
            assert reply.status == 200, reply.body
            assert orjson.loads(reply.body)["metrics"]["mean_focal_loss"] == pytest.approx(
                mean_focal_loss(logits, labels), rel=1e-4
            )
    assert closed(scrape(capped), "connection_cap") == 1


def test_connections_lingering_after_early_answers_make_room_for_new_ones(
    capped: Server,
) -> None:
    """A connection dropping the rest of an answered body is idle: the cap may evict it."""
    with ExitStack() as stack:
        lingering = [stack.enter_context(connect(capped)) for _ in range(MAX_CONNECTIONS)]
        for sock in lingering:
            sock.sendall(upload_head("/score", 2**20, content_type="text/plain") + b"x" * 10)
            assert receive_reply(sock).status == 415
        with connect(capped) as admitted:
            admitted.sendall(request_head([("Host", HOST)]))
            assert receive_reply(admitted).status == 200
    samples = scrape(capped)
    assert (closed(samples, "evicted"), closed(samples, "connection_cap")) == (1, 0)


def test_a_low_open_files_limit_lowers_the_cap_so_200_idle_sockets_leave_health_answering() -> None:
    env = {"FOCAL_MAX_CONNECTIONS": "1000", "FOCAL_IDLE_TIMEOUT_S": "30"}
    with running(env, open_files=128) as server, ExitStack() as stack:
        assert (
            "FOCAL_MAX_CONNECTIONS lowered from 1000 to 64: the open-files limit is 128"
            in server.log()
        )
        sockets = [stack.enter_context(connect(server)) for _ in range(200)]
        response = httpx.get(f"{server.url}/healthz", timeout=SOCKET_TIMEOUT_S)
        assert response.status_code == 200, response.text
        samples = scrape(server)
        # 201 connections (200 idle, then /healthz), 64 allowed: 137 evicted by then at least
        assert closed(samples, "evicted") >= len(sockets) + 1 - 64
        assert sum(is_open(sock) for sock in sockets) <= 64
        assert "Traceback" not in server.log()


# --- 4. clients that read nothing --------------------------------------------------------------
def npz_body(n: int, seed: int = 1) -> bytes:
    logits, labels = batch(n, 2, seed, scale=1.0)
    buffer = io.BytesIO()
    np.savez(buffer, logits=logits, labels=labels)
    return buffer.getvalue()


def v2_binary_upload(n: int, seed: int = 1) -> bytes:
    """A v2 request of binary tensors (head and body), all outputs asked for as binary."""
    logits, labels = batch(n, 2, seed, scale=1.0)
    body, fields = v2_binary_body(logits, labels)
    return upload_head(V2_INFER, len(body), "application/octet-stream", fields) + body


def npz_upload(n: int) -> bytes:
    body = npz_body(n)
    return upload_head("/score?per_sample=true", len(body), "application/x-npz") + body


@pytest.mark.parametrize(
    "upload",
    [
        # per-sample JSON for it, about 22 MB, encoded in worker threads as the client reads
        pytest.param(npz_upload, id="json-encoded-as-sent"),
        # binary per-sample arrays, about 12 MB, already encoded: sent from the event loop
        pytest.param(v2_binary_upload, id="binary-encoded"),
    ],
)
def test_clients_that_read_nothing_of_a_large_response_are_cut_after_the_write_timeout(
    upload: Callable[[int], bytes],
) -> None:
    clients = 8
    env = {
        "FOCAL_WRITE_TIMEOUT_S": "1",
        "FOCAL_MAX_IN_FLIGHT": str(clients),
        "FOCAL_MEMORY_LIMIT": "2Gi",
        "FOCAL_LOG_LEVEL": "info",
    }
    request = upload(500_000)
    with running(env) as server, ExitStack() as stack:
        before = scrape(server)
        for _ in range(clients):
            sock = stack.enter_context(connect(server, receive_buffer=4096))
            sock.sendall(request)  # and never read
        after = scrape_until(
            server,
            lambda s: (
                closed(s, "write_timeout") - closed(before, "write_timeout") >= clients
                and reserved(s) == 0
            ),
        )
        assert closed(after, "write_timeout") - closed(before, "write_timeout") == clients
        assert reserved(after) == 0
        assert not [key for key, count in after.items() if ("status", "500") in key[1] and count]
        assert_scores(server)
        log = server.log()
        assert log.count("cut a client that read no response bytes for 1 s") == clients
        assert "Traceback" not in log


# --- 5. stalled uploads ------------------------------------------------------------------------
def test_stalled_uploads_hold_no_scoring_slot_and_get_408_after_the_body_timeout(
    bounded: Server,
) -> None:
    logits, labels = batch(50, 3, seed=2)
    body = score_body(logits, labels)
    stalled = 4 * MAX_IN_FLIGHT
    with ExitStack() as stack:
        sockets = [stack.enter_context(connect(bounded)) for _ in range(stalled)]
        start = time.monotonic()
        for sock in sockets:
            sock.sendall(upload_head("/score", len(body)) + body[:10])
        # every stalled upload is inside the app (plus this scrape itself)
        waiting = scrape_until(bounded, lambda s: in_flight(s) == stalled + 1, within=2.0)
        assert in_flight(waiting) == stalled + 1
        for seed in range(3):
            assert_scores(bounded, seed)
        still = scrape(bounded)
        assert in_flight(still) == stalled + 1  # they stalled throughout
        assert reserved(still) > 0  # their first bytes, charged as they arrived
        for sock in sockets:
            reply = receive_reply(sock)
            assert (reply.status, reply.error) == (408, BODY_LATE)
        assert time.monotonic() - start >= 0.5 * BODY_TIMEOUT_S
    after = scrape_until(bounded, lambda s: reserved(s) == 0 and in_flight(s) == 1)
    assert (reserved(after), in_flight(after)) == (0, 1)


# --- 6. clients that hang up mid-body ----------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "route"),
    [
        pytest.param("/score", "/score", id="score"),
        pytest.param("/v2/models/focal-eval/infer", "/v2/models/{name}/infer", id="v2-infer"),
    ],
)
@pytest.mark.parametrize("reset", [pytest.param(False, id="fin"), pytest.param(True, id="rst")])
def test_a_client_that_hangs_up_mid_body_is_recorded_as_499_without_a_traceback(
    bounded: Server, path: str, route: str, reset: bool
) -> None:
    def requests(samples: Samples, status: str) -> float:
        return value(
            samples, "focal_eval_requests_total", route=route, method="POST", status=status
        )

    before = scrape(bounded)
    with connect(bounded) as sock:
        sock.sendall(upload_head(path, 100_000) + b'{"logits": [[0.5, ')
        waiting = scrape_until(bounded, lambda s: in_flight(s) == 2, within=5.0)
        assert in_flight(waiting) == 2  # the upload is inside the app, reading its body
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    after = scrape_until(bounded, lambda s: requests(s, "499") > requests(before, "499"))
    assert requests(after, "499") == requests(before, "499") + 1
    disconnects = "focal_eval_client_disconnects_total"
    assert value(after, disconnects, route=route) == value(before, disconnects, route=route) + 1
    assert value(after, "focal_eval_request_errors_total", route=route, status="499") == 0
    assert not [
        key
        for key, count in after.items()
        if key[0] == "focal_eval_requests_total" and ("status", "500") in key[1] and count
    ]
    assert reserved(after) == 0
    log = bounded.log()
    assert f"client hung up during POST {path}" in log
    assert "Traceback" not in log


# --- 7. what a client can do once it has a connection ------------------------------------------
def test_empty_lines_do_not_postpone_the_idle_timeout(bounded: Server) -> None:
    before = closed(scrape(bounded), "idle")
    with connect(bounded) as sock:
        start = time.monotonic()
        sock.settimeout(0.3)
        open_for = None
        while time.monotonic() - start < 5 * IDLE_TIMEOUT_S:
            try:
                sock.sendall(b"\r\n")  # starts no request: httptools skips it
                if sock.recv(1) == b"":
                    open_for = time.monotonic() - start
                    break
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                open_for = time.monotonic() - start
                break
    assert open_for is not None, "empty lines kept the connection open"
    assert 0.5 * IDLE_TIMEOUT_S <= open_for <= 3 * IDLE_TIMEOUT_S
    assert closed(scrape(bounded), "idle") - before >= 1


def test_an_answer_before_the_body_ends_closes_the_connection(bounded: Server) -> None:
    before = closed(scrape(bounded), "unread_body")
    with connect(bounded) as sock:
        head = upload_head("/score", 10 * 2**20, content_type="text/plain")  # 415 at once
        sock.sendall(head + b"x" * 1000)
        reply = receive_reply(sock)
        assert reply.status == 415
        assert reply.headers["connection"] == "close"
        assert seconds_until_closed(sock) <= 3  # the body nobody reads does not keep it open
    assert closed(scrape(bounded), "unread_body") - before == 1


def test_an_answer_before_the_body_ends_reaches_a_client_that_keeps_sending(
    bounded: Server,
) -> None:
    """The client uploads its whole 4 MiB after the 415 came: it still reads the 415.

    Closed at once, the connection would be reset by the bytes arriving after the close, and
    the reset can destroy the answer in the client's buffer before it is read.
    """
    size = 4 * 2**20
    with connect(bounded) as sock:
        sock.sendall(upload_head("/score", size, content_type="text/plain"))
        time.sleep(0.2)  # the 415 is sent and the server has ended its side
        sock.sendall(b"x" * size)
        reply = receive_reply(sock)
        assert reply.status == 415
        assert seconds_until_closed(sock) <= 3


def test_a_client_that_keeps_sending_after_an_early_answer_is_cut_after_the_linger(
    bounded: Server,
) -> None:
    """What arrives after an early answer is dropped for at most 2 s (LINGER_S), then cut."""
    with connect(bounded) as sock:
        start = time.monotonic()  # before the server's 2 s begin
        sock.sendall(upload_head("/score", 2**40, content_type="text/plain"))
        assert receive_reply(sock).status == 415
        seconds_until_cut(sock)
        assert 2.0 <= time.monotonic() - start <= 5


def test_a_client_silent_after_an_early_answer_is_closed_after_the_linger(
    bounded: Server,
) -> None:
    """End of file comes first; the server's side goes too, 2 s on, though the client waits."""
    with connect(bounded) as sock:
        sock.sendall(upload_head("/score", 2**20, content_type="text/plain") + b"x" * 1000)
        assert receive_reply(sock).status == 415
        assert sock.recv(1) == b""  # end of file: the answer is whole
        time.sleep(2.5)
        assert seconds_until_cut(sock) < 1  # closed already: the first sends bring the reset


def seconds_until_cut(sock: socket.socket) -> float:
    """Send until the server resets the connection; the seconds that took (bounded)."""
    start = time.monotonic()
    while time.monotonic() - start < SOCKET_TIMEOUT_S:
        try:
            sock.sendall(b"x" * 65536)
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError(f"the server took what was sent for {SOCKET_TIMEOUT_S:g} s")


def test_an_http_client_reuses_its_pool_after_early_answers(bounded: Server) -> None:
    """httpx uploads 4 MiB, gets the 415 sent before the body ended, and goes on.

    It must read the answer (not a reset) and must not send its next request into the
    connection that is ending: the answer says ``connection: close``.
    """
    with httpx.Client(base_url=bounded.url, timeout=SOCKET_TIMEOUT_S) as client:
        for _ in range(5):
            refused = client.post(
                "/score", content=b"x" * (4 * 2**20), headers={"content-type": "text/plain"}
            )
            assert refused.status_code == 415
            assert refused.headers["connection"] == "close"
            assert client.get("/healthz").status_code == 200


def test_a_next_request_whose_body_is_still_arriving_keeps_the_connection(
    bounded: Server,
) -> None:
    """The body in progress when a response ends may be the next request's, not its own.

    A keep-alive client may send its next request as soon as it has the previous response; the
    server can still be finishing that response (a streamed one ends with an empty write after
    the last bytes). Here the next request's head and part of its body arrive before the first
    response ends (pipelined), the rest after it: both requests must be answered.
    """
    before = closed(scrape(bounded), "unread_body")
    rng = np.random.default_rng(3)
    logits, labels = rng.normal(size=(16, 4)), rng.integers(0, 4, 16)
    body = score_body(logits, labels)
    first = upload_head("/score", len(body)) + body
    with connect(bounded) as sock:
        sock.sendall(first + upload_head("/score", len(body)) + body[:10])
        replies = [receive_reply(sock)]
        sock.sendall(body[10:])
        replies.append(receive_reply(sock))
    expected = mean_focal_loss(logits, labels)
    for reply in replies:
        assert reply.status == 200
        assert orjson.loads(reply.body)["metrics"]["mean_focal_loss"] == pytest.approx(expected)
    assert closed(scrape(bounded), "unread_body") - before == 0


def test_a_client_pipelining_more_than_two_requests_is_closed_after_its_answers(
    bounded: Server,
) -> None:
    before = closed(scrape(bounded), "pipelined")
    with connect(bounded) as sock:
        sock.sendall(request_head([("Host", HOST)]) * 50)
        answers = 0
        try:
            while True:
                answers += receive_reply(sock).status == 200
        except (AssertionError, ConnectionResetError, TimeoutError):
            pass  # closed after the first answers
    assert 1 <= answers <= 4
    assert closed(scrape(bounded), "pipelined") - before == 1


def test_chunked_trailers_count_as_headers(bounded: Server) -> None:
    before = closed(scrape(bounded), "header_too_large")
    with connect(bounded) as sock:
        sock.sendall(
            f"POST /score HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Trailer: ".encode()
        )
        try:
            for _ in range(4 * MAX_HEADER_BYTES // 1024):
                sock.sendall(b"t" * 1024)
                time.sleep(0.01)
        except (ConnectionResetError, BrokenPipeError):
            pass
        seconds_until_closed(sock)
    assert closed(scrape(bounded), "header_too_large") - before == 1
