"""``python -m bench.profile [--quick] [--only server,stages,graph] [--out DIR]``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PARTS = ("server", "stages", "graph")
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "results" / "profile"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen profiles, print them, and write ``DIR/profile.json`` (+ raw stacks)."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests and repeats")
    parser.add_argument("--only", default=",".join(PARTS), help=f"any of {','.join(PARTS)}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args(argv)
    parts = [part.strip() for part in args.only.split(",") if part.strip()]
    if not parts or any(part not in PARTS for part in parts):
        parser.error(f"--only: expected names from {','.join(PARTS)}, got {args.only!r}")
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for part in parts:
        print(f"== {part} ==", flush=True)
        if part == "server":
            from bench.profile import server

            results[part] = server.run(args.out, args.quick)
        elif part == "stages":
            from bench.profile import stages

            results[part] = stages.run(args.quick)
        else:
            from bench.profile import graph

            results[part] = graph.run(args.quick)
        print(flush=True)
    (args.out / "profile.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {args.out / 'profile.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
