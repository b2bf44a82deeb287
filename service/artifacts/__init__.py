"""Artifact loading for the server: find by manifest, verify sha256, open in onnxruntime.

The server reads artifacts and their manifests (``<file>.manifest.json``, written by
``focal export``), never Python objects from focal/. The package ships a default evaluation
graph and metrics graph in ``service/artifacts/``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime
from pydantic import TypeAdapter, ValidationError
from typing_extensions import NotRequired, TypedDict

MANIFEST_SUFFIX = ".manifest.json"
SUPPORTED_FORMAT_VERSION = 1
_REQUIRED_FIELDS = ("format_version", "kind", "format", "file", "sha256", "inputs", "outputs")


class _Tensor(TypedDict):
    name: str
    dtype: str
    shape: list[int | str]
    group: NotRequired[Literal["per_sample", "statistics", "metrics"]]


class _Manifest(TypedDict):
    """The fields the server reads, with their types (others are kept, unchecked)."""

    format_version: int
    kind: str
    format: str
    file: str
    sha256: str
    inputs: list[_Tensor]
    outputs: list[_Tensor]
    defaults: NotRequired[dict[str, Any]]


_MANIFEST: TypeAdapter[_Manifest] = TypeAdapter(_Manifest)


WIDTHS = ("C", "L")  # the dynamic width of a graph: classes or labels


@dataclass(frozen=True)
class Output:
    """One output of a graph, as its manifest describes it."""

    name: str
    group: str  # per_sample, statistics or metrics (evaluation graphs); "" otherwise
    dtype: np.dtype[Any]
    shape: tuple[int | str, ...]  # "N" (rows) and the width, "C" (classes) or "L" (labels)

    def elements(self, width: int) -> int:
        """Elements for one row (``"N"`` = 1) at ``width`` classes or labels."""
        return math.prod(1 if d == "N" else width if d in WIDTHS else int(d) for d in self.shape)


def _output(entry: Mapping[str, Any]) -> Output:
    return Output(
        entry["name"], entry.get("group", ""), np.dtype(entry["dtype"]), tuple(entry["shape"])
    )


class ArtifactError(Exception):
    """An artifact that cannot be used: missing, corrupt, or not what its manifest says."""


@dataclass(frozen=True)
class Artifact:
    """An artifact file whose bytes match its manifest's sha256."""

    path: Path
    manifest: dict[str, Any]
    content: bytes

    @property
    def sha256(self) -> str:
        """Hex digest of the file (also the model id the server reports)."""
        return str(self.manifest["sha256"])

    @property
    def kind(self) -> str:
        """``evaluation``, ``metrics`` or ``sigmoid_focal_loss``."""
        return str(self.manifest["kind"])

    @property
    def input_names(self) -> list[str]:
        """Graph inputs in order."""
        return [entry["name"] for entry in self.manifest["inputs"]]

    @property
    def output_names(self) -> list[str]:
        """Graph outputs in order."""
        return [entry["name"] for entry in self.manifest["outputs"]]

    @property
    def outputs(self) -> list[Output]:
        """Graph outputs in order, with their group, dtype and shape."""
        return [_output(entry) for entry in self.manifest["outputs"]]

    @property
    def defaults(self) -> dict[str, Any]:
        """Defaults recorded at export (gamma, ignore_index, num_bins, alpha)."""
        return dict(self.manifest.get("defaults", {}))


def default_artifact_dir() -> Path:
    """This package's folder: the artifacts shipped with the server."""
    return Path(__file__).parent


def load_artifacts(directory: Path, format: str = "onnx") -> dict[str, Artifact]:
    """Every artifact of ``format`` in ``directory``, loaded and verified, by kind.

    Kinds are data: whatever the manifests declare is loaded, and a task takes the kinds it
    needs (the multi-class scorer: ``evaluation`` and ``metrics``).

    Raises:
        ArtifactError: the directory is missing, two manifests declare the same kind, or an
            artifact fails :func:`load_artifact`.
    """
    if not directory.is_dir():
        raise ArtifactError(f"artifact directory {directory} does not exist")
    found: dict[str, list[Path]] = {}
    for manifest_file in sorted(directory.glob(f"*{MANIFEST_SUFFIX}")):
        manifest = _read_manifest(manifest_file)
        if manifest["format"] == format:
            found.setdefault(manifest["kind"], []).append(manifest_file)
    for kind, files in found.items():
        if len(files) > 1:
            names = ", ".join(file.name for file in files)
            raise ArtifactError(
                f"expected one {format} artifact of kind {kind!r} in {directory}, found {names}"
            )
    return {
        kind: load_artifact(files[0].with_name(files[0].name.removesuffix(MANIFEST_SUFFIX)))
        for kind, files in found.items()
    }


