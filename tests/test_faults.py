"""A training process SIGKILLed in the middle of a checkpoint write, in a real subprocess.

What must hold: the previous checkpoint still loads with its checksum, no temporary file is
ever read, and ``--resume`` ends bitwise where an uninterrupted run ends. A full disk under
every writer: tests/test_faults_disk.py; caches and downloads: tests/test_faults_data.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nn
from conftest import same_bits, synthetic_digits
from nn.atomic import sha256_array, sha256_file
from nn.checkpoint import load_checkpoint
from nn.data import IDX_NAMES
from nn.idx import write_idx

RUN = ["--set", "model.hidden=[16]", "--set", "train.epochs=3", "--set", "train.validation=100",
       "--set", "train.batch_size=50", "--set", "optimizer.lr=0.1"]  # fmt: skip


def same_run(a: Path, b: Path) -> None:
    """Two run folders hold bitwise the same weights, optimizer state, history and score."""
    for sub in ("model", "."):
        params_a, opt_a, _ = load_checkpoint(a / sub)
        params_b, opt_b, _ = load_checkpoint(b / sub)
        assert sorted(params_a) == sorted(params_b) and sorted(opt_a) == sorted(opt_b)
        assert all(same_bits(params_a[k], params_b[k]) for k in params_a), sub
        assert all(same_bits(opt_a[k], opt_b[k]) for k in opt_a), sub
    clock = {"seconds", "images_per_second"}
    ma, mb = (json.loads((run / "metrics.json").read_text()) for run in (a, b))
    assert [{k: v for k, v in r.items() if k not in clock} for r in ma["history"]] == [
        {k: v for k, v in r.items() if k not in clock} for r in mb["history"]
    ]
    assert ma["test"] == mb["test"]


# --- SIGKILL in the middle of a checkpoint write, in a real process -------------------------------

# The child runs nn's own CLI; only this harness (never nn) knows about the fault. It patches
# os.open and os.write, which nn.atomic writes through, so whatever way a writer opens its
# file (a temporary, or the destination itself), the chosen file gets half its bytes.
HARNESS = '''"""tests/test_faults.py's harness, not part of nn: python -m nn on tiny IDX
files checked against their own pins. With FAULT_FILE set, the FAULT_NTH file of that name
(or temporary of it) opened for writing in FAULT_DIR gets half of its first write; then the
process says where (the file FAULT_MARK) and waits to be killed."""
import fnmatch, functools, json, os, re, sys, time
import nn.data, nn.datasets
from nn.cli import main

pins = json.loads(os.environ["FAULT_PINS"])
nn.datasets.fetch_mnist = functools.partial(nn.data.fetch_mnist, pins=pins)
if os.environ.get("FAULT_FILE"):
    real_open, real_write = os.open, os.write
    where, opened, doomed = os.path.realpath(os.environ["FAULT_DIR"]), [0], {}

    def target(path):
        name = os.path.basename(path)
        temporary = re.fullmatch(r"\\.(.+)\\.[^.]+\\.tmp", name)
        return temporary.group(1) if temporary else name

    def fault_open(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        if (flags & (os.O_WRONLY | os.O_RDWR)
                and os.path.realpath(os.path.dirname(os.fspath(path))) == where
                and fnmatch.fnmatch(target(path), os.environ["FAULT_FILE"])):
            opened[0] += 1
            if opened[0] == int(os.environ["FAULT_NTH"]):
                doomed[fd] = os.fspath(path)
        return fd

    def fault_write(fd, data):
        if fd not in doomed:
            return real_write(fd, data)
        real_write(fd, bytes(data[: len(data) // 2]))
        os.fsync(fd)
        mark = os.environ["FAULT_MARK"]
        with open(mark + ".part", "w") as f:
            f.write(json.dumps({"path": doomed[fd], "size": len(data)}))
        os.replace(mark + ".part", mark)
        time.sleep(600)  # killed long before
        os._exit(3)

    os.open, os.write = fault_open, fault_write
sys.exit(main(sys.argv[1:]))
'''


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """Start ``python HARNESS argv`` on 600 + 200 synthetic digits as IDX files."""
    root = tmp_path_factory.mktemp("harness")
    (root / "harness.py").write_text(HARNESS)
    arrays = {"train_images": synthetic_digits(600, seed=1)[0],
              "train_labels": synthetic_digits(600, seed=1)[1],
              "test_images": synthetic_digits(200, seed=2)[0],
              "test_labels": synthetic_digits(200, seed=2)[1]}  # fmt: skip
    for name, stem in IDX_NAMES.items():
        write_idx(root / "idx" / stem, arrays[name])
    paths = [str(Path(nn.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, paths)),  # the nn these tests import
        "FAULT_PINS": json.dumps({name: sha256_array(a) for name, a in arrays.items()}),
        "NN_DATA": str(root / "cache"),  # never the user's cache, never the network
    }

    def start(log: Path, *argv: str, **fault: str) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            return subprocess.Popen(
                [sys.executable, str(root / "harness.py"), *argv, "--data-dir", str(root / "idx")],
                stdout=out, stderr=subprocess.STDOUT, env=env | fault,
            )  # fmt: skip

    return start


@pytest.fixture(scope="module")
def uninterrupted(harness, tmp_path_factory):
    run = tmp_path_factory.mktemp("whole") / "run"
    child = harness(run.parent / "log", "train", *RUN, "--out", str(run))
    assert child.wait(timeout=300) == 0, (run.parent / "log").read_text()
    return run


@pytest.mark.parametrize(
    "file", ["checkpoint-*.npz", "checkpoint.json"], ids=["during-the-npz", "during-the-json"]
)
def test_sigkill_during_a_checkpoint_write_keeps_the_last_one_and_resume_is_exact(
    tmp_path, harness, uninterrupted, file
):
    """Killed halfway through writing epoch 2's checkpoint (its arrays, or the JSON that
    commits them): epoch 1's checkpoint loads with its checksum, and resuming ends bitwise
    where the uninterrupted run ends. Catches a checkpoint written in place (what is on
    disk is half a file) and a resume that trusts a leftover."""
    run, mark = tmp_path / "run", tmp_path / "mark"
    child = harness(tmp_path / "log", "train", *RUN, "--out", str(run), FAULT_FILE=file,
                    FAULT_NTH="2", FAULT_DIR=str(run), FAULT_MARK=str(mark))  # fmt: skip
    try:
        waited = 0.0
        while not mark.exists():
            assert child.poll() is None, "no fault: " + (tmp_path / "log").read_text()
            assert waited < 300, "the child never reached the fault"  # liveness, not timing
            time.sleep(0.02)
            waited += 0.02
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    fault = json.loads(mark.read_text())
    assert 0 < Path(fault["path"]).stat().st_size == fault["size"] // 2  # as the kill left it
    record = json.loads((run / "checkpoint.json").read_text())
    assert record["meta"]["epoch"] == 1
    assert sha256_file(run / record["npz"]) == record["sha256"]
    params, opt, meta = load_checkpoint(run)
    assert meta["epoch"] == 1 and params and opt
    assert not (run / "metrics.json").exists()

    resumed = harness(tmp_path / "log2", "train", "--resume", str(run))
    assert resumed.wait(timeout=300) == 0, (tmp_path / "log2").read_text()
    same_run(run, uninterrupted)
    assert len(list(run.glob("checkpoint-*.npz"))) == 1  # the orphan of the kill is gone too
