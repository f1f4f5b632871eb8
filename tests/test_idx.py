"""nn.idx: round trips of every IDX type, hand-written files as reference, every corruption."""

from __future__ import annotations

import gzip
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from conftest import same_bits
from nn.errors import DataError, DTypeError
from nn.idx import IDX_TYPES, read_idx, write_idx

# The codes as the format's documentation lists them, written out again rather than imported.
CODES = {0x08: "u1", 0x09: "i1", 0x0B: "i2", 0x0C: "i4", 0x0D: "f4", 0x0E: "f8"}


def idx_bytes(code, dims, data=b""):
    """An IDX file built with struct alone: the independent reference for the format."""
    return struct.pack(f">BBBB{len(dims)}I", 0, 0, code, len(dims), *dims) + data


def test_the_type_table_is_the_formats():
    assert {c: dt.str[1:] for c, dt in IDX_TYPES.items()} == CODES
    assert all(dt.byteorder in (">", "|") for dt in IDX_TYPES.values())


@settings(max_examples=30, deadline=None)
@given(
    data=st.data(),
    code=st.sampled_from(sorted(CODES)),
    gz=st.booleans(),
    order=st.sampled_from(["<", ">"]),
)
def test_round_trip_every_type_code(tmp_path_factory, data, code, gz, order):
    """write then read gives back the same values, native-endian and writable, for every type.

    Catches a dropped byte-order conversion on read or write and a lost dim in the header."""
    dtype = np.dtype(CODES[code]).newbyteorder(order)
    a = data.draw(arrays(dtype, array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5)))
    path = tmp_path_factory.mktemp("idx") / ("a.idx.gz" if gz else "a.idx")
    write_idx(path, a)
    b = read_idx(path)
    assert b.dtype == np.dtype(CODES[code]) and b.dtype.isnative and b.flags.writeable
    assert b.shape == a.shape
    np.testing.assert_array_equal(b, a)  # NaNs compare equal here, so every value must survive
    assert same_bits(b, a.astype(b.dtype))  # bit for bit: -0.0 and NaN payloads


def test_reads_a_hand_written_2x3_uint8_file(tmp_path):
    path = tmp_path / "x-idx2-ubyte"
    path.write_bytes(idx_bytes(0x08, (2, 3), bytes([0, 1, 2, 253, 254, 255])))
    np.testing.assert_array_equal(read_idx(path), np.array([[0, 1, 2], [253, 254, 255]], np.uint8))


@pytest.mark.parametrize(
    ("code", "fmt", "values", "dtype"),
    [
        (0x09, "b", [-128, -1, 0, 127], np.int8),
        (0x0B, "h", [-32768, -2, 1, 32767], np.int16),
        (0x0C, "i", [-(2**31), -2, 258, 2**31 - 1], np.int32),
        (0x0D, "f", [-1.5, 0.1, 3.0e38, 2.0**-149], np.float32),
        (0x0E, "d", [-1.5, 0.1, 1.0e308, 5e-324], np.float64),
    ],
)
def test_reads_and_writes_hand_written_big_endian_files(tmp_path, code, fmt, values, dtype):
    """The bytes struct packs big-endian are what write_idx writes and what read_idx decodes.

    Catches native (little-endian) data or header on either side: 258 and 0.1 are no palindromes."""
    raw = idx_bytes(code, (2, 2), struct.pack(f">{len(values)}{fmt}", *values))
    expected = np.array(values, dtype=dtype).reshape(2, 2)
    (tmp_path / "ref").write_bytes(raw)
    (tmp_path / "ref.gz").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(read_idx(tmp_path / "ref"), expected)
    np.testing.assert_array_equal(read_idx(tmp_path / "ref.gz"), expected)
    write_idx(tmp_path / "mine", expected)
    assert (tmp_path / "mine").read_bytes() == raw
    write_idx(tmp_path / "mine.gz", expected)
    assert gzip.decompress((tmp_path / "mine.gz").read_bytes()) == raw


def test_writes_transposed_and_zero_dim_arrays(tmp_path):
    """A non-contiguous array is written in C order of its logical shape; a 0-d array has 0 dims."""
    a = np.arange(6, dtype=np.uint8).reshape(2, 3).T
    write_idx(tmp_path / "t", a)
    assert (tmp_path / "t").read_bytes() == idx_bytes(0x08, (3, 2), bytes([0, 3, 1, 4, 2, 5]))
    write_idx(tmp_path / "s", np.float64(2.5))
    assert (tmp_path / "s").read_bytes() == idx_bytes(0x0E, (), struct.pack(">d", 2.5))
    assert read_idx(tmp_path / "s").shape == ()


