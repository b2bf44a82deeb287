"""Server settings from environment variables (prefix ``FOCAL_``), with safe defaults."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.artifacts import default_artifact_dir


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota.

    onnxruntime sizes its pool to the host's cores, not the container's quota; this does not.
    """
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = count or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return count
    if quota == "max":
        return count
    return max(1, min(count, int(quota) // int(period)))


class Settings(BaseSettings):
    """Every setting, read from ``FOCAL_<NAME>`` (e.g. ``FOCAL_PORT=9000``)."""

    model_config = SettingsConfigDict(env_prefix="FOCAL_", frozen=True)

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
    alpha: list[float] | None = Field(
        None, description="default per-class alpha as a JSON list; unset: all ones"
    )
    ignore_index: int | None = Field(
        None, description="default ignore_index; unset: the manifest's"
    )
    threads: int = Field(
        default_factory=available_cpus, ge=1, description="onnxruntime intra-op threads"
    )
    max_body_bytes: int = Field(256 * 2**20, ge=1024, description="largest accepted body")
    max_in_flight: int = Field(8, ge=1, description="concurrent scoring requests; more get 503")
    body_timeout_s: float = Field(60.0, gt=0, description="time allowed to receive a body")
    shutdown_timeout_s: float = Field(
        30.0, gt=0, description="on SIGTERM, how long in-flight requests may take to finish"
    )
    monitor_default: bool = Field(
        True, description="whether requests feed the monitor unless they say otherwise"
    )
    monitor_sources: list[str] = Field(
        ["default", "canary", "prod"],
        min_length=1,
        description="allowed values of a request's source tag (a Prometheus label); the first"
        " is the default",
    )
    monitor_max_classes: int = Field(
        100, ge=2, description="per-class series only for batches with at most this many classes"
    )
    window_samples: int = Field(10_000, ge=1, description="windowed gauges: last W samples")
    window_seconds: float = Field(300.0, gt=0, description="windowed gauges: last T seconds")
    auth_token: SecretStr | None = Field(
        None, description="if set, /score, v2 infer and /reset need 'Authorization: Bearer ...'"
    )
    metrics_auth: bool = Field(False, description="whether /metrics and /summary need the token")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    access_log: bool = Field(False, description="log every request (uvicorn's access log)")

    @field_validator("monitor_sources")
    @classmethod
    def _sources_are_label_values(cls, sources: list[str]) -> list[str]:
        if any(not source or len(source) > 64 for source in sources):
            raise ValueError("sources must be non-empty strings of at most 64 characters")
        return sources

    @field_validator("alpha")
    @classmethod
    def _alpha_non_negative(cls, alpha: list[float] | None) -> list[float] | None:
        if alpha is not None and not all(a >= 0 and a != float("inf") for a in alpha):
            raise ValueError("alpha must hold finite values >= 0")
        return alpha


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once (tests build their own ``Settings``)."""
    return Settings()
