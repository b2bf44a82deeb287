"""``focal evaluate --engine ray``: the same evaluation on Ray Data, past one machine.

Ray Data reads the Parquet files; ``map_batches`` runs a pool of actors, each holding one
copy of the graphs (:class:`~focal_eval.evaluate.backends.Local`, one onnxruntime thread),
that turn each batch into its statistics and its slices' (pickled: a few KiB a batch, not
rows); the driver adds them up with the same checks as the local engine and computes the
metrics once. ``--ray-address`` joins a running cluster; without it a local Ray starts with
this machine's CPUs. The pool leaves one CPU to the read tasks: on 2 CPUs an actor pool of 2
holds both and the reads never schedule (a deadlock, measured with Ray 2.60).
"""

from __future__ import annotations

import logging
import pickle
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from focal_eval.evaluate.backends import Local, Options
from focal_eval.evaluate.engine import Run, add_block, document, slice_rows
from focal_eval.evaluate.sources import Columns, InputError, arrow_block, logits_names
from focal_eval.service.core.settings import Settings

CONNECT_TIMEOUT_S = 5.0


class UsageError(Exception):
    """A Ray engine option that cannot work: the command's exit status 2."""


class _Scorer:
    """A Ray Data actor: one batch of rows to its pickled statistics and slices."""

    def __init__(self, columns: Columns, options: Options, artifact_dir: Path | None) -> None:
        self.local, self.columns, self.options = Local(_settings(artifact_dir)), columns, options

    def __call__(self, table: Any) -> dict[str, Any]:
        """One payload a file the batch holds rows of (a batch may span two files)."""
        batch = table.combine_chunks().to_batches()[0]  # one record batch: plain arrays
        paths = np.asarray(batch.column("path").to_numpy(zero_copy_only=False))
        payloads = [
            pickle.dumps(self._scored(str(path), batch.filter(paths == path)))
            for path in dict.fromkeys(paths.tolist())
        ]
        return {"payload": np.array(payloads, dtype=object)}

    def _scored(self, path: str, batch: Any) -> Any:
        """``(path, rows, part, slices, model)``, or the InputError the rows gave."""
        block = arrow_block(
            path, 0, batch, self.columns, logits_names(path, batch.schema.names, self.columns)
        )
        try:
            part = self.local.score(block, slice(None), self.options, False)
            slices = [
                (
                    key,
                    self.local.score(block, rows, self.options, False),
                    int(np.count_nonzero(rows)),
                )
                for key, rows in slice_rows(block, self.options.slice_by)
            ]
        except InputError as error:  # a batch of a file has no row numbers here
            return InputError(
                str(error).replace(block.where(), f"{path}, a batch of {block.rows} rows")
            )
        return path, block.rows, part, slices, self.local.model


def evaluate_on_ray(
    files: Sequence[str],
    columns: Columns,
    options: Options,
    artifact_dir: Path | None,
    address: str | None,
) -> dict[str, Any]:
    """Score ``files`` (Parquet) on Ray Data; the result document, as the local engine's.

    Raises:
        UsageError: a file Ray cannot read here (not Parquet), per-sample output asked for.
        InputError: bad data (its file named), or an address that does not answer.
    """
    import ray
    import ray.data

    others = [path for path in files if not path.endswith(".parquet")]
    if others:
        raise UsageError(f"--engine ray reads Parquet files; not {others[0]}")
    if options.per_sample:
        raise UsageError("--per-sample-out needs the local engine: leave out --engine ray")
    if address is not None:
        _check_answers(address)
    ray.init(
        address=address,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        logging_level=logging.ERROR,
    )
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        dataset = ray.data.read_parquet(list(files), include_paths=True)
        statistics = dataset.map_batches(
            _Scorer,
            fn_constructor_kwargs={
                "columns": columns,
                "options": options,
                "artifact_dir": artifact_dir,
            },
            concurrency=max(1, cpus - 1),
            num_cpus=1,
            batch_size=options.batch_rows,
            batch_format="pyarrow",
        )
        run, model = Run(), dict[str, Any]()
        rows: dict[str, int] = dict.fromkeys(files, 0)
        for batch in statistics.iter_batches(batch_size=None, batch_format="numpy"):
            for payload in batch["payload"]:
                scored = pickle.loads(payload)
                if isinstance(scored, InputError):
                    raise scored
                path, count, part, slices, model = scored
                add_block(run, f"{path}, a batch of {count} rows", part, count, slices, options)
                rows[path] += count
    finally:
        ray.shutdown()
    run.inputs = [{"path": path, "rows": count} for path, count in rows.items()]
    driver = Local(_settings(artifact_dir))  # the metrics, once
    driver.model = model
    return document(run, files, driver, options)


def _settings(artifact_dir: Path | None) -> Settings:
    """One onnxruntime thread: each actor (and the driver) is one CPU's worth of work."""
    if artifact_dir is None:
        return Settings(threads=1)
    return Settings(threads=1, artifact_dir=artifact_dir)


def _check_answers(address: str) -> None:
    """A TCP connection to ``host:port`` within ``CONNECT_TIMEOUT_S``, or an InputError."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except (OSError, ValueError) as error:
        raise InputError(
            f"--ray-address {address}: no Ray there (no answer within {CONNECT_TIMEOUT_S:g} s:"
            f" {error})"
        ) from None
