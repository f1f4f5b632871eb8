"""A full disk under every file the library writes, simulated where nn.atomic meets the OS.

What must hold: an error naming the file and the errno (``[Errno 28] No space left on device:
'<path>'``), the old file byte-identical, no temporary left; a cache that cannot be written is
one log line and the data still come; a run stopped by a full disk resumes exactly. SIGKILL
during a write: tests/test_faults.py.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
from pathlib import Path

import numpy as np
import pytest
from test_faults import same_run

import nn.datasets
from conftest import synthetic_digits
from nn.atomic import sha256_array, write_text_atomic
from nn.checkpoint import load_checkpoint, save_checkpoint
from nn.cli import main
from nn.data import MnistData, Source, cache_source, fetch_mnist
from nn.datasets import cached_strings
from nn.digit_strings import (
    StringParams,
    make_digit_strings,
    save_digit_strings,
    string_cache_path,
)
from nn.idx import write_idx
from nn.png import write_png

RUN = ["--set", "model.hidden=[16]", "--set", "train.epochs=3", "--set", "train.validation=100",
       "--set", "train.batch_size=50", "--set", "optimizer.lr=0.1"]  # fmt: skip
NOSPACE = os.strerror(errno.ENOSPC)


def temporaries(directory: Path) -> list[Path]:
    """The temporary files nn.atomic leaves only when killed: ``.<name>.<random>.tmp``."""
    return sorted(p for p in directory.rglob(".*.tmp"))


def target(path: str | os.PathLike[str]) -> str:
    """The file a path stands for: ``.checkpoint.json.k2x8a1b0.tmp`` -> ``checkpoint.json``."""
    name = os.path.basename(path)
    temporary = re.fullmatch(r"\.(.+)\.[^.]+\.tmp", name)
    return temporary.group(1) if temporary else name


class FullDisk:
    """A disk that fills up, simulated where nn.atomic meets the OS (os.open, os.write,
    os.fsync): the files under ``root`` whose name, or temporary of that name, matches
    ``pattern`` are counted as they are opened for writing; from the one after ``skip``
    on, ``at="write"``: the disk has ``room`` bytes left, a write takes what still fits and
    the next raises ENOSPC; ``"create"``: the open fails (no inode left); ``"fsync"``: the
    flush fails (a delayed allocation failing late, as ext4 and NFS can)."""

    def __init__(self, monkeypatch, root, pattern="*", *, skip=0, room=0, at="write"):
        self.root, self.pattern, self.skip, self.room, self.at = root, pattern, skip, room, at
        self.opened, self.fds = 0, set()
        self.real = os.open, os.write, os.fsync
        monkeypatch.setattr(os, "open", self.open)
        monkeypatch.setattr(os, "write", self.write)
        monkeypatch.setattr(os, "fsync", self.fsync)

    def open(self, path, flags, *args, **kwargs):
        ours = Path(os.path.abspath(path)).is_relative_to(self.root) and fnmatch.fnmatch(
            target(path), self.pattern
        )
        if ours and flags & (os.O_WRONLY | os.O_RDWR):
            self.opened += 1
            if self.opened > self.skip:
                if self.at == "create":
                    raise OSError(errno.ENOSPC, NOSPACE, os.fspath(path))
                fd = self.real[0](path, flags, *args, **kwargs)
                self.fds.add(fd)
                return fd
        return self.real[0](path, flags, *args, **kwargs)

    def write(self, fd, data):
        if fd not in self.fds or self.at != "write":
            return self.real[1](fd, data)
        if self.room == 0:
            raise OSError(errno.ENOSPC, NOSPACE)
        n = min(len(data), self.room)
        self.room -= n
        return self.real[1](fd, memoryview(data)[:n])

    def fsync(self, fd):
        if fd in self.fds and self.at == "fsync":
            raise OSError(errno.ENOSPC, NOSPACE)
        return self.real[2](fd)


def a_checkpoint(path, value):
    save_checkpoint(path, params={"w": np.full(300, value)}, opt_state={}, meta={"v": value})


def strings(value):
    images, labels = synthetic_digits(30, seed=value)
    return make_digit_strings(images, labels, StringParams(2, 1, 2, height=28, width=40))


WRITERS = {  # what is written, by the library function that writes it
    "checkpoint npz": (a_checkpoint, "checkpoint-*.npz"),
    "checkpoint json": (a_checkpoint, "checkpoint.json"),
    "png": (lambda p, v: write_png(p / "a.png", np.full((9, 9), v, np.uint8)), "a.png"),
    "idx": (
        lambda p, v: write_idx(p / "x-idx1-ubyte", np.arange(v, v + 500, dtype=np.int32)),
        "x-idx1-ubyte",
    ),
    "metrics.json": (lambda p, v: write_text_atomic(p / "metrics.json", str(v) * 500), "*.json"),
    "digit strings": (lambda p, v: save_digit_strings(p / "s.npz", strings(v)), "s.npz"),
}


@pytest.mark.parametrize("at", ["create", "write", "a partial write", "fsync"])
@pytest.mark.parametrize("writer", WRITERS)
def test_a_full_disk_is_an_error_naming_the_file_and_the_old_file_stays(
    tmp_path, monkeypatch, writer, at
):
    """Catches a write in place (the old file truncated), a single unchecked os.write (a
    short write taken for the whole file), a temporary left behind, a bare ENOSPC that names
    no file."""
    write, pattern = WRITERS[writer]
    write(tmp_path, 1)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    room = 10 if at == "a partial write" else 0  # every file here is longer
    disk = FullDisk(monkeypatch, tmp_path, pattern, room=room, at=at.split()[-1])
    with pytest.raises(OSError) as error:
        write(tmp_path, 2)
    monkeypatch.undo()
    assert disk.opened >= 1 and error.value.errno == errno.ENOSPC
    failed = error.value.filename
    assert fnmatch.fnmatch(Path(failed).name, pattern) and Path(failed).parent == tmp_path
    assert str(error.value) == f"[Errno {errno.ENOSPC}] {NOSPACE}: '{failed}'"
    assert temporaries(tmp_path) == []
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    if writer.startswith("checkpoint"):
        assert load_checkpoint(tmp_path)[2] == {"v": 1}


@pytest.mark.parametrize("cache", ["mnist", "digit strings"])
def test_a_full_disk_under_a_cache_is_one_line_and_the_data_still_come(
    tmp_path, monkeypatch, cache
):
    """A cache is a copy: the data come back, one log line names the file and the reason
    (the path once), and the old file (corrupt here, so it is written again) stays."""
    images, labels = synthetic_digits(30, seed=1)
    params = StringParams(2, 1, 2, height=28, width=40)
    if cache == "mnist":
        path = tmp_path / "mnist.npz"
        arrays = {"train_images": images, "train_labels": labels,
                  "test_images": images[:5], "test_labels": labels[:5]}  # fmt: skip
        pins = {name: sha256_array(a) for name, a in arrays.items()}
        remote = Source("remote", lambda: (arrays, "remote"))

        def fetch(log):
            d = fetch_mnist(sources=[cache_source(path), remote], pins=pins, cache_dir=tmp_path,
                            log=log)  # fmt: skip
            return d.x_train
    else:
        path = string_cache_path(params, images, labels, tmp_path)

        def fetch(log):
            return cached_strings(params, images, labels, cache_dir=tmp_path, log=log).images

    path.write_bytes(b"corrupt")
    lines: list[str] = []
    with monkeypatch.context() as patch:
        FullDisk(patch, tmp_path, path.name, room=10)
        got = fetch(lines.append)
    assert path.read_bytes() == b"corrupt" and temporaries(tmp_path) == []
    prefix = "MNIST" if cache == "mnist" else "digit strings"
    assert len(lines) == 2 and lines[1] == f"{prefix}: could not write the cache {path}: {NOSPACE}"
    assert np.array_equal(got, fetch(print))  # the same data, now cached
    assert path.read_bytes() != b"corrupt"


TINY = MnistData(*synthetic_digits(600, seed=1), *synthetic_digits(200, seed=2), "tiny", None)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = tmp_path_factory.mktemp("whole") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nn.datasets, "fetch_mnist", lambda data_dir=None, log=print: TINY)
        assert main(["train", *RUN, "--out", str(run)]) == 0
    return run


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr(nn.datasets, "fetch_mnist", lambda data_dir=None, log=print: TINY)


@pytest.mark.parametrize(
    ("file", "skip"), [("checkpoint-*.npz", 1), ("checkpoint.json", 1), ("metrics.json", 0)]
)
def test_a_full_disk_while_training_is_one_line_and_resume_is_exact(
    tmp_path, monkeypatch, offline, capsys, uninterrupted, file, skip
):
    """What a user sees: ``error: [Errno 28] No space left on device: '<the file>'``, exit 1;
    after freeing space, ``--resume`` ends where an uninterrupted run ends."""
    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        FullDisk(patch, run, file, skip=skip, room=64)
        assert main(["train", *RUN, "--out", str(run)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(rf"error: \[Errno {errno.ENOSPC}\] {NOSPACE}: '(.+)'", err), err
    assert fnmatch.fnmatch(Path(err.split("'")[1]).name, file) and "Traceback" not in err
    assert temporaries(run) == []
    last = load_checkpoint(run)[2]["epoch"]
    assert last == (1 if file.startswith("checkpoint") else 3)
    assert main(["train", "--resume", str(run)]) == 0
    same_run(run, uninterrupted)
