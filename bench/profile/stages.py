"""The service's request stages, timed in process, and their memory for a large request.

Calls the same functions the routes call (``focal_eval.service.score.codec``,
``focal_eval.service.inference``'s ``decode`` and ``encode``,
``focal_eval.service.core.validation``, ``focal_eval.service.core.scoring``) on prepared bodies, so
that the share of each stage is known without HTTP in the way, including the graph run that py-spy's
GIL mode cannot see. Receiving is emulated as the server does it: 64 KiB chunks appended to one
growing buffer. Memory is reserved against an unlimited budget.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.data import GAMMA, IGNORE_INDEX, make_batch
from bench.memory import MIB, reset_peak, rss_bytes, status_kib, v2_body
from bench.transport import json_body, npz_body
from focal_eval.service.core.batches import Scored, validated
from focal_eval.service.core.scoring import Scorer, Scorers
from focal_eval.service.core.settings import Settings
from focal_eval.service.core.validation import multiclass_batch
from focal_eval.service.http.exchange import Payload
from focal_eval.service.inference.decode import decode_infer_request
from focal_eval.service.inference.encode import encode_infer_response
from focal_eval.service.memory.budget import MemoryBudget
from focal_eval.service.score.codec import decode_json, decode_npz, encode_response

CHUNK = 64 * 1024
Stage = tuple[str, Callable[[Any], Any]]


UNLIMITED = MemoryBudget(2**62)


def receive(body: bytes) -> Payload:
    """The body appended 64 KiB at a time to one buffer, as ``read_body`` does."""
    buffer = bytearray()
    for start in range(0, len(body), CHUNK):
        buffer += body[start : start + CHUNK]
    return Payload(buffer, None)


def pipelines(
    scorer: Scorer, n: int = 10_000, c: int = 100
) -> dict[str, tuple[bytes, list[Stage]]]:
    """Route name -> (body, its stages); each stage takes the previous stage's result."""
    batch = make_batch(n, c)
    v2, v2_headers = v2_body(batch)
    header_length = int(v2_headers["Inference-Header-Content-Length"])
    settings, limit = Settings(), 2**31

    def validate_score(request: Any) -> Any:
        decoded = request.decoded
        return request, validated(scorer, settings, "multiclass", decoded.logits, decoded)

    def score_request(pair: Any) -> Any:
        return pair[0], pair[1], scorer.score(pair[1])

    def encode_score(triple: Any) -> bytes:
        request, batch, outputs = triple
        scored = Scored(batch, outputs, [scorer], False, None)
        return b"".join(encode_response(request, scored, settings))

    def decode_v2(payload: Payload) -> Any:
        return decode_infer_request(payload.data, header_length)

    def validate_v2(request: Any) -> Any:
        inputs = request.inputs
        batch = multiclass_batch(inputs["logits"], inputs["labels"], None, GAMMA, IGNORE_INDEX)
        return request, batch

    def score_v2(pair: Any) -> Any:
        return pair[0], scorer.score(pair[1])

    def encode_v2(pair: Any) -> Any:
        request, outputs = pair
        pieces, _ = encode_infer_response("focal-eval", "1", request.id, outputs, None, True)
        return pieces

    return {
        "json /score": (
            json_body(batch),
            [
                ("receive", receive),
                ("decode (decode_json)", lambda p: decode_json(p, UNLIMITED.reservation())),
                ("validate (multiclass_batch)", validate_score),
                ("graph (Scorer.score)", score_request),
                ("encode (encode_response)", encode_score),
            ],
        ),
        "npz /score": (
            npz_body(batch),
            [
                ("receive", receive),
                (
                    "decode (decode_npz)",
                    lambda payload: decode_npz(
                        payload, {"per_sample": "true"}, limit, UNLIMITED.reservation()
                    ),
                ),
                ("validate (multiclass_batch)", validate_score),
                ("graph (Scorer.score)", score_request),
                ("encode (encode_response)", encode_score),
            ],
        ),
        "v2 binary": (
            v2,
            [
                ("receive", receive),
                ("decode (decode_infer_request)", decode_v2),
                ("validate (multiclass_batch)", validate_v2),
                ("graph (Scorer.score)", score_v2),
                ("encode (encode_infer_response)", encode_v2),
            ],
        ),
    }


