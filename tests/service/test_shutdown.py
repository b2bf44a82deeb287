"""SIGTERM: stop accepting, finish the request in flight, exit 0."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Iterator

import httpx
import orjson

from focal_eval.service.testing import focal_server
from tests.service._inputs import batch


def test_sigterm_lets_the_request_in_flight_finish_and_exits_zero() -> None:
    logits, labels = batch(2000, 10, seed=0, scale=1.0)
    document = {"logits": logits, "labels": labels}
    body = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    half_sent, terminated = threading.Event(), threading.Event()

    def slowly() -> Iterator[bytes]:
        yield body[: len(body) // 2]
        half_sent.set()
        assert terminated.wait(timeout=10)
        yield body[len(body) // 2 :]

    with focal_server({"FOCAL_THREADS": "1", "FOCAL_SHUTDOWN_TIMEOUT_S": "20"}) as server:
        url, process = server.url, server.process
        outcome: dict[str, httpx.Response] = {}

        def send() -> None:
            outcome["response"] = httpx.post(
                f"{url}/score",
                content=slowly(),
                headers={"content-type": "application/json"},
                timeout=30,
            )

        client = threading.Thread(target=send)
        client.start()
        assert half_sent.wait(timeout=10)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=1)  # must not exit while the request is in flight
            exited_early = True
        except subprocess.TimeoutExpired:
            exited_early = False
        terminated.set()
        client.join(timeout=30)
        assert not exited_early
        assert outcome["response"].status_code == 200
        assert outcome["response"].json()["n"] == 2000
        assert process.wait(timeout=20) == 0
