"""``serve()``: start-up refuses corrupt artifacts (exit 1) and a memory limit too small (2).

Each error is one logged line, never a traceback.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from focal_eval.service import server
from focal_eval.service.core.settings import Settings
from focal_eval.service.memory import derive

pytestmark = pytest.mark.usefixtures("clean_environment")

ARTIFACTS = Path(__file__).resolve().parents[2] / "service" / "artifacts"
EVALUATION_MANIFEST = "evaluation.onnx.manifest.json"
LOG_PREFIX = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ERROR focal_eval\.service\.server: "

FocalServe = Callable[[list[str], dict[str, str]], "subprocess.CompletedProcess[str]"]


@pytest.fixture
def start_up_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process serve(): fail, instead of serving forever, if it gets past its checks.

    The process-wide allocator settings serve() applies are skipped: this is pytest's process.
    """

    def run(self: server.Server, *args: Any) -> None:
        raise AssertionError("serve() got past its start-up checks and began to listen")

    monkeypatch.setattr(server.Server, "run", run)
    monkeypatch.setattr(server, "bound_allocator", lambda: False, raising=False)


# --- a corrupt artifact directory: one error line, exit 1 -------------------------------------


def _corrupt(tmp_path: Path, edit: Callable[[str], str], name: str = EVALUATION_MANIFEST) -> Path:
    """A copy of the shipped artifacts with one manifest's text edited."""
    directory = tmp_path / "artifacts"
    shutil.copytree(ARTIFACTS, directory)
    manifest = directory / name
    edited = edit(manifest.read_text())
    assert edited != manifest.read_text()
    manifest.write_text(edited)
    return directory


def _edit_json(change: Callable[[dict[str, Any]], None]) -> Callable[[str], str]:
    def edit(text: str) -> str:
        manifest = json.loads(text)
        change(manifest)
        return json.dumps(manifest, indent=2)

    return edit


def _gamma_text(value: str) -> Callable[[str], str]:
    return lambda text: text.replace('"gamma": 2.0', f'"gamma": {value}', 1)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        pytest.param(
            _gamma_text("NaN"),
            "{dir}/evaluation.onnx.manifest.json: not a readable JSON manifest (NaN is not JSON)",
            id="nan-gamma",
        ),
        pytest.param(
            _gamma_text("-1"),
            "{dir}/evaluation.onnx: its manifest's defaults are not valid (gamma: expected a"
            " finite number >= 0, got -1)",
            id="negative-gamma",
        ),
        pytest.param(
            _edit_json(lambda manifest: manifest.pop("defaults")),
            "{dir}/evaluation.onnx: its manifest's defaults are not valid (gamma is missing)",
            id="no-defaults",
        ),
    ],
)
def test_corrupt_artifacts_are_one_error_line_and_exit_1(
    focal_serve: FocalServe, tmp_path: Path, edit: Callable[[str], str], reason: str
) -> None:
    directory = _corrupt(tmp_path, edit)
    result = focal_serve([], {"FOCAL_ARTIFACT_DIR": str(directory)})
    assert (result.returncode, result.stdout) == (1, "")
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    expected = "cannot serve the artifacts: " + reason.format(dir=directory)
    assert re.fullmatch(LOG_PREFIX + re.escape(expected), line), line


@pytest.mark.usefixtures("start_up_only")
@pytest.mark.parametrize(
    ("edit", "name"),
    [
        pytest.param(_gamma_text("1e400"), EVALUATION_MANIFEST, id="gamma-overflows-to-infinity"),
        pytest.param(
            _edit_json(lambda manifest: manifest.update(defaults=None)),
            EVALUATION_MANIFEST,
            id="defaults-null",
        ),
        pytest.param(
            _edit_json(lambda manifest: manifest["outputs"][0].pop("group")),
            EVALUATION_MANIFEST,
            id="output-without-group",
        ),
        pytest.param(
            _edit_json(lambda manifest: manifest["defaults"].update(num_bins=16)),
            "metrics.onnx.manifest.json",
            id="metrics-bins-differ",
        ),
        pytest.param(
            lambda text: text.replace('"format_version": 1', '"format_version": NaN', 1),
            "sigmoid_focal_loss.onnx.manifest.json",
            id="unused-manifest-not-json",
        ),
    ],
)
def test_any_corrupt_manifest_is_one_logged_error_and_status_1(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    edit: Callable[[str], str],
    name: str,
) -> None:
    directory = _corrupt(tmp_path, edit, name)
    with caplog.at_level(logging.INFO):
        status = server.serve(make_settings(artifact_dir=directory))
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert status == 1
    assert len(errors) == 1
    assert errors[0].getMessage().startswith(f"cannot serve the artifacts: {directory}/")
    assert errors[0].exc_info is None


# --- a memory limit too small for the settings: exit 2 ----------------------------------------


@pytest.mark.usefixtures("start_up_only")
def test_memory_limit_too_small_for_the_settings_is_status_2(
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    limit = tmp_path / "memory.max"
    limit.write_text(f"{40 * 2**20}\n")
    monkeypatch.setattr(derive, "CGROUP_LIMIT_FILES", ((str(limit), "cgroup v2"),))
    with caplog.at_level(logging.INFO):
        status = server.serve(make_settings())
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert status == 2
    assert len(errors) == 1
    assert re.fullmatch(
        r"FOCAL_MEMORY_LIMIT: the container's memory limit \(cgroup v2\) 40\.0 MiB - process"
        r" [0-9.]+ MiB - monitor at most [0-9.]+ MiB - connections at most 56\.2 MiB - body"
        r" buffers at most 16\.0 MiB - margin 4\.0 MiB leaves -[0-9.]+ MiB for requests \(at"
        r" least 16\.0 MiB needed\): raise the memory limit, or lower FOCAL_MONITOR_MAX_CLASSES,"
        r" FOCAL_MAX_CONNECTIONS, FOCAL_WINDOW_BUCKETS or FOCAL_BODY_BUFFER_BYTES",
        errors[0].getMessage(),
    )
