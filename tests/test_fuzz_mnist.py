"""Fuzzing the MNIST readers: the npz cache (nn.data) and the wheel's pickle (nn.mnist_wheel).

What fuzzing found escaping as other exceptions, or allocating what a header or a pickle's length
field merely claims, is a DataError now: each case is pinned by test_cache_found_by_fuzzing or
test_wheel_found_by_fuzzing. See test_fuzz_readers.py for the contract and helpers.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
import zipfile
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz_npz import damage_first_member, npy_header, zipped
from test_fuzz_readers import FUZZ, HOW, memory_bound, mutations, outcome

from nn.atomic import npz_bytes, sha256_array
from nn.data import MnistData, cache_source, fetch_mnist
from nn.errors import DataError
from nn.mnist_wheel import read_wheel_pickle

# Escapes found by fuzzing and not fixed yet in nn/data.py and nn/mnist_wheel.py, tolerated by
# the fuzz tests until then (each pinned by a case of a *_found_by_fuzzing test): none now.
PENDING_CACHE: tuple[type[BaseException], ...] = ()
PENDING_WHEEL: tuple[type[BaseException], ...] = ()
# Bytes a pending escape may allocate beyond memory_bound (a pickle's length field allocated
# before reading was one): none now.
PENDING_WHEEL_BYTES = 0

ARRAYS = {
    "train_images": np.arange(2 * 784, dtype=np.uint8).reshape(2, 28, 28),
    "train_labels": np.array([3, 1], np.uint8),
    "test_images": np.full((1, 28, 28), 7, np.uint8),
    "test_labels": np.array([7], np.uint8),
}
PINS = {name: sha256_array(a) for name, a in ARRAYS.items()}
CACHE = npz_bytes({**ARRAYS, "source": np.array("a test")})


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return tmp_path_factory.mktemp("fuzz-mnist")


def check_cache(path: Any, data: bytes, pending=PENDING_CACHE) -> None:
    """The whole path a cache file takes: cache_source, then fetch_mnist's checks."""
    path.write_bytes(data)
    source = cache_source(path)
    result = outcome(
        lambda: fetch_mnist(sources=[source], pins=PINS, log=lambda line: None),
        memory_bound(len(data)),
        pending=pending,
    )
    if isinstance(result, DataError):
        assert str(path) in str(result)
    elif not isinstance(result, pending):
        assert isinstance(result, MnistData) and result.x_train.shape == (2, 28, 28)


@pytest.mark.parametrize("how", HOW)
@FUZZ
@given(data=st.data())
def test_cache_damaged_files(scratch, how, data):
    check_cache(scratch / "mnist.npz", data.draw(mutations(CACHE, how)))


def central_entry(data: bytes, offset: int, value: int) -> bytes:
    """``data`` with one byte of its first central directory entry set (offsets: APPNOTE)."""
    out = bytearray(data)
    out[data.find(b"PK\x01\x02") + offset] = value
    return bytes(out)


ARRAYS_NPY = {f"{name}.npy": npy_header(a.dtype.str, a.shape) + a.tobytes()
              for name, a in ARRAYS.items()}  # fmt: skip
CACHE_FOUND = {
    "method 99": central_entry(CACHE, 10, 99),
    "encrypted": central_entry(CACHE, 8, 1),
    "a bare .npy file": CACHE[CACHE.find(b"\x93NUMPY") :],
    "members without .npy": zipped({name: b"x" for name in ARRAYS}),
    # zipfile reads a member's compressed size in one read() from the file, which allocates it
    "a compressed size claiming 32 MiB more": central_entry(CACHE, 23, 2),
    "a header claiming 2**62 bytes": zipped({"train_images.npy": npy_header("|u1", (2**62,))}),
    "a header claiming 2 GiB": zipped({"train_images.npy": npy_header("|u1", (2**31,))}),
    # found by review: a damaged LZMA stream raises lzma.LZMAError, which nothing else covers
    **{
        f"a damaged {name} member": damage_first_member(zipped(ARRAYS_NPY, method))
        for name, method in (("bzip2", zipfile.ZIP_BZIP2), ("lzma", zipfile.ZIP_LZMA))
    },
}


@pytest.mark.parametrize("found", CACHE_FOUND)
def test_cache_found_by_fuzzing(scratch, found):
    """Each a DataError, allocating little. np.load let through NotImplementedError and
    RuntimeError (zipfile), TypeError (a bare .npy is an array, not an archive), AttributeError
    (bytes for a member without .npy), and allocated what a header claims (2 GiB; MemoryError
    for 2**62 bytes) or what a zip entry claims as its compressed size."""
    check_cache(scratch / "found.npz", CACHE_FOUND[found], pending=())


