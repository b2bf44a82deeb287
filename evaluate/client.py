"""Score arrays of any size through a running server: chunks to ``/score``, sums to ``/compute``.

:func:`score` splits the rows (axis 0; segmentation-shaped inputs are flattened by the server)
into chunks whose ``.npz`` body is at most ``max_chunk_bytes``, posts each to ``POST /score``
as ``application/x-npz`` with ``per_sample=false`` (and ``monitor=false`` unless asked: batch
jobs must not feed production counters), sums the responses' ``statistics`` with
:func:`~focal_eval.evaluate.statistics.merge`, and posts the sums to the same server's
``POST /compute``, so that one metrics graph computes every metric of the whole dataset.

The contract:

- arguments are checked before anything is sent (``ValueError`` naming the argument);
- a 503 (not ready, every slot in flight, memory budget busy) is retried after its
  ``Retry-After`` seconds, at most ``retries`` times a request, then raised;
- any other 4xx / 5xx raises :class:`ServerError`, one line naming the rows of the chunk
  (``rows 2000-2999: 422 labels: ...``);
- a connection that fails raises ``ConnectionError`` (``TimeoutError`` when no answer came in
  ``timeout_s``) naming the URL;
- every chunk must be scored by the same model (``RuntimeError`` if the id changes);
- one ``httpx.Client``, one connection reused; no torch.

Example:
    >>> from focal_eval.service.testing import focal_server
    >>> rng = np.random.default_rng(0)
    >>> logits = rng.standard_normal((10_000, 3), dtype=np.float32)
    >>> labels = rng.integers(0, 3, 10_000)
    >>> with focal_server() as server:
    ...     evaluation = score(server.url, logits, labels, max_chunk_bytes=2**16)
    >>> evaluation.task, evaluation.rows, evaluation.chunks
    ('multiclass', 10000, 4)
    >>> int(evaluation.statistics["confusion_matrix"].sum())
    10000
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import orjson

from focal_eval.evaluate.statistics import Statistics, merge

if TYPE_CHECKING:
    import httpx  # imported where a client is made: `focal evaluate` runs locally without it

__all__ = ["Evaluation", "Parameters", "Remote", "Scored", "ServerError", "score"]

logger = logging.getLogger(__name__)

SCORE, COMPUTE = "/score", "/compute"
NPZ_HEADER_BLOCK = 64  # a .npy header is padded to a multiple of this: a longer shape adds one
DEFAULT_RETRY_AFTER_S = 1.0  # a 503 without a readable Retry-After
SHOWN = 200  # characters of a body that is not the server's {"error": ...}


class ServerError(Exception):
    """The server answered 4xx or 5xx: its ``status`` and ``message`` (its ``{"error"}``).

    ``str()`` is one line naming what was sent: ``rows 2000-2999: 422 labels: ...``.
    """

    def __init__(self, status: int, message: str, where: str) -> None:
        super().__init__(f"{where}: {status} {message}")
        self.status = status
        self.message = message
        self.where = where


@dataclass(frozen=True)
class Evaluation:
    """The metrics of a whole dataset, and the statistics they came from.

    Attributes:
        task: ``multiclass``, ``multilabel`` or ``binary``.
        rows: N, the rows (axis 0) scored.
        chunks: The ``/score`` requests they took.
        metrics: Scalar metrics by name; None where undefined.
        per: ``per_class`` (multi-class) or ``per_label`` values by name; empty for binary.
        statistics: The summed statistics, arrays by name: mergeable with others later.
        model_id: The evaluation graph's id every chunk was scored by.
    """

    task: str
    rows: int
    chunks: int
    metrics: dict[str, float | None]
    per: dict[str, list[Any]]
    statistics: Statistics
    model_id: str


def score(
    url: str,
    logits: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    task: str | None = None,
    inputs: str | None = None,
    gamma: float | None = None,
    alpha: npt.ArrayLike | None = None,
    threshold: float | None = None,
    ignore_index: int | None = None,
    max_chunk_bytes: int = 32 * 2**20,
    monitor: bool = False,
    source: str | None = None,
    token: str | None = None,
    timeout_s: float = 60.0,
    retries: int = 5,
) -> Evaluation:
    """Score ``logits`` against ``labels`` through the server at ``url``, in chunks.

    Args:
        url: The server's base URL (``http://127.0.0.1:8000``).
        logits: ``(N, ...)`` as ``/score`` takes them (any float dtype, sent as given).
        labels: ``(N, ...)`` class indices or multi-label targets.
        task: ``multiclass``, ``multilabel`` or ``binary`` (default: read from the shapes).
        inputs: What ``logits`` hold, as ``/score``'s ``inputs`` (default: the server's).
        gamma: The focusing parameter (default: the server's).
        alpha: Class weights ``(C,)``, or one number for multi-label and binary.
        threshold: The multi-label decision threshold (default: the server's).
        ignore_index: The label of ignored entries (default: the server's).
        max_chunk_bytes: The largest ``.npz`` body sent (the server refuses bodies over
            ``FOCAL_MAX_BODY_BYTES``, 256 MiB by default).
        monitor: Whether the rows feed the server's monitor (``/summary``, ``/metrics``).
        source: The monitor's source tag.
        token: Sent as ``Authorization: Bearer <token>``.
        timeout_s: The longest wait for any one answer.
        retries: How many times one request is retried after a 503.

    Returns:
        The metrics of all rows together, from the summed statistics.

    Raises:
        ValueError: ``logits`` and ``labels`` of different first dimensions or no rows,
            ``max_chunk_bytes`` too small for one row, or ``retries`` < 0.
        ServerError: The server refused a chunk or the sums (503 after ``retries``).
        ConnectionError: The server could not be reached (``TimeoutError``: no answer).
        RuntimeError: The server's model changed between chunks.
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"Expected argument `retries` to be an int >= 0, but got {retries!r}")
    logits, labels = np.asarray(logits), np.asarray(labels)
    parameters = Parameters(task, inputs, gamma, alpha, threshold, ignore_index)
    with Remote(url, token, timeout_s, retries) as remote:
        scored = remote.statistics(logits, labels, parameters, max_chunk_bytes, monitor, source)
        computed = remote.compute(scored.statistics, scored.task)
    return Evaluation(
        task=scored.task,
        rows=len(logits),
        chunks=scored.chunks,
        metrics=computed["metrics"],
        per=computed.get("per_class") or computed.get("per_label") or {},
        statistics=scored.statistics,
        model_id=scored.model["id"],
    )


@dataclass(frozen=True)
class Parameters:
    """What ``/score`` computes with; None: the server's default."""

    task: str | None = None
    inputs: str | None = None
    gamma: float | None = None
    alpha: npt.ArrayLike | None = None
    threshold: float | None = None
    ignore_index: int | None = None


@dataclass(frozen=True)
class Scored:
    """Summed statistics of some rows: task, model, requests taken, the server's parameters."""

    task: str
    model: dict[str, str]  # the evaluation graph's id and kind
    chunks: int
    statistics: Statistics
    parameters: dict[str, Any]  # what the server scored with (its defaults filled in)


class Remote:
    """One server, over one connection: statistics of arrays (``/score``), metrics of sums.

    503 is retried after ``Retry-After`` (``retries`` times a request); a context manager.
    """

    def __init__(self, url: str, token: str | None, timeout_s: float, retries: int) -> None:
        import httpx

        headers = {} if token is None else {"authorization": f"Bearer {token}"}
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)
        self.post = _Poster(self.client, retries, timeout_s)

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def statistics(
        self,
        logits: npt.NDArray[Any],
        labels: npt.NDArray[Any],
        parameters: Parameters,
        max_chunk_bytes: int,
        monitor: bool = False,
        source: str | None = None,
        first_row: int = 0,
    ) -> Scored:
        """The summed statistics of the rows, posted in chunks of at most ``max_chunk_bytes``.

        ``first_row`` numbers the rows in messages (``rows 2000-2999``).
        """
        alpha = None if parameters.alpha is None else np.asarray(parameters.alpha)
        step = _chunk_rows(logits, labels, alpha, max_chunk_bytes)
        query = {
            name: _query_value(value)
            for name, value in {
                "task": parameters.task,
                "inputs": parameters.inputs,
                "gamma": parameters.gamma,
                "threshold": parameters.threshold,
                "ignore_index": parameters.ignore_index,
                "per_sample": False,
                "monitor": monitor,
                "source": source,
            }.items()
            if value is not None
        }
        answers = (
            (where, self.post(SCORE, where, body, "application/x-npz", query))
            for where, body in _chunks(logits, labels, alpha, step, first_row)
        )
        return _sum(answers)

    def compute(self, statistics: Statistics, task: str) -> dict[str, Any]:
        """``POST /compute`` of summed statistics: metrics, and per class or label."""
        sums = {name: value.tolist() for name, value in statistics.items()}
        body = orjson.dumps({"statistics": sums, "task": task})
        return self.post(COMPUTE, f"POST {COMPUTE}", body, "application/json")


def _chunk_rows(
    logits: npt.NDArray[Any],
    labels: npt.NDArray[Any],
    alpha: npt.NDArray[Any] | None,
    max_chunk_bytes: int,
) -> int:
    """Rows a chunk holds: as many as keep its ``.npz`` body within ``max_chunk_bytes``."""
    if logits.ndim == 0 or labels.ndim == 0:
        raise ValueError(
            "Expected `logits` and `labels` with a first dimension (rows), but got shapes"
            f" {list(logits.shape)} and {list(labels.shape)}"
        )
    if len(logits) != len(labels):
        raise ValueError(
            "Expected `logits` and `labels` to have the same first dimension, but got"
            f" {len(logits)} and {len(labels)}"
        )
    if len(logits) == 0:
        raise ValueError("Expected `logits` and `labels` with at least one row, but got 0")
    row = int(logits[0].nbytes + labels[0].nbytes)
    empty = _npz(logits[:0], labels[:0], alpha)
    framing = len(empty) + NPZ_HEADER_BLOCK * 3  # a longer shape may grow each member's header
    if isinstance(max_chunk_bytes, bool) or not isinstance(max_chunk_bytes, int):
        raise ValueError(
            f"Expected argument `max_chunk_bytes` to be an int, but got {max_chunk_bytes!r}"
        )
    if max_chunk_bytes < framing + row:
        raise ValueError(
            f"Expected argument `max_chunk_bytes` to fit at least one row ({row} bytes of logits"
            f" and labels) and the .npz framing, but got {max_chunk_bytes}"
        )
    return max(1, (max_chunk_bytes - framing) // max(row, 1))


def _chunks(
    logits: npt.NDArray[Any],
    labels: npt.NDArray[Any],
    alpha: npt.NDArray[Any] | None,
    step: int,
    first_row: int = 0,
) -> Iterator[tuple[str, bytes]]:
    """``(rows a-b, .npz body)`` for each chunk of ``step`` rows, encoded when it is sent."""
    for start in range(0, len(logits), step):
        stop = min(start + step, len(logits))
        rows = f"rows {first_row + start}-{first_row + stop - 1}"
        yield rows, _npz(logits[start:stop], labels[start:stop], alpha)


def _npz(
    logits: npt.NDArray[Any], labels: npt.NDArray[Any], alpha: npt.NDArray[Any] | None
) -> bytes:
    """Stored, not compressed: the server reads its arrays as views of the body."""
    buffer = io.BytesIO()
    if alpha is None:
        np.savez(buffer, logits=logits, labels=labels)
    else:
        np.savez(buffer, logits=logits, labels=labels, alpha=alpha)
    return buffer.getvalue()


def _sum(answers: Iterator[tuple[str, dict[str, Any]]]) -> Scored:
    """The ``/score`` answers' statistics summed, with the first's task, model and parameters."""
    first: dict[str, Any] | None = None
    chunks, statistics = 0, None
    for where, answer in answers:
        first = first or answer
        if answer["model"]["id"] != first["model"]["id"]:
            raise RuntimeError(
                f"{where}: scored by model {answer['model']['id']}, but the rows before by"
                f" {first['model']['id']}: the server's model changed during the run"
            )
        chunks += 1
        chunk = {name: np.asarray(value) for name, value in answer["statistics"].items()}
        statistics = chunk if statistics is None else merge(statistics, chunk)
    if first is None or statistics is None:
        raise ValueError("Expected at least one chunk, but got none")
    model = {"id": first["model"]["id"], "kind": first["model"]["kind"]}
    return Scored(first["task"], model, chunks, statistics, first["parameters"])


class _Poster:
    """POSTs over one client: 503 retried after ``Retry-After``, failures raised."""

    def __init__(self, client: httpx.Client, retries: int, timeout_s: float) -> None:
        self.client = client
        self.retries = retries
        self.timeout_s = timeout_s

    def __call__(
        self,
        path: str,
        where: str,
        body: bytes,
        content_type: str,
        query: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        response = self._send(path, where, body, content_type, query)
        for _ in range(self.retries):
            if response.status_code != 503:
                break
            wait_s = _retry_after(response)
            logger.info("%s: 503 %s; retrying in %g s", where, _message(response), wait_s)
            time.sleep(wait_s)
            response = self._send(path, where, body, content_type, query)
        if response.is_error:
            raise ServerError(response.status_code, _message(response), where)
        answer: dict[str, Any] = orjson.loads(response.content)
        return answer

    def _send(
        self,
        path: str,
        where: str,
        body: bytes,
        content_type: str,
        query: Mapping[str, str] | None,
    ) -> httpx.Response:
        import httpx

        try:
            return self.client.post(
                path, content=body, params=query, headers={"content-type": content_type}
            )
        except httpx.TimeoutException as error:
            raise TimeoutError(
                f"{where}: POST {self.client.base_url}{path}: no answer within"
                f" {self.timeout_s:g} s ({error!r})"
            ) from error
        except httpx.TransportError as error:
            raise ConnectionError(
                f"{where}: POST {self.client.base_url}{path} failed: {error}"
            ) from error


def _retry_after(response: httpx.Response) -> float:
    """``Retry-After`` in seconds (a number; anything else: the default)."""
    try:
        return max(0.0, float(response.headers.get("retry-after", DEFAULT_RETRY_AFTER_S)))
    except ValueError:
        return DEFAULT_RETRY_AFTER_S


def _message(response: httpx.Response) -> str:
    """The server's ``{"error": message}``, or the start of whatever else came, on one line."""
    try:
        document = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        text: str = document["error"]
    else:
        text = response.text[:SHOWN] or response.reason_phrase
    return " ".join(text.split())


def _query_value(value: object) -> str:
    """A query-string value: booleans as ``true`` / ``false``, numbers as Python writes them."""
    return str(value).lower() if isinstance(value, bool) else str(value)
