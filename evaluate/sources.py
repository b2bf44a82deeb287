"""Datasets as record batches: Parquet, Feather / Arrow IPC, ``.npz`` and ``.npy`` shards.

Every input yields blocks (:class:`Block`) of at most ``batch_rows`` rows, each with the file and
the row it starts at (so that an error names both), its logits ``(n, C)`` (or ``(n, L)``,
``(n,)`` for binary) and labels as numpy arrays, and the columns passed through for slices and
for the per-sample output. Logits come from one list or fixed-size-list column
(``--logits``), or from one column per class (``--logits-prefix p_``: ``p_0``, ``p_1``, ...,
ordered by their suffix as integers). pyarrow is needed for Parquet and Arrow
(``pip install 'focal-eval[parquet]'``); ``.npz`` and ``.npy`` shards need numpy only.

A ``.npy`` file holds one array, so a shard is a set of files named alike: the logits file's
name contains the logits array's name (``--logits``, default ``logits``), and the labels (and
each passed column) are the file of the same name with that part replaced by theirs:
``part-0/logits.npy`` beside ``part-0/labels.npy``, or ``logits_007.npy`` beside
``labels_007.npy``. Folders and globs give the logits files; their partners are found so.
They are read a block at a time from the file (never mapped), so memory stays one block's.
"""

from __future__ import annotations

import contextlib
import glob
import io
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ARROW_SUFFIXES = (".parquet", ".feather", ".arrow", ".ipc")


class InputError(Exception):
    """Bad input data, named by file (and row): the command's exit status 1."""


@dataclass(frozen=True)
class Columns:
    """Where the arrays are: a logits column or a prefix, the labels, the passed-through."""

    labels: str
    logits: str | None = None
    logits_prefix: str | None = None
    passed: tuple[str, ...] = ()  # slice and keep columns


@dataclass(frozen=True)
class Block:
    """Rows ``first`` to ``first + len(labels)`` of ``path``."""

    path: str
    first: int
    logits: npt.NDArray[Any]
    labels: npt.NDArray[Any]
    passed: dict[str, Any] = field(default_factory=dict)  # pyarrow arrays or numpy arrays

    @property
    def rows(self) -> int:
        """Rows in the block."""
        return len(self.labels)

    def where(self) -> str:
        """``file, rows a-b`` for messages."""
        return f"{self.path}, rows {self.first}-{self.first + self.rows - 1}"


def expand(paths: Sequence[str], logits: str | None = None) -> list[str]:
    """Files from paths, folders (their Parquet / Arrow / npz files) and globs, sorted.

    Of ``.npy`` files in folders and globs, those whose name contains ``logits`` (the logits
    array's name, default ``logits``): each stands for its shard.

    Raises:
        InputError: a path that matches nothing.
    """
    shard = logits or "logits"

    def wanted(path: Path) -> bool:
        if path.suffix == ".npy":
            return shard in path.name
        return path.suffix in (*ARROW_SUFFIXES, ".npz")

    files: list[str] = []
    for path in paths:
        magic = glob.has_magic(path)
        matched = sorted(glob.glob(path)) if magic else [path]
        if not matched or not all(Path(m).exists() for m in matched):
            raise InputError(f"{path}: no such file, folder or match")
        for match in matched:
            if Path(match).is_dir():
                files += sorted(str(p) for p in Path(match).rglob("*") if wanted(p) and p.is_file())
            elif not magic or wanted(Path(match)):
                files.append(match)
    if not files:
        raise InputError(f"{', '.join(paths)}: no Parquet, Arrow, .npz or .npy files there")
    return list(dict.fromkeys(files))  # a file named twice (a path and a glob) is read once


def total_rows(files: Sequence[str]) -> int | None:
    """Rows of every file from Parquet footers and .npy headers; None for any other file."""
    total = 0
    for path in files:
        if path.endswith(".npy"):
            try:
                with open(path, "rb") as handle:
                    total += NpyReader(path, handle).rows
            except (OSError, InputError):
                return None  # reading it will say what is wrong, naming the file
            continue
        if not path.endswith(".parquet"):
            return None
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            total += pq.ParquetFile(path).metadata.num_rows
        except (pa.ArrowException, OSError):
            return None  # reading it will say what is wrong, naming the file
    return total


