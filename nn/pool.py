"""Pooling of NCHW feature maps over windows: the maximum and the average.

A window of ``window = (wh, ww)`` pixels moves over each channel of each image by
``stride = (sh, sw)`` (by default the window itself: non-overlapping windows), without
padding, so the output has ``P = (H - wh) // sh + 1`` rows and ``Q = (W - ww) // sw + 1``
columns; pixels past the last whole window are not pooled (and get a zero gradient).

Both ops loop over the ``wh * ww`` offsets ``(i, j)`` of a window, never over pixels: the
entries at offset ``(i, j)`` of all windows form one strided view of shape (N, C, P, Q), so
each step is a whole-array NumPy operation. Max-pool's backward routes each window's
cotangent to one element, the first maximum in row-major order (as PyTorch does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nn.errors import DTypeError
from nn.op import VJP, Array, op
from nn.parallel import for_slices

Pair = tuple[int, int]
Geometry = tuple[int, int, int, int, int, int]
"""``(wh, ww, sh, sw, p, q)``: window, stride and output size of a pooling call."""

# Small enough for the Jacobians of the protocol (180 inputs); distinct sizes expose a
# gradient with H and W swapped.
SAMPLE_SIZES = {"n": 2, "c": 3, "h": 5, "w": 6}


def _pair(name: str, arg: str, value: Any) -> Pair:
    """``value`` as ``(h, w)``: an int stands for both sides. Refuses anything else."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    ints = all(
        isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in items
    )
    if len(items) != 2 or not ints or min(items) < 1:
        raise ValueError(
            f"{name}: {arg} must be a positive int or a pair (h, w) of positive ints, "
            f"received {value!r}"
        )
    return int(items[0]), int(items[1])


def _window_stride(name: str, window: Any, stride: Any) -> tuple[Pair, Pair]:
    win = _pair(name, "window", window)
    return win, win if stride is None else _pair(name, "stride", stride)


