"""Profile a real ``focal serve`` under each kind of request, with py-spy in GIL mode."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.data import make_batch
from bench.profile.pyspy import RATE, parse, record
from bench.servers import LARGE_JSON
from bench.transport import (
    JSON,
    MODEL,
    NPZ,
    TIMEOUT_S,
    json_body,
    npz_body,
    post,
    v2_client,
    v2_inputs,
)
from focal_eval.service.testing import Server, focal_server

# Frames that only say "some thread is running": left out of the inclusive ranking.
PLUMBING = ("threading.py", "<frozen runpy>", "runners.py", "uvicorn/main.py", "service/cli.py")

Scenario = tuple[int, Callable[[], object]]


def scenarios(server: Server, stack: ExitStack, quick: bool) -> dict[str, Scenario]:
    """Name -> (request count, one request); clients close with ``stack``."""
    big, small = make_batch(10_000, 100), make_batch(64, 10)
    as_json, as_npz = json_body(big), npz_body(big)
    small_json = orjson.dumps(
        {"logits": small.logits.tolist(), "labels": small.labels.tolist(), "per_sample": True}
    )
    client = stack.enter_context(httpx.Client(timeout=TIMEOUT_S))
    v2 = v2_client(server, stack)
    inputs = v2_inputs(big)
    scale = 3 if quick else 1

    def v2_infer() -> object:
        return v2.infer(MODEL, inputs).as_numpy("focal_loss")

    return {
        "json /score N=10000 C=100": (
            15 // scale,
            lambda: post(client, f"{server.url}/score", as_json, JSON),
        ),
        "npz /score N=10000 C=100": (
            60 // scale,
            lambda: post(client, f"{server.url}/score?per_sample=true", as_npz, NPZ),
        ),
        "v2 binary (tritonclient) N=10000 C=100": (60 // scale, v2_infer),
        "json /score N=64 C=10 (small)": (
            600 // scale,
            lambda: post(client, f"{server.url}/score", small_json, JSON),
        ),
    }


def run(out: Path, quick: bool) -> dict[str, Any]:
    """Profile each scenario on one server; print and return the top frames."""
    results: dict[str, Any] = {}
    with focal_server(LARGE_JSON) as server, ExitStack() as stack:
        for index, (name, (count, request)) in enumerate(scenarios(server, stack, quick).items()):
            for _ in range(3):
                request()
            raw = out / f"server-{index}.txt"
            with record(server.pid, raw):
                start = time.perf_counter()
                for _ in range(count):
                    request()
                elapsed = time.perf_counter() - start
            results[name] = _summarise(name, raw, count, elapsed)
    return results


def _summarise(name: str, raw: Path, count: int, elapsed: float) -> dict[str, Any]:
    profile = parse(raw)
    busy = profile.total / (RATE * elapsed)
    inclusive = [
        (frame, samples)
        for frame, samples in profile.inclusive
        if not any(marker in frame for marker in PLUMBING)
    ][:10]
    print(
        f"\n-- {name}: {count} requests, {1e3 * elapsed / count:.3g} ms each while profiled;"
        f" the server held the GIL {100 * busy:.0f}% of the time ({raw})"
    )
    for title, rows in (("self (leaf frame:line)", profile.self_samples), ("inclusive", inclusive)):
        print(f"   {title}:")
        for frame, samples in rows:
            print(f"   {100 * samples / max(profile.total, 1):5.1f}%  {frame}")
    return {
        "requests": count,
        "seconds_per_request": elapsed / count,
        "gil_busy_share": busy,
        "samples": profile.total,
        "self": profile.self_samples,
        "inclusive": inclusive,
        "raw": str(raw),
    }