def blocks(path: str, columns: Columns, batch_rows: int) -> Iterator[Block]:
    """The blocks of one file.

    Raises:
        InputError: an unreadable file, a missing column (the available ones named), logits
            that are not numbers or change width, shards of different row counts.
    """
    if path.endswith(".npz"):
        yield from _npz_blocks(path, columns, batch_rows)
    elif path.endswith(".npy"):
        yield from _npy_blocks(path, columns, batch_rows)
    elif path.endswith(ARROW_SUFFIXES):
        yield from _arrow_blocks(path, columns, batch_rows)
    else:
        raise InputError(
            f"{path}: not a Parquet (.parquet), Arrow (.feather, .arrow), .npz or .npy file"
        )


def _arrow_blocks(path: str, columns: Columns, batch_rows: int) -> Iterator[Block]:
    import pyarrow as pa

    try:
        table = _ParquetTable(path) if path.endswith(".parquet") else _IpcTable(path)
        names = table.names
    except (pa.ArrowException, OSError) as error:
        raise InputError(f"{path}: cannot be read ({_first_line(error)})") from None
    with contextlib.closing(table):
        logit_columns = logits_names(path, names, columns)
        wanted = [*logit_columns, columns.labels, *columns.passed]
        for name in (columns.labels, *columns.passed):
            if name not in names:
                raise InputError(f"{path}: no column {name!r} (columns: {', '.join(names)})")
        first = 0
        try:
            for batch in table.batches(list(dict.fromkeys(wanted)), batch_rows):
                if batch.num_rows == 0:
                    continue
                yield arrow_block(path, first, batch, columns, logit_columns)
                first += batch.num_rows
        except (pa.ArrowException, OSError) as error:
            raise InputError(f"{path}: cannot be read ({_first_line(error)})") from None


class _ParquetTable:
    """A Parquet file read one row group at a time, in blocks of at most ``rows`` rows.

    Decoding a whole row group at once (pyarrow's dataset scanner does) grows its buffers
    past glibc's largest mmap threshold by reallocating: every row group was then mapped,
    copied, faulted in and unmapped again (2,000,000 x 100 rows: 870,000-920,000 page faults, 2 s
    of system time; in blocks, 240,000 and 0.7 s). Column chunks are not pre-buffered: they would
    be kept until the file is done, and memory would grow with the file.
    """

    def __init__(self, path: str) -> None:
        import pyarrow.parquet as pq

        self.file = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
        self.names = self.file.schema_arrow.names

    def batches(self, columns: list[str], rows: int) -> Iterator[Any]:
        for group in range(self.file.num_row_groups):
            yield from self.file.iter_batches(rows, row_groups=[group], columns=columns)

    def close(self) -> None:
        self.file.close()


class _IpcTable:
    """A Feather / Arrow IPC file, through pyarrow's dataset scanner, one block ahead."""

    def __init__(self, path: str) -> None:
        import pyarrow.dataset as ds

        self.dataset = ds.dataset(path, format="ipc")
        self.names = self.dataset.schema.names

    def close(self) -> None:
        """Nothing to release: the scanner closes the file when its batches end."""

    def batches(self, columns: list[str], rows: int) -> Iterator[Any]:
        # one block ahead, not 16: memory stays one block's
        yield from self.dataset.to_batches(
            columns=columns, batch_size=rows, batch_readahead=1, fragment_readahead=1
        )


def arrow_block(
    path: str, first: int, batch: Any, columns: Columns, logits_names: Sequence[str]
) -> Block:
    """A pyarrow record batch as a block; ``logits_names`` from :func:`logits_names`."""
    where = f"{path}, rows {first}-{first + batch.num_rows - 1}"
    if columns.logits is None:
        logits = np.stack([_numbers(where, n, batch.column(n)) for n in logits_names], axis=1)
    else:
        logits = _rows(where, logits_names[0], batch.column(logits_names[0]))
    labels = _rows(where, columns.labels, batch.column(columns.labels))
    return Block(path, first, logits, labels, {n: batch.column(n) for n in columns.passed})


