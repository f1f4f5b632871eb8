"""nn.checkpoint: bitwise round trips, every corrupt or missing file, and crashes between writes."""

from __future__ import annotations

import io
import json
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

import nn.checkpoint
from conftest import same_bits
from nn.atomic import sha256_file
from nn.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from nn.errors import DataError, DTypeError

DTYPES = ["<f4", "<f8", ">f8", "<f2", "<i8", ">i4", "|u1", "|b1", "<c16", "<u8"]
names = st.text(st.sampled_from("ab/._-xé0"), min_size=1, max_size=8)


@st.composite
def array_dicts(draw):
    """Up to 4 named arrays of any listed dtype and shape, from arbitrary bytes (NaN payloads,
    -0.0, bools other than 0 and 1): the round trip must keep every bit."""
    out = {}
    for key in draw(st.lists(names, max_size=4, unique=True)):
        dtype = np.dtype(draw(st.sampled_from(DTYPES)))
        shape = draw(array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
        size = int(np.prod(shape)) * dtype.itemsize
        out[key] = np.frombuffer(draw(st.binary(min_size=size, max_size=size)), dtype).reshape(
            shape
        )
    return out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def assert_bitwise_equal(got, expected):
    assert list(got) == list(expected)  # the same names, in the same order
    for name, a in expected.items():
        b = got[name]
        assert isinstance(b, np.ndarray)
        assert (b.dtype, b.shape) == (a.dtype, a.shape), name
        assert same_bits(b, a), name


def same_json(a, b):
    """Equality for JSON values, NaN equal to NaN."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@given(
    params=array_dicts(),
    opt_state=array_dicts(),
    meta=st.dictionaries(st.text(max_size=5), json_values),
)
def test_round_trip_is_bitwise(params, opt_state, meta):
    """Any dtype (byte order included) and shape (0-d and empty included), any names, any meta."""
    with tempfile.TemporaryDirectory() as directory:
        save_checkpoint(directory, params=params, opt_state=opt_state, meta=meta)
        got_params, got_opt, got_meta = load_checkpoint(directory)
    assert_bitwise_equal(got_params, params)
    assert_bitwise_equal(got_opt, opt_state)
    assert same_json(got_meta, meta)


def test_zero_d_step_names_with_slashes_and_npy_suffixes(tmp_path):
    """An optimizer's 0-d int64 "step", "m/dense0.w", and "w" beside "w.npy" (np.load mixes
    those two up)."""
    params = {"dense0.w": np.ones((2, 3), np.float32), "w": np.zeros(2), "w.npy": np.ones(3)}
    opt = {"step": np.array(7, dtype=np.int64), "m/dense0.w": np.full((2, 3), 0.5, np.float32)}
    save_checkpoint(tmp_path, params=params, opt_state=opt, meta={"best": float("inf")})
    got_params, got_opt, meta = load_checkpoint(tmp_path)
    assert_bitwise_equal(got_params, params)
    assert_bitwise_equal(got_opt, opt)
    assert got_opt["step"].shape == () and got_opt["step"].dtype == np.int64
    assert meta == {"best": float("inf")}


def test_json_describes_the_npz_beside_it(tmp_path):
    save_checkpoint(
        tmp_path / "new" / "dir", params={"w": np.ones(2)}, opt_state={}, meta={"epoch": 3}
    )
    directory = tmp_path / "new" / "dir"
    record = json.loads((directory / "checkpoint.json").read_text())
    assert record["format"] == "nn-checkpoint" and record["version"] == FORMAT_VERSION
    assert record["sha256"] == sha256_file(directory / record["npz"])
    assert record["npz"] == f"checkpoint-{record['sha256'][:16]}.npz"
    assert record["meta"] == {"epoch": 3}
    assert sorted(p.name for p in directory.iterdir()) == sorted(["checkpoint.json", record["npz"]])


# ---- crashes -----------------------------------------------------------------------------------
OLD = {"w": np.arange(4.0)}
NEW = {"w": np.arange(4.0) + 1}


def crash(*args, **kwargs):
    raise OSError("simulated crash")


@pytest.mark.parametrize("writer", ["write_text_atomic", "write_bytes_atomic"])
def test_a_crash_during_either_write_leaves_the_old_checkpoint(tmp_path, monkeypatch, writer):
    """The JSON is the commit point: until it is replaced, the old pair loads, bit for bit."""
    save_checkpoint(tmp_path, params=OLD, opt_state={"step": np.array(1)}, meta={"epoch": 1})
    with monkeypatch.context() as patch:
        patch.setattr(nn.checkpoint, writer, crash)
        with pytest.raises(OSError, match="simulated crash"):
            save_checkpoint(
                tmp_path, params=NEW, opt_state={"step": np.array(2)}, meta={"epoch": 2}
            )
    params, opt, meta = load_checkpoint(tmp_path)
    assert_bitwise_equal(params, OLD)
    assert opt["step"] == 1 and meta == {"epoch": 1}
    # The next save succeeds and leaves one npz: the orphan of the crashed save is removed too.
    save_checkpoint(tmp_path, params=NEW, opt_state={}, meta={"epoch": 3})
    assert_bitwise_equal(load_checkpoint(tmp_path)[0], NEW)
    assert len(list(tmp_path.glob("*.npz"))) == 1 and len(list(tmp_path.iterdir())) == 2


def test_a_crash_before_the_old_npz_is_removed_leaves_the_new_checkpoint(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, params=OLD, opt_state={}, meta={})
    monkeypatch.setattr(Path, "unlink", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(tmp_path, params=NEW, opt_state={}, meta={})
    monkeypatch.undo()
    assert_bitwise_equal(load_checkpoint(tmp_path)[0], NEW)


# ---- refusals ----------------------------------------------------------------------------------
def saved(tmp_path):
    save_checkpoint(tmp_path, params=OLD, opt_state={}, meta={})
    record = json.loads((tmp_path / "checkpoint.json").read_text())
    return tmp_path / record["npz"], record


def rewrite_json(tmp_path, record):
    (tmp_path / "checkpoint.json").write_text(json.dumps(record))


def test_a_corrupted_npz_is_refused_with_both_hashes(tmp_path):
    npz, record = saved(tmp_path)
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 1
    npz.write_bytes(bytes(data))
    received = nn.checkpoint.sha256_bytes(bytes(data))
    expected = record["sha256"]
    message = f"^{re.escape(str(npz))}: SHA-256 mismatch: expected {expected} .*received {received}"
    with pytest.raises(DataError, match=message):
        load_checkpoint(tmp_path)


def test_a_truncated_npz_is_refused(tmp_path):
    npz, _ = saved(tmp_path)
    npz.write_bytes(npz.read_bytes()[:-10])
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("sha256"), "the entry 'sha256' is missing or not a str"),
        (lambda r: r.pop("npz"), "the entry 'npz' is missing"),
        (lambda r: r.update(meta=[1]), "the entry 'meta' is missing or not a dict"),
        (
            lambda r: r.update(version=FORMAT_VERSION + 1),
            "format version 2, this nn reads version 1",
        ),
        (lambda r: r.pop("format"), 'not an nn checkpoint \\(it lacks "format"'),
        (
            lambda r: r.update(npz="../elsewhere.npz"),
            "'../elsewhere.npz' is not a checkpoint file name",
        ),
        (
            lambda r: r.update(npz="checkpoint-0123456789abcdef.npz"),
            "checkpoint-0123456789abcdef.npz: missing",
        ),
    ],
)
def test_a_json_that_does_not_describe_a_checkpoint_is_refused(tmp_path, change, message):
    _, record = saved(tmp_path)
    change(record)
    rewrite_json(tmp_path, record)
    with pytest.raises(DataError, match=message):
        load_checkpoint(tmp_path)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(DataError, match=r"does not exist, so no checkpoint\.json"):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(
        DataError, match=f"^{re.escape(str(tmp_path))}: not a checkpoint: it holds no checkpoint"
    ):
        load_checkpoint(tmp_path)
    npz, _ = saved(tmp_path)
    npz.unlink()
    with pytest.raises(
        DataError, match=f"^{re.escape(str(npz))}: missing \\(named by .*checkpoint"
    ):
        load_checkpoint(tmp_path)
    (tmp_path / "checkpoint.json").write_text("{not json")
    with pytest.raises(DataError, match=r"checkpoint\.json: not valid JSON"):
        load_checkpoint(tmp_path)


def forge(tmp_path, members):
    """An npz of ``members`` with a matching checkpoint.json: only the content can be wrong."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, array in members.items():
            with archive.open(name, "w") as f:
                np.lib.format.write_array(f, array, allow_pickle=True)
    data = buffer.getvalue()
    digest = nn.checkpoint.sha256_bytes(data)
    npz = f"checkpoint-{digest[:16]}.npz"
    (tmp_path / npz).write_bytes(data)
    rewrite_json(
        tmp_path,
        {"format": "nn-checkpoint", "version": 1, "npz": npz, "sha256": digest, "meta": {}},
    )


