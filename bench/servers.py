"""Servers for bench/: the naive baseline; settings for ours (:mod:`focal_eval.service.testing`)."""

from __future__ import annotations

import sys

from focal_eval.service.testing import HOST, Spec, free_port

# bench/ times and measures JSON bodies larger than the default FOCAL_MAX_JSON_BYTES (16Mi)
LARGE_JSON = {"FOCAL_MAX_JSON_BYTES": "256Mi"}


def naive_spec() -> Spec:
    """The naive baseline (:mod:`bench.baselines.naive_service`) under plain uvicorn."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.baselines.naive_service:app"]
    command += ["--host", HOST, "--port", str(port), "--log-level", "warning", "--no-access-log"]
    return Spec(command, port, "/healthz")
