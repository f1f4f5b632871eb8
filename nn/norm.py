"""Batch normalization over NCHW feature maps: training mode, inference mode, running averages.

Training mode (:func:`batch_norm`) normalizes each channel by the mean and the biased variance
of the batch itself, over the N, H and W axes, and its vjp carries the gradient through those
statistics. Inference mode (:func:`batch_norm_inference`) uses fixed statistics, the running
averages kept by :func:`update_running`, and is a plain affine map per channel. Dense (N, D)
activations are normalized as (N, D, 1, 1). The math is on ``spec/batch_norm.md`` and
``spec/batch_norm_inference.md``.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np

from nn.errors import DTypeError, ShapeError
from nn.op import VJP, Array, op

AXES = (0, 2, 3)
"""The axes a channel's statistics are taken over: N, H and W (everything but C)."""


def _moments(x: Array) -> tuple[Array, Array, Array]:
    """Mean, deviations and biased variance per channel, by two passes over ``x``."""
    mean = x.mean(axis=AXES)  # (N, C, H, W) -> (C,)
    d = x - mean[:, None, None]  # (N, C, H, W) - (C, 1, 1)
    # Second pass over the deviations: a sum of nonnegative terms, no cancellation (unlike
    # E[x^2] - E[x]^2, which can even come out negative in float32; see the spec page).
    var = (d * d).mean(axis=AXES)  # (N, C, H, W) -> (C,)
    return mean, d, var


def batch_moments(x: Array) -> tuple[Array, Array]:
    r"""Per-channel mean and biased variance of a batch of feature maps, over N, H and W.

    :math:`\mu_c = \frac{1}{m}\sum_{n,h,w} x_{nchw}` and
    :math:`\sigma^2_c = \frac{1}{m}\sum_{n,h,w} (x_{nchw} - \mu_c)^2` with :math:`m = NHW`,
    computed in two passes and in ``x``'s dtype. These are the statistics
    :func:`batch_norm` normalizes by.

    >>> mean, var = batch_moments(np.array([1.0, 2.0, 3.0, 6.0]).reshape(2, 1, 2, 1))
    >>> mean.tolist(), var.tolist()
    ([3.0], [3.5])
    """
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise DTypeError(f"batch_moments: x must have a floating dtype, received {x.dtype}")
    if x.ndim != 4:
        raise ShapeError(f"batch_moments: x must be (N, C, H, W), received shape {x.shape}")
    n, _, h, w = x.shape
    if n * h * w == 0:
        raise ShapeError(
            f"batch_moments: each channel needs at least one value (N*H*W >= 1), "
            f"received shape {x.shape}"
        )
    mean, _, var = _moments(x)
    return mean, var


