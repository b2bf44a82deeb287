"""The processor a run happened on: its model, and the copy of the fused kernel's row loop it runs.

Ratios against torch or onnxruntime move with the processor, not only with the code: the
kernel carries a baseline, an AVX2 + FMA (x86-64-v3) and an AVX-512 (x86-64-v4) copy of its
row loop (``service/kernel/op.h``), chosen at load time by the CPU's features, and torch and
onnxruntime make choices of their own. Every run records both, so that two runs' tables can be
told apart.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
UNKNOWN = "unknown"
# the features GCC's x86-64-v3 and x86-64-v4 levels require, as /proc/cpuinfo names them
X86_64_V3 = frozenset({"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"})
X86_64_V4 = X86_64_V3 | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}


def kernel_row_loop(machine: str, flags: Iterable[str]) -> str:
    """The copy of the kernel's row loop a CPU of ``machine`` with these ``flags`` runs.

    Example:
        >>> kernel_row_loop("x86_64", ["sse2", "avx", "avx2", "fma"])
        'baseline (x86-64)'
        >>> kernel_row_loop("aarch64", [])
        'generic'
    """
    if machine != "x86_64":
        return "generic"
    present = set(flags)
    if present >= X86_64_V4:
        return "x86-64-v4 (AVX-512)"
    if present >= X86_64_V3:
        return "x86-64-v3 (AVX2 + FMA)"
    return "baseline (x86-64)"


def describe(cpuinfo: Path = CPUINFO) -> dict[str, str]:
    """``cpu`` (the model name) and ``kernel_row_loop``, from ``cpuinfo`` where there is one."""
    fields: dict[str, str] = {}
    try:
        text = cpuinfo.read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = fields.get("flags")
    return {
        "cpu": fields.get("model name", UNKNOWN),
        "kernel_row_loop": UNKNOWN
        if flags is None
        else kernel_row_loop(platform.machine(), flags.split()),
    }
