"""Fuzzing nn.png: damaged files, files damaged behind valid CRCs, lying headers, zlib bombs.

A random change to a PNG almost always breaks a CRC, so most strategies here repair the CRCs
after damaging a chunk's body (or the inflated rows) to reach the header checks, the inflater,
the unfilter and the colour conversion. See test_fuzz_readers.py for the contract and helpers.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz_readers import FUZZ, HOW, SECONDS, bounded, memory_bound, mutations, outcome

from nn.errors import DataError
from nn.png import MAX_PIXELS, MAX_SIDE, decode_png, read_png

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def ihdr(width, height, depth=8, colour=0, compression=0, filtering=0, interlace=0) -> bytes:
    return struct.pack(">IIBBBBB", width, height, depth, colour, compression, filtering, interlace)


def png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return SIGNATURE + b"".join(chunk(kind, body) for kind, body in chunks)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def filtered(rows: np.ndarray, kinds: list[int], bpp: int) -> bytes:
    """The PNG filters applied forward to byte rows (H, stride): the bytes an encoder writes."""
    out = []
    prev = np.zeros(rows.shape[1], dtype=np.int64)
    for row, kind in zip(rows.astype(np.int64), kinds, strict=True):
        a = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])  # left
        c = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]])  # upper left
        guess = [0, a, prev, (a + prev) // 2, paeth(a, prev, c)][kind]
        out.append(bytes([kind]) + ((row - guess) % 256).astype(np.uint8).tobytes())
        prev = row
    return b"".join(out)


def image_png(rows: np.ndarray, width: int, depth: int, colour: int, kinds, extra=()) -> bytes:
    bpp = max(1, rows.shape[1] // width)  # bytes per pixel; 1 below 8 bits
    idat = zlib.compress(filtered(rows, list(kinds), bpp))
    header = (b"IHDR", ihdr(width, rows.shape[0], depth, colour))
    return png([header, *extra, (b"IDAT", idat[:7]), (b"IDAT", idat[7:]), (b"IEND", b"")])


RNG = np.random.default_rng(8)
VALID = [  # every colour type, 1 to 16 bits, all five filters
    image_png(RNG.integers(0, 256, (3, 5), dtype=np.uint8), 5, 8, 0, [0, 1, 4]),
    image_png(RNG.integers(0, 256, (4, 12), dtype=np.uint8), 6, 16, 0, [2, 3, 4, 1]),
    image_png(np.packbits(RNG.integers(0, 2, (3, 9)), axis=1), 9, 1, 0, [4, 0, 3]),
    image_png(RNG.integers(0, 256, (2, 9), dtype=np.uint8), 3, 8, 2, [3, 4]),
    image_png(
        RNG.integers(0, 3, (3, 4), dtype=np.uint8),
        4,
        8,
        3,
        [1, 2, 4],
        [(b"PLTE", bytes(range(9))), (b"tRNS", b"\x80")],
    ),
    image_png(RNG.integers(0, 256, (2, 8), dtype=np.uint8), 4, 8, 4, [4, 4]),
    image_png(RNG.integers(0, 256, (2, 16), dtype=np.uint8), 2, 16, 6, [1, 4]),
]


def layout(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (type, body) chunks of a valid PNG."""
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def check_png(data: bytes) -> None:
    """decode_png: a DataError naming the data, or the gray image its IHDR declares."""
    result = outcome(lambda: decode_png(data, name="fuzz.png"), memory_bound(len(data)))
    if isinstance(result, DataError):
        assert str(result).startswith("fuzz.png: ")
        return
    width, height = struct.unpack(">II", data[16:24])
    assert isinstance(result, np.ndarray) and result.dtype == np.uint8
    assert result.shape == (height, width)


@pytest.mark.parametrize("how", HOW)
@FUZZ
@given(data=st.data(), valid=st.sampled_from(VALID))
def test_png_mutated_files(how, data, valid):
    check_png(data.draw(mutations(valid, how)))


