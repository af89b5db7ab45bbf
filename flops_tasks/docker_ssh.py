"""Docker's own SSH transport (``docker -H ssh://user@host:port``) under flops.ssh's rules.

The docker CLI (and its compose and buildx plugins) reach a remote engine by running the
system ``ssh`` binary, found on ``PATH``, as ``ssh -o ConnectTimeout=30 -T -l USER -p PORT
-- HOST docker system dial-stdio`` (docker/cli ``cli/connhelper``); it takes no ssh options
of its own. So each docker call for a remote engine runs with a ``PATH`` whose first entry
is a private folder holding one small ``ssh`` script: it runs the real ``ssh`` with
``-F /dev/null`` (no user or system ssh config can weaken it) and our options first (ssh
keeps the first value it gets for an option, so docker's own ``-o`` cannot override them):

- host keys checked against ``flops.ssh.known_hosts`` only, ``StrictHostKeyChecking yes``
  (``accept-new`` when configured): an unknown or changed key ends the connection;
- ``flops.ssh.key`` only (no agent, no default keys) when a key is configured, as the
  Fabric layer does; never a password (``BatchMode``);
- ``flops.ssh.connect_timeout`` for TCP, banner and key exchange; keep-alives.

Nothing runs on the remote host but ``docker system dial-stdio``, Docker's own.
When a connection fails, ``explain`` says why in one line: SSH-level failures are
diagnosed by opening the same connection through the Fabric layer (``ssh.HostSession``),
so an unknown or changed host key reads exactly as it does everywhere else.
"""

from __future__ import annotations

import atexit
import os
import re
import shlex
import shutil
import tempfile
import threading
from pathlib import Path

from .config import SshSettings
from .errors import FlopsError, UsageError
from .hosts import Target

_lock = threading.Lock()
_folders: dict[SshSettings, Path] = {}


def engine_url(target: Target, user: str) -> str:
    """``ssh://user@host:port`` (an IPv6 host in brackets)."""
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"ssh://{user}@{host}:{target.port}"


def _quote_value(value: str, what: str) -> str:
    """A path as one ssh option value: in double quotes, ``%`` escaped (ssh expands
    ``%`` tokens in known_hosts and identity paths)."""
    if any(ch in value for ch in '"\n\r\0'):
        raise UsageError(
            f"{what} {value!r} cannot be given to ssh (it holds a quote or a "
            "line break): rename the file"
        )
    return '"' + value.replace("%", "%%") + '"'


def ssh_options(ssh: SshSettings) -> list[str]:
    """The ``-o`` options every connection of Docker's SSH transport gets, in order."""
    known_hosts = os.path.expanduser(ssh.known_hosts)
    strict = "accept-new" if ssh.host_keys == "accept-new" else "yes"
    options = [
        "BatchMode=yes",
        f"StrictHostKeyChecking={strict}",
        f"UserKnownHostsFile={_quote_value(known_hosts, 'flops.ssh.known_hosts')}",
        "GlobalKnownHostsFile=/dev/null",
        "CheckHostIP=no",
        "HashKnownHosts=no",
        "UpdateHostKeys=no",
        "VerifyHostKeyDNS=no",
        "PasswordAuthentication=no",
        "KbdInteractiveAuthentication=no",
        "ForwardAgent=no",
        "ForwardX11=no",
        "ClearAllForwardings=yes",
        "PermitLocalCommand=no",
        f"ConnectTimeout={max(1, round(ssh.connect_timeout))}",
        "ServerAliveInterval=15",
        "ServerAliveCountMax=3",
        "LogLevel=ERROR",
    ]
    if ssh.key:
        key = os.path.expanduser(ssh.key)
        options += [
            f"IdentityFile={_quote_value(key, 'flops.ssh.key')}",
            "IdentitiesOnly=yes",
            "IdentityAgent=none",
        ]
    return options


def real_ssh(skip: tuple[Path, ...] = ()) -> str:
    """The system ``ssh`` (never one of our own wrappers)."""
    own = {p.resolve() for p in (*_folders.values(), *skip)}
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if not folder or Path(folder).resolve() in own:
            continue
        candidate = Path(folder) / "ssh"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise FlopsError(
        "the OpenSSH client (ssh) is not installed: Docker's SSH transport runs "
        "it (Debian: apt-get install openssh-client)"
    )


