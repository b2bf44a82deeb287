"""Transport: whole requests over HTTP against their in-process floors and the naive service.

For each shape, every round sends the same prepared bodies (serialising the request is the
client's business and is not timed) and reads the whole response:

- ours, JSON: ``POST /score`` with ``per_sample: true`` (logits as ``logits.tolist()`` would
  send them); its floor: ``orjson.loads`` of the same body, ``np.asarray`` and the graph run,
  in this process;
- ours, binary: ``POST /score`` with an ``.npz`` body, and ``/v2/models/.../infer`` with
  Triton's binary tensors through ``tritonclient.http`` (binary outputs); their floor: the
  graph run alone;
- the v2 client's own floor: the same ``tritonclient`` call against a server that does no work
  (:mod:`bench.baselines.canned_server`: it reads the body and answers with our reply to it,
  recorded), so that what our server adds to a v2 request can be told from what the client
  costs by itself;
- naive (:mod:`bench.baselines.naive_service`): the same JSON body, and the same ``.npz``.
"""

from __future__ import annotations

import io
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import tritonclient.http as triton

from bench.compute import evaluation_session, graph_feeds
from bench.data import IGNORE_INDEX, Batch, case_name, make_batch
from bench.report import Section, Target
from bench.servers import LARGE_JSON, canned_spec, naive_spec
from bench.timing import Candidate, interleave
from focal_eval.service.inference.datatypes import HEADER_LENGTH
from focal_eval.service.testing import Server, focal_spec, serve

SHAPES = ((10_000, 100), (100_000, 10))
MODEL = "focal-eval"
TIMEOUT_S = 120.0
JSON = {"content-type": "application/json"}
NPZ = {"content-type": "application/x-npz"}

JSON_FLOOR = "floor: orjson.loads + np.asarray + graph"
OURS_JSON = "ours: POST /score JSON"
NAIVE_JSON = "naive: POST /score JSON"
GRAPH = "floor: graph alone"
OURS_NPZ = "ours: POST /score npz"
OURS_V2 = "ours: v2 binary (tritonclient)"
CLIENT_FLOOR = "floor: tritonclient, canned reply"
NAIVE_NPZ = "naive: POST /score-npz"


def json_body(batch: Batch) -> bytes:
    """The JSON a Python client sends: ``{"logits": logits.tolist(), ...}``."""
    return orjson.dumps(
        {"logits": batch.logits.tolist(), "labels": batch.labels.tolist(), "per_sample": True}
    )


def npz_body(batch: Batch) -> bytes:
    """An uncompressed ``np.savez`` archive of the logits and labels."""
    buffer = io.BytesIO()
    np.savez(buffer, logits=batch.logits, labels=batch.labels)
    return buffer.getvalue()


def v2_inputs(batch: Batch) -> list[triton.InferInput]:
    """The batch as tritonclient inputs with binary data."""
    logits = triton.InferInput("logits", list(batch.logits.shape), "FP32")
    logits.set_data_from_numpy(batch.logits, binary_data=True)
    labels = triton.InferInput("labels", list(batch.labels.shape), "INT64")
    labels.set_data_from_numpy(batch.labels, binary_data=True)
    return [logits, labels]


