"""``python -m bench [--quick] [--only SECTIONS] [--out FILE]``: run, print, write JSON."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType

from bench import machine
from bench.report import Section, format_section, format_summary, run_metadata, write_json

SECTIONS = ("compute", "tasks", "datasets", "transport", "concurrency", "monitoring", "memory")
DEFAULT_OUT = Path(__file__).parent / "results" / "latest.json"


def _runner(name: str) -> Callable[[bool], Section]:
    """The section's ``run(quick)``, imported late so that ``--only`` imports only what it runs."""
    if name == "compute":
        from bench.compute import run
    elif name == "tasks":
        from bench.tasks import run
    elif name == "datasets":
        from bench.datasets import run
    elif name == "transport":
        from bench.transport import run
    elif name == "concurrency":
        from bench.concurrency import run
    elif name == "monitoring":
        from bench.monitoring import run
    else:
        from bench.memory import run
    return run


def _sections(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(SECTIONS)}, got {text!r}"
        )
    return names


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into SystemExit, so that every ``finally`` stops its server subprocess."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen sections in order, print each table as it completes, write the JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Side-by-side benchmarks: medians and paired ratios against their targets."
        " Never a pass / fail test: the exit status is 0 whether targets are met or not.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller runs (< 1 min)")
    parser.add_argument(
        "--only",
        type=_sections,
        default=list(SECTIONS),
        help=f"comma-separated sections (default: {','.join(SECTIONS)})",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default: {DEFAULT_OUT})"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    results: list[Section] = []
    started = time.monotonic()
    cpu = machine.describe()
    print(f"processor: {cpu['cpu']}; the fused kernel's row loop: {cpu['kernel_row_loop']}\n")
    for name in args.only:
        section_start = time.monotonic()
        results.append(_runner(name)(args.quick))
        print(format_section(results[-1]))
        print(f"  ({name}: {time.monotonic() - section_start:.0f} s)\n", flush=True)
    print(format_summary(results))
    meta = run_metadata(args.quick, args.only)
    meta["seconds"] = round(time.monotonic() - started, 1)
    write_json(args.out, results, meta)
    print(f"wrote {args.out} ({meta['seconds']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
