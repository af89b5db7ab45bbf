"""The SSH layer: one Fabric connection per host, strict host keys, bounded fan-out.

- Host keys: Fabric trusts any key by default (``AutoAddPolicy``). Each connection here
  loads the configured known_hosts file and either refuses unknown keys (``strict``) or
  records them (``accept-new``, like OpenSSH's ``StrictHostKeyChecking=accept-new``).
  A changed key is always refused.
- Every step of a task reuses the host's one connection; inside ``shared_connections()``
  (an ``inv`` run with several tasks, ``bootstrap``) every task does: one SSH handshake per
  host per run. Each session counts its handshakes and round trips.
- ``fan_out`` runs hosts in a bounded thread pool; every connect, banner, auth and command
  has a timeout, and a per-host deadline closes a host's connection when it is exceeded.
- Root: commands run directly; otherwise under ``sudo`` (password from an environment
  variable or one prompt per run, answered by a watcher and never printed; a password sudo
  refuses fails the host at once).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import getpass
import os
import re
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from . import commands
from .changes import Change, ChangeLog
from .config import SshSettings
from .errors import FlopsError
from .hosts import Target
from .outcome import Outcome, failed, interrupted, unreachable

if TYPE_CHECKING:
    from fabric import Config as FabricConfig
    from fabric import Connection
    from invoke.config import Config as InvokeConfig
    from invoke.watchers import FailingResponder
    from paramiko.client import MissingHostKeyPolicy, SSHClient
    from paramiko.pkey import PKey
    from paramiko.transport import Transport

SUDO_PROMPT = "[flops-tasks sudo] "
# what sudo prints when it refuses a password (the sentinel of invoke's own ``sudo``)
SUDO_REFUSED = "Sorry, try again."
_known_hosts_lock = threading.Lock()
_password_lock = threading.Lock()
# the one answer of the sudo prompt in this run, by the variable that would have held it
_prompted: dict[str, str | None] = {}


class HostUnreachable(Exception):
    """The host could not be reached or refused us; the message says why and what to do.

    ``fix``: the command that mends it, when there is one; the message ends with it (one
    line), and reports print it on a line of its own."""

    def __init__(self, text: str, fix: str = "") -> None:
        super().__init__(f"{text} {fix}" if fix else text)
        self.text = text
        self.fix = fix


class RemoteFailure(Exception):
    """A remote command failed; the message carries its command summary and stderr."""


@dataclass
class Result:
    """What one remote command returned (a dry-run change has ``dry=True``)."""

    command: str
    exited: int
    stdout: str = ""
    stderr: str = ""
    dry: bool = False

    @property
    def ok(self) -> bool:
        return self.exited == 0


def _quiet_paramiko() -> None:
    """Paramiko logs transport errors with tracebacks to stderr when logging is unset; we
    report every failure ourselves, in one line, so its log stays out of the output."""
    import logging

    log = logging.getLogger("paramiko")
    if not any(isinstance(h, logging.NullHandler) for h in log.handlers):
        log.addHandler(logging.NullHandler())
        log.propagate = False


def _fingerprint(key: PKey) -> str:
    import base64
    import hashlib

    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: ``host`` on port 22, else ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


def _policies(known_hosts: Path, accept_new: bool) -> MissingHostKeyPolicy:
    from paramiko.client import MissingHostKeyPolicy

    class RejectUnknown(MissingHostKeyPolicy):
        def missing_host_key(self, client: SSHClient, hostname: str, key: PKey) -> None:
            host, _, port = hostname.strip("[").partition("]:")
            scan = commands.cmd("ssh-keyscan", *(["-p", port] if port else []), host)
            raise HostUnreachable(
                f"host key of {hostname} ({key.get_name()} {_fingerprint(key)}) is not in "
                f"{known_hosts}: check the fingerprint, then set flops.ssh.host_keys: "
                "accept-new to record new keys on first contact, or add it with:",
                f"{scan} >> {shlex.quote(str(known_hosts))}",
            )

    class AcceptNew(MissingHostKeyPolicy):
        def missing_host_key(self, client: SSHClient, hostname: str, key: PKey) -> None:
            line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
            with _known_hosts_lock:
                known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(fd, "a") as fh:
                    fh.write(line)
            client.get_host_keys().add(hostname, key.get_name(), key)

    return AcceptNew() if accept_new else RejectUnknown()


@dataclass
class HostSession:
    """One host, one connection, reused by every step of a task."""

    target: Target
    ssh: SshSettings
    config: InvokeConfig | None = None
    dry: bool = False
    sudo_password: Callable[[], str | None] | None = None
    # the run's change log (every change of this session is recorded there) and the step
    # the changes belong to (set by whoever runs the step)
    changes: ChangeLog = field(default_factory=ChangeLog)
    step: str = "connect"
    round_trips: int = 0
    handshakes: int = 0  # SSH connections opened (key exchange + authentication)
    _cxn: Connection | None = None
    _is_root: bool | None = None
    _sudo_needs_password: bool = False
    _sudo_refused: bool = False
    _aborted: bool = False

    @property
    def label(self) -> str:
        return self.target.label

    @property
    def user(self) -> str:
        return self.target.user or self.ssh.user or getpass.getuser()

    # -- connection -------------------------------------------------------------------
    def connection(self) -> Connection:
        """The host's one open connection (opened on first use, and again when an earlier
        task of the run lost it)."""
        if self._cxn is not None and not self._alive(self._cxn):
            self.close()
        if self._cxn is None:
            if self._aborted:
                raise HostUnreachable("aborted: per-host timeout exceeded")
            cxn = self._new_connection()
            self._open(cxn)
            self.handshakes += 1
            self._cxn = cxn
        return self._cxn

    @staticmethod
    def _alive(cxn: Connection) -> bool:
        transport = cxn.client.get_transport()
        return transport is not None and bool(transport.is_active())

    @property
    def known_hosts(self) -> Path:
        return Path(os.path.expanduser(self.ssh.known_hosts))

    def _new_connection(self) -> Connection:
        """A Fabric connection, not open yet, that checks host keys as configured."""
        _quiet_paramiko()
        from fabric import Config, Connection

        # A Fabric config of our own, not a clone of the run's: Fabric acts on keys such as
        # gateway (a local ProxyCommand), connect_kwargs (more keys), run.env (unquoted before
        # every command) and ssh_config files. Config files refuse them
        # (invoke_config.ACTING_KEYS); no config object handed in reaches Fabric either. Of
        # the run's settings only --echo is kept. lazy: no Fabric or ssh_config files read.
        run = self.config.get("run", {}) if self.config is not None else {}
        config: FabricConfig = Config(
            lazy=True,
            overrides={
                "load_ssh_configs": False,
                "run": {"in_stream": False, "echo": run.get("echo") is True},
                "runners": {"remote": stderr_watching_runner()},  # sudo prompts on stderr
                # Fabric hands paramiko int(connect_timeout): 0.5 would mean no timeout at
                # all and 1.5 would be 1. The timeout goes to paramiko as it is configured.
                "timeouts": {"connect": None},
            },
        )
        timeout = self.ssh.connect_timeout
        key = os.path.expanduser(self.ssh.key) if self.ssh.key else None
        cxn = Connection(
            host=self.target.host,
            user=self.user,
            port=self.target.port,
            config=config,
            gateway=False,  # never a ProxyCommand or a jump host
            forward_agent=False,
            connect_kwargs={
                **({"key_filename": [key]} if key else {}),
                "look_for_keys": key is None,
                "allow_agent": key is None,
                "timeout": timeout,
                "banner_timeout": timeout,
                "auth_timeout": timeout,
                "channel_timeout": timeout,
                "transport_factory": transport_class(),
            },
        )
        known_hosts = self.known_hosts
        if known_hosts.exists():
            try:
                cxn.client.load_host_keys(str(known_hosts))
            except Exception as exc:  # paramiko raises several types for a bad file
                raise HostUnreachable(f"cannot read known_hosts {known_hosts}: {exc}") from None
        cxn.client.set_missing_host_key_policy(
            _policies(known_hosts, accept_new=self.ssh.host_keys == "accept-new")
        )
        return cxn

    def _open(self, cxn: Connection) -> None:
        """Open ``cxn``; every known way to fail becomes one ``HostUnreachable`` line."""
        try:
            cxn.open()
        except HostUnreachable:
            raise
        except Exception as exc:
            mapped = connect_error(
                exc,
                self.target,
                self.user,
                self.known_hosts,
                self.ssh.connect_timeout,
                cxn.client.get_transport(),
            )
            if mapped is None:
                raise
            raise mapped from None
        transport = cxn.client.get_transport()
        if transport is not None:
            transport.set_keepalive(15)

    def close(self) -> None:
        if self._cxn is not None:
            try:
                self._cxn.close()
            except Exception:  # a connection that is already gone closes quietly
                pass
            finally:
                self._cxn = None

    def abort(self) -> None:
        """Cut the connection from another thread (per-host deadline)."""
        self._aborted = True
        cxn = self._cxn
        if cxn is not None:
            transport = cxn.client.get_transport()
            if transport is not None:
                transport.close()

    # -- running ----------------------------------------------------------------------
    def _raw(self, command: str, timeout: float | None, password: str | None = None) -> Result:
        from invoke.exceptions import CommandTimedOut, Failure, ResponseNotAccepted

        cxn = self.connection()
        watchers = [sudo_watcher(password)] if password else []
        self.round_trips += 1
        try:
            res = cxn.run(
                command,
                hide=True,
                warn=True,
                dry=False,
                in_stream=False,
                pty=False,
                timeout=timeout or self.ssh.command_timeout,
                watchers=watchers,
            )
        except CommandTimedOut as exc:
            raise RemoteFailure(f"command timed out after {exc.timeout:g}s") from None
        except Failure as exc:
            if not isinstance(exc.reason, ResponseNotAccepted):
                raise
            self._sudo_refused = True
            raise RemoteFailure(self._refused()) from None
        except (OSError, EOFError) as exc:
            raise HostUnreachable(f"connection lost: {exc or type(exc).__name__}") from None
        except Exception as exc:
            from paramiko.ssh_exception import SSHException

            if isinstance(exc, SSHException):
                raise HostUnreachable(f"connection lost: {exc}") from None
            raise
        stderr = res.stderr.replace(SUDO_PROMPT, "") if password else res.stderr
        return Result(command=command, exited=res.exited, stdout=res.stdout, stderr=stderr)

    def is_root(self) -> bool:
        if self._is_root is None and self.user == "root":
            self._is_root = True  # uid 0 by definition: saves a round trip
        if self._is_root is None:
            res = self._raw(commands.cmd("id", "-u"), timeout=self.ssh.connect_timeout + 5)
            self._is_root = res.ok and res.stdout.strip() == "0"
        return self._is_root

    def _refused(self) -> str:
        return (
            f"sudo on {self.label} refused the password ({SUDO_REFUSED!r}): set the right "
            f"one in {self.ssh.sudo_password_env}, or type it at the prompt"
        )

    def _as_root(self, command: str, timeout: float | None) -> Result:
        if self._sudo_refused:
            raise RemoteFailure(self._refused())
        if self.is_root():
            return self._raw(command, timeout)
        if not self._sudo_needs_password:
            res = self._raw(commands.sudo(command, None), timeout)
            if (
                "a password is required" not in res.stderr
                and "a terminal is required" not in res.stderr
            ):
                return res
            self._sudo_needs_password = True
        password = self.sudo_password() if self.sudo_password else None
        if not password:
            raise RemoteFailure(
                f"sudo on {self.label} needs a password: export {self.ssh.sudo_password_env} "
                "or run from a terminal to be asked once"
            )
        return self._raw(commands.sudo(command, SUDO_PROMPT), timeout, password=password)

    def probe(self, command: str, timeout: float | None = None) -> Result:
        """A read-only command: runs even under ``--dry``."""
        return self._as_root(command, timeout)

    def change(
        self,
        command: str,
        summary: str,
        timeout: float | None = None,
        step: str | None = None,
        file: tuple[str, str | None, str | None] | None = None,
        also: tuple[str, ...] = (),
    ) -> Result:
        """A command that changes the host, recorded in the run's change log under ``step``
        (default: the session's current step; ``also``: further steps it does the work of):
        under ``--dry`` recorded, not run. ``file``: (path, content before, content after)
        of the file it writes, for ``--diff``."""
        path, before, after = file if file is not None else ("", None, None)
        records = [
            Change(self.label, name, summary, not self.dry, path, before, after)
            for name in dict.fromkeys((step or self.step, *also))
        ]
        if self.dry:
            for record in records:
                self.changes.record(record)
            return Result(command=command, exited=0, dry=True)
        self.changes.start(records[0])
        res = self._as_root(command, timeout)
        if not res.ok:
            from .remote_text import failure_detail

            secret = (
                self.sudo_password() if self._sudo_needs_password and self.sudo_password else None
            )
            why = failure_detail(res.stderr, res.stdout, res.exited, secrets=[secret])
            raise RemoteFailure(f"{summary}: {why}")
        for record in records:
            self.changes.record(record)
        return res

    def write(
        self, path: str, before: str | None, after: str, summary: str, timeout: float | None = None
    ) -> Result:
        """Write ``after`` to ``path`` (it held ``before``, None: absent): a change, with its
        diff."""
        return self.change(
            commands.write_file(path, after), summary, timeout=timeout, file=(path, before, after)
        )

    def verify(self, command: str, summary: str, timeout: float | None = None) -> Result | None:
        """A check that writes (``summary``: a probe image pushed to the registry): not a
        change of the host's state, so not recorded; not run under ``--dry`` (None), where
        the step is reported ``skipped``."""
        if self.dry:
            return None
        return self._as_root(command, timeout)

    def upload(self, local: str, callback: Callable[[int, int], None] | None = None) -> str:
        """Copy a local file to a fresh temp path on the host over SFTP; returns that path."""
        res = self._raw(
            commands.cmd("mktemp", "/tmp/flops-upload.XXXXXX"), timeout=self.ssh.connect_timeout + 5
        )
        if not res.ok:
            raise RemoteFailure(f"mktemp failed on {self.label}: {res.stderr.strip()}")
        remote = res.stdout.strip()
        try:
            sftp = self.connection().sftp()
            sftp.put(local, remote, callback=callback)
        except (OSError, EOFError) as exc:
            raise RemoteFailure(f"upload of {local} failed: {exc}") from None
        return remote

    def probes(
        self, probes: list[tuple[str, str]], grouped: bool = False
    ) -> dict[str, tuple[int, str]]:
        """Many read-only probes in one round trip: ``name -> (exit code, output)``
        (``grouped``: see ``commands.probe_batch``)."""
        res = self.probe(commands.probe_batch(probes, grouped=grouped))
        parsed = commands.parse_probe_batch(res.stdout)
        missing = [name for name, _ in probes if name not in parsed]
        if missing:
            tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or [f"exit {res.exited}"]
            raise RemoteFailure(f"probes did not run ({', '.join(missing)}): {tail[0]}")
        return parsed


@functools.cache
def stderr_watching_runner() -> type:
    """Fabric's remote runner, with watchers fed the command's stderr only.

    ``sudo -S`` writes its prompt to stderr; stdout belongs to the command, and a prompt
    printed there (by the command, or anything it runs or reads back) is never answered.
    Invoke hands each stream's buffer to ``respond`` from its own reader thread: only the
    stderr thread's buffer gets through."""
    from fabric.runners import Remote

    class StderrWatchingRemote(Remote):
        _watched: list[str] | None = None

        def handle_stderr(self, buffer_: list[str], hide: bool, output: Any) -> None:
            self._watched = buffer_  # set in the stderr thread before it reads anything
            super().handle_stderr(buffer_, hide, output)

        def respond(self, buffer_: list[str]) -> None:
            if buffer_ is self._watched:
                super().respond(buffer_)

        def wait(self) -> None:
            # Invoke polls every input_sleep (10 ms) until the command ends: thousands of
            # wake-ups per host and run. The channel's status event is set the moment the
            # exit status arrives or the channel closes; the same two conditions are still
            # what ends the wait, checked at least every 0.1 s (a reader thread that died).
            while not (self.process_is_finished or self.has_dead_threads):
                self.channel.status_event.wait(0.1)

    return StderrWatchingRemote


# What a connection offers, cheapest safe first (SECURITY.md, "SSH algorithms"): AEAD
# ciphers (AES-GCM: one pass in the cryptography library, no separate MAC to compare in
# Python), then AES-CTR with encrypt-then-MAC SHA-2; never CBC, 3DES, SHA-1 or MD5. Key
# exchange and host key types stay paramiko's (ML-KEM/X25519 hybrid, then X25519; ed25519
# first), which cost the same here. Host keys are checked as before: this picks algorithms
# only.
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
)
MACS = (
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
)