def canned_reply(ours: Server, inputs: list[triton.InferInput]) -> bytes:
    """Our whole HTTP response to tritonclient's request for ``inputs``, as it would come."""
    body, header_length = triton.InferenceServerClient.generate_request_body(inputs)
    headers = {} if header_length is None else {HEADER_LENGTH: str(header_length)}
    url = f"{ours.url}/v2/models/{MODEL}/infer"
    response = httpx.post(url, content=body, headers=headers, timeout=TIMEOUT_S)
    if response.status_code != 200:
        raise RuntimeError(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
    kept = [name for name in ("content-type", HEADER_LENGTH.lower()) if name in response.headers]
    head = ["HTTP/1.1 200 OK", *(f"{name}: {response.headers[name]}" for name in kept)]
    head.append(f"content-length: {len(response.content)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + response.content


def canned_server(ours: Server, inputs: list[triton.InferInput], stack: ExitStack) -> Server:
    """A server answering every POST with our reply to ``inputs``; stopped with ``stack``."""
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    reply = folder / "reply.http"
    reply.write_bytes(canned_reply(ours, inputs))
    (server,) = stack.enter_context(serve(canned_spec(reply)))
    return server


def v2_client(server: Server, stack: ExitStack) -> triton.InferenceServerClient:
    """A tritonclient for ``server``, closed with ``stack``."""
    client = triton.InferenceServerClient(
        server.address, connection_timeout=TIMEOUT_S, network_timeout=TIMEOUT_S
    )
    stack.callback(client.close)
    return client


def post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> bytes:
    """POST ``body`` and return the whole response body; anything but 200 is an error."""
    response = client.post(url, content=body, headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
    return response.content


def candidates(
    batch: Batch,
    ours: Server,
    naive: Server,
    stack: ExitStack,
) -> dict[str, Candidate]:
    """The eight candidates for one batch."""
    session = evaluation_session()
    feeds = graph_feeds(batch)
    as_json, as_npz = json_body(batch), npz_body(batch)
    client = stack.enter_context(httpx.Client(timeout=TIMEOUT_S))
    inputs = v2_inputs(batch)
    v2, canned = v2_client(ours, stack), v2_client(canned_server(ours, inputs, stack), stack)

    def json_floor() -> object:
        document: dict[str, Any] = orjson.loads(as_json)
        logits = np.asarray(document["logits"], dtype=np.float32)
        labels = np.asarray(document["labels"], dtype=np.int64)
        return session.run(None, {**feeds, "logits": logits, "labels": labels})

    def ours_v2() -> object:
        return v2.infer(MODEL, inputs).as_numpy("focal_loss")

    def client_floor() -> object:
        return canned.infer(MODEL, inputs).as_numpy("focal_loss")

    return {
        JSON_FLOOR: json_floor,
        OURS_JSON: lambda: post(client, f"{ours.url}/score", as_json, JSON),
        NAIVE_JSON: lambda: post(client, f"{naive.url}/score", as_json, JSON),
        GRAPH: lambda: session.run(None, feeds),
        OURS_NPZ: lambda: post(client, f"{ours.url}/score?per_sample=true", as_npz, NPZ),
        OURS_V2: ours_v2,
        CLIENT_FLOOR: client_floor,
        NAIVE_NPZ: lambda: post(client, f"{naive.url}/score-npz?per_sample=true", as_npz, NPZ),
    }


def run(quick: bool) -> Section:
    """Time every transport on every shape; ratios to the floors and to the naive service."""
    section = Section("transport", "whole HTTP requests, seconds per request (medians)")
    shapes = SHAPES[:1] if quick else SHAPES
    rounds, warmup = (2, 0) if quick else (9, 1)
    with serve(focal_spec(LARGE_JSON), naive_spec()) as (ours, naive):
        for n, c in shapes:
            case = case_name(n, c)
            with ExitStack() as stack:
                timed = interleave(
                    candidates(make_batch(n, c), ours, naive, stack),
                    rounds,
                    min_rounds=rounds,
                    budget_s=60.0,
                    warmup=warmup,
                )
            for name in timed.seconds:
                section.add(case, name, timed.median(name), "s")
            section.compare(
                case, "ours JSON / its floor", timed.ratio(OURS_JSON, JSON_FLOOR), Target("<=", 1.3)
            )
            for name, label in ((OURS_V2, "ours v2 binary"), (OURS_NPZ, "ours npz")):
                section.compare(
                    case, f"{label} / graph alone", timed.ratio(name, GRAPH), Target("<=", 1.5)
                )
            section.compare(
                case, "tritonclient alone / graph alone", timed.ratio(CLIENT_FLOOR, GRAPH)
            )
            section.compare(
                case,
                "ours v2 binary less tritonclient alone / graph alone",
                timed.excess(OURS_V2, CLIENT_FLOOR, GRAPH),
            )
            section.compare(
                case, "naive JSON / ours JSON", timed.ratio(NAIVE_JSON, OURS_JSON), Target(">=", 4)
            )
            for name, label in ((OURS_V2, "ours v2 binary"), (OURS_NPZ, "ours npz")):
                section.compare(
                    case, f"naive npz / {label}", timed.ratio(NAIVE_NPZ, name), Target(">=", 20)
                )
            section.compare(case, "naive JSON / ours v2 binary", timed.ratio(NAIVE_JSON, OURS_V2))
    section.notes.append(
        "servers: focal serve (FOCAL_THREADS=2) and the naive FastAPI service, each its own"
        " uvicorn process on 127.0.0.1; request bodies prepared in advance, responses read whole"
    )
    section.notes.append(
        "tritonclient alone: the same v2 call against a server that reads the body and answers"
        " with our recorded reply (bench/baselines/canned_server.py)"
    )
    section.notes.append(
        "binary targets compare ours against the naive service's npz route (np.load body);"
        f" ignore_index {IGNORE_INDEX}, per-sample arrays returned by every candidate"
    )
    return section
