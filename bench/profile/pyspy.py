"""py-spy on a running server: record in GIL mode, then rank frames by samples.

GIL mode samples only the thread holding the GIL, so the profile shows Python-level CPU work
(parsing, validation, encoding, framework code) and leaves out time in native code that
releases the GIL (onnxruntime's ``run``, socket waits); :mod:`bench.profile.stages` times
those stages directly.
"""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

RATE = 250  # samples per second


@dataclass(frozen=True)
class Profile:
    """Samples by frame: self (leaf, with its line) and inclusive (function, per stack)."""

    total: int
    self_samples: list[tuple[str, int]]
    inclusive: list[tuple[str, int]]


def executable() -> str:
    """The py-spy binary: next to this interpreter (a venv) or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed: pip install py-spy")
    return found


@contextmanager
def record(pid: int, output: Path, rate: int = RATE) -> Iterator[None]:
    """Record ``pid`` (GIL holder only, without pausing it) while the block runs."""
    command = [executable(), "record", "--pid", str(pid), "--rate", str(rate), "--gil"]
    command += ["--nonblocking", "--format", "raw", "--output", str(output)]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        time.sleep(1.0)  # attach before the traffic starts
        if process.poll() is not None:
            error = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"py-spy failed (needs ptrace permission): {error.strip()}")
        yield
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr:
            process.stderr.close()


def parse(raw: Path, top: int = 12) -> Profile:
    """Rank the frames of a py-spy ``raw`` (collapsed stacks) file.

    Each line is ``frame;frame;...;leaf count`` with frames like ``func (path:line)``.
    """
    leaf: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        leaf[frames[-1]] += count
        for function in {_without_line(frame) for frame in frames}:
            inclusive[function] += count
    return Profile(total, leaf.most_common(top), inclusive.most_common(4 * top))


def _without_line(frame: str) -> str:
    """``"f (a/b.py:12)"`` -> ``"f (a/b.py)"``."""
    name, _, location = frame.partition(" (")
    return f"{name} ({location.rsplit(':', 1)[0].rstrip(')')})" if location else name