@functools.cache
def transport_class() -> type:
    """paramiko's ``Transport`` offering ``CIPHERS`` and ``MACS`` (those it implements)."""
    from paramiko import Transport

    class FlopsTransport(Transport):
        _preferred_ciphers = tuple(c for c in CIPHERS if c in Transport._cipher_info)
        _preferred_macs = tuple(m for m in MACS if m in Transport._mac_info)

    return FlopsTransport


def sudo_watcher(password: str) -> FailingResponder:
    """Answer sudo's prompt (a literal, not a pattern) once per prompt on stderr (the runner
    is ``stderr_watching_runner``); a prompt that comes back after ``Sorry, try again.`` ends
    the command (``ResponseNotAccepted``)."""
    from invoke.watchers import FailingResponder

    return FailingResponder(
        pattern=re.escape(SUDO_PROMPT), response=password + "\n", sentinel=re.escape(SUDO_REFUSED)
    )


def connect_error(
    exc: BaseException,
    target: Target,
    user: str,
    known_hosts: Path,
    timeout: float,
    transport: Transport | None,
) -> HostUnreachable | None:
    """One line that says why opening the connection failed and what to do; None if unknown."""
    from paramiko.ssh_exception import (
        AuthenticationException,
        BadHostKeyException,
        NoValidConnectionsError,
        SSHException,
    )

    where = f"{target.host}:{target.port}"
    if isinstance(exc, BadHostKeyException):
        forget = commands.cmd(
            "ssh-keygen", "-f", str(known_hosts), "-R", known_hosts_name(target.host, target.port)
        )
        return HostUnreachable(
            f"host key of {where} CHANGED (got {_fingerprint(exc.key)}): possible "
            f"man-in-the-middle; if the host was reinstalled, verify its new key, then remove "
            "the old one with:",
            forget,
        )
    if isinstance(exc, AuthenticationException):
        return HostUnreachable(
            f"authentication as {user} to {where} failed ({exc}): check "
            "flops.ssh.key and the user's authorized_keys"
        )
    if isinstance(exc, socket.gaierror):
        return HostUnreachable(
            f"cannot resolve '{target.host}' ({exc.strerror or exc}): check the host name "
            "(a name of the inventory is written as in flops.inventory) and this machine's DNS"
        )
    if isinstance(exc, TimeoutError):
        return HostUnreachable(f"connection to {where} timed out ({exc or 'no answer'})")
    refused = isinstance(exc, ConnectionRefusedError) or (
        isinstance(exc, NoValidConnectionsError)
        and {getattr(e, "errno", None) for e in exc.errors.values()} == {errno.ECONNREFUSED}
    )
    if refused:
        return HostUnreachable(
            f"connection refused by {where}: nothing listens on port {target.port}; start "
            "sshd there, or give its port (host:port, or port: in the inventory)"
        )
    if isinstance(exc, NoValidConnectionsError):
        return HostUnreachable(f"cannot connect to {where}: {exc.strerror or exc}")
    if isinstance(exc, (SSHException, OSError, EOFError)):
        if transport is None or not getattr(transport, "remote_version", ""):
            return HostUnreachable(
                f"{where} accepted TCP but sent no SSH banner within {timeout:g}s "
                "(flops.ssh.connect_timeout): is sshd on that port?"
            )
        return HostUnreachable(f"SSH to {where} failed: {exc or type(exc).__name__}")
    return None


