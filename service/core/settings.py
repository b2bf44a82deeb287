"""Server settings from environment variables (prefix ``FOCAL_``), with safe defaults.

Lists (``FOCAL_MONITOR_SOURCES``, ``FOCAL_ALPHA``) are a JSON list or comma-separated values;
byte sizes (``FOCAL_MEMORY_LIMIT``, ``FOCAL_MAX_BODY_BYTES``) are bytes or a number with a
unit (``512Mi``, ``512MiB``, ``300MB``). :func:`describe_error` turns a refused value into
one line naming the variable, which ``focal serve`` prints before exiting with status 2.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ByteSize,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from focal_eval.service.artifacts import default_artifact_dir

ENV_PREFIX = "FOCAL_"
_BYTE_SIZE_TEXT = re.compile(r"^\s*[0-9]+(\.[0-9]+)?\s*([A-Za-z]{1,3})?\s*$")
_KUBERNETES_UNIT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTPE]i)\s*$")
_BYTE_SIZE: TypeAdapter[ByteSize] = TypeAdapter(ByteSize)
_SECRET = frozenset({"auth_token"})  # never echoed in an error message


def _cgroup_cpu_quota() -> float | None:
    """CPUs granted by a cgroup v2 ``cpu.max`` or v1 ``cfs_quota_us``; None when unlimited."""
    for quota_file, period_file in (
        ("/sys/fs/cgroup/cpu.max", None),
        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
    ):
        try:
            fields = Path(quota_file).read_text().split()
            if period_file is not None:
                fields = [fields[0], Path(period_file).read_text().strip()]
            quota, period = fields[:2]
        except (OSError, ValueError, IndexError):
            continue
        if quota in ("max", "-1"):
            return None
        return int(quota) / int(period)
    return None


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota.

    onnxruntime sizes its pool to the host's cores, not the container's quota; this does not.
    """
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = count or 1
    quota = _cgroup_cpu_quota()
    return count if quota is None else max(1, min(count, int(quota)))


def _byte_size(value: Any) -> Any:
    """Accept Kubernetes units (``512Mi``) besides pydantic's (``512MiB``, ``300MB``)."""
    if isinstance(value, str):
        if not _BYTE_SIZE_TEXT.match(value):
            raise ValueError("expected bytes, or a number and a unit such as 512Mi or 300MB")
        match = _KUBERNETES_UNIT.match(value)
        if match:
            value = f"{match.group(1)}{match.group(2)}B"
        return int(_BYTE_SIZE.validate_python(value))
    return value


