"""``focal report INPUT --out REPORT.html``: one offline HTML page of a result's figures.

Exit status: 0 written; 1 a bad input file (missing, unreadable, not JSON, none of the three
results, a malformed statistic: the message starts with its path) or an output that cannot
be written; 2 usage (a bad option, no folder to write in). The page and the figure files are
written under temporary names and renamed once complete: a failed run leaves no partial file.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from focal_eval.report.embed import FORMATS, save
from focal_eval.report.inputs import InputError, load
from focal_eval.report.page import build
from focal_eval.service.arguments import OneLineErrors

DESCRIPTION = """Write one self-contained HTML page (no script, nothing fetched: it opens
offline) of a /score response, a /summary response or a focal evaluate result (JSON): the
headline metrics with their definitions, a reliability diagram, the confusion matrix (the
largest confusions as a table beyond 30 classes), per-class precision / recall / F1 and
losses by support, ROC and precision-recall curves where the statistics hold score
histograms, and slices (or the monitoring window) against the whole. Every metric is
computed from the statistics drawn, by the same graphs as POST /compute."""


def parser() -> argparse.ArgumentParser:
    """The command's options, each documented in ``--help``."""
    p = OneLineErrors(prog="focal report", description=DESCRIPTION)
    p.add_argument("input", metavar="INPUT", help="the result, JSON")
    p.add_argument("--out", required=True, help="the page, HTML (written when complete)")
    p.add_argument(
        "--format",
        choices=FORMATS,
        action="append",
        default=[],
        help="also write each figure as a file of this format (repeat for both), in the"
        " folder beside --out named after it: report.html -> report_files/",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; the exit status."""
    args = parser().parse_args(argv)
    out = Path(args.out)
    if not out.parent.is_dir():
        message = f"--out: no folder {out.parent} to write {out.name} in"
        print(f"focal report: {message}", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        document = load(Path(args.input))
    except InputError as error:
        print(f"focal report: {error}", file=sys.stderr)
        return 1
    page = build(document)
    files = figures_folder(out)
    content = page.html.encode()
    try:
        if args.format:
            files.mkdir(exist_ok=True)
        for drawn, suffix in itertools.product(page.figures, dict.fromkeys(args.format)):
            _write(files / f"{drawn.stem}.{suffix}", partial(save, drawn.figure, format=suffix))
        _write(out, lambda path: path.write_bytes(content))
    except OSError as error:
        print(f"focal report: {error.filename}: cannot write ({error.strerror})", file=sys.stderr)
        return 1
    where = f"; figures in {files}" if args.format else ""
    print(
        f"focal report: {len(page.figures)} figures, {len(content) / 1024:,.0f} KiB in"
        f" {time.monotonic() - started:.1f} s -> {out}{where}",
        file=sys.stderr,
    )
    return 0


def figures_folder(out: Path) -> Path:
    """Where ``--format`` writes the figures: ``report.html`` -> ``report_files``."""
    return out.with_name(f"{out.stem}_files")


def _write(path: Path, writer: Callable[[Path], object]) -> None:
    """Write through ``writer(temporary)`` to a temporary name, then rename it to ``path``."""
    temporary = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        writer(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
