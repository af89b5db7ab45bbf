"""The SSH layer against a real OpenSSH server on loopback."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from flops_tasks import commands
from flops_tasks.config import settings
from flops_tasks.hosts import Target
from flops_tasks.outcome import Status, ok
from flops_tasks.ssh import (
    SUDO_PROMPT,
    HostSession,
    HostUnreachable,
    RemoteFailure,
    fan_out,
    forget_sudo_password,
    password_source,
)

from .sshd import keygen, silent_listener

pytestmark = pytest.mark.integration


@pytest.fixture
def ssh_settings(ctx_factory):
    """``ssh_settings(sshd, known_hosts, **extra)``: validated SSH settings for the sshd."""

    def make(sshd, known_hosts, **extra):
        ssh = {
            "key": str(sshd.client_key),
            "known_hosts": str(known_hosts),
            "user": "root",
            # the tests that time connections out set their own; on a busy CI machine a
            # loopback sshd's banner can take seconds
            "connect_timeout": 10,
            **extra,
        }
        return settings(ctx_factory({"ssh": ssh})).ssh

    return make


def target(sshd):
    return Target(host="127.0.0.1", port=sshd.port, user="root")


def test_strict_accepts_pinned_key(sshd, tmp_path, ssh_settings):
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts_line())
    session = HostSession(target(sshd), ssh_settings(sshd, kh))
    try:
        assert session.probe("id -u").stdout.strip() == "0"
        assert session.probe("echo again").stdout.strip() == "again"
        # one connection reused by every step
        assert session.connection() is session.connection()
    finally:
        session.close()


def test_a_connection_uses_aes_gcm_where_the_server_offers_it(sshd, tmp_path, ssh_settings):
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts_line())
    session = HostSession(target(sshd), ssh_settings(sshd, kh))
    try:
        session.probe("true")
        transport = session.connection().client.get_transport()
        assert transport.local_cipher == transport.remote_cipher == "aes128-gcm@openssh.com"
        assert transport.host_key_type == "ssh-ed25519"
    finally:
        session.close()


def test_a_server_without_aes_gcm_gets_ctr_with_encrypt_then_mac(tmp_path_factory, ssh_settings):
    from .sshd import start_sshd

    server = start_sshd(
        tmp_path_factory.mktemp("sshd-ctr"),
        extra="Ciphers aes256-ctr,aes128-cbc\nMACs hmac-sha2-512-etm@openssh.com,hmac-sha1\n",
    )
    kh = tmp_path_factory.mktemp("kh") / "known_hosts"
    kh.write_text(server.known_hosts_line())
    session = HostSession(target(server), ssh_settings(server, kh))
    try:
        assert session.probe("echo ctr").stdout.strip() == "ctr"
        transport = session.connection().client.get_transport()
        assert transport.local_cipher == "aes256-ctr"
        assert transport.local_mac == "hmac-sha2-512-etm@openssh.com"
    finally:
        session.close()
        server.stop()


def test_a_server_offering_only_cbc_or_sha1_is_refused(tmp_path_factory, ssh_settings):
    from .sshd import start_sshd

    server = start_sshd(tmp_path_factory.mktemp("sshd-cbc"), extra="Ciphers aes128-cbc\n")
    kh = tmp_path_factory.mktemp("kh") / "known_hosts"
    kh.write_text(server.known_hosts_line())
    try:
        outcomes = fan_out(
            [target(server)], lambda s: [ok(s.label, "noop")], ssh=ssh_settings(server, kh)
        )
    finally:
        server.stop()
    assert outcomes[0].status is Status.UNREACHABLE, outcomes[0]
    assert "no acceptable ciphers" in outcomes[0].detail


def test_strict_refuses_unknown_key(sshd, tmp_path, ssh_settings):
    kh = tmp_path / "known_hosts"  # missing file: nothing is trusted
    session = HostSession(target(sshd), ssh_settings(sshd, kh))
    with pytest.raises(HostUnreachable) as err:
        session.probe("true")
    assert "is not in" in str(err.value) and "ssh-keyscan -p" in str(err.value)
    assert not kh.exists()


def test_changed_key_is_refused_even_with_accept_new(sshd, tmp_path, ssh_settings):
    other = tmp_path / "other"
    keygen(other)
    kind, key = (tmp_path / "other.pub").read_text().split()[:2]
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {kind} {key}\n")
    session = HostSession(target(sshd), ssh_settings(sshd, kh, host_keys="accept-new"))
    with pytest.raises(HostUnreachable, match="CHANGED"):
        session.probe("true")
    assert kh.read_text() == f"[127.0.0.1]:{sshd.port} {kind} {key}\n"


def test_accept_new_records_the_key(sshd, tmp_path, ssh_settings):
    kh = tmp_path / "ssh" / "known_hosts"
    session = HostSession(target(sshd), ssh_settings(sshd, kh, host_keys="accept-new"))
    assert session.probe("true").ok
    session.close()
    assert kh.read_text() == sshd.known_hosts_line()
    # and the recorded key is then trusted strictly
    strict = HostSession(target(sshd), ssh_settings(sshd, kh))
    assert strict.probe("true").ok
    strict.close()


def test_silent_port_times_out_within_bound(tmp_path, sshd, ssh_settings):
    server, port = silent_listener()
    try:
        s = ssh_settings(sshd, tmp_path / "kh", connect_timeout=1.5)
        start = time.monotonic()
        outcomes = fan_out(
            [Target(host="127.0.0.1", port=port, user="root")],
            lambda session: [ok(session.label, "noop")],
            ssh=s,
        )
        elapsed = time.monotonic() - start
    finally:
        server.close()
    assert [o.status for o in outcomes] == [Status.UNREACHABLE]
    assert "banner" in outcomes[0].detail or "timed out" in outcomes[0].detail
    assert elapsed < 6


@pytest.fixture
def syn_drop():
    """An address whose port 22 drops every SYN (no answer at all, as a firewall's DROP gives),
    while its other ports refuse at once: a network namespace of the test's own, a veth pair
    into it, and an iptables DROP rule inside it. Removed afterwards (the namespace takes
    its end of the pair and the rule with it)."""
    for tool in ("ip", "iptables"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is not installed: run .ci/setup")
    if os.geteuid() != 0:
        pytest.skip("a network namespace needs root")
    tag = secrets.token_hex(3)
    ns, here, there = f"flops-syn-{tag}", f"fs{tag}a", f"fs{tag}b"
    block = f"198.18.{secrets.randbelow(256)}.{4 * secrets.randbelow(64)}"  # RFC 2544, a /30
    prefix, last = block.rsplit(".", 1)
    mine, theirs = f"{prefix}.{int(last) + 1}", f"{prefix}.{int(last) + 2}"
    steps = [
        ["ip", "netns", "add", ns],
        ["ip", "link", "add", here, "type", "veth", "peer", "name", there],
        ["ip", "link", "set", there, "netns", ns],
        ["ip", "addr", "add", f"{mine}/30", "dev", here],
        ["ip", "link", "set", here, "up"],
        ["ip", "-n", ns, "addr", "add", f"{theirs}/30", "dev", there],
        ["ip", "-n", ns, "link", "set", there, "up"],
        ["ip", "netns", "exec", ns, "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22",
         "-j", "DROP"],
    ]  # fmt: skip
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True)
        yield theirs
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", here], capture_output=True)  # if the move failed


@pytest.mark.parametrize("timeout", [1, 1.5])
def test_a_port_that_drops_syns_times_out_within_the_connect_timeout(
    tmp_path, sshd, ssh_settings, syn_drop, timeout
):
    """No SYN-ACK, no RST: only the connect timeout ends the wait (the kernel would retry
    for about two minutes). It is paramiko's, as configured: Fabric's int() made 1.5 s 1 s
    and 0.5 s no timeout at all, and below 1 s is refused in config."""
    s = ssh_settings(sshd, tmp_path / "kh", connect_timeout=timeout)

    def reach(port: int) -> tuple[list, float]:
        start = time.monotonic()
        outcomes = fan_out(
            [Target(host=syn_drop, port=port, user="root")],
            lambda session: [ok(session.label, "noop")],
            ssh=s,
        )
        return outcomes, time.monotonic() - start

    refused, quick = reach(23)  # the control: the address answers, with a refusal
    assert [o.status for o in refused] == [Status.UNREACHABLE] and quick < 0.5
    assert "connection refused by" in refused[0].detail
    dropped, elapsed = reach(22)
    assert [o.status for o in dropped] == [Status.UNREACHABLE]
    assert f"connection to {syn_drop}:22 timed out" in dropped[0].detail
    assert timeout - 0.05 <= elapsed < timeout + 1.5


def test_closed_port_is_unreachable(tmp_path, sshd, ssh_settings):
    from .sshd import free_port

    s = ssh_settings(sshd, tmp_path / "kh")
    outcomes = fan_out(
        [Target(host="127.0.0.1", port=free_port(), user="root")],
        lambda session: [ok(session.label, "noop")],
        ssh=s,
    )
    assert outcomes[0].status is Status.UNREACHABLE
    assert "connection refused by" in outcomes[0].detail


def test_metacharacters_arrive_intact(sshd, tmp_path, ssh_settings):
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts_line())
    hostile = [
        "a b",
        "$(touch /tmp/flops-pwned)",
        "`id`",
        "'; exit 3; '",
        '"',
        "*",
        "$HOME",
        "x\ty",
        ";|&<>",
    ]
    session = HostSession(target(sshd), ssh_settings(sshd, kh))
    try:
        res = session.probe(commands.echo_args(hostile))
    finally:
        session.close()
    assert res.stdout.split("\n")[:-1] == hostile
    assert not os.path.exists("/tmp/flops-pwned")


def test_host_timeout_cuts_a_stalled_command(sshd, tmp_path, ssh_settings):
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts_line())
    s = ssh_settings(sshd, kh, host_timeout=2)
    start = time.monotonic()

    def stall(session):
        session.probe("sleep 60")
        return [ok(session.label, "stall")]

    outcomes = fan_out([target(sshd)], stall, ssh=s)
    elapsed = time.monotonic() - start
    assert outcomes[0].status is Status.FAILED
    assert "timed out after 2s" in outcomes[0].detail
    assert elapsed < 8


def test_fan_out_reports_every_host_in_order(sshd, tmp_path, ssh_settings):
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts_line())
    from .sshd import free_port

    s = ssh_settings(sshd, kh, parallel=2)
    good = [Target(host="127.0.0.1", port=sshd.port, user="root", name=f"n{i}") for i in range(3)]
    bad = Target(host="127.0.0.1", port=free_port(), user="root", name="down")

    def work(session):
        out = session.probe(commands.cmd("echo", session.label)).stdout.strip()
        return [ok(session.label, "echo", out)]

    outcomes = fan_out([good[0], bad, good[1], good[2]], work, ssh=s)
    assert [(o.host, o.status) for o in outcomes] == [
        ("n0", Status.OK),
        ("down", Status.UNREACHABLE),
        ("n1", Status.OK),
        ("n2", Status.OK),
    ]
    assert [o.detail for o in outcomes if o.status is Status.OK] == ["n0", "n1", "n2"]


def test_dry_change_is_planned_not_run(sshd, tmp_path, ssh_settings):
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts_line())
    marker = tmp_path / "changed"
    session = HostSession(target(sshd), ssh_settings(sshd, kh), dry=True)
    try:
        res = session.change(commands.cmd("touch", str(marker)), f"create {marker}")
        assert res.dry
        assert [(c.summary, c.done) for c in session.changes.entries()] == [
            (f"create {marker}", False)
        ]
        assert (
            session.probe(commands.cmd("echo", "probes still run")).stdout.strip()
            == "probes still run"
        )
    finally:
        session.close()
    assert not marker.exists()


@dataclass(frozen=True)
class SudoUser:
    name: str
    password: str


@pytest.fixture
def sudo_user(sshd):
    """A new non-root user whose sudo needs a password; removed afterwards, sudoers rule too."""
    if not shutil.which("sudo"):
        pytest.fail("sudo is not installed: run .ci/setup")
    name = f"flops-sudo-{secrets.token_hex(4)}"
    rule = Path("/etc/sudoers.d") / name
    subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True)
    try:
        password = secrets.token_hex(12)
        subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
        home = Path(pwd.getpwnam(name).pw_dir)
        subprocess.run(["install", "-d", "-m", "700", "-o", name, str(home / ".ssh")], check=True)
        keys = home / ".ssh" / "authorized_keys"
        keys.write_text(Path(f"{sshd.client_key}.pub").read_text())
        subprocess.run(["chown", name, str(keys)], check=True)
        rule.write_text(f"{name} ALL=(ALL) ALL\n")
        rule.chmod(0o440)
        yield SudoUser(name, password)
    finally:
        rule.unlink(missing_ok=True)
        _remove_user(name)


def _remove_user(name: str) -> None:
    """userdel refuses while the user's last sshd session is still closing: retry briefly."""
    deadline = time.monotonic() + 10
    while True:
        subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)
        subprocess.run(["userdel", "-r", name], capture_output=True)
        if subprocess.run(["id", name], capture_output=True).returncode != 0:
            return
        assert time.monotonic() < deadline, f"user {name} could not be removed"
        time.sleep(0.2)


