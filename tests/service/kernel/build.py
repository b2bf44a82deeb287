"""Building variants of the kernel library in tests, with the headers setup.py fetched.

setup.py keeps the pinned onnxruntime C API headers in ``FOCAL_ORT_INCLUDE`` or under
``$XDG_CACHE_HOME/focal-eval`` (``~/.cache``); an installed package has been built, so they
are there.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SOURCES = sorted((Path(__file__).parents[3] / "service" / "kernel").glob("*.cc"))


def header_folder() -> Path:
    """Where setup.py left the headers."""
    given = os.environ.get("FOCAL_ORT_INCLUDE")
    if given:
        return Path(given)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "focal-eval" / "onnxruntime-headers-0.4.9"


def build_library(out: Path, *, prelude: str = "") -> Path:
    """The kernel compiled into ``out`` (a .so), with ``prelude`` included before each source."""
    included = out.with_suffix(".h")
    included.write_text(f"{prelude}\n")
    command = [
        *("g++", "-std=c++17", "-O2", "-fopenmp-simd", "-fno-trapping-math"),
        *("-fPIC", "-shared", "-fvisibility=hidden", f"-I{header_folder()}"),
        *("-include", str(included), *map(str, SOURCES), "-o", str(out)),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return out
