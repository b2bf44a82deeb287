"""The Open Inference Protocol's model layer, independent of any transport.

What the v2 protocol means for this server: model metadata and readiness by name and version, and
inference from decoded tensors to outputs. The REST routes
(:mod:`focal_eval.service.inference.rest`) decode HTTP bodies into an
:class:`~focal_eval.service.inference.datatypes.InferRequest` and encode what this returns; a gRPC
servicer, or another task's model, would call the same functions.
"""

from __future__ import annotations

from typing import Any

import numpy.typing as npt

from focal_eval.service.core.batches import Buffer, Decoded, Scored, score_decoded
from focal_eval.service.core.errors import RequestError, bad_request, show
from focal_eval.service.core.runtime import Runtime
from focal_eval.service.core.scoring import Scorer
from focal_eval.service.core.validation import check_bool, check_source_type
from focal_eval.service.inference.datatypes import InferRequest, manifest_datatype
from focal_eval.service.memory.budget import Reservation

VERSION = "1"
INPUTS = ("logits", "labels", "alpha", "gamma", "ignore_index")
REQUIRED = ("logits", "labels")
PLATFORM = "onnxruntime_onnx"


def ready_model(runtime: Runtime, name: str, version: str) -> Scorer:
    """The scorer serving model ``name`` at ``version``.

    Raises:
        RequestError: 404 for another name or version, 503 while not ready.
    """
    if name != runtime.settings.model_name:
        raise RequestError(
            404,
            f"model {show(name)} not found"
            f" (this server serves {show(runtime.settings.model_name)})",
        )
    if version != VERSION:
        raise RequestError(
            404, f"model {show(name)} has no version {show(version)} (versions: {VERSION})"
        )
    return runtime.ready_scorer()


def metadata(runtime: Runtime, name: str, version: str) -> dict[str, Any]:
    """The model's v2 metadata: its graph's inputs and outputs from the manifest (-1: dynamic)."""
    manifest = ready_model(runtime, name, version).evaluation.manifest
    return {
        "name": name,
        "versions": [VERSION],
        "platform": PLATFORM,
        "inputs": [_tensor(entry) for entry in manifest["inputs"]],
        "outputs": [_tensor(entry) for entry in manifest["outputs"]],
    }


def infer(
    runtime: Runtime, route: str, request: InferRequest, body: Buffer, reservation: Reservation
) -> Scored:
    """Score a decoded inference request: every requested output (all when none is named).

    Request parameters ``monitor`` (bool) and ``source`` (str) choose monitoring as on
    ``/score``; inputs ``gamma`` and ``ignore_index`` are one value each.

    Raises:
        RequestError: 400 for unknown, missing or ill-shaped inputs and unknown outputs; and
            whatever :func:`~focal_eval.service.core.batches.score_decoded` raises.
    """
    scorer = runtime.ready_scorer()
    inputs = request.inputs
    unknown = [name for name in inputs if name not in INPUTS]
    if unknown:
        raise bad_request(
            f"inputs: unknown input {show(unknown[0])} (accepted: {', '.join(INPUTS)})"
        )
    for required in REQUIRED:
        if required not in inputs:
            raise bad_request(f"inputs: missing required input {show(required)}")
    produced = scorer.evaluation.output_names
    for j, wanted in enumerate(request.outputs or ()):
        if wanted.name not in produced:
            raise bad_request(f"outputs[{j}]: no output named {show(wanted.name)}")
    monitor = request.parameters.get("monitor")
    decoded = Decoded(
        inputs["logits"],
        inputs["labels"],
        inputs.get("alpha"),
        _scalar(inputs.get("gamma"), "gamma"),
        _scalar(inputs.get("ignore_index"), "ignore_index"),
        None if monitor is None else check_bool("parameters.monitor", monitor),
        check_source_type(request.parameters.get("source")),
    )
    requested = (
        scorer.per_sample_names if request.outputs is None else [o.name for o in request.outputs]
    )
    return score_decoded(runtime, route, decoded, requested, body, reservation)


def _scalar(tensor: npt.NDArray[Any] | None, name: str) -> Any:
    if tensor is None:
        return None
    if tensor.size != 1:
        raise bad_request(
            f"inputs ({name}): expected one value (shape [] or [1]),"
            f" got shape {list(tensor.shape)}",
        )
    return tensor.reshape(()).item()


def _tensor(entry: dict[str, Any]) -> dict[str, Any]:
    shape = [dim if isinstance(dim, int) else -1 for dim in entry["shape"]]
    return {"name": entry["name"], "datatype": manifest_datatype(entry["dtype"]), "shape": shape}
