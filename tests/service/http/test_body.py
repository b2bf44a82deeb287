"""Request bodies: read under a byte limit, length headers parsed, Content-Encoding undone."""

# ruff: noqa: E501 (a table of encoded bodies and their exact error messages, one per line)

from __future__ import annotations

import asyncio
import gzip
import io
import os
import tracemalloc
import warnings
import zlib
from collections.abc import Awaitable, Callable, Iterator

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message, Receive

from focal_eval.service.core.errors import RequestError, show
from focal_eval.service.http.body import (
    OVERLONG,
    START_BYTES,
    Body,
    count_byte,
    decode_content_encoding,
    parse_length,
    read_body,
)
from focal_eval.service.http.buffers import BodyBuffers
from tests.service._inputs import batch
from tests.service._requests import JSON, NPZ, document, json_body, npz_body
from tests.service.reference import assert_error, assert_score_response, eager

with warnings.catch_warnings():
    # starlette 1.10 asks for httpx2 instead of httpx; nothing here depends on the difference.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

LIMIT = 1024


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _gzip_bomb(size: int) -> bytes:
    """A gzip body of zeros that inflates to ``size`` bytes, built without holding them."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    parts = [compressor.compress(zeros) for _ in range(size // len(zeros))]
    return b"".join([*parts, compressor.flush()])


# --- read_body through an app ---------------------------------------------------------------


def _echo_length(buffers: BodyBuffers | None) -> Callable[[Request], Awaitable[JSONResponse]]:
    """A route that reads the body (into ``buffers``, if given), checks it and gives its length."""

    async def echo_length(request: Request) -> JSONResponse:
        body = await read_body(request, LIMIT, lambda nbytes: None, buffers=buffers)
        assert count_byte(body, b"x") == len(body), "the body's bytes were not all received"
        answer = {"length": len(body), "content_length": request.headers.get("content-length")}
        if buffers is not None:
            buffers.give_back(body)
        return JSONResponse(answer)

    return echo_length


async def _request_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestError)
    return JSONResponse({"error": exc.message}, status_code=exc.status_code)


@pytest.fixture(
    params=[
        pytest.param(None, id="growing-buffer"),
        pytest.param(BodyBuffers(capacity=4 * LIMIT, smallest=1), id="body-buffers"),
    ]
)
def reader(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """A client of an app whose one route reads the body with read_body (limit: LIMIT).

    Once as a growing ``bytearray``, once into :class:`BodyBuffers` (every declared body).
    """
    app = Starlette(
        routes=[Route("/body", _echo_length(request.param), methods=["POST"])],
        exception_handlers={RequestError: _request_error},
    )
    with TestClient(app) as client:
        yield client


def _chunks(total: int, size: int = 100) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(0, id="empty"),
        pytest.param(10, id="small"),
        pytest.param(LIMIT, id="exactly-the-limit"),
    ],
)
def test_body_within_limit_is_read_whole(reader: TestClient, size: int) -> None:
    response = reader.post("/body", content=b"x" * size)
    assert response.status_code == 200
    assert response.json() == {"length": size, "content_length": str(size)}


@pytest.mark.parametrize(
    "size",
    [pytest.param(950, id="several-chunks"), pytest.param(LIMIT, id="exactly-the-limit")],
)
def test_streamed_body_without_content_length_is_read_whole(reader: TestClient, size: int) -> None:
    response = reader.post("/body", content=_chunks(size))
    assert response.status_code == 200
    assert response.json() == {"length": size, "content_length": None}


def test_content_length_over_limit_is_413(reader: TestClient) -> None:
    response = reader.post("/body", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.json() == {"error": f"body: {LIMIT + 1} bytes exceeds the limit of 1024 bytes"}


@pytest.mark.parametrize(
    ("declared", "shown"),
    [
        pytest.param("0001025", "1025", id="leading-zeros"),
        pytest.param("9" * 5000, "9" * 20 + "...", id="more-digits-than-int-parses"),
    ],
)
def test_huge_or_padded_content_length_is_413(
    reader: TestClient, declared: str, shown: str
) -> None:
    response = reader.post("/body", content=b"x", headers={"Content-Length": declared})
    assert response.status_code == 413
    assert response.json() == {"error": f"body: {shown} bytes exceeds the limit of 1024 bytes"}


def test_zero_padded_content_length_within_limit_is_read(reader: TestClient) -> None:
    response = reader.post("/body", content=b"x" * 5, headers={"Content-Length": "0005"})
    assert response.status_code == 200
    assert response.json()["length"] == 5


def test_streamed_body_over_limit_is_413(reader: TestClient) -> None:
    response = reader.post("/body", content=_chunks(LIMIT + 1))
    assert response.status_code == 413
    assert response.json()["error"].startswith("body: exceeds the limit of 1024 bytes")


@pytest.mark.parametrize(
    "declared",
    [pytest.param("10", id="smaller-than-sent"), pytest.param("0", id="zero")],
)
def test_lying_content_length_does_not_bypass_the_limit(reader: TestClient, declared: str) -> None:
    """Nothing past the declared length is kept: a longer body is a framing error (400)."""
    response = reader.post(
        "/body", content=b"x" * (10 * LIMIT), headers={"Content-Length": declared}
    )
    assert response.status_code == 400
    assert response.json() == {"error": f"body: longer than its Content-Length ({declared})"}


def test_body_shorter_than_its_content_length_is_400(reader: TestClient) -> None:
    response = reader.post("/body", content=b"x" * 5, headers={"Content-Length": "10"})
    assert response.status_code == 400
    assert response.json() == {"error": "body: 5 bytes, short of its Content-Length (10)"}


@pytest.mark.parametrize(
    ("declared", "shown"),
    [
        pytest.param("abc", '"abc"', id="not-a-number"),
        pytest.param("-1", '"-1"', id="negative"),
        pytest.param("1.5", '"1.5"', id="fraction"),
        pytest.param("+5", '"+5"', id="signed"),
        pytest.param("1_0", '"1_0"', id="underscore"),
        pytest.param("", '""', id="empty"),
    ],
)
def test_malformed_content_length_is_400(reader: TestClient, declared: str, shown: str) -> None:
    response = reader.post("/body", content=b"x" * 5, headers={"Content-Length": declared})
    assert response.status_code == 400
    assert response.json() == {
        "error": f"Content-Length: expected a non-negative integer, got {shown}"
    }


# --- read_body against a raw ASGI receive, to observe what is pulled -------------------------


class _CountingReceive:
    """An ASGI receive that sends ``chunks`` chunks of ``size`` bytes and counts the pulls."""

    def __init__(self, chunks: int, size: int = 100) -> None:
        self.chunks = chunks
        self.size = size
        self.pulled = 0

    async def __call__(self) -> Message:
        self.pulled += 1
        more = self.pulled < self.chunks
        return {"type": "http.request", "body": b"x" * self.size, "more_body": more}


def _request(receive: Receive, headers: list[tuple[bytes, bytes]]) -> Request:
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    return Request(scope, receive)


def test_content_length_over_limit_is_413_before_reading() -> None:
    receive = _CountingReceive(chunks=1_000)
    request = _request(receive, [(b"content-length", b"100000")])
    with pytest.raises(RequestError) as caught:
        asyncio.run(read_body(request, LIMIT, _refuse_charges))
    assert caught.value.status_code == 413
    assert caught.value.message == "body: 100000 bytes exceeds the limit of 1024 bytes"
    assert receive.pulled == 0


def test_streamed_body_over_limit_stops_reading_at_the_limit() -> None:
    receive = _CountingReceive(chunks=1_000)
    with pytest.raises(RequestError) as caught:
        asyncio.run(read_body(_request(receive, []), LIMIT, lambda nbytes: None))
    assert caught.value.status_code == 413
    assert caught.value.message == "body: exceeds the limit of 1024 bytes (stopped after 1100)"
    assert receive.pulled == LIMIT // 100 + 1


def test_streamed_chunks_are_joined_in_order_and_each_charged_first() -> None:
    receive = _CountingReceive(chunks=7, size=3)
    charged: list[int] = []
    body = asyncio.run(read_body(_request(receive, []), LIMIT, charged.append))
    assert bytes(body) == b"x" * 21
    assert receive.pulled == 7
    assert charged == [3] * 7


def _refuse_charges(nbytes: int) -> None:
    raise AssertionError("nothing may be charged")


def test_a_refused_charge_stops_reading_before_the_chunk_is_kept() -> None:
    receive = _CountingReceive(chunks=100)

    def budget(nbytes: int) -> None:
        if receive.pulled > 3:
            raise RequestError(503, "server: busy")

    with pytest.raises(RequestError) as caught:
        asyncio.run(read_body(_request(receive, []), LIMIT, budget))
    assert caught.value.status_code == 503
    assert receive.pulled == 4


class _StallingReceive:
    """Three chunks of a large declared body, then the client hangs up."""

    def __init__(self) -> None:
        self.pulled = 0

    async def __call__(self) -> Message:
        self.pulled += 1
        if self.pulled > 3:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": b"x" * 100, "more_body": True}


def test_a_declared_length_is_not_allocated_before_it_arrives() -> None:
    declared = 256 * 2**20
    request = _request(_StallingReceive(), [(b"content-length", str(declared).encode())])
    charged: list[int] = []
    tracemalloc.start()
    try:
        with pytest.raises(ClientDisconnect):
            asyncio.run(read_body(request, declared, charged.append))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert charged == [100, 100, 100]
    assert peak < 2**20  # what arrived, not the 256 MiB declared


# --- decode_content_encoding ----------------------------------------------------------------

PAYLOAD = b"focal loss " * 50


@pytest.mark.parametrize(
    ("encoded", "encoding"),
    [
        pytest.param(PAYLOAD, None, id="absent"),
        pytest.param(PAYLOAD, "", id="empty"),
        pytest.param(PAYLOAD, "identity", id="identity"),
        pytest.param(gzip.compress(PAYLOAD), "gzip", id="gzip"),
        pytest.param(gzip.compress(PAYLOAD), "x-gzip", id="x-gzip"),
        pytest.param(gzip.compress(PAYLOAD), " GZip ", id="gzip-case-and-space"),
        pytest.param(zlib.compress(PAYLOAD), "deflate", id="deflate-zlib"),
        pytest.param(_raw_deflate(PAYLOAD), "deflate", id="deflate-raw"),
        pytest.param(zlib.compress(PAYLOAD, 0), "deflate", id="deflate-zlib-stored"),
        pytest.param(
            zlib.compress(gzip.compress(PAYLOAD)), "gzip, deflate", id="gzip-then-deflate"
        ),
        pytest.param(gzip.compress(PAYLOAD), "identity, gzip", id="identity-in-list"),
    ],
)
def test_supported_encodings_round_trip(encoded: bytes, encoding: str | None) -> None:
    assert decode_content_encoding(encoded, encoding, LIMIT) == PAYLOAD


@pytest.mark.parametrize(
    ("encoded", "encoding"),
    [
        pytest.param(gzip.compress(b""), "gzip", id="gzip"),
        pytest.param(zlib.compress(b""), "deflate", id="deflate-zlib"),
        pytest.param(_raw_deflate(b""), "deflate", id="deflate-raw"),
    ],
)
def test_compressed_empty_body_decodes_to_empty(encoded: bytes, encoding: str) -> None:
    assert decode_content_encoding(encoded, encoding, LIMIT) == b""


def test_concatenated_gzip_members_decode_as_one_body() -> None:
    encoded = gzip.compress(b"focal ") + gzip.compress(b"loss")
    assert decode_content_encoding(encoded, "gzip", LIMIT) == b"focal loss"


@given(data=st.binary(max_size=2 * LIMIT), coding=st.sampled_from(["gzip", "deflate"]))
@settings(max_examples=200, deadline=None)
def test_tritonclient_style_compression_round_trips(data: bytes, coding: str) -> None:
    # tritonclient.http sends gzip.compress(body) or zlib.compress(body) (see _client.py).
    encoded = gzip.compress(data) if coding == "gzip" else zlib.compress(data)
    assert decode_content_encoding(encoded, coding, 2 * LIMIT) == data


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_tritonclient_request_body_decodes_to_its_uncompressed_form(algorithm: str) -> None:
    http = pytest.importorskip("tritonclient.http")

    class CapturedError(Exception):
        pass

    sent: dict[str, object] = {}

    def capture(request_uri: str, request_body: bytes, headers: dict[str, str], **_: object):
        sent.update(body=request_body, headers=headers)
        raise CapturedError

    logits = np.arange(12, dtype=np.float32).reshape(3, 4)
    infer_input = http.InferInput("logits", list(logits.shape), "FP32")
    infer_input.set_data_from_numpy(logits, binary_data=True)
    client = http.InferenceServerClient("localhost:1")
    try:
        client._post = capture
        with pytest.raises(CapturedError):
            client.infer("focal", [infer_input], request_compression_algorithm=algorithm)
    finally:
        client.close()
    headers = sent["headers"]
    assert isinstance(headers, dict)
    assert headers["Content-Encoding"] == algorithm
    encoded = sent["body"]
    assert isinstance(encoded, bytes)
    body = decode_content_encoding(encoded, headers["Content-Encoding"], LIMIT)
    json_size = int(headers["Inference-Header-Content-Length"])
    assert bytes(body[:json_size]).startswith(b'{"inputs":')
    np.testing.assert_array_equal(np.frombuffer(body[json_size:], np.float32), logits.ravel())


@pytest.mark.parametrize(
    "encoding",
    [
        pytest.param("br", id="brotli"),
        pytest.param("zstd", id="zstd"),
        pytest.param("compress", id="compress"),
        pytest.param("gzip, br", id="one-of-several"),
    ],
)
def test_unsupported_encoding_is_415(encoding: str) -> None:
    with pytest.raises(RequestError) as caught:
        decode_content_encoding(gzip.compress(PAYLOAD), encoding, LIMIT)
    assert caught.value.status_code == 415
    coding = encoding.split(", ")[-1]
    assert caught.value.message == (
        f"Content-Encoding: {show(coding)} is not supported (use gzip or deflate)"
    )


_GZIPPED = gzip.compress(PAYLOAD)
_ZLIBBED = zlib.compress(PAYLOAD)


@pytest.mark.parametrize(
    ("encoded", "encoding", "reason"),
    [
        pytest.param(b"", "gzip", "body: invalid gzip data (truncated stream)", id="gzip-empty"),
        pytest.param(_GZIPPED[:-10], "gzip", "truncated stream", id="gzip-truncated"),
        pytest.param(b"not gzip at all", "gzip", "body: invalid gzip data (", id="gzip-garbage"),
        pytest.param(
            _GZIPPED[:20] + bytes([_GZIPPED[20] ^ 0xFF]) + _GZIPPED[21:],
            "gzip",
            "body: invalid gzip data (",
            id="gzip-corrupt",
        ),
        pytest.param(_GZIPPED + b"junk", "gzip", "body: invalid gzip data (", id="gzip-trailing"),
        pytest.param(_ZLIBBED[:-3], "deflate", "truncated stream", id="deflate-truncated"),
        pytest.param(
            _ZLIBBED + b"junk", "deflate", "trailing bytes after the stream", id="deflate-trailing"
        ),
        pytest.param(b"\xff" * 16, "deflate", "body: invalid deflate data (", id="deflate-garbage"),
        pytest.param(b"", "deflate", "body: invalid deflate data (", id="deflate-empty"),
    ],
)
def test_corrupt_compressed_body_is_400(encoded: bytes, encoding: str, reason: str) -> None:
    with pytest.raises(RequestError) as caught:
        decode_content_encoding(encoded, encoding, LIMIT)
    assert caught.value.status_code == 400
    assert caught.value.message.startswith(f"body: invalid {encoding} data (")
    assert reason in caught.value.message


@given(data=st.binary(max_size=200), coding=st.sampled_from(["gzip", "deflate"]))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_decode_or_fail_with_a_request_error(data: bytes, coding: str) -> None:
    try:
        decoded = decode_content_encoding(data, coding, LIMIT)
    except RequestError as error:
        status = error.status_code
    else:
        status = 200 if len(decoded) <= LIMIT else 500
    assert status in (200, 400, 413)


@pytest.mark.parametrize(
    ("size", "status"),
    [pytest.param(LIMIT, 200, id="exactly-the-limit"), pytest.param(LIMIT + 1, 413, id="one-over")],
)
def test_decoded_size_limit_is_exact(size: int, status: int) -> None:
    data = os.urandom(size)
    for encoded, coding in ((gzip.compress(data), "gzip"), (zlib.compress(data), "deflate")):
        if status == 200:
            assert decode_content_encoding(encoded, coding, LIMIT) == data
            continue
        with pytest.raises(RequestError) as caught:
            decode_content_encoding(encoded, coding, LIMIT)
        assert caught.value.status_code == 413
        assert caught.value.message == "body: decoded size exceeds the limit of 1024 bytes"


@pytest.mark.parametrize("encoding", ["gzip", "gzip, identity"])
def test_gzip_bomb_is_413_without_inflating_it(encoding: str) -> None:
    bomb = _gzip_bomb(64 << 20)
    limit = 1 << 20
    assert len(bomb) < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(RequestError) as caught:
            decode_content_encoding(bomb, encoding, limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.status_code == 413
    assert caught.value.message == f"body: decoded size exceeds the limit of {limit} bytes"
    assert peak < 4 * limit


def test_a_start_check_refuses_a_bomb_at_its_first_chunk() -> None:
    """A check that raises on the decoded body's first bytes stops the inflation there."""
    bomb = _gzip_bomb(64 << 20)
    charged: list[int] = []
    seen: list[bytes] = []

    def refuse(start: Body) -> None:
        seen.append(bytes(start))
        raise RequestError(400, "body: not what it says")

    with pytest.raises(RequestError) as caught:
        decode_content_encoding(bomb, "gzip", 128 << 20, charged.append, refuse)
    assert caught.value.message == "body: not what it says"
    assert len(seen) == 1
    assert len(seen[0]) >= START_BYTES
    assert not any(seen[0])
    assert sum(charged) <= 1 << 20  # one chunk of the 64 MiB, not all of them