def _deriver(name: str) -> Callable[..., dict[str, int]]:
    """The output sizes P, Q for the op's registration (checked before the op runs)."""

    def derive(
        sizes: dict[str, int], *, window: Any = 2, stride: Any = None, **unknown: Any
    ) -> dict[str, int]:
        # An unknown keyword is left for the op's own call to refuse, with the op's name.
        (wh, ww), (sh, sw) = _window_stride(name, window, stride)
        return {"p": (sizes["h"] - wh) // sh + 1, "q": (sizes["w"] - ww) // sw + 1}

    return derive


def _sample_static(rng: np.random.Generator, x: Array) -> dict[str, Any]:
    """Valid window and stride for ``x`` (any side >= 1): overlapping, disjoint or gapped."""
    sides = x.shape[-2:]  # a window of 2 or 3 where it fits, else the whole side
    window = tuple(int(rng.integers(min(2, s), max(1, min(3, s)) + 1)) for s in sides)
    stride = None if rng.random() < 0.5 else tuple(int(v) for v in rng.integers(1, 4, size=2))
    return {"window": window, "stride": stride}


def _geometry(name: str, x: Array, window: Any, stride: Any) -> Geometry:
    (wh, ww), (sh, sw) = _window_stride(name, window, stride)
    h, w = x.shape[-2:]
    return wh, ww, sh, sw, (h - wh) // sh + 1, (w - ww) // sw + 1


def _at(a: Array, i: int, j: int, geo: Geometry) -> Array:
    """The entries at offset ``(i, j)`` of every window: a strided view, (N,C,H,W) -> (N,C,P,Q)."""
    _, _, sh, sw, p, q = geo
    return a[:, :, i : i + sh * (p - 1) + 1 : sh, j : j + sw * (q - 1) + 1 : sw]


def _offsets(geo: Geometry) -> list[tuple[int, int, int]]:
    """``(k, i, j)`` for every offset of a window, ``k = i * ww + j`` in row-major order."""
    wh, ww = geo[0], geo[1]
    return [(i * ww + j, i, j) for i in range(wh) for j in range(ww)]


def _disjoint(geo: Geometry) -> bool:
    """No pixel is in two windows (stride >= window on both axes)."""
    wh, ww, sh, sw, _, _ = geo
    return sh >= wh and sw >= ww


def _scatter(
    part: Callable[[int, slice], Array],
    shape: tuple[int, ...],
    dtype: Any,
    geo: Geometry,
    *,
    accumulate: bool,
) -> Array:
    """dx with ``part(k, ns)`` (n,C,P,Q) added at offset k of the windows of images ``ns``:
    the adjoint of `_at`.

    Overlapping windows share pixels, so their parts must be summed (``accumulate``);
    disjoint windows can write each pixel once.
    """
    wh, ww, sh, sw, p, q = geo
    whole = (sh, sw) == (wh, ww) and shape[-2:] == (p * wh, q * ww)
    dx = np.empty(shape, dtype) if whole and not accumulate else np.zeros(shape, dtype)

    def scatter(ns: slice) -> None:  # the images ns, on one thread (nn.parallel)
        for k, i, j in _offsets(geo):
            view = _at(dx[ns], i, j, geo)  # (n,C,P,Q), a view into dx
            if accumulate:
                view += part(k, ns)
            else:
                view[...] = part(k, ns)

    for_slices(scatter, shape[0], int(np.prod(shape)))
    return dx


def _max_offsets(x: Array, geo: Geometry) -> tuple[Array, Array]:
    """Max and first-maximum offset k of every window, one window offset at a time.

    Works at any stride: overlapping windows only make the strided views share pixels.
    """
    wh, ww = geo[0], geo[1]
    first = _at(x, 0, 0, geo)  # (N,C,P,Q), a view
    y = np.empty(first.shape, x.dtype)  # the running maximum
    idx = np.zeros(y.shape, np.uint8 if wh * ww <= 256 else np.intp)  # (N,C,P,Q) offset k

    def run(ns: slice) -> None:  # the images ns, on one thread (nn.parallel)
        xs, ys, ids = x[ns], y[ns], idx[ns]
        ys[...] = first[ns]
        buf = np.empty_like(ys)  # (n,C,P,Q)
        for k, i, j in _offsets(geo)[1:]:
            np.copyto(buf, _at(xs, i, j, geo))  # one strided read; the rest is contiguous
            # Strictly greater: a tie keeps the earlier offset, the first maximum in row-major
            # order. k exceeds every index so far, so max(idx, k * wins) sets k where buf wins.
            wins = buf > ys
            np.maximum(ids, wins * ids.dtype.type(k), out=ids)
            np.maximum(ys, buf, out=ys)  # propagates NaN, which ">" never lets win
        if (nan := np.isnan(ys)).any():  # rare: each NaN window to its first NaN, as argmax
            for k, i, j in reversed(_offsets(geo)):
                ids[nan & np.isnan(_at(xs, i, j, geo))] = k

    for_slices(run, len(x), x.size)
    return y, idx


@op(
    signature="(n,c,h,w)->(n,c,p,q)",
    complex_safe=False,
    loops=False,
    derive=_deriver("max_pool2d"),
    static=_sample_static,
    sample_sizes=SAMPLE_SIZES,
    distinct=True,
)
def max_pool2d(x: Array, *, window: Any = 2, stride: Any = None) -> tuple[Array, VJP]:
    r"""Maximum over ``window`` = (wh, ww) pixels moved by ``stride`` (default: ``window``).

    ``x`` is (N, C, H, W); ``y`` is (N, C, P, Q) with ``P = (H - wh) // sh + 1`` and
    ``Q = (W - ww) // sw + 1``. ``window`` and ``stride`` are an int (both sides) or a pair.
    Gradient: each window's cotangent goes to one element, the first maximum of the window
    in row-major order; overlapping windows add up at shared pixels. NaN counts as larger
    than every number: it propagates to ``y`` and takes the window's gradient.

    >>> x = np.array([[[[1.0, 2.0], [4.0, 4.0]]]])
    >>> y, vjp = max_pool2d(x)
    >>> y.tolist(), vjp(np.ones((1, 1, 1, 1)))[0].tolist()
    ([[[[4.0]]]], [[[[0.0, 0.0], [1.0, 0.0]]]])
    """
    if np.iscomplexobj(x):
        raise DTypeError(
            f"max_pool2d: x must be real (a maximum needs an order), received {x.dtype}"
        )
    geo = _geometry("max_pool2d", x, window, stride)
    y, idx = _max_offsets(x, geo)

    def vjp(g: Array) -> tuple[Array]:
        finite = bool(np.isfinite(g).all())

        def part(k: int, ns: slice) -> Array:
            hit = idx[ns] == k  # (n,C,P,Q): the windows whose first maximum is at offset k
            # A 0/1 mask times g is branch-free, ~10x faster than np.where on a random mask;
            # but 0 * inf is NaN, so an infinite g takes the exact selection.
            gs = g[ns]
            out: Array = np.multiply(hit, gs) if finite else np.where(hit, gs, 0).astype(g.dtype)
            return out  # (n,C,P,Q)

        return (_scatter(part, x.shape, g.dtype, geo, accumulate=not _disjoint(geo)),)

    return y, vjp


@op(
    signature="(n,c,h,w)->(n,c,p,q)",
    complex_safe=True,
    loops=False,
    derive=_deriver("avg_pool2d"),
    static=_sample_static,
    sample_sizes=SAMPLE_SIZES,
)
def avg_pool2d(x: Array, *, window: Any = 2, stride: Any = None) -> tuple[Array, VJP]:
    r"""Mean over ``window`` = (wh, ww) pixels moved by ``stride`` (default: ``window``).

    ``x`` is (N, C, H, W); ``y`` is (N, C, P, Q) with ``P = (H - wh) // sh + 1`` and
    ``Q = (W - ww) // sw + 1``. Gradient: each window's cotangent divided by ``wh * ww``
    is added to every pixel of the window. Sums and one division only: complex-safe.

    >>> y, vjp = avg_pool2d(np.array([[[[1.0, 2.0], [3.0, 6.0]]]]))
    >>> y.tolist(), vjp(np.ones((1, 1, 1, 1)))[0].tolist()
    ([[[[3.0]]]], [[[[0.25, 0.25], [0.25, 0.25]]]])
    """
    geo = _geometry("avg_pool2d", x, window, stride)
    count = geo[0] * geo[1]
    y = np.array(_at(x, 0, 0, geo))  # (N,C,P,Q), a copy: the running sum in row-major order
    for _, i, j in _offsets(geo)[1:]:
        y += _at(x, i, j, geo)
    y /= count  # an int: float32 stays float32

    def vjp(g: Array) -> tuple[Array]:
        share = g / count  # (N,C,P,Q): every pixel of a window gets the same share

        return (
            _scatter(lambda _, ns: share[ns], x.shape, g.dtype, geo, accumulate=not _disjoint(geo)),
        )

    return y, vjp


__all__ = ["avg_pool2d", "max_pool2d"]
