"""Run locks: two runs against the same stack or hosts never interleave."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import FlopsError

LOCK_DIR = Path(os.path.expanduser("~/.cache/flops-tasks/locks"))


def stack_lock_path(project: str) -> Path:
    return LOCK_DIR / f"stack-{project}.lock"


@contextmanager
def held(path: str | Path, what: str, wait: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on ``path``; refuse at once (or after ``wait`` s) if taken."""
    import time

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                    raise FlopsError(
                        f"another flops-tasks run (pid {holder}) is working on {what}: "
                        f"wait for it to finish, or remove {p} if that process is gone"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
