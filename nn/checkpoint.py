"""Checkpoints: parameters and optimizer state in an ``.npz``, described by a JSON file.

A checkpoint directory holds two files::

    checkpoint-<first 16 hex digits of its SHA-256>.npz   arrays "params/<name>", "opt/<name>"
    checkpoint.json   {"format", "version", "npz": that file's name, "sha256", "meta"}

No pickle anywhere: the ``.npz`` is read with ``allow_pickle=False`` and ``meta`` is JSON.

Why the ``.npz`` is named by its hash: two files cannot be replaced in one atomic step, so a
crash between them must leave a consistent pair. :func:`save_checkpoint` writes the new ``.npz``
under a new name (atomically), then ``checkpoint.json`` (atomically), and only then deletes the
old ``.npz``. Whenever it is interrupted, ``checkpoint.json`` names an ``.npz`` that is complete
and whose SHA-256 it records: the old checkpoint before the JSON is replaced, the new one after.
A fixed name ``checkpoint.npz`` would, after a crash between the two writes, hold the new arrays
under the old JSON: a checkpoint that can be detected as corrupt but not loaded.

:func:`load_checkpoint` hashes the ``.npz`` bytes it read and parses those same bytes, so what
it returns is exactly what was saved: arrays bitwise equal, with dtype (byte order included)
and shape (0-d arrays included), and ``meta`` as :func:`json.loads` returns it.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from nn.atomic import (
    ZIP_ERRORS,
    npz_bytes,
    read_npy,
    sha256_bytes,
    write_bytes_atomic,
    write_text_atomic,
)
from nn.errors import DataError, DTypeError

__all__ = ["FORMAT_VERSION", "load_checkpoint", "save_checkpoint"]

FORMAT_VERSION = 1
JSON_NAME = "checkpoint.json"
_NPZ_NAME = re.compile(r"checkpoint-[0-9a-f]{16}\.npz")
_GROUPS = {"params": "params", "opt": "opt_state"}  # npz prefix -> argument name

Arrays = dict[str, np.ndarray]


def save_checkpoint(
    directory: str | os.PathLike[str], *, params: Arrays, opt_state: Arrays, meta: dict[str, Any]
) -> None:
    """Save ``params``, ``opt_state`` and the JSON-able ``meta`` in ``directory`` (made if needed).

    Array names are any non-empty strings ("/" included); ``meta`` must be a dict that
    :func:`json.dumps` accepts (floats ``inf`` and ``nan`` are written as Python's JSON does).

    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> save_checkpoint(d, params={"dense0.w": np.eye(2, dtype=np.float32)},
    ...                 opt_state={"step": np.array(3)}, meta={"epoch": 1})
    >>> params, opt_state, meta = load_checkpoint(d)
    >>> params["dense0.w"].dtype, opt_state["step"], meta
    (dtype('float32'), array(3), {'epoch': 1})
    """
    arrays: Arrays = {}
    for prefix, argument in _GROUPS.items():
        group = params if prefix == "params" else opt_state
        if not isinstance(group, dict):
            raise DataError(
                f"save_checkpoint: {argument} must be a dict, received {type(group).__name__}"
            )
        for name, value in group.items():
            if not isinstance(name, str) or not name:
                raise DataError(
                    f"save_checkpoint: {argument} keys must be non-empty strings, received {name!r}"
                )
            array = np.asarray(value)
            if array.dtype.hasobject:
                raise DTypeError(
                    f"save_checkpoint: {argument}[{name!r}] has dtype {array.dtype}, which would "
                    "need pickle; checkpoints hold numeric arrays only"
                )
            arrays[f"{prefix}/{name}"] = array
    if not isinstance(meta, dict):
        raise DataError(f"save_checkpoint: meta must be a dict, received {type(meta).__name__}")
    data = npz_bytes(arrays)
    digest = sha256_bytes(data)
    npz_name = f"checkpoint-{digest[:16]}.npz"
    try:
        record = {"format": "nn-checkpoint", "version": FORMAT_VERSION}
        text = json.dumps(record | {"npz": npz_name, "sha256": digest, "meta": meta}, indent=1)
    except (TypeError, ValueError) as error:
        raise DataError(f"save_checkpoint: meta must be JSON-serializable: {error}") from None
    directory = Path(directory)
    write_bytes_atomic(directory / npz_name, data)
    write_text_atomic(directory / JSON_NAME, text + "\n")  # the commit point
    for stale in directory.iterdir():
        if _NPZ_NAME.fullmatch(stale.name) and stale.name != npz_name:
            stale.unlink(missing_ok=True)


def load_checkpoint(directory: str | os.PathLike[str]) -> tuple[Arrays, Arrays, dict[str, Any]]:
    """``(params, opt_state, meta)`` saved by :func:`save_checkpoint` in ``directory``.

    Every way a checkpoint can be missing, corrupt, truncated or not ours is a
    :class:`~nn.errors.DataError` naming the file and what is wrong; in particular the ``.npz``
    must have the SHA-256 recorded in ``checkpoint.json``.
    """
    directory = Path(directory)
    json_path = directory / JSON_NAME
    if not json_path.is_file():
        what = "it holds no" if directory.is_dir() else "the directory does not exist, so no"
        raise DataError(f"{directory}: not a checkpoint: {what} {JSON_NAME}")
    try:
        record = json.loads(json_path.read_text(encoding="utf-8"))
    # ValueError: bad UTF-8, bad JSON, or an integer of more than 4300 digits;
    # RecursionError: arrays or objects nested thousands deep
    except (ValueError, RecursionError) as error:
        raise DataError(f"{json_path}: not valid JSON ({type(error).__name__}: {error})") from None
    if not isinstance(record, dict) or record.get("format") != "nn-checkpoint":
        raise DataError(f'{json_path}: not an nn checkpoint (it lacks "format": "nn-checkpoint")')
    if record.get("version") != FORMAT_VERSION:
        raise DataError(
            f"{json_path}: checkpoint format version {record.get('version')!r}, this nn reads "
            f"version {FORMAT_VERSION}"
        )
    for key, kind in (("npz", str), ("sha256", str), ("meta", dict)):
        if not isinstance(record.get(key), kind):
            raise DataError(f"{json_path}: the entry {key!r} is missing or not a {kind.__name__}")
    if not _NPZ_NAME.fullmatch(record["npz"]):
        raise DataError(f"{json_path}: {record['npz']!r} is not a checkpoint file name")
    npz_path = directory / record["npz"]
    if not npz_path.is_file():
        raise DataError(f"{npz_path}: missing (named by {json_path})")
    data = npz_path.read_bytes()
    received = sha256_bytes(data)
    if received != record["sha256"]:
        raise DataError(
            f"{npz_path}: SHA-256 mismatch: expected {record['sha256']} (from {JSON_NAME}), "
            f"received {received}; the file is corrupt, truncated or was replaced"
        )
    params, opt_state = _read_arrays(data, npz_path)
    return params, opt_state, record["meta"]


def _read_arrays(data: bytes, path: Path) -> tuple[Arrays, Arrays]:
    # zipfile and read_array rather than np.load: np.load's lookup maps a name "a.npy" to the
    # member of an array named "a", so names ending in ".npy" would be ambiguous.
    groups: dict[str, Arrays] = {"params": {}, "opt": {}}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                prefix, _, name = member.removesuffix(".npy").partition("/")
                if not member.endswith(".npy") or prefix not in groups or not name:
                    raise DataError(f"{path}: unexpected member {member!r} (not params/* or opt/*)")
                try:
                    groups[prefix][name] = read_npy(archive.read(member))  # memory: what is there
                except ValueError as error:
                    raise DataError(f"{path}: unreadable npz member {member!r} ({error})") from None
    except DataError:
        raise
    except ZIP_ERRORS as error:
        raise DataError(f"{path}: unreadable npz ({type(error).__name__}: {error})") from None
    return groups["params"], groups["opt"]
