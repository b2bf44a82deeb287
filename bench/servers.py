"""Servers for bench/: the naive baseline, a canned reply, settings for ours (service.testing)."""

from __future__ import annotations

import sys
from pathlib import Path

from focal_eval.service.testing import HOST, Spec, free_port

# bench/ times and measures JSON bodies larger than the default FOCAL_MAX_JSON_BYTES (16Mi)
LARGE_JSON = {"FOCAL_MAX_JSON_BYTES": "256Mi"}


def naive_spec() -> Spec:
    """The naive baseline (:mod:`bench.baselines.naive_service`) under plain uvicorn."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.baselines.naive_service:app"]
    command += ["--host", HOST, "--port", str(port), "--log-level", "warning", "--no-access-log"]
    return Spec(command, port, "/healthz")


def canned_spec(reply: Path) -> Spec:
    """A server answering each POST with ``reply``'s bytes (``bench.baselines.canned_server``)."""
    port = free_port()
    return Spec(
        [sys.executable, "-m", "bench.baselines.canned_server", str(port), str(reply)], port, "/"
    )
