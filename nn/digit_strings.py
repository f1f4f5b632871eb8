"""Images of digit strings built from MNIST digits: a seeded data op (spec/digit_strings.md).

:func:`make_digit_strings` draws each string's length, its digits (uniformly, with replacement,
from the one MNIST split it is given), the gaps between neighbouring digits' ink, each digit's
vertical jitter and optional scale, and the string's horizontal offset, all from
``np.random.default_rng(params.seed)`` in a documented order. The same parameters and digits
give bitwise the same images; :func:`string_cache_path` names a file by a hash of the
parameters and of the digits, and :func:`save_digit_strings` / :func:`load_digit_strings`
write and read it (a checked ``.npz``, :mod:`nn.digit_strings_io`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from nn import data as mnist
from nn.atomic import sha256_array
from nn.digit_layout import SIDE, crop_to_ink, layout, resample, scaled_side
from nn.digit_strings_io import read_checked_npz, write_checked_npz
from nn.errors import DataError, DTypeError, ShapeError

__all__ = [
    "DigitStrings", "StringParams", "load_digit_strings", "make_digit_strings",
    "save_digit_strings", "string_cache_path",
]  # fmt: skip

Array = np.ndarray[Any, Any]
SPLITS = ("train", "test")
_FORMAT, _VERSION = "nn-digit-strings", 1  # the version also keys the cache: bump it on changes
_ARRAYS = ("images", "labels", "sources", "positions", "tops")


def _integer(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


@dataclass(frozen=True)
class StringParams:
    """What :func:`make_digit_strings` makes; invalid values raise a DataError naming the field."""

    count: int  # number of strings
    min_length: int = 1  # digits per string, uniform in [min_length, max_length]
    max_length: int = 7
    height: int = 32
    width: int = 144
    gap: tuple[int, int] = (-2, 4)  # pixels between neighbouring ink boxes; negative: overlap
    jitter: int = 2  # vertical offset of each digit, uniform in [-jitter, jitter]
    scale: tuple[float, float] = (1.0, 1.0)  # per-digit scale, uniform; (1, 1): off
    seed: int = 0
    split: str = "train"  # which MNIST split the digits come from

    def __post_init__(self) -> None:
        problems = []
        for name in ("count", "min_length", "max_length", "height", "width", "jitter", "seed"):
            value = getattr(self, name)
            if not _integer(value) or value < 0:
                problems.append(f"{name} must be an integer >= 0, received {value!r}")
            else:
                object.__setattr__(self, name, int(value))
        for name, kind in (("gap", int), ("scale", float)):
            pair = getattr(self, name)
            ok = isinstance(pair, tuple | list) and len(pair) == 2
            ok = ok and all(_integer(v) if kind is int else _number(v) for v in pair)
            if ok and pair[0] <= pair[1]:
                object.__setattr__(self, name, (kind(pair[0]), kind(pair[1])))
            else:
                what = "integers" if kind is int else "finite numbers"
                problems.append(f"{name} must be two {what} (low, high), low <= high; got {pair!r}")
        if self.split not in SPLITS:
            problems.append(f"split must be 'train' or 'test', received {self.split!r}")
        if not problems:
            problems = self._size_problems()
        if problems:
            raise DataError("StringParams: " + "; ".join(problems))

    def _size_problems(self) -> list[str]:
        side = scaled_side(min(self.scale[1], 1e6))
        problems = []
        if self.max_length < max(1, self.min_length):
            problems.append(f"max_length must be >= max(1, min_length), got {self.max_length}")
        if self.scale[0] < 1 / 56:
            problems.append(f"scale must be >= 1/56 (at least 1 pixel), got {self.scale}")
        if self.height < side:
            problems.append(f"height must be >= {side} (a digit at scale {self.scale[1]})")
        if self.width < self.max_length - 1 + side:
            problems.append(
                f"width must be >= max_length - 1 + {side} = {self.max_length - 1 + side} "
                "(so that any string fits)"
            )
        return problems

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-able values (pairs as lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: Any) -> StringParams:
        """The parameters :meth:`to_dict` gave; DataError naming any unknown or bad field."""
        if not isinstance(d, dict):
            raise DataError(f"StringParams: expected a dict of fields, received {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        if unknown := sorted(set(d) - set(names), key=str):
            raise DataError(f"StringParams: unknown field(s) {unknown}; expected some of {names}")
        if "count" not in d:
            raise DataError("StringParams: the field 'count' is required")
        return cls(**d)


def _number(value: Any) -> bool:
    return _integer(value) or (isinstance(value, float | np.floating) and math.isfinite(value))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True, eq=False)
class DigitStrings:
    """``count`` strings: images, their digits and where each digit came from and was put.

    Arrays ``(N, L)`` (``L = params.max_length``) hold each string's entries then ``-1``.
    """

    images: Array  # (N, H, W) uint8, background 0
    labels: Array  # (N, L) int64: the digits
    sources: Array  # (N, L) int64: indices of the digits in the split's arrays
    positions: Array  # (N, L) int64: each digit's left ink column in the image
    tops: Array  # (N, L) int64: the top row of each digit's (scaled) square
    params: StringParams

    def __post_init__(self) -> None:
        if problems := _strings_problems(self):
            raise DataError("DigitStrings: " + "; ".join(problems))

    @property
    def lengths(self) -> Array:
        """(N,) int64: the number of digits of each string."""
        lengths: Array = np.count_nonzero(self.labels >= 0, axis=1).astype(np.int64)
        return lengths


def _strings_problems(s: DigitStrings) -> list[str]:
    p = s.params
    if not isinstance(cast(object, p), StringParams):
        return [f"params must be StringParams, received {type(p).__name__}"]
    expected: dict[str, tuple[type[np.generic], tuple[int, ...]]]
    expected = {"images": (np.uint8, (p.count, p.height, p.width))}
    expected |= {name: (np.int64, (p.count, p.max_length)) for name in _ARRAYS[1:]}
    problems = []
    for name, (dtype, shape) in expected.items():
        a = getattr(s, name)
        if not isinstance(a, np.ndarray) or a.dtype != dtype or a.shape != shape:
            received = (a.dtype, a.shape) if isinstance(a, np.ndarray) else type(a).__name__
            problems.append(f"{name} must be {np.dtype(dtype)} {shape}, received {received}")
    if problems:
        return problems
    pad = s.labels == -1
    if np.any(pad[:, :-1] & ~pad[:, 1:]):
        problems.append("each row of labels must be its digits then -1 padding")
    if np.any((s.labels < -1) | (s.labels > 9)):
        problems.append("labels must be digits 0..9 or the padding -1")
    if np.any((s.lengths < p.min_length) | (s.lengths > p.max_length)):
        problems.append(f"string lengths must lie in [{p.min_length}, {p.max_length}]")
    for name, high in (("sources", None), ("positions", p.width), ("tops", p.height - 1)):
        a = getattr(s, name)
        if np.any((a == -1) != pad) or np.any(a < -1) or (high is not None and np.any(a > high)):
            bound = "" if high is None else f" <= {high}"
            problems.append(f"{name} must be -1 exactly where labels are, else >= 0{bound}")
    step = np.diff(s.positions, axis=1)
    if np.any((step < 1) & ~pad[:, 1:]):
        problems.append("positions must increase along each string")
    return problems


def make_digit_strings(images: Array, labels: Array, params: StringParams) -> DigitStrings:
    """``params.count`` strings of the digits ``images`` (M, 28, 28) uint8, ``labels`` (M,).

    ``images`` and ``labels`` are one MNIST split (``params.split`` says which; if ``images``
    is exactly MNIST's other split, a DataError). The layout rules are in spec/digit_strings.md.

    >>> digits = np.zeros((2, 28, 28), np.uint8)
    >>> digits[0, 4:24, 10:14] = 255; digits[1, 4:24, 8:18] = 200   # a "1" and a "7"
    >>> s = make_digit_strings(digits, np.array([1, 7]), StringParams(1, 3, 3, width=40))
    >>> s.images.shape, s.labels, s.positions
    ((1, 32, 40), array([[7, 7, 7]]), array([[ 8, 17, 27]]))
    """
    if not isinstance(params, StringParams):
        raise TypeError(f"make_digit_strings: params must be StringParams, got {type(params)}")
    m = _check_digits(images, labels, params.split)
    n, big_l, h, w = params.count, params.max_length, params.height, params.width
    rng = np.random.default_rng(params.seed)  # the draws, in this order (the page's stream)
    lengths = rng.integers(params.min_length, big_l + 1, size=n)
    chosen = rng.integers(0, m, size=(n, big_l))
    gaps = rng.integers(params.gap[0], params.gap[1] + 1, size=(n, big_l - 1))
    jitter = rng.integers(-params.jitter, params.jitter + 1, size=(n, big_l))
    scales = rng.uniform(params.scale[0], params.scale[1], size=(n, big_l))
    where = rng.random(n).tolist()

    used = np.arange(big_l) < lengths[:, None]  # (N, L)
    sides = np.floor(SIDE * scales + 0.5).astype(np.int64)
    tops = np.where(used, np.clip((h - sides) // 2 + jitter, 0, h - sides), -1)
    positions = np.full((n, big_l), -1, np.int64)
    out = np.zeros((n, h, w), np.uint8)
    ink: Array = images.max(axis=1) > 0  # (M, 28): the columns holding ink
    first = ink.argmax(axis=1)
    widths = np.where(ink.any(axis=1), SIDE - ink[:, ::-1].argmax(axis=1) - first, 0)
    first_l, widths_l = first.tolist(), widths.tolist()
    for i, (k, row, side_row, gap_row, top_row) in enumerate(
        zip(*(a.tolist() for a in (lengths, chosen, sides, gaps, tops)), strict=True)
    ):
        crops = []
        for j in range(k):
            src, side = row[j], side_row[j]
            if side == SIDE:
                crops.append(images[src, :, first_l[src] : first_l[src] + widths_l[src]])
            else:
                crops.append(crop_to_ink(resample(images[src], side)))
        lefts = layout([c.shape[1] for c in crops], gap_row[: max(k - 1, 0)], w)
        extent = max([left + c.shape[1] for left, c in zip(lefts, crops, strict=True)], default=0)
        offset = math.floor(where[i] * (w - extent + 1))
        for j, crop in enumerate(crops):
            x0, y0 = offset + lefts[j], top_row[j]
            region = out[i, y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]]
            np.maximum(region, crop, out=region)  # ink over ink
            positions[i, j] = x0
    return DigitStrings(
        images=out,
        labels=np.where(used, labels.astype(np.int64)[chosen], -1),
        sources=np.where(used, chosen, -1).astype(np.int64),
        positions=positions,
        tops=tops.astype(np.int64),
        params=params,
    )


def _check_digits(images: Any, labels: Any, split: str) -> int:
    if not isinstance(images, np.ndarray) or images.ndim != 3 or images.shape[1:] != (SIDE, SIDE):
        got = images.shape if isinstance(images, np.ndarray) else type(images).__name__
        raise ShapeError(f"make_digit_strings: images must be (M, 28, 28), received {got}")
    if images.dtype != np.uint8:
        raise DTypeError(f"make_digit_strings: images must be uint8, received {images.dtype}")
    if not isinstance(labels, np.ndarray) or labels.shape != images.shape[:1]:
        got = labels.shape if isinstance(labels, np.ndarray) else type(labels).__name__
        raise ShapeError(
            f"make_digit_strings: labels must be ({len(images)},), one per image; received {got}"
        )
    if labels.dtype.kind not in "iu" or np.any((labels < 0) | (labels > 9)):
        raise DataError("make_digit_strings: labels must be integers 0..9")
    if len(images) == 0:
        raise ShapeError("make_digit_strings: images holds no digits")
    digest = sha256_array(images)
    for other in SPLITS:
        if other != split and digest == mnist.MNIST_SHA256[f"{other}_images"]:
            raise DataError(
                f"make_digit_strings: images are MNIST's {other} digits, but params.split is "
                f"{split!r}: {split} strings must be made of {split} digits only"
            )
    return len(images)


def string_cache_path(
    params: StringParams,
    images: Array,
    labels: Array,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Where the strings of ``params`` made of these digits are cached: next to MNIST's cache
    (``nn.data``), named by a hash of ``params.to_dict()``, the SHA-256 of ``images`` and
    ``labels`` and the generator's version, so strings of other digits never pass for these."""
    key = {
        "format": _FORMAT,
        "version": _VERSION,
        "params": params.to_dict(),
        "digits": [sha256_array(np.asarray(images)), sha256_array(np.asarray(labels))],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()
    return mnist.default_cache_path(cache_dir).parent / f"digit-strings-{digest[:16]}.npz"


def save_digit_strings(path: str | os.PathLike[str], strings: DigitStrings) -> None:
    """Write ``strings`` to ``path`` atomically: a checked ``.npz``, params as JSON, no pickle."""
    if not isinstance(strings, DigitStrings):
        raise TypeError(f"save_digit_strings: expected DigitStrings, got {type(strings)}")
    arrays = {name: getattr(strings, name) for name in _ARRAYS}
    record = {"format": _FORMAT, "version": _VERSION, "params": strings.params.to_dict()}
    write_checked_npz(path, arrays, record)


def load_digit_strings(path: str | os.PathLike[str]) -> DigitStrings:
    """The strings :func:`save_digit_strings` wrote; a DataError naming the file for any fault."""
    arrays, record = read_checked_npz(path, _ARRAYS)
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        raise DataError(f'{path}: not a digit-strings file (no "format": "{_FORMAT}")')
    if record.get("version") != _VERSION:
        raise DataError(f"{path}: version {record.get('version')!r}, this nn reads {_VERSION}")
    try:
        return DigitStrings(**arrays, params=StringParams.from_dict(record.get("params")))
    except DataError as error:
        raise DataError(f"{path}: {error}") from None