@pytest.mark.parametrize(
    ("encoding", "decoded"),
    [
        pytest.param("gzip", b"abc", id="shorter-than-the-start"),
        pytest.param("deflate", b"focal" * 1000, id="deflate"),
        pytest.param("gzip, deflate", b"focal" * 1000, id="nested-sees-the-body-itself"),
    ],
)
def test_a_start_check_sees_the_decoded_start_once(encoding: str, decoded: bytes) -> None:
    body = decoded
    for coding in [token.strip() for token in encoding.split(",")]:
        body = gzip.compress(body) if coding == "gzip" else zlib.compress(body)
    seen: list[bytes] = []
    result = decode_content_encoding(
        body, encoding, LIMIT * 10, check_start=lambda start: seen.append(bytes(start))
    )
    assert bytes(result) == decoded
    assert len(seen) == 1
    assert decoded.startswith(seen[0])
    assert len(seen[0]) >= min(START_BYTES, len(decoded))


def test_the_start_check_waits_for_enough_bytes_across_gzip_members() -> None:
    """Concatenated members are one body: a first member shorter than the start is not it."""
    body = gzip.compress(b"ab") + gzip.compress(b"cdefghij")
    seen: list[bytes] = []
    decoded = decode_content_encoding(
        body, "gzip", LIMIT, check_start=lambda start: seen.append(bytes(start))
    )
    assert bytes(decoded) == b"abcdefghij"
    assert seen == [b"abcdefghij"]


