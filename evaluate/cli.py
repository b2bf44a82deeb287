"""``focal evaluate PATH... --out RESULT.json``: a dataset's metrics, no torch, bounded memory.

Exit status: 0 done; 1 bad input data (the message names the file and rows); 2 usage (a bad
option, a missing extra); 130 interrupted. Nothing is left behind on 1, 2 or 130: the result
and the per-sample file are written under temporary names and renamed once complete.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from focal_eval.evaluate.backends import Backend, Local, Options, Server
from focal_eval.evaluate.client import Remote, ServerError
from focal_eval.evaluate.engine import evaluate_files
from focal_eval.evaluate.on_ray import UsageError
from focal_eval.evaluate.sources import Block, Columns, InputError, expand, total_rows
from focal_eval.service.arguments import OneLineErrors
from focal_eval.service.core.scoring import Outputs
from focal_eval.service.core.settings import Settings
from focal_eval.service.http.jsonio import iter_dumps
from focal_eval.service.memory.allocator import stream_allocator

DESCRIPTION = """Evaluate a dataset: logits (or probabilities) and labels from Parquet, Arrow /
Feather, .npz or .npy files (.npy shards: logits_000.npy beside labels_000.npy), scored by the
same onnxruntime graphs as `focal serve`, streamed a block of rows at a time. The result
(metrics, per-class tables, the additive statistics, slices, the inputs and their row counts,
the model id) is JSON; its statistics merge with other results and /score responses
(POST /compute)."""


def parser() -> argparse.ArgumentParser:
    """The command's options, each documented in ``--help``."""
    p = OneLineErrors(prog="focal evaluate", description=DESCRIPTION)
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, folders or globs")
    p.add_argument("--out", required=True, help="the result, JSON (written when complete)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--logits",
        help="the logits column: a list or fixed-size list per row (one number per row:"
        " binary); for .npz the array's name; for .npy shards the part of the logits files'"
        " names that the labels files have as --labels (default: logits)",
    )
    where.add_argument(
        "--logits-prefix", help="one column per class instead: PREFIX0, PREFIX1, ..."
    )
    p.add_argument("--labels", default="labels", help="the labels column (default: labels)")
    p.add_argument("--task", choices=("multiclass", "multilabel", "binary"), help="as /score's")
    p.add_argument("--inputs", choices=("logits", "probabilities"), help="as /score's")
    p.add_argument("--gamma", type=float, help="focusing parameter (default: the graph's)")
    p.add_argument(
        "--alpha",
        type=_alpha,
        help="per-class weights, comma-separated (multiclass), or one number (multilabel)",
    )
    p.add_argument("--threshold", type=float, help="multilabel and binary decision threshold")
    p.add_argument("--ignore-index", type=int, help="label value of rows to skip")
    p.add_argument("--num-classes", type=_positive, help="the width every file must have (C or L)")
    p.add_argument(
        "--slice-by",
        type=lambda text: tuple(c for c in text.split(",") if c),
        default=(),
        metavar="COLUMN[,COLUMN...]",
        help="metrics per value of each column, and per combination",
    )
    p.add_argument(
        "--max-slices", type=_positive, default=100, help="most combinations (default 100)"
    )
    p.add_argument(
        "--per-sample-out",
        metavar="FILE.parquet",
        help="per-sample outputs, row-aligned with the input (needs pyarrow)",
    )
    p.add_argument(
        "--keep", nargs="+", default=(), metavar="COLUMN", help="columns copied to it (ids)"
    )
    p.add_argument(
        "--batch-rows", type=_positive, default=65_536, help="rows per block (default 65536)"
    )
    p.add_argument("--artifact-dir", type=Path, help="the graphs (default: the shipped ones)")
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local (default: this process, threads) or ray (Ray Data: Parquet only; a local"
        " Ray, or --ray-address)",
    )
    p.add_argument("--ray-address", help="with --engine ray: a running cluster (HOST:PORT)")
    p.add_argument(
        "--url",
        help="score through the server there instead (/score in .npz chunks with"
        " monitor=false, 503 retried; metrics from its /compute); no --per-sample-out",
    )
    p.add_argument("--token", help="with --url: its FOCAL_AUTH_TOKEN")
    p.add_argument(
        "--timeout", type=float, default=60.0, help="with --url: seconds per answer (default 60)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; the exit status."""
    args = parser().parse_args(argv)
    if args.keep and not args.per_sample_out:
        return _usage("--keep needs --per-sample-out")
    if args.engine == "ray" and args.url:
        return _usage("--url and --engine ray are two engines: give one")
    if args.ray_address and args.engine != "ray":
        return _usage("--ray-address needs --engine ray")
    if args.url and args.per_sample_out:
        return _usage("--per-sample-out needs the local engine: leave out --url")
    if args.url and args.artifact_dir:
        return _usage("--artifact-dir is the local engine's: with --url the server's graphs score")
    columns = Columns(
        labels=args.labels,
        logits=args.logits if args.logits_prefix is None else None,
        logits_prefix=args.logits_prefix,
        passed=tuple(dict.fromkeys((*args.slice_by, *args.keep))),
    )
    if columns.logits is None and columns.logits_prefix is None:
        columns = Columns(columns.labels, "logits", None, columns.passed)
    options = Options(
        task=args.task,
        inputs=args.inputs,
        gamma=args.gamma,
        alpha=args.alpha,
        ignore_index=args.ignore_index,
        threshold=args.threshold,
        num_classes=args.num_classes,
        slice_by=args.slice_by,
        max_slices=args.max_slices,
        per_sample=args.per_sample_out is not None,
        batch_rows=args.batch_rows,
    )
    out = Path(args.out)
    per_sample = Path(args.per_sample_out) if args.per_sample_out else None
    for option, path in (("--out", out), ("--per-sample-out", per_sample)):
        if path is not None and not path.parent.is_dir():
            return _usage(f"{option}: no folder {path.parent} to write {path.name} in")
    started = time.monotonic()
    stream_allocator()  # one reused heap for the stream of blocks; pyarrow keeps its own pool
    try:
        files = expand(args.paths, args.logits)
        if args.engine == "ray":
            from focal_eval.evaluate.on_ray import evaluate_on_ray

            with _written(out) as partial:
                document = evaluate_on_ray(
                    files, columns, options, args.artifact_dir, args.ray_address
                )
                partial.write_bytes(b"".join(iter_dumps(document)))
            return _done(document, files, started, out)
        with _backend(args) as backend, _written(out) as partial:
            with (
                _per_sample_writer(per_sample, args.keep) as sink,
                _progress(total_rows(files)) as advance,
            ):
                document = evaluate_files(files, columns, options, backend, advance, sink)
            partial.write_bytes(b"".join(iter_dumps(document)))
    except (InputError, ServerError, ConnectionError, TimeoutError, RuntimeError) as error:
        print(f"focal evaluate: {error}", file=sys.stderr)
        return 1
    except ImportError as error:
        extras = {"tqdm": "progress", "ray": "ray"}
        extra = extras.get((error.name or "").split(".")[0], "parquet")
        return _usage(f"{error.name} is missing: pip install 'focal-eval[{extra}]'")
    except UsageError as error:
        return _usage(str(error))
    except KeyboardInterrupt:
        print("focal evaluate: interrupted; nothing written", file=sys.stderr)
        return 130
    return _done(document, files, started, out)


def _done(document: dict[str, Any], files: Sequence[str], started: float, out: Path) -> int:
    """The summary line (off a terminal, where no progress bar showed) and status 0."""
    elapsed = time.monotonic() - started
    if not sys.stderr.isatty():
        rows = document["rows"]
        print(
            f"focal evaluate: {rows} rows from {len(files)} files in {elapsed:.1f} s"
            f" ({rows / max(elapsed, 1e-9):,.0f} rows/s) -> {out}",
            file=sys.stderr,
        )
    return 0


def _usage(message: str) -> int:
    print(f"focal evaluate: {message}", file=sys.stderr)
    return 2


@contextmanager
def _backend(args: argparse.Namespace) -> Iterator[Backend]:
    """This process's graphs, or the server at ``--url``."""
    if args.url is None:
        directory = args.artifact_dir
        yield Local(Settings() if directory is None else Settings(artifact_dir=directory))
        return
    with Remote(args.url, args.token, args.timeout, retries=5) as remote:
        yield Server(remote, max_chunk_bytes=32 * 2**20)


@contextmanager
def _written(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path``, renamed to it on success, removed otherwise."""
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


@contextmanager
def _per_sample_writer(path: Path | None, keep: Sequence[str]) -> Iterator[Any]:
    """A sink writing each block's per-sample outputs (and ``keep`` columns) to Parquet."""
    if path is None:
        yield None
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer: list[Any] = []
    with _written(path) as partial:

        def sink(block: Block, outputs: Outputs) -> None:
            table = pa.table(
                {
                    **{name: block.passed[name] for name in keep},
                    **outputs,
                }
            )
            if not writer:
                writer.append(pq.ParquetWriter(partial, table.schema))
            elif table.schema != writer[0].schema:
                try:  # a --keep column of another width in this file (int32, int64)
                    table = table.cast(writer[0].schema)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
                    raise InputError(
                        f"{block.where()}: --keep columns of other types than in the rows before"
                        f" ({table.schema} vs {writer[0].schema})".replace("\n", ", ")
                    ) from None
            writer[0].write_table(table)

        try:
            yield sink
        finally:
            if writer:
                writer[0].close()


@contextmanager
def _progress(total: int | None) -> Iterator[Any]:
    """A progress bar on a terminal (rows, rows/s, ETA when the total is known), else nothing."""
    if not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    with tqdm(total=total, unit=" rows", unit_scale=True, file=sys.stderr) as bar:
        yield bar.update


def _alpha(text: str) -> list[float] | float:
    values = [float(v) for v in text.split(",")]
    return values[0] if len(values) == 1 else values


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value