class Observer(Protocol):
    """Receives progress from ``fan_out`` (``ui.LiveHosts`` shows it live). ``step``
    tells, when called, which step the host is at."""

    def host_started(self, host: str, step: Callable[[], str] | None = None) -> None: ...

    def host_step(self, host: str, outcome: Outcome) -> None: ...

    def host_done(self, host: str, outcomes: list[Outcome]) -> None: ...


class NullObserver:
    """The default ``Observer``: ignores progress."""

    def host_started(self, host: str, step: Callable[[], str] | None = None) -> None:
        pass

    def host_step(self, host: str, outcome: Outcome) -> None:
        pass

    def host_done(self, host: str, outcomes: list[Outcome]) -> None:
        pass


def password_source(ssh: SshSettings) -> Callable[[], str | None]:
    """The sudo password: the configured environment variable, else one prompt on a TTY.

    The prompt's answer is kept for the rest of the run (the process), so a workflow that
    fans out several times (``bootstrap``: prepare, then doctor) asks once.
    """

    def get() -> str | None:
        value = os.environ.get(ssh.sudo_password_env)
        if value:
            return value
        with _password_lock:
            if ssh.sudo_password_env not in _prompted:
                if sys.stdin is None or not sys.stdin.isatty():
                    return None
                answer = getpass.getpass("sudo password for the worker hosts: ")
                _prompted[ssh.sudo_password_env] = answer or None
            return _prompted[ssh.sudo_password_env]

    return get


