"""A bare HTTP/1.1 server that answers every POST with one canned reply: a client's own floor.

Timing ``tritonclient`` against it measures what the client and the loopback cost by
themselves (building the request, sending it, reading and parsing the reply), with a server
that does no work: the body is read into one buffer that every request reuses, and the reply
is bytes recorded from ``focal serve``'s answer to the same request. Any other method (the
readiness check) gets an empty 200. Connections are kept alive; each has a thread and a
buffer as long as its longest body (bench/ sends its own bodies only); a connection that
goes away or sends a head this cannot read is closed.

Run with ``python -m bench.baselines.canned_server PORT REPLY_FILE``, where ``REPLY_FILE``
holds a whole HTTP response (status line, headers, body); :mod:`bench.servers` does.
"""

from __future__ import annotations

import io
import socketserver
import sys
from pathlib import Path

HOST = "127.0.0.1"
EMPTY = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
MAX_HEAD_LINES = 100


def read_head(stream: io.BufferedIOBase) -> tuple[str, int] | None:
    """The request's method and Content-Length (0 when absent); None at the end of the stream."""
    request_line = stream.readline()
    if not request_line.strip():
        return None
    length = 0
    for _ in range(MAX_HEAD_LINES):
        line = stream.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return request_line.split()[0].decode(), length


def read_body(stream: io.BufferedIOBase, body: bytearray, length: int) -> bytearray:
    """Read ``length`` bytes into ``body`` (grown only when too short); the buffer it used."""
    if len(body) < length:
        body = bytearray(length)
    view = memoryview(body)
    received = 0
    while received < length:
        got = stream.readinto(view[received:length])
        if not got:
            raise ConnectionError(f"the client sent {received} of {length} bytes")
        received += got
    view.release()
    return body


def handler(reply: bytes) -> type[socketserver.StreamRequestHandler]:
    """A handler class answering POSTs on one connection with ``reply``, until it closes."""

    class Canned(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            body = bytearray()
            try:
                while (head := read_head(self.rfile)) is not None:
                    method, length = head
                    body = read_body(self.rfile, body, length)
                    self.wfile.write(reply if method == "POST" else EMPTY)
            except (OSError, ValueError):  # a client gone, or a head it cannot parse: close
                return

    return Canned


def main(argv: list[str]) -> int:
    """Serve ``argv[1]``'s bytes on 127.0.0.1 port ``argv[0]`` until interrupted."""
    port, reply = int(argv[0]), Path(argv[1]).read_bytes()
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    with socketserver.ThreadingTCPServer((HOST, port), handler(reply)) as server:
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
