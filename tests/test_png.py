"""nn.png: decoding against a hand-written encoder and exact rational gray levels, and every error.

The reference encoder below is written from the PNG specification independently of nn.png: it
packs samples bit by bit, applies the five filters forward (its Paeth predictor breaks ties by
an explicit (distance, a < b < c) order) and splits the zlib stream over several IDAT chunks.
Expected gray levels are exact fractions; the decoder must return a nearest integer.
"""

from __future__ import annotations

import base64
import itertools
import struct
import zlib
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nn.errors import DataError, DTypeError, ShapeError
from nn.png import MAX_PIXELS, decode_png, encode_png, read_png, write_png

CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
LEGAL = [(0, 1), (0, 2), (0, 4), (0, 8), (0, 16), (2, 8), (2, 16), (3, 1), (3, 2), (3, 4)]
LEGAL += [(3, 8), (4, 8), (4, 16), (6, 8), (6, 16)]


# ---- the reference encoder -------------------------------------------------------------------
def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def pack_row(row, depth):
    """One row of samples (W, C) as bytes, big-endian, sub-byte samples leftmost in high bits."""
    bits = "".join(format(int(s), f"0{depth}b") for pixel in row for s in pixel)
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))


def paeth_ref(a, b, c):
    p = a + b - c
    return min((abs(p - a), 0, a), (abs(p - b), 1, b), (abs(p - c), 2, c))[2]


