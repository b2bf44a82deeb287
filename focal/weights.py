r"""Per-class weights (``alpha``) from class counts.

Both functions give classes with a count of 0 a weight of 0 (they never occur, so their weight
only matters to the normalisation) instead of dividing by zero.
"""

import torch
from torch import Tensor

from focal_eval.focal._validation import check_beta


def class_balanced_weights(counts: Tensor, beta: float = 0.9999) -> Tensor:
    r"""Class-balanced weights from the effective number of samples (Cui et al., 2019).

    .. math::

        E_c = \frac{1 - \beta^{n_c}}{1 - \beta}, \qquad
        w_c \propto \frac{1}{E_c} = \frac{1 - \beta}{1 - \beta^{n_c}}

    normalised so that the weights of the classes present (:math:`n_c > 0`) average 1 (they sum
    to C when every class is present, as in the paper). :math:`\beta = 0` weighs every present
    class 1; :math:`\beta \to 1` approaches inverse frequency. https://arxiv.org/abs/1901.05555

    Args:
        counts: ``(C,)`` non-negative sample counts per class (integer or float).
        beta: in ``[0, 1)``.

    Returns:
        ``(C,)`` float32 weights, 0 for absent classes.

    Raises:
        ValueError: ``beta`` out of range, or ``counts`` not a 1-D non-negative vector with a
            positive entry.

    Example:
        >>> class_balanced_weights(torch.tensor([100, 10, 0]), beta=0.99)
        tensor([0.2621, 1.7379, 0.0000])
    """
    check_beta(beta)
    n = _checked_counts(counts)
    present = n > 0
    # 1 - beta ** n, accurate for beta near 1 (expm1); exactly 1 for beta = 0 (log 0 = -inf)
    effective = -torch.expm1(n * torch.log(torch.tensor(beta, dtype=torch.float64)))
    inverse = torch.where(present, 1.0 / torch.where(present, effective, 1.0), 0.0)
    return (inverse * present.sum() / inverse.sum()).float()


def inverse_frequency_weights(counts: Tensor) -> Tensor:
    r"""Inverse class frequency, scikit-learn's ``class_weight="balanced"``.

    .. math::

        w_c = \frac{N}{K\, n_c}, \qquad N = \sum_c n_c, \quad K = |\{c : n_c > 0\}|

    Equal to ``sklearn.utils.class_weight.compute_class_weight("balanced", ...)`` when every
    class is present; absent classes get 0.

    Args:
        counts: ``(C,)`` non-negative sample counts per class.

    Returns:
        ``(C,)`` float32 weights.

    Raises:
        ValueError: ``counts`` not a 1-D non-negative vector with a positive entry.

    Example:
        >>> inverse_frequency_weights(torch.tensor([30, 10, 0]))
        tensor([0.6667, 2.0000, 0.0000])
    """
    n = _checked_counts(counts)
    present = (n > 0).sum().to(n.dtype)
    weights = torch.where(n > 0, n.sum() / (present * torch.where(n > 0, n, 1.0)), 0.0)
    return weights.float()


def _checked_counts(counts: Tensor) -> Tensor:
    if counts.dim() != 1:
        raise ValueError(
            f"Expected argument `counts` to be a 1-D tensor, but got shape {list(counts.shape)}"
        )
    n = counts.to(torch.float64)
    if not bool(torch.isfinite(n).all()) or bool((n < 0).any()):
        raise ValueError("Expected argument `counts` to hold finite values >= 0")
    if not bool((n > 0).any()):
        raise ValueError("Expected argument `counts` to have at least one positive count")
    return n
