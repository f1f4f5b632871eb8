"""Stride-1 convolution by shifted row GEMMs: the columns gathered along W only.

:func:`nn.conv.conv2d` computes a stride-1 convolution this way when it is faster than
full im2col (see :func:`use_rows`); both compute the same sums of spec/conv2d.md, so both
are verified by the same tests (``tests/test_conv2d.py`` runs each).

The idea. Lay the zero-padded input out as (C, Hp, N, Wp): channel, row, image, column.
Gather only the S taps along W, ``xs[(c, j), (h, n, q)] = xpad[c, h, n, q + j dw]``, a
(C S, Hp N Q) matrix: S copies of the input, where full im2col makes R S. Output row ``p``
of kernel row ``i`` reads input row ``p + i dh``; in this layout the rows ``i dh .. i dh +
P - 1`` of every image are one contiguous block of columns, ``[i dh N Q, (i dh + P) N Q)``,
because the row index is the outermost of (h, n, q). So, with no further copy::

    y (K, P N Q) = sum_i  w[:, :, i, :] (K, C S)  @  xs[:, i dh N Q : (i dh + P) N Q]

R GEMMs on views of one matrix (BLAS reads a slice of columns in place). The backward
uses the same slices: ``dw[:, :, i, :] = g @ slice_i^T`` and the column cotangents
``w_i^T @ g`` are added back slice by slice, then along W tap by tap (col2im along W
only, S adds instead of R S).
"""

from __future__ import annotations

import numpy as np

from nn.op import Array
from nn.parallel import add_into, for_slices

ROWS_MIN_CS = 64
"""The row path needs an inner GEMM dimension C S of at least this. Thinner GEMMs (a first
layer, C = 1, or C S = 48) run faster as full im2col (bench/conv_ops.py)."""


def use_rows(c: int, s: int, p: int, r: int, stride: tuple[int, int]) -> bool:
    """Whether :func:`nn.conv.conv2d` takes this path: stride 1, ``C S >= ROWS_MIN_CS`` and
    at least R output rows (with fewer, each of the R GEMMs is a sliver of the work)."""
    return stride == (1, 1) and c * s >= ROWS_MIN_CS and p >= r


def _gather_w(xp: Array, s: int, dw: int, q: int) -> Array:
    """(C, Hp, N, Wp) -> (C S, Hp N Q): row (c, j) holds ``xp[c, :, :, j dw : j dw + Q]``."""
    c, hp, n, _ = xp.shape
    xs = np.empty((c, s, hp, n, q), xp.dtype)  # (C, S, Hp, N, Q)

    def gather(cs: slice) -> None:  # the channels cs: S strided copies of rows of Q pixels
        for j in range(s):
            xs[cs, j] = xp[cs, ..., j * dw : j * dw + q]

    for_slices(gather, c, xs.size)
    return xs.reshape(c * s, hp * n * q)  # (CS, Hp N Q), no copy


def conv2d_rows(
    x: Array, w: Array, b: Array, padding: tuple[int, int], dilation: tuple[int, int]
) -> tuple[Array, Array]:
    """``(y, xs)``: the stride-1 convolution (N, K, P, Q) and the gathered input, kept for
    :func:`conv2d_rows_vjp`."""
    n, c, h, wd = x.shape
    k, _, r, s = w.shape
    (ph, pw), (dh, dw) = padding, dilation
    hp, wp = h + 2 * ph, wd + 2 * pw
    p, q = hp - dh * (r - 1), wp - dw * (s - 1)
    xp = np.zeros((c, hp, n, wp), x.dtype)  # (C, Hp, N, Wp), zero padding included
    xt = x.transpose(1, 2, 0, 3)  # (N, C, H, W) -> (C, H, N, W), a view

    def pad(cs: slice) -> None:
        xp[cs, ph : ph + h, :, pw : pw + wd] = xt[cs]

    for_slices(pad, c, x.size)
    xs = _gather_w(xp, s, dw, q)  # (CS, Hp N Q)
    nq = n * q
    taps = w.transpose(2, 0, 1, 3).reshape(r, k, c * s)  # (R, K, CS), w's row i as a matrix
    yt = taps[0] @ xs[:, : p * nq]  # (K, CS) @ (CS, PNQ) -> (K, PNQ)
    for i in range(1, r):
        add_into(yt, taps[i] @ xs[:, i * dh * nq : (i * dh + p) * nq])  # (K, CS) @ (CS, PNQ)
    y = np.empty((n, k, p, q), yt.dtype)  # (N, K, P, Q)
    y_t = y.transpose(1, 2, 0, 3)  # (K, P, N, Q) view of y
    yt4 = yt.reshape(k, p, n, q)  # (K, P, N, Q)

    def add_bias(ks: slice) -> None:
        np.add(yt4[ks], b[ks, None, None, None], out=y_t[ks])

    for_slices(add_bias, k, y.size)
    return y, xs


