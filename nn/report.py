"""What verification produces: a :class:`Check` per comparison, gathered in a :class:`Report`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nn.errors import VerificationError


@dataclass(frozen=True)
class Check:
    """One comparison: ``error`` (``|numeric - analytic|``) must not exceed ``tolerance``."""

    op: str
    method: str
    input: str
    direction: tuple[int, ...] | None
    """``(seed, group, draw)`` of a directional check: ``gaussian_direction`` redraws it."""
    numeric: float
    analytic: float
    error: float
    tolerance: float
    note: str = ""
    index: tuple[int, ...] | None = None
    """Where in the compared array the worst entry is, for entrywise comparisons."""

    @classmethod
    def from_problems(cls, op: str, method: str, label: str, problems: list[str]) -> Check:
        """A yes/no check (contract, reentrancy): it passes when ``problems`` is empty."""
        return cls(
            op, method, label, None, 0.0, 0.0, float(len(problems)), 0.0, "; ".join(problems)
        )

    @property
    def ratio(self) -> float:
        """The error as a fraction of its tolerance; at most 1 passes."""
        if self.tolerance > 0:
            return self.error / self.tolerance
        return 0.0 if self.error == 0 else float("inf")

    @property
    def passed(self) -> bool:
        """Whether the error is within the tolerance (a NaN error never is)."""
        return bool(self.ratio <= 1.0)

    def message(self) -> str:
        where = (
            "" if self.direction is None else f", direction {self.direction} (seed, group, draw)"
        )
        return (
            f"{self.op}: {self.method} check on {self.input}{where}: numeric {self.numeric:.10g} "
            f"vs analytic {self.analytic:.10g}, error {self.error:.3g} "
            f"{'<=' if self.passed else '>'} tolerance {self.tolerance:.3g}"
            + (f" ({self.note})" if self.note else "")
        )


@dataclass
class Report:
    """All checks run on one op; :meth:`raise_if_failed` turns failures into an error."""

    op: str
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        """The checks that did not pass, in the order they ran."""
        return [c for c in self.checks if not c.passed]

    def worst(self, method: str) -> Check | None:
        """The check of ``method`` with the largest error-to-tolerance ratio."""
        found = [c for c in self.checks if c.method == method]
        return max(found, key=lambda c: np.nan_to_num(c.ratio, nan=np.inf)) if found else None

    def raise_if_failed(self) -> Report:
        """Raise :class:`~nn.errors.VerificationError` naming each failed check, or return self."""
        if not self.passed:
            lines = "\n  ".join(c.message() for c in self.failures)
            raise VerificationError(f"{self.op} failed {len(self.failures)} check(s):\n  {lines}")
        return self


def compare_arrays(
    op: str,
    method: str,
    label: str,
    expected: Any,
    actual: Any,
    rtol: float,
    atol: float,
    scale: float | None = None,
) -> Check:
    """Compare entrywise: pass if ``|actual - expected| <= rtol |expected| + atol max|expected|``.

    ``scale``, if given, replaces ``max|expected|`` in the absolute term.

    The check reports the entry with the largest error-to-tolerance ratio (a NaN error counts
    as infinite), and its index.

    >>> compare_arrays("op", "m", "x", np.array([1.0, 2.0]), np.array([1.0, 2.1]), 1e-6, 0).index
    (1,)
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.size == 0:
        return Check(op, method, label, None, 0.0, 0.0, 0.0, 0.0, "empty")
    tol = rtol * np.abs(e) + atol * (float(np.abs(e).max()) if scale is None else scale)
    err = np.abs(a - e)
    # Worst by ratio, as Check.ratio defines it: a zero tolerance allows exactly zero error.
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(tol > 0, err / np.where(tol > 0, tol, 1), np.where(err > 0, np.inf, 0))
    w = int(np.argmax(np.where(np.isnan(err), np.inf, ratio)))
    index = tuple(int(i) for i in np.unravel_index(w, e.shape))
    return Check(
        op, method, label, None, float(e.flat[w]), float(a.flat[w]), float(err.flat[w]),
        float(tol.flat[w]), f"worst entry {index}", index,
    )  # fmt: skip
