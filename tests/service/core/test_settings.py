from __future__ import annotations

import os
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from pydantic_settings import SettingsError

from focal_eval.service.core.settings import Settings, describe_error

MIB = 2**20


pytestmark = pytest.mark.usefixtures("clean_environment")  # only the FOCAL_* a test sets


def _read(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> Settings:
    monkeypatch.setenv(name, value)
    return Settings()


def _outcome(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> Settings | str:
    """The settings read with ``name=value``, or describe_error's line if it is refused."""
    monkeypatch.setenv(name, value)
    try:
        return Settings()
    except ValidationError as error:
        return describe_error(error)


def _refusal(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> str:
    """describe_error's line for ``name=value``; fails the test if the value is accepted."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    return describe_error(caught.value)


# --- list settings: a JSON list or comma-separated -------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param('["prod", "canary"]', ["prod", "canary"], id="json"),
        pytest.param(' ["prod","canary"] ', ["prod", "canary"], id="json-padded"),
        pytest.param("prod,canary", ["prod", "canary"], id="commas"),
        pytest.param(" prod , canary ", ["prod", "canary"], id="commas-padded"),
        pytest.param("only", ["only"], id="one-plain"),
        pytest.param('["only"]', ["only"], id="one-json"),
        pytest.param('["a,b", "c"]', ["a,b", "c"], id="json-keeps-commas-in-items"),
    ],
)
def test_monitor_sources_are_a_json_list_or_comma_separated(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    assert _read(monkeypatch, "FOCAL_MONITOR_SOURCES", value).monitor_sources == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("[0.25, 0.75]", [0.25, 0.75], id="json"),
        pytest.param("0.25,0.75", [0.25, 0.75], id="commas"),
        pytest.param(" 1 , 2 ,3 ", [1.0, 2.0, 3.0], id="commas-padded-integers"),
        pytest.param("[0, 1e-3]", [0.0, 0.001], id="json-zero-and-exponent"),
    ],
)
def test_alpha_is_a_json_list_or_comma_separated(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[float]
) -> None:
    assert _read(monkeypatch, "FOCAL_ALPHA", value).alpha == expected


def test_unset_lists_take_their_defaults() -> None:
    read = Settings()
    assert read.monitor_sources == ["default", "canary", "prod"]
    assert read.alpha is None


def test_empty_alpha_is_unset_or_refused_never_a_zero_class_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # FOCAL_ALPHA= (set, empty) must not become a default alpha of 0 classes, which would turn
    # every request without its own alpha into a 422; FOCAL_MONITOR_SOURCES= is refused.
    outcome = _outcome(monkeypatch, "FOCAL_ALPHA", "")
    if isinstance(outcome, str):
        assert outcome.startswith("FOCAL_ALPHA: ")
    else:
        assert outcome.alpha is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(
            '["a",',
            "FOCAL_MONITOR_SOURCES: Invalid JSON: EOF while parsing a value at line 1 column 5"
            " (got '[\"a\",')",
            id="broken-json",
        ),
        pytest.param(
            '["a", "a"]',
            'FOCAL_MONITOR_SOURCES: sources must be distinct (got \'["a", "a"]\')',
            id="duplicate-json",
        ),
        pytest.param(
            "a,a", "FOCAL_MONITOR_SOURCES: sources must be distinct (got 'a,a')", id="duplicate"
        ),
        pytest.param(
            "prod, prod ",
            "FOCAL_MONITOR_SOURCES: sources must be distinct (got 'prod, prod ')",
            id="duplicate-after-stripping",
        ),
        pytest.param(
            "a,,b",
            "FOCAL_MONITOR_SOURCES: sources must be non-empty strings of at most 64 characters"
            " (got 'a,,b')",
            id="empty-item",
        ),
        pytest.param(
            "x" * 65,
            "FOCAL_MONITOR_SOURCES: sources must be non-empty strings of at most 64 characters"
            f" (got '{'x' * 56}...)",
            id="65-characters-shown-shortened",
        ),
        pytest.param(
            "",
            "FOCAL_MONITOR_SOURCES: List should have at least 1 item after validation, not 0"
            " (got [])",
            id="empty",
        ),
        pytest.param(
            "[1, 2]", "FOCAL_MONITOR_SOURCES: Input should be a valid string (got 1)", id="numbers"
        ),
    ],
)
def test_bad_monitor_sources_are_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    assert _refusal(monkeypatch, "FOCAL_MONITOR_SOURCES", value) == message


def test_a_source_of_64_characters_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _read(monkeypatch, "FOCAL_MONITOR_SOURCES", "y" * 64).monitor_sources == ["y" * 64]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("[-1]", "FOCAL_ALPHA: alpha must hold finite values >= 0 (got '[-1]')"),
        pytest.param("1,-0.5", "FOCAL_ALPHA: alpha must hold finite values >= 0 (got '1,-0.5')"),
        pytest.param("inf", "FOCAL_ALPHA: alpha must hold finite values >= 0 (got 'inf')"),
        pytest.param("nan", "FOCAL_ALPHA: alpha must hold finite values >= 0 (got 'nan')"),
        pytest.param(
            "a,b",
            "FOCAL_ALPHA: Input should be a valid number, unable to parse string as a number"
            " (got 'a')",
            id="not-numbers",
        ),
    ],
)
def test_bad_alpha_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    assert _refusal(monkeypatch, "FOCAL_ALPHA", value) == message


# --- byte sizes: bytes, or a number with a unit (Kubernetes' too) ----------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        pytest.param("FOCAL_MEMORY_LIMIT", "16777216", 16 * MIB, id="memory-bytes"),
        pytest.param("FOCAL_MEMORY_LIMIT", "512Mi", 512 * MIB, id="memory-kubernetes-Mi"),
        pytest.param("FOCAL_MEMORY_LIMIT", "512MiB", 512 * MIB, id="memory-MiB"),
        pytest.param("FOCAL_MEMORY_LIMIT", "300MB", 300_000_000, id="memory-MB"),
        pytest.param("FOCAL_MEMORY_LIMIT", "1.5Gi", 3 * 2**29, id="memory-fractional-Gi"),
        pytest.param("FOCAL_MEMORY_LIMIT", " 2 Gi ", 2 * 2**30, id="memory-padded-Gi"),
        pytest.param("FOCAL_MEMORY_LIMIT", "1Ti", 2**40, id="memory-Ti"),
        pytest.param("FOCAL_MAX_BODY_BYTES", "1024", 1024, id="body-bytes"),
        pytest.param("FOCAL_MAX_BODY_BYTES", "64Ki", 65_536, id="body-Ki"),
        pytest.param("FOCAL_MAX_BODY_BYTES", "2KB", 2_000, id="body-KB"),
        pytest.param("FOCAL_MAX_BODY_BYTES", "1Gi", 2**30, id="body-Gi"),
        pytest.param("FOCAL_MAX_HEADER_BYTES", "8192", 8_192, id="header-bytes"),
        pytest.param("FOCAL_MAX_HEADER_BYTES", "16KiB", 16_384, id="header-KiB"),
        pytest.param("FOCAL_MAX_HEADER_BYTES", "64Ki", 65_536, id="header-Ki"),
    ],
)
def test_byte_sizes_accept_bytes_and_units(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: int
) -> None:
    read = _read(monkeypatch, name, value)
    assert getattr(read, name.removeprefix("FOCAL_").lower()) == expected


def test_byte_size_defaults() -> None:
    read = Settings()
    assert (read.memory_limit, read.max_body_bytes, read.max_header_bytes) == (
        None,
        256 * MIB,
        32 * 1024,
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        pytest.param(
            "FOCAL_MEMORY_LIMIT",
            "12xx",
            "FOCAL_MEMORY_LIMIT: could not interpret byte unit: xx (got '12xx')",
            id="unknown-unit",
        ),
        pytest.param(
            "FOCAL_MEMORY_LIMIT",
            "1Ki",
            "FOCAL_MEMORY_LIMIT: Input should be greater than or equal to 16777216 (got '1Ki')",
            id="memory-below-16MiB",
        ),
        pytest.param(
            "FOCAL_MAX_BODY_BYTES",
            "1023",
            "FOCAL_MAX_BODY_BYTES: Input should be greater than or equal to 1024 (got 1023)",
            id="body-below-1KiB",
        ),
        pytest.param(
            "FOCAL_MAX_HEADER_BYTES",
            "-5",
            "FOCAL_MAX_HEADER_BYTES: expected bytes, or a number and a unit such as 512Mi"
            " or 300MB (got '-5')",
            id="negative",
        ),
        pytest.param(
            "FOCAL_MAX_HEADER_BYTES",
            "",
            "FOCAL_MAX_HEADER_BYTES: expected bytes, or a number and a unit such as 512Mi"
            " or 300MB (got '')",
            id="empty",
        ),
    ],
)
def test_bad_byte_sizes_are_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    assert _refusal(monkeypatch, name, value) == message


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("512MiB!!", id="punctuation-after-unit"),
        pytest.param("300MB junk", id="word-after-unit"),
        pytest.param("4096.1.2Mi", id="two-decimal-points"),
    ],
)
def test_byte_size_with_trailing_garbage_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    message = _refusal(monkeypatch, "FOCAL_MAX_BODY_BYTES", value)
    assert message.startswith("FOCAL_MAX_BODY_BYTES: ")


def test_byte_size_ending_in_a_point_is_never_read_as_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Kubernetes reads "2048.Ki" as 2048 KiB; reading it as 2048 bytes is silently wrong.
    outcome = _outcome(monkeypatch, "FOCAL_MAX_BODY_BYTES", "2048.Ki")
    if isinstance(outcome, str):
        assert outcome.startswith("FOCAL_MAX_BODY_BYTES: ")
    else:
        assert outcome.max_body_bytes == 2048 * 1024


# --- the auth token ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param(" ", id="space"),
        pytest.param("\t", id="tab"),
        pytest.param("  \n ", id="spaces-and-newline"),
    ],
)
def test_empty_or_blank_token_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    assert _refusal(monkeypatch, "FOCAL_AUTH_TOKEN", value) == (
        "FOCAL_AUTH_TOKEN: an empty or blank token would accept 'Bearer' with no credentials"
    )


def test_token_is_kept_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    read = _read(monkeypatch, "FOCAL_AUTH_TOKEN", " s3cret-token ")
    assert read.auth_token is not None
    assert read.auth_token.get_secret_value() == " s3cret-token "
    assert "s3cret" not in repr(read)
    assert "s3cret" not in str(read.auth_token)


def test_token_error_never_echoes_the_value() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(auth_token=b"\xff-s3cret-token")
    message = describe_error(caught.value)
    assert message == "FOCAL_AUTH_TOKEN: Input should be a valid string"
    assert "s3cret" not in message


# --- describe_error ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        pytest.param(
            "FOCAL_PORT",
            "abc",
            "FOCAL_PORT: Input should be a valid integer, unable to parse string as an integer"
            " (got 'abc')",
            id="port-not-integer",
        ),
        pytest.param(
            "FOCAL_PORT",
            "70000",
            "FOCAL_PORT: Input should be less than or equal to 65535 (got '70000')",
            id="port-too-large",
        ),
        pytest.param(
            "FOCAL_PORT",
            "9" * 70,
            f"FOCAL_PORT: Input should be less than or equal to 65535 (got '{'9' * 56}...)",
            id="long-value-shortened-to-60-characters",
        ),
        pytest.param(
            "FOCAL_GAMMA", "nan", "FOCAL_GAMMA: Input should be a finite number (got 'nan')"
        ),
        pytest.param(
            "FOCAL_GAMMA",
            "-1",
            "FOCAL_GAMMA: Input should be greater than or equal to 0 (got '-1')",
            id="gamma-negative",
        ),
        pytest.param(
            "FOCAL_LOG_LEVEL",
            "loud",
            "FOCAL_LOG_LEVEL: Input should be 'critical', 'error', 'warning', 'info' or 'debug'"
            " (got 'loud')",
            id="log-level",
        ),
        pytest.param(
            "FOCAL_WINDOW_BUCKETS",
            "0",
            "FOCAL_WINDOW_BUCKETS: Input should be greater than or equal to 1 (got '0')",
            id="window-buckets",
        ),
    ],
)
def test_describe_error_names_the_variable_and_the_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    assert _refusal(monkeypatch, name, value) == message


def test_describe_error_names_the_field_of_a_settings_error() -> None:
    error = SettingsError('error parsing value for field "alpha" from source "EnvSettingsSource"')
    error.__cause__ = ValueError("Expecting value: line 1 column 1 (char 0)")
    assert describe_error(error) == (
        "FOCAL_ALPHA: not a valid value (Expecting value: line 1 column 1 (char 0))"
    )


VARIABLES = (
    "FOCAL_PORT",
    "FOCAL_MEMORY_LIMIT",
    "FOCAL_MAX_HEADER_BYTES",
    "FOCAL_MONITOR_SOURCES",
    "FOCAL_ALPHA",
    "FOCAL_AUTH_TOKEN",
    "FOCAL_LOG_LEVEL",
    "FOCAL_GAMMA",
)
ENVIRONMENT_TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=80,
)


@given(name=st.sampled_from(VARIABLES), value=ENVIRONMENT_TEXT)
@settings(max_examples=200, deadline=None)
def test_any_refused_value_is_one_line_naming_its_variable(name: str, value: str) -> None:
    clean = {key: item for key, item in os.environ.items() if not key.startswith("FOCAL_")}
    with mock.patch.dict(os.environ, {**clean, name: value}, clear=True):
        try:
            Settings()
        except ValidationError as error:
            message = describe_error(error)
        else:
            return
    assert message.startswith(f"{name}: ")
    assert len(message.splitlines()) == 1
    if name == "FOCAL_AUTH_TOKEN":
        assert "(got" not in message
