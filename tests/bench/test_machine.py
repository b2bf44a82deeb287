from __future__ import annotations

import platform
from pathlib import Path

import pytest

from bench import machine

V3 = ["fpu", "sse2", "avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"]
V4 = [*V3, "avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"]


@pytest.mark.parametrize(
    ("arch", "flags", "row_loop"),
    [
        pytest.param("x86_64", V4, "x86-64-v4 (AVX-512)", id="avx512"),
        pytest.param("x86_64", V3, "x86-64-v3 (AVX2 + FMA)", id="avx2"),
        pytest.param("x86_64", [f for f in V3 if f != "movbe"], "baseline (x86-64)", id="no-movbe"),
        pytest.param("x86_64", V4[:-1], "x86-64-v3 (AVX2 + FMA)", id="avx512-without-vl"),
        pytest.param("aarch64", V4, "generic", id="not-x86"),
    ],
)
def test_the_row_loop_follows_gccs_levels(arch: str, flags: list[str], row_loop: str) -> None:
    assert machine.kernel_row_loop(arch, flags) == row_loop


def test_a_cpuinfo_gives_the_model_and_the_row_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    cpuinfo = tmp_path / "cpuinfo"
    core = f"processor\t: {{}}\nmodel name\t: AMD EPYC\nflags\t\t: {' '.join(V3)}\n\n"
    cpuinfo.write_text(core.format(0) + core.format(1))
    assert machine.describe(cpuinfo) == {
        "cpu": "AMD EPYC",
        "kernel_row_loop": "x86-64-v3 (AVX2 + FMA)",
    }


def test_no_cpuinfo_says_unknown(tmp_path: Path) -> None:
    assert machine.describe(tmp_path / "absent") == {"cpu": "unknown", "kernel_row_loop": "unknown"}