def sudo_session(sshd, kh, user, ssh_settings, monkeypatch, password):
    kh.write_text(sshd.known_hosts_line())
    s = ssh_settings(sshd, kh, user=None)
    if password is None:
        monkeypatch.delenv(s.sudo_password_env, raising=False)
    else:
        monkeypatch.setenv(s.sudo_password_env, password)
    forget_sudo_password()
    return HostSession(
        Target(host="127.0.0.1", port=sshd.port, user=user.name),
        s,
        sudo_password=password_source(s),
    )


def test_sudo_password_from_the_environment_is_used_and_never_shown(
    sshd, sudo_user, tmp_path, monkeypatch, ssh_settings
):
    session = sudo_session(
        sshd, tmp_path / "known_hosts", sudo_user, ssh_settings, monkeypatch, sudo_user.password
    )
    try:
        assert not session.is_root()
        res = session.probe(commands.all_of("id -u", commands.cmd("echo", "a b")))
        marker = tmp_path / "made-as-root"
        session.change(commands.cmd("touch", str(marker)), "touch a file as root")
    finally:
        session.close()
    assert res.stdout.split("\n")[:2] == ["0", "a b"]  # the whole compound ran as root
    assert sudo_user.password not in res.stdout + res.stderr
    assert os.stat(marker).st_uid == 0


def test_output_like_the_sudo_prompt_gets_no_password(
    sshd, sudo_user, tmp_path, monkeypatch, ssh_settings
):
    """The password goes to sudo's prompt only, never into the command's stdin."""
    session = sudo_session(
        sshd, tmp_path / "known_hosts", sudo_user, ssh_settings, monkeypatch, sudo_user.password
    )
    line = "flops tasks sudo: a line of words as any command prints them"
    try:
        res = session.probe(
            f"echo '{line}'; got=$(timeout 3 head -n 1); echo \"stdin:[$got]\"", timeout=20
        )
    finally:
        session.close()
    assert res.stdout.splitlines() == [line, "stdin:[]"]
    assert sudo_user.password not in res.stdout + res.stderr


def test_the_prompt_printed_on_stdout_gets_no_password(
    sshd, sudo_user, tmp_path, monkeypatch, ssh_settings
):
    """Real sudo -S writes its prompt to stderr, and that one is answered (the command runs
    as root); the same prompt printed by the command on stdout is not sudo asking."""
    session = sudo_session(
        sshd, tmp_path / "known_hosts", sudo_user, ssh_settings, monkeypatch, sudo_user.password
    )
    try:
        res = session.probe(
            commands.all_of(
                commands.cmd("id", "-u"),
                commands.cmd("printf", "%s\\n", SUDO_PROMPT),
                'got=$(timeout 3 head -n 1); echo "stdin:[$got]"',
            ),
            timeout=20,
        )
    finally:
        session.close()
    assert res.stdout.splitlines() == ["0", SUDO_PROMPT, "stdin:[]"]
    assert sudo_user.password not in res.stdout + res.stderr


def test_a_wrong_sudo_password_fails_at_once_in_one_line(
    sshd, sudo_user, tmp_path, monkeypatch, ssh_settings
):
    session = sudo_session(
        sshd,
        tmp_path / "known_hosts",
        sudo_user,
        ssh_settings,
        monkeypatch,
        "not-" + sudo_user.password,
    )
    started = time.monotonic()
    try:
        with pytest.raises(RemoteFailure) as err:
            session.probe("id -u")
    finally:
        session.close()
    message = str(err.value)
    assert f"sudo on {sudo_user.name}@127.0.0.1" in message
    assert "refused the password" in message and "\n" not in message
    assert sudo_user.password not in message
    assert time.monotonic() - started < 10  # one attempt: sudo waits about 2 s after it


def test_sudo_without_a_password_is_one_clear_failure(
    sshd, sudo_user, tmp_path, monkeypatch, ssh_settings
):
    session = sudo_session(
        sshd, tmp_path / "known_hosts", sudo_user, ssh_settings, monkeypatch, None
    )
    try:
        with pytest.raises(RemoteFailure, match="needs a password: export FLOPS_SUDO_PASSWORD"):
            session.probe("id -u")
    finally:
        session.close()


def test_a_host_locked_by_another_run_is_refused(sshd, tmp_path, monkeypatch, ssh_settings):
    from flops_tasks import ssh as sshmod

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    kh = tmp_path / "known_hosts"
    kh.write_text(sshd.known_hosts_line())
    s = ssh_settings(sshd, kh)
    ran = []

    def work(session):
        ran.append(session.label)
        return [ok(session.label, "work")]

    with sshmod.host_lock(target(sshd)):
        outcomes = fan_out([target(sshd)], work, ssh=s, lock=True)
    assert outcomes[0].status is Status.FAILED
    assert "another flops-tasks run" in outcomes[0].detail and ran == []
    assert fan_out([target(sshd)], work, ssh=s, lock=True)[0].status is Status.OK
