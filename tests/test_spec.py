"""Traceability: every op has a spec page, every page an op, every invariant a test.

The spec pages are the contract; this file keeps them and the code from drifting apart.
The checks are functions over a directory tree so they can be tested on broken trees too
(a traceability test that cannot fail would be a defect).
"""

from __future__ import annotations

import ast
import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from nn.op import REGISTRY, OpInfo

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ["Definition", "Gradient", "Shapes", "Numerics", "Invariants", "Example"]
HEADER_KEYS = {"op", "module", "signature", "complex_safe", "kinks"}
# Equations that are not ops (initializers, update rules, schedules) have "rule" pages.
RULE_SECTIONS = ["Definition", "Derivation", "Numerics", "Invariants", "Example"]
RULE_HEADER_KEYS = {"rule", "module", "objects"}
RULE_MODULES = (
    "nn.init", "nn.optim", "nn.schedules", "nn.augment", "nn.clip", "nn.decode", "nn.digit_strings",
    "nn.ensemble",
)  # fmt: skip


def public_names(modules: tuple[str, ...] = RULE_MODULES) -> dict[str, list[str]]:
    """``module -> __all__`` for the modules whose every public name needs a rule page."""
    return {m: list(importlib.import_module(m).__all__) for m in modules}


@dataclass
class Page:
    path: Path
    header: dict[str, str]
    sections: list[str]
    invariants: dict[int, str]  # number -> text


def read_page(path: Path) -> Page:
    text = path.read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    header = {}
    for line in match.group(1).splitlines() if match else []:
        key, _, value = line.partition(":")
        header[key.strip()] = value.strip().strip('"')
    sections = re.findall(r"^## (.+?)\s*$", text, re.M)
    invariants: dict[int, str] = {}
    part = re.search(r"^## Invariants\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    for number, item in re.findall(
        r"^(\d+)\. (.*?)(?=^\d+\. |\Z)", part.group(1) if part else "", re.M | re.S
    ):
        invariants[int(number)] = item.strip()
    return Page(path, header, sections, invariants)


def spec_markers(tests_dir: Path) -> dict[tuple[str, int], list[str]]:
    """``(op, n) -> ["tests/test_x.py::test_name", ...]`` from ``@pytest.mark.spec`` decorators."""
    found: dict[tuple[str, int], list[str]] = {}
    for path in sorted(tests_dir.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef):
                continue
            for deco in node.decorator_list:
                if (
                    isinstance(deco, ast.Call)
                    and ast.unparse(deco.func) == "pytest.mark.spec"
                    and len(deco.args) == 2
                ):
                    key = (ast.literal_eval(deco.args[0]), ast.literal_eval(deco.args[1]))
                    found.setdefault(key, []).append(f"tests/{path.name}::{node.name}")
    return found


def traceability_problems(
    spec_dir: Path,
    tests_dir: Path,
    registry: dict[str, OpInfo],
    rule_modules: dict[str, list[str]] | None = None,
) -> list[str]:
    """Every way the spec pages, the registry, the rule modules and the tests disagree."""
    problems = []
    rule_modules = rule_modules or {}
    pages = {p.stem: read_page(p) for p in sorted(spec_dir.glob("*.md")) if p.name != "README.md"}
    markers = spec_markers(tests_dir)
    for name, info in registry.items():
        if info.spec not in pages:
            problems.append(f"op {name!r} has no spec page spec/{info.spec}.md")
    covered: set[tuple[str, str]] = set()  # (module, name) named by some rule page
    for stem, page in pages.items():
        where = f"spec/{stem}.md"
        if "rule" in page.header:
            problems += _rule_page_problems(where, stem, page, rule_modules, covered)
            sections = RULE_SECTIONS
        else:
            if missing := HEADER_KEYS - page.header.keys():
                problems.append(f"{where}: header lacks {sorted(missing)} (or a 'rule' header)")
                continue
            info = registry.get(page.header["op"])
            if info is None:
                problems.append(f"{where} names op {page.header['op']!r}, which is not registered")
                continue
            problems += _op_page_problems(where, stem, page, info)
            sections = SECTIONS
        if [s for s in page.sections if s in sections] != sections:
            problems.append(f"{where}: sections {page.sections}, expected {sections} in order")
        problems += _invariant_problems(where, _key(page), page, markers)
    for module, names in rule_modules.items():
        for name in names:
            if (module, name) not in covered:
                problems.append(f"{module}.{name} is public but no spec page lists it in objects")
    keys = {_key(p): p for p in pages.values()}
    for (name, number), tests in markers.items():
        page = keys.get(name)
        if page is None or number not in page.invariants:
            problems.append(f"{tests[0]} is marked spec({name!r}, {number}): no such invariant")
    return problems


