"""Digit strings (spec/digit_strings.md): the documented stream replayed, layout laws, files."""

import io
import json
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nn.data
from conftest import mnist_sample, same_bits
from nn.atomic import sha256_array
from nn.digit_layout import layout, resample
from nn.digit_strings import (
    DigitStrings,
    StringParams,
    load_digit_strings,
    make_digit_strings,
    save_digit_strings,
    string_cache_path,
)
from nn.errors import DataError, DTypeError, ShapeError

X, Y = mnist_sample(300)
ARRAYS = ("images", "labels", "sources", "positions", "tops")


def replay(params, m):
    """The page's stream, drawn again: lengths, digits, gaps, jitter, scales, offsets."""
    rng = np.random.default_rng(params.seed)
    n, big_l = params.count, params.max_length
    return SimpleNamespace(
        lengths=rng.integers(params.min_length, big_l + 1, size=n),
        chosen=rng.integers(0, m, size=(n, big_l)),
        gaps=rng.integers(params.gap[0], params.gap[1] + 1, size=(n, big_l - 1)),
        jitter=rng.integers(-params.jitter, params.jitter + 1, size=(n, big_l)),
        scales=rng.uniform(params.scale[0], params.scale[1], size=(n, big_l)),
        where=rng.random(n),
    )


def side_of(scale):
    return int(np.floor(28 * scale + 0.5))


def placed_digit(x, source, scale):
    """The digit as placed: scaled if its side is not 28, cropped to its ink columns."""
    side = side_of(scale)
    digit = x[source] if side == 28 else resample(x[source], side)
    columns = [c for c in range(digit.shape[1]) if digit[:, c].max() > 0]
    return digit[:, columns[0] : columns[-1] + 1] if columns else digit[:, :0]


def render(s, x, draws):
    """The definition: each placed digit at (tops, positions), combined by maximum."""
    p = s.params
    out = np.zeros((p.count, p.height, p.width), np.uint8)
    for i in range(p.count):
        for j in range(s.lengths[i]):
            crop = placed_digit(x, s.sources[i, j], draws.scales[i, j])
            top, left = s.tops[i, j], s.positions[i, j]
            assert 0 <= top and top + crop.shape[0] <= p.height, (i, j, "rows")
            assert 0 <= left and left + crop.shape[1] <= p.width, (i, j, "columns")
            for a in range(crop.shape[0]):
                for b in range(crop.shape[1]):
                    out[i, top + a, left + b] = max(out[i, top + a, left + b], crop[a, b])
    return out


def measured_gaps(s, x, draws, i):
    """Columns between consecutive ink boxes of string i, and the boxes' widths."""
    widths = [
        placed_digit(x, s.sources[i, j], draws.scales[i, j]).shape[1] for j in range(s.lengths[i])
    ]
    pos = s.positions[i, : s.lengths[i]]
    return [int(pos[j + 1] - pos[j] - widths[j]) for j in range(len(widths) - 1)], widths


@pytest.mark.spec("digit_strings", 1)
def test_same_params_same_bits_other_seed_differs():
    p = StringParams(40, scale=(0.8, 1.1))
    a, b = make_digit_strings(X, Y, p), make_digit_strings(X, Y, p)
    c = make_digit_strings(X, Y, StringParams(40, scale=(0.8, 1.1), seed=1))
    for name in ARRAYS:
        assert same_bits(getattr(a, name), getattr(b, name)), name
    assert not same_bits(a.images, c.images) and not same_bits(a.labels, c.labels)


