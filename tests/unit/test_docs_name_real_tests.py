"""Every test the docs name as proof exists: ``tests/...py`` files, ``file::test_name`` and
the ``::test_name`` that continue the file named before them."""

from __future__ import annotations

import re

import pytest

from flops_tasks.paths import CHECKOUT

DOCS = ("README.md", "SECURITY.md", "bench/README.md", "compose/README.md")
REFERENCE = re.compile(r"(tests/[\w/]+\.py)(?:::(\w+))?|(?<![\w/])::(test_\w+)")


def missing(text: str) -> list[str]:
    """The references of ``text`` that name no file or no test in it."""
    found, current = [], None
    for m in REFERENCE.finditer(text):
        path, name, continued = m.groups()
        line = text.count("\n", 0, m.start()) + 1
        if path:
            current = CHECKOUT / path
            if not current.is_file():
                found.append(f"line {line}: {path} does not exist")
                continue
        name = name or continued
        if not name:
            continue
        if current is None or not current.is_file():
            found.append(f"line {line}: ::{name} follows no test file")
        elif not re.search(rf"^(async )?def {name}\b|^class {name}\b", current.read_text(), re.M):
            found.append(f"line {line}: {current.relative_to(CHECKOUT)} has no {name}")
    return found


@pytest.mark.parametrize("doc", DOCS)
def test_every_test_a_doc_names_exists(doc):
    assert missing((CHECKOUT / doc).read_text()) == []


def test_the_check_sees_a_renamed_test():
    text = (
        "`tests/unit/test_readme.py::test_every_shell_block_runs_or_is_marked_illustrative`, "
        "`::test_that_was_renamed`, `tests/unit/no_such_file.py`"
    )
    assert missing(text) == [
        "line 1: tests/unit/test_readme.py has no test_that_was_renamed",
        "line 1: tests/unit/no_such_file.py does not exist",
    ]