def test_no_start_check_for_a_body_with_nothing_to_undo() -> None:
    seen: list[Body] = []
    assert decode_content_encoding(b"plain", None, LIMIT, check_start=seen.append) == b"plain"
    assert seen == []


def test_nested_encodings_are_each_bounded_by_the_limit() -> None:
    inner = _gzip_bomb(16 << 20)
    with pytest.raises(RequestError) as caught:
        decode_content_encoding(zlib.compress(inner), "gzip, deflate", 1 << 20)
    assert caught.value.status_code == 413


# --- parse_length: Content-Length and Inference-Header-Content-Length ------------------------


@pytest.mark.parametrize("name", ["Content-Length", "Inference-Header-Content-Length"])
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("0", 0, id="zero"),
        pytest.param("256", 256, id="plain"),
        pytest.param(" 256 ", 256, id="padded"),
        pytest.param("0256", 256, id="leading-zeros"),
        pytest.param("9" * 21, 10**21 - 1, id="more-digits-than-64-bits"),
        pytest.param("9" * 5000, OVERLONG, id="more-digits-than-int-parses"),
    ],
)
def test_length_header_parses_decimal_integers(
    name: str, value: str | None, expected: int | None
) -> None:
    assert parse_length(name, value) == expected


@pytest.mark.parametrize("name", ["Content-Length", "Inference-Header-Content-Length"])
@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param("", '""', id="empty"),
        pytest.param("abc", '"abc"', id="letters"),
        pytest.param("-1", '"-1"', id="negative"),
        pytest.param("+5", '"+5"', id="plus-sign"),
        pytest.param("1.5", '"1.5"', id="decimal-point"),
        pytest.param("1_000", '"1_000"', id="underscore"),
        pytest.param("\u0661\u0662", '"\u0661\u0662"', id="non-ascii-digits"),
        pytest.param("x" * 100, '"' + "x" * 56 + "...", id="long-value-cut"),
    ],
)
def test_length_header_that_is_not_an_integer_is_400_naming_it(
    name: str, value: str, shown: str
) -> None:
    with pytest.raises(RequestError) as caught:
        parse_length(name, value)
    assert caught.value.status_code == 400
    assert caught.value.message == f"{name}: expected a non-negative integer, got {shown}"


