"""What a failed remote command said, made fit for one line of a report.

A command's last stderr line is often the least useful one: the docker CLI ends every
failure with ``See 'docker run --help'.``, after the line that says what went wrong.
``failure_detail`` keeps the first lines that look like errors (else the first lines),
bounded in lines and characters, with secrets masked and control characters escaped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_LINES = 5
MAX_CHARS = 600
MASK = "***"

# lines that carry no reason of their own
_NOISE = re.compile(
    r"^(See '.*--help'\.?|Run '.*--help' for more information\.?|Usage:.*)$", re.IGNORECASE
)
# lines that name a reason: what the docker CLI, coreutils, apt and sudo print on failure
_ERRORISH = re.compile(
    r"error|fail|fatal|denied|refused|cannot|can't|unable|no such|not found|invalid|"
    r"conflict|already|in use|timed? ?out|permission|unknown|unauthori[sz]ed|forbidden|"
    r"^E: |^sudo: |: not a |: no space",
    re.IGNORECASE,
)
# secrets that commands print now and then: credentials in URLs, bearer tokens, key=value
_SECRET_PATTERNS = (
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+(@)"),
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(
        r"(?i)(\b(?:password|passwd|pass|token|secret|api[_-]?key|access[_-]?key)"
        r"\b[\"']?\s*[=:]\s*[\"']?)[^\s\"',;]+"
    ),
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def mask(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every known secret (exact values, longest first) and every
    credential-shaped value replaced by ``***``."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(
            lambda m: m.group(1) + MASK + (m.group(2) if m.re.groups > 1 else ""), text
        )
    return text


def printable(text: str) -> str:
    """Control and bidi characters as ``\\xNN``/``\\uNNNN`` (a terminal never acts on them)."""

    def esc(m: re.Match[str]) -> str:
        n = ord(m.group())
        return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"

    return _CONTROL.sub(esc, text)


def failure_detail(
    stderr: str,
    stdout: str = "",
    exited: int | None = None,
    secrets: Iterable[str | None] = (),
    max_lines: int = MAX_LINES,
    max_chars: int = MAX_CHARS,
) -> str:
    """The first error lines of a failed command's output, on one line (`` | `` between).

    stderr first, stdout when stderr says nothing. Lines without a reason of their own
    (``See 'docker run --help'.``) are dropped; of the rest, the first ``max_lines`` that
    look like errors, or the first ``max_lines`` when none does. At most ``max_chars``
    characters (cut with ``...``); secrets masked (``mask``); control characters escaped.
    """
    secrets = list(secrets)
    lines: list[str] = []
    for text in (stderr, stdout):
        lines = [
            " ".join(line.split())
            for line in text.splitlines()
            if line.strip() and not _NOISE.match(line.strip())
        ]
        if lines:
            break
    if not lines:
        return f"exit {exited}" if exited is not None else "no output"
    errors = [line for line in lines if _ERRORISH.search(line)]
    picked = (errors or lines)[:max_lines]
    more = len(errors or lines) - len(picked)
    text = printable(mask(" | ".join(picked), secrets))
    if more > 0:
        text += f" | ({more} more lines)"
    if len(text) > max_chars:
        text = text[: max_chars - 3].rstrip() + "..."
    return text
