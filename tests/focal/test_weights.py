from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight

from focal_eval.focal import class_balanced_weights, inverse_frequency_weights


@pytest.mark.parametrize("beta", [0.0, 0.9, 0.99, 0.9999])
def test_class_balanced_weights_follow_effective_number(beta: float) -> None:
    counts = [5000, 300, 12, 1]
    inverse = [(1 - beta) / (1 - beta**n) if beta > 0 else 1.0 for n in counts]
    expected = np.array(inverse) * len(counts) / sum(inverse)
    ours = class_balanced_weights(torch.tensor(counts), beta)
    assert ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-6)
    assert ours.sum().item() == pytest.approx(len(counts), rel=1e-6)


def test_class_balanced_weights_zero_count_gets_zero_weight() -> None:
    ours = class_balanced_weights(torch.tensor([100, 0, 10]), beta=0.99)
    inverse = np.array([(1 - 0.99) / (1 - 0.99**100), (1 - 0.99) / (1 - 0.99**10)])
    expected = inverse * 2 / inverse.sum()
    np.testing.assert_allclose(ours.numpy(), [expected[0], 0.0, expected[1]], rtol=1e-6)


def test_class_balanced_weights_approach_inverse_frequency_as_beta_tends_to_one() -> None:
    counts = torch.tensor([1000, 100, 10])
    cb = class_balanced_weights(counts, beta=1 - 1e-9)
    inverse = 1.0 / counts.double()
    np.testing.assert_allclose(cb.numpy(), (inverse * 3 / inverse.sum()).numpy(), rtol=1e-4)


def test_inverse_frequency_equals_sklearn_balanced() -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(4, size=500, p=[0.7, 0.2, 0.07, 0.03])
    counts = torch.from_numpy(np.bincount(labels, minlength=4))
    expected = compute_class_weight("balanced", classes=np.arange(4), y=labels)
    np.testing.assert_allclose(inverse_frequency_weights(counts).numpy(), expected, rtol=1e-6)


def test_inverse_frequency_zero_count_gets_zero_weight() -> None:
    ours = inverse_frequency_weights(torch.tensor([30.0, 0.0, 10.0]))
    np.testing.assert_allclose(ours.numpy(), [40 / 60, 0.0, 40 / 20], rtol=1e-6)
