"""Atomic writes: all or nothing, readable as the umask says, and exclusive creation."""

import os
import threading

import pytest

from nn.atomic import create_bytes_exclusive, write_bytes_atomic


def test_written_files_follow_the_umask_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        write_bytes_atomic(tmp_path / "a", b"x")
        create_bytes_exclusive(tmp_path / "b", b"y")
    finally:
        os.umask(old)
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "f"
    write_bytes_atomic(target, b"old")

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_exclusive_creation_has_exactly_one_winner(tmp_path):
    target = tmp_path / "config.toml"
    outcomes = []

    def claim(i):
        try:
            create_bytes_exclusive(target, f"run {i}".encode())
            outcomes.append("won")
        except FileExistsError:
            outcomes.append("lost")

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost"] * 7 + ["won"]
    assert target.read_text().startswith("run ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]
