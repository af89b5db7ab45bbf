"""A failed remote command reports why: its first error lines, bounded, secrets masked.

HostSession runs against Fabric's MockRemote (as in test_ssh.py); the stderr below is what
the docker CLI printed when ``docker run`` of the sidecar failed (name in use, port held,
image not pullable): the reason comes first, ``See 'docker run --help'.`` last.
"""

from __future__ import annotations

import pytest
from fabric.testing.base import Command, MockRemote, Session

from flops_tasks import ssh
from flops_tasks.config import settings
from flops_tasks.hosts import Target
from flops_tasks.remote_text import MAX_CHARS, failure_detail, mask
from flops_tasks.ssh import HostSession, RemoteFailure

DOCKER_RUN_CONFLICT = (
    b'docker: Error response from daemon: Conflict. The container name "/ml_data_server" is '
    b'already in use by container "4f0c". You have to remove (or rename) that container to '
    b"be able to reuse that name.\nSee 'docker run --help'.\n"
)
DOCKER_RUN_PULL = (
    b"Unable to find image '172.30.0.1:5073/flops/ml-data-server:offline' locally\n"
    b'docker: Error response from daemon: Get "https://172.30.0.1:5073/v2/": http: server '
    b"gave HTTP response to HTTPS client.\nSee 'docker run --help'.\n"
)


@pytest.fixture
def remote():
    mock = MockRemote()
    yield mock
    mock.stop()


@pytest.fixture(autouse=True)
def no_cached_password():
    ssh.forget_sudo_password()
    yield
    ssh.forget_sudo_password()


@pytest.fixture
def ssh_settings(ctx_factory, tmp_path):
    return settings(ctx_factory({"ssh": {"known_hosts": str(tmp_path / "known_hosts")}})).ssh


def failing_change(remote, ssh_settings, err: bytes, out: bytes = b"", **kw) -> str:
    remote.expect_sessions(Session(commands=[Command(out=out, err=err, exit=125)]))
    session = HostSession(Target(host="10.0.0.5", user="root"), ssh_settings, **kw)
    with pytest.raises(RemoteFailure) as err_info:
        session.change("docker run ...", "docker run -d --name ml_data_server")
    session.close()
    return str(err_info.value)


@pytest.mark.parametrize(
    ("err", "reason"),
    [
        (DOCKER_RUN_CONFLICT, 'The container name "/ml_data_server" is already in use'),
        (DOCKER_RUN_PULL, "http: server gave HTTP response to HTTPS client"),
    ],
)
def test_a_failed_docker_run_reports_the_reason_not_the_help_line(
    remote, ssh_settings, err, reason
):
    message = failing_change(remote, ssh_settings, err)
    assert message.startswith("docker run -d --name ml_data_server: ")
    assert reason in message
    assert "docker run --help" not in message
    assert "\n" not in message


def test_the_first_error_lines_come_in_order_and_bounded(remote, ssh_settings):
    err = b"".join(b"step %d: error number %d\n" % (i, i) for i in range(40))
    message = failing_change(remote, ssh_settings, err + b"x" * 5000 + b"\n")
    assert "step 0: error number 0 | step 1: error number 1" in message
    assert "step 4: error number 4" in message and "step 5:" not in message
    assert len(message) <= len("docker run -d --name ml_data_server: ") + MAX_CHARS


def test_stdout_speaks_when_stderr_is_silent(remote, ssh_settings):
    message = failing_change(remote, ssh_settings, b"", out=b"cannot open /x: denied\n")
    assert message.endswith(": cannot open /x: denied")
    assert failing_change(remote, ssh_settings, b"").endswith(": exit 125")


def test_the_sudo_password_and_tokens_never_reach_the_report(remote, ssh_settings):
    """A command that echoes the sudo password (or prints a token) fails: masked."""
    secret = "s3cret-Pw"
    remote.expect_sessions(
        Session(
            commands=[
                Command(out=b"1000\n"),
                Command(err=b"sudo: a password is required\n", exit=1),
                Command(
                    err=(
                        f"{ssh.SUDO_PROMPT}error: bad value {secret}\n"
                        "fatal: could not read https://bob:hunter2@git.example/x\n"
                        "Authorization: Bearer eyJhbGciOi.abc.def failed\n"
                    ).encode(),
                    exit=1,
                ),
            ]
        )
    )
    session = HostSession(
        Target(host="10.0.0.5", user="deploy"), ssh_settings, sudo_password=lambda: secret
    )
    with pytest.raises(RemoteFailure) as err:
        session.change("false", "a step")
    session.close()
    message = str(err.value)
    assert secret not in message and "hunter2" not in message and "eyJhbGciOi" not in message
    assert "error: bad value ***" in message
    assert "https://bob:***@git.example/x" in message and "Bearer ***" in message


def test_control_characters_are_escaped():
    assert failure_detail("error: \x1b]0;pwned\x07 \u202eevil\n") == (
        "error: \\x1b]0;pwned\\x07 \\u202eevil"
    )


def test_mask_leaves_ordinary_words():
    assert mask("password is required; token expired") == "password is required; token expired"
    assert mask("password=abc token: xyz") == "password=*** token: ***"