def artifact_outputs(directory: Path, format: str = "onnx") -> dict[str, list[Output]]:
    """Every artifact's outputs by kind, as its manifest states them (files not read).

    Raises:
        ArtifactError: the directory is missing, or a manifest cannot be read.
    """
    if not directory.is_dir():
        raise ArtifactError(f"artifact directory {directory} does not exist")
    found: dict[str, list[Output]] = {}
    for manifest_file in sorted(directory.glob(f"*{MANIFEST_SUFFIX}")):
        manifest = _read_manifest(manifest_file)
        if manifest["format"] == format:
            found[manifest["kind"]] = [_output(entry) for entry in manifest["outputs"]]
    return found


def find_artifact(directory: Path, kind: str, format: str = "onnx") -> Artifact:
    """The one artifact of ``kind`` and ``format`` in ``directory`` (see :func:`load_artifacts`).

    Raises:
        ArtifactError: as :func:`load_artifacts`, or there is no artifact of ``kind``.
    """
    return pick(load_artifacts(directory, format), kind, directory, format)


def pick(
    artifacts: dict[str, Artifact], kind: str, directory: Path, format: str = "onnx"
) -> Artifact:
    """The artifact of ``kind`` among those of ``format`` loaded from ``directory``.

    Raises:
        ArtifactError: there is none.
    """
    if kind not in artifacts:
        kinds = ", ".join(sorted(artifacts)) or "none"
        raise ArtifactError(
            f"expected one {format} artifact of kind {kind!r} in {directory}, found none"
            f" ({format} kinds there: {kinds})"
        )
    return artifacts[kind]


def load_artifact(path: Path) -> Artifact:
    """Read ``path`` and its manifest, and verify the file's sha256 and export-time parity.

    Raises:
        ArtifactError: missing file or manifest, malformed manifest, unsupported format
            version, sha256 mismatch (a corrupt or replaced file), or failed parity.
    """
    manifest_file = path.with_name(path.name + MANIFEST_SUFFIX)
    if not manifest_file.is_file():
        raise ArtifactError(f"{path}: manifest {manifest_file.name} is missing")
    manifest = _read_manifest(manifest_file)
    if manifest["file"] != path.name:
        raise ArtifactError(f"{manifest_file}: describes {manifest['file']!r}, not {path.name!r}")
    try:
        content = path.read_bytes()
    except OSError as error:
        raise ArtifactError(f"{path}: cannot read the artifact ({error.strerror})") from error
    actual = hashlib.sha256(content).hexdigest()
    if actual != manifest["sha256"]:
        raise ArtifactError(
            f"{path}: sha256 {actual} does not match its manifest ({manifest['sha256']});"
            " the file is corrupt or was replaced: re-run `focal export`"
        )
    parity = manifest.get("parity", {})
    if parity.get("passed") is False:
        raise ArtifactError(f"{path}: failed its parity check at export ({parity.get('failures')})")
    return Artifact(path, manifest, content)


RELEASE_ARENA = onnxruntime.RunOptions()
"""Run options that free, as the run ends, the arena regions no tensor uses (all but the first)."""
RELEASE_ARENA.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")


def open_session(
    artifact: Artifact,
    intra_op_threads: int,
    libraries: Sequence[Path] = (),
    *,
    arena: bool = False,
) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session over the verified bytes, checked against the manifest.

    The CPU memory arena is off unless ``arena`` (it keeps what it once held, so memory would
    grow with every new input shape; a caller that turns it on must release it with
    :data:`RELEASE_ARENA` runs), and so is intra-op spinning: idle pool threads would
    otherwise busy-wait and take a core from the event loop and from other requests (bench/:
    the graph ran 0.58-0.71x as long without it). ``libraries`` are custom-op libraries the
    graph's nodes need (the fused kernel's).

    Raises:
        ArtifactError: onnxruntime cannot load the bytes, or the graph's inputs / outputs are
            not the manifest's.
    """
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = arena
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        for library in libraries:
            options.register_custom_ops_library(str(library))
        session = onnxruntime.InferenceSession(
            artifact.content, options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # onnxruntime raises its own unexported exception types
        raise ArtifactError(f"{artifact.path}: onnxruntime cannot load it ({error})") from error
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if inputs != artifact.input_names or outputs != artifact.output_names:
        raise ArtifactError(
            f"{artifact.path}: the graph's inputs {inputs} / outputs {outputs} are not the"
            f" manifest's {artifact.input_names} / {artifact.output_names}"
        )
    return session


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _read_manifest(manifest_file: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(manifest_file.read_text(), parse_constant=_not_json)
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ArtifactError(f"{manifest_file}: not a readable JSON manifest ({error})") from error
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{manifest_file}: expected a JSON object")
    missing = [field for field in _REQUIRED_FIELDS if field not in manifest]
    if missing:
        raise ArtifactError(f"{manifest_file}: missing fields {missing}")
    try:
        _MANIFEST.validate_python(manifest)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ArtifactError(f"{manifest_file}: {where}: {first['msg']}") from None
    if manifest["format_version"] != SUPPORTED_FORMAT_VERSION:
        raise ArtifactError(
            f"{manifest_file}: format_version {manifest['format_version']!r} is not supported"
            f" (this server reads version {SUPPORTED_FORMAT_VERSION})"
        )
    return manifest
