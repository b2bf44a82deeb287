"""Results: medians and paired ratios per section, printed as a table and written as JSON."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench import machine
from bench.timing import Ratio

Op = Literal["<=", "<", ">=", ">"]


@dataclass(frozen=True)
class Target:
    """A bound a ratio should meet, e.g. ``<= 0.6``."""

    op: Op
    bound: float

    def met(self, value: float) -> bool:
        """Whether ``value`` meets the bound."""
        return {
            "<=": value <= self.bound,
            "<": value < self.bound,
            ">=": value >= self.bound,
            ">": value > self.bound,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}"


@dataclass(frozen=True)
class Row:
    """One median: a candidate's time, throughput, latency or memory in one case."""

    case: str
    name: str
    value: float
    unit: str  # "s" (shown as ms), "req/s", "MiB", "%", "x"


@dataclass(frozen=True)
class Comparison:
    """A ratio between two candidates measured side by side, and its target if it has one."""

    case: str
    name: str
    ratio: Ratio
    target: Target | None = None

    @property
    def met(self) -> bool | None:
        """True / False against the target; None without one."""
        return None if self.target is None else self.target.met(self.ratio.median)


@dataclass
class Section:
    """One benchmark's results: its medians, its ratios and notes on how it was measured."""

    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, case: str, name: str, value: float, unit: str) -> None:
        """Record a median."""
        self.rows.append(Row(case, name, value, unit))

    def compare(self, case: str, name: str, ratio: Ratio, target: Target | None = None) -> None:
        """Record a ratio."""
        self.comparisons.append(Comparison(case, name, ratio, target))


def single(value: float) -> Ratio:
    """A ratio from one measurement (no pairs to take a median over)."""
    return Ratio(value, value, value, 1)


def format_value(value: float, unit: str) -> str:
    """``0.0123, "s"`` -> ``"12.3 ms"``; other units as three significant digits."""
    if unit == "s":
        if value < 1e-3:
            return f"{value * 1e6:.3g} us"
        return f"{value * 1e3:.3g} ms"
    if unit == "x":
        return f"{value:.3g}x"
    return f"{value:.3g} {unit}"


def format_section(section: Section) -> str:
    """The section as two aligned tables: medians, then ratios with targets."""
    lines = [f"== {section.name}: {section.title} =="]
    if section.rows:
        lines.append(
            _table(
                ["case", "candidate", "median"],
                [[r.case, r.name, format_value(r.value, r.unit)] for r in section.rows],
            )
        )
    if section.comparisons:
        lines.append("")
        lines.append(
            _table(
                ["case", "ratio", "median", "IQR", "pairs", "target", "verdict"],
                [
                    [
                        c.case,
                        c.name,
                        f"{c.ratio.median:.3g}",
                        f"{c.ratio.low:.3g}-{c.ratio.high:.3g}" if c.ratio.pairs > 1 else "",
                        str(c.ratio.pairs),
                        "" if c.target is None else str(c.target),
                        {None: "", True: "met", False: "NOT MET"}[c.met],
                    ]
                    for c in section.comparisons
                ],
            )
        )
    lines.extend(f"  note: {note}" for note in section.notes)
    return "\n".join(lines)


def format_summary(sections: list[Section]) -> str:
    """One line: how many targets were met."""
    verdicts = [c.met for s in sections for c in s.comparisons if c.met is not None]
    missed = [
        f"{s.name}: {c.case} {c.name}" for s in sections for c in s.comparisons if c.met is False
    ]
    text = f"targets met: {sum(verdicts)} of {len(verdicts)}"
    return text + "".join(f"\n  not met: {m}" for m in missed)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def write_json(path: Path, sections: list[Section], meta: dict[str, Any]) -> None:
    """Write the run's metadata and every section (same numbers as the table) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    documents = []
    for section in sections:
        document = asdict(section)
        for entry, comparison in zip(document["comparisons"], section.comparisons, strict=True):
            entry["target"] = None if comparison.target is None else str(comparison.target)
            entry["met"] = comparison.met
        documents.append(document)
    path.write_text(json.dumps({"meta": meta, "sections": documents}, indent=2) + "\n")


def run_metadata(quick: bool, only: list[str]) -> dict[str, Any]:
    """Where and how the run happened: machine and processor, Python, library versions, options."""
    import importlib.metadata
    import os

    versions: dict[str, str | None] = {}
    for package in ("numpy", "onnxruntime", "torch", "scikit-learn", "fastapi", "uvicorn"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": quick,
        "sections": only,
        "python": platform.python_version(),
        "machine": platform.machine(),
        **machine.describe(),
        "cpus": len(os.sched_getaffinity(0)),
        "versions": versions,
    }
