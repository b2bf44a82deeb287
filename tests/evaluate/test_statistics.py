"""Torch-free ``merge`` and ``compute`` equal the library's ``focal.merge`` and ``compute``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from focal_eval import focal
from focal_eval.evaluate.statistics import compute, merge
from tests.service._inputs import batch, label_batch


def as_dict(statistics: Any) -> dict[str, np.ndarray]:
    return {name: value.numpy() for name, value in zip(statistics._fields, statistics, strict=True)}


def test_multiclass_merge_and_compute_equal_the_library() -> None:
    halves = [batch(200, 4, seed=s, ignore=5) for s in (1, 2)]
    library = [focal.update(torch.from_numpy(x), torch.from_numpy(y))[1] for x, y in halves]
    merged = merge(as_dict(library[0]), as_dict(library[1]))
    want = focal.compute(focal.merge(*library))
    got = compute(merged)
    assert got["task"] == "multiclass"
    for name, value in got["metrics"].items():
        np.testing.assert_allclose(value, getattr(want, name).item(), rtol=1e-12, err_msg=name)
    np.testing.assert_allclose(got["per_class"]["f1"], want.f1.numpy(), rtol=1e-12)


def test_multilabel_statistics_as_json_lists() -> None:
    logits, targets = label_batch(300, 3, seed=3)
    _, statistics = focal.update_multilabel(torch.from_numpy(logits), torch.from_numpy(targets))
    lists = {k: v.tolist() for k, v in as_dict(statistics).items()}
    got = compute(lists)
    want = focal.compute_multilabel(statistics)
    assert got["task"] == "multilabel"
    assert got["metrics"]["macro_auroc"] == pytest.approx(want.macro_auroc.item(), rel=1e-12)


def test_merge_and_compute_name_what_is_wrong() -> None:
    with pytest.raises(
        ValueError, match=r"^Expected statistics with the same fields, but got \['b'\] in only one$"
    ):
        merge({"a": [1]}, {"a": [1], "b": [2]})
    with pytest.raises(
        ValueError, match=r"^Expected `a` of one shape in both, but got \[1\] and \[2\]$"
    ):
        merge({"a": [1]}, {"a": [1, 2]})
    with pytest.raises(ValueError, match=r"^statistics\.focal_loss_sum: missing \(required\)$"):
        compute({"confusion_matrix": [[1, 0], [0, 1]]})
