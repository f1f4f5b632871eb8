"""Stride-1 convolution by the discrete Fourier transform, as three matrix products.

:func:`nn.conv.conv2d` computes a stride-1, undilated convolution of real arrays this way
when it needs fewer multiply-adds than the direct sum (see :func:`use_dft`); every path
computes the sums of spec/conv2d.md, so all are verified by the same tests
(``tests/test_conv2d.py`` runs each).

The idea (spec/conv2d.md, Numerics). On a periodic grid of ``LH x LW`` pixels a
correlation is a product, frequency by frequency: with ``X`` the 2-D DFT of one channel of
the image and ``V`` that of one kernel (its taps placed at ``(i - ph, j - pw)``, conjugated),
the DFT of the output is ``X V``. The grid is just large enough (:func:`grid`) that nothing
wraps onto a real pixel: every tap that falls outside the image lands on a zero, exactly as
the zero padding of the definition. Summed over channels, each frequency ``f`` is a small
complex matrix product, ``Y_f (K) = V_f (K, C) X_f (C)``.

NumPy's FFT runs one small transform at a time on one core; but a DFT is a matrix, and on
14 x 14 maps three dense matrix products do the whole convolution on every core::

    X (2F, C N)   = A_in (2F, H W) @ x^T (H W, C N)      the images' spectra
    Y_f (2K, N)   = V_f (2K, 2C) @ X_f (2C, N)           the product, frequency by frequency
    y (K N, P Q)  = Y^T (K N, 2F) @ A_out (2F, P Q)      back to pixels

with complex numbers as (real, imaginary) pairs: ``2F`` rows hold the real and imaginary
parts of the ``F`` frequencies that determine a real image's spectrum (:func:`frequencies`:
one of each conjugate pair, ``F`` about ``LH LW / 2``), and
``V_f = [[Vr, -Vi], [Vi, Vr]]`` multiplies complex numbers. ``A_out`` reads only the ``P Q``
output pixels and ``A_in`` only the ``H W`` input pixels: the padding costs nothing. Each
stage is a linear map, so the backward is the same products transposed. The images are
laid out channel-major, (C, N, H W), so that every operand is contiguous or the transpose
of a contiguous array (BLAS reads those in place); swapping N and C moves whole planes.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from nn.op import Array
from nn.parallel import swap_planes

DFT_MAX_RATIO = 0.75
"""Take this path when its multiply-adds (:func:`dft_madds`) are at most this fraction of
the direct sum's ``N K P Q C R S``. The CNN's 5 x 5 layer of 32 to 64 channels on 14 x 14
maps needs 0.59, its first layer (one channel, 28 x 28) 37. Work is not the whole story
(``python bench/conv_ops.py --paths``): with no gather, a 3 x 3 layer on 14 x 14 maps is
faster by this path even at 1.43, but the 7-digit reader's layers on maps 4 or 1 rows high
are slower at 0.99 and 0.80. Up to 0.75 it was faster for every layer measured."""


def out_size(h: int, w: int, r: int, s: int, padding: tuple[int, int]) -> tuple[int, int]:
    """``(P, Q)`` of a stride-1, undilated convolution."""
    return h + 2 * padding[0] - r + 1, w + 2 * padding[1] - s + 1


def grid(h: int, w: int, r: int, s: int, padding: tuple[int, int]) -> tuple[int, int]:
    """``(LH, LW)``: the smallest periodic grid on which the correlation does not wrap.

    The taps of output row ``p`` read input rows ``p + i - ph``, from ``-ph`` to
    ``H + ph - 1``. Those outside ``[0, H)`` are zeros of the padding, and on a grid of
    ``LH >= H + ph`` rows they land on rows ``H .. LH - 1``, which are zeros too. The ``P``
    output rows and the ``R`` kernel rows need ``LH >= P`` and ``LH >= R`` as well.
    """
    (ph, pw), (p, q) = padding, out_size(h, w, r, s, padding)
    return max(h + ph, p, r), max(w + pw, q, s)


def dft_madds(
    n: int, c: int, k: int, h: int, w: int, r: int, s: int, padding: tuple[int, int]
) -> int:
    """Multiply-adds of the three products of one forward pass."""
    p, q = out_size(h, w, r, s, padding)
    f = frequency_count(*grid(h, w, r, s, padding))
    return n * (2 * f * h * w * c + f * 4 * c * k + k * 2 * f * p * q)


Pair = tuple[int, int]


def use_dft(
    dtype: Any,
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    geometry: tuple[Pair, Pair, Pair],
) -> bool:
    """Whether :func:`nn.conv.conv2d` takes this path: real floating arrays, stride 1, no
    dilation, and at most :data:`DFT_MAX_RATIO` of the direct sum's multiply-adds."""
    stride, padding, dilation = geometry  # (along H, along W) each, as nn.conv.Geometry
    if np.dtype(dtype).kind != "f" or stride != (1, 1) or dilation != (1, 1):
        return False
    n, c, h, w = x_shape
    k, _, r, s = w_shape
    p, q = out_size(h, w, r, s, padding)
    direct = n * k * p * q * c * r * s
    return dft_madds(n, c, k, h, w, r, s, padding) <= DFT_MAX_RATIO * direct