# --- through /score: the body limits and encodings of a real route --------------------------

ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
}
SCORE_LIMIT = 4 * 2**20  # the tests' max_body_bytes (tests/service/conftest.py)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
@pytest.mark.parametrize("kind", ["json", "npz"])
def test_compressed_bodies_are_decoded(client: TestClient, encoding: str, kind: str) -> None:
    logits, labels = batch(50, 4, seed=13, ignore=2)
    if kind == "json":
        raw, content_type = orjson.dumps(json_body(logits, labels)), "application/json"
    else:
        raw, content_type = npz_body(logits=logits, labels=labels), "application/x-npz"
    response = client.post(
        "/score",
        content=ENCODERS[encoding](raw),
        headers={"content-type": content_type, "content-encoding": encoding},
    )
    assert_score_response(response.json(), eager(logits, labels))


@pytest.mark.parametrize(
    ("decoded", "message"),
    [
        pytest.param(
            bytes(3 * SCORE_LIMIT),
            "body: not a valid .npz archive (it does not begin as a zip archive)",
            id="a-bomb-of-zeros-past-the-limit-is-refused-at-its-start",
        ),
        pytest.param(
            b'{"logits": [[1.0, 2.0]], "labels": [0]}',
            "body: not a valid .npz archive (it does not begin as a zip archive)",
            id="json-sent-as-npz",
        ),
        pytest.param(
            _npy(np.zeros((2, 3), np.float32)),
            "body: got a single .npy array; send an .npz archive with arrays named logits and"
            " labels",
            id="a-single-npy-array-is-still-explained",
        ),
    ],
)
def test_a_compressed_npz_body_that_is_no_archive_is_400_at_its_first_bytes(
    client: TestClient, decoded: bytes, message: str
) -> None:
    response = client.post(
        "/score",
        content=gzip.compress(decoded),
        headers={"content-type": "application/x-npz", "content-encoding": "gzip"},
    )
    assert_error(response, 400, message)


