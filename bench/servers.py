"""The naive baseline server for bench/ (the real one: :mod:`focal_eval.service.testing`)."""

from __future__ import annotations

import sys

from focal_eval.service.testing import HOST, Spec, free_port


def naive_spec() -> Spec:
    """The naive baseline (:mod:`bench.baselines.naive_service`) under plain uvicorn."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "bench.baselines.naive_service:app"]
    command += ["--host", HOST, "--port", str(port), "--log-level", "warning", "--no-access-log"]
    return Spec(command, port, "/healthz")