def filter_row(kind, line, prev, bpp):
    out = []
    for i, x in enumerate(line):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        predictor = [0, a, b, (a + b) // 2, paeth_ref(a, b, c)][kind]
        out.append((x - predictor) % 256)
    return bytes([kind, *out])


def make_png(samples, depth, colour, filters, *, plte=b"", trns=b"", pieces=1, interlace=0):
    """A PNG of integer ``samples`` (H, W, C) with filter ``filters[y]`` on row y."""
    height, width, channels = samples.shape
    bpp = max(1, channels * depth // 8)
    rows = [pack_row(samples[y], depth) for y in range(height)]
    prev = bytes(len(rows[0]))
    stream = b""
    for kind, row in zip(filters, rows, strict=True):
        stream += filter_row(kind, row, prev, bpp)
        prev = row
    data = zlib.compress(stream)
    cuts = [len(data) * i // pieces for i in range(pieces + 1)]
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
    out += (chunk(b"PLTE", plte) if plte else b"") + (chunk(b"tRNS", trns) if trns else b"")
    out += b"".join(chunk(b"IDAT", data[i:j]) for i, j in itertools.pairwise(cuts))
    return out + chunk(b"IEND", b"")


def exact_gray(samples, depth, colour, plte=b"", trns=b""):
    """Y = 255 (A / Amax) (0.299 R + 0.587 G + 0.114 B) / Smax per pixel, as exact fractions."""
    smax, out = 2**depth - 1, {}
    for (y, x), _ in np.ndenumerate(samples[..., 0]):
        s = [int(v) for v in samples[y, x]]
        alpha = Fraction(1)
        if colour == 3:
            rgb, scale = list(plte[3 * s[0] : 3 * s[0] + 3]), 255
            alpha = Fraction(trns[s[0]], 255) if s[0] < len(trns) else Fraction(1)
        else:
            rgb, scale = (s[:3] if colour in (2, 6) else s[:1] * 3), smax
            if colour in (4, 6):
                alpha = Fraction(s[-1], smax)
            elif trns and s == list(struct.unpack(f">{len(trns) // 2}H", trns)):
                alpha = Fraction(0)
        luma = Fraction(299 * rgb[0] + 587 * rgb[1] + 114 * rgb[2], 1000)
        out[y, x] = 255 * alpha * luma / scale
    return out


def assert_nearest(decoded, exact):
    assert decoded.dtype == np.uint8
    for (y, x), value in exact.items():
        assert abs(int(decoded[y, x]) - value) <= Fraction(1, 2), (
            y,
            x,
            decoded[y, x],
            float(value),
        )


# ---- decoding ----------------------------------------------------------------------------------
@st.composite
def png_cases(draw):
    colour, depth = draw(st.sampled_from(LEGAL))
    height, width = draw(st.integers(1, 5)), draw(st.integers(1, 9))
    top = 2**depth - 1
    plte, trns = b"", b""
    if colour == 3:
        entries = draw(st.integers(1, 2**depth))
        plte = bytes(
            draw(st.lists(st.integers(0, 255), min_size=3 * entries, max_size=3 * entries))
        )
        trns = bytes(draw(st.lists(st.integers(0, 255), max_size=entries)))
        top = entries - 1
    # Few distinct values make equal neighbours, so the Paeth predictor's ties occur often.
    values = st.one_of(st.integers(0, top), st.sampled_from([0, top // 3, top]))
    samples = draw(arrays(np.int64, (height, width, CHANNELS[colour]), elements=values))
    if colour in (0, 2) and draw(st.booleans()):  # a tRNS key: one colour becomes transparent
        key = samples[draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))]
        trns = struct.pack(f">{len(key)}H", *key)
    filters = draw(st.lists(st.integers(0, 4), min_size=height, max_size=height))
    return samples, depth, colour, filters, plte, trns, draw(st.integers(1, 4))


@given(png_cases())
def test_every_colour_type_depth_filter_and_idat_split(case):
    """Random images of each legal colour type and depth, random per-row filters, 1-4 IDATs."""
    samples, depth, colour, filters, plte, trns, pieces = case
    png = make_png(samples, depth, colour, filters, plte=plte, trns=trns, pieces=pieces)
    decoded = decode_png(png)
    assert decoded.shape == samples.shape[:2]
    assert_nearest(decoded, exact_gray(samples, depth, colour, plte, trns))


@pytest.mark.parametrize("kind", [0, 1, 2, 3, 4])
@pytest.mark.parametrize(("colour", "depth"), [(0, 8), (2, 8), (6, 16), (0, 2)])
def test_each_filter_type_on_every_row(kind, colour, depth):
    """One filter on all rows; RGBA 16-bit has 8 bytes per pixel, gray 2-bit packs 4 per byte.

    The zlib stream is split over three IDAT chunks."""
    rng = np.random.default_rng(kind)
    samples = rng.integers(0, 2**depth, size=(6, 7, CHANNELS[colour]))
    decoded = decode_png(make_png(samples, depth, colour, [kind] * 6, pieces=3))
    assert_nearest(decoded, exact_gray(samples, depth, colour))


@pytest.mark.parametrize(("above", "row"), [([5, 6], [3, 7]), ([5, 3], [6, 7])])
def test_paeth_ties_prefer_left_then_up(above, row):
    """Pixel (1, 1) with Paeth: a=3, b=6, c=5 gives p=4, |p-a| = |p-c| = 1 < |p-b|: a, not c;
    a=6, b=3, c=5 gives |p-b| = |p-c| = 1 < |p-a|: b, not c. (a and b tie only when a == b.)"""
    samples = np.array([above, row]).reshape(2, 2, 1)
    np.testing.assert_array_equal(decode_png(make_png(samples, 8, 0, [0, 4])), samples[..., 0])


# An RGBA PNG written by Pillow 13.0 (its adaptive filters chose 1, 2, 2, 0, 4), with Pillow's
# decoded RGBA samples: a reference from an encoder that shares no code with this file.
PILLOW_RGBA = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAYAAAAFCAYAAABmWJ3mAAAAiElEQVR4nAF9AIL/Ac8VLTxfuLFZ3Et32ZVi7roSQsX1"
    "wqjbZwKcWX1a/u/jX78w/DgHOJsiP0QL3H7oQMwCoHb//xK8b9Gwv/AO361izaupcvX86XhRAD9MfL1KuKc3Y9TXqAGu"
    "OdHpbfTCU+BiGgRYjSynT6G67lA4JaKfMez8neFxIM68jBgsB0JT5TeKawAAAABJRU5ErkJggg=="
)
PILLOW_SAMPLES = [
    [[207, 21, 45, 60], [46, 205, 222, 149], [10, 24, 85, 110], [159, 122, 67, 40]],
    [[107, 110, 170, 150], [44, 188, 193, 244], [201, 72, 81, 166], [166, 178, 222, 74]],
    [[11, 228, 169, 149], [62, 120, 48, 197], [121, 7, 65, 180], [133, 95, 64, 23]],
    [[63, 76, 124, 189], [74, 184, 167, 55], [99, 212, 215, 168], [1, 174, 57, 209]],
    [[151, 217, 168, 100], [230, 122, 98, 37], [54, 178, 204, 74], [160, 223, 37, 70]],
]
PILLOW_LAST_COLUMNS = [
    [[177, 188, 8, 29], [115, 100, 227, 132]],
    [[240, 0, 19, 249], [241, 76, 35, 80]],
    [[155, 169, 133, 238], [237, 53, 155, 161]],
    [[233, 109, 244, 194], [83, 224, 98, 26]],
    [[134, 143, 101, 102], [33, 156, 238, 50]],
]


def test_png_written_by_pillow():
    samples = np.array(
        [a + b for a, b in zip(PILLOW_SAMPLES, PILLOW_LAST_COLUMNS, strict=True)]
    )  # (5, 6, 4)
    decoded = decode_png(PILLOW_RGBA)
    assert decoded.shape == (5, 6)
    assert_nearest(decoded, exact_gray(samples, 8, 6))


def test_alpha_composites_over_black_and_gray_is_exact():
    pixels = np.array([[[200, 255], [200, 128], [200, 0], [255, 255]]])  # (1, 4, 2) gray, alpha
    np.testing.assert_array_equal(decode_png(make_png(pixels, 8, 4, [0])), [[200, 100, 0, 255]])
    white = np.full((1, 2, 3), 65535)  # 16-bit RGB white is 255; equal channels keep their level
    np.testing.assert_array_equal(decode_png(make_png(white, 16, 2, [0])), [[255, 255]])


def test_alpha_composites_over_a_chosen_background():
    # dark strokes on a transparent background, as drawing programs save them
    pixels = np.array([[[0, 255], [0, 128], [0, 0], [100, 0]]])  # (1, 4, 2) gray, alpha
    data = make_png(pixels, 8, 4, [0])
    np.testing.assert_array_equal(decode_png(data), [[0, 0, 0, 0]])  # invisible over black
    # 255 * (1 - 128/255) = 127: Y = luma * A + background * (1 - A)
    np.testing.assert_array_equal(decode_png(data, background=255), [[0, 127, 255, 255]])
    with pytest.raises(DataError, match=r"background must be a gray level 0\.\.255, received 300"):
        decode_png(data, background=300)


def test_trns_makes_a_palette_entry_gray_level_or_colour_transparent():
    index = np.array([0, 1, 2]).reshape(1, 3, 1)
    png = make_png(index, 8, 3, [0], plte=bytes([255] * 9), trns=bytes([0, 51]))
    np.testing.assert_array_equal(decode_png(png), [[0, 51, 255]])  # entry 2 has no alpha: opaque
    gray = np.array([1000, 65535]).reshape(1, 2, 1)
    png = make_png(gray, 16, 0, [0], trns=struct.pack(">H", 1000))
    np.testing.assert_array_equal(decode_png(png), [[0, 255]])
    rgb = np.array([[10, 20, 30], [10, 20, 31]]).reshape(1, 2, 3)
    png = make_png(rgb, 8, 2, [0], trns=struct.pack(">3H", 10, 20, 30))
    np.testing.assert_array_equal(decode_png(png), [[0, 18]])  # 2.99 + 11.74 + 3.534 = 18.264


def test_ancillary_chunks_and_data_after_iend_are_ignored():
    png = make_png(np.zeros((2, 2, 1), dtype=int) + 9, 8, 0, [0, 0])
    text = chunk(b"tEXt", b"Comment\x00hello")
    png = png[:33] + text + png[33:] + b"trailing garbage"  # after IHDR (8 + 25 bytes)
    np.testing.assert_array_equal(decode_png(png), np.full((2, 2), 9))


# ---- encoding and files ------------------------------------------------------------------------
@given(arrays(np.uint8, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_round_trip(image):
    np.testing.assert_array_equal(decode_png(encode_png(image)), image)


def test_write_and_read_a_file(tmp_path):
    image = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    write_png(tmp_path / "digit.png", image)
    np.testing.assert_array_equal(read_png(tmp_path / "digit.png"), image)
    assert [p.name for p in tmp_path.iterdir()] == ["digit.png"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("image", "error", "message"),
    [
        (np.zeros((2, 2)), DTypeError, "must be a uint8 array, received float64"),
        ([[0, 1]], DTypeError, "received list"),
        (np.zeros((2, 2, 3), dtype=np.uint8), ShapeError, r"\(H, W\).*received \(2, 2, 3\)"),
        (np.zeros((0, 5), dtype=np.uint8), ShapeError, r"received \(0, 5\)"),
    ],
)
def test_encode_rejects(image, error, message):
    with pytest.raises(error, match=message):
        encode_png(image)


# ---- errors ------------------------------------------------------------------------------------
GRAY = np.arange(12).reshape(3, 4, 1)
GOOD = make_png(GRAY, 8, 0, [0, 1, 2])
HEADER_END = 8 + 25  # the signature, then IHDR (4 + 4 + 13 + 4 bytes)


def ihdr(width=4, height=3, depth=8, colour=0, compression=0, filtering=0, interlace=0):
    body = struct.pack(">IIBBBBB", width, height, depth, colour, compression, filtering, interlace)
    return GOOD[:8] + chunk(b"IHDR", body) + GOOD[HEADER_END:]


def idat_of(raw):
    return GOOD[:HEADER_END] + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def flip(data, index):
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


ROWS = bytes([0, 1, 2, 3, 4] * 3)  # three rows of filter 0 and four pixels
CASES = {
    "signature": (b"GIF89a" + GOOD[6:], r"not a PNG file \(first bytes b'GIF89a"),
    "empty": (b"", "not a PNG file"),
    "crc": (
        flip(GOOD, HEADER_END + 10),
        r"CRC mismatch in chunk IDAT at byte 33: stored \w{8}, computed",
    ),
    "crc in IHDR": (flip(GOOD, 20), "CRC mismatch in chunk IHDR"),
    "cut in signature": (GOOD[:5], "not a PNG file"),
    "cut in header": (GOOD[:12], "truncated PNG: the file ends at byte 12 before IEND"),
    "cut in chunk": (
        GOOD[:45],
        r"truncated PNG: chunk IDAT at byte 33 needs \d+ bytes, only 12 remain",
    ),
    "no IEND": (GOOD[:-12], "truncated PNG: the file ends at byte"),
    "garbage header": (
        GOOD[:HEADER_END] + b"\x00\x00\x00\x01\x00\x01\x02\x03",
        "corrupt chunk header",
    ),
    "interlaced": (ihdr(interlace=1), r"interlaced \(Adam7\) PNG is not supported"),
    "interlace 2": (ihdr(interlace=2), "unknown interlace method 2"),
    "depth": (
        ihdr(depth=4, colour=2),
        r"bit depth 4 is not valid for colour type 2 \(RGB\); allowed: 8, 16",
    ),
    "depth 16 palette": (ihdr(depth=16, colour=3), "allowed: 1, 2, 4, 8"),
    "colour": (ihdr(colour=5), "unknown colour type 5"),
    "compression": (ihdr(compression=1), "unknown compression method 1"),
    "filter method": (ihdr(filtering=1), "filter method 1"),
    "zero width": (ihdr(width=0), "width and height must be at least 1, received 0x3"),
    "huge": (ihdr(width=MAX_PIXELS, height=2), f"{MAX_PIXELS}x2 pixels exceed the limit"),
    "IHDR not first": (
        GOOD[:8] + chunk(b"tEXt", b"a\x00b") + GOOD[8:],
        "first chunk must be IHDR, found tEXt",
    ),
    "two IHDR": (GOOD[:HEADER_END] + GOOD[8:], "more than one IHDR"),
    "IHDR size": (
        GOOD[:8] + chunk(b"IHDR", b"\x00" * 12) + GOOD[HEADER_END:],
        "IHDR must hold 13 bytes, has 12",
    ),
    "no IDAT": (GOOD[:HEADER_END] + chunk(b"IEND", b""), "no IDAT chunk"),
    "unknown critical": (
        GOOD[:HEADER_END] + chunk(b"ABCD", b"") + GOOD[HEADER_END:],
        "unknown critical chunk ABCD",
    ),
    "split IDAT": (
        GOOD[:HEADER_END]
        + b"".join(
            [
                chunk(b"IDAT", zlib.compress(bytes(15))[:5]),
                chunk(b"tEXt", b"a\x00b"),
                chunk(b"IDAT", zlib.compress(bytes(15))[5:]),
                chunk(b"IEND", b""),
            ]
        ),
        "IDAT chunks must be consecutive",
    ),
    "zlib garbage": (idat_of(b"not zlib at all"), r"corrupt compressed image data \(Error -3"),
    "too little": (idat_of(zlib.compress(ROWS[:-1])), "holds 14 bytes, the header implies 15"),
    "too much": (
        idat_of(zlib.compress(ROWS + b"\x00")),
        "holds more than 15 bytes, the header implies 15",
    ),
    "stream cut": (idat_of(zlib.compress(ROWS)[:-4]), "zlib stream is incomplete"),
    "row filter": (
        idat_of(zlib.compress(bytes([5, 1, 2, 3, 4] * 3))),
        "row 0 has unknown filter type 5 \\(expected 0 to 4\\)",
    ),
    "no PLTE": (make_png(GRAY % 2, 8, 3, [0] * 3), r"colour type 3 \(palette\) needs a PLTE chunk"),
    "PLTE size": (
        make_png(GRAY % 2, 8, 3, [0] * 3, plte=b"\x00" * 4),
        "PLTE must hold 1 to 256 RGB entries of 3 bytes, has 4",
    ),
    "index": (
        make_png(GRAY, 8, 3, [0] * 3, plte=bytes(6)),
        r"palette index 11 is out of range \(2 PLTE entries\)",
    ),
    "tRNS palette": (
        make_png(GRAY % 2, 8, 3, [0] * 3, plte=bytes(6), trns=bytes(3)),
        "tRNS has 3 entries, PLTE only 2",
    ),
    "tRNS gray": (
        make_png(GRAY, 8, 0, [0] * 3, trns=bytes(6)),
        "tRNS for colour type 0 must hold 2 bytes, has 6",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_malformed_png_raises_data_error_with_reason(case):
    data, message = CASES[case]
    with pytest.raises(DataError, match=f"^digit\\.png: .*{message}"):
        decode_png(data, name="digit.png")


def test_read_png_names_the_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(GOOD[:-3])
    with pytest.raises(DataError, match=f"^{path}: truncated PNG"):
        read_png(path)
    with pytest.raises(FileNotFoundError):
        read_png(tmp_path / "missing.png")
