"""The shipped fused graphs, run with the built kernel library."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from focal_eval.service.artifacts import default_artifact_dir, find_artifact, open_session
from focal_eval.service.kernel import library_path

IGNORE = -100


def run_fused(
    kind: str,
    feeds: dict[str, npt.NDArray[Any]],
    threads: int = 2,
    library: Path | None = None,
) -> dict[str, npt.NDArray[Any]]:
    """The outputs of the fused graph ``kind`` on ``feeds``, by name; ``library``: the installed."""
    library = library or library_path()
    assert library is not None, "the package was installed without its kernel"
    session = open_session(find_artifact(default_artifact_dir(), kind), threads, [library])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds), strict=True))


def scalar(value: float, dtype: type = np.float32) -> npt.NDArray[Any]:
    """A 0-d array, as a graph's scalar inputs are."""
    return np.asarray(value, dtype)


def near_edges(values: npt.NDArray[np.float64], bins: int, margin: float = 1e-5) -> int:
    """How many ``values * bins`` lie within ``margin`` of an integer: float32 may bin them
    on either side of that edge (a sample moves between two cells: two counts change by 1)."""
    scaled = values * bins
    return int(np.count_nonzero(np.abs(scaled - np.round(scaled)) < margin))


def assert_counts(got: npt.NDArray[Any], want: npt.NDArray[Any], moved: int, what: str) -> None:
    """Counts equal but for ``moved`` samples, each changing two counts by one."""
    assert got.shape == want.shape, what
    difference = int(np.abs(got.astype(np.int64) - want.astype(np.int64)).sum())
    assert difference <= 2 * moved, f"{what}: {difference} counts differ, {moved} near an edge"
