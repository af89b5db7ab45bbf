"""Run locks: two runs against the same stack or hosts never interleave.

A lock is ``flock`` on a file in ``locks/`` of the state directory (``lock_dir``): the
kernel releases it when the holding process ends, however it ends, so a lock file never
needs removing (removing it would let a third run lock a new file while the holder still
runs).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import commands
from .errors import FlopsError
from .paths import default_state_dir


def lock_dir(state: str | Path | None = None) -> Path:
    """``locks/`` in the state directory ``state`` (default: the default one)."""
    return Path(state or default_state_dir()) / "locks"


def stack_lock_path(project: str, state: str | Path | None = None) -> Path:
    return lock_dir(state) / f"stack-{project}.lock"


def _refusal(path: Path, fd: int, what: str) -> FlopsError:
    holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
    if holder.isdigit():
        who, find = f"pid {holder}", commands.cmd("ps", "-p", holder)
    else:  # the holder has not written its pid yet
        who, find = "pid unknown", commands.cmd("fuser", "-v", str(path))
    return FlopsError(
        f"another flops-tasks run ({who}) is working on {what}: wait for it to "
        f"finish; its lock on {path} is released when that process ends; "
        f"see it with: {find}"
    )


@contextmanager
def held(path: str | Path, what: str, wait: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on ``path``; refuse at once (or after ``wait`` s) if taken."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise FlopsError(
            f"cannot create the lock file {p} ({exc.strerror or exc}): make "
            f"{p.parent} writable, or set flops.state_dir to a folder of yours"
        ) from None
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _refusal(p, fd, what) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
