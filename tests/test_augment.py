"""random_shift against an explicit loop, and its laws."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import same_bits
from nn.augment import random_shift
from nn.errors import ShapeError


def shift_by_loop(images, dy, dx):
    """The definition, one pixel at a time: out[n, i, j] = images[n, i - dy, j - dx]."""
    n, h, w = images.shape
    out = np.zeros_like(images)
    for k in range(n):
        for i in range(h):
            for j in range(w):
                si, sj = i - dy[k], j - dx[k]
                if 0 <= si < h and 0 <= sj < w:
                    out[k, i, j] = images[k, si, sj]
    return out


@pytest.mark.spec("random_shift", 1)
@given(
    n=st.integers(1, 4), h=st.integers(1, 7), w=st.integers(1, 7), s=st.integers(0, 3),
    seed=st.integers(0, 2**16),
)  # fmt: skip
def test_matches_the_loop_with_the_documented_offsets(n, h, w, s, seed):
    images = np.random.default_rng(seed).integers(0, 256, (n, h, w)).astype(np.uint8)
    out = random_shift(images, np.random.default_rng(seed), s)
    draw = np.random.default_rng(seed)
    dy = draw.integers(0, 2 * s + 1, n) - s if s else np.zeros(n, int)
    dx = draw.integers(0, 2 * s + 1, n) - s if s else np.zeros(n, int)
    assert out.shape == images.shape and out.dtype == images.dtype
    np.testing.assert_array_equal(out, shift_by_loop(images, dy, dx))


@pytest.mark.spec("random_shift", 2)
def test_every_offset_in_range_occurs_and_no_other():
    image = np.zeros((1, 9, 9), np.float32)
    image[0, 4, 4] = 1  # a single pixel shows the offset
    seen = set()
    rng = np.random.default_rng(1)
    for _ in range(400):
        out = random_shift(image, rng, 2)[0]
        (i,), (j,) = np.nonzero(out)
        seen.add((int(i) - 4, int(j) - 4))
    assert seen == {(a, b) for a in range(-2, 3) for b in range(-2, 3)}


@pytest.mark.spec("random_shift", 3)
def test_does_not_modify_its_input():
    images = np.arange(2 * 5 * 5, dtype=np.float32).reshape(2, 5, 5)
    before = images.copy()
    random_shift(images, np.random.default_rng(0), 2)
    np.testing.assert_array_equal(images, before)


@pytest.mark.spec("random_shift", 4)
def test_bad_arguments_are_named():
    with pytest.raises(ShapeError, match=r"images must be \(N, H, W\), received shape \(4, 4\)"):
        random_shift(np.zeros((4, 4)), np.random.default_rng(0), 1)
    with pytest.raises(ValueError, match="max_shift must be an integer >= 0, received -1"):
        random_shift(np.zeros((1, 4, 4)), np.random.default_rng(0), -1)


@pytest.mark.spec("random_shift", 5)
@given(seed=st.integers(0, 2**16), s=st.integers(1, 3))
def test_ink_inside_the_margin_is_moved_whole(seed, s):
    rng = np.random.default_rng(seed)
    images = np.zeros((3, 12, 12), np.float32)
    images[:, s : 12 - s, s : 12 - s] = rng.integers(0, 256, (3, 12 - 2 * s, 12 - 2 * s))
    out = random_shift(images, np.random.default_rng(seed), s)
    draw = np.random.default_rng(seed)
    dy, dx = draw.integers(0, 2 * s + 1, 3) - s, draw.integers(0, 2 * s + 1, 3) - s
    rows = np.arange(12)[:, None]
    cols = np.arange(12)[None, :]
    for k in range(3):
        np.testing.assert_array_equal(np.sort(out[k].ravel()), np.sort(images[k].ravel()))
        mass = images[k].sum()
        if mass:
            moved_y = (out[k] * rows).sum() / mass - (images[k] * rows).sum() / mass
            moved_x = (out[k] * cols).sum() / mass - (images[k] * cols).sum() / mass
            assert (round(moved_y, 6), round(moved_x, 6)) == (dy[k], dx[k])


@pytest.mark.spec("random_shift", 6)
def test_same_seed_same_shifts():
    images = np.random.default_rng(0).random((20, 8, 8)).astype(np.float32)
    a = random_shift(images, np.random.default_rng([7, 3, 2]), 2)
    b = random_shift(images, np.random.default_rng([7, 3, 2]), 2)
    c = random_shift(images, np.random.default_rng([7, 4, 2]), 2)
    assert same_bits(a, b) and a.tobytes() != c.tobytes()
