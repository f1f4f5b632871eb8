"""``python -m nn verify``: every registered op in the table, and a red table when one breaks."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from nn.cli import main
from nn.op import REGISTRY, OpInfo, Signature
from nn.verify import METHODS


def test_verify_lists_every_op_and_method_as_verified(capsys):
    assert main(["verify"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()[1:] if line.strip() and " " in line]
    for name, info in REGISTRY.items():
        verdicts = {r[1]: r[-1] for r in rows if r[0] == name}
        assert set(verdicts) == set(METHODS), name
        for method, verdict in verdicts.items():
            expected = (
                "applicable" if method == "complex-step" and not info.complex_safe else "verified"
            )
            assert verdict == expected, (name, method)
    assert f"all {len(REGISTRY)} ops verified" in out


def _broken_tanh(x):
    y = np.tanh(x)
    return y, lambda g: (g * (1 - y * y) * 1.01,)


def test_verify_fails_and_names_a_broken_op(capsys, monkeypatch):
    sig = Signature.parse("()->()")
    info = OpInfo("broken_tanh", _broken_tanh, sig, True, (), None, (), "tanh", ("x",))
    monkeypatch.setitem(REGISTRY, "broken_tanh", info)
    assert main(["verify"]) == 1
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()]
    assert ["broken_tanh", "central-difference"] in [r[:2] for r in rows]
    assert [r[-1] for r in rows if r[:2] == ["broken_tanh", "central-difference"]] == ["FAILED"]
    assert f"1 of {len(REGISTRY)} ops FAILED: broken_tanh" in out


def test_python_dash_m_nn_verify_runs_as_a_program():
    done = subprocess.run(
        [sys.executable, "-m", "nn", "verify"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verified" in done.stdout


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2
    assert "verify" in capsys.readouterr().err
