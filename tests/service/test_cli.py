from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service import cli, server
from service.core.settings import Settings
from service.memory import derive as memory_limit

ARTIFACTS = Path(__file__).resolve().parents[2] / "service" / "artifacts"
EVALUATION_MANIFEST = "evaluation.onnx.manifest.json"
LOG_PREFIX = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ERROR service\.server: "


@pytest.fixture(autouse=True)
def _no_focal_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FOCAL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def start_up_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process serve(): fail, instead of serving forever, if it gets past its checks.

    The process-wide allocator settings serve() applies are skipped: this is pytest's process.
    """

    def run(self: server.Server, *args: Any) -> None:
        raise AssertionError("serve() got past its start-up checks and began to listen")

    monkeypatch.setattr(server.Server, "run", run)
    monkeypatch.setattr(server, "bound_allocator", lambda: False, raising=False)


def _focal_serve(
    arguments: list[str], environment: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``python -m service serve ...``: it must exit before listening (timeout otherwise)."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("FOCAL_")}
    return subprocess.run(
        [sys.executable, "-m", "service", "serve", *arguments],
        env={**clean, "FOCAL_PORT": "0", "FOCAL_THREADS": "1", **environment},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- a bad setting: one line, exit 2 (a real process) ----------------------------------------


@pytest.mark.parametrize(
    ("arguments", "environment", "line"),
    [
        pytest.param(
            [],
            {"FOCAL_MONITOR_SOURCES": '["a",'},
            "focal serve: FOCAL_MONITOR_SOURCES: Invalid JSON: EOF while parsing a value at line 1"
            " column 5 (got '[\"a\",')",
            id="sources-broken-json",
        ),
        pytest.param(
            [],
            {"FOCAL_AUTH_TOKEN": " "},
            "focal serve: FOCAL_AUTH_TOKEN: an empty or blank token would accept 'Bearer' with"
            " no credentials",
            id="blank-token",
        ),
        pytest.param(
            [],
            {"FOCAL_PORT": "abc"},
            "focal serve: FOCAL_PORT: Input should be a valid integer, unable to parse string as"
            " an integer (got 'abc')",
            id="port-variable",
        ),
        pytest.param(
            ["--port", "abc"],
            {},
            "focal serve: argument --port: invalid int value: 'abc'",
            id="port-flag",
        ),
        pytest.param(
            [],
            {"FOCAL_MEMORY_LIMIT": "12xx"},
            "focal serve: FOCAL_MEMORY_LIMIT: could not interpret byte unit: xx (got '12xx')",
            id="memory-limit-unit",
        ),
    ],
)
def test_bad_setting_is_one_line_on_stderr_and_exit_2(
    arguments: list[str], environment: dict[str, str], line: str
) -> None:
    result = _focal_serve(arguments, environment)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", line + "\n")


# --- the same, in-process, for more values ----------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "environment", "line"),
    [
        pytest.param(
            ["--port", "70000"],
            {},
            "focal serve: FOCAL_PORT: Input should be less than or equal to 65535 (got 70000)",
            id="port-flag-out-of-range",
        ),
        pytest.param(
            ["--bogus"], {}, "focal serve: unrecognized arguments: --bogus", id="unknown-flag"
        ),
        pytest.param(
            ["--port"], {}, "focal serve: argument --port: expected one argument", id="no-value"
        ),
        pytest.param(
            [],
            {"FOCAL_MONITOR_SOURCES": "prod,prod"},
            "focal serve: FOCAL_MONITOR_SOURCES: sources must be distinct (got 'prod,prod')",
            id="duplicate-sources",
        ),
        pytest.param(
            [],
            {"FOCAL_AUTH_TOKEN": ""},
            "focal serve: FOCAL_AUTH_TOKEN: an empty or blank token would accept 'Bearer' with"
            " no credentials",
            id="empty-token",
        ),
        pytest.param(
            [],
            {"FOCAL_MAX_HEADER_BYTES": "1Ki", "FOCAL_MAX_BODY_BYTES": "1000"},
            "focal serve: FOCAL_MAX_BODY_BYTES: Input should be greater than or equal to 1024"
            " (got 1000)",
            id="body-bytes-too-small",
        ),
    ],
)
def test_bad_setting_in_process_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    environment: dict[str, str],
    line: str,
) -> None:
    monkeypatch.setattr(cli, "serve", _must_not_serve)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    try:
        status = cli.main(["serve", *arguments])
    except SystemExit as error:  # argparse's errors exit
        status = error.code  # type: ignore[assignment]
    captured = capsys.readouterr()
    assert (status, captured.out, captured.err) == (2, "", line + "\n")


def _must_not_serve(settings: Settings) -> int:
    raise AssertionError(f"a bad setting reached serve(): {settings}")


def test_flags_win_over_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[Settings] = []

    def serve(settings: Settings) -> int:
        served.append(settings)
        return 0

    monkeypatch.setattr(cli, "serve", serve)
    monkeypatch.setenv("FOCAL_PORT", "abc")
    monkeypatch.setenv("FOCAL_HOST", "0.0.0.0")
    assert cli.main(["serve", "--port", "9001", "--host", "127.0.0.2"]) == 0
    assert [(s.port, s.host) for s in served] == [(9001, "127.0.0.2")]


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
            "{dir}/evaluation.onnx: its manifest's defaults are not valid ('num_bins')",
            id="no-defaults",
        ),
    ],
)
def test_corrupt_artifacts_are_one_error_line_and_exit_1(
    tmp_path: Path, edit: Callable[[str], str], reason: str
) -> None:
    directory = _corrupt(tmp_path, edit)
    result = _focal_serve([], {"FOCAL_ARTIFACT_DIR": str(directory)})
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
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    edit: Callable[[str], str],
    name: str,
) -> None:
    directory = _corrupt(tmp_path, edit, name)
    with caplog.at_level(logging.INFO):
        status = server.serve(Settings(artifact_dir=directory, threads=1))
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert status == 1
    assert len(errors) == 1
    assert errors[0].getMessage().startswith(f"cannot serve the artifacts: {directory}/")
    assert errors[0].exc_info is None


# --- a memory limit too small for the settings: exit 2 ----------------------------------------


@pytest.mark.usefixtures("start_up_only")
def test_memory_limit_too_small_for_the_settings_is_status_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    limit = tmp_path / "memory.max"
    limit.write_text(f"{40 * 2**20}\n")
    monkeypatch.setattr(memory_limit, "CGROUP_LIMIT_FILES", ((str(limit), "cgroup v2"),))
    with caplog.at_level(logging.INFO):
        status = server.serve(Settings(threads=1))
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert status == 2
    assert len(errors) == 1
    assert re.fullmatch(
        r"FOCAL_MEMORY_LIMIT: the container's memory limit \(cgroup v2\) 40\.0 MiB - process"
        r" [0-9.]+ MiB - monitor at most [0-9.]+ MiB - connections at most 56\.2 MiB - margin"
        r" 4\.0 MiB leaves -[0-9.]+ MiB for requests \(at least 16\.0 MiB needed\): raise the"
        r" memory limit, or lower FOCAL_MONITOR_MAX_CLASSES, FOCAL_MAX_CONNECTIONS or"
        r" FOCAL_WINDOW_BUCKETS",
        errors[0].getMessage(),
    )
