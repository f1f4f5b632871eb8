"""nn: neural networks from scratch in NumPy, every equation specified and verified.

Every op is a pure function ``op(*arrays, **static) -> (out, vjp)`` (see :mod:`nn.op`),
documented by a spec page ``spec/<op>.md`` and verified by :mod:`nn.testing`.
"""

from nn.activations import log_softmax, relu, sigmoid, softmax, tanh
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
from nn.op import REGISTRY, op

__version__ = "0.1.0"

__all__ = [
    "REGISTRY",
    "DTypeError",
    "DataError",
    "DivergenceError",
    "NNError",
    "ShapeError",
    "VerificationError",
    "linear",
    "log_softmax",
    "mean_squared_error",
    "op",
    "relu",
    "sigmoid",
    "softmax",
    "softmax_cross_entropy",
    "tanh",
]
