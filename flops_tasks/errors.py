"""The one error type of flops-tasks.

Every known failure becomes a ``FlopsError``: one line that names the problem and the fix,
with every control character escaped (``text.visible``).
It subclasses Invoke's ``Exit``, so ``inv`` prints just that line and exits non-zero, while
Python callers get an ordinary exception they can catch.
"""

from __future__ import annotations

from invoke.exceptions import Exit

from .text import visible


class FlopsError(Exit):
    """A known failure: ``message`` is one line naming the problem and the fix."""

    def __init__(self, message: str, code: int = 1) -> None:
        # one line, and safe to print: text from a worker or a server may be in it
        one_line = visible(" ".join(str(message).split()))
        super().__init__(one_line, code)

    def __str__(self) -> str:
        return self.message or ""


class UsageError(FlopsError):
    """Bad input (a flag, a host, an address, a file): exit code 2, as for a bad flag."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=2)


class ConfigError(UsageError):
    """Bad configuration in invoke.yaml or the environment."""