def _key(page: Page) -> str:
    """The name test markers use for a page: its op, or its rule."""
    return page.header.get("op") or page.header.get("rule", "")


def _op_page_problems(where: str, stem: str, page: Page, info: OpInfo) -> list[str]:
    problems = []
    if info.spec != stem:
        problems.append(f"{where} names op {info.name!r}, whose page is spec/{info.spec}.md")
    expected = {
        "signature": info.signature.text,
        "module": info.fn.__module__,
        "complex_safe": str(info.complex_safe).lower(),
    }
    for key, value in expected.items():
        if page.header[key].replace(" ", "") != value.replace(" ", ""):
            problems.append(f"{where}: {key} is {page.header[key]!r}, the op says {value!r}")
    # An op's kinks are values of one entry (relu: 0) or, for distinct=True, ties between
    # entries (max-pool); the page must say "none" exactly when the op declares neither.
    if (page.header["kinks"] == "none") != (not info.kinks and not info.distinct):
        declared = "ties between entries" if info.distinct else info.kinks
        problems.append(f"{where}: kinks {page.header['kinks']!r}, the op declares {declared}")
    return problems


def _rule_page_problems(
    where: str,
    stem: str,
    page: Page,
    rule_modules: dict[str, list[str]],
    covered: set[tuple[str, str]],
) -> list[str]:
    problems = []
    if missing := RULE_HEADER_KEYS - page.header.keys():
        return [f"{where}: header lacks {sorted(missing)}"]
    if page.header["rule"] != stem:
        problems.append(f"{where}: rule is {page.header['rule']!r}, expected the stem {stem!r}")
    module = page.header["module"]
    if module not in rule_modules:
        return [*problems, f"{where}: module {module!r} is not one of {sorted(rule_modules)}"]
    for name in (n.strip() for n in page.header["objects"].split(",")):
        if name in rule_modules[module]:
            covered.add((module, name))
        else:
            problems.append(f"{where}: object {name!r} is not in {module}.__all__")
    return problems


def _invariant_problems(
    where: str, key: str, page: Page, markers: dict[tuple[str, int], list[str]]
) -> list[str]:
    problems = []
    if not page.invariants:
        problems.append(f"{where}: no numbered invariants")
    if sorted(page.invariants) != list(range(1, len(page.invariants) + 1)):
        problems.append(f"{where}: invariants are numbered {sorted(page.invariants)}")
    for number, text in page.invariants.items():
        tests = markers.get((key, number), [])
        if not tests:
            problems.append(
                f"{where}: invariant {number} has no test marked "
                f'@pytest.mark.spec("{key}", {number})'
            )
        named = re.findall(r"`(tests/[\w/]+\.py::\w+)`", text)
        if not named:
            problems.append(f"{where}: invariant {number} names no test (`tests/x.py::name`)")
        for test in named:
            if test not in tests:
                problems.append(
                    f"{where}: invariant {number} names {test}, which does not exist or is "
                    f'not marked @pytest.mark.spec("{key}", {number})'
                )
    return problems


def test_spec_pages_registry_and_tests_agree():
    assert traceability_problems(ROOT / "spec", ROOT / "tests", REGISTRY, public_names()) == []


def test_docs_include_every_spec_page():
    """Sphinx reads spec/ in place and the index globs it, so no page can be left out."""
    conf = (ROOT / "docs" / "conf.py").read_text(encoding="utf-8")
    assert '"spec/**"' in conf
    assert "../spec/*" in (ROOT / "docs" / "index.md").read_text(encoding="utf-8")


# --- the checker is tested on broken trees ------------------------------------------------

GOOD_PAGE = """---
op: tanh
module: nn.activations
signature: "()->()"
complex_safe: true
kinks: none
---

# tanh

## Definition
## Gradient
## Shapes
## Numerics
## Invariants

1. Odd. Test: `tests/test_tanh.py::test_odd`.

## Example
"""

GOOD_TEST = """import pytest

@pytest.mark.spec("tanh", 1)
def test_odd():
    pass
"""


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "spec").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "spec" / "tanh.md").write_text(GOOD_PAGE)
    (tmp_path / "tests" / "test_tanh.py").write_text(GOOD_TEST)
    return tmp_path