def forget_sudo_password() -> None:
    """Drop the prompt's answer (the next password source asks again)."""
    with _password_lock:
        _prompted.clear()


Work = Callable[[HostSession], list[Outcome]]


class Connections:
    """The SSH sessions of one run: one per host (as a task names it, with its SSH
    settings), shared by every ``fan_out`` of the run and closed when the run ends."""

    def __init__(self) -> None:
        self._sessions: dict[tuple[Target, SshSettings], HostSession] = {}
        self._lock = threading.Lock()

    def session(self, target: Target, ssh: SshSettings, **kwargs: object) -> HostSession:
        """The run's session with ``target``, made on first use (``kwargs``: HostSession's)."""
        with self._lock:
            session = self._sessions.get((target, ssh))
            if session is None:
                session = HostSession(target, ssh, **kwargs)  # type: ignore[arg-type]
                self._sessions[(target, ssh)] = session
            return session

    def drop(self, session: HostSession) -> None:
        """Forget ``session`` (cut by a deadline): the next task connects anew."""
        with self._lock:
            for key, known in list(self._sessions.items()):
                if known is session:
                    del self._sessions[key]

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.close()


_run: Connections | None = None
_run_lock = threading.Lock()


@contextlib.contextmanager
def shared_connections() -> Iterator[Connections]:
    """Every ``fan_out`` inside shares one SSH connection per host; all are closed at the end.

    ``inv`` wraps each run in it (``invoke_config.FlopsExecutor``: ``inv prepare-builder
    prepare-learner`` opens one connection per host), and so do composed workflows
    (``bootstrap``: prepare, then doctor). Nested, the outermost run's connections are used.
    """
    global _run
    with _run_lock:
        outer = _run
        current = outer if outer is not None else Connections()
        _run = current
    try:
        yield current
    finally:
        if outer is None:
            with _run_lock:
                _run = None
            current.close()


