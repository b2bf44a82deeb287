from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from focal_eval.focal import SigmoidFocalLoss, sigmoid_focal_loss
from tests.focal.reference import sigmoid_focal_loss64


def torchvision_style(x: torch.Tensor, t: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """The torchvision.ops.sigmoid_focal_loss formula (written here; torchvision's wheel does not
    import beside torch 2.13 on this machine)."""
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss


@pytest.mark.parametrize("alpha", [0.25, 0.5, -1.0])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 5.0])
@pytest.mark.parametrize(
    ("scale", "soft"),
    [
        pytest.param(1.0, False, id="scale1"),
        pytest.param(30.0, False, id="scale30"),
        pytest.param(1e4, False, id="scale1e4"),
        pytest.param(3.0, True, id="soft-targets"),
    ],
)
def test_matches_float64_reference(alpha: float, gamma: float, scale: float, soft: bool) -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((64, 5)) * scale).astype(np.float32)
    t = rng.random((64, 5)) if soft else (rng.random((64, 5)) < 0.3).astype(np.float64)
    t = t.astype(np.float32)
    ours = sigmoid_focal_loss(torch.from_numpy(x), torch.from_numpy(t), alpha, gamma)
    assert torch.isfinite(ours).all()
    expected = sigmoid_focal_loss64(x, t, alpha, gamma)
    np.testing.assert_allclose(ours.double().numpy(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_matches_torchvision_semantics_where_finite(gamma: float) -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(100, 4, generator=generator) * 4
    t = (torch.rand(100, 4, generator=generator) < 0.4).float()
    ours = sigmoid_focal_loss(x, t, 0.25, gamma, reduction="none")
    torch.testing.assert_close(ours, torchvision_style(x, t, 0.25, gamma), rtol=1e-5, atol=1e-6)


def test_gamma_zero_without_alpha_is_binary_cross_entropy() -> None:
    x = torch.randn(30) * 5
    t = (torch.rand(30) < 0.5).float()
    torch.testing.assert_close(
        sigmoid_focal_loss(x, t, alpha=-1.0, gamma=0.0, reduction="mean"),
        F.binary_cross_entropy_with_logits(x, t),
    )


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
def test_finite_values_and_gradients_for_extreme_logits(gamma: float) -> None:
    # 1e30: far past |x| = 1e4; near float32 max the loss itself (about x) overflows
    x = torch.tensor([1e4, -1e4, 100.0, -100.0, 0.0, 1e30], requires_grad=True)
    t = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    loss = sigmoid_focal_loss(x, t, 0.25, gamma, reduction="sum")
    loss.backward()
    assert torch.isfinite(loss)
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_reductions_and_module(reduction: str) -> None:
    x = torch.randn(8, 3)
    t = torch.randint(0, 2, (8, 3))
    per_element = sigmoid_focal_loss(x, t, reduction="none")
    expected = {"none": per_element, "mean": per_element.mean(), "sum": per_element.sum()}
    torch.testing.assert_close(sigmoid_focal_loss(x, t, reduction=reduction), expected[reduction])
    torch.testing.assert_close(SigmoidFocalLoss(reduction=reduction)(x, t), expected[reduction])


def test_gradcheck_float64() -> None:
    x = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    t = torch.rand(6, 2, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: sigmoid_focal_loss(z, t, 0.25, 0.5), (x,))


def test_half_precision_input_is_computed_in_float32() -> None:
    x = torch.randn(10).half()
    t = (torch.rand(10) < 0.5).float()
    ours = sigmoid_focal_loss(x, t)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, sigmoid_focal_loss(x.float(), t))
