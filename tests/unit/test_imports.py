"""A run imports only what its tasks use (read from ``sys.modules`` of a real ``flops``
process at its exit): no Docker client for worker tasks, no SSH stack for stack tasks,
neither for ``--list`` and ``--version``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from flops_tasks.paths import CHECKOUT

HEAVY = ("python_on_whales", "pydantic", "pymongo", "fabric", "paramiko", "cryptography")
DOCKER_CLIENT = {"python_on_whales", "pydantic", "pymongo"}
SSH_STACK = {"fabric", "paramiko", "cryptography"}

# runs the flops program as the console script does and prints the heavy modules it loaded
PROBE = textwrap.dedent(
    """
    import atexit, os, sys
    HEAVY = {heavy!r}
    atexit.register(lambda: os.write(
        2, ("LOADED " + " ".join(m for m in HEAVY if m in sys.modules) + "\\n").encode()))
    from flops_tasks.program import main
    sys.argv = ["flops", *sys.argv[1:]]
    main()
    """
).format(heavy=HEAVY)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loaded(tmp_path, *args: str) -> tuple[set[str], subprocess.CompletedProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INVOKE_", "FLOPS_"))}
    env.update(XDG_STATE_HOME=str(tmp_path / "state"), PYTHONPATH=str(CHECKOUT))
    res = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    lines = [line for line in res.stderr.splitlines() if line.startswith("LOADED")]
    assert lines, res.stderr
    return set(lines[-1].split()[1:]), res


@pytest.mark.parametrize("args", [["--version"], ["--list"], ["prepare-builder", "--help"]])
def test_listing_and_help_load_neither_docker_nor_ssh(tmp_path, args):
    mods, res = loaded(tmp_path, *args)
    assert res.returncode == 0, res.stderr
    assert not mods & (DOCKER_CLIENT | SSH_STACK), mods


@pytest.mark.parametrize("task", ["prepare-builder", "prepare-learner"])
def test_a_worker_run_loads_no_docker_client(tmp_path, task):
    host = f"root@127.0.0.1:{closed_port()}"
    mods, res = loaded(tmp_path, "--dry", task, "--host", host, "--json")
    assert '"unreachable"' in res.stdout, res.stdout + res.stderr  # it really tried the host
    assert SSH_STACK <= mods, mods
    assert not mods & DOCKER_CLIENT, mods


@pytest.mark.parametrize("args", [["env", "--json"], ["status", "--json"]])
def test_a_stack_run_loads_no_ssh_stack(tmp_path, args):
    mods, res = loaded(tmp_path, *args)
    assert res.returncode in (0, 1, 2), res.stderr  # no stack here is fine, a crash is not
    assert "Traceback" not in res.stderr
    assert not mods & SSH_STACK, mods