def time_stages(body: bytes, stages: list[Stage], repeats: int) -> dict[str, float]:
    """Median seconds of each stage over ``repeats`` whole passes."""
    seconds: dict[str, list[float]] = {name: [] for name, _ in stages}
    for _ in range(repeats + 1):  # the first pass warms up
        value: Any = body
        for name, stage in stages:
            start = time.perf_counter()
            value = stage(value)
            seconds[name].append(time.perf_counter() - start)
    return {name: statistics.median(values[1:]) for name, values in seconds.items()}


def memory_stages(scorer: Scorer, rows: int) -> dict[str, Any]:
    """Peak RSS of this process over each v2 stage for one large binary request (C=10).

    Each stage's peak is measured from the RSS at its start (VmHWM reset through
    ``clear_refs``); ``held`` is what the request holds after the stage, over its start.
    """
    batch = make_batch(rows, 10)
    body, headers = v2_body(batch)
    header_length = int(headers["Inference-Header-Content-Length"])
    del batch
    stages: list[Stage] = [
        ("receive (append chunks)", receive),
        ("decode (decode_infer_request)", lambda p: decode_infer_request(p.data, header_length)),
        (
            "validate (multiclass_batch)",
            lambda r: (
                r,
                multiclass_batch(r.inputs["logits"], r.inputs["labels"], None, GAMMA, -100),
            ),
        ),
        ("graph (Scorer.score)", lambda pair: (pair[0], scorer.score(pair[1]))),
        (
            "encode (encode_infer_response)",
            lambda pair: encode_infer_response("m", "1", None, pair[1], None, True),
        ),
    ]
    pid = os.getpid()
    if not reset_peak(pid):
        return {"error": "cannot reset VmHWM (/proc/self/clear_refs)"}
    start = rss_bytes(pid)
    results: dict[str, Any] = {"payload_mib": len(body) / MIB, "stages": {}}
    kept: list[Any] = []  # the request keeps every stage's result alive, as the route does
    value: Any = body
    for name, stage in stages:
        before = rss_bytes(pid)
        reset_peak(pid)
        value = stage(value)
        kept.append(value)
        peak = status_kib(pid, "VmHWM") * 1024
        results["stages"][name] = {
            "peak_over_stage_start_x_payload": (peak - before) / len(body),
            "held_over_request_start_x_payload": (rss_bytes(pid) - start) / len(body),
        }
    return results


def run(quick: bool) -> dict[str, Any]:
    """Print and return the stage times for each route and the v2 memory stages."""
    scorer = Scorers.load(Settings.model_validate({"threads": 2})).multiclass
    results: dict[str, Any] = {"time": {}}
    for route, (body, stages) in pipelines(scorer).items():
        times = time_stages(body, stages, 3 if quick else 10)
        total = sum(times.values())
        print(f"\n-- {route}, N=10000 C=100, in process: {1e3 * total:.3g} ms in all")
        for name, seconds in times.items():
            print(f"   {100 * seconds / total:5.1f}%  {1e3 * seconds:8.3g} ms  {name}")
        results["time"][route] = times
    rows = 625_000 if quick else 2_500_000
    memory = memory_stages(scorer, rows)
    results["memory"] = memory
    print(f"\n-- v2 binary memory, N={rows} C=10, payload {memory.get('payload_mib', 0):.0f} MiB")
    for name, entry in memory.get("stages", {}).items():
        print(
            f"   peak {entry['peak_over_stage_start_x_payload']:5.2f}x payload over the stage's"
            f" start, then holding {entry['held_over_request_start_x_payload']:5.2f}x  {name}"
        )
    return results