def problems(tree):
    return traceability_problems(tree / "spec", tree / "tests", {"tanh": REGISTRY["tanh"]})


def test_a_consistent_tree_has_no_problems(tree):
    assert problems(tree) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda t: (t / "spec" / "tanh.md").unlink(), "has no spec page"),
        (
            lambda t: (t / "spec" / "cosh.md").write_text(
                GOOD_PAGE.replace("op: tanh", "op: cosh")
            ),
            "not registered",
        ),
        (
            lambda t: (t / "spec" / "tanh.md").write_text(GOOD_PAGE.replace("()->()", "(k)->(k)")),
            "signature",
        ),
        (
            lambda t: (t / "spec" / "tanh.md").write_text(GOOD_PAGE.replace("true", "false")),
            "complex_safe",
        ),
        (
            lambda t: (t / "spec" / "tanh.md").write_text(
                GOOD_PAGE.replace("kinks: none", "kinks: 0")
            ),
            "kinks",
        ),
        (
            lambda t: (t / "tests" / "test_tanh.py").write_text(GOOD_TEST.replace(", 1)", ", 2)")),
            "invariant 1 has no test",
        ),
        (
            lambda t: (t / "tests" / "test_tanh.py").write_text(
                GOOD_TEST.replace("test_odd", "t2")
            ),
            "does not exist",
        ),
        (
            lambda t: (t / "spec" / "tanh.md").write_text(GOOD_PAGE.replace("## Shapes\n", "")),
            "sections",
        ),
        (
            lambda t: (t / "spec" / "tanh.md").write_text(GOOD_PAGE.replace("1. Odd", "2. Odd")),
            "numbered",
        ),
    ],
    ids=[
        "no page",
        "no op",
        "signature",
        "complex",
        "kinks",
        "untested invariant",
        "named test missing",
        "missing section",
        "numbering",
    ],
)
def test_each_broken_tree_is_reported(tree, change, expected):
    change(tree)
    assert any(expected in p for p in problems(tree)), problems(tree)


GOOD_RULE_PAGE = """---
rule: sgd
module: nn.optim
objects: SGD
---

# sgd

## Definition
## Derivation
## Numerics
## Invariants

1. Converges. Test: `tests/test_optim.py::test_converges`.

## Example
"""

GOOD_RULE_TEST = """import pytest

@pytest.mark.spec("sgd", 1)
def test_converges():
    pass
"""


@pytest.fixture
def rule_tree(tmp_path):
    (tmp_path / "spec").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "spec" / "sgd.md").write_text(GOOD_RULE_PAGE)
    (tmp_path / "tests" / "test_optim.py").write_text(GOOD_RULE_TEST)
    return tmp_path


def rule_problems(tree, names=("SGD",)):
    return traceability_problems(tree / "spec", tree / "tests", {}, {"nn.optim": list(names)})


def test_a_consistent_rule_tree_has_no_problems(rule_tree):
    assert rule_problems(rule_tree) == []


def write_rule_page(old, new):
    return lambda t: (t / "spec" / "sgd.md").write_text(GOOD_RULE_PAGE.replace(old, new))


@pytest.mark.parametrize(
    ("change", "names", "expected"),
    [
        (lambda t: None, ("SGD", "Adam"), "nn.optim.Adam is public but no spec page"),
        (write_rule_page("objects: SGD", "objects: SGD, Lion"), ("SGD",), "'Lion' is not in"),
        (write_rule_page("rule: sgd", "rule: adam"), ("SGD",), "expected the stem"),
        (write_rule_page("module: nn.optim", "module: nn.other"), ("SGD",), "is not one of"),
        (write_rule_page("## Derivation\n", ""), ("SGD",), "sections"),
        (write_rule_page("objects: SGD\n", ""), ("SGD",), "header lacks ['objects']"),
        (
            lambda t: (t / "tests" / "test_optim.py").write_text(
                GOOD_RULE_TEST.replace('"sgd"', '"adam"')
            ),
            ("SGD",),
            "invariant 1 has no test",
        ),
    ],
    ids=[
        "public name without page",
        "unknown object",
        "stem",
        "module",
        "section",
        "header",
        "untested invariant",
    ],
)
def test_each_broken_rule_tree_is_reported(rule_tree, change, names, expected):
    change(rule_tree)
    found = rule_problems(rule_tree, names)
    assert any(expected in p for p in found), found