@pytest.mark.parametrize("how", HOW)
@FUZZ
@given(data=st.data(), valid=st.sampled_from(VALID))
def test_png_chunks_damaged_behind_valid_crcs(how, data, valid):
    """One chunk's body damaged, its CRC recomputed: the decoder's own checks must catch it."""
    chunks = layout(valid)
    at = data.draw(st.integers(0, len(chunks) - 1))
    kind, body = chunks[at]
    if body or how == "random":
        body = data.draw(mutations(body, how) if body else st.binary(max_size=16))
    check_png(png([*chunks[:at], (kind, body), *chunks[at + 1 :]]))


@pytest.mark.parametrize("how", HOW)
@FUZZ
@given(data=st.data(), valid=st.sampled_from(VALID))
def test_png_image_data_damaged_behind_a_valid_zlib_stream(how, data, valid):
    """The inflated rows damaged (filter types, lengths), compressed again: a valid stream."""
    chunks = [(kind, body) for kind, body in layout(valid) if kind != b"IDAT"]
    rows = zlib.decompress(b"".join(body for kind, body in layout(valid) if kind == b"IDAT"))
    idat = zlib.compress(data.draw(mutations(rows, how)))
    check_png(png([*chunks[:-1], (b"IDAT", idat), chunks[-1]]))


@FUZZ
@given(
    width=st.sampled_from([0, 1, 3, MAX_SIDE, MAX_SIDE + 1, 100000, 2**31]) | st.integers(0, 40),
    height=st.sampled_from([0, 1, 2, MAX_PIXELS, 2**31 - 1, 2**32 - 1]) | st.integers(0, 40),
    depth=st.sampled_from([0, 1, 2, 3, 4, 8, 16, 255]),
    colour=st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7]),
    fields=st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)),
    size=st.integers(0, 200) | st.just(-1),
    data=st.data(),
)
def test_png_lying_headers(width, height, depth, colour, fields, size, data):
    """Any IHDR before image data of any length (-1: the length the IHDR implies)."""
    if size == -1:
        stride = (width * {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 1) * depth + 7) // 8
        size = min(height * (stride + 1), 4096)
    rows = data.draw(st.binary(min_size=size, max_size=size))
    chunks = [(b"IHDR", ihdr(width, height, depth, colour, *fields))]
    chunks += [(b"PLTE", bytes(range(12)))] * (colour == 3)
    check_png(png([*chunks, (b"IDAT", zlib.compress(rows)), (b"IEND", b"")]))


