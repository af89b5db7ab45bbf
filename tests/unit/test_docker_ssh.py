"""Docker's SSH transport under flops.ssh's rules: the ssh docker runs, and what it is told.

The real transport (docker CLI -> our ssh wrapper -> OpenSSH -> sshd -> docker dial-stdio)
is in tests/integration/test_docker_ssh.py; here the wrapper runs a recording stand-in for
the ssh binary, so every argument docker's ssh receives is checked.
"""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from flops_tasks import docker_ssh
from flops_tasks.config import settings
from flops_tasks.errors import FlopsError
from flops_tasks.hosts import Target

# docker/cli cli/connhelper: what docker runs for ssh://root@10.0.0.7:2222
DOCKER_ARGS = [
    "-o",
    "ConnectTimeout=30",
    "-T",
    "-l",
    "root",
    "-p",
    "2222",
    "--",
    "10.0.0.7",
    "docker",
    "system",
    "dial-stdio",
]


@pytest.fixture
def ssh_settings(ctx_factory, tmp_path):
    def make(**ssh):
        base = {
            "known_hosts": str(tmp_path / "known_hosts"),
            "key": str(tmp_path / "id"),
            "connect_timeout": 7,
        }
        return settings(ctx_factory({"ssh": {**base, **ssh}})).ssh

    return make


