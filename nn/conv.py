"""2-D convolution of NCHW images (cross-correlation, as in PyTorch), by GEMMs on gathered columns.

``conv2d(x, w, b)`` slides each of the K kernels ``w[k]`` (C, R, S) over the zero-padded
input with a ``stride`` and a ``dilation`` (spacing between kernel taps)::

    y[n, k, p, q] = b[k] + sum_{c, i, j} w[k, c, i, j] xpad[n, c, p sh + i dh, q sw + j dw],

with ``P = (H + 2 ph - dh (R - 1) - 1) // sh + 1`` rows and likewise ``Q`` columns.

How it is fast (spec/conv2d.md, Numerics): the C R S input values under each of the N P Q
output positions are gathered from a strided *view* of the padded input into one matrix,
the columns ``cols``, by one copy, so that the forward is one matrix product
``w (K, C R S) @ cols`` and the weight gradient one product of ``g`` with ``cols^T``. The
columns have one of two layouts, both with every GEMM operand contiguous (or its transpose
contiguous, which BLAS reads in place) and the gather copying rows of Q pixels at a time:

* batch-wide, (C R S, N P Q): one GEMM for the whole batch; its output (K, N, P, Q)
  becomes NCHW by moving whole (P, Q) planes. Best when C R S is large (deeper layers).
* per image, (N, C R S, P Q): ``np.matmul`` runs one GEMM per image, whose output is
  already NCHW and fits the cache. Best when C R S is small against P Q (a first layer:
  C R S = 9, P Q = 784), where a batch-wide GEMM would be memory-bound. See
  :func:`per_image` for the rule.

The input gradient is the transposed convolution :func:`conv2d_transpose`: one matrix
product gives the column cotangents ``w^T @ g``, and col2im adds them back into the padded
input by a loop over the R S kernel taps, each one strided slice-add over all images.

At stride 1 with enough channels (a CNN's deeper layers) a third way is faster: gather the
columns along W only, S copies of the input instead of R S, and run R GEMMs on shifted
views of them (:mod:`nn.conv_rows`, :func:`~nn.conv_rows.use_rows` decides). At stride 1
without dilation a fourth is faster still where its work is smaller (a 5 x 5 layer of 32 to
64 channels on 14 x 14 maps): the correlation as a product of discrete Fourier transforms,
each a dense matrix, so three GEMMs in all (:mod:`nn.conv_dft`, :func:`~nn.conv_dft.use_dft`
decides). Every path
computes the sums of spec/conv2d.md, and the tests run each one on every case. The vjp takes
``input_grad=False`` to skip dx, which a network's first layer never needs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from nn.conv_dft import (
    conv2d_dft,
    conv2d_dft_vjp,
    dft_input_grad,
    kernel_spectrum,
    output_spectrum_grad,
    transforms,
    use_dft,
)
from nn.conv_rows import conv2d_rows, conv2d_rows_vjp, rows_input_grad, rows_of, use_rows
from nn.errors import DTypeError, ShapeError
from nn.op import VJP, Array, op
from nn.parallel import swap_planes

Pair = tuple[int, int]

# Small enough for the protocol's full Jacobians (x 180 + w 72 + b 4 inputs, at most 280
# outputs); all sizes distinct, so a gradient with two axes swapped has the wrong shape.
SAMPLE_SIZES = {"n": 2, "c": 3, "h": 5, "w": 6, "k": 4, "r": 3, "s": 2}
_KEYWORDS = ("stride", "padding", "dilation")


class Geometry(NamedTuple):
    """Stride, padding and dilation of a call, each as ``(along H, along W)``."""

    stride: Pair
    padding: Pair
    dilation: Pair

    def out_size(self, h: int, w: int, r: int, s: int) -> Pair:
        """``(P, Q)``: positions of the dilated R x S kernel in the padded H x W input."""
        (sh, sw), (ph, pw), (dh, dw) = self
        return (h + 2 * ph - dh * (r - 1) - 1) // sh + 1, (w + 2 * pw - dw * (s - 1) - 1) // sw + 1


def _pair(name: str, value: Any, minimum: int, who: str) -> Pair:
    """``value`` as ``(h, w)`` ints >= ``minimum``: an int stands for both sides."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    ints = all(
        isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in items
    )
    if len(items) != 2 or not ints or min(items) < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(
            f"{who}: {name} must be a {kind} int or a pair (h, w) of {kind} ints, "
            f"received {value!r}"
        )
    return int(items[0]), int(items[1])


def _geometry(stride: Any, padding: Any, dilation: Any, who: str = "conv2d") -> Geometry:
    return Geometry(
        _pair("stride", stride, 1, who),
        _pair("padding", padding, 0, who),
        _pair("dilation", dilation, 1, who),
    )


