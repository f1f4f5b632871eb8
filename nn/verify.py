"""``python -m nn verify``: run the verifier on every registered op, live, and print a table.

For each op: inputs from :func:`~nn.sampling.sample_inputs` (kinks avoided), the vjp checks of
:func:`nn.testing.check_vjp` in float64 and the float32 check (dtypes kept, forward agreement).
Each row shows the worst error of a method as a fraction of its tolerance: 1.0 is the limit,
smaller is better.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import TextIO

import numpy as np

from nn.op import REGISTRY, OpInfo
from nn.testing import Report, check_float32, check_vjp, sample_inputs

METHODS = ("contract", "reentrancy", "complex-step", "central-difference", "jacobian", "float32")


def verify_op(info: OpInfo, seeds: Iterable[int] = (0, 1)) -> Report:
    """All checks of one op at a few seeded input samples, gathered in one report."""
    fn = info.fn
    report = Report(info.name)
    for seed in seeds:
        arrays, static = sample_inputs(info, seed=seed)
        report.checks += check_vjp(
            fn, *arrays, static=static, seed=seed, raise_on_failure=False
        ).checks
        report.checks.append(check_float32(fn, *arrays, static=static, raise_on_failure=False))
    return report


def verify_all(out: TextIO | None = None) -> bool:
    """Verify every registered op, print the table to ``out`` (stdout); True if all passed."""
    out = sys.stdout if out is None else out  # looked up now, so redirection is honoured
    start = time.perf_counter()
    rows = []
    failed = []
    for info in REGISTRY.values():
        report = verify_op(info)
        if not report.passed:
            failed.append(info.name)
        for method in METHODS:
            worst = report.worst(method)
            if worst is None:
                rows.append((info.name, method, "-", "not applicable"))
            else:
                passed = all(c.passed for c in report.checks if c.method == method)
                rows.append(
                    (info.name, method, f"{worst.ratio:.2e}", "verified" if passed else "FAILED")
                )
        for failure in report.failures:
            rows.append((info.name, "", "", failure.message()))
    widths = [
        max(len(r[i]) for r in [*rows, ("op", "method", "worst error/tol", "")]) for i in range(3)
    ]
    print(
        f"{'op':{widths[0]}}  {'method':{widths[1]}}  {'worst error/tol':>{widths[2]}}  verdict",
        file=out,
    )
    for name, method, ratio, verdict in rows:
        print(
            f"{name:{widths[0]}}  {method:{widths[1]}}  {ratio:>{widths[2]}}  {verdict}", file=out
        )
    elapsed = time.perf_counter() - start
    if failed:
        print(
            f"\n{len(failed)} of {len(REGISTRY)} ops FAILED: {', '.join(failed)} ({elapsed:.1f} s)",
            file=out,
        )
    else:
        print(
            f"\nall {len(REGISTRY)} ops verified ({elapsed:.1f} s, numpy {np.__version__})",
            file=out,
        )
    return not failed
