"""Raw HTTP for the real-server tests: request heads and v2 bodies, a timed socket, one reply
read off it, a float64 loss.

Raw sockets give byte-level control of what arrives when; the reply reader takes exactly one
response, framed by Content-Length or chunked.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import tritonclient.http as triton

from focal_eval.service.testing import HOST, Server

SOCKET_TIMEOUT_S = 10.0  # no socket operation of these tests may block longer
V2_INFER = "/v2/models/focal-eval/infer"


@dataclass(frozen=True)
class Reply:
    """A response read off a raw socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def error(self) -> str:
        """The ``{"error": ...}`` message of a JSON error body, else the body as text."""
        try:
            document = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            document = None
        if isinstance(document, dict) and isinstance(document.get("error"), str):
            return str(document["error"])
        return self.body.decode(errors="replace")


def upload_head(
    path: str,
    length: int,
    content_type: str = "application/json",
    fields: Mapping[str, str] | None = None,
) -> bytes:
    """A POST head for a body of ``length`` bytes, with extra header ``fields``."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in (fields or {}).items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def v2_binary_body(
    logits: np.ndarray, labels: np.ndarray, outputs: Sequence[str] | None = None
) -> tuple[bytes, dict[str, str]]:
    """A v2 body of binary tensors as tritonclient builds it, and the header field it needs.

    ``outputs`` are asked for as binary (all of them, binary, when None).
    """
    inputs = []
    for name, array, datatype in (("logits", logits, "FP32"), ("labels", labels, "INT64")):
        tensor = triton.InferInput(name, list(array.shape), datatype)
        inputs.append(tensor.set_data_from_numpy(array, binary_data=True))
    requested = None
    if outputs is not None:
        requested = [triton.InferRequestedOutput(name, binary_data=True) for name in outputs]
    body, header_length = triton.InferenceServerClient.generate_request_body(inputs, requested)
    return bytes(body), {"Inference-Header-Content-Length": str(header_length)}


def connect(server: Server, receive_buffer: int | None = None) -> socket.socket:
    """A TCP connection to ``server``; every operation on it times out."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:  # before connect, so the advertised window stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(SOCKET_TIMEOUT_S)
    sock.connect((HOST, server.port))
    return sock


def receive_reply(sock: socket.socket) -> Reply:
    """Read one response: status line, headers, then its body (Content-Length or chunked).

    What the socket gave past that response is dropped: for responses to pipelined
    requests, use :func:`receive_replies`.
    """
    return _reply(sock, b"")[0]


def receive_replies(sock: socket.socket, count: int) -> list[Reply]:
    """Read ``count`` responses in a row (to pipelined requests), keeping each one's bytes."""
    replies: list[Reply] = []
    data = b""
    for _ in range(count):
        reply, data = _reply(sock, data)
        replies.append(reply)
    return replies


def _reply(sock: socket.socket, data: bytes) -> tuple[Reply, bytes]:
    """One response whose first bytes are ``data``, and the bytes read past its end."""
    while b"\r\n\r\n" not in data:
        data += _more(sock, f"connection closed before a complete response head: {data!r}")
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(rest) < length:
            rest += _more(sock, f"connection closed {length - len(rest)} bytes short of the body")
        body, rest = rest[:length], rest[length:]
    else:
        assert headers.get("transfer-encoding") == "chunked", headers
        body, rest = _dechunk(sock, rest)
    return Reply(int(status_line.split()[1]), headers, body), rest


def focal_loss64(logits: np.ndarray, labels: np.ndarray, gamma: float) -> np.ndarray:
    """Float64 hand formula, per sample: -(1 - p_t)^gamma log p_t."""
    z = logits.astype(np.float64)
    log_p = z - z.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    log_pt = log_p[np.arange(len(labels)), labels]
    loss: np.ndarray = -((1 - np.exp(log_pt)) ** gamma) * log_pt
    return loss


def _more(sock: socket.socket, closed: str) -> bytes:
    chunk = sock.recv(65536)
    assert chunk, closed
    return chunk


def _dechunk(sock: socket.socket, data: bytes) -> tuple[bytes, bytes]:
    """A chunked body, ``data`` being what was read past the head; and what follows it."""
    parts: list[bytes] = []
    while True:
        while b"\r\n" not in data:
            data += _more(sock, "connection closed inside a chunked body")
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        while len(data) < size + 2:  # the chunk and its CRLF
            data += _more(sock, "connection closed inside a chunked body")
        if size == 0:
            return b"".join(parts), data[2:]  # past the last chunk's CRLF
        parts.append(data[:size])
        data = data[size + 2 :]
