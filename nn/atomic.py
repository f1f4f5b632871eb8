"""Atomic file writes and content hashes: nothing the library writes is ever half-written.

A write goes to a temporary file in the destination's directory, is flushed to disk, and then
replaces the destination in one ``os.replace``. A crash leaves either the old file or the new
one, never a truncated mix; the SHA-256 recorded next to a file catches anything else.

A write that fails (a full disk, a quota, an I/O error) removes its temporary file and raises
the :class:`OSError` with its errno and the *destination* as its filename, so the message says
which file could not be written: ``[Errno 28] No space left on device: 'run/metrics.json'``
(a bare ``write`` error names no file at all). A process killed outright (SIGKILL, power loss)
can leave a temporary ``.<name>.<random>.tmp`` beside the destination; no reader ever opens one.

Reading is the other half: :func:`read_npy` reads an ``.npy`` member with memory for the bytes
it holds, never for what its header claims, and :data:`ZIP_ERRORS` is what a damaged zip can
raise, for the npz readers to name.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import math
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, nothing else.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> write_bytes_atomic(p, b"hello")
    >>> p.read_bytes()
    b'hello'
    """
    path = Path(path)
    with _naming(path):
        tmp = _write_temporary(path, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _fsync_directory(path.parent)


def create_bytes_exclusive(path: str | os.PathLike[str], data: bytes) -> None:
    """Like :func:`write_bytes_atomic`, but only if ``path`` does not exist yet.

    Two processes racing to create the same file: exactly one wins, the other gets
    :class:`FileExistsError` (``os.link`` refuses an existing target, atomically).
    """
    path = Path(path)
    with _naming(path):
        tmp = _write_temporary(path, data)
        try:
            os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    _fsync_directory(path.parent)


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Re-raise an OSError that names no file, or only our temporary one, as the same errno
    (so the same subclass: FileExistsError stays FileExistsError) naming ``path``.

    An error that already names another file (``mkdir`` on a parent that is a file) is the
    clearer message as it is and passes unchanged.
    """
    try:
        yield
    except OSError as error:
        name = None if error.filename is None else Path(error.filename).name
        ours = name is None or (name.startswith(f".{path.name}.") and name.endswith(".tmp"))
        if error.errno is None or not ours:
            raise
        raise OSError(error.errno, error.strerror, str(path)) from error


def _write_temporary(path: Path, data: bytes) -> Path:
    """``data`` in a new, flushed file next to ``path``, readable as the umask allows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            # mkstemp makes the file private (0600); a normal file gets 0666 minus the umask.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            # os.write, looped: a nearly full disk writes part of a buffer and returns the count.
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)  # where a delayed allocation's ENOSPC or an I/O error shows up
        finally:
            os.close(fd)  # can fail too (EIO, ENOSPC on network file systems)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX; a no-op where directories can't open)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """:func:`write_bytes_atomic` for UTF-8 text."""
    write_bytes_atomic(path, text.encode("utf-8"))


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of an uncompressed ``.npz`` holding ``arrays`` (no pickled objects allowed)."""
    buffer = io.BytesIO()
    for name, a in arrays.items():
        if np.asarray(a).dtype == object:
            raise TypeError(f"npz_bytes: array {name!r} has dtype object, which would need pickle")
    # The object check above stands in for allow_pickle=False, which np.savez lacks before 2.1.
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # stubs: **kwds could fill allow_pickle
    return buffer.getvalue()


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's content, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_array(a: np.ndarray) -> str:
    """Hex SHA-256 of an array's C-contiguous bytes (how DESIGN.md pins MNIST's content)."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, OSError, EOFError, RuntimeError,
              ValueError)  # fmt: skip
"""What zipfile raises for a damaged or unusual zip, besides a missing member's KeyError:
BadZipFile; zlib.error and lzma.LZMAError for a damaged deflate or LZMA stream (bzip2's is an
OSError); EOFError for data cut short; RuntimeError for an encrypted member and its subclass
NotImplementedError for an unknown compression method or zip version; ValueError, whose
subclass UnicodeDecodeError is a name flagged UTF-8 that is not. The readers turn them into
DataErrors naming the file."""


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
