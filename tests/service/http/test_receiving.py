"""Bodies as a real ``focal serve`` receives them: in uneven pieces, over interleaved connections.

Every socket is read into one buffer that all connections share, and a large body (512 KiB or
more) is read by the connection straight into its own buffer (the sink of
:mod:`focal_eval.service.http.sink`). These tests send requests in pieces of every size, the
heads split mid-line, several requests interleaved piece by piece over several connections,
and check that each answer is its own batch's (float64 hand formulas and numpy counts) and
that telemetry counted every body's bytes, which no longer pass through ASGI's ``receive()``.
"""

from __future__ import annotations

import io
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import orjson
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families

from focal_eval.service.testing import Server, focal_spec, serve
from tests.service._inputs import batch
from tests.service.http._raw import (
    V2_INFER,
    Reply,
    connect,
    focal_loss64,
    receive_reply,
    upload_head,
    v2_binary_body,
)

TIMEOUT_S = 20.0
GAMMA = 2.0
V2_ROUTE = "/v2/models/{name}/infer"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with serve(focal_spec({"FOCAL_THREADS": "1"})) as (running,):
        yield running


# --- requests and their references ---------------------------------------------------------
@dataclass(frozen=True)
class Exchange:
    """One request's bytes, the batch it carries, and how to read its answer's loss."""

    route: str
    head: bytes
    body: bytes
    logits: np.ndarray
    labels: np.ndarray

    @property
    def raw(self) -> bytes:
        return self.head + self.body

    def per_sample_loss(self, reply: Reply) -> np.ndarray:
        """The per-sample focal loss the answer gives."""
        assert reply.status == 200, reply.body[:300]
        if self.route == V2_ROUTE:
            result = triton.InferResult.from_response_body(
                reply.body, header_length=int(reply.headers["inference-header-content-length"])
            )
            loss = result.as_numpy("focal_loss")
            assert loss is not None
            return np.asarray(loss)
        return np.asarray(orjson.loads(reply.body)["per_sample"]["focal_loss"])


def v2_exchange(n: int, c: int, seed: int) -> Exchange:
    """A v2 request with binary tensors (as tritonclient builds it), binary outputs asked."""
    logits, labels = batch(n, c, seed)
    body, fields = v2_binary_body(logits, labels, ["focal_loss"])
    head = upload_head(V2_INFER, len(body), "application/octet-stream", fields)
    return Exchange(V2_ROUTE, head, body, logits, labels)


def npz_exchange(n: int, c: int, seed: int) -> Exchange:
    logits, labels = batch(n, c, seed)
    buffer = io.BytesIO()
    np.savez(buffer, logits=logits, labels=labels)
    body = buffer.getvalue()
    return Exchange(
        "/score",
        upload_head("/score?per_sample=true", len(body), "application/x-npz"),
        body,
        logits,
        labels,
    )


def json_exchange(n: int, c: int, seed: int) -> Exchange:
    logits, labels = batch(n, c, seed)
    body = orjson.dumps({"logits": logits.tolist(), "labels": labels.tolist(), "per_sample": True})
    head = upload_head("/score", len(body), "application/json")
    return Exchange("/score", head, body, logits, labels)


# --- raw HTTP --------------------------------------------------------------------------------
def pieces(data: bytes, rng: np.random.Generator, largest: int) -> list[bytes]:
    """``data`` cut at random: a first piece of 7 bytes (mid request line), then 1..largest."""
    cuts = [0, 7]
    while cuts[-1] < len(data):
        cuts.append(cuts[-1] + int(rng.integers(1, largest + 1)))
    return [data[start:end] for start, end in itertools.pairwise(cuts)]


def body_bytes(server: Server) -> dict[str, tuple[float, float]]:
    """Per route: the sum and count of ``focal_eval_request_body_bytes``."""
    text = httpx.get(f"{server.url}/metrics", timeout=TIMEOUT_S).text
    found: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "focal_eval_request_body_bytes":
            continue
        for sample in family.samples:
            entry = found.setdefault(sample.labels["route"], [0.0, 0.0])
            if sample.name.endswith("_sum"):
                entry[0] = sample.value
            elif sample.name.endswith("_count"):
                entry[1] = sample.value
    return {route: (total, count) for route, (total, count) in found.items()}


def assert_answered(exchanges: list[Exchange], replies: list[Reply]) -> None:
    for exchange, reply in zip(exchanges, replies, strict=True):
        got = exchange.per_sample_loss(reply)
        want = focal_loss64(exchange.logits, exchange.labels, GAMMA)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def assert_counted(
    before: dict[str, tuple[float, float]],
    after: dict[str, tuple[float, float]],
    exchanges: list[Exchange],
) -> None:
    for route in {exchange.route for exchange in exchanges}:
        sent = [len(e.body) for e in exchanges if e.route == route]
        total, count = before.get(route, (0.0, 0.0))
        assert after[route][0] - total == sum(sent), route
        assert after[route][1] - count == len(sent), route


# --- tests -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [pytest.param(v2_exchange, id="v2-binary"), pytest.param(npz_exchange, id="npz")],
)
def test_a_large_body_in_uneven_pieces_with_pauses_is_scored_and_counted(
    server: Server, make: object
) -> None:
    exchange = make(3000, 60, seed=1)  # type: ignore[operator]
    assert len(exchange.body) >= 512 * 1024  # received into a buffer, by the sink
    rng = np.random.default_rng(2)
    before = body_bytes(server)
    with connect(server) as sock:
        for index, piece in enumerate(pieces(exchange.raw, rng, largest=50_000)):
            sock.sendall(piece)
            if index % 5 == 0:
                time.sleep(0.005)  # so that pieces arrive in separate reads
        reply = receive_reply(sock)
    assert_answered([exchange], [reply])
    assert_counted(before, body_bytes(server), [exchange])


def test_requests_interleaved_piece_by_piece_over_connections_get_their_own_answers(
    server: Server,
) -> None:
    """All connections are read into one shared buffer: no request may see another's bytes."""
    exchanges = [
        v2_exchange(3000, 60, seed=3),
        npz_exchange(2500, 70, seed=4),
        json_exchange(40, 3, seed=5),
        v2_exchange(300, 5, seed=6),  # small: through receive(), not a sink
        v2_exchange(2800, 64, seed=7),
    ]
    rng = np.random.default_rng(8)
    queues = [pieces(exchange.raw, rng, largest=20_000) for exchange in exchanges]
    before = body_bytes(server)
    sockets = [connect(server) for _ in exchanges]
    try:
        while any(queues):
            for sock, queue in zip(sockets, queues, strict=True):
                if queue:
                    sock.sendall(queue.pop(0))
        replies = [receive_reply(sock) for sock in sockets]
        # and the same connections again, for a second request each, sent whole
        for sock, exchange in zip(sockets, exchanges, strict=True):
            sock.sendall(exchange.raw)
        again = [receive_reply(sock) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    assert_answered(exchanges, replies)
    assert_answered(exchanges, again)
    assert_counted(before, body_bytes(server), exchanges + exchanges)