CORRUPT = [
    # (file bytes, expected message fragment)
    (b"\x00\x00\x08", "truncated header: expected 4 magic bytes, file holds 3"),
    (b"", "truncated header: expected 4 magic bytes, file holds 0"),
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x07", "bad magic 01000801"),
    (b"\x00\x02\x08\x01\x00\x00\x00\x01\x07", "bad magic 00020801"),
    (idx_bytes(0x0A, (1,), b"\x07"), "unknown IDX type code 0x0A"),
    (idx_bytes(0x07, (1,), b"\x07"), "unknown IDX type code 0x07"),
    (
        idx_bytes(0x08, (3, 2))[:9],
        "truncated header: 2 dims need 8 bytes after the magic, file holds 5",
    ),
    (
        idx_bytes(0x08, (2, 3), bytes(5)),
        "truncated data: header claims 6 bytes of data, file holds 5",
    ),
    (
        idx_bytes(0x0C, (2,), bytes(7)),
        "truncated data: header claims 8 bytes of data, file holds 7",
    ),
    (idx_bytes(0x08, (2, 3), bytes(8)), "trailing bytes: 2 bytes after the 6 bytes of data"),
]


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize(("raw", "message"), CORRUPT)
def test_corrupt_files_raise_data_error_naming_file_and_fault(tmp_path, raw, message, gz):
    path = tmp_path / ("bad-file.gz" if gz else "bad-file")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DataError) as error:
        read_idx(path)
    assert str(error.value).startswith(str(path) + ": ")
    assert message in str(error.value)


@pytest.mark.parametrize(
    "payload", [b"not gzip at all", gzip.compress(idx_bytes(0x08, (4,), bytes(4)))[:-6]]
)
def test_corrupt_gzip_stream_is_a_data_error(tmp_path, payload):
    path = tmp_path / "broken.gz"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=r"broken\.gz: corrupt gzip stream"):
        read_idx(path)


def peak_bytes_while_refusing(path, message):
    """Peak memory traced while read_idx refuses ``path`` with ``message``."""
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=message):
            read_idx(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_a_header_claiming_more_than_the_file_holds_allocates_nothing(tmp_path, gz):
    """A 20-byte file claiming 60000x28x28 (47 MB) is refused with at most a read chunk allocated.

    Catches allocating the claimed array (or reading the claimed count at once) before checking."""
    raw = idx_bytes(0x08, (60000, 28, 28), bytes(4))
    assert len(raw) == 20
    path = tmp_path / ("lie.gz" if gz else "lie")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    message = "header claims 47040000 bytes of data, file holds 4"
    assert peak_bytes_while_refusing(path, message) < 2 << 20  # gzip's 1 MB read buffer at most


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_a_huge_but_addressable_claim_is_read_in_chunks(tmp_path, gz):
    """A claim of 2**50 bytes over 3 MB of real data costs memory for the data, not the claim."""
    raw = idx_bytes(0x08, (2**20, 2**20, 2**10), bytes(3 << 20))
    path = tmp_path / ("big.gz" if gz else "big")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    message = f"header claims {2**50} bytes of data, file holds {3 << 20}"
    assert peak_bytes_while_refusing(path, message) < 16 << 20


@pytest.mark.parametrize("dims", [(2**32 - 1,) * 3, (2**32 - 1, 2**32 - 1), (2**31, 2**31, 2)])
def test_dims_whose_product_no_array_can_hold_are_refused(tmp_path, dims):
    path = tmp_path / "absurd"
    path.write_bytes(idx_bytes(0x0E, dims))
    n_bytes = int(np.prod(np.array(dims, dtype=object))) * 8
    message = f"claim {n_bytes} bytes of data, more than an array can hold"
    assert peak_bytes_while_refusing(path, message) < 1 << 20


@pytest.mark.parametrize(
    "dtype", [np.bool_, np.int64, np.uint16, np.uint32, np.float16, np.complex128, object, "U3"]
)
def test_write_refuses_dtypes_without_an_idx_code(tmp_path, dtype):
    with pytest.raises(DTypeError, match=f"dtype {np.dtype(dtype)}, which has no IDX type code"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=dtype))
    assert not (tmp_path / "x").exists()


def test_write_refuses_a_dim_the_header_cannot_state(tmp_path):
    # A zero-size array may have a dim of 2**32 without allocating anything.
    with pytest.raises(DataError, match=r"shape \(0, 4294967296\); .* dims below 2\*\*32"):
        write_idx(tmp_path / "x", np.empty((0, 2**32), dtype=np.uint8))
    assert not (tmp_path / "x").exists()


def test_write_replaces_atomically_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "a"
    write_idx(path, np.zeros(5, np.uint8))
    write_idx(path, np.ones(2, np.int32))
    np.testing.assert_array_equal(read_idx(path), np.ones(2, np.int32))
    assert [p.name for p in tmp_path.iterdir()] == ["a"]
