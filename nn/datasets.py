"""The data a config trains on: MNIST's digits, or strings made of them.

``[data] name = "mnist"`` is the 60000 + 10000 digits of :func:`nn.data.fetch_mnist`.
``"digit_strings"`` is images of whole numbers (:mod:`nn.digit_strings`) made of three
disjoint sets of MNIST digits, so every figure is on handwriting the network never trained on:

* training strings of the first 55000 training digits;
* validation strings (the last ``[train] validation`` strings of the training set, held out
  by the trainer) of the last 5000 training digits, which no training string uses;
* test strings of the 10000 test digits.

Strings are made once per set of generator parameters and digits and cached beside MNIST
(npz with checksums), under a name that includes a hash of the digits they were made of
(:func:`~nn.digit_strings.string_cache_path`);
a cached file that fails its checks is made again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nn.config import Config, DataConfig
from nn.data import MnistData, default_cache_path, fetch_mnist
from nn.digit_strings import (
    DigitStrings,
    StringParams,
    load_digit_strings,
    make_digit_strings,
    save_digit_strings,
    string_cache_path,
)
from nn.errors import DataError
from nn.op import Array

Log = Callable[[str], None]
#: 1 / VALIDATION_SHARE of MNIST's training digits, the last, make the validation strings
#: (5000 of 60000).
VALIDATION_SHARE = 12


@dataclass(frozen=True)
class Dataset:
    x_train: Array  # uint8 (N, H, W)
    y_train: Array  # digits (N,) or strings (N, L) padded with -1
    x_test: Array
    y_test: Array
    source: str


def string_params(d: DataConfig, split: str, count: int | None = None) -> StringParams:
    """The generator's parameters for a config's ``"train"``, ``"validation"`` or ``"test"``
    strings. Test strings all have ``test_length`` digits; each split has its own seed
    (``seed``, ``seed + 2``, ``seed + 1``), and ``count`` overrides the number of strings."""
    test = split == "test"
    seeds = {"train": d.seed, "test": d.seed + 1, "validation": d.seed + 2}
    return StringParams(
        count=count if count is not None else d.test_strings if test else d.train_strings,
        min_length=d.test_length if test else d.min_length,
        max_length=d.test_length if test else d.max_length,
        height=d.height,
        width=d.width,
        gap=(d.gap_min, d.gap_max),
        jitter=d.jitter,
        scale=(d.scale_min, d.scale_max),
        seed=seeds[split],
        split="test" if test else "train",  # validation digits are MNIST training digits
    )


def cached_strings(
    params: StringParams,
    images: Array,
    labels: Array,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    log: Log = print,
) -> DigitStrings:
    """The strings of ``params`` from the cache, or made from ``images`` and ``labels`` (the
    MNIST split ``params.split`` names) and cached."""
    path = string_cache_path(params, images, labels, cache_dir)
    if path.exists():
        try:
            strings = load_digit_strings(path)
            if strings.params == params:
                return strings
            log(f"digit strings: {path} holds other parameters; making them again")
        except DataError as e:
            log(f"digit strings: {e}; making them again")
    strings = make_digit_strings(images, labels, params)
    try:
        save_digit_strings(path, strings)
    except OSError as e:
        why = e.strerror if e.filename == str(path) else e  # the path once, not twice
        log(f"digit strings: could not write the cache {path}: {why}")
    return strings


def held_out_strings(params: StringParams, mnist: MnistData, *, log: Log = print) -> DigitStrings:
    """Strings of ``params`` made of the validation digits (the last 1/VALIDATION_SHARE of
    MNIST's training digits, which no training string uses), cached like the others."""
    n = _first_held_out(mnist)
    return cached_strings(params, mnist.x_train[n:], mnist.y_train[n:],
                          cache_dir=default_cache_path().parent, log=log)  # fmt: skip


def _first_held_out(mnist: MnistData) -> int:
    """Index of the first validation digit in MNIST's training digits."""
    return len(mnist.x_train) - len(mnist.x_train) // VALIDATION_SHARE


def load_dataset(cfg: Config, data_dir: str | None = None, *, log: Log = print) -> Dataset:
    """The training and test sets of ``cfg``'s ``[data]``."""
    mnist = fetch_mnist(data_dir, log=log)
    if cfg.data.name == "mnist":
        return Dataset(mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test, mnist.source)
    cache_dir = default_cache_path().parent
    n = _first_held_out(mnist)
    count = cfg.data.train_strings - cfg.train.validation
    train = cached_strings(string_params(cfg.data, "train", count), mnist.x_train[:n],
                           mnist.y_train[:n], cache_dir=cache_dir, log=log)  # fmt: skip
    x_train, y_train = train.images, train.labels
    if cfg.train.validation:  # held out by the trainer: the last strings of the training set
        held = held_out_strings(string_params(cfg.data, "validation", cfg.train.validation),
                                mnist, log=log)  # fmt: skip
        x_train = np.concatenate([x_train, held.images])  # (train_strings, H, W)
        y_train = np.concatenate([y_train, held.labels])  # (train_strings, max_length)
    test = cached_strings(string_params(cfg.data, "test"), mnist.x_test, mnist.y_test,
                          cache_dir=cache_dir, log=log)  # fmt: skip
    source = (f"{len(y_train)} training strings ({cfg.train.validation} of them held out, "
              f"made of other digits) and {len(test.labels)} test strings of MNIST digits "
              f"({mnist.source})")  # fmt: skip
    return Dataset(x_train, y_train, test.images, test.labels, source)
