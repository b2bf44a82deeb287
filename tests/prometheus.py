"""A real Prometheus for tests: started on 127.0.0.1, scraping given targets every second.

Used by tests/service/test_prometheus.py and tests/deploy. Prometheus comes from the system
(``apt-get install prometheus``): :func:`prometheus` skips the test where it is missing, or
fails it where CI requires it (:mod:`tests.system`). Its scrape and evaluation intervals are
1 s, so a test waits seconds, not minutes, for counters to show up.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson

from focal_eval.service.testing import HOST, free_port, stop
from tests.system import require

INTERVAL = "1s"  # scrape and evaluation interval
READY_TIMEOUT_S = 30.0


@contextmanager
def prometheus(
    targets: Sequence[str], directory: Path, rule_files: Sequence[Path] = ()
) -> Iterator[str]:
    """Prometheus scraping ``targets`` (``host:port``) with its own config and data; its URL.

    ``rule_files`` are loaded, evaluated every second. Prometheus is stopped on exit.
    """
    binary = require("prometheus", "prometheus", "apt-get install prometheus")
    config = directory / "prometheus.yml"
    listed = "".join(f"\n  - '{path}'" for path in rule_files)
    config.write_text(
        f"global:\n  scrape_interval: {INTERVAL}\n  evaluation_interval: {INTERVAL}\n"
        + (f"rule_files:{listed}\n" if rule_files else "")
        + "scrape_configs:\n  - job_name: focal\n    static_configs:\n"
        f"      - targets: [{', '.join(repr(t) for t in targets)}]\n"
    )
    port = free_port()
    log = directory / "prometheus.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address={HOST}:{port}",
                "--log.level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://{HOST}:{port}"
    try:
        _wait_ready(url, process, log)
        yield url
    finally:
        stop(process)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"prometheus not ready within {READY_TIMEOUT_S:g} s")
        time.sleep(0.1)


def api(prometheus: str, path: str, **params: Any) -> Any:
    """``data`` of a successful Prometheus HTTP API answer; AssertionError with its error."""
    response = httpx.get(f"{prometheus}/api/v1/{path}", params=params, timeout=10)
    body = response.json()
    assert (response.status_code, body["status"]) == (200, "success"), (path, params, body)
    return body["data"]


def query(
    prometheus: str,
    promql: str,
    wait_for_series: int = 1,
    timeout_s: float = 40,
    at: float | None = None,
) -> list[dict[str, Any]]:
    """The instant-vector result once it has ``wait_for_series`` series (bounded wait).

    ``at``: the evaluation time (Unix seconds); by default, now. A query Prometheus rejects
    (a syntax error, say) fails at once.
    """
    deadline = time.monotonic() + timeout_s
    params = {"query": promql} if at is None else {"query": promql, "time": f"{at:.3f}"}
    while True:
        result: list[dict[str, Any]] = api(prometheus, "query", **params)["result"]
        if len(result) >= wait_for_series:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"no {wait_for_series} series for {promql!r} within {timeout_s} s")
        time.sleep(0.25)


def post_score(url: str, logits: np.ndarray, labels: np.ndarray, **fields: Any) -> dict[str, Any]:
    """``POST /score`` (JSON, no per-sample arrays) and its JSON answer; it must be a 200."""
    body = {"logits": logits, "labels": labels, "per_sample": False, **fields}
    response = httpx.post(
        f"{url}/score",
        content=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer
