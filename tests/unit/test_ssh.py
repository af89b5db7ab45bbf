"""HostSession and fan_out in-process, with Fabric's own MockRemote for the SSH server.

``fabric.testing`` replaces paramiko's client: each ``Command`` gives one remote command's
stdout, stderr and exit code, and the mocked channel keeps what was written to its stdin
(``channel._stdin``), so what the sudo watcher answered can be read back exactly.
The real OpenSSH server and real sudo are in ``tests/integration/test_ssh.py``.
"""

from __future__ import annotations

import dataclasses
import getpass
import shlex
import sys
import threading
import time
from typing import Any

import pytest
from fabric.testing.base import Command, MockRemote, Session

from flops_tasks import commands, ssh
from flops_tasks.config import SshSettings, settings
from flops_tasks.hosts import Target
from flops_tasks.outcome import Outcome, Status, ok
from flops_tasks.ssh import HostSession, HostUnreachable, RemoteFailure, fan_out

SUDO_N_REFUSED = b"sudo: a password is required\n"


@pytest.fixture
def ssh_settings(ctx_factory, tmp_path):
    """``ssh_settings(**overrides)``: validated SSH settings (known_hosts in tmp_path)."""

    def make(**extra: Any) -> SshSettings:
        values = {"known_hosts": str(tmp_path / "known_hosts"), **extra}
        return settings(ctx_factory({"ssh": values})).ssh

    return make


@pytest.fixture
def remote():
    """Fabric's mocked SSH server; ``remote.expect_sessions(Session(...))`` sets it up."""
    mock = MockRemote()  # patching starts here
    yield mock
    mock.stop()


@pytest.fixture(autouse=True)
def no_cached_password():
    ssh.forget_sudo_password()
    yield
    ssh.forget_sudo_password()


def sudo_session(*commands_: Command) -> Session:
    """A non-root user's session: ``id -u``, then ``sudo -n`` refused, then ``commands_``."""
    return Session(
        commands=[Command(out=b"1000\n"), Command(err=SUDO_N_REFUSED, exit=1), *commands_]
    )


def deploy(name: str = "") -> Target:
    return Target(host="10.0.0.5", user="deploy", name=name)


# -- sudo ------------------------------------------------------------------------------------
def test_sudo_password_is_written_once_when_output_looks_like_the_prompt(remote, ssh_settings):
    """Lines with letters and spaces on stdout must not make the watcher answer again."""
    (_, _, channel) = remote.expect_sessions(
        sudo_session(
            Command(
                out=b"a sudo line\nmore text here: sudo flops tasks\n", err=ssh.SUDO_PROMPT.encode()
            )
        )
    )
    session = HostSession(deploy(), ssh_settings(), sudo_password=lambda: "s3cret")
    res = session.probe("echo")
    session.close()
    assert channel._stdin.getvalue() == b"s3cret\n"
    assert res.stdout.startswith("a sudo line") and ssh.SUDO_PROMPT not in res.stderr


@pytest.mark.parametrize(
    "out, err, sent",
    [
        (ssh.SUDO_PROMPT.encode(), b"", b""),  # the prompt on stdout only: no answer at all
        (ssh.SUDO_PROMPT.encode() * 2, ssh.SUDO_PROMPT.encode(), b"s3cret\n"),
    ],
    ids=["prompt-on-stdout-only", "prompt-on-both"],
)
def test_the_prompt_is_answered_on_stderr_only(remote, ssh_settings, out, err, sent):
    """sudo -S writes its prompt to stderr; the command's stdout is its own, and a prompt
    printed there (by the command, or by anything it runs) never receives the password."""
    (_, _, channel) = remote.expect_sessions(sudo_session(Command(out=out, err=err)))
    session = HostSession(deploy(), ssh_settings(), sudo_password=lambda: "s3cret")
    res = session.probe("echo")
    session.close()
    assert channel._stdin.getvalue() == sent
    assert res.stdout == out.decode()


def _refused_stderr() -> bytes:
    # Invoke reads output in chunks of 1000 bytes: the first chunk ends with the prompt
    # (the password is sent), sudo's refusal and its second prompt come in the next one
    prompt = ssh.SUDO_PROMPT.encode()
    return b"x" * (1000 - len(prompt)) + prompt + b"\nSorry, try again.\n" + prompt


def test_a_wrong_sudo_password_fails_at_once_in_one_line(remote, ssh_settings):
    (_, _, channel) = remote.expect_sessions(sudo_session(Command(err=_refused_stderr(), exit=1)))
    session = HostSession(deploy(), ssh_settings(), sudo_password=lambda: "wrong")
    with pytest.raises(RemoteFailure) as err:
        session.probe("id -u")
    message = str(err.value)
    assert "sudo on deploy@10.0.0.5 refused the password" in message
    assert "FLOPS_SUDO_PASSWORD" in message and "\n" not in message
    assert "wrong" not in message
    assert channel._stdin.getvalue() == b"wrong\n"  # answered the first prompt only
    # the session does not try again: no further command reaches the host
    with pytest.raises(RemoteFailure, match="refused the password"):
        session.probe("true")
    session.close()


def test_without_a_password_sudo_is_one_clear_failure(remote, ssh_settings):
    remote.expect_sessions(sudo_session())
    session = HostSession(deploy(), ssh_settings(), sudo_password=lambda: None)
    with pytest.raises(RemoteFailure, match="needs a password: export FLOPS_SUDO_PASSWORD"):
        session.probe("true")
    session.close()


def test_passwordless_sudo_sends_no_password(remote, ssh_settings):
    (_, channel) = remote.expect_sessions(
        Session(commands=[Command(out=b"1000\n"), Command(out=b"0\n")])
    )
    asked = []
    session = HostSession(
        deploy(), ssh_settings(), sudo_password=lambda: asked.append(1) or "unused"
    )
    assert session.probe("id -u").stdout == "0\n"
    session.close()
    assert asked == [] and channel._stdin.getvalue() == b""
    sent = channel.exec_command.call_args[0][0]
    assert shlex.split(sent)[:4] == ["sudo", "-n", "-H", "--"]


def _tty_prompt(monkeypatch: pytest.MonkeyPatch, answer: str) -> list[str]:
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return answer

    monkeypatch.setattr(getpass, "getpass", fake_getpass)
    monkeypatch.setattr(sys, "stdin", type("Tty", (), {"isatty": lambda self: True})())
    return prompts


def test_the_sudo_password_is_asked_once_per_run(remote, ssh_settings, monkeypatch):
    """Two fan-outs in one run (bootstrap's prepare, then doctor): one prompt."""
    s = ssh_settings(parallel=1)
    monkeypatch.delenv(s.sudo_password_env, raising=False)
    prompts = _tty_prompt(monkeypatch, "typed")
    hosts = [deploy("w1"), deploy("w2")]
    hosts[1] = Target(host="10.0.0.6", user="deploy", name="w2")
    channels = remote.expect_sessions(
        *[sudo_session(Command(err=ssh.SUDO_PROMPT.encode())) for _ in range(4)]
    )

    def work(session: HostSession) -> list[Outcome]:
        return [ok(session.label, "root", str(session.probe("id -u").exited))]

    first = fan_out(hosts, work, ssh=s)
    second = fan_out(hosts, work, ssh=s)
    assert [o.status for o in first + second] == [Status.OK] * 4
    assert len(prompts) == 1
    assert [c._stdin.getvalue() for c in channels[2::3]] == [b"typed\n"] * 4


def test_the_environment_variable_wins_over_the_prompt(ssh_settings, monkeypatch):
    s = ssh_settings()
    prompts = _tty_prompt(monkeypatch, "typed")
    monkeypatch.setenv(s.sudo_password_env, "from-env")
    assert ssh.password_source(s)() == "from-env"
    monkeypatch.delenv(s.sudo_password_env)
    assert ssh.password_source(s)() == "typed"
    assert ssh.password_source(s)() == "typed" and len(prompts) == 1


def test_no_prompt_without_a_terminal(ssh_settings, monkeypatch):
    s = ssh_settings()
    monkeypatch.delenv(s.sudo_password_env, raising=False)
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": pytest.fail("prompted"))
    monkeypatch.setattr(sys, "stdin", None)
    assert ssh.password_source(s)() is None


# -- connecting ------------------------------------------------------------------------------
def test_the_connect_timeout_reaches_paramiko_unrounded(remote, ssh_settings):
    """Fabric passes int(connect_timeout): 1.5 would become 1 (and 0.5 no timeout at all)."""
    remote.expect_sessions(Session(commands=[Command()]))
    session = HostSession(Target(host="10.0.0.5", user="root"), ssh_settings(connect_timeout=1.5))
    session.connection()
    kwargs = remote.sessions[0].client.connect.call_args.kwargs
    session.close()
    assert kwargs["timeout"] == 1.5
    assert kwargs["banner_timeout"] == kwargs["auth_timeout"] == 1.5


def test_the_configured_key_is_the_only_key(remote, ssh_settings, tmp_path):
    remote.expect_sessions(Session(commands=[Command()]))
    key = tmp_path / "id_ed25519"
    session = HostSession(Target(host="10.0.0.5", user="root"), ssh_settings(key=str(key)))
    session.connection()
    kwargs = remote.sessions[0].client.connect.call_args.kwargs
    session.close()
    assert kwargs["key_filename"] == [str(key)]
    assert kwargs["look_for_keys"] is False and kwargs["allow_agent"] is False


def _fabric_config(**top: Any) -> Any:
    """A config with Fabric's top-level keys set in code (config files refuse them)."""
    from invoke import Config

    return Config(overrides={"run": {"in_stream": False}, **top}, lazy=True)


def test_a_configured_gateway_never_runs(remote, ssh_settings, tmp_path):
    """Fabric runs a string ``gateway`` as a local ProxyCommand at the first connection."""
    remote.expect_sessions(Session(commands=[Command()]))
    marker = tmp_path / "PWNED"
    config = _fabric_config(gateway=f"touch {marker}")
    session = HostSession(Target(host="10.0.0.5", user="root"), ssh_settings(), config=config)
    cxn = session.connection()
    kwargs = remote.sessions[0].client.connect.call_args.kwargs
    session.close()
    time.sleep(0.2)  # a ProxyCommand would have been started by now
    assert not marker.exists()
    assert cxn.gateway is False and "sock" not in kwargs


def test_connect_kwargs_and_agent_forwarding_from_config_are_ignored(
    remote, ssh_settings, tmp_path
):
    remote.expect_sessions(Session(commands=[Command()]))
    key = tmp_path / "id_ed25519"
    config = _fabric_config(
        connect_kwargs={"key_filename": ["/root/.ssh/other"], "password": "p"},
        forward_agent=True,
        authentication={"identities": ["/root/.ssh/other"]},
    )
    session = HostSession(
        Target(host="10.0.0.5", user="root"), ssh_settings(key=str(key)), config=config
    )
    cxn = session.connection()
    kwargs = remote.sessions[0].client.connect.call_args.kwargs
    session.close()
    assert kwargs["key_filename"] == [str(key)] and "password" not in kwargs
    assert cxn.forward_agent is False


def test_run_env_from_config_never_prefixes_a_remote_command(remote, ssh_settings):
    """Fabric writes ``export K=V && `` unquoted before the command: code on the worker."""
    (channel,) = remote.expect_sessions(Session(commands=[Command(out=b"0\n")]))
    config = _fabric_config(run={"in_stream": False, "env": {"X": "1; touch /tmp/PWNED"}})
    session = HostSession(Target(host="10.0.0.5", user="root"), ssh_settings(), config=config)
    session.probe("id -u")
    session.close()
    assert channel.exec_command.call_args[0][0] == "id -u"


class FakeKey:
    def __init__(self, blob: bytes = b"key") -> None:
        self.blob = blob

    def get_name(self) -> str:
        return "ssh-ed25519"

    def asbytes(self) -> bytes:
        return self.blob

    def get_base64(self) -> str:
        import base64

        return base64.b64encode(self.blob).decode()

    def get_fingerprint(self) -> bytes:
        return self.blob


def _connect_error(remote: MockRemote, exc: BaseException, target: Target, s: SshSettings) -> str:
    remote.expect_sessions(Session(commands=[Command()]))
    remote.sessions[0].client.connect.side_effect = exc
    session = HostSession(target, s)
    with pytest.raises(HostUnreachable) as err:
        session.connection()
    assert session._cxn is None
    return str(err.value)


def test_a_changed_key_hint_names_the_port_and_the_file(remote, ssh_settings, tmp_path):
    from paramiko.ssh_exception import BadHostKeyException

    kh = tmp_path / "my known hosts"
    s = ssh_settings(known_hosts=str(kh))
    message = _connect_error(
        remote,
        BadHostKeyException("[10.0.0.5]:2222", FakeKey(b"new"), FakeKey(b"old")),
        Target(host="10.0.0.5", port=2222, user="root"),
        s,
    )
    assert "CHANGED" in message and "\n" not in message
    command = message.split("remove the old one with: ")[1]
    assert shlex.split(command) == ["ssh-keygen", "-f", str(kh), "-R", "[10.0.0.5]:2222"]


def test_a_changed_key_hint_on_port_22_names_the_bare_host(remote, ssh_settings):
    from paramiko.ssh_exception import BadHostKeyException

    s = ssh_settings()
    message = _connect_error(
        remote,
        BadHostKeyException("10.0.0.5", FakeKey(b"new"), FakeKey(b"old")),
        Target(host="10.0.0.5", user="root"),
        s,
    )
    command = message.split("remove the old one with: ")[1]
    assert shlex.split(command) == ["ssh-keygen", "-f", s.known_hosts, "-R", "10.0.0.5"]


def test_the_unknown_key_hint_is_a_command_that_runs_as_shown(tmp_path):
    kh = tmp_path / "dir with space" / "known_hosts"
    with pytest.raises(HostUnreachable) as err:
        ssh._policies(kh, accept_new=False).missing_host_key(None, "[10.0.0.5]:2222", FakeKey())
    message = str(err.value)
    command = message.split("add it with: ")[1]
    assert shlex.split(command) == ["ssh-keyscan", "-p", "2222", "10.0.0.5", ">>", str(kh)]
    assert "flops.ssh.host_keys: accept-new" in message


def test_accept_new_records_the_key_privately(tmp_path):
    from paramiko.client import SSHClient

    kh = tmp_path / "new" / "known_hosts"
    client = SSHClient()
    ssh._policies(kh, accept_new=True).missing_host_key(client, "[10.0.0.5]:2222", FakeKey())
    assert kh.read_text() == f"[10.0.0.5]:2222 ssh-ed25519 {FakeKey().get_base64()}\n"
    assert kh.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "make_exc, needle",
    [
        (
            lambda: __import__("paramiko").AuthenticationException("no way"),
            "authentication as root to 10.0.0.5:22 failed",
        ),
        (lambda: TimeoutError("timed out"), "connection to 10.0.0.5:22 timed out"),
        (
            lambda: __import__("paramiko").ssh_exception.NoValidConnectionsError(
                {("10.0.0.5", 22): ConnectionRefusedError(111, "refused")}
            ),
            "connection refused by 10.0.0.5:22: nothing listens on port 22; start sshd",
        ),
        (
            lambda: __import__("paramiko").ssh_exception.NoValidConnectionsError(
                {
                    ("10.0.0.5", 22): ConnectionRefusedError(111, "refused"),
                    ("fe80::5", 22, 0, 0): OSError(101, "Network is unreachable"),
                }
            ),
            "cannot connect to 10.0.0.5:22",
        ),
        (
            lambda: __import__("socket").gaierror(-2, "Name or service not known"),
            "cannot resolve '10.0.0.5' (Name or service not known): check the host name",
        ),
        (
            lambda: __import__("paramiko").SSHException("Error reading SSH protocol banner"),
            "SSH to 10.0.0.5:22 failed",
        ),
    ],
)
def test_connect_errors_are_one_line(remote, ssh_settings, make_exc, needle):
    message = _connect_error(
        remote, make_exc(), Target(host="10.0.0.5", user="root"), ssh_settings()
    )
    assert needle in message and "\n" not in message


def test_no_banner_names_the_timeout(remote, ssh_settings):
    from paramiko import SSHException

    remote.expect_sessions(Session(commands=[Command()]))
    client = remote.sessions[0].client
    client.connect.side_effect = SSHException("Error reading SSH protocol banner")
    client.get_transport.return_value.remote_version = ""
    session = HostSession(Target(host="10.0.0.5", user="root"), ssh_settings(connect_timeout=3))
    with pytest.raises(HostUnreachable, match="no SSH banner within 3s"):
        session.connection()


def test_an_unreadable_known_hosts_file_is_one_line(ssh_settings, tmp_path):
    kh = tmp_path / "known_hosts"
    kh.mkdir()  # exists, but cannot be read as a file
    session = HostSession(Target(host="10.0.0.5", user="root"), ssh_settings(known_hosts=str(kh)))
    with pytest.raises(HostUnreachable, match=f"cannot read known_hosts {kh}: "):
        session.connection()


# -- running ---------------------------------------------------------------------------------
def test_root_runs_directly_and_reuses_one_connection(remote, ssh_settings):
    channels = remote.expect_sessions(
        Session(commands=[Command(out=b"one\n"), Command(out=b"two\n")])
    )
    session = HostSession(Target(host="10.0.0.5", user="root"), ssh_settings())
    assert session.is_root()
    assert session.probe("echo one").stdout == "one\n"
    assert session.probe("echo two").stdout == "two\n"
    assert session.round_trips == 2 and session.connection() is session.connection()
    session.close()
    assert [c.exec_command.call_args[0][0] for c in channels] == ["echo one", "echo two"]


def test_a_dry_change_is_planned_and_a_probe_still_runs(remote, ssh_settings):
    remote.expect_sessions(Session(commands=[Command(out=b"seen\n")]))
    session = HostSession(Target(host="10.0.0.5", user="root"), ssh_settings(), dry=True)
    res = session.change("touch /x", "create /x")
    assert res.dry and res.ok
    assert [(c.summary, c.done) for c in session.changes.entries()] == [("create /x", False)]
    assert session.probe("echo seen").stdout == "seen\n"
    session.close()


def test_a_failed_change_names_the_step_and_the_last_line(remote, ssh_settings):
    remote.expect_sessions(Session(commands=[Command(err=b"first\nE: no space left\n", exit=100)]))
    session = HostSession(Target(host="10.0.0.5", user="root"), ssh_settings())
    with pytest.raises(RemoteFailure, match="^apt-get install x: E: no space left$"):
        session.change("apt-get install x", "apt-get install x")
    session.close()


def test_probes_come_back_by_name_and_missing_ones_fail(remote, ssh_settings):
    batch = [("a", "echo 1"), ("b", "false")]
    good = (
        f"{commands.PROBE_MARK} a\n1\n\n{commands.PROBE_MARK} rc 0\n"
        f"{commands.PROBE_MARK} b\n\n{commands.PROBE_MARK} rc 1\n"
    ).encode()
    remote.expect_sessions(
        Session(commands=[Command(out=good), Command(err=b"sh: 1: syntax error\n", exit=2)])
    )
    session = HostSession(Target(host="10.0.0.5", user="root"), ssh_settings())
    assert session.probes(batch) == {"a": (0, "1"), "b": (1, "")}
    with pytest.raises(RemoteFailure, match=r"probes did not run \(a, b\): sh: 1: syntax"):
        session.probes(batch)
    session.close()


def test_a_command_past_its_timeout_is_a_remote_failure(remote, ssh_settings):
    (channel,) = remote.expect_sessions(Session(commands=[Command()]))
    # a command that never ends by itself: it ends when Fabric closes its channel
    channel.exit_status_ready.side_effect = lambda: channel.close.called
    session = HostSession(Target(host="10.0.0.5", user="root"), ssh_settings())
    started = time.monotonic()
    with pytest.raises(RemoteFailure, match="timed out after 0.2s"):
        session.probe("sleep 60", timeout=0.2)
    assert time.monotonic() - started < 5
    session.close()


@pytest.mark.parametrize(
    "exc, kind", [(EOFError(), HostUnreachable), (OSError("Socket is closed"), HostUnreachable)]
)
def test_a_lost_connection_is_unreachable(remote, ssh_settings, exc, kind):
    remote.expect_sessions(Session(commands=[Command()]))
    transport = remote.sessions[0].client.get_transport.return_value
    transport.open_session.side_effect = exc
    session = HostSession(Target(host="10.0.0.5", user="root"), ssh_settings())
    with pytest.raises(kind, match="connection lost"):
        session.probe("true")


def test_upload_goes_to_a_fresh_temp_path(remote, ssh_settings, tmp_path):
    remote.expect_sessions(Session(commands=[Command(out=b"/tmp/flops-upload.AbC123\n")]))
    sftp = remote.sessions[0].client.open_sftp.return_value
    local = tmp_path / "data.parquet"
    local.write_bytes(b"PAR1")
    session = HostSession(Target(host="10.0.0.5", user="root"), ssh_settings())
    assert session.upload(str(local)) == "/tmp/flops-upload.AbC123"
    sftp.put.assert_called_once_with(str(local), "/tmp/flops-upload.AbC123", callback=None)
    session.close()


def test_a_failed_upload_is_a_remote_failure(remote, ssh_settings, tmp_path):
    remote.expect_sessions(
        Session(
            commands=[
                Command(out=b"/tmp/flops-upload.AbC123\n"),
                Command(err=b"mktemp: No space\n", exit=1),
            ]
        )
    )
    remote.sessions[0].client.open_sftp.return_value.put.side_effect = OSError("disk full")
    session = HostSession(Target(host="10.0.0.5", user="root"), ssh_settings())
    with pytest.raises(RemoteFailure, match="upload of .* failed: disk full"):
        session.upload(str(tmp_path / "x"))
    with pytest.raises(RemoteFailure, match="mktemp failed on root@10.0.0.5: mktemp: No space"):
        session.upload(str(tmp_path / "x"))
    session.close()


def test_an_aborted_session_does_not_connect_again(remote, ssh_settings):
    remote.expect_sessions(Session(commands=[Command()]))
    session = HostSession(Target(host="10.0.0.5", user="root"), ssh_settings())
    session.connection()
    session.abort()
    remote.sessions[0].client.get_transport.return_value.close.assert_called_once_with()
    session.close()
    with pytest.raises(HostUnreachable, match="aborted"):
        session.connection()


# -- fan_out -----------------------------------------------------------------------------------
class Recorder:
    """An Observer that records the calls it gets."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def host_started(self, host: str, step: object = None) -> None:
        with self.lock:
            self.calls.append(("started", host))

    def host_step(self, host: str, outcome: Outcome) -> None:
        with self.lock:
            self.calls.append(("step", host))

    def host_done(self, host: str, outcomes: list[Outcome]) -> None:
        with self.lock:
            self.calls.append(("done", host))


def test_fan_out_reports_every_host_in_order(remote, ssh_settings):
    from paramiko import AuthenticationException

    remote.expect_sessions(
        Session(commands=[Command(out=b"a\n")]),
        Session(commands=[Command()]),
        Session(commands=[Command(out=b"c\n")]),
    )
    remote.sessions[1].client.connect.side_effect = AuthenticationException("denied")
    targets = [Target(host=f"10.0.0.{i}", user="root", name=f"n{i}") for i in (1, 2, 3)]
    seen = Recorder()

    def work(session: HostSession) -> list[Outcome]:
        return [ok(session.label, "echo", session.probe("echo").stdout.strip())]

    outcomes = fan_out(targets, work, ssh=ssh_settings(parallel=1), observer=seen)
    assert [(o.host, o.status, o.detail[:4]) for o in outcomes] == [
        ("n1", Status.OK, "a"),
        ("n2", Status.UNREACHABLE, "auth"),
        ("n3", Status.OK, "c"),
    ]
    assert sorted(seen.calls) == sorted(
        [(kind, f"n{i}") for i in (1, 2, 3) for kind in ("started", "step", "done")]
    )


def test_fan_out_turns_every_failure_into_an_outcome(remote, ssh_settings):
    from flops_tasks.errors import FlopsError

    remote.expect_sessions(*[Session(commands=[Command()]) for _ in range(3)])
    errors = {"n1": RemoteFailure("apt broke"), "n2": FlopsError("bad data"), "n3": KeyError("bug")}
    targets = [Target(host=f"10.0.0.{i}", user="root", name=f"n{i}") for i in (1, 2, 3)]

    def work(session: HostSession) -> list[Outcome]:
        raise errors[session.label]

    outcomes = fan_out(targets, work, ssh=ssh_settings(), step="prepare")
    assert [(o.status, o.step, o.detail) for o in outcomes] == [
        (Status.FAILED, "prepare", "apt broke"),
        (Status.FAILED, "prepare", "bad data"),
        (Status.FAILED, "prepare", "KeyError: 'bug'"),
    ]
    assert fan_out([], work, ssh=ssh_settings()) == []


def test_fan_out_cuts_a_host_past_its_deadline(remote, ssh_settings):
    remote.expect_sessions(Session(commands=[Command()]), Session(commands=[Command()]))
    release = threading.Event()

    def work(session: HostSession) -> list[Outcome]:
        if session.label == "slow":
            release.wait(10)
        return [ok(session.label, "done")]

    targets = [
        Target(host="10.0.0.1", user="root", name="slow"),
        Target(host="10.0.0.2", user="root", name="fast"),
    ]
    started = time.monotonic()
    quick = dataclasses.replace(ssh_settings(), host_timeout=0.3)  # below what config allows
    outcomes = fan_out(targets, work, ssh=quick)
    release.set()
    assert time.monotonic() - started < 5
    assert [(o.host, o.status) for o in outcomes] == [("slow", Status.FAILED), ("fast", Status.OK)]
    assert "timed out after 0.3s (flops.ssh.host_timeout)" in outcomes[0].detail


def test_fan_out_keeps_sessions_open_when_asked(remote, ssh_settings):
    remote.expect_sessions(Session(commands=[Command(), Command()]))
    sessions: dict[str, HostSession] = {}
    target = Target(host="10.0.0.1", user="root", name="n1")

    def work(session: HostSession) -> list[Outcome]:
        session.probe("true")
        return [ok(session.label, "ran")]

    fan_out([target], work, ssh=ssh_settings(), sessions=sessions)
    first = sessions["n1"].connection()
    fan_out([target], work, ssh=ssh_settings(), sessions=sessions)
    assert sessions["n1"].connection() is first and sessions["n1"].round_trips == 2
    sessions["n1"].close()


def test_a_host_locked_by_another_run_is_refused(remote, ssh_settings, tmp_path, monkeypatch):
    from flops_tasks import locks

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    remote.expect_sessions(Session(commands=[Command()]), Session(commands=[Command()]))
    target = Target(host="10.0.0.1", user="root", port=2222)
    ran: list[str] = []

    def work(session: HostSession) -> list[Outcome]:
        ran.append(session.label)
        return [ok(session.label, "work")]

    with ssh.host_lock(target):
        refused = fan_out([target], work, ssh=ssh_settings(), lock=True)
    assert refused[0].status is Status.FAILED and ran == []
    assert "another flops-tasks run" in refused[0].detail
    assert fan_out([target], work, ssh=ssh_settings(), lock=True)[0].status is Status.OK
    assert locks.lock_dir() == tmp_path / "flops-tasks" / "locks"
    assert (tmp_path / "flops-tasks" / "locks" / "host-10.0.0.1_2222.lock").exists()


# -- one connection per host per run -----------------------------------------------------------
def test_a_run_shares_one_connection_per_host_across_fan_outs(remote, ssh_settings):
    """Two tasks of one run (two fan_outs): one handshake per host, counted per call."""
    channels = remote.expect_sessions(
        Session(commands=[Command(out=b"a1\n"), Command(out=b"a2\n")]),
        Session(commands=[Command(out=b"b1\n"), Command(out=b"b2\n")]),
    )
    targets = [Target(host=f"10.0.0.{i}", user="root", name=f"n{i}") for i in (1, 2)]

    def work(session: HostSession) -> list[Outcome]:
        return [ok(session.label, "echo", session.probe("echo").stdout.strip())]

    first: dict[str, dict[str, int]] = {}
    second: dict[str, dict[str, int]] = {}
    with ssh.shared_connections() as run:
        one = fan_out(targets, work, ssh=ssh_settings(parallel=1), traffic=first)
        two = fan_out(targets, work, ssh=ssh_settings(parallel=1), traffic=second)
        with ssh.shared_connections() as inner:  # nested: the outer run's connections
            assert inner is run
    assert [o.detail for o in one + two] == ["a1", "b1", "a2", "b2"]
    assert first == {f"n{i}": {"handshakes": 1, "round_trips": 1} for i in (1, 2)}
    assert second == {f"n{i}": {"handshakes": 0, "round_trips": 1} for i in (1, 2)}
    for session in remote.sessions:  # one connect per host, closed when the run ended
        session.client.connect.assert_called_once()
        session.client.close.assert_called_once()
    assert len(channels) == 4


def test_outside_a_run_each_fan_out_connects_and_closes(remote, ssh_settings):
    remote.expect_sessions(Session(commands=[Command()]), Session(commands=[Command()]))
    target = Target(host="10.0.0.1", user="root", name="n1")
    counts: list[dict] = []
    for _ in range(2):
        traffic: dict[str, dict[str, int]] = {}
        fan_out(
            [target],
            lambda s: [ok(s.label, "x", s.probe("true").stdout)],
            ssh=ssh_settings(),
            traffic=traffic,
        )
        counts.append(traffic["n1"])
    assert counts == [{"handshakes": 1, "round_trips": 1}] * 2
    for session in remote.sessions:
        session.client.close.assert_called_once()


def test_a_host_cut_by_its_deadline_connects_anew_in_the_next_task(remote, ssh_settings):
    remote.expect_sessions(Session(commands=[Command()]), Session(commands=[Command()]))
    release = threading.Event()
    target = Target(host="10.0.0.1", user="root", name="slow")
    quick = dataclasses.replace(ssh_settings(), host_timeout=0.3)

    def stall(session: HostSession) -> list[Outcome]:
        release.wait(10)
        return [ok(session.label, "late")]

    traffic: dict[str, dict[str, int]] = {}
    with ssh.shared_connections():
        cut = fan_out([target], stall, ssh=quick)
        release.set()
        again = fan_out(
            [target],
            lambda s: [ok(s.label, "ran", s.probe("true").stdout)],
            ssh=quick,
            traffic=traffic,
        )
    assert cut[0].status is Status.FAILED and again[0].status is Status.OK
    assert traffic["slow"]["handshakes"] == 1  # a new connection, not the cut one
    assert all(s.client.connect.call_count == 1 for s in remote.sessions)


def test_the_inv_program_runs_its_tasks_in_one_shared_run(monkeypatch):
    """`inv a b`: the executor wraps every task of the invocation in one run: one
    shared_connections() and one ``Run``."""
    from invoke import Collection, Config, task
    from invoke.executor import Executor

    from flops_tasks.edge import FlopsExecutor
    from flops_tasks.run import Run

    seen: list[object] = []
    runs: list[Run] = []

    @task
    def a(c):
        seen.append(ssh._run)
        runs.append(Run.of(c))

    @task
    def b(c):
        seen.append(ssh._run)
        runs.append(Run.of(c))

    FlopsExecutor(Collection(a, b), Config()).execute("a", "b")
    assert seen[0] is not None and seen[0] is seen[1] and ssh._run is None
    assert runs[0] is runs[1]
    Executor(Collection(a, b), Config()).execute("a")
    assert seen[2] is None


def test_waiting_for_a_command_wakes_when_it_ends_not_every_10_ms():
    """Invoke's runner polls every 10 ms until a command ends; ours waits on the channel's
    status event, so a command of 0.3 s costs a few checks, not about 30."""
    runner_class = ssh.stderr_watching_runner()
    runner = runner_class.__new__(runner_class)
    checks = []

    class Channel:
        status_event = threading.Event()

        def exit_status_ready(self) -> bool:
            checks.append(1)
            return self.status_event.is_set()

    runner.channel = Channel()
    runner.threads = {}
    threading.Timer(0.3, Channel.status_event.set).start()
    runner.wait()
    assert Channel.status_event.is_set()
    assert len(checks) <= 6, len(checks)


def test_connections_offer_aead_first_and_never_cbc_sha1_or_md5():
    offered = ssh.transport_class()
    assert offered._preferred_ciphers[0] == "aes128-gcm@openssh.com"
    assert not [c for c in offered._preferred_ciphers if "cbc" in c or "3des" in c]
    assert offered._preferred_macs[0] == "hmac-sha2-256-etm@openssh.com"
    assert not [m for m in offered._preferred_macs if "sha1" in m or "md5" in m]
    assert offered._preferred_keys[0] == "ssh-ed25519"  # host key types: paramiko's order
