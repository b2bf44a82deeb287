"""JSON responses with orjson: numpy arrays serialised natively, NaN written as ``null``."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson


def dumps(document: Any) -> bytes:
    """Orjson with numpy support; 0-d and non-contiguous arrays fall back to ``tolist``."""
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY, default=_fallback)


def _fallback(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