def frequency_count(lh: int, lw: int) -> int:
    """``F``, the frequencies :func:`frequencies` keeps: one of each conjugate pair of the
    ``LH LW`` grid, the self-conjugate ones (1, 2 or 4 of them) once."""
    return (lh * lw + (2 - lh % 2) * (2 - lw % 2)) // 2


def frequencies(lh: int, lw: int) -> tuple[Array, Array, Array]:
    """``(fh, fw, c)``, each (F,): the frequencies whose spectrum the path stores, and the
    weight of each in the real inverse DFT.

    A real image's spectrum is conjugate-symmetric, ``X(-f) = conj X(f)``, so half of it
    determines it: the columns ``fw = 0 .. LW // 2`` (NumPy's ``rfft2`` stores these), and
    in the columns that are their own mirror image (``fw = 0`` and, for an even ``LW``,
    ``fw = LW / 2``) only the rows ``fh <= LH / 2``. Each kept frequency stands for itself and
    its conjugate, ``c = 2``, except the self-conjugate ones (``fh`` and ``fw`` each 0 or
    half the grid), ``c = 1``: ``y = sum_f c_f Re(Y_f exp(i theta_f)) / (LH LW)``.
    """
    fh, fw = (a.ravel() for a in np.meshgrid(np.arange(lh), np.arange(lw // 2 + 1), indexing="ij"))
    mirror = (fw == 0) | (2 * fw == lw)  # columns holding both members of a conjugate pair
    keep = ~mirror | (2 * fh <= lh)
    fh, fw, mirror = fh[keep], fw[keep], mirror[keep]
    own = mirror & ((fh == 0) | (2 * fh == lh))  # self-conjugate
    return fh, fw, np.where(own, 1.0, 2.0)


@functools.lru_cache(maxsize=16)
def transforms(
    h: int, w: int, r: int, s: int, padding: tuple[int, int], dtype: str
) -> tuple[Array, Array, Array]:
    """``(a_in, a_out, taps)`` for one geometry, computed in float64, stored in ``dtype``,
    read-only (cached; a CNN calls with the same few geometries every step).

    ``a_in`` (2F, H W): rows (f, re/im) of ``exp(-i theta_f(h, w))``, the DFT of the pixels.
    ``a_out`` (2F, P Q): ``c_f / (LH LW)`` times the real and minus the imaginary part of
    ``exp(+i theta_f(p, q))``, so ``Y^T a_out`` is the real inverse DFT read at the outputs.
    ``taps`` (2, F, R S): cos and sin of ``theta_f(i - ph, j - pw)``, the kernel's spectrum.
    The frequencies ``f`` and weights ``c_f`` are :func:`frequencies`'.
    """
    (ph, pw), (p, q) = padding, out_size(h, w, r, s, padding)
    lh, lw = grid(h, w, r, s, padding)
    fh, fw, c = frequencies(lh, lw)

    def theta(rows: Array, cols: Array) -> Array:  # (F, len(rows) len(cols)), reduced mod 2 pi
        u, v = (a.ravel() for a in np.meshgrid(rows, cols, indexing="ij"))
        turns: Array = (fh[:, None] * u % lh) / lh + (fw[:, None] * v % lw) / lw
        return 2 * np.pi * turns

    t_in = theta(np.arange(h), np.arange(w))  # (F, HW)
    t_out = theta(np.arange(p), np.arange(q))  # (F, PQ)
    t_w = theta(np.arange(r) - ph, np.arange(s) - pw)  # (F, RS)
    c_f = c[:, None] / (lh * lw)  # (F, 1)
    f = len(fh)
    a_in = np.stack([np.cos(t_in), -np.sin(t_in)], axis=1).reshape(2 * f, h * w)
    a_out = np.stack([c_f * np.cos(t_out), -c_f * np.sin(t_out)], axis=1).reshape(2 * f, p * q)
    taps = np.stack([np.cos(t_w), np.sin(t_w)])  # (2, F, RS)
    out = tuple(np.array(a, dtype=dtype) for a in (a_in, a_out, taps))
    for a in out:
        a.flags.writeable = False
    return out  # type: ignore[return-value]


def kernel_spectrum(w: Array, taps: Array) -> Array:
    """``V`` (F, 2K, 2C): each frequency's complex (C -> K) product as a real matrix,
    ``[[Vr, -Vi], [Vi, Vr]]`` with ``V = Vr + i Vi = sum_ij w_ij exp(+i theta_f(i-ph, j-pw))``."""
    k, c, r, s = w.shape
    f = taps.shape[1]
    w_rows = w.reshape(k * c, r * s)  # (KC, RS), a view
    vr = (taps[0] @ w_rows.T).reshape(f, k, c)  # (F, RS) @ (RS, KC) -> (F, K, C)
    vi = (taps[1] @ w_rows.T).reshape(f, k, c)
    v = np.empty((f, 2, k, 2, c), w.dtype)  # rows (re/im of Y, k), columns (re/im of X, c)
    v[:, 0, :, 0], v[:, 1, :, 0], v[:, 1, :, 1] = vr, vi, vr  # Yi = Vi Xr + Vr Xi
    np.negative(vi, out=v[:, 0, :, 1])  # Yr = Vr Xr - Vi Xi
    return v.reshape(f, 2 * k, 2 * c)


def conv2d_dft(
    x: Array, w: Array, b: Array, padding: tuple[int, int]
) -> tuple[Array, tuple[Array, Array]]:
    """``(y, (xs, v))``: the convolution (N, K, P, Q), and the images' spectra ``xs``
    (F, 2C, N) and the kernels' ``v`` (F, 2K, 2C), kept for :func:`conv2d_dft_vjp`."""
    n, c, h, wd = x.shape
    k, _, r, s = w.shape
    p, q = out_size(h, wd, r, s, padding)
    a_in, a_out, taps = transforms(h, wd, r, s, padding, x.dtype.str)
    f = a_in.shape[0] // 2
    x_t = swap_planes(x.reshape(n, c, h * wd))  # (N, C, HW) -> (C, N, HW)
    xs = a_in @ x_t.reshape(c * n, h * wd).T  # (2F, HW) @ (HW, CN) -> (2F, CN)
    v = kernel_spectrum(w, taps)  # (F, 2K, 2C)
    ys = np.matmul(v, xs.reshape(f, 2 * c, n))  # (F, 2K, 2C) @ (F, 2C, N) -> (F, 2K, N)
    y_t = ys.reshape(2 * f, k * n).T @ a_out  # (KN, 2F) @ (2F, PQ) -> (KN, PQ)
    y = swap_planes(y_t.reshape(k, n, p * q), b)  # (K, N, PQ) -> (N, K, PQ), plus the bias
    return y.reshape(n, k, p, q), (xs.reshape(f, 2 * c, n), v)


def dft_input_grad(dys: Array, v: Array, input_shape: tuple[int, ...], a_in: Array) -> Array:
    """dx (N, C, H, W) from the cotangent of the output's spectrum ``dys`` (F, 2K, N): the
    product and the input transform, transposed."""
    n, c, h, wd = input_shape
    f = dys.shape[0]
    dxs = np.matmul(v.transpose(0, 2, 1), dys)  # (F, 2C, 2K) @ (F, 2K, N) -> (F, 2C, N)
    dx_t = dxs.reshape(2 * f, c * n).T @ a_in  # (CN, 2F) @ (2F, HW) -> (CN, HW)
    return swap_planes(dx_t.reshape(c, n, h * wd)).reshape(input_shape)  # (C, N, HW) -> NCHW


def output_spectrum_grad(g: Array, a_out: Array) -> Array:
    """The cotangent of the output's spectrum, (F, 2K, N), from ``g`` (N, K, P, Q)."""
    n, k, p, q = g.shape
    g_t = swap_planes(g.reshape(n, k, p * q))  # (N, K, PQ) -> (K, N, PQ)
    dys: Array = a_out @ g_t.reshape(k * n, p * q).T  # (2F, PQ) @ (PQ, KN) -> (2F, KN)
    return dys.reshape(a_out.shape[0] // 2, 2 * k, n)


def conv2d_dft_vjp(
    g: Array,
    saved: tuple[Array, Array],
    w: Array,
    input_shape: tuple[int, ...],
    padding: tuple[int, int],
    *,
    input_grad: bool = True,
) -> tuple[Array | None, Array, Array]:
    """``(dx, dw, db)`` of :func:`conv2d_dft` for the cotangent ``g`` (N, K, P, Q), from its
    ``saved`` spectra; ``dx`` is ``None`` when ``input_grad`` is false (a first layer)."""
    xs, v = saved
    _, c, h, wd = input_shape
    k, _, r, s = w.shape
    a_in, a_out, taps = transforms(h, wd, r, s, padding, g.dtype.str)
    f = xs.shape[0]
    db = g.sum(axis=(0, 2, 3))  # (N, K, P, Q) -> (K,)
    dys = output_spectrum_grad(g, a_out)  # (F, 2K, N)
    dv = np.matmul(dys, xs.transpose(0, 2, 1)).reshape(f, 2, k, 2, c)  # (F,2K,N)@(F,N,2C)
    dvr = (dv[:, 0, :, 0] + dv[:, 1, :, 1]).reshape(f, k * c)  # kernel_spectrum transposed
    dvi = (dv[:, 1, :, 0] - dv[:, 0, :, 1]).reshape(f, k * c)
    dw = dvr.T @ taps[0] + dvi.T @ taps[1]  # (KC, F) @ (F, RS) -> (KC, RS)
    dx = dft_input_grad(dys, v, input_shape, a_in) if input_grad else None
    return dx, dw.reshape(w.shape), db
