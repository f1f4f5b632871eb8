"""What the three tests/test_bad_input_*.py files share: a case is a row of docs/bad-input.md.

A case is ``bad(id, call, error, *parts)``: ``call()`` must raise exactly ``error``, whose
message contains each of ``parts`` (the argument, what was expected, what was received) and
is, word for word, the message in the row of the page whose first column is ``id``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).parents[1] / "docs" / "bad-input.md"


def bad(case: str, call: Callable[[], Any], error: type[BaseException], *parts: str) -> Any:
    return pytest.param(call, error, parts, id=case)


def documented() -> dict[str, str]:
    """Case id -> the message of its row in docs/bad-input.md."""
    rows = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"\| `([\w-]+)` \|.*\| (`+) (.*) \2 \|$", line):
            rows[m[1]] = m[3].replace("\\|", "|")
    return rows


def check_named_error(
    call: Callable[[], Any], error: type[BaseException], parts: tuple[str, ...], case: str
) -> None:
    """The case's error, its parts in the message, and the page showing that message."""
    with pytest.raises(error) as caught:
        call()
    message = str(caught.value)
    assert type(caught.value) is error, message
    for part in parts:
        assert part in message, (part, message)
    assert documented().get(case) == message  # the docs show this message
