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
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from nn.atomic import read_npy, sha256_array, write_bytes_atomic
from nn.errors import DataError

__all__ = ["RECORD", "read_checked_npz", "write_checked_npz"]

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
