"""The ``focal`` command: ``serve``, ``evaluate``, ``report`` (no torch), ``export`` (torch)."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence

from focal_eval.service.arguments import OneLineErrors

USAGE = """usage: focal <command> [options]

commands:
  serve     serve the evaluation graph over HTTP (settings: FOCAL_* variables, or flags;
            see `focal serve --help`)
  evaluate  score a dataset (Parquet, Arrow, .npz) through the same graphs, streamed;
            see `focal evaluate --help`
  report    one offline HTML page of figures from a /score or /summary response or a
            focal evaluate result (needs matplotlib: pip install 'focal-eval[report]');
            see `focal report --help`
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
    if command == "serve":
        _one_blas_thread()
        return _serve(rest)
    if command == "evaluate":
        _one_blas_thread()
        from focal_eval.evaluate.cli import main as evaluate_main

        return evaluate_main(rest)
    if command == "report":
        return _report(rest)
    print(f"focal: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


def _one_blas_thread() -> None:
    """Keep numpy's OpenBLAS to one thread, unless the environment says otherwise.

    Nothing in ``focal serve`` or ``focal evaluate`` calls BLAS, but OpenBLAS starts a thread
    per core when numpy loads, and each spins before it sleeps: on two cores, ``focal
    evaluate`` over 2,000,000 x 100 rows spent 0.15-0.2 s more CPU (and 5-20% more time) with
    them. It takes effect only before numpy is first imported.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


EXPORT_EXTRA = ("torch", "onnx", "onnxscript")  # what `pip install 'focal-eval[export]'` adds


def _export(argv: Sequence[str]) -> int:
    try:
        from focal_eval.export.cli import main as export_main
    except ImportError as error:
        missing = [name for name in EXPORT_EXTRA if importlib.util.find_spec(name) is None]
        print(
            "focal export needs the export extra"
            f" ({', '.join(missing or [str(error.name)])} missing):"
            " pip install 'focal-eval[export]'",
            file=sys.stderr,
        )
        return 2
    return export_main(argv)


def _report(argv: Sequence[str]) -> int:
    if importlib.util.find_spec("matplotlib") is None:
        print(
            "focal report needs the report extra (matplotlib missing):"
            " pip install 'focal-eval[report]'",
            file=sys.stderr,
        )
        return 2
    from focal_eval.report.cli import main as report_main

    return report_main(argv)


def _serve(argv: Sequence[str]) -> int:
    """``focal serve``: 0 after a graceful stop, 1 if start-up fails, 2 for a bad setting."""
    parser = OneLineErrors(
        prog="focal serve",
        description="Serve the evaluation graph (POST /score, the v2 protocol, health). Every"
        " setting is also read from FOCAL_<NAME> environment variables; flags win.",
    )
    parser.add_argument("--host", help="interface (FOCAL_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (FOCAL_PORT, default 8000)")
    parser.add_argument("--artifact-dir", help="artifacts (FOCAL_ARTIFACT_DIR, default: shipped)")
    args = parser.parse_args(argv)
    overrides = {key: value for key, value in vars(args).items() if value is not None}
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from focal_eval.service.core.settings import Settings, describe_error

    try:
        settings = Settings(**overrides)
    except (ValidationError, SettingsError) as error:
        print(f"focal serve: {describe_error(error)}", file=sys.stderr)
        return 2
    from focal_eval.service import server  # the web stack: not for the other commands

    return server.serve(settings)
