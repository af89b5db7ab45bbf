"""The engine that proves ownership is the engine whose ports are used.

The docker CLI follows ``DOCKER_HOST``, ``DOCKER_CONTEXT`` and ``docker context use``; a
published port on 127.0.0.1 does not. These tests run the real docker CLI (which resolves a
context without contacting any engine) against fake endpoints: no engine is needed.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from flops_tasks import oakestra_apps
from flops_tasks.config import settings
from flops_tasks.errors import FlopsError
from flops_tasks.stack import flopsdb, placement
from flops_tasks.stack.project import Project
from flops_tasks.stack.services import MANAGER_PORT

pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI")


@pytest.fixture
def docker_env(monkeypatch, tmp_path):
    """A docker CLI of its own: empty config, no variables from the caller."""
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    return monkeypatch


def project(ctx_factory, tmp_path, **stack) -> Project:
    c = ctx_factory({"stack": {"env_file": str(tmp_path / "flops.env"), **stack}})
    return Project(settings(c))


def seeds(client) -> set[tuple[str, int]]:
    return set(client.topology_description.server_descriptions())


@pytest.mark.parametrize(
    "endpoint, address",
    [
        ("tcp://192.0.2.77:2375", "192.0.2.77"),
        ("ssh://bob@engine-b.example:2222", "engine-b.example"),
        ("tcp://[fd00::77]:2376", "fd00::77"),
        ("unix:///var/run/docker.sock", "127.0.0.1"),
        ("unix:///run/user/1000/docker.sock", "127.0.0.1"),
    ],
)
def test_docker_host_decides_where_the_stacks_ports_are_reached(
    docker_env, ctx_factory, tmp_path, endpoint, address
):
    docker_env.setenv("DOCKER_HOST", endpoint)
    p = project(ctx_factory, tmp_path)
    assert p.address() == address
    assert p.endpoint == endpoint
    host = f"[{address}]" if ":" in address else address
    assert p.url(MANAGER_PORT) == f"http://{host}:{MANAGER_PORT}"  # redb's DELETE
    client = flopsdb.client(p)  # pymongo connects lazily: nothing is dialled here
    try:
        assert seeds(client) == {(address, 10027)}
    finally:
        client.close()


@pytest.mark.parametrize("how", ["DOCKER_CONTEXT", "docker context use"])
def test_a_context_is_followed_as_the_docker_cli_follows_it(docker_env, ctx_factory, tmp_path, how):
    subprocess.run(
        ["docker", "context", "create", "--docker", "host=tcp://198.51.100.8:2375", "engine-b"],
        check=True,
        capture_output=True,
    )
    if how == "DOCKER_CONTEXT":
        docker_env.setenv("DOCKER_CONTEXT", "engine-b")
    else:
        subprocess.run(["docker", "context", "use", "engine-b"], check=True, capture_output=True)
    assert project(ctx_factory, tmp_path).address() == "198.51.100.8"


def test_a_remote_engine_whose_ports_are_on_its_loopback_is_refused(
    docker_env, ctx_factory, tmp_path
):
    docker_env.setenv("DOCKER_HOST", "tcp://192.0.2.77:2375")
    p = project(ctx_factory, tmp_path, bind_address="127.0.0.1")
    with pytest.raises(FlopsError) as err:
        p.address()
    text = str(err.value)
    assert "tcp://192.0.2.77:2375" in text and "loopback 127.0.0.1" in text and "\n" not in text


def test_the_flops_db_is_opened_only_after_owner_proved_its_port(
    docker_env, ctx_factory, tmp_path, monkeypatch
):
    """read_flops_db proves the port as redb does, even when no foreign container holds it."""
    docker_env.setenv("DOCKER_HOST", "tcp://192.0.2.77:2375")
    p = project(ctx_factory, tmp_path)
    proofs: list[tuple[str, int]] = []

    def owner(service, port):
        proofs.append((service, port))
        raise FlopsError(f"port {port} on {p.address()} is held by no container of this stack")

    monkeypatch.setattr(p, "owner", owner)
    monkeypatch.setattr(p, "foreign_holder", lambda port: None)  # nothing else holds it
    monkeypatch.setattr(placement, "projects", lambda s: [p])
    opened: list[object] = []
    monkeypatch.setattr(flopsdb, "client", lambda project: opened.append(project))
    with pytest.raises(FlopsError, match="held by no container of this stack"):
        oakestra_apps.read_flops_db(p.s)
    assert proofs == [("flops_db", 10027)] and opened == []
