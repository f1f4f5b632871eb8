"""nn: neural networks from scratch in NumPy, every equation specified and verified.

Every op is a pure function ``op(*arrays, **static) -> (out, vjp)`` (see :mod:`nn.op`),
documented by a spec page ``spec/<op>.md`` and verified by :mod:`nn.testing`.
"""

from nn.blas_env import quiet_blas_spin
from nn.heap import keep_heap

# Before anything imports NumPy, which loads OpenBLAS (see nn.blas_env); hence the imports
# below come after a call.
# ruff: noqa: E402
quiet_blas_spin()
keep_heap()  # a step's large arrays reuse the last step's pages (see nn.heap)

from nn.activations import log_softmax, relu, sigmoid, softmax, tanh
from nn.conv import conv2d, conv2d_transpose
from nn.ctc import ctc_alignment, ctc_loss
from nn.dropout import dropout, dropout_mask
from nn.errors import (
    DataError,
    DivergenceError,
    DTypeError,
    NNError,
    ShapeError,
    VerificationError,
)
from nn.linear import linear
from nn.losses import mean_squared_error, softmax_cross_entropy
from nn.norm import batch_norm, batch_norm_inference
from nn.op import REGISTRY, op
from nn.pool import avg_pool2d, max_pool2d
from nn.reshape import columns, flatten, unflatten

__version__ = "0.1.0"

__all__ = [
    "REGISTRY",
    "DTypeError",
    "DataError",
    "DivergenceError",
    "NNError",
    "ShapeError",
    "VerificationError",
    "avg_pool2d",
    "batch_norm",
    "batch_norm_inference",
    "columns",
    "conv2d",
    "conv2d_transpose",
    "ctc_alignment",
    "ctc_loss",
    "dropout",
    "dropout_mask",
    "flatten",
    "linear",
    "log_softmax",
    "max_pool2d",
    "mean_squared_error",
    "op",
    "relu",
    "sigmoid",
    "softmax",
    "softmax_cross_entropy",
    "tanh",
    "unflatten",
]