@pytest.fixture
def recording_ssh(tmp_path, monkeypatch):
    """An ``ssh`` on PATH that writes its arguments, one per line, to a file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv"
    fake = bin_dir / "ssh"
    fake.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > {record}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(docker_ssh, "_folders", {})
    yield record
    docker_ssh._remove_all()


def run_wrapper(ssh, *args: str) -> None:
    folder = docker_ssh.folder_for(ssh)
    subprocess.run([str(folder / "ssh"), *args], check=True)


def test_docker_runs_our_ssh_first_on_path(ssh_settings, recording_ssh):
    ssh = ssh_settings()
    call = docker_ssh.client_call(ssh)
    assert call[0] == "env" and call[-1] == "docker"
    folder = docker_ssh.folder_for(ssh)
    assert call[1].startswith(f"PATH={folder}{os.pathsep}")
    # the shell resolves ``ssh`` in that PATH to our wrapper, as docker's exec.Command does
    found = subprocess.run(
        [*call[:2], "sh", "-c", "command -v ssh"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert found == str(folder / "ssh")


def test_the_wrapper_gives_ssh_our_options_before_dockers(ssh_settings, recording_ssh, tmp_path):
    run_wrapper(ssh_settings(), *DOCKER_ARGS)
    argv = recording_ssh.read_text().splitlines()
    # no user or system ssh config is read
    assert argv[:2] == ["-F", "/dev/null"]
    # every option of ours comes before docker's own (ssh keeps the first value it sees)
    ours = argv[2 : len(argv) - len(DOCKER_ARGS)]
    assert argv[len(ours) + 2 :] == DOCKER_ARGS
    options = dict(o.split("=", 1) for o in ours[1::2])
    assert set(ours[0::2]) == {"-o"}
    assert options["StrictHostKeyChecking"] == "yes"
    assert options["UserKnownHostsFile"] == f'"{tmp_path / "known_hosts"}"'
    assert options["GlobalKnownHostsFile"] == "/dev/null"
    assert options["IdentityFile"] == f'"{tmp_path / "id"}"'
    assert options["IdentitiesOnly"] == "yes" and options["IdentityAgent"] == "none"
    assert options["BatchMode"] == "yes" and options["PasswordAuthentication"] == "no"
    assert options["ConnectTimeout"] == "7"  # ours, ahead of docker's ConnectTimeout=30
    assert options["UpdateHostKeys"] == "no" and options["ForwardAgent"] == "no"


def test_accept_new_and_no_key(ssh_settings, recording_ssh):
    run_wrapper(ssh_settings(host_keys="accept-new", key=None), *DOCKER_ARGS)
    argv = recording_ssh.read_text().splitlines()
    options = dict(o.split("=", 1) for o in argv[3 : len(argv) - len(DOCKER_ARGS) : 2])
    assert options["StrictHostKeyChecking"] == "accept-new"
    # no key configured: ssh's default keys and agent, as the Fabric layer then uses
    assert "IdentityFile" not in options and "IdentitiesOnly" not in options


def test_paths_are_one_value_each(ssh_settings, recording_ssh, tmp_path):
    odd = tmp_path / "my keys" / "100%" / "known_hosts"
    run_wrapper(ssh_settings(known_hosts=str(odd)), *DOCKER_ARGS)
    argv = recording_ssh.read_text().splitlines()
    assert f'UserKnownHostsFile="{str(odd).replace("%", "%%")}"' in argv
    with pytest.raises(FlopsError, match="flops.ssh.key") as err:
        docker_ssh.ssh_options(ssh_settings(key=str(tmp_path / 'a"b')))
    assert err.value.code == 2


def test_the_wrapper_folder_is_private_and_removed_at_exit(ssh_settings, recording_ssh):
    ssh = ssh_settings()
    folder = docker_ssh.folder_for(ssh)
    assert docker_ssh.folder_for(ssh) == folder  # once per run
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "ssh").stat().st_mode) == 0o700
    other = docker_ssh.folder_for(replace(ssh, host_keys="accept-new"))
    assert other != folder
    docker_ssh._remove_all()
    assert not folder.exists() and not other.exists()


def test_the_real_ssh_is_never_our_own_wrapper(ssh_settings, recording_ssh, monkeypatch):
    folder = docker_ssh.folder_for(ssh_settings())
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    assert Path(docker_ssh.real_ssh()).parent != folder


def test_no_ssh_client_is_one_line(ssh_settings, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(docker_ssh, "_folders", {})
    with pytest.raises(FlopsError, match="openssh-client"):
        docker_ssh.folder_for(ssh_settings())


def test_engine_url():
    assert (
        docker_ssh.engine_url(Target("10.0.0.7", port=2222), "ubuntu")
        == "ssh://ubuntu@10.0.0.7:2222"
    )
    assert docker_ssh.engine_url(Target("fd00::7"), "root") == "ssh://root@[fd00::7]:22"


# docker's reports of a failed ssh connection, as the docker CLI prints them
def docker_error(status: int, stderr: str) -> str:
    return (
        'error during connect: Get "http://docker.example.com/v1.41/version": command '
        "[ssh -o ConnectTimeout=30 -T -l root -p 22 -- 10.0.0.7 docker system dial-stdio] "
        f"has exited with exit status {status}, make sure the URL is valid, and Docker 18.09"
        f" or later is installed on the remote host: stderr={stderr}"
    )


@pytest.mark.parametrize(
    "status, stderr, needle",
    [
        (127, "sh: 1: docker: not found", "has no docker CLI"),
        (
            1,
            "permission denied while trying to connect to the Docker daemon socket at "
            "unix:///var/run/docker.sock",
            "may not use Docker",
        ),
        (
            1,
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker "
            "daemon running?",
            "does not answer",
        ),
    ],
)
def test_remote_command_failures_are_explained(ssh_settings, status, stderr, needle):
    line = docker_ssh.explain(
        docker_error(status, stderr),
        Target("10.0.0.7"),
        "host w1",
        ssh_settings(),
        "start dockerd there",
    )
    assert line.startswith("host w1") and needle in line and "\n" not in line


def test_ssh_failures_are_explained_by_the_fabric_layer(ssh_settings, monkeypatch):
    seen = []
    monkeypatch.setattr(
        docker_ssh,
        "_fabric_says",
        lambda target, ssh: seen.append(target) or "host key of 10.0.0.7 ...",
    )
    text = docker_error(255, "Host key verification failed.")
    line = docker_ssh.explain(text, Target("10.0.0.7"), "host w1", ssh_settings(), "")
    assert line == "host w1: host key of 10.0.0.7 ..." and seen == [Target("10.0.0.7")]
    # when the Fabric layer connects fine, ssh's own last line is given
    monkeypatch.setattr(docker_ssh, "_fabric_says", lambda target, ssh: None)
    assert (
        docker_ssh.explain(text, Target("10.0.0.7"), "host w1", ssh_settings(), "")
        == "host w1: Host key verification failed."
    )


def test_other_docker_errors_are_not_transport_failures(ssh_settings):
    assert (
        docker_ssh.explain(
            "Error: No such container: x", Target("10.0.0.7"), "host w1", ssh_settings(), ""
        )
        is None
    )
