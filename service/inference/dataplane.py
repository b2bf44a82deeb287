"""The Open Inference Protocol's model layer, independent of any transport.

What the v2 protocol means for this server: model metadata and readiness by name and version, and
inference from decoded tensors to outputs. The REST routes
(:mod:`focal_eval.service.inference.rest`) decode HTTP bodies into an
:class:`~focal_eval.service.inference.datatypes.InferRequest` and encode what this returns; a gRPC
servicer, or another task's model, would call the same functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy.typing as npt

from focal_eval.service.core.batches import Decoded, Scored, score_decoded
from focal_eval.service.core.errors import RequestError, bad_request, show
from focal_eval.service.core.runtime import Runtime
from focal_eval.service.core.scoring import Scorer
from focal_eval.service.core.tasks import MULTICLASS, MULTILABEL
from focal_eval.service.core.validation import check_bool, check_source_type
from focal_eval.service.http.body import Body
from focal_eval.service.inference.datatypes import InferRequest, manifest_datatype
from focal_eval.service.memory.budget import Reservation

VERSION = "1"
PLATFORM = "onnxruntime_onnx"
MULTILABEL_SUFFIX = "-multilabel"


@dataclass(frozen=True)
class Model:
    """A v2 model: one task's graphs (multi-class with the opt-in ranking graph's outputs)."""

    name: str
    task: str
    scorer: Scorer
    ranking: Scorer | None

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """Every output it can produce, as the manifests state them."""
        graphs = [self.scorer] if self.ranking is None else [self.scorer, self.ranking]
        return [entry for s in graphs for entry in s.evaluation.manifest["outputs"]]


def models(runtime: Runtime) -> dict[str, Model]:
    """The models served: ``FOCAL_MODEL_NAME`` and ``FOCAL_MODEL_NAME-multilabel``.

    The first is multi-class; the second, there with the multi-label graphs, multi-label and
    binary.
    """
    scorers, name = runtime.ready_scorers(), runtime.settings.model_name
    served = {name: Model(name, MULTICLASS, scorers.multiclass, scorers.ranking)}
    if scorers.multilabel is not None:
        label_name = name + MULTILABEL_SUFFIX
        served[label_name] = Model(label_name, MULTILABEL, scorers.multilabel, None)
    return served


def ready_model(runtime: Runtime, name: str, version: str) -> Model:
    """The model ``name`` at ``version``.

    Raises:
        RequestError: 404 for another name or version, 503 while not ready.
    """
    served = models(runtime)
    if name not in served:
        raise RequestError(
            404, f"model {show(name)} not found (this server serves {show(list(served))})"
        )
    if version != VERSION:
        raise RequestError(
            404, f"model {show(name)} has no version {show(version)} (versions: {VERSION})"
        )
    return served[name]


def metadata(runtime: Runtime, name: str, version: str) -> dict[str, Any]:
    """The model's v2 metadata: its graphs' inputs and outputs from the manifests (-1: dynamic)."""
    model = ready_model(runtime, name, version)
    return {
        "name": name,
        "versions": [VERSION],
        "platform": PLATFORM,
        "inputs": [_tensor(entry) for entry in model.scorer.evaluation.manifest["inputs"]],
        "outputs": [_tensor(entry) for entry in model.outputs],
        # which graph scores: "live" for the fused kernel, else why the portable one does
        "parameters": {"fast_path": model.scorer.fast_path.state},
    }


def infer(
    runtime: Runtime,
    route: str,
    model: Model,
    request: InferRequest,
    body: Body,
    reservation: Reservation,
) -> Scored:
    """Score a decoded inference request: every requested output (all when none is named).

    Inputs are the evaluation graph's (logits and its labels input required, the others
    one value each, ``alpha`` per class for multi-class); request parameters ``monitor``
    (bool), ``source`` (str) and ``inputs`` (``probabilities``) as on ``/score``. The
    multi-class model runs its ranking graph when a ranking output is requested (or with
    parameter ``ranking``).

    Raises:
        RequestError: 400 for unknown, missing or ill-shaped inputs and unknown outputs; and
            whatever :func:`~focal_eval.service.core.batches.score_decoded` raises.
    """
    accepted = model.scorer.evaluation.input_names
    labels = model.scorer.task.labels
    inputs = request.inputs
    unknown = [name for name in inputs if name not in accepted]
    if unknown:
        raise bad_request(
            f"inputs: unknown input {show(unknown[0])} (accepted: {', '.join(accepted)})"
        )
    for required in ("logits", labels):
        if required not in inputs:
            raise bad_request(f"inputs: missing required input {show(required)}")
    produced = [entry["name"] for entry in model.outputs]
    for j, wanted in enumerate(request.outputs or ()):
        if wanted.name not in produced:
            raise bad_request(f"outputs[{j}]: no output named {show(wanted.name)}")
    ranking_outputs = set() if model.ranking is None else set(model.ranking.evaluation.output_names)
    asked = {o.name for o in request.outputs or ()}
    ranking = request.parameters.get("ranking")
    if ranking is None and asked & ranking_outputs:
        ranking = True
    monitor = request.parameters.get("monitor")
    alpha = inputs.get("alpha")
    decoded = Decoded(
        inputs["logits"],
        inputs[labels],
        alpha if model.task == MULTICLASS else _scalar(alpha, "alpha"),
        _scalar(inputs.get("gamma"), "gamma"),
        _scalar(inputs.get("ignore_index"), "ignore_index"),
        None if monitor is None else check_bool("parameters.monitor", monitor),
        check_source_type(request.parameters.get("source")),
        inputs=request.parameters.get("inputs"),
        threshold=_scalar(inputs.get("threshold"), "threshold"),
        ranking=ranking,
    )
    per_sample = model.scorer.per_sample_names
    requested = per_sample if request.outputs is None else [o.name for o in request.outputs]
    task = MULTILABEL if model.task == MULTILABEL else MULTICLASS
    return score_decoded(runtime, route, decoded, requested, body, reservation, task)


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
