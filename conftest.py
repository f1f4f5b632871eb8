"""Shared test settings: Hypothesis profiles and NumPy floating-point errors as failures.

One conftest at the top, for tests/, the spec pages' and the docs' doctests alike.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# Sphinx's configuration and output are not tests.
collect_ignore = ["docs/_build", "docs/conf.py"]

# CI=true selects a derandomized profile, so a red run on CI is reproducible. Registered here
# rather than relying on Hypothesis' built-in "ci" profile, which older versions lack.
settings.register_profile("ci", derandomize=True, deadline=None, database=None, max_examples=100)
settings.register_profile("dev", deadline=None, max_examples=60)
settings.load_profile("ci" if os.environ.get("CI", "").lower() in {"1", "true", "yes"} else "dev")


@pytest.fixture(autouse=True)
def _floating_point_errors_raise():
    """Overflow, division by zero and invalid operations fail the test where they happen."""
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        yield


def synthetic_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, 28, 28) and labels (n,): ten fixed blob templates plus noise.

    Learnable in a few epochs by a small MLP, so trainer tests run offline in seconds.
    """
    rng = np.random.default_rng([seed, 0xD161])
    templates = np.zeros((10, 28, 28))
    for k in range(10):
        cy, cx = 6 + 16 * (k // 5) / 1, 4 + 5 * (k % 5)
        yy, xx = np.mgrid[:28, :28]
        templates[k] = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0)
    labels = rng.integers(0, 10, n)
    noisy = templates[labels] * 200 + rng.uniform(0, 55, (n, 28, 28))
    return noisy.astype(np.uint8), labels.astype(np.uint8)


@pytest.fixture
def tiny_mnist():
    """A stand-in for nn.data.MnistData: 600 training and 200 test synthetic digits."""
    from nn.data import MnistData

    x_train, y_train = synthetic_digits(600, seed=1)
    x_test, y_test = synthetic_digits(200, seed=2)
    return MnistData(x_train, y_train, x_test, y_test, "synthetic test digits", None)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays are equal bit for bit (NaN payloads and -0.0 included).

    A plain ``assert a.tobytes() == b.tobytes()`` makes pytest diff the two byte strings
    when they differ, which on CI (CI=true: full diffs) takes minutes for a model's weights.
    """
    return bool(a.tobytes() == b.tobytes())


MNIST_SAMPLE = Path(__file__).parent / "tests" / "data" / "mnist_train_1200.npz"
MNIST_SAMPLE_PINS = {  # SHA-256 of the C-contiguous uint8 arrays, as nn.data pins MNIST
    "x": "1b757005db0da73680bd03b0f2af52f0edc4c202b604be0c6805cba15243b58e",
    "y": "ffedbf4a7a7aa0fb01fbe911fe57b56b1bc4d01b7164c3600824c1016483579b",
}


def mnist_sample(n: int = 1200) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` <= 1200 real MNIST training images (uint8 (n, 28, 28)) and labels
    (tests/data/README.md): real digits for the failures synthetic blobs cannot reproduce,
    such as a learning rate of 10 driving the default MLP to inf."""
    with np.load(MNIST_SAMPLE, allow_pickle=False) as f:
        arrays = {k: np.ascontiguousarray(f[k]) for k in ("x", "y")}
    for k, pin in MNIST_SAMPLE_PINS.items():
        assert hashlib.sha256(arrays[k].tobytes()).hexdigest() == pin, f"{MNIST_SAMPLE}: {k}"
    return arrays["x"][:n], arrays["y"][:n]
