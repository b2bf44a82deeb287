r"""Probabilities in, logits out: what a deployed model stored is scored like its logits.

A request with ``inputs: "probabilities"`` sends :math:`p` in ``[0, 1]`` where logits would
be. Multi-class rows must sum to 1 within ``ROW_SUM_TOLERANCE``; each becomes
:math:`\log \max(p, \epsilon)`, whose softmax is the row again (renormalised). Multi-label and
binary probabilities become :math:`\log q - \log(1 - q)` with :math:`q` clamped to
:math:`[\epsilon, 1 - \epsilon]`. With :math:`\epsilon` = ``PROBABILITY_FLOOR`` = 1e-7, a
probability of 0 or 1 scores instead of failing: its cross entropy is at most
:math:`-\log \epsilon \approx 16.1`, where an exact 0 would be infinite.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from focal_eval.service.core.errors import invalid, show
from focal_eval.service.core.tasks import MULTICLASS
from focal_eval.service.core.validation import CHECK_ELEMENTS

PROBABILITY_FLOOR = 1e-7
ROW_SUM_TOLERANCE = 1e-3
KINDS = ("logits", "probabilities")


def check_inputs_kind(kind: Any) -> str:
    """``"logits"`` (the default) or ``"probabilities"``."""
    if kind is None:
        return "logits"
    if kind not in KINDS:
        raise invalid(f"inputs: expected one of {', '.join(KINDS)}, got {show(kind)}")
    return str(kind)


def logits_of(task: str, probabilities: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """Float32 logits of ``probabilities`` for ``task``, dimension 1 the classes or labels.

    Converted a block of rows at a time, so that the temporaries stay bounded.

    Raises:
        RequestError: 422 for values outside [0, 1] (NaN included), or multi-class rows whose
            sum is not 1 within ``ROW_SUM_TOLERANCE``.
    """
    if probabilities.dtype.kind not in "fiu" or probabilities.dtype.kind == "b":
        raise invalid(f"logits: expected numbers, got {probabilities.dtype} values")
    out = np.empty(probabilities.shape, dtype=np.float32)
    rows = max(1, CHECK_ELEMENTS // max(1, probabilities[:1].size))
    for start in range(0, len(probabilities), rows):
        block = probabilities[start : start + rows].astype(np.float64)
        inside = (block >= 0) & (block <= 1)
        if not inside.all():
            where = tuple(int(i) for i in np.argwhere(~inside)[0])
            raise invalid(
                f"logits: probabilities must lie in [0, 1]; {float(block[where])} at"
                f" {list((where[0] + start, *where[1:]))}"
            )
        if task == MULTICLASS:
            sums = block.sum(axis=1)
            off = np.abs(sums - 1) > ROW_SUM_TOLERANCE
            if off.any():
                where = tuple(int(i) for i in np.argwhere(off)[0])
                raise invalid(
                    f"logits: probabilities of a row must sum to 1 (within {ROW_SUM_TOLERANCE:g});"
                    f" row {where[0] + start} sums to {float(sums[where]):.6g}"
                )
            out[start : start + rows] = np.log(np.maximum(block, PROBABILITY_FLOOR))
        else:
            q = np.clip(block, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
            out[start : start + rows] = np.log(q) - np.log1p(-q)
    return out