def _listed(value: Any) -> Any:
    """A list setting: a JSON list, or comma-separated values (``prod,canary``)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return TypeAdapter(list[Any]).validate_json(text)
        return [item.strip() for item in text.split(",")] if text else []
    return value


Bytes = Annotated[int, BeforeValidator(_byte_size)]
Listed = Annotated[list[str], NoDecode, BeforeValidator(_listed)]
ListedFloats = Annotated[list[float] | None, NoDecode, BeforeValidator(_listed)]


class Settings(BaseSettings):
    """Every setting, read from ``FOCAL_<NAME>`` (e.g. ``FOCAL_PORT=9000``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True)

    host: str = Field("127.0.0.1", description="interface to listen on")
    port: int = Field(8000, ge=0, le=65535, description="TCP port")
    artifact_dir: Path = Field(
        default_factory=default_artifact_dir,
        description="directory holding evaluation.onnx / metrics.onnx and their manifests",
    )
    model_name: str = Field("focal-eval", description="model name on the v2 protocol routes")
    gamma: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="default gamma; unset: the manifest's"
    )
    alpha: ListedFloats = Field(
        None, description="default per-class alpha (JSON list or comma-separated); unset: ones"
    )
    ignore_index: int | None = Field(
        None, description="default ignore_index; unset: the manifest's"
    )
    threads: int = Field(
        default_factory=available_cpus,
        ge=1,
        description="onnxruntime intra-op threads; portable-path chunks run at once",
    )
    fast_path: bool = Field(
        True,
        description="score multi-class batches with the fused kernel when it is built and agrees"
        " with the portable graph at start-up",
    )
    kernel_library: Path | None = Field(
        None, description="the fused kernel's library; unset: the one built with the package"
    )
    # --- memory and requests --------------------------------------------------------------
    memory_limit: Bytes | None = Field(
        None,
        ge=16 * 2**20,
        description="byte budget for request work; unset: the container's memory limit (or"
        " half the RAM) less the process, the monitor, connections, kept body buffers and a"
        " 10% margin",
    )
    max_body_bytes: Bytes = Field(256 * 2**20, ge=1024, description="largest accepted body")
    body_buffer_bytes: Bytes = Field(
        16 * 2**20,
        ge=0,
        description="buffers of finished bodies (512 KiB or more) kept for the next ones, in"
        " bytes; part of the memory model; 0: none",
    )
    max_json_bytes: Bytes = Field(
        16 * 2**20,
        ge=1024,
        description="largest JSON text (a /score body, a v2 JSON header); parsing it holds"
        " Python's GIL, about 3 ms per MiB",
    )
    max_classes: int = Field(
        2048, ge=2, le=2**20, description="largest class count scored; more get 422"
    )
    max_in_flight: int = Field(8, ge=1, description="concurrent scoring requests; more get 503")
    body_timeout_s: float = Field(60.0, gt=0, description="time allowed to receive a body")
    # --- connections ----------------------------------------------------------------------
    max_connections: int = Field(
        100, ge=4, description="open connections; the oldest idle one is closed to admit more"
    )
    max_header_bytes: Bytes = Field(
        32 * 1024, ge=1024, description="request line and headers, in bytes; more get 431"
    )
    max_headers: int = Field(100, ge=8, description="header fields per request; more get 431")
    header_timeout_s: float = Field(
        10.0, gt=0, description="time from a request's first byte to the end of its headers"
    )
    idle_timeout_s: float = Field(
        5.0, gt=0, description="a connection with no request in progress is closed after this"
    )
    write_timeout_s: float = Field(
        30.0, gt=0, description="a client that reads nothing of a response for this long is cut"
    )
    shutdown_timeout_s: float = Field(
        30.0, gt=0, description="on SIGTERM, how long in-flight requests may take to finish"
    )
    # --- monitoring -----------------------------------------------------------------------
    monitor_default: bool = Field(
        True, description="whether requests feed the monitor unless they say otherwise"
    )
    monitor_sources: Listed = Field(
        ["default", "canary", "prod"],
        min_length=1,
        description="allowed values of a request's source tag (a Prometheus label); the first"
        " is the default",
    )
    monitor_max_classes: int = Field(
        100, ge=2, description="class count above which batches are scored but not monitored"
    )
    window_samples: int = Field(10_000, ge=1, description="windowed gauges: last W samples")
    window_seconds: float = Field(300.0, gt=0, description="windowed gauges: last T seconds")
    window_buckets: int = Field(
        10, ge=1, le=1000, description="buckets per window: memory and precision of its edges"
    )
    auth_token: SecretStr | None = Field(
        None, description="if set, /score, v2 infer and /reset need 'Authorization: Bearer ...'"
    )
    metrics_auth: bool = Field(False, description="whether /metrics and /summary need the token")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    access_log: bool = Field(False, description="log every request (uvicorn's access log)")

    @property
    def max_decoded_json_bytes(self) -> int:
        """How far a compressed JSON body is inflated: past the JSON limit it is refused anyway."""
        return min(self.max_body_bytes, self.max_json_bytes)

    @field_validator("monitor_sources")
    @classmethod
    def _sources_are_label_values(cls, sources: list[str]) -> list[str]:
        if any(not source or len(source) > 64 for source in sources):
            raise ValueError("sources must be non-empty strings of at most 64 characters")
        if len(set(sources)) != len(sources):
            raise ValueError("sources must be distinct")
        return sources

    @field_validator("alpha")
    @classmethod
    def _alpha_non_negative(cls, alpha: list[float] | None) -> list[float] | None:
        if alpha is not None and not all(a >= 0 and a != float("inf") for a in alpha):
            raise ValueError("alpha must hold finite values >= 0")
        if alpha is not None and len(alpha) < 2:
            raise ValueError("alpha must hold one value per class, at least 2")
        return alpha

    @field_validator("auth_token")
    @classmethod
    def _token_not_blank(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and not token.get_secret_value().strip():
            raise ValueError("an empty or blank token would accept 'Bearer' with no credentials")
        return token


def describe_error(error: ValidationError | SettingsError) -> str:
    """One line naming the ``FOCAL_*`` variable (or flag) at fault and what was wrong.

    Example:
        >>> try:
        ...     Settings(port=-1)
        ... except ValidationError as error:
        ...     print(describe_error(error))
        FOCAL_PORT: Input should be greater than or equal to 0 (got -1)
    """
    if isinstance(error, SettingsError):
        match = re.search(r'field "(\w+)"', str(error))
        name = match.group(1) if match else "settings"
        return f"{ENV_PREFIX}{name.upper()}: not a valid value ({error.__cause__ or error})"
    first = error.errors()[0]
    name = str(first["loc"][0]) if first["loc"] else "settings"
    message = first["msg"].removeprefix("Value error, ")
    if name in _SECRET:
        return f"{ENV_PREFIX}{name.upper()}: {message}"
    shown = repr(first["input"])
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"{ENV_PREFIX}{name.upper()}: {message} (got {shown})"


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once (tests build their own ``Settings``)."""
    return Settings()
