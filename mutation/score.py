"""The mutation score of the last mutmut run, per module and overall; fails under 95%.

    score = killed / (mutants - recorded equivalents)

Reads mutmut's results in build/mutation/mutants/nn/*.py.meta and the equivalent mutants
recorded in mutation/equivalents.toml. Each record names a mutant and the line it changes
to; a record whose mutant no longer makes that change (the function was edited and mutmut
renumbered its mutants) is an error, not a silent equivalent. A timeout counts as killed
(the suite did not pass); a mutant whose tests were never run counts as not killed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # a dependency of nn on 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutation"
EQUIVALENTS = ROOT / "mutation" / "equivalents.toml"
THRESHOLD = 0.95

# mutmut's exit codes (mutmut/stats.py). pytest's 2 is an interrupted run: here a mutant
# that breaks the import of nn, so collection fails; the suite is red, the mutant killed.
# 255 is not a timeout here: mutmut's fork server reports an exception in pytest's own
# set-up as -1, which says nothing about the mutant.
STATUS = {
    1: "killed",
    3: "killed",
    2: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    36: "timeout",
    24: "timeout",
    -24: "timeout",
    152: "timeout",
    None: "not run",
}


def load_equivalents(path: Path = EQUIVALENTS) -> dict[str, dict[str, str]]:
    """mutant name -> its record (``line``: the mutated line, ``reason``)."""
    records = tomllib.loads(path.read_text())["equivalent"] if path.exists() else []
    out = {}
    for r in records:
        missing = {"mutant", "line", "reason"} - set(r)
        if missing:
            raise SystemExit(f"{path}: a record lacks {sorted(missing)}: {r}")
        out[r["mutant"]] = r
    return out


def results() -> dict[str, dict[str, int | None]]:
    """module (``nn/relu.py``) -> mutant name -> mutmut's exit code."""
    out = {}
    for meta in sorted((WORK / "mutants" / "nn").glob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        out[f"nn/{meta.name.removesuffix('.meta')}"] = codes
    return out


def mutated_line(name: str) -> str:
    """The first line mutmut's diff of ``name`` adds (``mutmut show``), stripped."""
    sys.path.insert(0, str(WORK))
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    module = name.partition(".x")[0]
    path = Path(*module.split(".")).with_suffix(".py")
    diff = get_diff_for_mutant(name, path=path)
    return next(x[1:].strip() for x in diff.splitlines() if x.startswith("+") and x[1:2] != "+")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--survivors", action="store_true", help="list unrecorded survivors")
    args = parser.parse_args(argv)
    equivalents = load_equivalents()
    by_module = results()
    if not by_module:
        print(f"no mutmut results in {WORK}/mutants: run `tox -e mutation` first")
        return 1
    import os

    os.chdir(WORK)  # mutmut's diff reader works relative to its project
    stale = []
    for name, record in equivalents.items():
        module = "nn/" + name.split(".")[1] + ".py"
        if name not in by_module.get(module, {}):
            stale.append(f"{name}: no such mutant")
        elif (got := mutated_line(name)) != record["line"].strip():
            stale.append(f"{name}: now changes the line to {got!r}, not {record['line']!r}")
    header = f"{'module':<20}{'mutants':>8}{'killed':>8}{'timeout':>8}{'equiv':>7}{'survived':>9}"
    print(header + f"{'not run':>9}{'score':>9}")
    total: Counter[str] = Counter()
    survivors = []
    for module, codes in by_module.items():
        c: Counter[str] = Counter()
        for name, code in codes.items():
            status = STATUS.get(code, "suspicious")
            if status == "survived" and name in equivalents:
                status = "equivalent"
            c[status] += 1
            if status in {"survived", "no tests", "suspicious"}:
                survivors.append(f"{name}: {status}")
        c["mutants"] = len(codes)
        total += c
        print(_row(module, c))
    print(_row("total", total))
    if args.survivors or survivors:
        print("\nnot killed and not recorded as equivalent (`mutmut show NAME` in build/mutation):")
        print("\n".join(f"  {s}" for s in survivors) or "  none")
    if stale:
        print(
            "\nstale records in mutation/equivalents.toml:\n" + "\n".join(f"  {s}" for s in stale)
        )
        return 1
    if total["not run"]:
        print(f"\n{total['not run']} mutant(s) not run yet")
    score = _score(total)
    print(f"\nmutation score {score:.1%} (required {THRESHOLD:.0%})")
    return 0 if score >= THRESHOLD else 1


def _score(c: Counter[str]) -> float:
    killed = c["killed"] + c["timeout"]
    return killed / max(1, c["mutants"] - c["equivalent"] - c["not run"])


def _row(module: str, c: Counter[str]) -> str:
    return (
        f"{module:<20}{c['mutants']:>8}{c['killed']:>8}{c['timeout']:>8}{c['equivalent']:>7}"
        f"{c['survived'] + c['no tests'] + c['suspicious']:>9}{c['not run']:>9}{_score(c):>9.1%}"
    )


if __name__ == "__main__":
    sys.exit(main())
