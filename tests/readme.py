"""README.md's code blocks, for the tests that run them as written."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
SHELL = ("sh", "bash", "shell", "console")


@dataclass(frozen=True)
class Block:
    lang: str
    text: str
    line: int  # of the opening fence
    marker: str  # the HTML comment on the line before the fence ("" when none)


def blocks(text: str | None = None) -> list[Block]:
    lines = (README.read_text() if text is None else text).splitlines()
    found, i = [], 0
    while i < len(lines):
        opening = re.match(r"^```(\w*)\s*$", lines[i])
        if not opening:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        marker = before if before.startswith("<!--") else ""
        found.append(Block(opening[1], "\n".join(lines[i + 1 : end]) + "\n", i + 1, marker))
        i = end + 1
    return found


def run_block(test: str) -> Block:
    """The shell block marked ``<!-- run: ...::test -->``."""
    (block,) = [
        b for b in blocks() if b.lang in SHELL and re.search(rf"::{re.escape(test)}\b", b.marker)
    ]
    return block


def python_block(containing: str) -> Block:
    (block,) = [b for b in blocks() if b.lang == "python" and containing in b.text]
    return block
