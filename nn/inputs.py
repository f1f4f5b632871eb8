"""Checks of what users hand to the entry points above the ops: named errors, no arithmetic.

The ops check their own arrays (:mod:`nn.op`); these check the arguments around them, where a
wrong one would otherwise surface as a bare Python or NumPy error far from its cause, or only
after an epoch of training: the input shape a :class:`~nn.model.Sequential` is built for, a
seed, a dtype, the inputs ``x`` and labels ``y`` of a batch, ``predict``'s batch size, the
trainer's images and labels, a set to score. Each is O(1), or one pass over the labels: cheap
next to the forward pass it guards. The table of cases is docs/bad-input.md.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from nn.errors import DataError, DTypeError, ShapeError
from nn.op import Array

if TYPE_CHECKING:
    from nn.model import Sequential


def check_input_shape(input_shape: Any) -> tuple[int, ...]:
    """``input_shape`` as a tuple of integers >= 0 (one example's shape, no batch axis); a
    size of 0 is for the layers to refuse, by name."""
    try:
        dims = tuple(input_shape)
        ok = bool(dims) and all(as_integer(d) is not None and int(d) >= 0 for d in dims)
    except TypeError:
        ok = False
    if not ok or isinstance(input_shape, str):
        raise ShapeError(
            f"Sequential: input_shape must be a non-empty tuple of integers, one example's "
            f"shape without the batch axis, such as (784,) or (1, 28, 28); received "
            f"{input_shape!r}"
        )
    return tuple(int(d) for d in dims)


def check_seed(who: str, seed: Any, name: str = "seed") -> np.random.Generator:
    """A generator from ``seed``: an integer >= 0 or a ``np.random.Generator``."""
    if isinstance(seed, np.random.Generator):
        return seed
    value = as_integer(seed)
    if value is None or value < 0:
        error = TypeError if value is None else ValueError
        raise error(
            f"{who}: {name} must be an integer >= 0 (a seed) or a np.random.Generator, "
            f"received {seed!r}"
        )
    return np.random.default_rng(value)


def check_rng(rng: Any) -> np.random.Generator | None:
    """``forward``'s ``rng``: None, a seed (an integer >= 0) or a ``np.random.Generator``."""
    return None if rng is None else check_seed("model", rng, "rng")


def check_float_dtype(who: str, dtype: Any) -> np.dtype[Any]:
    """``dtype`` if it is float32 or float64, the dtypes a model computes in."""
    try:
        dt: np.dtype[Any] | None = np.dtype(dtype)
    except (TypeError, ValueError):  # ValueError: a malformed tuple such as (np.float32, -1)
        dt = None
    if dt is None or dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        got = dt.name if dt is not None else repr(dtype)
        raise DTypeError(
            f"{who}: dtype must be float32 (training) or float64 (verification), received {got}"
        )
    return dt


def check_inputs(model: Sequential, x: Any) -> None:
    """``x`` must be a float32 or float64 array ``(N, *input_shape)``."""
    shape = f"(N, {', '.join(map(str, model.input_shape))})"
    if not isinstance(x, np.ndarray):
        raise DTypeError(
            f"model: x must be a NumPy float array {shape}, received {type(x).__name__}; "
            f"convert uint8 images with nn.train.images_to_inputs"
        )
    if x.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise DTypeError(
            f"model: x must be a float32 or float64 array {shape} (the parameters' dtype), "
            f"received {x.dtype}; convert uint8 images with nn.train.images_to_inputs"
        )
    if tuple(x.shape[1:]) != model.input_shape:
        raise ShapeError(f"model: x must have shape {shape}, received {x.shape}")


def check_mapping(who: str, name: str, value: Any) -> None:
    """``value`` must be a dict of named arrays (params, state)."""
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{who}: {name} must be a dict of arrays by name (from model.init or a checkpoint), "
            f"received {type(value).__name__}"
        )


