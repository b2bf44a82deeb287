"""``focal export`` (``python -m focal_eval.export``): write the artifacts, print their parity."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from focal_eval.export.onnx import MIN_OPSET
from focal_eval.export.parity import ATOL, RTOL
from focal_eval.export.pipeline import FORMATS, ArtifactReport, export_all


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (``focal export: ...``) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``message`` on one line and exit 2."""
        self.exit(2, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``focal export``."""
    parser = _Parser(
        prog="focal export",
        description="Export the focal-loss evaluation graphs (multi-class, multi-label, ranking;"
        " ONNX, TorchScript, torch.export), check each artifact against eager PyTorch, and"
        " write a manifest beside it.",
    )
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    parser.add_argument("--gamma", type=float, default=2.0, help="default gamma (default 2.0)")
    parser.add_argument("--ignore-index", type=int, default=-100, help="default ignore_index")
    parser.add_argument("--num-bins", type=int, default=15, help="calibration bins (default 15)")
    parser.add_argument(
        "--score-bins", type=int, default=100, help="AUROC / AP histogram bins (default 100)"
    )
    parser.add_argument("--opset", type=int, default=18, help=f"ONNX opset, >= {MIN_OPSET}")
    parser.add_argument(
        "--formats",
        default=",".join(FORMATS),
        help=f"comma-separated subset of {','.join(FORMATS)} (default: all)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the export: 0 if every artifact is within tolerance, 1 if not, 2 on bad arguments.

    A bad argument (or an ``--out`` that cannot be written) is one line on stderr, and nothing
    is written.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        reports = export_all(
            args.out,
            gamma=args.gamma,
            ignore_index=args.ignore_index,
            num_bins=args.num_bins,
            score_bins=args.score_bins,
            opset=args.opset,
            formats=[f.strip() for f in args.formats.split(",") if f.strip()],
        )
    except ValueError as error:
        parser.error(str(error))
    except OSError as error:
        where = error.filename or str(args.out)
        parser.error(f"--out: cannot write {str(where)!r} ({error.strerror or error})")
    print(format_table(reports))
    failures = [f"{r.path.name}: {f}" for r in reports for f in r.parity.failures]
    for failure in failures[:20]:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


def format_table(reports: Sequence[ArtifactReport]) -> str:
    """Parity per artifact: cases, worst absolute / relative error, count mismatches."""
    width = max([28, *(len(r.path.name) for r in reports)])
    header = (
        f"{'artifact':<{width}} {'format':<13} {'cases':>5} {'max abs err':>12}"
        f" {'max rel err':>12} {'counts':>7}  status"
    )
    lines = [header, "-" * len(header)]
    for r in reports:
        p = r.parity
        lines.append(
            f"{r.path.name:<{width}} {r.format:<13} {p.cases:>5} {p.max_abs_error:>12.3g}"
            f" {p.max_rel_error:>12.3g} {p.count_mismatches:>7}  {'ok' if p.passed else 'FAILED'}"
        )
    lines.append(f"tolerance: |x - eager| <= {ATOL:g} + {RTOL:g} |eager|; counts exact")
    return "\n".join(lines)
