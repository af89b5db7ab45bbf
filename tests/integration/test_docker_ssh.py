"""Docker's own SSH transport against a real OpenSSH server on loopback.

The engine behind the loopback sshd is this machine's own (``docker system dial-stdio`` runs
there), so these tests need no testbed: they prove what the transport does with host keys
and keys. Every refusal is checked twice: docker's ssh itself refused (its stderr, and no
login in sshd's log), and the one line the user sees is the Fabric layer's own message.
"""

from __future__ import annotations

import subprocess
import uuid
from dataclasses import replace

import pytest

from flops_tasks import docker_ssh
from flops_tasks.config import settings
from flops_tasks.errors import FlopsError
from flops_tasks.hosts import Target
from flops_tasks.ssh import HostSession, HostUnreachable
from flops_tasks.stack.project import Project

from .sshd import keygen, start_sshd

pytestmark = pytest.mark.integration


def make_settings(ctx_factory, sshd, known_hosts, **ssh):
    return settings(
        ctx_factory(
            {
                "ssh": {
                    "key": str(sshd.client_key),
                    "user": "root",
                    "known_hosts": str(known_hosts),
                    "connect_timeout": 3,
                    **ssh,
                }
            }
        )
    )


def remote(ctx_factory, sshd, known_hosts, **ssh) -> Project:
    s = make_settings(ctx_factory, sshd, known_hosts, **ssh)
    return Project(s, target=Target("127.0.0.1", "root", sshd.port, name="loopback"))


def logins(sshd) -> int:
    return (sshd.folder / "sshd.log").read_text().count("Accepted publickey")


def fabric_says(project: Project) -> str:
    """What the Fabric layer says about the same connection (the reference message)."""
    session = HostSession(project.target, project.s.ssh)
    try:
        with pytest.raises(HostUnreachable) as err:
            session.connection()
    finally:
        session.close()
    return str(err.value)


def docker_over_ssh(project: Project) -> subprocess.CompletedProcess:
    """The docker CLI through the transport, without any of our error handling."""
    return subprocess.run(
        [
            *docker_ssh.client_call(project.s.ssh),
            "--host",
            project.engine_url,
            "version",
            "--format",
            "{{.Server.Version}}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def local_engine_version() -> str:
    return subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_a_pinned_key_reaches_the_engine(sshd, tmp_path, ctx_factory):
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts_line())
    project = remote(ctx_factory, sshd, kh)
    before = logins(sshd)
    project.check_docker()
    assert (
        project.cli("version", "--format", "{{.Server.Version}}").strip() == local_engine_version()
    )
    assert logins(sshd) > before  # it went through sshd


def test_an_unknown_key_is_refused_by_ssh_with_the_fabric_message(sshd, tmp_path, ctx_factory):
    kh = tmp_path / "known_hosts"  # nothing trusted
    project = remote(ctx_factory, sshd, kh)
    before = logins(sshd)
    res = docker_over_ssh(project)
    assert res.returncode != 0 and "Host key verification failed" in res.stderr
    assert logins(sshd) == before  # refused before any login
    with pytest.raises(FlopsError) as err:
        project.check_docker()
    assert err.value.message == f"host loopback: {fabric_says(project)}"
    assert "is not in" in err.value.message and "ssh-keyscan" in err.value.message
    assert not kh.exists()


def test_a_changed_key_is_refused_even_with_accept_new(sshd, tmp_path, ctx_factory):
    keygen(tmp_path / "other")
    kind, key = (tmp_path / "other.pub").read_text().split()[:2]
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    for policy in ("strict", "accept-new"):
        project = remote(ctx_factory, sshd, kh, host_keys=policy)
        before = logins(sshd)
        res = docker_over_ssh(project)
        assert res.returncode != 0 and "Host key verification failed" in res.stderr, policy
        assert logins(sshd) == before
        with pytest.raises(FlopsError) as err:
            project.check_docker()
        assert "CHANGED" in err.value.message
        assert err.value.message == f"host loopback: {fabric_says(project)}"
    assert kh.read_text() == f"[127.0.0.1]:{sshd.port} {kind} {key}\n"


def test_accept_new_records_an_unknown_key_then_uses_it(sshd, tmp_path, ctx_factory):
    kh = tmp_path / "known_hosts"
    project = remote(ctx_factory, sshd, kh, host_keys="accept-new")
    project.check_docker()
    kind, key = sshd.host_pub.read_text().split()[:2]
    assert f"[127.0.0.1]:{sshd.port} {kind} {key}" in kh.read_text()
    # and with the recorded key, strict checking now passes
    remote(ctx_factory, sshd, kh).check_docker()


def test_only_the_configured_key_is_offered(sshd, tmp_path, ctx_factory):
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts_line())
    stranger = tmp_path / "stranger"
    keygen(stranger)
    project = remote(ctx_factory, sshd, kh, key=str(stranger))
    res = docker_over_ssh(project)
    assert res.returncode != 0 and "Permission denied (publickey)" in res.stderr
    with pytest.raises(FlopsError) as err:
        project.check_docker()
    assert err.value.message == f"host loopback: {fabric_says(project)}"
    assert "authentication as root" in err.value.message


def test_a_host_without_docker_is_one_line(tmp_path, ctx_factory):
    # a login whose PATH holds no docker: like a host without Docker installed
    server = start_sshd(tmp_path / "sshd", extra="SetEnv PATH=/nonexistent\n")
    try:
        kh = tmp_path / "known_hosts"
        kh.write_text(server.known_hosts_line())
        project = remote(ctx_factory, server, kh)
        with pytest.raises(FlopsError) as err:
            project.check_docker()
        assert err.value.message.startswith("host loopback has no docker CLI")
        assert "install Docker there" in err.value.message and "\n" not in err.value.message
    finally:
        server.stop()


def test_builds_are_sent_to_the_remote_engine(sshd, tmp_path, ctx_factory):
    """compose reads its files here and sends the build context over the transport."""
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts_line())
    tag = f"flops-tasks-transport-probe:{uuid.uuid4().hex[:8]}"
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "mark.txt").write_text(tag)
    (context / "Dockerfile").write_text("FROM scratch\nCOPY mark.txt /mark.txt\n")
    compose = tmp_path / "probe.compose.yml"
    compose.write_text(f"services:\n  probe:\n    image: {tag}\n    build: {{context: ctx}}\n")
    env_file = tmp_path / "probe.env"  # the remote engine's own: probe.loopback.env
    (tmp_path / "probe.loopback.env").write_text("")
    s = make_settings(ctx_factory, sshd, kh)
    s = replace(s, stack=replace(s.stack, compose_files=(str(compose),), env_file=str(env_file)))
    project = Project(
        s, target=Target("127.0.0.1", "root", sshd.port, name="loopback"), services=("probe",)
    )
    before = logins(sshd)
    try:
        project.build(services=["probe"])
        assert logins(sshd) > before
        assert project.call(lambda: project.docker.image.exists(tag))
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)