# ---- the wheel's pickle -----------------------------------------------------------------------
MEMBER = "mnist/data/mnist.pkl.gz"


def pairs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (x.reshape(len(x), 784).astype(np.float32) / 256, y.astype(np.int64))


PICKLE = pickle.dumps(
    (
        pairs(ARRAYS["train_images"][:1], ARRAYS["train_labels"][:1]),
        pairs(ARRAYS["train_images"][1:], ARRAYS["train_labels"][1:]),
        pairs(ARRAYS["test_images"], ARRAYS["test_labels"]),
    ),
    protocol=4,  # 2 (the wheel's) writes Python 3 bytes via _codecs.encode, which is refused
)


def wheel(member_bytes: bytes, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    return zipped({MEMBER: member_bytes, "x.dist-info/WHEEL": b"Wheel-Version: 1.0\n"}, method)


def check_wheel(path: Any, data: bytes, sha256: str, pending=PENDING_WHEEL) -> None:
    path.write_bytes(data)
    limit = memory_bound(len(data)) + PENDING_WHEEL_BYTES * bool(pending)
    result = outcome(lambda: read_wheel_pickle(path, MEMBER, sha256), limit, pending=pending)
    if isinstance(result, DataError):
        assert path.name in str(result)
    elif not isinstance(result, pending):
        assert sorted(result) == sorted(ARRAYS)
        assert all(a.dtype == np.uint8 for a in result.values())


@pytest.mark.parametrize("how", HOW)
@FUZZ
@given(data=st.data())
def test_wheel_damaged_files(scratch, how, data):
    """The wheel (a zip) damaged; the member's pin is the undamaged one."""
    member = gzip.compress(PICKLE, mtime=0)
    damaged = data.draw(mutations(wheel(member), how))
    check_wheel(scratch / "w.whl", damaged, hashlib.sha256(member).hexdigest())


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("layer", ["gzip", "pickle"])
@FUZZ
@given(data=st.data())
def test_wheel_pickle_damaged_behind_a_matching_pin(scratch, how, layer, data):
    """The gzip member or the pickle in it damaged, and pinned as it is: should the pin ever be
    beaten, the restricted unpickler and the array checks still refuse anything else."""
    if layer == "gzip":
        member = data.draw(mutations(gzip.compress(PICKLE, mtime=0), how))
    else:
        member = gzip.compress(data.draw(mutations(PICKLE, how)), mtime=0)
    check_wheel(scratch / "pinned.whl", wheel(member), hashlib.sha256(member).hexdigest())


def local_entry(data: bytes, offset: int, value: int) -> bytes:
    out = bytearray(data)
    out[data.find(b"PK\x03\x04") + offset] = value
    return bytes(out)


GOOD_MEMBER = gzip.compress(PICKLE, mtime=0)
EVAL = gzip.compress(pickle.dumps(eval))
HUGE = np.full((1, 784), 3e38, np.float32), np.zeros(1, np.int64)
OVERFLOW = gzip.compress(pickle.dumps((HUGE, HUGE, HUGE), protocol=4))
BINSTRING = gzip.compress(b"T" + PICKLE[1:])  # found by the fuzzer: overwrite(valid, [(0, 84)])
LYING_PICKLE = gzip.compress(b"\x80\x04\x8e" + struct.pack("<Q", 512 << 20) + b"abc")
# LONG_BINPUT: the C unpickler grows its memo to twice the index, 320 MB for this one
MEMO = gzip.compress(b"\x80\x02N" + b"r" + struct.pack("<I", 20_000_000) + b".")
# Pickles of arrays written by hand (protocol 2), for what NumPy's unpickling trusts:
# _reconstruct(ndarray, shape, "b") allocates the shape; an array of dtype "O8" holding a list
# of 2 for 2**28 items reads pointers past the list (a crash); a dtype's flags, 3 instead of 0,
# make float32 hold references (a RuntimeError when the array is freed, found by the fuzzer).
RECONSTRUCT = b"\x80\x02cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
SHAPE_CLAIM = gzip.compress(RECONSTRUCT + b"J\x00\x00\x00\x40\x85U\x01b\x87R.")  # 2**30
OBJECT_DTYPE = (
    b"cnumpy\ndtype\nU\x02O8\x89\x88\x87R(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb"
)
OBJECTS = (
    RECONSTRUCT
    + b"K\x00\x85U\x01b\x87R(K\x01J\x00\x00\x00\x10\x85"
    + OBJECT_DTYPE
    + b"\x89](K\x01Netb"
)
OBJECT_ARRAYS = gzip.compress(OBJECTS + b"q\x00h\x00h\x00\x86q\x01h\x01h\x01h\x01\x87.")
FLAGS = b"J\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00"  # the dtype state's last three items
FLAGGED = gzip.compress(PICKLE.replace(FLAGS, FLAGS[:-1] + b"\x03", 1))
# the name's flag says UTF-8 (bit 11 of the flags), the name's first byte is not UTF-8
NOT_UTF8 = central_entry(central_entry(wheel(GOOD_MEMBER), 9, 0x08), 46, 0xFF)
WHEEL_FOUND = {  # (wheel bytes, the member's pin)
    "method 99": (central_entry(wheel(GOOD_MEMBER), 10, 99), GOOD_MEMBER),
    "encrypted": (central_entry(wheel(GOOD_MEMBER), 8, 1), GOOD_MEMBER),
    "extra field past the end": (local_entry(wheel(GOOD_MEMBER), 29, 88), GOOD_MEMBER),
    "a compressed size claiming 32 MiB more": (
        central_entry(wheel(GOOD_MEMBER), 23, 2),
        GOOD_MEMBER,
    ),
    "a reserved deflate block": (local_entry(wheel(GOOD_MEMBER), 30 + len(MEMBER), 7), GOOD_MEMBER),
    "a pickle claiming 512 MiB of bytes": (wheel(LYING_PICKLE), LYING_PICKLE),
    **{
        f"a damaged {name} member": (damage_first_member(wheel(GOOD_MEMBER, method)), GOOD_MEMBER)
        for name, method in (("bzip2", zipfile.ZIP_BZIP2), ("lzma", zipfile.ZIP_LZMA))
    },
    "a first byte T (BINSTRING), 641 MB": (wheel(BINSTRING), BINSTRING),
    "a name flagged UTF-8 that is not": (NOT_UTF8, GOOD_MEMBER),
    "a memo index of 20 M (LONG_BINPUT)": (wheel(MEMO), MEMO),
    "pixels of 3e38 (overflow)": (wheel(OVERFLOW), OVERFLOW),
    "a _reconstruct shape of 2**30 bytes": (wheel(SHAPE_CLAIM), SHAPE_CLAIM),
    "an object array of 2**28 items holding 2 (a crash)": (wheel(OBJECT_ARRAYS), OBJECT_ARRAYS),
    "a dtype flagged as holding references": (wheel(FLAGGED), FLAGGED),
    "a refused global (the message named no file)": (wheel(EVAL), EVAL),
}


@pytest.mark.parametrize("found", WHEEL_FOUND)
def test_wheel_found_by_fuzzing(scratch, found):
    """Each a DataError naming the file, allocating little. They escaped as zipfile's
    NotImplementedError, RuntimeError, EOFError, zlib.error and UnicodeDecodeError and as
    FloatingPointError (3e38 * 256); a zip entry's compressed size, BINSTRING and BINBYTES8
    lengths and a LONG_BINPUT memo index were allocated before reading (the compressed size
    showed once PENDING_WHEEL_BYTES no longer hid it); a refusal of the unpickler did not name
    the file. What NumPy's own unpickling trusts (a shape, an object dtype, a dtype's flags)
    never reaches it: the arrays are made from stand-ins, so the flags, which are NumPy's
    bookkeeping, are not read and that wheel gives its arrays."""
    data, member = WHEEL_FOUND[found]
    check_wheel(scratch / "found.whl", data, hashlib.sha256(member).hexdigest(), pending=())


def test_wheel_pickle_inflating_past_the_bound_is_refused_at_the_bound(scratch, monkeypatch):
    """The member is decompressed into memory before unpickling, in chunks and up to a bound
    (256 MiB, above the real pickle's 220 MB): a gzip bomb costs the bound, not what it inflates
    to. Here the bound is 1 MiB and the bomb 64 MiB of zeros in 64 KB."""
    monkeypatch.setattr("nn.mnist_wheel._MAX_PICKLE", 1 << 20)
    bomb = gzip.compress(bytes(64 << 20), 9)
    path = scratch / "bomb.whl"
    path.write_bytes(wheel(bomb))
    sha = hashlib.sha256(bomb).hexdigest()
    error = outcome(lambda: read_wheel_pickle(path, MEMBER, sha), 8 << 20)
    assert isinstance(error, DataError)
    assert str(error) == (
        f"bomb.whl: {MEMBER}: expected a pickle of at most 1048576 bytes, received more"
    )
