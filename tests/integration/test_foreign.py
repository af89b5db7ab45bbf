"""The stack beside things that are not its own: upstream's compose stack, other containers.

A container that holds the stack's ports or container names is named by `up`, and `redb`
never deletes through a port that another container publishes.
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from flops_tasks import testbed as tb

from .helpers import inv
from .oakestra import gateway

pytestmark = pytest.mark.integration
UPSTREAM_FILE = "/opt/addon-FLOps/docker/flops_management.docker_compose.yml"


def docker(*args: str) -> str:
    res = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


@pytest.fixture
def stack_down(testbed):
    res = inv("down")
    assert res.returncode == 0, res.stdout + res.stderr
    yield
    res = inv("up")
    assert res.returncode == 0, res.stdout + res.stderr


def impostor(name: str, port: int, **labels: str) -> str:
    """A container of someone else's publishing one of the stack's ports (does nothing)."""
    flags = [f"--label={k}={v}" for k, v in {**tb.mark(), **labels}.items()]
    return docker(
        "run",
        "-d",
        "--name",
        name,
        "-p",
        f"{port}:{port}",
        *flags,
        tb.BASE_IMAGE.format(suite="bookworm"),
        "sleep",
        "600",
    )


def test_up_names_upstreams_own_stack_and_starts_nothing(stack_down):
    cid = impostor(
        "flops_manager",
        5072,
        **{
            "com.docker.compose.project": "flops_management",
            "com.docker.compose.service": "flops_manager",
            "com.docker.compose.project.config_files": UPSTREAM_FILE,
        },
    )
    try:
        res = inv("up")
        assert res.returncode != 0
        assert "Traceback" not in res.stderr
        line = res.stderr.strip()
        assert line.count("\n") == 0, line
        assert (
            "container name flops_manager is taken by container flops_manager of "
            f"upstream's own compose file {UPSTREAM_FILE}" in line
        )
        assert f"docker compose -f {UPSTREAM_FILE} down" in line
        ours = docker("ps", "-q", "--filter", f"label=com.docker.compose.project={tb.PROJECT}")
        assert ours == ""
        res = inv("doctor", "--json")
        assert res.returncode == 1
        conflicts = [
            s["detail"]
            for s in json.loads(res.stdout)["hosts"]["stack"]["steps"]
            if s["step"] == "conflict"
        ]
        assert any(f"upstream's own compose file {UPSTREAM_FILE}" in c for c in conflicts)
    finally:
        docker("rm", "-f", cid)


def test_redb_refuses_a_database_port_held_by_another_container(stack_down):
    name = f"not-flops-db-{uuid.uuid4().hex[:6]}"
    cid = impostor(name, 10027)
    try:
        res = inv("redb", "--yes")
        assert res.returncode == 1, res.stdout + res.stderr
        assert "Traceback" not in res.stderr
        # where the testbed binds the stack (the gateway of the current testbed network)
        assert f"port 10027 on {gateway()} is held by container {name}" in res.stderr
        assert "refusing to touch it; nothing was deleted" in res.stderr
        assert docker("inspect", "-f", "{{.State.Running}}", cid) == "true"
    finally:
        docker("rm", "-f", cid)
