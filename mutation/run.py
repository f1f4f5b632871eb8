"""Mutation testing of the ops and the verifier with mutmut (``tox -e mutation``).

    python mutation/run.py                  # every module, then the score
    python mutation/run.py activations op   # these modules only, then the score
    python mutation/run.py --score          # only the score of what was run so far

mutmut cannot mutate the ops as they are written: it skips every decorated function, and
every op is ``@op(...)``-decorated. So the run works on a copy, ``build/mutation/``, in
which each top-level ``@dec def f`` of the mutated modules is written as ``def f`` followed
by ``f = dec(f)`` (the same object ends up bound to the name; see :func:`undecorate`).
mutmut copies that tree again into ``build/mutation/mutants/`` and runs the tests there.

mutmut's fork server imports the tests (and so nn) once and forks a process per mutant, which
is right for every function called while the tests run. But the ``op`` decorator runs at
import time, before any mutant is active: nn/op.py is therefore run apart, with a fork server
that preloads only mutation/preload.txt, so each mutant imports nn afresh, and the functions
that run at import time are given every selected test, since every op call goes through the
closures they build.

Results stay in build/mutation/mutants/ between runs: a killed mutant whose function is
unchanged is not run again; survivors are (so a new test shows at once whether it kills them).
Delete build/mutation/ for a run from scratch.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutation"

# In run order: conv and pool, the slowest, last.
MODULES = [
    "activations", "linear", "losses", "dropout", "reshape", "clip", "norm", "ctc",
    "numdiff", "testing", "op", "conv", "pool",
]  # fmt: skip

# Called while nn is imported (op() registers every op): their mutants need every test.
IMPORT_TIME = ["nn.op.x_op", "nn.op.xǁSignatureǁparse"]
IMPORT_TIME_MODULES = {"op"}

COPY = ["nn", "tests", "spec", "conftest.py", "pyproject.toml", "mutation/preload.txt"]


def undecorate(source: str) -> str:
    """Rewrite each decorated top-level function ``@d1 @d2 def f`` as ``def f`` then
    ``f = d1(d2(f))``, the same binding Python makes, so that mutmut mutates ``f``."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits = []  # (first line, def line, end line, name, decorators), 1-based
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.decorator_list:
            decorators = [ast.get_source_segment(source, d) for d in node.decorator_list]
            first = node.decorator_list[0].lineno
            def_line = next(
                i
                for i in range(first, node.end_lineno + 1)
                if lines[i - 1].lstrip().startswith(("def ", "async def "))
            )
            edits.append((first, def_line, node.end_lineno, node.name, decorators))
    for first, def_line, end, name, decorators in reversed(edits):
        call = name
        for d in reversed(decorators):
            call = f"({d})({call})"
        lines[end:end] = [f"{name} = {call}\n"]
        del lines[first - 1 : def_line - 1]
    return "".join(lines)


def _write_if_changed(path: Path, text: str) -> None:
    """Keep a file's mtime when its content is the same: mutmut reuses its results then."""
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def prepare() -> None:
    """Copy the project into WORK, with the mutated modules undecorated."""
    mutated = {f"nn/{m}.py" for m in MODULES}
    for name in COPY:
        src = ROOT / name
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
        for f in files:
            rel = f.relative_to(ROOT)
            if "__pycache__" in rel.parts:
                continue
            if rel.suffix in {".py", ".md", ".toml", ".txt"}:
                text = f.read_text()
                _write_if_changed(WORK / rel, undecorate(text) if str(rel) in mutated else text)
            elif not (WORK / rel).exists():
                (WORK / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, WORK / rel)


def run_mutmut(modules: list[str]) -> None:
    """``mutmut run`` over these modules' mutants, each group in a fresh process. mutmut
    only finds out which functions were edited since the last run once it runs, and then
    resets their mutants' results: those it was not asked to run get a second pass."""
    for group in (
        [m for m in modules if m not in IMPORT_TIME_MODULES],
        [m for m in modules if m in IMPORT_TIME_MODULES],
    ):
        if group:
            subprocess.run([sys.executable, __file__, "--mutmut", *group], check=True)
            if _pending(group, not_run_only=True):
                subprocess.run(
                    [sys.executable, __file__, "--mutmut", "--not-run", *group], check=True
                )


def _mutmut(modules: list[str], not_run_only: bool = False) -> None:
    """In WORK: mutmut's fork server preloads the tests (and nn), except for the modules
    that run at import time, whose mutants must each import nn afresh."""
    os.chdir(WORK)
    os.environ["CI"] = "true"  # Hypothesis' derandomized profile (conftest.py)
    import mutmut.__main__ as mm  # reads WORK/pyproject.toml on import
    from mutmut.configuration import ForkServerWarmup

    if set(modules) & IMPORT_TIME_MODULES:
        mm.config().forkserver_warmup = ForkServerWarmup.IMPORT
        collect = mm.collect_or_load_stats

        def collect_then_widen(*args: object, **kwargs: object) -> None:
            collect(*args, **kwargs)  # type: ignore[arg-type]
            # Every selected test, also those that call no mutated function (they read what
            # op() registered, for instance): they have a duration, not a caller entry.
            tests = mm.state().tests_by_mangled_function_name
            every = set(mm.state().duration_by_test).union(*tests.values())
            for name in IMPORT_TIME:
                tests[name] = set(every)

        mm.collect_or_load_stats = collect_then_widen
    names = _pending(modules, not_run_only)
    if not names:
        print(f"mutmut over {', '.join(modules)}: every mutant has a result", flush=True)
        return
    start = time.monotonic()
    try:
        mm.cli(["run", "--max-children", "2", *names])
    except SystemExit as e:
        if e.code not in (0, None):
            raise
    print(f"mutmut over {', '.join(modules)}: {time.monotonic() - start:.0f} s", flush=True)


def _pending(modules: list[str], not_run_only: bool = False) -> list[str]:
    """What mutmut must run: a module with no results yet whole, else its mutants that are
    not run, survived or failed to run (a name tells mutmut to run a mutant again); with
    ``not_run_only``, only those with no result."""
    import json

    names = []
    for m in modules:
        meta = WORK / "mutants" / "nn" / f"{m}.py.meta"
        if not meta.exists():
            names.append(f"nn.{m}.*")
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if not_run_only:
            names += [k for k, v in codes.items() if v is None]
        else:
            names += [k for k, v in codes.items() if v not in {1, 2, 3, 24, -24, 152, 36}]
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "modules",
        nargs="*",
        metavar="MODULE",
        help=f"modules of nn/ to mutate (default: all): {', '.join(MODULES)}",
    )
    parser.add_argument("--score", action="store_true", help="only print the score")
    parser.add_argument("--mutmut", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--not-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mutmut:
        _mutmut(args.modules, args.not_run)
        return 0
    if unknown := set(args.modules) - set(MODULES):
        parser.error(f"unknown module(s) {sorted(unknown)}; expected some of {MODULES}")
    os.nice(19)  # the machine is shared; mutmut runs two test processes at a time
    if not args.score:
        prepare()
        run_mutmut(args.modules or MODULES)
    sys.path.insert(0, str(ROOT / "mutation"))
    import score

    return score.main([])


if __name__ == "__main__":
    sys.exit(main())