def test_body_over_the_limit_by_content_length_is_413(client: TestClient) -> None:
    response = client.post("/score", content=b" " * (SCORE_LIMIT + 1), headers=JSON)
    assert_error(
        response, 413, f"body: {SCORE_LIMIT + 1} bytes exceeds the limit of {SCORE_LIMIT} bytes"
    )


def test_streamed_body_over_the_limit_without_content_length_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(5):
            yield b" " * 2**20

    response = client.post("/score", content=chunks(), headers=JSON)
    assert response.request.headers.get("content-length") is None
    assert_error(response, 413, f"body: exceeds the limit of {SCORE_LIMIT} bytes")


def test_gzip_body_that_inflates_past_the_limit_is_413(client: TestClient) -> None:
    bomb = gzip.compress(b"0" * (SCORE_LIMIT + 1))
    assert len(bomb) < 2**16
    response = client.post("/score", content=bomb, headers={**JSON, "content-encoding": "gzip"})
    assert_error(response, 413, f"body: decoded size exceeds the limit of {SCORE_LIMIT} bytes")


@pytest.mark.parametrize(
    ("body", "encoding", "status", "message"),
    [
        pytest.param(b"not gzip at all", "gzip", 400, "body: invalid gzip data", id="corrupt_gzip"),
        pytest.param(gzip.compress(orjson.dumps(document()))[:-12], "gzip", 400, "body: invalid gzip data", id="truncated_gzip"),
        pytest.param(b"\x78\x9c garbage", "deflate", 400, "body: invalid deflate data", id="corrupt_deflate"),
        pytest.param(orjson.dumps(document()), "br", 415, "Content-Encoding: \"br\" is not supported", id="unknown_encoding"),
    ],
)  # fmt: skip
def test_bad_content_encoding_is_a_clear_4xx(
    client: TestClient, body: bytes, encoding: str, status: int, message: str
) -> None:
    response = client.post("/score", content=body, headers={**JSON, "content-encoding": encoding})
    assert_error(response, status, message)