def wrapper_script(ssh_binary: str, ssh: SshSettings) -> str:
    args = [ssh_binary, "-F", "/dev/null"]
    for option in ssh_options(ssh):
        args += ["-o", option]
    return (
        "#!/bin/sh\n"
        "# flops-tasks: Docker's SSH transport with flops.ssh's host keys, key and "
        "timeouts\n"
        f'exec {shlex.join(args)} "$@"\n'
    )


def folder_for(ssh: SshSettings) -> Path:
    """The private folder (mode 0700) whose ``ssh`` docker runs for ``ssh`` settings; made
    once per process and removed when it ends."""
    with _lock:
        folder = _folders.get(ssh)
        if folder is not None and (folder / "ssh").is_file():
            return folder
        script = wrapper_script(real_ssh(), ssh)
        folder = Path(tempfile.mkdtemp(prefix="flops-docker-ssh-"))
        if os.pathsep in str(folder):
            shutil.rmtree(folder, ignore_errors=True)
            raise FlopsError(
                f"the temp folder {folder.parent} has '{os.pathsep}' in its "
                "path: set TMPDIR to a plain folder"
            )
        path = folder / "ssh"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
        with os.fdopen(fd, "w") as fh:
            fh.write(script)
        _folders[ssh] = folder
        if len(_folders) == 1:
            atexit.register(_remove_all)
        return folder


def _remove_all() -> None:
    with _lock:
        for folder in _folders.values():
            shutil.rmtree(folder, ignore_errors=True)
        _folders.clear()


def client_call(ssh: SshSettings) -> list[str]:
    """What python-on-whales runs as ``docker`` for a remote engine: the docker CLI with our
    folder first on ``PATH`` (its compose and buildx plugins inherit it)."""
    path = os.environ.get("PATH", os.defpath)
    return ["env", f"PATH={folder_for(ssh)}{os.pathsep}{path}", "docker"]


# -- explaining a failed connection -----------------------------------------------------------
_SSH_FAILED = re.compile(r"command \[ssh .*\] has exited with exit status (\d+)")
_STDERR = re.compile(r"stderr=(.*)", re.S)


def transport_failure(text: str) -> tuple[int, str] | None:
    """(ssh's exit status, its stderr) when ``text`` is docker's report of a failed ssh
    connection; None for any other docker error."""
    match = _SSH_FAILED.search(text)
    if match is None:
        return None
    stderr = _STDERR.search(text)
    return int(match.group(1)), (stderr.group(1).strip() if stderr else "")


def explain(
    text: str, target: Target, label: str, ssh: SshSettings, docker_hint: str
) -> str | None:
    """One line for a failed connection to the engine on ``target``; None when ``text`` is not
    a transport failure.

    ssh exit 255 is ssh's own failure (host key, authentication, network): the same
    connection is opened through the Fabric layer, whose message names the cause and the fix.
    Other codes come from the remote command: no docker CLI there, or no engine answering.
    """
    found = transport_failure(text)
    if found is None:
        return None
    status, stderr = found
    last = next(
        (ln.strip() for ln in reversed(stderr.splitlines()) if ln.strip()), f"ssh exit {status}"
    )
    if status == 255:
        why = _fabric_says(target, ssh)
        return f"{label}: {why or last}"
    lowered = stderr.lower()
    if status == 127 or "not found" in lowered:
        return (
            f"{label} has no docker CLI ({last}): install Docker there (Debian: apt-get "
            f"install docker.io), or place its services on another host"
        )
    if "permission denied" in lowered:
        return (
            f"{label}: the SSH user may not use Docker ({last}): connect as root or add "
            "the user to the docker group"
        )
    if "cannot connect to the docker daemon" in lowered or "docker.sock" in lowered:
        return f"{label}: the Docker engine does not answer ({last}): {docker_hint}"
    return f"{label}: Docker's SSH transport failed ({last})"


def _fabric_says(target: Target, ssh: SshSettings) -> str | None:
    """Open the connection through the Fabric layer; its one-line reason, or None if it works."""
    from .ssh import HostSession, HostUnreachable

    session = HostSession(target, ssh)
    try:
        session.connection()
    except HostUnreachable as exc:
        return str(exc)
    finally:
        session.close()
    return None