def test_png_every_truncation_and_every_bit_flip():
    for valid in VALID[:3]:
        for n in range(len(valid)):
            check_png(valid[:n])
        for at in range(8 * len(valid)):
            check_png(
                valid[: at // 8] + bytes([valid[at // 8] ^ 1 << at % 8]) + valid[at // 8 + 1 :]
            )


@pytest.mark.parametrize(("depth", "colour"), [(8, 0), (16, 0), (16, 4), (1, 0)])
@FUZZ
@given(
    height=st.integers(1, 9),
    width=st.integers(1, 40),
    data=st.data(),
)
def test_png_any_filters_on_any_rows_decode_exactly(depth, colour, height, width, data):
    """Valid files: random samples, a random filter per row; the gray levels must come back.

    Exercises both unfilter paths (rows of None, Sub and Up only; any Average or Paeth row)
    on shapes wider and taller than square, where the diagonals are cut differently, with
    1, 2 and 4 bytes a pixel."""
    channels = 2 if colour == 4 else 1
    samples = np.frombuffer(
        data.draw(st.binary(min_size=2 * height * width, max_size=2 * height * width)), np.uint16
    ).reshape(height, width)
    kinds = data.draw(st.lists(st.integers(0, 4), min_size=height, max_size=height))
    if depth == 1:
        bits = samples % 2
        rows, expected = np.packbits(bits, axis=1), bits * 255
    elif depth == 8:
        rows, expected = (samples % 256).astype(np.uint8), samples % 256
    else:  # big-endian 16-bit samples, and a full alpha where there is one
        planes = [samples, np.full_like(samples, 65535)][:channels]
        rows = np.stack(planes, axis=2).astype(">u2").view(np.uint8).reshape(height, -1)
        expected = np.rint(samples / 257)
    decoded = decode_png(image_png(rows, width, depth, colour, kinds))
    np.testing.assert_array_equal(decoded, expected)


def bomb(gibibytes: float) -> bytes:
    """A zlib stream of about 1 MB per GiB inflating to zeros: each MiB compressed on its own
    (a full flush), so one compressed MiB can be repeated instead of compressing gigabytes."""
    deflate = zlib.compressobj(9)
    head = deflate.compress(bytes(1 << 20)) + deflate.flush(zlib.Z_FULL_FLUSH)
    body = deflate.compress(bytes(1 << 20)) + deflate.flush(zlib.Z_FULL_FLUSH)
    return head + body * (int(gibibytes * 1024) - 1) + deflate.flush()


@pytest.mark.parametrize(("width", "height"), [(28, 28), (8192, 8192)])
def test_png_a_zlib_bomb_inflates_only_what_the_header_implies(width, height):
    """1 MB inflating to 1 GiB: refused after inflating what IHDR implies (8192x8192: the
    largest image of 64 MiB), never the gigabyte."""
    data = png([(b"IHDR", ihdr(width, height)), (b"IDAT", bomb(1)), (b"IEND", b"")])
    assert len(data) < 2 << 20
    implied = height * (width + 1)
    limit = 2 * implied + 4 * len(data) + (2 << 20)  # zlib copies its output once at the end
    error = outcome(lambda: decode_png(data), limit)
    assert isinstance(error, DataError) and f"holds more than {implied} bytes" in str(error)


@pytest.mark.parametrize(
    ("width", "height", "depth", "colour", "message"),
    [
        (100000, 100000, 8, 0, "100000x100000 pixels exceed the limit"),
        (8192, 8192, 16, 6, "the image data holds 0 bytes, the header implies 536879104"),
        (MAX_SIDE * 2, 8, 8, 0, f"each side must be at most {MAX_SIDE}"),
        (1, MAX_PIXELS, 1, 0, f"each side must be at most {MAX_SIDE}"),
    ],
)
def test_png_a_header_claiming_a_huge_image_allocates_nothing(
    width, height, depth, colour, message
):
    data = png([(b"IHDR", ihdr(width, height, depth, colour)), (b"IDAT", zlib.compress(b"")),
                (b"IEND", b"")])  # fmt: skip
    error = outcome(lambda: decode_png(data), 1 << 20)
    assert isinstance(error, DataError) and message in str(error)


def test_png_a_2_kb_bilevel_image_no_longer_allocates_786_mib():
    """Bug found by fuzzing: a 2 KB 1-bit 4096x4096 PNG (zeros) made the decoder allocate
    786 MiB (int64 rows, then int64 samples and float64 planes of the whole image): 49 bytes
    a pixel. Now bytes are unfiltered as uint8 and converted to gray a block at a time."""
    rows = b"".join(b"\x00" + bytes(512) for _ in range(4096))
    data = png([(b"IHDR", ihdr(4096, 4096, 1)), (b"IDAT", zlib.compress(rows, 9)), (b"IEND", b"")])
    assert len(data) < 4096
    image = outcome(lambda: decode_png(data), 48 << 20)  # the image itself is 16 MiB
    assert image.shape == (4096, 4096) and not image.any()


def test_png_paeth_rows_no_longer_take_seconds_a_megapixel():
    """Bug found by fuzzing: Average and Paeth rows were undone by a Python loop over bytes,
    3.6 us each: a 5 KB file of 2048x2048 Paeth rows took 15 s, and 4096x4096 a minute (a
    hang). Now the pixels of each anti-diagonal are undone in one vector step: half a second.
    Bounded in time only: tracemalloc would slow the thousands of small steps down."""
    rows = b"".join(b"\x04" + bytes(2048) for _ in range(2048))
    data = png([(b"IHDR", ihdr(2048, 2048)), (b"IDAT", zlib.compress(rows, 9)), (b"IEND", b"")])
    assert len(data) < 8 << 10
    with bounded(SECONDS):
        image = decode_png(data)
    assert image.shape == (2048, 2048) and not image.any()


def test_read_png_names_the_file_for_any_damage(tmp_path):
    path = tmp_path / "damaged.png"
    path.write_bytes(VALID[0][:-5])
    error = outcome(lambda: read_png(path), 1 << 20)
    assert isinstance(error, DataError) and str(error).startswith(f"{path}: ")