def _derive(sizes: dict[str, int], **static: Any) -> dict[str, int]:
    """P and Q for the registration: checked (and static arguments validated) before the op runs."""
    if unknown := sorted(set(static) - set(_KEYWORDS)):
        raise TypeError(
            f"conv2d: unknown keyword argument(s) {unknown}; expected some of {list(_KEYWORDS)}"
        )
    geo = _geometry(static.get("stride", 1), static.get("padding", 0), static.get("dilation", 1))
    p, q = geo.out_size(sizes["h"], sizes["w"], sizes["r"], sizes["s"])
    return {"p": p, "q": q}


def _sample_static(rng: np.random.Generator, x: Array, w: Array, b: Array) -> dict[str, Any]:
    """Random stride and dilation in {1, 2}, and a padding that fits the dilated kernel in any
    input (the least such, plus 0 or 1): valid for every shape the contract tests draw."""
    stride = tuple(int(v) for v in rng.integers(1, 3, size=2))
    dilation = tuple(int(v) for v in rng.integers(1, 3, size=2))
    padding = tuple(
        max(0, -(-(d * (k - 1) + 1 - n) // 2)) + int(rng.integers(0, 2))
        for n, k, d in zip(x.shape[2:], w.shape[2:], dilation, strict=True)
    )
    return {"stride": stride, "padding": padding, "dilation": dilation}


def per_image(c: int, r: int, s: int, p: int, q: int) -> bool:
    """Whether to lay the columns out per image, (N, C R S, P Q), rather than batch-wide,
    (C R S, N P Q): when each image's P Q output pixels outnumber ``PER_IMAGE_RATIO`` times
    the C R S products per pixel. A first layer (C R S = 9 or 25, P Q = 784) then runs N
    GEMMs whose outputs are already NCHW and fit the cache; one batch-wide GEMM with so
    short an inner dimension is memory-bound and its output needs a pass to become NCHW.
    Deeper layers (C R S in the hundreds) run faster as one batch-wide GEMM."""
    return p * q >= PER_IMAGE_RATIO * c * r * s


PER_IMAGE_RATIO = 4
"""See :func:`per_image`; measured crossover on this machine (bench/conv_ops.py)."""


def _im2col(x: Array, r: int, s: int, geo: Geometry, by_image: bool) -> Array:
    """The columns: row (c, i, j) holds tap (i, j) of channel c at every output position,
    (N, C R S, P Q) per image or (C R S, N P Q) batch-wide, so that ``w.reshape(K, C R S)
    @ cols`` is the convolution, per image or for the whole batch."""
    n, c, h, w = x.shape
    (sh, sw), (ph, pw), (dh, dw) = geo
    p, q = geo.out_size(h, w, r, s)
    if ph or pw:  # zero rows and columns around each image, as the definition's xpad
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # (N, C, H + 2ph, W + 2pw)
    span = (dh * (r - 1) + 1, dw * (s - 1) + 1)  # the dilated kernel's extent
    windows = sliding_window_view(x, span, axis=(2, 3))  # (N, C, H'-span+1, W'-span+1, *span)
    windows = windows[:, :, ::sh, ::sw, ::dh, ::dw]  # (N, C, P, Q, R, S), still a view
    # The one copy of the forward, rows of Q pixels at a time.
    if by_image:
        return windows.transpose(0, 1, 4, 5, 2, 3).reshape(n, c * r * s, p * q)  # (N, CRS, PQ)
    return windows.transpose(1, 4, 5, 0, 2, 3).reshape(c * r * s, n * p * q)  # (CRS, NPQ)


def _input_grad(
    g: Array, w: Array, input_shape: tuple[int, ...], geo: Geometry, gt: Array | None = None
) -> Array:
    """dx: the column cotangents ``w^T g`` by one GEMM, then col2im, the adjoint of
    :func:`_im2col`: each column entry is added back to the pixel it was copied from.
    ``gt`` is ``g`` as (K, N P Q), if the caller has it already."""
    n, c, h, wd = input_shape
    k, _, r, s = w.shape
    (sh, sw), (ph, pw), (dh, dw) = geo
    p, q = g.shape[2:]
    wmat_t = w.reshape(k, c * r * s).T  # (CRS, K), a view
    shape = (c, n, h + 2 * ph, wd + 2 * pw)  # dx padded, indexed channel-major
    if per_image(c, r, s, p, q):
        dcols = wmat_t @ g.reshape(n, k, p * q)  # (CRS, K) @ (N, K, PQ) -> (N, CRS, PQ)
        dcols = dcols.reshape(n, c, r, s, p, q).transpose(1, 2, 3, 0, 4, 5)  # (C,R,S,N,P,Q) view
        dxp = np.zeros(shape[1::-1] + shape[2:], g.dtype).transpose(1, 0, 2, 3)  # NCHW memory
    else:
        if gt is None:
            gt = swap_planes(g.reshape(n, k, p * q)).reshape(k, n * p * q)  # -> (K, NPQ)
        dcols = (wmat_t @ gt).reshape(c, r, s, n, p, q)  # (CRS, K) @ (K, NPQ) -> (C,R,S,N,P,Q)
        dxp = np.zeros(shape, g.dtype)  # memory order as dcols: each add walks both in order
    for i in range(r):  # R S strided slice-adds over all images; never np.add.at (slow)
        for j in range(s):
            rows = slice(i * dh, i * dh + sh * (p - 1) + 1, sh)
            cols = slice(j * dw, j * dw + sw * (q - 1) + 1, sw)
            dxp[:, :, rows, cols] += dcols[:, i, j]  # (C, N, P, Q) into the taps' pixels
    # Pixels of the padding are not inputs: crop them; NCHW order, contiguous.
    return np.ascontiguousarray(dxp[:, :, ph : ph + h, pw : pw + wd].transpose(1, 0, 2, 3))


@op(
    signature="(n,c,h,w),(k,c,r,s),(k)->(n,k,p,q)",
    complex_safe=True,
    loops=False,
    nonempty=("r", "s"),
    derive=_derive,
    sample_sizes=SAMPLE_SIZES,
    static=_sample_static,
)
def conv2d(
    x: Array, w: Array, b: Array, *, stride: Any = 1, padding: Any = 0, dilation: Any = 1
) -> tuple[Array, VJP]:
    r"""2-D convolution (cross-correlation, as in PyTorch) of a batch of NCHW images.

    ``x`` is (N, C, H, W) images, ``w`` is (K, C, R, S) kernels, ``b`` is (K,) biases; ``y`` is
    (N, K, P, Q), :math:`y_{nkpq} = b_k + \sum_{c,i,j} w_{kcij}\,
    x^{\mathrm{pad}}_{n,c,p s_h + i d_h, q s_w + j d_w}`, with
    ``P = (H + 2 ph - dh (R - 1) - 1) // sh + 1`` and likewise ``Q``.

    ``stride`` (>= 1), ``padding`` (>= 0, zeros on both sides) and ``dilation`` (>= 1, the
    spacing of the kernel's taps) are each an int or a pair ``(along H, along W)``.
    Gradients (spec/conv2d.md): ``dx`` is :func:`conv2d_transpose` of ``g``, ``dw`` correlates
    the padded input with ``g``, ``db`` sums ``g`` over N, P and Q. float32 stays float32.

    >>> y, vjp = conv2d(np.ones((2, 3, 5, 5)), np.ones((4, 3, 3, 3)), np.zeros(4), padding=1)
    >>> y.shape, float(y[0, 0, 0, 0]), float(y[0, 0, 2, 2])
    ((2, 4, 5, 5), 12.0, 27.0)
    >>> [c.shape for c in vjp(np.ones(y.shape))]
    [(2, 3, 5, 5), (4, 3, 3, 3), (4,)]
    """
    geo = _geometry(stride, padding, dilation)
    n, c, h, wd = x.shape
    k, _, r, s = w.shape
    p, q = geo.out_size(h, wd, r, s)
    if use_dft(x.dtype, x.shape, w.shape, geo):  # stride 1, less work as DFTs (nn/conv_dft.py)
        y, spectra = conv2d_dft(x, w, b, geo.padding)

        def dft_vjp(g: Array, *, input_grad: bool = True) -> tuple[Any, ...]:  # dx may be None
            return conv2d_dft_vjp(g, spectra, w, x.shape, geo.padding, input_grad=input_grad)

        return y, dft_vjp
    if use_rows(c, s, p, r, geo.stride):  # stride 1: R GEMMs on shifted rows (nn/conv_rows.py)
        y, xs = conv2d_rows(x, w, b, geo.padding, geo.dilation)

        def rows_vjp(g: Array, *, input_grad: bool = True) -> tuple[Any, ...]:  # dx may be None
            return conv2d_rows_vjp(
                g, xs, w, x.shape, geo.padding, geo.dilation, input_grad=input_grad
            )

        return y, rows_vjp
    by_image = per_image(c, r, s, p, q)
    cols = _im2col(x, r, s, geo, by_image)  # (N, CRS, PQ) or (CRS, NPQ), kept for dw
    wmat = w.reshape(k, c * r * s)  # (K, C, R, S) -> (K, CRS), a view
    if by_image:
        y = (wmat @ cols).reshape(n, k, p, q)  # (K, CRS) @ (N, CRS, PQ) -> (N, K, PQ): NCHW
        y += b[:, None, None]  # our own fresh array: add in place
    else:
        yt = wmat @ cols  # (K, CRS) @ (CRS, NPQ) -> (K, NPQ): one GEMM for the batch
        # K and N swap by whole (P, Q) planes; the bias rides along in the same pass.
        y = swap_planes(yt.reshape(k, n, p * q), b).reshape(n, k, p, q)  # (N, K, P, Q)

    def vjp(g: Array, *, input_grad: bool = True) -> tuple[Any, ...]:  # dx None: no input_grad
        db = g.sum(axis=(0, 2, 3))  # (N, K, P, Q) -> (K,)
        gt = None
        if by_image:  # (N, K, PQ) @ (N, PQ, CRS) -> (N, K, CRS), summed over images: small
            dwmat = np.matmul(g.reshape(n, k, p * q), cols.transpose(0, 2, 1)).sum(axis=0)
        else:
            gt = swap_planes(g.reshape(n, k, p * q)).reshape(k, n * p * q)  # -> (K, NPQ)
            dwmat = gt @ cols.T  # (K, NPQ) @ (NPQ, CRS) -> (K, CRS)
        # A network's first layer needs no dx: its input is data (nn.model skips it).
        dx = _input_grad(g, w, x.shape, geo, gt) if input_grad else None  # (N,K,P,Q)->(N,C,H,W)
        return dx, dwmat.reshape(w.shape), db

    return y, vjp


def conv2d_transpose(
    g: Array,
    w: Array,
    *,
    input_shape: tuple[int, ...],
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
) -> Array:
    r"""The transposed convolution: the adjoint of ``x -> conv2d(x, w, 0)`` applied to ``g``.

    ``g`` is (N, K, P, Q), ``w`` is (K, C, R, S); returns ``dx`` of ``input_shape``
    (N, C, H, W), :math:`dx_{nchw} = \sum_{k,p,q,i,j} g_{nkpq}\, w_{kcij}` over the
    ``(p, q, i, j)`` with ``p sh + i dh - ph = h`` and ``q sw + j dw - pw = w``: the full
    correlation of ``g`` (with ``stride - 1`` zeros between its entries) with the flipped
    kernel. It is the input gradient of :func:`conv2d`, so
    ``<conv2d(x, w, 0), g> = <x, conv2d_transpose(g, w, ...)>``. ``input_shape`` is needed
    because a stride > 1 maps several input sizes to the same output size.

    >>> g, w = np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2))
    >>> dx = conv2d_transpose(g, w, input_shape=(1, 1, 3, 3))
    >>> dx[0, 0].tolist()
    [[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]
    """
    who = "conv2d_transpose"
    geo = _geometry(stride, padding, dilation, who)
    for name, a in (("g", g), ("w", w)):
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "fc":
            got = type(a).__name__ + (f" of {a.dtype}" if isinstance(a, np.ndarray) else "")
            raise DTypeError(f"{who}: {name} must be a floating (or complex) array, received {got}")
    if g.dtype != w.dtype:
        raise DTypeError(f"{who}: g and w must share one dtype, received {g.dtype} and {w.dtype}")
    shape = tuple(int(v) for v in input_shape)
    ok = g.ndim == 4 and w.ndim == 4 and len(shape) == 4 and min(w.shape[2:]) >= 1
    if ok:
        n, c, h, wd = shape
        ok = (g.shape[:2], w.shape[:2]) == ((n, w.shape[0]), (w.shape[0], c))
        ok = ok and g.shape[2:] == geo.out_size(h, wd, *w.shape[2:])
    if not ok:
        raise ShapeError(
            f"{who}: g (N, K, P, Q) {g.shape} and w (K, C, R, S) {w.shape} do not fit "
            f"input_shape (N, C, H, W) {tuple(input_shape)} with {geo}"
        )
    if use_dft(g.dtype, shape, w.shape, geo):  # as conv2d's vjp, so the two are bitwise equal
        a_in, a_out, taps = transforms(h, wd, *w.shape[2:], geo.padding, g.dtype.str)
        return dft_input_grad(output_spectrum_grad(g, a_out), kernel_spectrum(w, taps), shape, a_in)
    if use_rows(c, w.shape[3], g.shape[2], w.shape[2], geo.stride):  # as conv2d's vjp: bitwise
        return rows_input_grad(rows_of(g), w, shape, geo.padding, geo.dilation)
    return _input_grad(g, w, shape, geo)  # (N, K, P, Q) -> (N, C, H, W)


__all__ = ["conv2d", "conv2d_transpose"]
