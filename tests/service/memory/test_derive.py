from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from focal_eval.service.core.settings import Settings
from focal_eval.service.memory import derive
from focal_eval.service.memory.derive import (
    DerivedBudget,
    connection_bytes,
    container_limit,
    derive_budget,
    physical_memory,
    request_budget,
)

MIB = 2**20
V2 = "the container's memory limit (cgroup v2)"
V1 = "the container's memory limit (cgroup v1)"


def _cgroup(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, v2: str | None, v1: str | None = None
) -> None:
    """Point the cgroup files at temporary ones; None leaves a file absent."""
    files = []
    for name, content, version in (("memory.max", v2, "cgroup v2"), ("limit", v1, "cgroup v1")):
        path = tmp_path / name
        if content is not None:
            path.write_text(content)
        files.append((str(path), version))
    monkeypatch.setattr(derive, "CGROUP_LIMIT_FILES", tuple(files))


@pytest.mark.parametrize(
    ("v2", "v1", "expected"),
    [
        pytest.param("max\n", None, None, id="v2-max"),
        pytest.param("536870912\n", None, (536_870_912, V2), id="v2-number"),
        pytest.param(None, "1073741824\n", (1_073_741_824, V1), id="v1-number"),
        pytest.param(None, "9223372036854771712\n", None, id="v1-unlimited-4k-pages"),
        pytest.param(None, "9223372036854710272\n", None, id="v1-unlimited-64k-pages"),
        pytest.param(None, None, None, id="no-cgroup-files"),
        pytest.param("268435456\n", "1073741824\n", (268_435_456, V2), id="v2-before-v1"),
    ],
)
def test_container_limit_reads_cgroup_v2_then_v1(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    v2: str | None,
    v1: str | None,
    expected: tuple[int, str] | None,
) -> None:
    _cgroup(monkeypatch, tmp_path, v2, v1)
    assert container_limit() == expected


def test_physical_memory_is_the_kernels_memtotal() -> None:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            assert physical_memory() == int(line.split()[1]) * 1024
            return
    pytest.fail("no MemTotal in /proc/meminfo")


@pytest.mark.parametrize(
    ("connections", "header_bytes", "expected"),
    [
        pytest.param(100, 32 * 1024, 100 * (3 * 32 + 480) * 1024, id="defaults-56MiB"),
        pytest.param(1, 1024, 3 * 1024 + 480 * 1024, id="one-connection"),
        pytest.param(0, 32 * 1024, 0, id="none"),
    ],
)
def test_connection_bytes_are_three_heads_plus_480_kib_buffers_each(
    connections: int, header_bytes: int, expected: int
) -> None:
    assert connection_bytes(connections, header_bytes) == expected


def test_configured_limit_replaces_the_calculation(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _cgroup(monkeypatch, tmp_path, "1048576\n")  # far too small, but never read
    assert derive_budget(512 * MIB, 10**12, 10**12, 10**12, 10**12) == DerivedBudget(
        512 * MIB, "FOCAL_MEMORY_LIMIT (512.0 MiB)"
    )


def test_budget_is_the_limit_less_process_monitor_connections_buffers_and_ten_percent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _cgroup(monkeypatch, tmp_path, "1073741824\n")
    budget = derive_budget(None, 100 * MIB, 10 * MIB, 50 * MIB, 16 * MIB)
    # 1073741824 - 104857600 - 10485760 - 52428800 - 16777216 - 107374182 (10% of 1 GiB,
    # rounded down)
    assert budget.bytes == 781_818_266
    assert budget.origin == (
        "the container's memory limit (cgroup v2) 1024.0 MiB - process 100.0 MiB - monitor at"
        " most 10.0 MiB - connections at most 50.0 MiB - body buffers at most 16.0 MiB - margin"
        " 102.4 MiB"
    )


def test_without_a_container_limit_the_budget_starts_from_half_the_ram(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _cgroup(monkeypatch, tmp_path, "max\n")
    monkeypatch.setattr(derive, "physical_memory", lambda: 8 * 2**30)
    budget = derive_budget(None, 200 * MIB, 0, 0, 0)
    assert budget.bytes == 4 * 2**30 - 200 * MIB - 429_496_729
    assert budget.origin == (
        "half of the machine's RAM 4096.0 MiB - process 200.0 MiB - monitor at most 0.0 MiB"
        " - connections at most 0.0 MiB - body buffers at most 0.0 MiB - margin 409.6 MiB"
    )


def test_a_limit_leaving_less_than_16_mib_is_refused_with_its_arithmetic(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _cgroup(monkeypatch, tmp_path, "67108864\n")
    with pytest.raises(ValueError, match=r"^FOCAL_MEMORY_LIMIT: ") as caught:
        derive_budget(None, 40 * MIB, 1 * MIB, 4 * MIB, 1 * MIB)
    # 67108864 - 41943040 - 1048576 - 4194304 - 1048576 - 6710886 = 12163482 bytes = 11.6 MiB
    assert str(caught.value) == (
        "FOCAL_MEMORY_LIMIT: the container's memory limit (cgroup v2) 64.0 MiB - process 40.0"
        " MiB - monitor at most 1.0 MiB - connections at most 4.0 MiB - body buffers at most"
        " 1.0 MiB - margin 6.4 MiB leaves 11.6 MiB for requests (at least 16.0 MiB needed):"
        " raise the memory limit, or lower FOCAL_MONITOR_MAX_CLASSES, FOCAL_MAX_CONNECTIONS,"
        " FOCAL_WINDOW_BUCKETS or FOCAL_BODY_BUFFER_BYTES"
    )


@pytest.mark.parametrize(
    ("process", "refused"),
    [
        pytest.param(77_594_624, False, id="exactly-16MiB-left"),
        pytest.param(77_594_625, True, id="one-byte-less"),
    ],
)
def test_16_mib_is_the_smallest_budget(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, process: int, refused: bool
) -> None:
    # limit 100 MiB, margin 10 MiB: 104857600 - 10485760 - 77594624 = 16777216
    _cgroup(monkeypatch, tmp_path, "104857600\n")
    if refused:
        with pytest.raises(ValueError, match=r"leaves 16\.0 MiB for requests \(at least 16\.0"):
            derive_budget(None, process, 0, 0, 0)
    else:
        assert derive_budget(None, process, 0, 0, 0).bytes == 16 * MIB


def test_request_budget_uses_the_configured_limit(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(memory_limit=64 * MIB)
    assert request_budget(settings, lambda classes: 8 * classes * classes) == DerivedBudget(
        64 * MIB, "FOCAL_MEMORY_LIMIT (64.0 MiB)"
    )


def test_request_budget_refuses_a_container_too_small_for_the_settings(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The default settings alone reserve 50 MiB for connections: 40 MiB can never be enough.
    _cgroup(monkeypatch, tmp_path, f"{40 * MIB}\n")
    with pytest.raises(ValueError, match=r"^FOCAL_MEMORY_LIMIT: the container's memory limit"):
        request_budget(make_settings(), lambda classes: 8 * classes * classes)
