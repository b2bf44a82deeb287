"""The ``focal`` command: ``focal export ...`` (needs the export extra)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """usage: focal <command> [options]

commands:
  export    write the evaluation graph as ONNX / TorchScript / torch.export artifacts
            (needs torch: pip install 'focal-eval[export]'); see `focal export --help`
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a subcommand; 2 on a usage error."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "export":
        return _export(rest)
    print(f"focal: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


def _export(argv: Sequence[str]) -> int:
    try:
        from export.cli import main as export_main
    except ImportError as error:
        print(
            f"focal export needs the export extra ({error.name} is missing):"
            " pip install 'focal-eval[export]'",
            file=sys.stderr,
        )
        return 2
    return export_main(argv)
