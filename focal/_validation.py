"""Argument and tensor validation shared by the losses and the evaluation step.

Argument checks look only at Python values and run once (in ``__init__`` for modules);
tensor checks look at shapes, dtypes and label values and run on every call in eager mode.
Every failure is a ``ValueError`` whose message names the argument and the value received.
All functions here are TorchScript-compatible.
"""

import math
from typing import Optional

import torch
from torch import Tensor


def check_gamma(gamma: float) -> None:
    """``gamma`` must be a finite float >= 0."""
    if not (math.isfinite(gamma) and gamma >= 0.0):
        raise ValueError(f"Expected argument `gamma` to be a finite float >= 0, but got {gamma}")


def check_reduction(reduction: str) -> None:
    """``reduction`` must be ``"none"``, ``"mean"`` or ``"sum"``."""
    allowed = ["none", "mean", "sum"]
    if reduction not in allowed:
        raise ValueError(
            f"Expected argument `reduction` to be one of {allowed}, but got '{reduction}'"
        )


def check_normalization(normalization: str) -> None:
    """``normalization`` must be ``"weight"`` or ``"valid"``."""
    allowed = ["weight", "valid"]
    if normalization not in allowed:
        raise ValueError(
            f"Expected argument `normalization` to be one of {allowed}, but got '{normalization}'"
        )


def check_label_smoothing(label_smoothing: float) -> None:
    """``label_smoothing`` must lie in [0, 1)."""
    if not (label_smoothing >= 0.0 and label_smoothing < 1.0):
        raise ValueError(
            "Expected argument `label_smoothing` to be a float in [0, 1),"
            f" but got {label_smoothing}"
        )


def check_num_bins(num_bins: int) -> None:
    """``num_bins`` (calibration bins) must be a positive integer."""
    if num_bins < 1:
        raise ValueError(f"Expected argument `num_bins` to be an integer >= 1, but got {num_bins}")


def check_score_bins(score_bins: int) -> None:
    """``score_bins`` (ranking histogram bins) must be a positive integer."""
    if score_bins < 1:
        raise ValueError(
            f"Expected argument `score_bins` to be an integer >= 1, but got {score_bins}"
        )


def check_threshold(threshold: float) -> None:
    """``threshold`` (a decision threshold on probabilities) must lie in (0, 1)."""
    if not (threshold > 0.0 and threshold < 1.0):
        raise ValueError(
            f"Expected argument `threshold` to be a float in (0, 1), but got {threshold}"
        )


def check_sigmoid_alpha(alpha: float) -> None:
    """Sigmoid ``alpha`` weighs positives: at most 1 (negative turns the weighting off)."""
    if not alpha <= 1.0:
        raise ValueError(
            f"Expected argument `alpha` to be <= 1 (negative turns it off), but got {alpha}"
        )


def check_beta(beta: float) -> None:
    """``beta`` of the effective number of samples must lie in [0, 1)."""
    if not (beta >= 0.0 and beta < 1.0):
        raise ValueError(f"Expected argument `beta` to be a float in [0, 1), but got {beta}")


def check_alpha(alpha: Optional[Tensor], num_classes: int, allow_scalar: bool) -> None:
    """``alpha`` must be None, a finite non-negative ``(C,)`` vector, or (if allowed) a 0-d one."""
    if alpha is None:
        return
    if not alpha.is_floating_point():
        raise ValueError(
            f"Expected argument `alpha` to be a floating point tensor, but got dtype {alpha.dtype}"
        )
    scalar_ok = allow_scalar and alpha.dim() == 0
    if not scalar_ok and (alpha.dim() != 1 or alpha.shape[0] != num_classes):
        raise ValueError(
            f"Expected argument `alpha` to have shape ({num_classes},), but got shape"
            f" {list(alpha.shape)}"
        )
    if not bool(torch.isfinite(alpha).all()) or bool((alpha < 0).any()):
        raise ValueError("Expected argument `alpha` to hold finite values >= 0")


def check_logits(input: Tensor) -> None:
    """``input`` must be floating point with shape ``(N, C, d1, ..., dk)`` and C >= 2."""
    if not input.is_floating_point():
        raise ValueError(
            f"Expected `input` to be a floating point tensor, but got dtype {input.dtype}"
        )
    if input.dim() < 2:
        raise ValueError(
            f"Expected `input` to have shape (N, C) or (N, C, d1, ..., dk), but got shape"
            f" {list(input.shape)}"
        )
    if input.shape[1] < 2:
        raise ValueError(
            f"Expected `input` to have at least 2 classes (dimension 1), but got {input.shape[1]}"
        )


def check_target_shape(input: Tensor, target: Tensor) -> None:
    """``target`` must be an integer tensor of ``input``'s shape without the class dimension."""
    if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
        raise ValueError(f"Expected `target` to be an integer tensor, but got dtype {target.dtype}")
    expected = [input.shape[0]]
    expected.extend(input.shape[2:])
    if list(target.shape) != expected:
        raise ValueError(
            f"Expected `target` to have shape {expected}, but got shape {list(target.shape)}"
        )


def check_target_values(target: Tensor, num_classes: int, ignore_index: int) -> None:
    """Every target lies in ``[0, num_classes)`` or equals ``ignore_index``.

    Eager PyTorch would raise deep inside ``gather``; onnxruntime would silently wrap ``-1`` to
    class ``C - 1``. Checking here gives one clear error in every runtime that runs Python. The
    comparison runs in int64: in a small dtype ``ignore_index`` would wrap (-100 is 156 in uint8).
    """
    target = target.long()
    bad = (target != ignore_index) & ((target < 0) | (target >= num_classes))
    if bool(bad.any()):
        first = int(target[bad][0].item())
        raise ValueError(
            f"Expected `target` values in [0, {num_classes}) or equal to ignore_index"
            f" ({ignore_index}), but found {first}"
        )


def check_finite(name: str, values: Tensor) -> None:
    """``values`` holds no NaN or infinity.

    Checked on the extremes, one pass with no ``values``-sized mask: a NaN makes both NaN
    (torch's min and max propagate it), an infinity is one of them.
    """
    if values.numel() > 0 and not bool(torch.isfinite(torch.stack(torch.aminmax(values))).all()):
        raise ValueError(f"Expected `{name}` to hold only finite values, but found NaN or inf")
