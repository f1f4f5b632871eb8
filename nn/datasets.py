"""The data a config trains on: MNIST's digits, or strings made of them.

``[data] name = "mnist"`` is the 60000 + 10000 digits of :func:`nn.data.fetch_mnist`.
``"digit_strings"`` is images of whole numbers (:mod:`nn.digit_strings`): the training
strings are made only of MNIST's training digits and the test strings only of its test
digits, so no test digit was ever seen in training, as for single digits. Strings are made
once per set of generator parameters and cached beside MNIST (npz with checksums); a cached
file that fails its checks is made again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from nn.config import Config, DataConfig
from nn.data import default_cache_path, fetch_mnist
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


@dataclass(frozen=True)
class Dataset:
    x_train: Array  # uint8 (N, H, W)
    y_train: Array  # digits (N,) or strings (N, L) padded with -1
    x_test: Array
    y_test: Array
    source: str


def string_params(d: DataConfig, split: str) -> StringParams:
    """The generator's parameters for a config's training or test strings. The test strings
    all have ``test_length`` digits and their own seed, ``seed + 1``."""
    train = split == "train"
    return StringParams(
        count=d.train_strings if train else d.test_strings,
        min_length=d.min_length if train else d.test_length,
        max_length=d.max_length if train else d.test_length,
        height=d.height,
        width=d.width,
        gap=(d.gap_min, d.gap_max),
        jitter=d.jitter,
        scale=(d.scale_min, d.scale_max),
        seed=d.seed if train else d.seed + 1,
        split="train" if train else "test",
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
    path = string_cache_path(params, cache_dir)
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
        log(f"digit strings: could not write the cache {path}: {e}")
    return strings


def load_dataset(cfg: Config, data_dir: str | None = None, *, log: Log = print) -> Dataset:
    """The training and test sets of ``cfg``'s ``[data]``."""
    mnist = fetch_mnist(data_dir, log=log)
    if cfg.data.name == "mnist":
        return Dataset(mnist.x_train, mnist.y_train, mnist.x_test, mnist.y_test, mnist.source)
    cache_dir = default_cache_path().parent
    train = cached_strings(string_params(cfg.data, "train"), mnist.x_train, mnist.y_train,
                           cache_dir=cache_dir, log=log)  # fmt: skip
    test = cached_strings(string_params(cfg.data, "test"), mnist.x_test, mnist.y_test,
                          cache_dir=cache_dir, log=log)  # fmt: skip
    source = (f"{len(train.labels)} training and {len(test.labels)} test strings of MNIST "
              f"digits ({mnist.source})")  # fmt: skip
    return Dataset(train.images, train.labels, test.images, test.labels, source)
