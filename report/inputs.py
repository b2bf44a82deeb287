"""A report's input: a ``/score`` response, a ``/summary`` response or a ``focal evaluate`` result.

Each of the three is read into one view, a :class:`Document` of :class:`Section` s, each a
whole :class:`Result` and the parts compared with it:

- a ``/score`` response: one section, the batch;
- a ``focal evaluate`` result: one section, all rows, with its slices (``--slice-by``) as the
  parts;
- a ``/summary`` response: a section per source that has monitored samples, its lifetime, with
  its window as the part.

What is drawn is the additive statistics; the metrics shown with them are computed from those
very statistics by the shipped metrics graphs (:func:`focal_eval.evaluate.statistics.compute`,
the checks and graphs of ``POST /compute``), so figures and numbers always agree and a
malformed statistic is reported by its field, as ``/compute`` reports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from focal_eval.evaluate.statistics import Statistics, compute
from focal_eval.service.core.tasks import MULTICLASS, NAMES

SHAPES = (
    "a /score response (an object with statistics and shape), a /summary response (sources)"
    " or a focal evaluate result (statistics and inputs)"
)


class InputError(Exception):
    """The input file is missing, unreadable, not JSON or not one of the three results."""


@dataclass(frozen=True)
class Result:
    """One set of additive statistics and the metrics computed from them.

    ``metrics`` holds the scalars (NaN where undefined); ``per_class`` the per-class or
    per-label arrays (empty for a binary task, whose per-label values are scalars).
    """

    label: str
    task: str
    statistics: Statistics
    metrics: dict[str, float]
    per_class: dict[str, npt.NDArray[np.float64]]

    @property
    def samples(self) -> int:
        """Valid samples: rows not ignored (multi-class), samples with a label (otherwise)."""
        if self.task == MULTICLASS:
            return int(self.statistics["confusion_matrix"].sum())
        return int(self.statistics["samples"])

    @property
    def width(self) -> int:
        """Classes (multi-class) or labels."""
        return len(self.statistics["focal_loss_sum"])


@dataclass(frozen=True)
class Section:
    """A whole result and the parts of it compared with it (slices, a window)."""

    title: str
    whole: Result
    parts: tuple[Result, ...]
    parts_title: str = "Slices"


@dataclass(frozen=True)
class Document:
    """A report's input: what it is, the model that scored it, and its sections."""

    path: Path
    kind: str
    model: str
    parameters: dict[str, Any]
    sections: tuple[Section, ...]


def load(path: Path) -> Document:
    """Read one of the three results at ``path``.

    Raises:
        InputError: the file is missing or unreadable, not JSON, none of the three results,
            or a statistic is malformed; the message starts with the path.
    """
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise InputError(f"{path}: not JSON ({error})") from None
    try:
        return _document(path, document)
    except ValueError as error:
        raise InputError(f"{path}: {error}") from None


def _document(path: Path, document: Any) -> Document:
    """The view of a parsed input (ValueError naming the field when it does not fit)."""
    if isinstance(document, dict) and "sources" in document:
        sources = _object(document, "sources", "")
        sections = tuple(
            section
            for name in sorted(sources)
            if (section := _source(name, _object(sources, name, "sources."))) is not None
        )
        if not sections:
            raise ValueError("a /summary response with no monitored samples in any source")
        return Document(path, "/summary response", str(document.get("model_id", "")), {}, sections)
    if isinstance(document, dict) and "statistics" in document and "inputs" in document:
        task = _task(document)
        slices = document.get("slices", [])
        if not isinstance(slices, list):
            raise ValueError("slices: expected a list")
        parts = tuple(
            _slice(_object(entry, None, f"slices[{i}]"), task, f"slices[{i}].")
            for i, entry in enumerate(slices)
        )
        whole = _result("all rows", task, document["statistics"], "")
        return _with_model(path, "focal evaluate result", document, Section("", whole, parts))
    if isinstance(document, dict) and "statistics" in document and "shape" in document:
        whole = _result("the batch", _task(document), document["statistics"], "")
        return _with_model(path, "/score response", document, Section("", whole, ()))
    raise ValueError(f"not {SHAPES}")


def _with_model(path: Path, kind: str, document: dict[str, Any], section: Section) -> Document:
    model = document.get("model")
    model_id = str(model.get("id", "")) if isinstance(model, dict) else ""
    parameters = document.get("parameters")
    return Document(
        path, kind, model_id, parameters if isinstance(parameters, dict) else {}, (section,)
    )


def _source(name: str, source: dict[str, Any]) -> Section | None:
    """A source's lifetime with its window as the part; None before its first sample."""
    where = f"sources.{name}."
    task = _task(source, where)
    lifetime = _object(source, "lifetime", where)
    if "statistics" not in lifetime:
        return None
    window = _object(source, "window", where)
    parts: tuple[Result, ...] = ()
    if "statistics" in window:
        parts = (_result("window", task, window["statistics"], f"{where}window."),)
    whole = _result("lifetime", task, lifetime["statistics"], f"{where}lifetime.")
    return Section(f"Source {name}", whole, parts, "Window")


def _result(label: str, task: str, statistics: Any, where: str) -> Result:
    """Statistics checked and their metrics computed (ValueError naming the field)."""
    if not isinstance(statistics, dict):
        raise ValueError(f"{where}statistics: expected an object of named arrays")
    try:
        computed = compute(statistics, task)
    except ValueError as error:
        raise ValueError(f"{where}{error}") from None
    arrays = {name: np.asarray(value) for name, value in statistics.items()}
    metrics = {name: float(value) for name, value in computed["metrics"].items()}
    groups = [value for key, value in computed.items() if key.startswith("per_")]
    per_class = {
        name: np.asarray(value, dtype=np.float64)
        for group in groups
        for name, value in group.items()
    }
    return Result(label, task, arrays, metrics, per_class)


def _task(document: Mapping[str, Any], where: str = "") -> str:
    task = document.get("task")
    if task not in NAMES:
        raise ValueError(f"{where}task: expected one of {', '.join(NAMES)}, got {task!r}")
    return str(task)


def _object(document: Mapping[str, Any], key: str | None, where: str) -> dict[str, Any]:
    """``document[key]`` (``document`` itself for None) when it is a JSON object."""
    value = document if key is None else document.get(key)
    if not isinstance(value, dict):
        raise ValueError(f"{where}{'' if key is None else key}: expected an object")
    return value


def _slice(entry: dict[str, Any], task: str, where: str) -> Result:
    """A slice of a ``focal evaluate`` result, labelled by its columns' values."""
    by = _object(entry, "by", where)
    label = ", ".join(f"{column} = {value}" for column, value in by.items())
    return _result(label, task, entry.get("statistics"), where)
