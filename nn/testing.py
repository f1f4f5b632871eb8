"""The public verifier: check any op's vjp against finite differences.

Users call it on their own ops exactly as the library's test-suite does::

    report = check_vjp(my_op, x, w)        # raises VerificationError on failure

It implements the verification protocol of DESIGN.md (tolerances measured there):

* P1 complex step, for complex-safe ops:
  ``|Im phi(x + ihu)/h - <g,u>| <= 1e-10 |<g,u>| + 1e-13 ||g||``;
* P2 central differences, for every op: ``|fd - <g,u>| <= 1e-6 |<g,u>| + 1e-8 ||g||``;
* P3 Gaussian unit directions with fixed seeds, each input alone and all jointly, and a
  Gaussian cotangent ``v`` on the output: ``phi(x) = <f(x), v>`` and ``g = vjp(v)``;
* P4 the full Jacobian on tiny shapes: ``|a - n| <= 1e-6 |n| + 1e-7 max|n|``;
* P5 samplers that keep inputs at least ``1e-3`` away from the op's kinks;
* P7 reentrancy: ``vjp`` twice gives bitwise-identical cotangents and mutates nothing.

Every check is a :class:`~nn.report.Check` that names the op, the method, the input and the
direction's seed, with both numbers and the tolerance, so a failure can be reproduced and read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from nn.errors import DTypeError, VerificationError
from nn.numdiff import (
    CENTRAL_EPS,
    COMPLEX_H,
    central_difference,
    complex_step,
    gaussian_direction,
    numerical_jacobian,
    vjp_jacobian,
)
from nn.op import Array, OpFn
from nn.report import Check, Report, compare_arrays
from nn.sampling import KINK_MARGIN, info_of, sample_inputs

#: Protocol constants (DESIGN.md, "The verification protocol").
COMPLEX_RTOL, COMPLEX_ATOL = 1e-10, 1e-13  # with step COMPLEX_H = 1e-20
CENTRAL_RTOL, CENTRAL_ATOL = 1e-6, 1e-8  # with step CENTRAL_EPS = 1e-6
JACOBIAN_RTOL, JACOBIAN_ATOL, JACOBIAN_MAX_SIZE = 1e-6, 1e-7, 300
FLOAT32_RTOL, FLOAT32_ATOL = 1e-5, 1e-6  # float32 forward against float64, |y64| relative
COTANGENT_STREAM = 0xC07A  # spawn keys that keep the verifier's draws apart from user data


def check_vjp(
    fn: OpFn,
    *arrays: Array,
    static: dict[str, Any] | None = None,
    seed: int = 0,
    directions: int = 2,
    complex_safe: bool | None = None,
    jacobian: bool | None = None,
    raise_on_failure: bool = True,
    atol_scale: str = "moved",
    names: Sequence[str] | None = None,
) -> Report:
    """Verify ``fn``'s vjp at ``arrays`` (float64) by the protocol P1-P4 and P7.

    ``complex_safe`` defaults to the registry's entry for registered ops and to ``False``
    for a user's function; ``jacobian`` defaults to whether all inputs together have at
    most 300 entries.

    ``atol_scale`` chooses the ``||g||`` of the absolute term: the gradient of the inputs
    moved (``"moved"``, the default) or of all inputs (``"all"``, for a whole network). An
    early layer's bias in a saturating net can have a gradient 1e2-1e4 times smaller than
    the loss, or more; then P2's absolute term ``1e-8 ||g_moved||`` falls below the rounding
    floor ``~1e-16 |f| / eps = 1e-10 |f|`` of the central difference, and a correct gradient
    would fail. With ``"all"`` P4's absolute term likewise scales with the largest entry of
    all inputs' Jacobians, not the one input's: a bias followed by batch norm has a true
    gradient of exactly 0, and its finite difference is rounding alone. ``names`` labels the
    inputs in messages (default: the registered op's argument names, else ``argument 0``,
    ``argument 1``, ...).

    Returns a :class:`~nn.report.Report`; raises
    :class:`~nn.errors.VerificationError` when a check fails, unless ``raise_on_failure=False``.

    >>> from nn import tanh
    >>> check_vjp(tanh, np.array([0.5, -1.0])).passed
    True
    """
    if directions < 1:
        raise ValueError(f"check_vjp: directions must be at least 1 (P3 uses 2), got {directions}")
    if seed < 0:
        raise ValueError(f"check_vjp: seed must be a non-negative integer, received {seed}")
    if atol_scale not in ("moved", "all"):
        raise ValueError(f"check_vjp: atol_scale must be 'moved' or 'all', received {atol_scale!r}")
    static = dict(static or {})
    info = info_of(fn)
    name = _name_of(fn)
    if names is not None and len(names) != len(arrays):
        raise ValueError(
            f"check_vjp: names must label each of the {len(arrays)} inputs, received {names!r}"
        )
    names = (
        tuple(names)
        if names is not None
        else info.arg_names
        if info
        else tuple(f"argument {i}" for i in range(len(arrays)))
    )
    safe = (info.complex_safe if info else False) if complex_safe is None else complex_safe
    arrays = tuple(np.asarray(a) for a in arrays)
    for n, a in zip(names, arrays, strict=False):
        if a.dtype != np.float64:
            raise DTypeError(
                f"check_vjp({name}): {n} must be float64 (P0: gradients are checked in float64; "
                f"check_float32 covers float32), received {a.dtype}"
            )
    report = Report(name)
    before = [a.copy() for a in arrays]

    out, vjp = fn(*arrays, **static)
    out_before = np.array(out, copy=True)
    # P3 Gaussian cotangent. Its own stream (seed, COTANGENT_STREAM): with a plain
    # default_rng(seed), a user's x = default_rng(0).normal(...) would equal v, and then
    # x^T v is symmetric and a transposed weight gradient goes unseen.
    v = np.random.default_rng([seed, COTANGENT_STREAM]).standard_normal(np.shape(out))
    v_copy = v.copy()
    g_returned = vjp(v)
    if not _contract(report, g_returned, arrays, names, out):
        return report.raise_if_failed() if raise_on_failure else report
    g = tuple(np.array(c, copy=True) for c in g_returned)  # safe from a later call's writes
    _reentrancy(report, vjp, g_returned, g, v, v_copy, arrays, before, out, out_before)

    groups = [[i] for i in range(len(arrays))] + (
        [list(range(len(arrays)))] if len(arrays) > 1 else []
    )
    for gi, moved in enumerate(groups):
        if sum(arrays[i].size for i in moved) == 0:
            continue  # no entries, no direction to move in
        label = names[moved[0]] if len(moved) == 1 else "all inputs jointly"
        scaled = moved if atol_scale == "moved" else range(len(arrays))
        gnorm = np.sqrt(sum(float(np.sum(g[i] * g[i])) for i in scaled))
        for k in range(directions):
            key = (seed, gi, k)
            u = gaussian_direction(key, arrays, moved)
            exact = float(sum(np.sum(g[i] * u[i]) for i in moved))  # <g, u>
            fd = central_difference(fn, arrays, static, u, v)
            tol = CENTRAL_RTOL * abs(exact) + CENTRAL_ATOL * gnorm
            report.checks.append(
                Check(name, "central-difference", label, key, fd, exact, abs(fd - exact), tol)
            )
            if safe:
                cs = complex_step(fn, arrays, static, u, v)
                tol = COMPLEX_RTOL * abs(exact) + COMPLEX_ATOL * gnorm
                report.checks.append(
                    Check(name, "complex-step", label, key, cs, exact, abs(cs - exact), tol)
                )

    small = sum(a.size for a in arrays) <= JACOBIAN_MAX_SIZE and np.size(out) <= JACOBIAN_MAX_SIZE
    if small if jacobian is None else jacobian:
        pairs = [
            (numerical_jacobian(fn, arrays, static, i), vjp_jacobian(fn, arrays, static, i))
            for i in range(len(arrays))
        ]  # (out.size, x_i.size) each
        every = max((float(np.abs(num).max()) for num, _ in pairs if num.size), default=0.0)
        for (num, ana), label in zip(pairs, names, strict=True):
            scale = every if atol_scale == "all" else None
            report.checks.append(_jacobian_check(num, ana, name, label, scale))
    return report.raise_if_failed() if raise_on_failure else report


def _contract(
    report: Report, g: Any, arrays: Sequence[Array], names: Sequence[str], out: Any
) -> bool:
    """The op contract: one cotangent per input, with its shape and dtype; output dtype kept."""
    problems = []
    if not isinstance(g, tuple) or len(g) != len(arrays):
        problems.append(
            f"vjp must return a tuple of {len(arrays)} cotangents, returned {type(g).__name__}"
            + (f" of {len(g)}" if isinstance(g, tuple) else "")
        )
    else:
        for c, a, n in zip(g, arrays, names, strict=True):
            if np.shape(c) != a.shape or np.asarray(c).dtype != a.dtype:
                problems.append(
                    f"cotangent of {n} is {np.shape(c)} {np.asarray(c).dtype}, "
                    f"input is {a.shape} {a.dtype}"
                )
    if np.asarray(out).dtype != arrays[0].dtype:
        problems.append(
            f"output dtype {np.asarray(out).dtype} differs from input dtype {arrays[0].dtype}"
        )
    report.checks.append(Check.from_problems(report.op, "contract", "vjp", problems))
    return not problems


def _reentrancy(
    report: Report,
    vjp: Any,
    g_returned: tuple[Array, ...],
    g: tuple[Array, ...],
    v: Array,
    v_copy: Array,
    arrays: Sequence[Array],
    before: Sequence[Array],
    out: Array,
    out_before: Array,
) -> None:
    """P7: a second vjp call is bitwise identical, and nothing was written in place.

    ``g`` is a copy of the first call's cotangents taken before the second call, so a vjp
    that hands out one reused buffer (correct once, overwritten later) is caught.
    """
    again = vjp(v)
    problems = [
        f"cotangent {i} differs on the second call"
        for i, (a, b) in enumerate(zip(g, again, strict=True))
        if np.asarray(a).tobytes() != np.asarray(b).tobytes()
    ]
    problems += [
        f"cotangent {i} is one buffer reused by every call: a later call overwrites it"
        for i, (a, b) in enumerate(zip(g_returned, again, strict=True))
        if np.shares_memory(a, b) and not np.shares_memory(b, v)  # returning g itself is fine
    ]
    problems += ["vjp mutated its cotangent argument g"] if v.tobytes() != v_copy.tobytes() else []
    problems += ["the output was mutated"] if out.tobytes() != out_before.tobytes() else []
    problems += [
        f"input {i} was mutated"
        for i, (a, b) in enumerate(zip(arrays, before, strict=True))
        if a.tobytes() != b.tobytes()
    ]
    report.checks.append(Check.from_problems(report.op, "reentrancy", "vjp", problems))


def _jacobian_check(n: Array, a: Array, name: str, label: str, scale: float | None) -> Check:
    """P4: every entry of one input's Jacobian, numerical ``n`` against the vjp's ``a``,
    reported at its worst entry."""
    check = compare_arrays(name, "jacobian", label, n, a, JACOBIAN_RTOL, JACOBIAN_ATOL, scale)
    if check.index is None:
        return check
    row, col = check.index
    return replace(check, note=f"worst entry: output {row}, input element {col}")


def check_reference(
    fn: OpFn,
    reference: Callable[..., Any],
    *arrays: Array,
    static: dict[str, Any] | None = None,
    rtol: float = 1e-12,
    atol: float = 1e-14,
    raise_on_failure: bool = True,
) -> Check:
    """P8: compare the forward value with an independent reference implementation.

    Gradient checks cannot see a forward bug (a wrong constant has the right derivative);
    this can. Pass if ``|y - r| <= rtol |r| + atol max|r|`` everywhere.
    """
    static = dict(static or {})
    name = _name_of(fn)
    y = np.asarray(fn(*arrays, **static)[0])
    r = np.asarray(reference(*arrays, **static))
    if y.shape != r.shape:
        raise VerificationError(f"{name}: output shape {y.shape}, reference shape {r.shape}")
    check = compare_arrays(name, "reference", "output", r, y, rtol, atol)
    if raise_on_failure and not check.passed:
        raise VerificationError(check.message())
    return check


def check_float32(
    fn: OpFn, *arrays: Array, static: dict[str, Any] | None = None, raise_on_failure: bool = True
) -> Check:
    """P0: float32 stays float32, forward and backward, and agrees with float64.

    The output and every cotangent of float32 inputs must be float32 (a silent float64
    upcast doubles memory and halves speed), and the output must satisfy
    ``|y32 - y64| <= 1e-5 |y64| + 1e-6 max|y64|`` everywhere.
    """
    static = dict(static or {})
    name = _name_of(fn)
    y64 = np.asarray(fn(*[a.astype(np.float64) for a in arrays], **static)[0])
    y32, vjp32 = fn(*[a.astype(np.float32) for a in arrays], **static)
    y32 = np.asarray(y32)
    dtypes = [np.asarray(c).dtype for c in vjp32(np.ones(y32.shape, np.float32))]
    problems = [f"float32 in, {y32.dtype} out"] if y32.dtype != np.float32 else []
    problems += [f"cotangent {i} is {d}" for i, d in enumerate(dtypes) if d != np.float32]
    if problems:
        check = Check.from_problems(name, "float32", "output", problems)
    else:
        check = compare_arrays(name, "float32", "output", y64, y32, FLOAT32_RTOL, FLOAT32_ATOL)
    if raise_on_failure and not check.passed:
        raise VerificationError(check.message())
    return check


def _name_of(fn: OpFn) -> str:
    info = info_of(fn)
    return info.name if info else getattr(fn, "__name__", "op")


__all__ = [
    "CENTRAL_EPS",
    "COMPLEX_H",
    "COTANGENT_STREAM",
    "KINK_MARGIN",
    "Check",
    "Report",
    "central_difference",
    "check_float32",
    "check_reference",
    "check_vjp",
    "compare_arrays",
    "complex_step",
    "gaussian_direction",
    "info_of",
    "numerical_jacobian",
    "sample_inputs",
    "vjp_jacobian",
]