@pytest.mark.parametrize(
    "settings", [pytest.param({"max_json_bytes": 4096}, id="json_limit_4096")], indirect=True
)
def test_json_over_the_json_limit_is_413_naming_the_setting(client: TestClient) -> None:
    logits, labels = batch(2000, 3, seed=3)
    body = orjson.dumps(json_body(logits, labels))
    response = client.post("/score", content=body, headers=JSON)
    assert_error(
        response,
        413,
        f"body: {len(body)} bytes of JSON is over the limit of 4096 (FOCAL_MAX_JSON_BYTES);"
        " send large batches as .npz or v2 binary",
    )
    inputs = [
        {"name": "logits", "shape": [2000, 3], "datatype": "FP32", "data": logits.tolist()},
        {"name": "labels", "shape": [2000], "datatype": "INT64", "data": labels.tolist()},
    ]
    v2 = orjson.dumps({"inputs": inputs})
    infer = client.post("/v2/models/focal-eval/infer", content=v2)
    assert_error(infer, 413, f"body: {len(v2)} bytes of JSON is over the limit of 4096")
    npz = client.post("/score", content=npz_body(logits=logits, labels=labels), headers=NPZ)
    assert npz.status_code == 200  # binary bodies are not JSON


@pytest.mark.parametrize(
    "settings", [pytest.param({"max_json_bytes": 4096}, id="json_limit_4096")], indirect=True
)
@pytest.mark.parametrize("route", ["/score", "/compute", "/v2/models/focal-eval/infer"])
def test_compressed_json_inflates_no_further_than_the_json_limit(
    client: TestClient, route: str
) -> None:
    bomb = gzip.compress(b" " * (SCORE_LIMIT // 2))  # under the body limit, over the JSON one
    response = client.post(route, content=bomb, headers={**JSON, "content-encoding": "gzip"})
    assert_error(response, 413, "body: decoded size exceeds the limit of 4096 bytes")


def test_a_body_without_room_for_a_buffer_is_received_piece_by_piece(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under strict overcommit a buffer of the declared length may not be mappable: no 500."""
    buffers = BodyBuffers(capacity=4 * LIMIT, smallest=1)

    def no_room(size: int) -> memoryview:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(buffers, "take", no_room)
    receive = _CountingReceive(chunks=3, size=100)
    request = _request(receive, [(b"content-length", b"300")])
    body = asyncio.run(read_body(request, LIMIT, lambda nbytes: None, buffers=buffers))
    assert isinstance(body, bytearray)
    assert bytes(body) == b"x" * 300
