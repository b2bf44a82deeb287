"""The JSON manifest written beside every artifact (``<file>.manifest.json``).

Fields: ``format_version``, ``kind`` (``evaluation`` / ``metrics`` / ``sigmoid_focal_loss`` /
``multilabel_evaluation`` / ``multilabel_metrics`` / ``ranking`` / ``ranking_metrics``: see
:mod:`focal_eval.export.kinds`), ``format`` (``onnx`` / ``torchscript`` / ``torch.export``),
``file``, ``sha256``, ``opset`` (ONNX only), ``inputs`` and ``outputs`` (name, dtype, shape with
``"N"`` for the rows and ``"C"`` / ``"L"`` for the classes / labels; outputs of evaluation-like
graphs also carry their ``group``: per_sample / statistics / metrics), ``defaults`` (multi-class:
gamma, ignore_index, num_bins, alpha; multi-label: gamma, alpha, threshold, ignore_index,
num_bins, score_bins; ranking: ignore_index, score_bins), ``versions`` of the libraries used,
and ``parity``: the worst errors against eager PyTorch measured at export time.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"


def manifest_path(artifact: Path) -> Path:
    """Where the manifest of ``artifact`` lives."""
    return artifact.with_name(artifact.name + MANIFEST_SUFFIX)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of what produced and checked the artifact."""
    versions = {"python": platform.python_version()}
    for package in ("focal-eval", "torch", "onnx", "onnxscript", "onnxruntime", "numpy"):
        versions[package] = importlib.metadata.version(package)
    return versions


def write_manifest(
    artifact: Path,
    *,
    kind: str,
    format: str,
    inputs: list[dict[str, Any]],
    outputs: list[dict[str, Any]],
    defaults: dict[str, Any],
    parity: dict[str, object],
    opset: int | None = None,
) -> Path:
    """Write the manifest of an already-written ``artifact`` and return its path."""
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "format": format,
        "file": artifact.name,
        "sha256": sha256_of(artifact),
    }
    if opset is not None:
        manifest["opset"] = opset
    manifest |= {
        "inputs": inputs,
        "outputs": outputs,
        "defaults": defaults,
        "versions": library_versions(),
        "parity": parity,
    }
    path = manifest_path(artifact)
    path.write_text(json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    return path