def host_lock(target: Target, state_dir: str | Path | None = None) -> AbstractContextManager[None]:
    """This controller's lock on one host (released by the kernel if the run dies), in the
    state directory ``state_dir`` (default: the default one)."""
    from .locks import held, lock_dir

    name = f"host-{target.host}_{target.port}.lock".replace(":", "_").replace("/", "_")
    return held(lock_dir(state_dir) / name, f"host {target.label}")


def fan_out(
    targets: list[Target],
    work: Work,
    *,
    ssh: SshSettings,
    config: InvokeConfig | None = None,
    dry: bool = False,
    observer: Observer | None = None,
    step: str = "connect",
    sessions: dict[str, HostSession] | None = None,
    lock: bool = False,
    traffic: dict[str, dict[str, int]] | None = None,
    changes: ChangeLog | None = None,
    state_dir: str | Path | None = None,
) -> list[Outcome]:
    """Run ``work`` for every target in a bounded pool; every host ends with outcomes.

    A host that cannot be reached is reported ``unreachable``; a host past
    ``ssh.host_timeout`` has its connection cut and is reported ``failed``. Outcomes come
    back in target order. Pass ``sessions`` to keep the connections open for later work;
    inside ``shared_connections()`` the run's connections are used and stay open.
    With ``lock``, a host another flops-tasks run is changing is refused, never interleaved
    (the locks are in ``state_dir``).
    ``traffic`` receives per host the SSH handshakes and round trips this call made;
    ``changes`` is the run's change log, where every session records its changes.

    Ctrl-C (``interrupt``): no host starts after it, every connection is closed, and
    ``Interrupted`` is raised carrying the outcomes of the hosts that finished and an
    ``interrupted`` row for each host that was still at work or waiting.
    """
    from . import interrupt

    if not targets:
        return []
    interrupt.check()
    seen: Observer = observer or NullObserver()
    get_password = password_source(ssh)
    log = changes if changes is not None else ChangeLog()
    results: dict[int, list[Outcome]] = {}
    run = _run if sessions is None else None
    own: dict[str, HostSession] = {}
    started: dict[int, float] = {}
    used: dict[int, HostSession] = {}

    def session_for(target: Target) -> HostSession:
        if run is not None:
            session = run.session(target, ssh, config=config, dry=dry, sudo_password=get_password)
        else:
            pool = own if sessions is None else sessions
            session = pool.get(target.label) or HostSession(
                target, ssh, config=config, dry=dry, sudo_password=get_password
            )
            pool[target.label] = session
        session.dry, session.changes, session.step = dry, log, step
        return session

    def job(index: int, target: Target) -> list[Outcome]:
        if interrupt.requested():
            return [interrupted(target.label, step, "not started: the run was interrupted")]
        started[index] = time.monotonic()
        label = target.label
        session = used[index] = session_for(target)
        seen.host_started(label, lambda: session.step)
        interrupt.on_interrupt(session, session.abort)
        before = (session.handshakes, session.round_trips)
        try:
            with host_lock(target, state_dir) if lock else contextlib.nullcontext():
                session.connection()
                outcomes = work(session)
        except HostUnreachable as exc:
            outcomes = [unreachable(label, session.step, exc.text, fix=exc.fix)]
        except RemoteFailure as exc:
            outcomes = [failed(label, session.step, str(exc))]
        except FlopsError as exc:
            outcomes = [failed(label, session.step, exc.message or "failed")]
        finally:
            interrupt.forget(session)
            if traffic is not None:
                traffic[label] = {
                    "handshakes": session.handshakes - before[0],
                    "round_trips": session.round_trips - before[1],
                }
        for outcome in outcomes:
            seen.host_step(label, outcome)
        return outcomes

    pool = ThreadPoolExecutor(
        max_workers=min(ssh.parallel, len(targets)), thread_name_prefix="flops-host"
    )
    futures: dict[Future[list[Outcome]], int] = {
        pool.submit(job, i, t): i for i, t in enumerate(targets)
    }
    pending = set(futures)
    timed_out: set[int] = set()
    stopped = False
    try:
        with interrupt.cooperative():
            while pending:
                if interrupt.requested():
                    stopped = True
                    for fut in pending:
                        index = futures[fut]
                        session = used.get(index)
                        label = targets[index].label
                        where = session.step if session is not None else step
                        results[index] = [
                            interrupted(
                                label,
                                where,
                                "interrupted while at work (connection closed)"
                                if index in started
                                else "not started: the run was interrupted",
                            )
                        ]
                    break
                done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                for fut in done:
                    index = futures[fut]
                    if index in timed_out:
                        continue
                    exc = fut.exception()
                    if exc is not None:
                        label = targets[index].label
                        results[index] = [failed(label, step, f"{type(exc).__name__}: {exc}")]
                    else:
                        results[index] = fut.result()
                    seen.host_done(targets[index].label, results[index])
                now = time.monotonic()
                for fut in list(pending):
                    index = futures[fut]
                    if index in started and now - started[index] > ssh.host_timeout:
                        label = targets[index].label
                        session = used.get(index)
                        if session is not None:
                            session.abort()
                            if run is not None:
                                run.drop(session)
                        timed_out.add(index)
                        pending.discard(fut)
                        results[index] = [
                            failed(
                                label,
                                session.step if session is not None else step,
                                f"timed out after {ssh.host_timeout:g}s "
                                "(flops.ssh.host_timeout); connection closed",
                            )
                        ]
                        seen.host_done(label, results[index])
    finally:
        pool.shutdown(wait=not (timed_out or stopped), cancel_futures=True)
        if not stopped:
            for session in own.values():
                session.close()
    outcomes = [o for i in range(len(targets)) for o in results.get(i, [])]
    if stopped:
        for session in [*own.values(), *used.values()]:
            session.abort()
            if run is not None:
                run.drop(session)
        raise interrupt.Interrupted(outcomes)
    return outcomes