def check_batch(batch: Any) -> tuple[Any, Any]:
    """``batch`` as its two parts ``(x, y)``."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        got = f"{type(batch).__name__} of length {len(batch)}" if isinstance(
            batch, (tuple, list)) else type(batch).__name__  # fmt: skip
        raise TypeError(f"model: batch must be a pair (x, y) of inputs and labels, received {got}")
    return batch[0], batch[1]


def check_labels(loss: str, out: Any, y: Any) -> None:
    """Labels ``y`` against outputs ``out``: integers (N,) for outputs (N, K); strings (N, L)
    for ``ctc`` columns (N, T, K), or one digit per head for heads (N, L, K). The values are
    the loss's to check (its message names the range)."""
    if not isinstance(out, np.ndarray) or out.ndim not in (2, 3):
        got = out.shape if isinstance(out, np.ndarray) else type(out).__name__
        raise ShapeError(
            f"model: outputs must be an array (N, K), or (N, T, K) and (N, L, K) for strings, "
            f"received {got}"
        )
    y = np.asarray(y)
    n = len(out)
    if out.ndim == 2:
        ok, want = y.shape == (n,), f"(N,) = ({n},), one class index per example"
    elif loss == "ctc":
        ok, want = y.ndim == 2 and len(y) == n, f"(N, L) = ({n}, L), strings padded with -1"
    else:
        ok, want = y.shape == out.shape[:2], f"(N, L) = {out.shape[:2]}, one digit per head"
    if not ok:
        raise ShapeError(
            f"model: labels y must have shape {want}, for outputs {out.shape}; received {y.shape}"
        )
    if y.dtype.kind not in "iu":
        raise DataError(f"model: labels y must be integers, received dtype {y.dtype}")


def check_classes(out: Any, y: Any) -> None:
    """Class labels ``y`` (N,) in ``[0, K)`` for outputs (N, K): one pass over the labels."""
    k, y = out.shape[-1], np.asarray(y)  # a list of labels is checked like an array
    if out.ndim == 2 and len(y) and (y.min() < 0 or y.max() >= k):
        raise DataError(
            f"model: labels y must lie in [0, {k}) (one of the K = {k} outputs), received "
            f"values from {y.min()} to {y.max()}"
        )


def check_batch_size(batch_size: Any) -> int:
    """``predict``'s ``batch_size``: an integer >= 1."""
    value = as_integer(batch_size)
    if value is None or value < 1:
        raise ValueError(
            f"model.predict: batch_size must be an integer >= 1, received {batch_size!r}"
        )
    return value


