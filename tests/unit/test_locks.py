"""Run locks (flock): exclusive, self-releasing, and refused in one line that names the holder."""

from __future__ import annotations

import os
import shlex
import threading
import time

import pytest

from flops_tasks import locks
from flops_tasks.errors import FlopsError


def test_a_held_lock_refuses_a_second_run_and_names_the_holder(tmp_path):
    path = tmp_path / "locks" / "stack-x.lock"
    with locks.held(path, "the stack x"):
        assert path.read_text() == str(os.getpid())
        with pytest.raises(FlopsError) as err:
            with locks.held(path, "the stack x"):
                pytest.fail("two holders")
    message = err.value.message
    assert f"another flops-tasks run (pid {os.getpid()}) is working on the stack x" in message
    assert "\n" not in message and err.value.code == 1


def test_the_hint_never_says_to_remove_the_lock_file(tmp_path):
    """Removing a flock'ed file lets a third run lock a new file while the holder runs on."""
    path = tmp_path / "stack-x.lock"
    with locks.held(path, "the stack x"), pytest.raises(FlopsError) as err:
        with locks.held(path, "the stack x"):
            pass
    message = err.value.message
    assert "remove" not in message.lower() and "rm " not in message
    command = message.split("see it with: ")[1]
    assert shlex.split(command) == ["ps", "-p", str(os.getpid())]
    assert "released when that process ends" in message


def test_a_lock_whose_holder_wrote_no_pid_yet_names_the_file(tmp_path):
    path = tmp_path / "dir with space" / "stack-x.lock"
    path.parent.mkdir()
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a holder that has not written its pid yet
        with pytest.raises(FlopsError) as err, locks.held(path, "the stack x"):
            pass
    finally:
        os.close(fd)
    command = err.value.message.split("see it with: ")[1]
    assert shlex.split(command) == ["fuser", "-v", str(path)]


def test_the_lock_is_free_again_after_the_holder_is_done(tmp_path):
    path = tmp_path / "host.lock"
    with locks.held(path, "host a"):
        pass
    with locks.held(path, "host a"):
        assert path.read_text() == str(os.getpid())
    with pytest.raises(RuntimeError), locks.held(path, "host a"):
        raise RuntimeError("the task failed")
    with locks.held(path, "host a"):
        pass


def test_a_waiting_run_gets_the_lock_when_it_is_released(tmp_path):
    path = tmp_path / "stack.lock"
    taken = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with locks.held(path, "the stack"):
            taken.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    assert taken.wait(5)
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    with locks.held(path, "the stack", wait=5):
        waited = time.monotonic() - started
    thread.join()
    assert 0.2 < waited < 5


def test_stack_locks_are_per_project_in_the_state_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert (
        locks.stack_lock_path("flops_management")
        == tmp_path / "flops-tasks" / "locks" / "stack-flops_management.lock"
    )
    assert locks.stack_lock_path("a") != locks.stack_lock_path("b")
    assert locks.stack_lock_path("a", tmp_path / "st") == tmp_path / "st" / "locks" / "stack-a.lock"


def test_an_unwritable_lock_folder_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")  # a folder no one can make, even root
    with pytest.raises(FlopsError) as err:
        with locks.held(tmp_path / "file" / "locks" / "x.lock", "the stack x"):
            pytest.fail("locked in a folder that cannot be made")
    assert "cannot create the lock file" in err.value.message
    assert "flops.state_dir" in err.value.message
