"""Ctrl-C: the first stops new work and ends the run with its partial report; the second
exits at once.

``handling()`` (entered once per run, on the main thread) installs the SIGINT handler. The
first SIGINT sets ``requested()``, closes every registered connection (so nothing waits out
a remote timeout), and raises ``Interrupted`` in the main thread, unless the main thread is
in a ``cooperative()`` section (``ssh.fan_out``'s wait), which stops by itself within a
fraction of a second and reports the hosts still in flight as ``interrupted``. The edge
prints the partial report and exits 130. A second SIGINT exits 130 at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .outcome import Outcome

EXIT = 130


class Interrupted(KeyboardInterrupt):
    """The run was interrupted; ``outcomes``: what the interrupted work had reported."""

    def __init__(self, outcomes: list[Outcome] | None = None) -> None:
        super().__init__("interrupted")
        self.outcomes = list(outcomes or [])


_stop = threading.Event()
_lock = threading.Lock()
_aborts: dict[int, Callable[[], None]] = {}
_cooperative = 0


def requested() -> bool:
    return _stop.is_set()


def check() -> None:
    """Raise ``Interrupted`` when a stop was requested: call it before starting new work."""
    if _stop.is_set():
        raise Interrupted()


def on_interrupt(key: object, abort: Callable[[], None]) -> None:
    """Call ``abort`` (close a connection) when the run is interrupted."""
    with _lock:
        _aborts[id(key)] = abort


def forget(key: object) -> None:
    with _lock:
        _aborts.pop(id(key), None)


@contextlib.contextmanager
def cooperative() -> Iterator[None]:
    """The main thread polls ``requested()`` itself here: the handler does not raise."""
    global _cooperative
    with _lock:
        _cooperative += 1
    try:
        yield
    finally:
        with _lock:
            _cooperative -= 1


def _handler(signum: int, frame: Any) -> None:
    if _stop.is_set():
        os.write(2, b"\ninterrupted again: exiting now\n")
        os._exit(EXIT)
    _stop.set()
    os.write(2, b"\ninterrupted: stopping (Ctrl-C again to exit at once)\n")
    with _lock:
        aborts = list(_aborts.values())
        raise_now = _cooperative == 0
    for abort in aborts:
        with contextlib.suppress(Exception):
            abort()
    if raise_now:
        raise Interrupted()


@contextlib.contextmanager
def handling() -> Iterator[None]:
    """Install the handler for the run (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _handler)
    _stop.clear()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def exit_now(code: int = EXIT) -> None:
    """Leave without waiting for worker threads stuck in remote calls (their connections
    are closed; locks are released by the kernel)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
