"""One exception family for the whole library.

Every error the library raises on purpose is an :class:`NNError`, so a user can catch
them all at once; each subclass also derives from the built-in exception a Python
programmer would expect (a shape problem is a ``ValueError``), so generic handlers work.
"""

from __future__ import annotations


class NNError(Exception):
    """Base class of every error raised on purpose by ``nn``."""


class ShapeError(NNError, ValueError):
    """An array's shape does not fit the op's signature (named in the message)."""


class DTypeError(NNError, TypeError):
    """An array has a dtype the op does not accept, or inputs disagree in dtype."""


class DataError(NNError, ValueError):
    """Data (a file, a label, a batch) is malformed or out of range."""


class DivergenceError(NNError, FloatingPointError):
    """A loss, activation or gradient stopped being finite.

    ``finding`` is the trainer's diagnosis (an :class:`nn.guard.Finding`: the layer, the op,
    the array and its statistics), or None when the error comes from elsewhere.
    """

    def __init__(self, message: str, finding: object = None) -> None:
        super().__init__(message)
        self.finding = finding


class VerificationError(NNError, AssertionError):
    """An op failed a check of the verification protocol (see :mod:`nn.testing`)."""


class HealthWarning(UserWarning):
    """Training goes on, but the gradients look unhealthy (:mod:`nn.health` says which rule)."""
