"""From a decoded request to scored outputs, whatever the protocol that decoded it.

Every protocol (``/score``, the Open Inference Protocol, a future gRPC servicer or task)
decodes its body into a :class:`Decoded` and calls :func:`score_decoded`, which admits the
work against the memory budget, refuses a batch the monitor cannot take when it was asked to,
validates, runs the graph, and feeds the monitor.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from focal_eval.service.core.runtime import Runtime
from focal_eval.service.core.scoring import Outputs
from focal_eval.service.core.validation import Batch, batch_size
from focal_eval.service.memory import costs
from focal_eval.service.memory.budget import Reservation

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class Decoded:
    """A decoded request: its arrays as sent, its parameters (None: the server's default)."""

    logits: npt.NDArray[Any]
    labels: npt.NDArray[Any]
    alpha: npt.NDArray[Any] | None
    gamma: Any
    ignore_index: Any
    monitor: bool | None
    source: str | None


@dataclass(frozen=True)
class Scored:
    """A scored batch: its outputs, and whether (or why not) the monitor took it."""

    batch: Batch
    outputs: Outputs
    monitored: bool
    unmonitored_reason: str | None


def score_decoded(
    runtime: Runtime,
    route: str,
    decoded: Decoded,
    per_sample: Collection[str],
    body: Buffer,
    reservation: Reservation,
) -> Scored:
    """Admit, validate and score ``decoded``, keeping the ``per_sample`` outputs named.

    ``body`` is the buffer the arrays may be views of (their memory is already counted).

    Raises:
        RequestError: 422 for any invalid value (also a batch that asked to be monitored and
            cannot be), 503 / 413 when the work does not fit in the memory budget.
    """
    scorer, settings = runtime.ready_scorer(), runtime.settings
    choice = runtime.monitoring(decoded.monitor, decoded.source)
    keep = {*per_sample, "focal_loss"} if choice.wanted else set(per_sample)  # loss histogram
    arrays = (decoded.logits, decoded.labels, decoded.alpha)
    reserve_batch(reservation, body, arrays, scorer.row_bytes(keep), settings.max_classes)
    runtime.check_monitorable(choice, decoded.logits.shape[1])
    batch = scorer.defaults.batch(
        decoded.logits, decoded.labels, decoded.alpha, decoded.gamma, decoded.ignore_index
    )
    outputs = scorer.score(batch, keep)
    reason = runtime.record(route, choice, len(batch.labels), outputs)
    return Scored(batch, outputs, choice.wanted and reason is None, reason)


def reserve_batch(
    reservation: Reservation,
    body: Buffer,
    arrays: tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any] | None],
    kept_bytes_per_row: int,
    max_classes: int,
) -> None:
    """Admit validating and scoring a decoded batch: resize the reservation to its cost.

    Of ``arrays`` (logits, labels, alpha), views of ``body`` cost nothing more; arrays of
    their own count by size.

    Raises:
        RequestError: 422 for logits of no rows, fewer than 2 or over ``max_classes``
            classes; 503 / 413 when the work does not fit in the budget now / ever.
    """
    logits, labels, alpha = arrays
    n, c = batch_size(logits, max_classes)
    view = np.frombuffer(body, np.uint8)
    held = costs.received(len(view)) + sum(
        array.nbytes
        for array in (logits, labels, alpha)
        if array is not None and not np.may_share_memory(array, view)
    )
    work = costs.conversion(logits, labels) + costs.scoring(n, c, kept_bytes_per_row)
    reservation.resize(held + work, f"batch (N={n}, C={c})")
