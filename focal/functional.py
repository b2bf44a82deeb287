r"""Focal loss (Lin et al., 2017), softmax and sigmoid, as TorchScript-compatible functions.

Each public function is a pipeline of private pieces, as in torchmetrics: argument checks (Python
values), tensor checks (shapes, dtypes, label values, eager only in spirit but scriptable), then the
computation. :mod:`focal_eval.focal.losses` wraps the same pieces in modules and
:mod:`focal_eval.focal.statistics` reuses the computation for the evaluation step, so each formula
is written once.

Numerics: the softmax path is built on the row maximum :math:`m` and :math:`e = \exp(x - m)`
(:func:`softmax_parts`; ``log_softmax`` only with label smoothing), the sigmoid path on
``softplus``; the modulating factor
:math:`(1 - p_t)^\gamma` is formed as :math:`\exp(\gamma \log(1 - p_t))` with
:math:`1 - p_t` summed over the other classes (never subtracted from 1), so it stays finite,
with finite gradients, for every :math:`\gamma \ge 0` even at saturated predictions (where a
plain ``pow`` gives NaN gradients for :math:`\gamma < 1`). Half-precision inputs are computed
in float32.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from focal_eval.focal._validation import (
    check_alpha,
    check_gamma,
    check_label_smoothing,
    check_logits,
    check_normalization,
    check_reduction,
    check_sigmoid_alpha,
    check_target_shape,
    check_target_values,
)


def softmax_focal_loss(
    input: Tensor,
    target: Tensor,
    alpha: Optional[Tensor] = None,
    gamma: float = 2.0,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    normalization: str = "weight",
) -> Tensor:
    r"""Multi-class focal loss from logits.

    .. math::

        \text{FL}_i = -\sum_k q_{ik}\, \alpha_k\, (1 - p_{ik})^{\gamma} \log p_{ik},
        \qquad p_i = \operatorname{softmax}(x_i),
        \qquad q_{ik} = (1 - \varepsilon)\,[k = y_i] + \varepsilon / C

    With no label smoothing (:math:`\varepsilon = 0`) this is
    :math:`-\alpha_{y_i} (1 - p_{i,y_i})^\gamma \log p_{i,y_i}` (Lin et al., 2017,
    https://arxiv.org/abs/1708.02002). Label smoothing follows Keras'
    ``CategoricalFocalCrossentropy``: the focal term is applied per class to the smoothed target.
    At :math:`\gamma = 0` the loss equals ``F.cross_entropy(input, target, weight=alpha,
    ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction)``.

    Args:
        input: logits, float of any precision (float16 / bfloat16 are computed in float32).
        target: class indices in ``[0, C)``, or ``ignore_index``.
        alpha: per-class weights ``(C,)`` gathered at each class, or a 0-d tensor that weighs
            every class alike (Keras' meaning of a scalar alpha; it cancels out of
            ``reduction="mean"`` with ``normalization="weight"``). ``None`` weighs all by 1.
        gamma: focusing parameter, ``>= 0``; 0 gives cross entropy.
        ignore_index: target value whose elements contribute 0 to the loss and its
            normalisation.
        label_smoothing: :math:`\varepsilon` in ``[0, 1)``.
        reduction: ``"none"`` (per-element loss, 0 where ignored), ``"sum"`` or ``"mean"``.
        normalization: divisor for ``"mean"``: ``"weight"`` (default) divides by
            :math:`\sum_i \alpha_{y_i}` over non-ignored elements, exactly as ``F.cross_entropy``
            does (the count of non-ignored elements when ``alpha`` is None); ``"valid"``
            divides by the count of non-ignored elements whatever ``alpha`` is. With every
            element ignored the mean is 0, not NaN (``F.cross_entropy`` gives NaN there).

    Returns:
        The reduced loss (0-d), or per-element losses of ``target``'s shape for ``"none"``.

    Raises:
        ValueError: an argument or tensor is out of its domain; the message names it.

    Shape:
        - input: :math:`(N, C)` or :math:`(N, C, d_1, \ldots, d_k)`, :math:`C \ge 2`.
        - target: :math:`(N)` or :math:`(N, d_1, \ldots, d_k)`, integer.
        - output: :math:`()`, or target's shape for ``reduction="none"``.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 3.0]])
        >>> labels = torch.tensor([0, 1])
        >>> loss = softmax_focal_loss(logits, labels, gamma=2.0)
        >>> torch.allclose(softmax_focal_loss(logits, labels, gamma=0.0),
        ...                F.cross_entropy(logits, labels))
        True
    """
    if not torch.jit.is_scripting():  # type: ignore[attr-defined]
        alpha = _as_tensor_or_none(alpha)
    _check_softmax_arguments(gamma, label_smoothing, reduction, normalization)
    _check_softmax_tensors(input, target, alpha, ignore_index)
    return _softmax_focal_loss(
        input, target, alpha, gamma, ignore_index, label_smoothing, reduction, normalization
    )


def sigmoid_focal_loss(
    input: Tensor,
    target: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> Tensor:
    r"""Binary / multi-label focal loss from logits, as in the paper and torchvision.

    .. math::

        \text{FL} = \alpha_t\, (1 - p_t)^{\gamma}\, \text{BCE}(x, t), \qquad
        p = \sigma(x), \quad p_t = p\,t + (1 - p)(1 - t), \quad
        \alpha_t = \alpha\,t + (1 - \alpha)(1 - t)

    computed as
    :math:`\text{BCE} = t\,\operatorname{softplus}(-x) + (1 - t)\operatorname{softplus}(x)`
    and :math:`\log(1 - p_t) = \operatorname{logaddexp}(\log t - \operatorname{softplus}(x),
    \log(1 - t) - \operatorname{softplus}(-x))`, which stay finite for :math:`|x|` up to the
    float range, eagerly and after ONNX export (``log(sigmoid(x))`` forms give NaN or inf there).
    Targets may be soft (any value in ``[0, 1]``). The paper divides the sum by the number of
    positive anchors: use ``reduction="sum"`` and divide.

    Args:
        input: logits of any shape, float of any precision (half precision computed in float32).
        target: same shape, values in ``[0, 1]`` (float, integer or bool).
        alpha: weight of positives in ``[0, 1]``; negatives get ``1 - alpha``; a negative value
            turns weighting off (torchvision's convention).
        gamma: focusing parameter, ``>= 0``.
        reduction: ``"none"``, ``"mean"`` (over all elements) or ``"sum"``.

    Returns:
        Per-element losses (``"none"``) or their mean / sum.

    Raises:
        ValueError: an argument or tensor is out of its domain; the message names it.

    Example:
        >>> x = torch.tensor([3.0, -2.0, 1e4])
        >>> t = torch.tensor([1.0, 0.0, 0.0])
        >>> sigmoid_focal_loss(x, t, reduction="none").isfinite().all().item()
        True
    """
    _check_sigmoid_arguments(alpha, gamma, reduction)
    _check_sigmoid_tensors(input, target)
    return _sigmoid_focal_loss(input, target, alpha, gamma, reduction)


@torch.jit.unused
def _as_tensor_or_none(alpha: object) -> Optional[Tensor]:
    """Eager-mode convenience: accept a Python number or sequence for ``alpha``."""
    if alpha is None or isinstance(alpha, Tensor):
        return alpha
    return torch.as_tensor(alpha, dtype=torch.float32)


def _check_softmax_arguments(
    gamma: float, label_smoothing: float, reduction: str, normalization: str
) -> None:
    check_gamma(gamma)
    check_label_smoothing(label_smoothing)
    check_reduction(reduction)
    check_normalization(normalization)


def _check_softmax_tensors(
    input: Tensor, target: Tensor, alpha: Optional[Tensor], ignore_index: int
) -> None:
    check_logits(input)
    check_target_shape(input, target)
    check_alpha(alpha, input.shape[1], allow_scalar=True)
    check_target_values(target, input.shape[1], ignore_index)


def _check_sigmoid_arguments(alpha: float, gamma: float, reduction: str) -> None:
    check_sigmoid_alpha(alpha)
    check_gamma(gamma)
    check_reduction(reduction)


def _check_sigmoid_tensors(input: Tensor, target: Tensor) -> None:
    if not input.is_floating_point():
        raise ValueError(
            f"Expected `input` to be a floating point tensor, but got dtype {input.dtype}"
        )
    if target.shape != input.shape:
        raise ValueError(
            f"Expected `target` to have the shape of `input` {list(input.shape)}, but got"
            f" {list(target.shape)}"
        )
    if bool(((target < 0) | (target > 1)).any()):
        raise ValueError("Expected `target` values in [0, 1]")


def _softmax_focal_loss(
    input: Tensor,
    target: Tensor,
    alpha: Optional[Tensor],
    gamma: float,
    ignore_index: int,
    label_smoothing: float,
    reduction: str,
    normalization: str,
) -> Tensor:
    logits = flatten_classes(upcast_half(input))
    labels = target.reshape(-1).long()  # gather needs int64; uint8 masks would wrap -100
    valid = labels != ignore_index
    safe_labels = torch.where(valid, labels, torch.zeros_like(labels))
    num_classes = logits.shape[1]
    weights: Optional[Tensor] = None
    if alpha is not None:
        weights = alpha.to(logits.dtype).expand(num_classes)
    if label_smoothing == 0.0:
        gamma_tensor = torch.tensor(gamma, dtype=torch.float64)
        _, rest, total, shifted_true, _ = softmax_parts(logits, safe_labels)
        _, loss = softmax_focal_terms(shifted_true, total, rest, gamma_tensor)
        if weights is not None:
            loss = loss * weights.gather(0, safe_labels)
    else:
        log_probs = F.log_softmax(logits, dim=1)
        per_class = -log_probs
        if gamma != 0.0:
            per_class = per_class * torch.exp(gamma * log_one_minus_probs(log_probs))
        if weights is not None:
            per_class = per_class * weights
        smoothed = torch.full_like(logits, label_smoothing / num_classes)
        smoothed = smoothed.scatter_add(
            1,
            safe_labels.unsqueeze(1),
            torch.full_like(logits[:, :1], 1.0 - label_smoothing),
        )
        loss = (smoothed * per_class).sum(1)
    loss = torch.where(valid, loss, torch.zeros_like(loss))

    if reduction == "none":
        return loss.reshape(target.shape)
    if reduction == "sum":
        return loss.sum()
    if normalization == "weight" and weights is not None:
        denominator = torch.where(valid, weights.gather(0, safe_labels), 0.0).sum()
    else:
        denominator = valid.sum().to(loss.dtype)
    # an empty denominator means every term is 0: divide by 1 to give 0 with finite gradients
    return loss.sum() / torch.where(denominator > 0, denominator, torch.ones_like(denominator))


def _sigmoid_focal_loss(
    input: Tensor, target: Tensor, alpha: float, gamma: float, reduction: str
) -> Tensor:
    logits = upcast_half(input)
    t = target.to(logits.dtype)
    softplus_pos = F.softplus(logits)  # -log(1 - p)
    softplus_neg = F.softplus(-logits)  # -log(p)
    loss = t * softplus_neg + (1.0 - t) * softplus_pos
    if gamma != 0.0:
        log_one_minus_pt = _logaddexp(torch.log(t) - softplus_pos, torch.log1p(-t) - softplus_neg)
        loss = loss * torch.exp(gamma * log_one_minus_pt)
    if alpha >= 0.0:
        loss = (alpha * t + (1.0 - alpha) * (1.0 - t)) * loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def upcast_half(input: Tensor) -> Tensor:
    """float16 / bfloat16 to float32; other dtypes unchanged."""
    if input.dtype == torch.float16 or input.dtype == torch.bfloat16:
        return input.float()
    return input


def flatten_classes(input: Tensor) -> Tensor:
    """``(N, C, d1, ..., dk)`` to ``(N * d1 * ... * dk, C)``, class dimension last."""
    if input.dim() == 2:
        return input
    return input.movedim(1, -1).reshape(-1, input.shape[1])


def softmax_parts(logits: Tensor, labels: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    r"""One softmax's parts at hard labels, each formed once, with one ``(M, C)`` tensor.

    With :math:`m_i = \max_k x_{ik}`, the other classes' exponentials
    :math:`o_{ik} = \exp(x_{ik} - m_i)` for :math:`k \ne y_i` (and 0 at :math:`k = y_i`) are the
    shifted logits with each row's label set to :math:`-\infty`, exponentiated in place. Then

    .. math::

        r_i = \sum_k o_{ik}, \qquad s_i = r_i + \exp(x_{i,y_i} - m_i), \qquad
        1 - p_{i,y_i} = r_i / s_i

    so :math:`1 - p_{i,y_i}` is a sum, never a difference that cancels where :math:`p_{i,y_i}`
    nears 1, and the largest probability is exactly :math:`1 / s_i` (:math:`\exp(0) = 1`). In
    an exported graph the label's entry is set by one scatter into the shifted logits, which
    onnxruntime does in place, and the exponentials are summed once. :math:`m_i` and
    :math:`x_{i,y_i}` are read from the flattened logits at :math:`i C + j` (:math:`j` the
    first argmax, then the label), so that the graph reads the logits in one ``ArgMax`` and
    one subtraction.

    Args:
        logits: ``(M, C)`` :math:`x`.
        labels: ``(M,)`` class indices, all in ``[0, C)`` (ignored rows replaced beforehand;
            another value would read another row's logit).

    Returns:
        ``(others, rest, total, shifted_true, first)``: ``(M, C)`` :math:`o`, and ``(M,)``
        :math:`1 - p_{i,y_i}`, :math:`s_i`, :math:`x_{i,y_i} - m_i` and the first index of each
        row's maximum (ties: the lowest).
    """
    first = logits.argmax(dim=1)
    rows = torch.arange(logits.shape[0], device=logits.device) * logits.shape[1]
    flat = logits.reshape(-1)
    top = flat.gather(0, rows + first)
    shifted_true = flat.gather(0, rows + labels) - top
    others = (logits - top.unsqueeze(1)).scatter_(1, labels.unsqueeze(1), float("-inf")).exp_()
    others_sum = others.sum(1)
    total = others_sum + torch.exp(shifted_true)
    return others, others_sum / total, total, shifted_true, first


def softmax_focal_terms(
    shifted_true: Tensor, total: Tensor, rest: Tensor, gamma: Tensor
) -> Tuple[Tensor, Tensor]:
    r"""Per-row cross entropy and unweighted focal loss at hard labels.

    .. math::

        \text{CE}_i = \log s_i - (x_{i,y_i} - m_i), \qquad
        \text{FL}_i = \exp(\gamma \log(1 - p_{i,y_i}))\, \text{CE}_i

    Args:
        shifted_true: ``(M,)`` :math:`x_{i,y_i} - m_i` (:func:`softmax_parts`).
        total: ``(M,)`` :math:`s_i = \sum_k \exp(x_{ik} - m_i)`.
        rest: ``(M,)`` :math:`1 - p_{i,y_i}`, the other classes' sum over :math:`s_i`.
        gamma: 0-d focusing parameter (a tensor, so that it can be a graph input).

    Returns:
        ``(cross_entropy, focal_loss)``, each ``(M,)``.
    """
    cross_entropy = torch.log(total) - shifted_true
    modulating = torch.exp(gamma * log_of_rest(rest))
    return cross_entropy, modulating * cross_entropy


def log_of_rest(rest: Tensor) -> Tensor:
    r""":math:`\log(1 - p_{i,y_i})` from the other classes' sum, floored at the smallest normal.

    No log-sum-exp (which onnxruntime evaluates unshifted). Below the floor the cross entropy
    rounds to 0, so the focal term is 0 either way, and the floor keeps the log and its
    gradient finite.
    """
    tiny = 2.2250738585072014e-308 if rest.dtype == torch.float64 else 1.1754943508222875e-38
    return torch.log(rest.clamp_min(tiny))


def log_one_minus_probs(log_probs: Tensor) -> Tensor:
    r""":math:`\log(1 - p_{ik})` for every class.

    For the row's most likely class this is the log-sum-exp over the others; every other class
    has :math:`p_{ik} \le 1/2`, where ``log1p(-p)`` is accurate.
    """
    classes = torch.arange(log_probs.shape[1], device=log_probs.device)
    is_top = classes.unsqueeze(0) == log_probs.argmax(dim=1, keepdim=True)
    others = torch.log1p(-log_probs.exp().masked_fill(is_top, 0.0))
    top = shifted_logsumexp(log_probs.masked_fill(is_top, float("-inf")), dim=1).unsqueeze(1)
    return torch.where(is_top, top, others)


def shifted_logsumexp(x: Tensor, dim: int) -> Tensor:
    r""":math:`m + \log \sum_k \exp(x_k - m)`, :math:`m = \max_k x_k`, from elementary ops.

    ``torch.logsumexp`` exports to ONNX ``ReduceLogSumExp``, which onnxruntime evaluates without
    the shift: ``exp`` underflows below about -87 (float32), so a row of log-probabilities
    beyond that gives ``-inf`` (then NaN at gamma = 0) or loses digits in denormals. Rows that
    are all ``-inf`` give ``-inf``.
    """
    peak = x.amax(dim=dim, keepdim=True)
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    return (peak + torch.log(torch.exp(x - peak).sum(dim=dim, keepdim=True))).squeeze(dim)


def _logaddexp(a: Tensor, b: Tensor) -> Tensor:
    """``log(exp(a) + exp(b))`` from elementary ops; ``-inf`` in one argument is exact."""
    return torch.maximum(a, b) + torch.log1p(torch.exp(-torch.abs(a - b)))