def conv2d_rows_vjp(
    g: Array,
    xs: Array,
    w: Array,
    input_shape: tuple[int, ...],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    *,
    input_grad: bool = True,
) -> tuple[Array | None, Array, Array]:
    """``(dx, dw, db)`` of :func:`conv2d_rows` for the cotangent ``g`` (N, K, P, Q);
    ``dx`` is ``None`` when ``input_grad`` is false (a network's first layer)."""
    n, c, _, _ = input_shape
    k, _, r, s = w.shape
    dh = dilation[0]
    p, q = g.shape[2:]
    nq = n * q
    db = g.sum(axis=(0, 2, 3))  # (N, K, P, Q) -> (K,)
    gt = rows_of(g)  # (K, PNQ)
    dtaps = np.empty((r, k, c * s), g.dtype)  # (R, K, CS)
    for i in range(r):  # (K, PNQ) @ (PNQ, CS) -> (K, CS)
        np.matmul(gt, xs[:, i * dh * nq : (i * dh + p) * nq].T, out=dtaps[i])
    dwt = np.ascontiguousarray(dtaps.reshape(r, k, c, s).transpose(1, 2, 0, 3))  # (K,C,R,S)
    dx = rows_input_grad(gt, w, input_shape, padding, dilation) if input_grad else None
    return dx, dwt, db


def rows_of(g: Array) -> Array:
    """The cotangent (N, K, P, Q) in the row layout, (K, P N Q), contiguous."""
    n, k, p, q = g.shape
    gt = np.empty((k, p, n, q), g.dtype)  # (K, P, N, Q)
    g_t = g.transpose(1, 2, 0, 3)  # (N, K, P, Q) -> (K, P, N, Q), a view

    def copy(ks: slice) -> None:
        gt[ks] = g_t[ks]

    for_slices(copy, k, g.size)
    return gt.reshape(k, p * n * q)


def rows_input_grad(
    gt: Array,
    w: Array,
    input_shape: tuple[int, ...],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> Array:
    """dx (N, C, H, W) from the cotangent in the row layout ``gt`` (K, P N Q): the column
    cotangents ``w_i^T gt`` added into the rows they were read from, then along W."""
    n, c, h, wd = input_shape
    k, _, r, s = w.shape
    (ph, pw), (dh, dw) = padding, dilation
    hp, wp = h + 2 * ph, wd + 2 * pw
    p, q = hp - dh * (r - 1), wp - dw * (s - 1)
    nq = n * q
    taps_t = w.transpose(2, 1, 3, 0).reshape(r, c * s, k)  # (R, CS, K): each w_i^T
    dxs = np.zeros((c * s, hp * nq), gt.dtype)  # (CS, Hp N Q): cotangent of xs
    part = np.empty((c * s, p * nq), gt.dtype)  # (CS, PNQ), reused for every row i
    for i in range(r):
        np.matmul(taps_t[i], gt, out=part)  # (CS, K) @ (K, PNQ) -> (CS, PNQ)
        add_into(dxs[:, i * dh * nq : (i * dh + p) * nq], part)  # a (CS, PNQ) view of dxs
    dxs5 = dxs.reshape(c, s, hp, n, q)  # (C, S, Hp, N, Q)
    dxp = np.zeros((c, hp, n, wp), gt.dtype)  # (C, Hp, N, Wp): cotangent of xpad
    dx = np.empty(input_shape, gt.dtype)  # (N, C, H, W)
    dx_t = dx.transpose(1, 2, 0, 3)  # (C, H, N, W) view of dx

    def col2im(cs: slice) -> None:  # the channels cs: S adds of rows of Q pixels along W
        for j in range(s):
            dxp[cs, ..., j * dw : j * dw + q] += dxs5[cs, j]
        dx_t[cs] = dxp[cs, ph : ph + h, :, pw : pw + wd]  # crop the padding (not inputs)

    for_slices(col2im, c, dxs.size)
    return dx
