"""Fuzzing every reader of files: IDX here; PNG, npz, MNIST and configs in the other test_fuzz_*.

The contract each test checks: whatever the bytes, a reader returns arrays of the form the file
declares or raises :class:`~nn.errors.DataError`; any other exception fails the test. Each read
runs under a time bound (a hang fails, it does not block) and under tracemalloc, which sees
NumPy's allocations too: a header that lies about its size must not make the reader allocate
for the claim, so memory stays within a bound proportional to the file's size.

The inputs start from valid files the tests write, then: (1) random bytes, (2) truncation at
every length, (3) bit flips and (4) byte overwrites at random offsets, and hand-made lying
headers. The helpers here are shared with the other test_fuzz_*.py files.
"""

from __future__ import annotations

import gzip
import signal
import struct
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nn.errors import DataError
from nn.idx import IDX_TYPES, read_idx, write_idx

SECONDS = 10.0  # a read of a few KB takes milliseconds: ten seconds is a hang
INFLATION = 1032  # the most a deflate (zlib, gzip, zip) stream can inflate: 1032 to 1
FUZZ = settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow])


class Hang(BaseException):
    """A read ran past its time bound. BaseException: no reader's ``except Exception`` eats it."""


@contextmanager
def bounded(seconds: float = SECONDS) -> Iterator[None]:
    """Raise :class:`Hang` in the body once ``seconds`` have passed (SIGALRM: main thread)."""

    def alarm(signum: int, frame: Any) -> None:
        raise Hang(f"the read still ran after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def memory_bound(size: int) -> int:
    """What reading a file of ``size`` bytes may allocate: a few MB of buffers, plus a few copies
    of everything its deflate streams could inflate to. Never anything a header merely claims."""
    return (16 << 20) + 3 * INFLATION * size


def outcome(
    read: Callable[[], Any],
    limit: int,
    seconds: float = SECONDS,
    pending: tuple[type[BaseException], ...] = (),
) -> Any:
    """``read()``'s result or the DataError it raised; any other exception propagates.

    Fails if ``read`` allocates more than ``limit`` bytes at its peak or runs past ``seconds``.
    ``pending``: exceptions fuzzing found escaping a reader and not fixed yet, returned like a
    DataError meanwhile, so that the fuzz tests go on finding others (none is pending now).
    """
    outer = tracemalloc.is_tracing()
    if not outer:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        with bounded(seconds):
            try:
                result = read()
            except (DataError, *pending) as error:
                result = error
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if not outer:
            tracemalloc.stop()
    assert peak <= limit, f"the read allocated {peak} bytes at its peak, more than {limit}"
    return result


def flip_bits(data: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for at, bit in flips:
        out[at % len(out)] ^= 1 << bit
    return bytes(out)


def overwrite(data: bytes, writes: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for at, value in writes:
        out[at % len(out)] = value
    return bytes(out)


def mutations(valid: bytes, how: str) -> st.SearchStrategy[bytes]:
    """Bytes made from ``valid``: random, truncated, bit-flipped or overwritten (``how``)."""
    offsets = st.integers(0, len(valid) - 1)
    return {
        "random": st.binary(max_size=2 * len(valid) + 16),
        "truncated": st.integers(0, len(valid) - 1).map(lambda n: valid[:n]),
        "flipped": st.lists(st.tuples(offsets, st.integers(0, 7)), min_size=1, max_size=8).map(
            lambda flips: flip_bits(valid, flips)
        ),
        "overwritten": st.lists(
            st.tuples(offsets, st.integers(0, 255)), min_size=1, max_size=8
        ).map(lambda writes: overwrite(valid, writes)),
    }[how]


HOW = ["random", "truncated", "flipped", "overwritten"]


# ---- IDX ---------------------------------------------------------------------------------------
IDX_ARRAYS = [
    np.arange(6, dtype=np.uint8).reshape(2, 3),
    np.array([[-2, 300], [7, -32768]], dtype=np.int16),
    np.array([1.5, -0.0, np.inf], dtype=np.float32),
    np.float64(2.5),
    np.zeros((0, 4), dtype=np.int32),
]


def idx_bytes(code: int, dims: tuple[int, ...], data: bytes = b"") -> bytes:
    return struct.pack(f">BBBB{len(dims)}I", 0, 0, code, len(dims), *dims) + data


def idx_file(array: np.ndarray) -> bytes:
    """The bytes write_idx writes (the IDX tests check that they are the format's)."""
    code = next(c for c, dt in IDX_TYPES.items() if dt.newbyteorder("=") == array.dtype)
    return idx_bytes(code, array.shape, array.astype(IDX_TYPES[code]).tobytes())


IDX_FILES = [idx_file(a) for a in IDX_ARRAYS]


def check_idx(path: Any, raw: bytes, gz: bool) -> None:
    """read_idx of ``raw`` (the file's bytes): a DataError, or the array its header declares."""
    path.write_bytes(raw)
    result = outcome(lambda: read_idx(path), memory_bound(len(raw)))
    if isinstance(result, DataError):
        assert str(result).startswith(f"{path}: ")  # the message names the file
        return
    assert isinstance(result, np.ndarray) and result.flags.writeable
    assert result.dtype in [dt.newbyteorder("=") for dt in IDX_TYPES.values()]
    plain = gzip.decompress(raw) if gz else raw
    header = struct.pack(f">BBBB{result.ndim}I", 0, 0, plain[2], result.ndim, *result.shape)
    assert plain == header + result.astype(IDX_TYPES[plain[2]]).tobytes()  # nothing more, or less


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@FUZZ
@given(data=st.data(), which=st.sampled_from(range(len(IDX_ARRAYS))))
def test_idx_mutated_files(scratch, how, gz, data, which):
    """Mutations of a valid file; for .gz, of the compressed stream and of the plain bytes."""
    path = scratch / f"fuzz-idx{'.gz' if gz else ''}"
    valid = IDX_FILES[which]
    raw = data.draw(mutations(valid, how))
    check_idx(path, gzip.compress(raw, mtime=0) if gz else raw, gz)
    if gz:  # damage in the gzip stream itself: its header, deflate blocks, CRC and size
        check_idx(path, data.draw(mutations(gzip.compress(valid, mtime=0), how)), gz)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_idx_every_truncation_and_every_bit_flip(scratch, gz):
    path = scratch / f"every.idx{'.gz' if gz else ''}"
    for array in IDX_ARRAYS[1:3]:
        write_idx(path, array)  # the writer's bytes, not only idx_file's
        valid = path.read_bytes()
        for n in range(len(valid)):
            check_idx(path, valid[:n], gz)
        for at in range(len(valid) * 8):
            check_idx(path, flip_bits(valid, [(at // 8, at % 8)]), gz)


dims = st.sampled_from([0, 1, 2, 3, 255, 2**16, 2**31 - 1, 2**31, 2**32 - 1]) | st.integers(
    0, 2**32 - 1
)


@FUZZ
@given(
    code=st.integers(0, 255) | st.sampled_from(sorted(IDX_TYPES)),
    shape=st.lists(dims, max_size=6) | st.lists(st.just(1), min_size=60, max_size=255),
    size=st.integers(0, 64),
    gz=st.booleans(),
)
def test_idx_lying_headers(scratch, code, shape, size, gz):
    """Any type code and dims (2**31 elements and more, 255 dims) before a few bytes of data."""
    path = scratch / f"lie.idx{'.gz' if gz else ''}"
    raw = idx_bytes(code, tuple(shape), bytes(range(size)))
    check_idx(path, gzip.compress(raw, mtime=0) if gz else raw, gz)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize(
    ("code", "shape"),
    [
        (0x08, (2**31,)),
        (0x0E, (2**31, 2**31)),
        (0x0D, (2**16, 2**16, 2**16)),
        (0x08, (2**32 - 1,) * 4),
    ],
)
def test_idx_headers_claiming_2_to_the_31_elements_allocate_nothing(scratch, code, shape, gz):
    path = scratch / f"claims{'.gz' if gz else ''}"
    raw = idx_bytes(code, shape, bytes(100))
    path.write_bytes(gzip.compress(raw) if gz else raw)
    assert isinstance(outcome(lambda: read_idx(path), 4 << 20), DataError)


def test_idx_gzip_bomb_costs_its_data_not_its_claim(scratch):
    """8 KB of gzip inflating to 8 MiB behind a header claiming 2**31 bytes: refused, with
    memory for the 8 MiB that are there (read in chunks), not for the 2 GiB claimed."""
    path = scratch / "bomb.idx.gz"
    path.write_bytes(gzip.compress(idx_bytes(0x08, (2**31,), bytes(8 << 20)), 9))
    assert path.stat().st_size < 16 << 10
    error = outcome(lambda: read_idx(path), 3 * (8 << 20) + (4 << 20))
    assert isinstance(error, DataError) and "file holds 8388608" in str(error)


def test_idx_more_dims_than_numpy_allows_is_a_data_error(scratch):
    """Bug found by fuzzing: 65 to 255 dims of 1 (a valid header, 1 byte of data) escaped as
    NumPy's ValueError "maximum supported dimension for an ndarray is 64"."""
    for ndim in (65, 255):
        path = scratch / "many-dims"
        path.write_bytes(idx_bytes(0x08, (1,) * ndim, b"\x07"))
        with pytest.raises(DataError, match=f"many-dims: header claims {ndim} dims, more than"):
            read_idx(path)


def test_idx_zero_size_with_overflowing_dims_is_a_data_error(scratch):
    """Bug found by fuzzing: dims (0, 2**32-1, 2**32-1) claim no data, but NumPy cannot make the
    shape and raised ValueError "array is too big" from reshape."""
    path = scratch / "empty-but-huge"
    path.write_bytes(idx_bytes(0x08, (0, 2**32 - 1, 2**32 - 1)))
    with pytest.raises(DataError, match=r"claim no data but dims of \d+ bytes, more than an"):
        read_idx(path)
    path.write_bytes(idx_bytes(0x08, (0, 2**31, 2**31)))  # 2**62 bytes: an array can be made
    assert read_idx(path).shape == (0, 2**31, 2**31)