def test_a_pickled_array_is_never_unpickled(tmp_path):
    forge(tmp_path, {"params/w.npy": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(DataError, match=r"unreadable npz .*pickle"):
        load_checkpoint(tmp_path)


def test_members_outside_params_and_opt_are_refused(tmp_path):
    forge(tmp_path, {"other/w.npy": np.ones(2)})
    with pytest.raises(DataError, match=r"unexpected member 'other/w\.npy'"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"params": {"w": np.array([None])}},
            DTypeError,
            r"params\['w'\] has dtype object, which would need pickle",
        ),
        (
            {"opt_state": {"": np.ones(1)}},
            DataError,
            "opt_state keys must be non-empty strings, received ''",
        ),
        (
            {"params": {3: np.ones(1)}},
            DataError,
            "params keys must be non-empty strings, received 3",
        ),
        ({"params": [np.ones(1)]}, DataError, "params must be a dict, received list"),
        (
            {"meta": {"x": np.ones(1)}},
            DataError,
            "meta must be JSON-serializable: Object of type ndarray",
        ),
        ({"meta": [1]}, DataError, "meta must be a dict, received list"),
    ],
)
def test_save_refuses_what_it_could_not_load_back(tmp_path, kwargs, error, message):
    arguments = {"params": {}, "opt_state": {}, "meta": {}} | kwargs
    with pytest.raises(error, match=f"^save_checkpoint: {message}"):
        save_checkpoint(tmp_path, **arguments)
    assert list(tmp_path.iterdir()) == []  # nothing written
