"""``focal serve``'s command line: a bad setting is one line on stderr and exit status 2."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from focal_eval.service import cli, server
from focal_eval.service.core.settings import Settings

pytestmark = pytest.mark.usefixtures("clean_environment")

FocalServe = Callable[[list[str], dict[str, str]], "subprocess.CompletedProcess[str]"]


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
    focal_serve: FocalServe, arguments: list[str], environment: dict[str, str], line: str
) -> None:
    result = focal_serve(arguments, environment)
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
    monkeypatch.setattr(server, "serve", _must_not_serve)
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

    monkeypatch.setattr(server, "serve", serve)
    monkeypatch.setenv("FOCAL_PORT", "abc")
    monkeypatch.setenv("FOCAL_HOST", "0.0.0.0")
    assert cli.main(["serve", "--port", "9001", "--host", "127.0.0.2"]) == 0
    assert [(s.port, s.host) for s in served] == [(9001, "127.0.0.2")]


# --- numpy's BLAS: one thread for serve and evaluate, unless the environment says otherwise ---
BLAS_THREADS = """
import sys
from focal_eval.service import cli
cli._one_blas_thread()
import numpy, threadpoolctl
print(*{p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"})
"""


@pytest.mark.parametrize(
    ("environment", "threads"),
    [
        pytest.param({}, "1", id="default"),
        pytest.param({"OPENBLAS_NUM_THREADS": "2"}, "2", id="the-environment-wins"),
    ],
)
def test_the_commands_keep_numpys_blas_to_one_thread(
    environment: dict[str, str], threads: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    done = subprocess.run(
        [sys.executable, "-c", BLAS_THREADS], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == [threads]