def _real(value: object) -> float | None:
    """``value`` as a float if it is a real number (not a bool), else ``None``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        return None
    return float(value)


def _check_eps(where: str, eps: object, dtype: np.dtype[Any]) -> Any:
    """``eps`` as a scalar of ``dtype`` after checking that it is a positive finite number."""
    value = _real(eps)
    if value is None or not (math.isfinite(value) and value > 0):
        raise ValueError(
            f"{where}: eps must be a positive finite number (it keeps 1/sqrt(var + eps) "
            f"finite for a constant channel), received {eps!r}"
        )
    return dtype.type(value)  # a float64 scalar would upcast float32 arrays (NEP 50)


@op(
    signature="(n,c,h,w),(c),(c)->(n,c,h,w)",
    complex_safe=False,
    loops=False,
    nonempty=("n", "h", "w"),
    sample_sizes={"n": 3, "c": 4, "h": 2, "w": 5},
)
def batch_norm(x: Array, gamma: Array, beta: Array, *, eps: float = 1e-5) -> tuple[Array, VJP]:
    r"""Batch normalization in training mode, per channel over (N, H, W).

    .. math:: \hat x = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad
              y = \gamma \hat x + \beta

    with :math:`\mu, \sigma^2` the batch's per-channel mean and biased variance
    (:func:`batch_moments`). Gradient, with means over (N, H, W):
    ``dx = gamma / sqrt(var + eps) * (g - mean(g) - xhat * mean(g * xhat))``,
    ``dgamma = sum(g * xhat)``, ``dbeta = sum(g)``.

    >>> x = np.array([1.0, 3.0, -1.0, 5.0]).reshape(2, 2, 1, 1)
    >>> y, vjp = batch_norm(x, np.ones(2), np.zeros(2), eps=1e-12)
    >>> y[:, :, 0, 0].round(6).tolist()
    [[1.0, -1.0], [-1.0, 1.0]]
    """
    n, _, h, w = x.shape
    m = n * h * w  # values per channel
    eps_ = _check_eps("batch_norm", eps, x.dtype)
    _, d, var = _moments(x)
    inv_std = 1 / np.sqrt(var + eps_)  # (C,)
    # In place on arrays this op just allocated: each fresh (N, C, H, W) array costs page
    # faults on top of its pass over memory, about as much as the arithmetic here.
    xhat = d
    xhat *= inv_std[:, None, None]  # (N, C, H, W)
    y = xhat * gamma[:, None, None]  # (N, C, H, W)
    y += beta[:, None, None]

    def vjp(g: Array) -> tuple[Array, Array, Array]:
        dbeta = g.sum(axis=AXES)  # (N, C, H, W) -> (C,)
        dgamma = (g * xhat).sum(axis=AXES)  # (N, C, H, W) -> (C,)
        # The compact form: the two means remove the components of g along the directions
        # the statistics move (a constant shift, and xhat itself); spec/batch_norm.md.
        dx = xhat * (-dgamma / m)[:, None, None]  # (N, C, H, W), a fresh array per call
        dx += g
        dx -= (dbeta / m)[:, None, None]
        dx *= (gamma * inv_std)[:, None, None]  # (C, 1, 1) scale per channel
        return dx, dgamma, dbeta

    return y, vjp


def _check_statistic(name: str, value: Any, c: int, dtype: np.dtype[Any]) -> Array:
    """A fixed per-channel statistic as a (C,) array of ``dtype``, or a named error."""
    a = np.asarray(value)
    if a.dtype.kind not in "iuf":
        raise DTypeError(
            f"batch_norm_inference: {name} must be real numbers, one per channel, "
            f"received dtype {a.dtype}"
        )
    if a.shape != (c,):
        raise ShapeError(
            f"batch_norm_inference: {name} must have shape (C,) = ({c},), one value per "
            f"channel, received {a.shape}"
        )
    if not np.isfinite(a).all():
        raise ValueError(f"batch_norm_inference: {name} must be finite, received {a.tolist()}")
    return a.astype(dtype, copy=False)


def _random_statistics(rng: np.random.Generator, x: Array, *_: Array) -> dict[str, Any]:
    c = x.shape[1]
    return {"mean": rng.standard_normal(c), "var": rng.uniform(0.5, 2.0, c)}


@op(
    signature="(n,c,h,w),(c),(c)->(n,c,h,w)",
    complex_safe=True,
    loops=False,
    static=_random_statistics,
    sample_sizes={"n": 3, "c": 4, "h": 2, "w": 5},
)
def batch_norm_inference(
    x: Array, gamma: Array, beta: Array, *, mean: Any, var: Any, eps: float = 1e-5
) -> tuple[Array, VJP]:
    r"""Batch normalization in inference mode: fixed statistics, an affine map per channel.

    .. math:: y = \gamma \, \frac{x - \mu}{\sqrt{v + \epsilon}} + \beta

    ``mean`` and ``var`` are (C,) constants (the running averages of training), so each
    example is mapped on its own. Gradient: ``dx = g * gamma / sqrt(var + eps)``,
    ``dgamma = sum(g * xhat)``, ``dbeta = sum(g)`` over (N, H, W).

    >>> y, _ = batch_norm_inference(np.full((1, 1, 1, 2), 5.0), np.array([2.0]),
    ...                             np.array([1.0]), mean=np.array([3.0]),
    ...                             var=np.array([4.0]), eps=1e-12)
    >>> y.ravel().round(6).tolist()
    [3.0, 3.0]
    """
    c = x.shape[1]
    real = x.real.dtype  # statistics stay real: the op is holomorphic in x, gamma and beta
    eps_ = _check_eps("batch_norm_inference", eps, real)
    mean_ = _check_statistic("mean", mean, c, real)
    var_ = _check_statistic("var", var, c, real)
    if (var_ < 0).any():
        raise ValueError(
            f"batch_norm_inference: var must be nonnegative (a variance), received {var_.tolist()}"
        )
    inv_std = 1 / np.sqrt(var_ + eps_)  # (C,)
    # The same operations as batch_norm, so the two agree to rounding on the same statistics.
    xhat = (x - mean_[:, None, None]) * inv_std[:, None, None]  # (N, C, H, W)
    y = xhat * gamma[:, None, None] + beta[:, None, None]  # (N, C, H, W)

    def vjp(g: Array) -> tuple[Array, Array, Array]:
        dx = g * (gamma * inv_std)[:, None, None]  # (N, C, H, W) * (C, 1, 1)
        dgamma = (g * xhat).sum(axis=AXES)  # (N, C, H, W) -> (C,)
        dbeta = g.sum(axis=AXES)  # (N, C, H, W) -> (C,)
        return dx, dgamma, dbeta

    return y, vjp


def update_running(
    running_mean: Array,
    running_var: Array,
    mean: Array,
    var: Array,
    *,
    momentum: float = 0.1,
    count: int,
) -> tuple[Array, Array]:
    r"""The running averages after one training batch (PyTorch's convention).

    .. math:: \bar\mu \leftarrow (1 - \alpha)\,\bar\mu + \alpha\,\mu, \qquad
              \bar v \leftarrow (1 - \alpha)\,\bar v + \alpha\,\frac{m}{m - 1}\,\sigma^2

    ``mean`` and ``var`` are the batch's statistics from :func:`batch_moments` (biased
    variance); ``count`` is :math:`m = NHW`, the values per channel, and the running variance
    is fed the *unbiased* :math:`\frac{m}{m-1}\sigma^2`. ``momentum`` is :math:`\alpha`, the
    weight of the new batch. Returns new arrays in the running averages' dtype.

    >>> rm, rv = update_running(np.zeros(1), np.ones(1), np.array([2.0]), np.array([3.0]),
    ...                         momentum=0.5, count=4)
    >>> rm.tolist(), rv.tolist()
    ([1.0], [2.5])
    """
    alpha = _real(momentum)
    if alpha is None or not 0.0 <= alpha <= 1.0:  # also refuses NaN
        raise ValueError(
            f"update_running: momentum must be a number in [0, 1] (the weight of the new "
            f"batch), received {momentum!r}"
        )
    size: object = count  # typed int, but checked: a float or a bool would slip through
    if isinstance(size, (bool, np.bool_)) or not isinstance(size, Integral) or int(size) < 2:
        raise ValueError(
            f"update_running: count must be an integer >= 2 (N*H*W values per channel; the "
            f"unbiased variance divides by count - 1), received {count!r}"
        )
    arrays = {"running_mean": running_mean, "running_var": running_var, "mean": mean, "var": var}
    shapes = {k: np.shape(v) for k, v in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise ShapeError(f"update_running: all four arrays must share one shape, received {shapes}")
    rm = np.asarray(running_mean)
    if rm.dtype.kind != "f":
        raise DTypeError(
            f"update_running: running_mean must have a floating dtype, received {rm.dtype}"
        )
    dtype = rm.dtype
    a = dtype.type(alpha)
    unbias = dtype.type(count / (count - 1))
    new_mean = (1 - a) * rm + a * np.asarray(mean, dtype=dtype)
    new_var = (1 - a) * np.asarray(running_var, dtype=dtype) + a * unbias * np.asarray(
        var, dtype=dtype
    )
    return new_mean, new_var


__all__ = ["batch_moments", "batch_norm", "batch_norm_inference", "update_running"]
