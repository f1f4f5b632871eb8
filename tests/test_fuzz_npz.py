"""Fuzzing the npz readers: checkpoints (npz + checkpoint.json) and digit-strings files.

Both check SHA-256 sums before trusting content, so random damage mostly ends there; the
strategies below also damage the npz and then record the matching sum, so the zip and .npy
parsing behind the sum are reached too. See test_fuzz_readers.py for the contract and helpers.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import struct
import zipfile
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz_readers import FUZZ, HOW, memory_bound, mutations, outcome

from conftest import synthetic_digits
from nn.checkpoint import JSON_NAME, load_checkpoint, save_checkpoint
from nn.digit_strings import (
    DigitStrings,
    StringParams,
    load_digit_strings,
    make_digit_strings,
    save_digit_strings,
)
from nn.digit_strings_io import read_checked_npz, write_checked_npz
from nn.errors import DataError


def npy_header(descr: Any, shape: tuple[int, ...], fortran: bool = False, version=1) -> bytes:
    """An .npy header, written here from the format's description (NEP 1)."""
    text = repr({"descr": descr, "fortran_order": fortran, "shape": shape}).encode("latin1")
    size = 2 if version == 1 else 4
    text += b" " * (-(6 + 2 + size + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY" + bytes([version, 0]) + len(text).to_bytes(size, "little") + text


def zipped(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


LIES = {  # .npy members whose header claims what the bytes after it do not hold
    "2**29 float64 (4 GiB)": npy_header("<f8", (2**29,)) + bytes(8),
    "2**40 float64 (8 TiB)": npy_header("<f8", (2**40,)) + bytes(8),
    "2**62 x 4 float64": npy_header("<f8", (2**62, 4)),
    "zero rows of 2**62 x 2**62": npy_header("<f8", (0, 2**62, 2**62)),
    "negative dims": npy_header("<i4", (-2, -3)) + bytes(24),
    "a 1 GB string": npy_header("<U250000000", ()) + bytes(8),
    "2**31 records": npy_header([("a", "<f8"), ("b", "<i4")], (2**31,)) + bytes(12),
    "fortran 2**30 x 3": npy_header("<f4", (2**30, 3), fortran=True) + bytes(12),
    "version 2, 2**33 bytes": npy_header("|u1", (2**33,), version=2) + bytes(3),
    "version 3": npy_header("|u1", (3,), version=3) + bytes(3),
    "pickled objects": npy_header("|O", (1,)) + b"\x80\x04K\x01.",
    "one byte short": npy_header("<i2", (2, 2)) + bytes(7),
    "one byte over": npy_header("<i2", (2, 2)) + bytes(9),
}


# ---- checkpoints ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A saved checkpoint: (directory, npz bytes, npz path, checkpoint.json record)."""
    directory = tmp_path_factory.mktemp("ckpt")
    params = {"dense0.w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3)}
    save_checkpoint(directory, params=params, opt_state={"step": np.array(3)}, meta={"e": 1})
    record = json.loads((directory / JSON_NAME).read_text())
    npz = directory / record["npz"]
    return directory, npz.read_bytes(), npz, record


def check_checkpoint(directory: Any, npz: Any, npz_bytes: bytes, record: Any, text=None) -> None:
    """Write the pair (the record's sum made to match unless ``text`` is given) and load it."""
    npz.write_bytes(npz_bytes)
    record = record | {"sha256": hashlib.sha256(npz_bytes).hexdigest()}
    text = json.dumps(record).encode() if text is None else text
    (directory / JSON_NAME).write_bytes(text)
    result = outcome(lambda: load_checkpoint(directory), memory_bound(len(npz_bytes) + len(text)))
    if isinstance(result, DataError):
        assert str(directory) in str(result)
        return
    params, opt_state, meta = result
    assert isinstance(meta, dict)
    for group in (params, opt_state):
        assert all(isinstance(k, str) and k for k in group)
        assert all(isinstance(a, np.ndarray) and not a.dtype.hasobject for a in group.values())


@pytest.mark.parametrize("how", HOW)
@FUZZ
@given(data=st.data())
def test_checkpoint_npz_damaged_with_a_matching_sum(checkpoint, how, data):
    directory, valid, npz, record = checkpoint
    check_checkpoint(directory, npz, data.draw(mutations(valid, how)), record)


@pytest.mark.parametrize("how", HOW)
@FUZZ
@given(data=st.data())
def test_checkpoint_json_damaged(checkpoint, how, data):
    directory, valid, npz, record = checkpoint
    text = json.dumps(record).encode()
    check_checkpoint(directory, npz, valid, record, data.draw(mutations(text, how)))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)


@FUZZ
@given(
    changes=st.dictionaries(
        st.sampled_from(["format", "version", "npz", "sha256", "meta", "other"]),
        json_values
        | st.sampled_from(
            [
                "nn-checkpoint",
                1,
                "../checkpoint.json",
                "/etc/passwd",
                ".",
                "checkpoint.json",
                "checkpoint-0000000000000000.npz",
                "checkpoint-0123456789ABCDEF.npz",
                "sub",
            ]
        ),
        max_size=3,
    )
)
def test_checkpoint_json_pointing_anywhere(checkpoint, changes):
    """Records naming other files (outside the directory, the JSON itself, a directory named
    like a checkpoint, a missing one) and entries of any JSON type."""
    directory, valid, npz, record = checkpoint
    (directory / "checkpoint-0000000000000000.npz").mkdir(exist_ok=True)
    text = json.dumps(record | changes).encode()
    check_checkpoint(directory, npz, valid, record, text)


@pytest.mark.parametrize("lie", LIES)
def test_checkpoint_npy_members_with_lying_headers_allocate_nothing(checkpoint, lie):
    """Bug found by fuzzing: np.lib.format.read_array allocates the claimed shape before
    reading, so "2**29 float64" allocated 4 GiB and "2**40 float64" escaped as MemoryError.
    Now the claim must equal the bytes that follow the header first."""
    directory, _, npz, record = checkpoint
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        data = zipped({"params/w.npy": LIES[lie]}, method)
        npz.write_bytes(data)
        (directory / JSON_NAME).write_text(
            json.dumps(record | {"sha256": hashlib.sha256(data).hexdigest()})
        )
        error = outcome(lambda: load_checkpoint(directory), 1 << 20)
        assert isinstance(error, DataError) and "params/w.npy" in str(error)


@pytest.mark.parametrize(
    "text",
    [b"[" * 100000 + b"]" * 100000, b'{"format": ' + b"1" * 5000 + b"}"],
    ids=["nested-100000-deep", "int-of-5000-digits"],
)
def test_checkpoint_json_that_python_cannot_parse_is_a_data_error(checkpoint, text):
    """Bug found by fuzzing: JSON nested 100000 deep escaped as RecursionError, an integer of
    5000 digits as ValueError (not a JSONDecodeError): both now "not valid JSON"."""
    directory, valid, npz, record = checkpoint
    check_checkpoint(directory, npz, valid, record, text)
    with pytest.raises(DataError, match=r"checkpoint\.json: not valid JSON"):
        load_checkpoint(directory)


@pytest.mark.parametrize(
    ("flag", "offset", "value"),
    [("method 99", 8, 99), ("encrypted", 6, 1), ("zip version 9.9", 4, 99)],
)
def test_checkpoint_zip_features_python_refuses_are_a_data_error(checkpoint, flag, offset, value):
    """Bug found by fuzzing: a member whose compression method zipfile lacks escaped as
    NotImplementedError, an encrypted one as RuntimeError; each is now "unreadable npz"."""
    directory, valid, npz, record = checkpoint
    data = bytearray(valid)
    header = data.rfind(b"PK\x01\x02", 0)  # the central directory entry of the last member
    data[header + offset + 2] = value  # +2: the central entry has "version made by" first
    check_checkpoint(directory, npz, bytes(data), record)
    with pytest.raises(DataError, match="unreadable npz"):
        load_checkpoint(directory)


def damage_first_member(data: bytes, at: int = 10) -> bytes:
    """``data``, a zip, with one byte of its first member's compressed data inverted."""
    out = bytearray(data)
    header = data.find(b"PK\x03\x04")
    name, extra = struct.unpack("<HH", data[header + 26 : header + 30])
    out[header + 30 + name + extra + at] ^= 0xFF
    return bytes(out)


COMPRESSIONS = {"deflate": zipfile.ZIP_DEFLATED, "bzip2": zipfile.ZIP_BZIP2,
                "lzma": zipfile.ZIP_LZMA}  # fmt: skip


@pytest.mark.parametrize("method", COMPRESSIONS)
def test_checkpoint_members_damaged_in_every_compression_zipfile_reads(checkpoint, method):
    """Found by review: a damaged LZMA member escaped as lzma.LZMAError, which no other
    exception of zipfile's covers (the fuzzers wrote deflated and stored zips only)."""
    directory, _, npz, record = checkpoint
    arrays = {"params/w.npy": npy_header("<f8", (64,)) + np.arange(64.0).tobytes()}
    data = damage_first_member(zipped(arrays, COMPRESSIONS[method]))
    check_checkpoint(directory, npz, data, record)
    with pytest.raises(DataError, match=f"{re.escape(str(npz))}: unreadable npz"):
        load_checkpoint(directory)


# ---- digit strings ----------------------------------------------------------------------------
IMAGES, LABELS = synthetic_digits(20)
STRINGS = make_digit_strings(IMAGES, LABELS, StringParams(2, 1, 3, height=28, width=40))


@pytest.fixture(scope="module")
def strings_file(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("strings") / "s.npz"
    save_digit_strings(path, STRINGS)
    return path, path.read_bytes()


def check_strings(path: Any, data: bytes) -> None:
    path.write_bytes(data)
    result = outcome(lambda: load_digit_strings(path), memory_bound(len(data)))
    if isinstance(result, DataError):
        assert str(path) in str(result)
    else:
        assert isinstance(result, DigitStrings)


@pytest.mark.parametrize("how", HOW)
@FUZZ
@given(data=st.data())
def test_digit_strings_damaged_files(strings_file, how, data):
    path, valid = strings_file
    check_strings(path, data.draw(mutations(valid, how)))


@FUZZ
@given(
    drop=st.sets(st.sampled_from(["images", "labels", "sources", "positions", "tops"])),
    dtype=st.sampled_from(["<i8", ">i8", "<f8", "|u1", "<i4", "|b1"]),
    shape=st.lists(st.integers(0, 4), max_size=3).map(tuple),
    params=st.dictionaries(st.sampled_from(["count", "height", "width", "gap", "x"]), json_values)
    | json_values,
    record=st.dictionaries(st.sampled_from(["format", "version"]), json_values),
)
def test_digit_strings_with_valid_sums_and_any_content(
    strings_file, drop, dtype, shape, params, record
):
    """Files whose sums match but whose arrays have any dtype and shape, whose params are any
    JSON and whose format and version entries any values: the checks after the sums."""
    path, _ = strings_file
    arrays = {
        name: np.zeros(shape, dtype) if name in drop else getattr(STRINGS, name)
        for name in ("images", "labels", "sources", "positions", "tops")
    }
    base = {"format": "nn-digit-strings", "version": 1, "params": STRINGS.params.to_dict()}
    write_checked_npz(path, arrays, base | {"params": params} | record)
    check_strings(path, path.read_bytes())


@pytest.mark.parametrize("lie", LIES)
def test_digit_strings_npy_members_with_lying_headers_allocate_nothing(strings_file, lie):
    """Bug found by fuzzing: as for checkpoints, "2**29 float64" allocated 4 GiB first."""
    path, _ = strings_file
    members = {"x.npy": LIES[lie], "record.npy": npy_header("<U2", ()) + "{}".encode("utf-32-le")}
    path.write_bytes(zipped(members, zipfile.ZIP_DEFLATED))
    error = outcome(lambda: read_checked_npz(path, ("x",)), 1 << 20)
    assert isinstance(error, DataError) and "x.npy" in str(error)


def test_digit_strings_record_nested_100000_deep_is_a_data_error(strings_file):
    """Bug found by fuzzing: the record's JSON nested 100000 deep escaped as RecursionError."""
    path, _ = strings_file
    buffer = io.BytesIO()
    np.savez(buffer, x=np.arange(3), record=np.array("[" * 100000 + "]" * 100000))
    path.write_bytes(buffer.getvalue())
    error = outcome(lambda: read_checked_npz(path, ("x",)), 16 << 20)
    assert isinstance(error, DataError) and "'record' is not valid JSON" in str(error)
