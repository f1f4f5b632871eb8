"""Checked ``.npz`` files: named arrays plus a JSON record holding each array's SHA-256.

The file format of :mod:`nn.digit_strings` (spec/digit_strings.md), kept apart from the
generator. A file is a zlib-compressed ``.npz`` whose members are the arrays and ``record``, a 0-d
unicode array holding JSON text: the caller's record plus ``"sha256"``, the hex SHA-256 of each
array's C-contiguous bytes. No pickle anywhere: arrays of Python objects are refused when writing
and reading (``allow_pickle=False``). Files are written atomically (:mod:`nn.atomic`), so a crash
leaves the old file or the new one.

:func:`read_checked_npz` turns every way a file can be missing, corrupt, truncated or not ours
into a :class:`~nn.errors.DataError` naming the file and what is wrong.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from nn.atomic import sha256_array, write_bytes_atomic
from nn.errors import DataError

__all__ = ["RECORD", "read_checked_npz", "read_npy", "write_checked_npz"]

RECORD = "record"  # the member holding the JSON record
Arrays = dict[str, np.ndarray[Any, Any]]


def write_checked_npz(path: str | os.PathLike[str], arrays: Arrays, record: dict[str, Any]) -> None:
    """Write ``arrays`` and the JSON-able ``record`` (plus the arrays' SHA-256) to ``path``.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.npz"
    >>> write_checked_npz(p, {"x": np.arange(3)}, {"note": "hi"})
    >>> arrays, record = read_checked_npz(p, ("x",))
    >>> arrays["x"], record["note"]
    (array([0, 1, 2]), 'hi')
    """
    if RECORD in arrays or "sha256" in record:
        raise ValueError(f"write_checked_npz: {RECORD!r} and 'sha256' are reserved names")
    for name, a in arrays.items():
        if a.dtype.hasobject:
            raise DataError(f"{path}: array {name!r} has dtype {a.dtype}, which would need pickle")
    sums = {name: sha256_array(a) for name, a in arrays.items()}
    text = json.dumps(record | {"sha256": sums}, sort_keys=True)
    buffer = io.BytesIO()
    members = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    members[RECORD] = np.array(text)
    np.savez_compressed(buffer, **members)  # type: ignore[arg-type]  # stubs: as in nn.atomic
    write_bytes_atomic(path, buffer.getvalue())


def read_checked_npz(path: str | os.PathLike[str], names: tuple[str, ...]) -> tuple[Arrays, Any]:
    """``(arrays, record)`` from a file :func:`write_checked_npz` wrote with exactly ``names``.

    The record's ``"sha256"`` entry is checked against the arrays read and removed; the rest of
    the record is returned as :func:`json.loads` gives it (its structure is the caller's to
    check). Raises :class:`~nn.errors.DataError`, and nothing else, for any bad file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error})") from None
    arrays = _read_members(data, path, names)
    text = arrays.pop(RECORD)
    if text.shape != () or text.dtype.kind != "U":
        raise DataError(f"{path}: member {RECORD!r} is not a JSON text (dtype {text.dtype})")
    try:
        record = json.loads(str(text))
    except (ValueError, RecursionError) as error:  # RecursionError: nested thousands deep
        raise DataError(f"{path}: member {RECORD!r} is not valid JSON ({error})") from None
    sums = record.get("sha256") if isinstance(record, dict) else None
    if not isinstance(sums, dict) or sorted(sums) != sorted(names):
        raise DataError(f"{path}: the record lacks the SHA-256 of each of {', '.join(names)}")
    for name in names:
        received = sha256_array(arrays[name])
        if received != sums[name]:
            raise DataError(
                f"{path}: array {name!r}: SHA-256 mismatch: expected {sums[name]} (recorded), "
                f"received {received}; the file is corrupt or was modified"
            )
    del record["sha256"]
    return arrays, record


def _read_members(data: bytes, path: Path, names: tuple[str, ...]) -> Arrays:
    expected = {f"{name}.npy" for name in (*names, RECORD)}
    arrays: Arrays = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.namelist()
            if missing := sorted(expected - set(members)):
                raise DataError(f"{path}: missing member(s) {', '.join(missing)}")
            if extra := sorted(set(members) - expected):
                raise DataError(f"{path}: unexpected member(s) {', '.join(extra)}")
            for member in members:
                try:
                    array = read_npy(archive.read(member))
                except ValueError as error:
                    raise DataError(f"{path}: member {member!r}: {error}") from None
                arrays[member.removesuffix(".npy")] = array
    except DataError:
        raise
    except Exception as error:  # any damage: zip, zlib, CRC, npy header, sizes, memory
        kind = type(error).__name__
        raise DataError(f"{path}: not a readable npz ({kind}: {error})") from None
    return arrays


def read_npy(data: bytes) -> np.ndarray[Any, Any]:
    """The array in ``data``, the bytes of an ``.npy`` file; a ValueError if they hold no array.

    Why not :func:`numpy.lib.format.read_array` alone: from a zip member it allocates the shape
    its header claims before reading a byte of data, so a header of a few bytes claiming
    2**40 elements asks for terabytes. Here the claim must equal the bytes that follow the
    header first, so memory follows the bytes, never the claim. Object arrays (pickle) are
    refused.

    >>> buffer = io.BytesIO()
    >>> np.save(buffer, np.arange(3, dtype=np.int16))
    >>> read_npy(buffer.getvalue())
    array([0, 1, 2], dtype=int16)
    >>> read_npy(buffer.getvalue()[:-1])
    Traceback (most recent call last):
    ValueError: truncated data: header claims shape (3,) of int16, 6 bytes; the file holds 5
    """
    f = io.BytesIO(data)
    version = np.lib.format.read_magic(f)
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}  # fmt: skip
    if version not in readers:  # 3.0 only adds UTF-8 field names, which no array of ours has
        raise ValueError(f"npy format version {version[0]}.{version[1]}; readable: 1.0, 2.0")
    shape, _, dtype = readers[version](f)
    if dtype.hasobject:
        raise ValueError(f"Object arrays cannot be loaded: dtype {dtype} would need pickle")
    claimed, held = math.prod(shape) * dtype.itemsize, len(data) - f.tell()
    if claimed != held:
        what = "truncated data" if held < claimed else "data after the array"
        raise ValueError(
            f"{what}: header claims shape {shape} of {dtype}, {claimed} bytes; "
            f"the file holds {held}"
        )
    return np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