def logits_names(path: str, names: Sequence[str], columns: Columns) -> list[str]:
    """The logits column, or the per-class columns in class order.

    Raises:
        InputError: none of them is there (the columns there named).
    """
    if columns.logits is not None:
        if columns.logits not in names:
            raise InputError(f"{path}: no column {columns.logits!r} (columns: {', '.join(names)})")
        return [columns.logits]
    prefix = columns.logits_prefix or ""
    numbered = [n for n in names if n.startswith(prefix) and n[len(prefix) :].isdigit()]
    if not numbered:
        raise InputError(
            f"{path}: no columns {prefix}0, {prefix}1, ... (columns: {', '.join(names)})"
        )
    expected = [f"{prefix}{k}" for k in range(len(numbered))]
    if sorted(numbered, key=lambda n: int(n[len(prefix) :])) != expected:
        missing = sorted(set(expected) - set(numbered)) or numbered
        raise InputError(
            f"{path}: columns {prefix}0 to {prefix}{len(numbered) - 1} expected, one per class;"
            f" {', '.join(missing)} missing or misnamed (found: {', '.join(sorted(numbered))})"
        )
    return expected


def _rows(where: str, name: str, column: Any) -> npt.NDArray[Any]:
    """A column of numbers ``(n,)``, or of lists of one length ``(n, W)``.

    The lists' values are sliced from their child array (``flatten`` would import
    ``pyarrow.compute``, 0.05 s of every run).
    """
    import pyarrow as pa

    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
        start = column.offset * width
    elif pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        offsets = primitive_values(column.offsets)
        lengths = np.diff(offsets)
        if len(lengths) and (lengths != lengths[0]).any():
            row = int(np.argmax(lengths != lengths[0]))
            raise InputError(
                f"{where}: {name} has {lengths[row]} values at row {row} of the block,"
                f" {lengths[0]} at its first: every row needs one per class or label"
            )
        width = int(lengths[0]) if len(lengths) else 0
        start = int(offsets[0]) if len(offsets) else 0
    else:
        return _numbers(where, name, column)  # one number a row
    if column.null_count:
        raise InputError(f"{where}: {name} has {column.null_count} null rows")
    values = _numbers(where, name, column.values.slice(start, len(column) * width))
    return values.reshape(len(column), width)


def _numbers(where: str, name: str, column: Any) -> npt.NDArray[Any]:
    import pyarrow as pa

    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise InputError(f"{where}: {name} holds {column.type}, not numbers")
    if column.null_count:
        raise InputError(f"{where}: {name} has {column.null_count} nulls")
    return primitive_values(column)


def primitive_values(column: Any) -> npt.NDArray[Any]:
    """A pyarrow array of numbers without nulls as a numpy view of its values buffer.

    pyarrow's own conversion (``to_numpy``, ``np.asarray``) imports pandas (0.12 s of every
    run) even where it copies nothing.
    """
    import pyarrow as pa

    if pa.types.is_floating(column.type):
        kind = "f"
    elif pa.types.is_signed_integer(column.type):
        kind = "i"
    elif pa.types.is_unsigned_integer(column.type):
        kind = "u"
    else:
        raise ValueError(f"expected an array of numbers, got {column.type}")
    dtype = np.dtype(f"{kind}{column.type.bit_width // 8}")
    values = column.buffers()[1]
    return np.frombuffer(values, dtype, count=len(column), offset=column.offset * dtype.itemsize)


