"""The change log of a run: every change of every task, planned or made, in one place.

Every change flops-tasks makes goes through one call that records it here: a command on a
worker (``ssh.HostSession.change``), a file written on a worker (``HostSession.write``), a
compose or docker call on the stack (``stack.project.Project.act``), a file on this machine,
the FLOps DB, the registry, an Oakestra app. Under ``--dry`` the call records and does not
act; in a real run it acts, then records. Either way the row of that host and step is
``changed`` (``outcome.Report``), so a dry run reports exactly the changes of the real run.

A file change carries its content before and after: ``--diff`` shows it as a unified diff,
``--json`` carries both. Values of keys that look like secrets never appear in either.
"""

from __future__ import annotations

import difflib
import re
import threading
from dataclasses import dataclass
from typing import Any

# a key = value, key: value or "key": value whose key names a secret; the value is masked
_SECRET = re.compile(
    r"""(?ix)
    (?P<key>["']?[\w.-]*(?:password|passwd|secret|token|auth|credential|apikey|api_key)
        [\w.-]*["']?\s*[:=]\s*)
    (?P<value>"[^"\n]*"|'[^'\n]*'|[^\s,}\]\n]+)
    """
)
MASK = "********"


def mask_secrets(text: str) -> str:
    """``text`` with the value of every secret-looking key replaced by ``MASK``."""

    def sub(m: re.Match[str]) -> str:
        value = m.group("value")
        quote = value[0] if value[:1] in ("'", '"') else ""
        return f"{m.group('key')}{quote}{MASK}{quote}"

    return _SECRET.sub(sub, text)


@dataclass(frozen=True)
class Change:
    """One change: on ``host`` (a worker, ``stack``, ``oakestra``, ``local``) by ``step``."""

    host: str
    step: str
    summary: str
    done: bool  # False: planned in a dry run
    path: str = ""  # a file, for --diff
    before: str | None = None  # None: the file does not exist
    after: str | None = None  # None: the file is removed

    @property
    def is_file(self) -> bool:
        return bool(self.path) and (self.before is not None or self.after is not None)

    def diff(self) -> str:
        """The file change as a unified diff (secrets masked); "" when not a file."""
        if not self.is_file:
            return ""
        before = mask_secrets(self.before or "").splitlines(keepends=True)
        after = mask_secrets(self.after or "").splitlines(keepends=True)
        lines = difflib.unified_diff(
            before,
            after,
            fromfile=f"{self.host}:{self.path}" if self.before is not None else "/dev/null",
            tofile=f"{self.host}:{self.path}" if self.after is not None else "/dev/null",
        )
        return "".join(
            ln if ln.endswith("\n") else ln + "\n\\ No newline at end of file\n" for ln in lines
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "host": self.host,
            "step": self.step,
            "summary": self.summary,
            "done": self.done,
        }
        if self.is_file:
            data["path"] = self.path
            data["before"] = None if self.before is None else mask_secrets(self.before)
            data["after"] = None if self.after is None else mask_secrets(self.after)
        return data


class ChangeLog:
    """Thread-safe, in order; shared by everything one run does."""

    def __init__(self) -> None:
        self._entries: list[Change] = []
        self._touched: set[tuple[str, str]] = set()
        self._active: list[Change] = []  # started, not yet done
        self._lock = threading.Lock()

    def start(self, change: Change) -> None:
        """``change`` is about to be made (``record`` ends it): a run cut short meanwhile
        says it may be partly done."""
        with self._lock:
            self._active.append(change)

    def record(self, change: Change) -> None:
        with self._lock:
            if change in self._active:
                self._active.remove(change)
            self._entries.append(change)
            self._touched.add((change.host, change.step))

    def unfinished(self) -> list[Change]:
        """Changes started and never recorded (the run stopped, or they failed)."""
        with self._lock:
            return list(self._active)

    def touched(self, host: str, step: str) -> bool:
        with self._lock:
            return (host, step) in self._touched

    def entries(self, host: str | None = None) -> list[Change]:
        with self._lock:
            return [c for c in self._entries if host in (None, c.host)]

    def done(self) -> list[Change]:
        """What was really changed (not only planned)."""
        return [c for c in self.entries() if c.done]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
