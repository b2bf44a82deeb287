from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from focal_eval.focal import FocalLoss, softmax_focal_loss
from tests.focal.reference import focal_loss64, softmax64

IGNORE = -100


def make_batch(
    seed: int, n: int, c: int, scale: float = 3.0, ignore_fraction: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    logits = torch.from_numpy((rng.standard_normal((n, c)) * scale).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, c, n))
    labels[torch.from_numpy(rng.random(n) < ignore_fraction)] = IGNORE
    return logits, labels


REDUCTIONS = ["none", "sum", "mean"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize(
    ("weighted", "label_smoothing", "ignore_fraction"),
    [
        pytest.param(False, 0.0, 0.0, id="plain"),
        pytest.param(True, 0.0, 0.0, id="weight"),
        pytest.param(False, 0.0, 0.3, id="ignore"),
        pytest.param(True, 0.0, 0.3, id="weight-ignore"),
        pytest.param(False, 0.1, 0.0, id="smoothing"),
        pytest.param(True, 0.25, 0.3, id="weight-smoothing-ignore"),
    ],
)
def test_gamma_zero_equals_cross_entropy(
    reduction: str, weighted: bool, label_smoothing: float, ignore_fraction: float
) -> None:
    logits, labels = make_batch(0, 97, 7, ignore_fraction=ignore_fraction)
    weight = torch.rand(7, generator=torch.Generator().manual_seed(1)) + 0.1 if weighted else None
    ours = softmax_focal_loss(
        logits, labels, weight, 0.0, IGNORE, label_smoothing, reduction=reduction
    )
    expected = F.cross_entropy(
        logits,
        labels,
        weight=weight,
        ignore_index=IGNORE,
        label_smoothing=label_smoothing,
        reduction=reduction,
    )
    torch.testing.assert_close(ours, expected, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_gamma_zero_equals_cross_entropy_for_spatial_input(
    reduction: str, label_smoothing: float
) -> None:
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 5, 4, 6, generator=generator) * 2
    labels = torch.randint(0, 5, (3, 4, 6), generator=generator)
    labels[0, 1] = IGNORE
    weight = torch.rand(5, generator=generator) + 0.5
    ours = softmax_focal_loss(
        logits, labels, weight, 0.0, IGNORE, label_smoothing, reduction=reduction
    )
    expected = F.cross_entropy(
        logits, labels, weight=weight, label_smoothing=label_smoothing, reduction=reduction
    )
    torch.testing.assert_close(ours, expected, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 5.0])
