"""flatten: the bridge from a convolution's feature maps to a fully connected layer."""

from __future__ import annotations

import numpy as np

from nn.op import VJP, Array, op


def _flat_size(sizes: dict[str, int]) -> dict[str, int]:
    return {"d": sizes["c"] * sizes["h"] * sizes["w"]}


@op(
    signature="(n,c,h,w)->(n,d)",
    complex_safe=True,
    loops=False,
    derive=_flat_size,
    sample_sizes={"n": 2, "c": 3, "h": 4, "w": 5},
)
def flatten(x: Array) -> tuple[Array, VJP]:
    r"""Flatten each example's feature maps into one row: :math:`(N, C, H, W) \to (N, CHW)`.

    Row ``n`` holds ``x[n]`` in C order: ``y[n, (c*H + h)*W + w] = x[n, c, h, w]``, the
    order of ``np.reshape`` and of PyTorch's ``torch.flatten(x, 1)``. The output is a view of
    ``x`` whenever NumPy can reshape without copying (always, for a C-contiguous ``x``).
    Gradient: the same entries moved back, ``dx = g.reshape(x.shape)``.

    >>> y, vjp = flatten(np.arange(12.0).reshape(2, 3, 2, 1))
    >>> y.shape, y[1].tolist(), vjp(y)[0].shape
    ((2, 6), [6.0, 7.0, 8.0, 9.0, 10.0, 11.0], (2, 3, 2, 1))
    """
    n, c, h, w = x.shape
    # Explicit sizes, not -1: reshape(0, -1) of an empty batch cannot infer the row length.
    y = x.reshape(n, c * h * w)  # (N, C, H, W) -> (N, C*H*W)

    def vjp(g: Array) -> tuple[Array]:
        return (np.reshape(g, x.shape),)  # (N, C*H*W) -> (N, C, H, W)

    return y, vjp
