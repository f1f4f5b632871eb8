"""IDX files, the format MNIST ships in: read and write every IDX type, plain or gzip-compressed.

An IDX file is a 4-byte magic number, the dimensions, then the data, all big-endian::

    0x00 0x00 <type code> <ndim>   uint32 dim_0 ... uint32 dim_{ndim-1}   data (C order)

The data holds exactly :math:`\\prod_i \\mathrm{dim}_i` items of the type's size. A header is
checked against the file before anything is allocated, so a header that lies about the size of
its data is refused at the cost of reading its few bytes.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zlib

import numpy as np

from nn.atomic import write_bytes_atomic
from nn.errors import DataError, DTypeError

__all__ = ["IDX_TYPES", "read_idx", "write_idx"]

# Type code -> big-endian dtype, as the format defines them (0x0A is unassigned).
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CHUNK = 1 << 20
# NumPy cannot index more bytes than its signed index type holds; a header claiming more is absurd.
_MAX_BYTES = int(np.iinfo(np.intp).max)
# The most dims a NumPy array has (NPY_MAXDIMS), while the header's byte allows 255.
_MAX_DIMS = 64 if int(np.__version__.split(".")[0]) >= 2 else 32


def _known_types() -> str:
    return ", ".join(f"0x{code:02X} {dt.newbyteorder('=').name}" for code, dt in IDX_TYPES.items())


def _open(path: str | os.PathLike[str]) -> io.BufferedIOBase:
    if os.fspath(path).endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _read_at_most(f: io.BufferedIOBase, n: int) -> bytes:
    """Up to ``n`` bytes, in chunks: memory follows what the file holds, never what it claims."""
    chunks: list[bytes] = []
    remaining = n
    while remaining > 0:
        chunk = f.read(min(remaining, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzip-compressed when ``path`` ends in ``.gz``) as a native-endian array.

    Raises :class:`~nn.errors.DataError` naming the file for a bad magic number, an unknown type
    code, a truncated header, data shorter than the header claims, or trailing bytes.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a-idx2-int16.gz"
    >>> write_idx(path, np.array([[1, -2, 3], [4, 5, -32768]], dtype=np.int16))
    >>> read_idx(path)
    array([[     1,     -2,      3],
           [     4,      5, -32768]], dtype=int16)
    """
    try:
        with _open(path) as f:
            return _read(f, path)
    except (gzip.BadGzipFile, zlib.error, EOFError) as e:
        raise DataError(f"{os.fspath(path)}: corrupt gzip stream: {e}") from e


def _read(f: io.BufferedIOBase, path: str | os.PathLike[str]) -> np.ndarray:
    name = os.fspath(path)
    magic = f.read(4)
    if len(magic) < 4:
        raise DataError(
            f"{name}: truncated header: expected 4 magic bytes, file holds {len(magic)}"
        )
    if magic[:2] != b"\0\0":
        raise DataError(f"{name}: bad magic {magic.hex()}: an IDX file starts with two zero bytes")
    code, ndim = magic[2], magic[3]
    if code not in IDX_TYPES:
        raise DataError(f"{name}: unknown IDX type code 0x{code:02X}; known: {_known_types()}")
    raw_dims = f.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(
            f"{name}: truncated header: {ndim} dims need {4 * ndim} bytes after the magic, "
            f"file holds {len(raw_dims)}"
        )
    shape = struct.unpack(f">{ndim}I", raw_dims)
    if ndim > _MAX_DIMS:
        raise DataError(
            f"{name}: header claims {ndim} dims, more than a NumPy array has ({_MAX_DIMS})"
        )
    dtype = IDX_TYPES[code]
    n_bytes = math.prod(shape) * dtype.itemsize  # Python ints: exact, cannot overflow
    # NumPy refuses a shape whose nonzero dims overflow even when another dim is 0 (no data).
    extent = math.prod(max(d, 1) for d in shape) * dtype.itemsize
    if extent > _MAX_BYTES:
        claim = f"{n_bytes} bytes of data" if n_bytes else f"no data but dims of {extent} bytes"
        raise DataError(
            f"{name}: header dims {shape} of {dtype.newbyteorder('=').name} claim {claim}, "
            f"more than an array can hold ({_MAX_BYTES})"
        )
    held = None if isinstance(f, gzip.GzipFile) else os.fstat(f.fileno()).st_size - 4 - 4 * ndim
    if held is not None and held < n_bytes:  # refused before reading or allocating anything
        raise DataError(
            f"{name}: truncated data: header claims {n_bytes} bytes of data, file holds {held}"
        )
    data = _read_at_most(f, n_bytes)
    if len(data) < n_bytes:
        raise DataError(
            f"{name}: truncated data: header claims {n_bytes} bytes of data, file holds {len(data)}"
        )
    # A gzip stream's length is unknown until read; one more chunk is enough to say "trailing".
    extra = len(f.read(_CHUNK)) if held is None else held - n_bytes
    if extra:
        more = " or more" if held is None and extra == _CHUNK else ""
        raise DataError(
            f"{name}: trailing bytes: {extra}{more} bytes after the {n_bytes} bytes of data "
            f"the header claims for shape {shape}"
        )
    # shape: (n_bytes,) bytes -> shape; astype makes a native-endian, writable copy.
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _type_code(dtype: np.dtype) -> int:
    for code, idx_dtype in IDX_TYPES.items():
        if dtype.kind == idx_dtype.kind and dtype.itemsize == idx_dtype.itemsize:
            return code
    raise DTypeError(
        f"write_idx: array has dtype {dtype}, which has no IDX type code; IDX holds "
        f"{_known_types()}"
    )


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, atomically; gzip-compressed when ``path`` ends in ``.gz``.

    Raises :class:`~nn.errors.DTypeError` for a dtype IDX cannot hold (bool, int64, uint16,
    complex, ...) and :class:`~nn.errors.DataError` for more than 255 dims or a dim of 2**32 or
    more, which the header cannot state.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
    >>> write_idx(path, np.array([7, 2, 1], dtype=np.uint8))
    >>> path.read_bytes().hex(" ")
    '00 00 08 01 00 00 00 03 07 02 01'
    >>> read_idx(path)
    array([7, 2, 1], dtype=uint8)
    """
    a = np.asarray(array)
    code = _type_code(a.dtype)
    # NumPy allows at most 64 dims today; the guard keeps the header byte honest if that grows.
    if a.ndim > 255:
        raise DataError(f"write_idx: array has {a.ndim} dims; an IDX header holds at most 255")
    if any(d >= 2**32 for d in a.shape):
        raise DataError(
            f"write_idx: array has shape {a.shape}; an IDX header holds dims below 2**32"
        )
    header = struct.pack(f">BBBB{a.ndim}I", 0, 0, code, a.ndim, *a.shape)
    payload = header + np.ascontiguousarray(a, dtype=IDX_TYPES[code]).tobytes()
    if os.fspath(path).endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)  # mtime=0: the same array gives the same bytes
    write_bytes_atomic(path, payload)