def _npz_blocks(path: str, columns: Columns, batch_rows: int) -> Iterator[Block]:
    """A shard is loaded whole (numpy reads members whole): shards bound the memory."""
    try:
        # our own handle: numpy leaves its open when the zip is broken
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            names = list(archive.files)
            logit_arrays = (
                [columns.logits or "logits"]
                if columns.logits_prefix is None
                else logits_names(path, names, columns)  # one array a class
            )
            for name in (*logit_arrays, columns.labels, *columns.passed):
                if name not in names:
                    raise InputError(f"{path}: no array {name!r} (arrays: {', '.join(names)})")
            if columns.logits is None:
                logits = np.stack([archive[name] for name in logit_arrays], axis=1)
            else:
                logits = archive[logit_arrays[0]]
            labels = archive[columns.labels]
            passed = {name: archive[name] for name in columns.passed}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise InputError(f"{path}: cannot be read ({_first_line(error)})") from None
    for name, array in (("logits", logits), ("labels", labels), *passed.items()):
        if array.ndim == 0:
            raise InputError(f"{path}: {name} is one value, not an array of rows")
    for name, array in (("logits", logits), *passed.items()):
        if len(array) != len(labels):
            raise InputError(
                f"{path}: {name} has {len(array)} rows, {columns.labels} {len(labels)}"
            )
    for first in range(0, len(labels), batch_rows):
        rows = slice(first, first + batch_rows)
        yield Block(
            path, first, logits[rows], labels[rows], {n: a[rows] for n, a in passed.items()}
        )


class NpyReader:
    """One ``.npy`` file read in rows: its header parsed, then ``read(rows)`` from the file."""

    def __init__(self, path: str, handle: io.BufferedReader) -> None:
        self.path, self.handle = path, handle
        try:
            version = np.lib.format.read_magic(handle)
            shape, fortran, dtype = (
                np.lib.format.read_array_header_1_0(handle)
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0(handle)
            )
        except ValueError as error:
            raise InputError(f"{path}: not a .npy file ({_first_line(error)})") from None
        if dtype.hasobject:
            raise InputError(f"{path}: holds Python objects, not numbers")
        if not shape:
            raise InputError(f"{path}: is one value, not an array of rows")
        if fortran and len(shape) > 1:
            raise InputError(f"{path}: is in Fortran order; save it in C order (np.save default)")
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype: np.dtype[Any] = dtype
        self.rows = int(shape[0])

    def read(self, rows: int) -> npt.NDArray[Any]:
        """The next ``rows`` rows."""
        row_items = int(np.prod(self.shape[1:], dtype=np.int64))
        values = np.fromfile(self.handle, dtype=self.dtype, count=rows * row_items)
        if values.size != rows * row_items:
            raise InputError(f"{self.path}: ends early (truncated at {values.size} values)")
        return values.reshape(rows, *self.shape[1:])


def partner(path: str, logits: str, name: str) -> str:
    """The file of the shard ``path`` (a logits file) holding the array ``name``.

    Raises:
        InputError: the logits file's name does not contain ``logits``, or the partner is
            not there.
    """
    file = Path(path)
    if logits not in file.name:
        raise InputError(
            f"{path}: a .npy shard's file name must contain the logits array's name"
            f" {logits!r} (--logits), e.g. {logits}_000.npy beside {name}_000.npy"
        )
    found = file.with_name(file.name.replace(logits, name, 1))
    if not found.is_file():
        raise InputError(f"{path}: no {name} file {found} beside it")
    return str(found)


def _npy_blocks(path: str, columns: Columns, batch_rows: int) -> Iterator[Block]:
    """A shard of ``.npy`` files, a block at a time from each (see the module's docstring)."""
    if columns.logits_prefix is not None:
        raise InputError(
            f"{path}: --logits-prefix needs Parquet, Arrow or .npz (a .npy file holds one array)"
        )
    logits = columns.logits or "logits"
    names = list(dict.fromkeys((columns.labels, *columns.passed)))
    try:
        with contextlib.ExitStack() as stack:

            def reader(file: str) -> NpyReader:
                return NpyReader(file, stack.enter_context(open(file, "rb")))

            readers = {logits: reader(path)}
            rows = readers[logits].rows
            for name in names:
                file = partner(path, logits, name)
                readers[name] = reader(file)
                if readers[name].rows != rows:
                    raise InputError(
                        f"{path}: {rows} rows, but its {name} file {file} has {readers[name].rows}"
                    )
            for first in range(0, rows, batch_rows):
                count = min(batch_rows, rows - first)
                arrays = {name: reader.read(count) for name, reader in readers.items()}
                yield Block(
                    path,
                    first,
                    arrays[logits],
                    arrays[columns.labels],
                    {name: arrays[name] for name in columns.passed},
                )
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({_first_line(error)})") from None


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