def test_focal_to_cross_entropy_ratio_is_alpha_times_modulating_factor(gamma: float) -> None:
    logits, labels = make_batch(3, 200, 6, scale=2.0)
    alpha = torch.linspace(0.5, 2.0, 6)
    focal = softmax_focal_loss(logits, labels, alpha, gamma, reduction="none")
    ce = F.cross_entropy(logits, labels, reduction="none")
    p_true = softmax64(logits.numpy())[np.arange(200), labels.numpy()]
    expected = alpha.double().numpy()[labels.numpy()] * (1.0 - p_true) ** gamma
    np.testing.assert_allclose((focal / ce).double().numpy(), expected, rtol=1e-4)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 64),
    c=st.integers(2, 40),
    gamma=st.sampled_from([0.0, 0.5, 1.0, 2.0, 5.0]) | st.floats(0.0, 6.0),
    weighted=st.booleans(),
    ignore_fraction=st.sampled_from([0.0, 0.3, 1.0]),
    scale=st.sampled_from([1.0, 30.0, 1e4]),
    label_smoothing=st.sampled_from([0.0, 0.0, 0.1]),
)
def test_matches_float64_reference(
    seed: int,
    n: int,
    c: int,
    gamma: float,
    weighted: bool,
    ignore_fraction: float,
    scale: float,
    label_smoothing: float,
) -> None:
    logits, labels = make_batch(seed, n, c, scale, ignore_fraction)
    alpha = torch.rand(c, generator=torch.Generator().manual_seed(seed)) if weighted else None
    ours = softmax_focal_loss(
        logits, labels, alpha, gamma, IGNORE, label_smoothing, reduction="none"
    )
    expected = focal_loss64(
        logits.numpy(),
        labels.numpy(),
        None if alpha is None else alpha.numpy(),
        gamma,
        IGNORE,
        label_smoothing,
    )
    np.testing.assert_allclose(ours.double().numpy(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("normalization", ["weight", "valid"])
def test_mean_normalizations(normalization: str) -> None:
    logits, labels = make_batch(4, 50, 4, ignore_fraction=0.3)
    alpha = torch.tensor([0.25, 1.0, 2.0, 4.0])
    per_sample = focal_loss64(logits.numpy(), labels.numpy(), alpha.numpy(), 2.0)
    valid = labels.numpy() != IGNORE
    if normalization == "weight":
        denominator = alpha.double().numpy()[labels.numpy()[valid]].sum()
    else:
        denominator = valid.sum()
    ours = softmax_focal_loss(logits, labels, alpha, 2.0, normalization=normalization)
    assert ours.item() == pytest.approx(per_sample.sum() / denominator, rel=1e-5)


def test_scalar_alpha_weighs_every_class_alike() -> None:
    logits, labels = make_batch(5, 40, 3)
    scalar = softmax_focal_loss(logits, labels, torch.tensor(0.25), reduction="none")
    vector = softmax_focal_loss(logits, labels, torch.full((3,), 0.25), reduction="none")
    torch.testing.assert_close(scalar, vector)
    unweighted = softmax_focal_loss(logits, labels)
    # under the default weight normalisation a uniform alpha cancels out of the mean
    torch.testing.assert_close(softmax_focal_loss(logits, labels, torch.tensor(0.25)), unweighted)
    valid_mean = softmax_focal_loss(logits, labels, 0.25, normalization="valid")  # type: ignore[arg-type]
    torch.testing.assert_close(valid_mean, 0.25 * unweighted)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("normalization", ["weight", "valid"])
def test_everything_ignored_gives_zero_with_zero_gradient(
    reduction: str, normalization: str
) -> None:
    logits = torch.randn(6, 3, requires_grad=True)
    labels = torch.full((6,), IGNORE)
    alpha = torch.tensor([1.0, 2.0, 3.0])
    loss = softmax_focal_loss(
        logits, labels, alpha, 2.0, reduction=reduction, normalization=normalization
    )
    assert torch.equal(loss, torch.zeros_like(loss))
    loss.sum().backward()
    assert logits.grad is not None
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_gradients_finite_at_saturation(gamma: float, label_smoothing: float) -> None:
    logits = torch.tensor(
        [[1e4, 0.0, 0.0], [60.0, 0.0, -60.0], [0.0, 1e4, -1e4], [5.0, 5.0, 5.0]],
        requires_grad=True,
    )
    labels = torch.tensor([0, 0, 0, 2])
    loss = softmax_focal_loss(logits, labels, None, gamma, label_smoothing=label_smoothing)
    loss.backward()
    assert torch.isfinite(loss)
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()


def test_plain_pow_would_give_nan_gradient_at_saturation() -> None:
    """The trap the log-space factor avoids: a tutorial (1 - p)**gamma, gamma < 1."""
    logits = torch.tensor([[1e4, 0.0]], requires_grad=True)
    p_true = F.softmax(logits, dim=1)[:, 0]
    ((1 - p_true) ** 0.5 * F.cross_entropy(logits, torch.tensor([0]))).sum().backward()
    assert logits.grad is not None
    assert torch.isnan(logits.grad).any()
    ours = torch.tensor([[1e4, 0.0]], requires_grad=True)
    softmax_focal_loss(ours, torch.tensor([0]), gamma=0.5).backward()
    assert ours.grad is not None
    assert torch.isfinite(ours.grad).all()


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_gradcheck_float64(gamma: float, label_smoothing: float) -> None:
    generator = torch.Generator().manual_seed(7)
    logits = torch.randn(5, 4, dtype=torch.float64, generator=generator, requires_grad=True)
    labels = torch.tensor([0, 3, IGNORE, 1, 2])
    alpha = torch.tensor([0.5, 1.0, 1.5, 2.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda x: softmax_focal_loss(x, labels, alpha, gamma, IGNORE, label_smoothing),
        (logits,),
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_is_computed_in_float32(dtype: torch.dtype) -> None:
    logits, labels = make_batch(8, 30, 5, scale=4.0)
    half = logits.to(dtype)
    ours = softmax_focal_loss(half, labels, reduction="none")
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, softmax_focal_loss(half.float(), labels, reduction="none"))


def test_float64_input_stays_float64() -> None:
    logits, labels = make_batch(9, 10, 3)
    assert softmax_focal_loss(logits.double(), labels).dtype == torch.float64


def test_module_equals_function() -> None:
    logits, labels = make_batch(10, 40, 4, ignore_fraction=0.2)
    alpha = [0.5, 1.0, 1.5, 2.0]
    module = FocalLoss(alpha, 1.5, IGNORE, 0.1, "sum", "valid")
    expected = softmax_focal_loss(logits, labels, torch.tensor(alpha), 1.5, IGNORE, 0.1, "sum")
    torch.testing.assert_close(module(logits, labels), expected)
    assert "alpha" in dict(module.named_buffers())