def as_integer(value: Any) -> int | None:
    """``int(value)`` for an integer that is not a bool (NumPy integers too), else None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def check_training_data(strings: bool, model: Sequential, x: Any, y: Any) -> None:
    """The trainer's data: uint8 images (N, H, W) that make the model's inputs, and labels:
    digits (N,) in [0, K), or with ``strings`` rows (N, L) of digits padded with -1 at their
    end that the model's outputs can read. One pass over the labels, before any training: a
    bad label in the validation split would otherwise surface only after a whole epoch."""
    if not isinstance(x, np.ndarray):
        raise DataError(
            f"x_train must be a NumPy array of uint8 pixels 0..255 (N, H, W), received "
            f"{type(x).__name__}"
        )
    if x.dtype != np.uint8:
        hint = ""
        if x.dtype.kind == "f":
            nan = "" if np.isfinite(x).all() else " holding NaN or inf"
            hint = f"{nan}; floats in [0, 1] convert by np.rint(x * 255).astype(np.uint8)"
        raise DataError(f"x_train must be uint8 pixels 0..255, received dtype {x.dtype}{hint}")
    want = model.input_shape
    size = int(np.prod(want))
    fits = x.ndim == 3 and (
        x.shape[1:] == want[1:] if len(want) == 3 else x.shape[1] * x.shape[2] == size
    )
    if not fits:
        raise ShapeError(
            f"x_train must be images (N, H, W) whose pixels make the model's inputs {want} "
            f"({size} pixels an image), received shape {x.shape}"
        )
    if not isinstance(y, np.ndarray):
        raise DataError(
            f"y_train must be a NumPy array of integer labels, received {type(y).__name__}"
        )
    if y.ndim == 0:
        raise DataError(f"y_train must be integer labels (N,), received a 0-d array {y!r}")
    if y.dtype.kind not in "iu":
        where = ""
        if y.dtype.kind in "fc" and not np.isfinite(y).all():
            at = np.argwhere(~np.isfinite(y))[0]
            where = f", NaN or inf at index {int(at[0]) if y.ndim == 1 else tuple(at.tolist())}"
        raise DataError(f"y_train must be integer labels, received dtype {y.dtype}{where}")
    if len(x) != len(y):
        raise DataError(f"x_train has {len(x)} images but y_train {len(y)} labels")
    if strings:
        _check_strings(model, y)
    elif y.ndim != 1:
        raise ShapeError(f"y_train must be class labels (N,) = ({len(y)},), received {y.shape}")
    elif len(y) and (y.min() < 0 or y.max() >= model.classes):
        i = int(np.flatnonzero((y < 0) | (y >= model.classes))[0])
        raise DataError(
            f"y_train must lie in 0..{model.classes - 1} (the model's {model.classes} classes), "
            f"received {y[i]} at index {i} (values from {y.min()} to {y.max()})"
        )


def _check_strings(model: Sequential, y: Array) -> None:
    """Strings (N, L): digits 0..9, -1 padding only at the end of a row, and readable by the
    model: at most T columns for CTC (a blank between repeated digits), one per head."""
    if y.ndim != 2:
        raise ShapeError(f"y_train must be strings (N, L) padded with -1, received {y.shape}")
    pad = y < 0
    bad = (y < -1) | (y > 9)  # (N, L)
    bad[:, :-1] |= pad[:, :-1] & ~pad[:, 1:]  # -1 before a digit
    if bad.any():
        i = int(np.flatnonzero(bad.any(axis=1))[0])
        raise DataError(
            f"y_train must be rows of digits 0..9 padded with -1 at their end, received row "
            f"{i} = {y[i].tolist()}"
        )
    out = model.shapes[-1]
    if model.loss_name == "ctc":
        need = (~pad).sum(axis=1) + ((y[:, 1:] == y[:, :-1]) & ~pad[:, 1:]).sum(axis=1)
        if len(need) and need.max() > out[0]:
            i = int(np.argmax(need))
            raise DataError(
                f"y_train row {i} = {y[i].tolist()} needs {need[i]} columns (a blank between "
                f"repeated digits), but the model reads T = {out[0]}"
            )
    elif len(out) == 2 and (y.shape[1] != out[0] or pad.any()):
        raise DataError(
            f"y_train must be strings of exactly {out[0]} digits, one per head of the model's "
            f"outputs {out}, received shape {y.shape}" + (" with -1 padding" if pad.any() else "")
        )


def check_scored(images: Any, labels: Any) -> None:
    """A labelled set to score: one label (or string) per image, and at least one image."""
    if not isinstance(images, np.ndarray) or not isinstance(labels, np.ndarray):
        got = ", ".join(type(a).__name__ for a in (images, labels))
        raise DataError(f"images and labels must be NumPy arrays, received {got}")
    if images.ndim == 0 or labels.ndim == 0:
        raise DataError(
            f"images and labels must have a batch axis (N, ...), received 0-d arrays of shapes "
            f"{images.shape} and {labels.shape}"
        )
    if len(images) != len(labels):
        raise DataError(f"images has {len(images)} images but labels {len(labels)} labels")
    if not len(images):
        raise DataError("images holds no images (N = 0): there is nothing to score")