@pytest.mark.spec("digit_strings", 2)
def test_draws_follow_the_documented_stream():
    p = StringParams(400, 2, 6, height=36, jitter=3, seed=5)
    s, d = make_digit_strings(X, Y, p), replay(p, len(X))
    np.testing.assert_array_equal(s.lengths, d.lengths)
    assert set(s.lengths.tolist()) == {2, 3, 4, 5, 6}  # every length occurs, no other
    used = np.arange(6) < d.lengths[:, None]
    np.testing.assert_array_equal(s.sources, np.where(used, d.chosen, -1))
    np.testing.assert_array_equal(s.tops, np.where(used, (36 - 28) // 2 + d.jitter, -1))


@pytest.mark.spec("digit_strings", 3)
def test_labels_are_the_labels_of_the_sources():
    for split, seed in (("train", 0), ("test", 3)):
        s = make_digit_strings(X, Y, StringParams(300, 0, 7, split=split, seed=seed))
        used = s.sources >= 0
        assert s.labels.dtype == np.int64 and s.sources.dtype == np.int64
        np.testing.assert_array_equal(s.labels[used], Y[s.sources[used]])
        np.testing.assert_array_equal(s.labels >= 0, used)
        assert (s.sources < len(X)).all() and (s.lengths == used.sum(axis=1)).all()
        assert (s.lengths == 0).any()  # min_length 0: empty strings, all -1, blank images
        assert not s.images[s.lengths == 0].any()


@pytest.mark.spec("digit_strings", 4)
@pytest.mark.parametrize("scale", [(1.0, 1.0), (0.7, 1.2)])
def test_image_is_the_maximum_of_the_placed_digits(scale):
    p = StringParams(30, 3, 7, height=36, width=160, gap=(-6, 3), jitter=4, scale=scale, seed=2)
    s = make_digit_strings(X, Y, p)
    assert same_bits(s.images, render(s, X, replay(p, len(X))))
    assert (s.images.reshape(30, -1).max(axis=1) > 0).all()


@pytest.mark.spec("digit_strings", 5)
def test_gaps_between_ink_boxes_are_the_drawn_gaps():
    p = StringParams(300, 7, 7, gap=(-3, 5), seed=4)
    s, d = make_digit_strings(X, Y, p), replay(p, len(X))
    exact = 0
    for i in range(p.count):
        gaps, widths = measured_gaps(s, X, d, i)
        drawn = [max(int(g), 1 - w) for g, w in zip(d.gaps[i], widths, strict=False)]
        lefts = np.concatenate([[0], np.cumsum(np.add(widths[:-1], drawn))])
        if (lefts + widths).max() <= p.width:  # fits as drawn: the gaps are the drawn ones
            assert gaps == drawn, i
            offset = int(np.floor(d.where[i] * (p.width - (lefts + widths).max() + 1)))
            assert s.positions[i, 0] == offset
            exact += 1
    assert exact >= 290  # at these parameters almost every 7-digit string fits as drawn


@pytest.mark.spec("digit_strings", 6)
def test_too_wide_strings_shrink_their_largest_gaps_to_fit_exactly():
    p = StringParams(200, 3, 5, width=60, gap=(0, 12), seed=6)  # mostly too wide: must shrink
    s, d = make_digit_strings(X, Y, p), replay(p, len(X))
    shrunk = 0
    for i in range(p.count):
        gaps, widths = measured_gaps(s, X, d, i)
        floors = [1 - w for w in widths[:-1]]
        drawn = [max(int(g), f) for g, f in zip(d.gaps[i], floors, strict=False)]
        assert all(f <= g <= h for f, g, h in zip(floors, gaps, drawn, strict=True)), i
        if gaps != drawn:
            shrunk += 1
            right = max(s.positions[i, j] + widths[j] for j in range(len(widths)))
            assert s.positions[i, 0] == 0 and right == p.width, i  # fills the canvas exactly
            for j, (g, h) in enumerate(zip(gaps, drawn, strict=True)):
                if g < h:  # reduced: no other gap left more than 1 larger, unless at its floor
                    assert all(k <= g + 1 or k == f for k, f in zip(gaps, floors, strict=True)), (
                        i,
                        j,
                    )
    assert shrunk >= 100
    # By hand: ties go to the first largest gap; gaps below the floor 1 - w are raised first.
    assert layout([10, 10, 10], [2, 2], 31) == [0, 10, 21]  # [2, 2] -> [1, 2] -> [1, 1] -> [0, 1]
    assert layout([10, 3, 10], [4, 1], 24) == [0, 10, 14]  # 28 -> 24: [4, 1] ... [1, 1] -> [0, 1]
    s = make_digit_strings(X, Y, StringParams(50, 2, 4, gap=(-30, -30)))
    np.testing.assert_array_equal(np.diff(s.positions, axis=1)[s.labels[:, 1:] >= 0], 1)


@pytest.mark.spec("digit_strings", 7)
@pytest.mark.parametrize("side", [1, 5, 17, 22, 27, 28, 29, 34, 56])
def test_scaling_is_bilinear_rounded_half_up(side):
    digit = X[7]
    out = resample(digit, side)
    assert out.shape == (side, side) and out.dtype == np.uint8
    expected = np.zeros((side, side), np.uint8)
    c = [min(max((p + 0.5) * 28 / side - 0.5, 0.0), 27.0) for p in range(side)]
    for a in range(side):
        for b in range(side):
            i0, j0 = int(np.floor(c[a])), int(np.floor(c[b]))
            i1, j1, fi, fj = min(i0 + 1, 27), min(j0 + 1, 27), c[a] - i0, c[b] - j0
            v = (1 - fi) * ((1 - fj) * float(digit[i0, j0]) + fj * float(digit[i0, j1]))
            v += fi * ((1 - fj) * float(digit[i1, j0]) + fj * float(digit[i1, j1]))
            expected[a, b] = int(np.floor(v + 0.5))
    assert np.abs(out.astype(int) - expected).max() <= 1  # 1: summation order, at exact halves
    assert np.mean(out == expected) > 0.99
    if side == 28:
        assert same_bits(out, digit)  # side 28 is the identity
    full = resample(np.full((28, 28), 255, np.uint8), side)
    assert (full == 255).all()  # convex weights: no overflow past 255


@pytest.mark.spec("digit_strings", 8)
def test_strings_of_a_split_use_only_that_split(monkeypatch):
    s = make_digit_strings(X[:50], Y[:50], StringParams(100, split="test"))
    assert s.params.split == "test" and s.sources.max() < 50
    assert StringParams.from_dict(s.params.to_dict()).split == "test"
    with pytest.raises(
        ShapeError, match=r"labels must be \(50,\), one per image; received \(49,\)"
    ):
        make_digit_strings(X[:50], Y[:49], StringParams(1))
    # The sample stands in for MNIST's training split: test strings from it are refused.
    pins = dict(nn.data.MNIST_SHA256, train_images=sha256_array(X))
    monkeypatch.setattr(nn.data, "MNIST_SHA256", pins)
    make_digit_strings(X, Y, StringParams(2, split="train"))
    with pytest.raises(DataError, match=r"images are MNIST's train digits, but params\.split is"):
        make_digit_strings(X, Y, StringParams(2, split="test"))


@pytest.mark.spec("digit_strings", 9)
@given(
    count=st.integers(0, 4), lengths=st.tuples(st.integers(0, 4), st.integers(1, 4)),
    extra=st.tuples(st.integers(0, 6), st.integers(0, 40)),
    gap=st.tuples(st.integers(-8, 8), st.integers(0, 8)), jitter=st.integers(0, 5),
    scale=st.tuples(st.floats(0.3, 1.0), st.floats(1.0, 1.3)), seed=st.integers(0, 2**32),
)  # fmt: skip
def test_shape_laws_for_small_params(count, lengths, extra, gap, jitter, scale, seed):
    lo, hi = min(lengths), max(lengths[1], 1)
    side = side_of(scale[1])
    p = StringParams(
        count, lo, hi, height=side + extra[0], width=hi - 1 + side + extra[1],
        gap=(min(gap), max(gap)), jitter=jitter, scale=scale, seed=seed,
    )  # fmt: skip
    s = make_digit_strings(X[:20], Y[:20], p)
    assert s.images.shape == (count, p.height, p.width) and s.images.dtype == np.uint8
    for name in ARRAYS[1:]:
        a = getattr(s, name)
        assert a.shape == (count, hi) and a.dtype == np.int64
        np.testing.assert_array_equal(a == -1, s.labels == -1)
    assert ((s.lengths >= lo) & (s.lengths <= hi)).all()
    assert (np.diff(s.positions, axis=1)[s.labels[:, 1:] >= 0] >= 1).all()
    assert same_bits(s.images, render(s, X[:20], replay(p, 20)))


@pytest.mark.spec("digit_strings", 10)
def test_save_load_round_trip_is_bitwise(tmp_path):
    s = make_digit_strings(X, Y, StringParams(25, 0, 5, gap=(-4, 2), scale=(0.9, 1.1), seed=9))
    save_digit_strings(tmp_path / "s.npz", s)
    r = load_digit_strings(tmp_path / "s.npz")
    assert r.params == s.params and isinstance(r, DigitStrings)
    for name in ARRAYS:
        a, b = getattr(r, name), getattr(s, name)
        assert a.dtype == b.dtype and a.shape == b.shape and same_bits(a, b), name
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]  # no temporary left behind


def small_file(tmp_path):
    path = tmp_path / "small.npz"
    save_digit_strings(path, make_digit_strings(X, Y, StringParams(3, 1, 3, height=28, width=40)))
    return path


def rewrite(path, **members):
    """The npz at ``path`` with members replaced (bytes) or removed (None)."""
    with zipfile.ZipFile(path) as z:
        old = {name: z.read(name) for name in z.namelist()}
    for name, data in members.items():
        old.pop(f"{name}.npy", None) if data is None else old.__setitem__(f"{name}.npy", data)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in old.items():
            z.writestr(name, data)


def npy(array):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    return buffer.getvalue()


@pytest.mark.spec("digit_strings", 11)
def test_every_damaged_file_is_a_data_error(tmp_path):
    path = small_file(tmp_path)
    good, original = path.read_bytes(), load_digit_strings(path)
    for cut in [0, 1, 10, *range(30, len(good), 97), len(good) - 1]:
        path.write_bytes(good[:cut])
        with pytest.raises(DataError, match=r"small\.npz"):
            load_digit_strings(path)
    silent = 0
    for at in range(0, len(good), 3):  # flip one byte: an error naming the file, or the same data
        path.write_bytes(good[:at] + bytes([good[at] ^ 0x5A]) + good[at + 1 :])
        try:
            loaded = load_digit_strings(path)
        except DataError as error:
            assert "small.npz" in str(error)
            continue
        silent += 1
        assert all(same_bits(getattr(loaded, n), getattr(original, n)) for n in ARRAYS), at
    assert silent < len(good) // 3 // 4  # only bytes no reader looks at (zip times, attributes)
    with pytest.raises(DataError, match=r"missing\.npz: cannot be read"):
        load_digit_strings(tmp_path / "missing.npz")


@pytest.mark.spec("digit_strings", 11)
def test_wrong_checksum_missing_member_and_pickle_are_data_errors(tmp_path):
    path = small_file(tmp_path)
    good = path.read_bytes()
    original = load_digit_strings(path)
    changed = original.images.copy()
    changed[0, 5, 5] ^= 1  # a valid npy with other content: only the SHA-256 can tell
    rewrite(path, images=npy(changed))
    with pytest.raises(DataError, match="array 'images': SHA-256 mismatch"):
        load_digit_strings(path)
    with zipfile.ZipFile(io.BytesIO(good)) as z:
        record = json.loads(str(np.lib.format.read_array(z.open("record.npy"))))
    cases = [
        ({"tops": None}, "missing member.s. tops.npy"),
        ({"tops": npy(np.array([{"a": 1}], dtype=object))}, "'tops.npy': Object arrays cannot"),
        ({"extra": npy(np.zeros(1))}, "unexpected member.s. extra.npy"),
        ({"tops": npy(original.tops) + b"junk"}, "'tops.npy': data after the array"),
        ({"record": npy(np.array("{"))}, "'record' is not valid JSON"),
        ({"record": npy(np.array(json.dumps(record | {"format": "x"})))}, "not a digit-strings"),
        ({"record": npy(np.array(json.dumps(record | {"params": {"count": 4}})))}, "must be uint8"),
    ]
    sums = record["sha256"] | {"labels": "0" * 64}
    cases.append(({"record": npy(np.array(json.dumps(record | {"sha256": sums})))}, "'labels'"))
    for members, message in cases:
        path.write_bytes(good)
        rewrite(path, **members)
        with pytest.raises(DataError, match=f"small.npz: .*{message}"):
            load_digit_strings(path)


@pytest.mark.spec("digit_strings", 12)
def test_bad_params_and_arguments_are_named():
    for fields, message in [
        ({"count": -1}, "count must be an integer >= 0, received -1"),
        ({"count": 1.0}, "count must be an integer"),
        ({"count": True}, "count must be an integer"),
        ({"count": 1, "gap": (3, 1)}, "gap must be two integers"),
        ({"count": 1, "gap": "ab"}, "gap must be two integers"),
        ({"count": 1, "scale": (1, float("nan"))}, "scale must be two finite numbers"),
        ({"count": 1, "split": "valid"}, "split must be 'train' or 'test'"),
        ({"count": 1, "min_length": 3, "max_length": 2}, "max_length must be >= max"),
        ({"count": 1, "height": 27}, "height must be >= 28"),
        ({"count": 1, "scale": (1, 1.2), "height": 32}, "height must be >= 34"),
        ({"count": 1, "width": 33}, "width must be >= max_length - 1 . 28 = 34"),
        ({"count": 1, "seed": -1}, "seed must be an integer >= 0"),
        ({"count": 1, "scale": (0.01, 1)}, "scale must be >= 1/56"),
        ({"count": 1, "scale": (1, 1e300)}, "height must be >= 28000000"),
    ]:
        with pytest.raises(DataError, match=f"StringParams: .*{message}"):
            StringParams.from_dict(fields)
    with pytest.raises(DataError, match=r"unknown field\(s\) \['colour'\]"):
        StringParams.from_dict({"count": 1, "colour": 3})
    with pytest.raises(DataError, match="'count' is required"):
        StringParams.from_dict({})
    p = StringParams(3, gap=[-1, 2], scale=(1, 1))  # type: ignore[arg-type]
    assert p.gap == (-1, 2) and p.scale == (1.0, 1.0) and isinstance(p.scale[0], float)
    assert StringParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(ShapeError, match=r"images must be \(M, 28, 28\), received \(3, 28\)"):
        make_digit_strings(np.zeros((3, 28), np.uint8), Y[:3], p)
    with pytest.raises(DTypeError, match="images must be uint8, received float32"):
        make_digit_strings(X[:3].astype(np.float32), Y[:3], p)
    with pytest.raises(DataError, match=r"labels must be integers 0\.\.9"):
        make_digit_strings(X[:3], np.array([1, 2, 10]), p)


@pytest.mark.spec("digit_strings", 13)
def test_cache_path_is_keyed_by_params_and_digits(tmp_path):
    p, x, y = StringParams(10), X[:50], Y[:50]
    path = string_cache_path(p, x, y, tmp_path)
    assert path.parent == tmp_path and path.name.startswith("digit-strings-")
    assert path == string_cache_path(StringParams.from_dict(p.to_dict()), x.copy(), y, tmp_path)
    others = [StringParams(10, seed=1), StringParams(11), StringParams(10, split="test")]
    paths = {path, *(string_cache_path(o, x, y, tmp_path) for o in others)}
    paths |= {
        string_cache_path(p, X[:49], Y[:49], tmp_path),
        string_cache_path(p, x, 9 - y, tmp_path),
    }
    assert len(paths) == 6  # other params, other images or other labels: another file
