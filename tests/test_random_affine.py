"""random_affine against scipy.ndimage.affine_transform, and its laws."""

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage
from test_cnn import LENET

from conftest import same_bits, synthetic_digits
from nn.augment import random_affine
from nn.config import Config
from nn.errors import DTypeError, ShapeError
from nn.train import train


def scipy_affine(images, slant, zoom, seed):
    """The definition through scipy: each image resampled at M (i, j) + c - M c."""
    draw = np.random.default_rng(seed)
    n, h, w = images.shape
    s, a = draw.uniform(-slant, slant, n), draw.uniform(1 - zoom, 1 + zoom, n)
    c = np.array([(h - 1) / 2, (w - 1) / 2])
    out = np.empty_like(images)
    for k in range(n):
        m = np.array([[1.0, 0.0], [-s[k], 1.0]]) / a[k]
        out[k] = ndimage.affine_transform(images[k], m, offset=c - m @ c, order=1,
                                          mode="grid-constant", cval=0.0)  # fmt: skip
    return out


@pytest.mark.spec("random_affine", 1)
@given(
    n=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 12),
    slant=st.floats(0, 1), zoom=st.floats(0, 0.5), seed=st.integers(0, 2**16),
)  # fmt: skip
def test_matches_scipy_with_the_documented_draws(n, h, w, slant, zoom, seed):
    images = np.random.default_rng(seed).random((n, h, w))
    out = random_affine(images, np.random.default_rng(seed), slant, zoom)
    assert out.shape == images.shape and out.dtype == images.dtype
    if slant == 0 and zoom == 0:  # no draws: the images themselves
        np.testing.assert_array_equal(out, images)
    else:
        np.testing.assert_allclose(out, scipy_affine(images, slant, zoom, seed), atol=1e-12)


def test_float32_matches_scipy_on_a_string_sized_batch():
    images = np.random.default_rng(1).random((4, 32, 144)).astype(np.float32)
    out = random_affine(images, np.random.default_rng(5), 0.3, 0.1)
    assert out.dtype == np.float32
    ref = scipy_affine(images.astype(np.float64), 0.3, 0.1, 5)
    np.testing.assert_allclose(out, ref, atol=1e-5)


@pytest.mark.spec("random_affine", 2)
@given(seed=st.integers(0, 2**16), slant=st.floats(0, 1), zoom=st.floats(0, 0.5))
def test_outputs_stay_in_the_inputs_range(seed, slant, zoom):
    images = np.random.default_rng(seed).normal(size=(3, 6, 8))
    out = random_affine(images, np.random.default_rng(seed), slant, zoom)
    for x, y in zip(images, out, strict=True):
        assert min(0.0, x.min()) - 1e-12 <= y.min() and y.max() <= max(0.0, x.max()) + 1e-12


@pytest.mark.spec("random_affine", 3)
def test_shear_fixes_the_centre_row():
    images = np.random.default_rng(2).random((5, 9, 11))
    out = random_affine(images, np.random.default_rng(3), 0.8, 0.0)
    np.testing.assert_allclose(out[:, 4], images[:, 4], atol=1e-12)
    assert not np.allclose(out[:, 0], images[:, 0])  # the other rows do move


@pytest.mark.spec("random_affine", 4)
def test_zero_is_a_copy_and_input_is_kept():
    images = np.random.default_rng(0).random((2, 4, 5)).astype(np.float32)
    kept = images.copy()
    out = random_affine(images, np.random.default_rng(0), 0.0, 0.0)
    assert out is not images and np.array_equal(out, images)
    random_affine(images, np.random.default_rng(0), 0.5, 0.2)
    np.testing.assert_array_equal(images, kept)


@pytest.mark.spec("random_affine", 5)
def test_bad_arguments_are_named():
    rng = np.random.default_rng(0)
    with pytest.raises(ShapeError, match=r"random_affine: images must be \(N, H, W\)"):
        random_affine(np.zeros((4, 4)), rng, 0.1, 0.1)
    with pytest.raises(DTypeError, match="random_affine: images must be float32 or float64"):
        random_affine(np.zeros((1, 4, 4), np.uint8), rng, 0.1, 0.1)
    for slant, zoom, name in ((-0.1, 0.0, "slant"), (1.5, 0.0, "slant"), (0.0, 0.6, "zoom"),
                              (True, 0.0, "slant"), (0.0, "0.1", "zoom")):  # fmt: skip
        with pytest.raises(ValueError, match=f"random_affine: {name} must be a number"):
            random_affine(np.zeros((1, 4, 4)), rng, slant, zoom)


@pytest.mark.spec("random_affine", 6)
def test_same_seed_same_images():
    images = np.random.default_rng(0).random((4, 8, 8)).astype(np.float32)
    a = random_affine(images, np.random.default_rng([7, 3, 2]), 0.3, 0.1)
    b = random_affine(images, np.random.default_rng([7, 3, 2]), 0.3, 0.1)
    c = random_affine(images, np.random.default_rng([7, 4, 2]), 0.3, 0.1)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_the_trainer_slants_and_zooms_and_resumes_bitwise(tmp_path):
    """[train] slant and zoom reach the batches (the weights differ from a run without them),
    and a run cut after an epoch and resumed draws the same slants: bitwise the same weights."""
    x, y = synthetic_digits(300, seed=4)
    base = {"model": {"layers": LENET}, "optimizer": {"name": "adam", "lr": 0.01}}
    run = {"epochs": 3, "batch_size": 50, "validation": 50, "slant": 0.3, "zoom": 0.1}
    cfg = Config.from_dict({**base, "train": run})
    plain = Config.from_dict({**base, "train": {**run, "slant": 0.0, "zoom": 0.0}})
    whole = train(cfg, x, y, run_dir=tmp_path / "whole")
    unslanted = train(plain, x, y, run_dir=tmp_path / "plain")
    assert not same_bits(whole.params["dense9.w"], unslanted.params["dense9.w"])
    train(cfg, x, y, run_dir=tmp_path / "cut", stop_after=1)
    resumed = train(cfg, x, y, run_dir=tmp_path / "cut", resume=True)
    for name in whole.params:
        assert same_bits(resumed.params[name], whole.params[name]), name


def test_the_config_refuses_what_the_op_would():
    """[train] slant and zoom are checked when the config is read, against the op's own
    limits, so a bad value stops before any training instead of at the first batch."""
    from nn.errors import DataError

    for key, value, limit in (("slant", 1.5, "[0, 1.0]"), ("slant", float("nan"), "[0, 1.0]"),
                              ("zoom", 0.7, "[0, 0.5]"), ("zoom", -0.1, "[0, 0.5]")):  # fmt: skip
        with pytest.raises(
            DataError, match=rf"\[train\] {key} must be a number in {re.escape(limit)}"
        ):
            Config.from_dict({"train": {key: value}})
