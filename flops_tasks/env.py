"""The six FLOps addresses and the compose env files.

Every compose call reads an env file written here (mode 0600), so the stack never depends
on what a shell happened to export. The MySQL root and FTP passwords in it are upstream's
fixed values: the FLOps manager hard-codes them, so the stores must use them.

Addresses follow the placement: an address not set explicitly is the address of the host
that runs its component (this host's primary IP for the local engine). Env files stay on
this machine, where compose reads them: the configured one (``flops.stack.env_file``),
which is always written and also records the registry address workers were told to trust
(and the ones before it, so ``bootstrap`` can drop them), and one beside it per remote
placement host.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .build_context import manager_context_dir
from .config import ADDRESS_VARS, Settings
from .errors import UsageError
from .stack.services import ARTIFACT_STORE, BACKEND_STORE, MANAGER, MQTT, REGISTRY

# The FLOps manager logs in to the MLflow backend store as root/oakestra (upstream
# addon-FLOps flops_manager/mlflow/storages/backend_store.py) and to the FTP artifact store
# as flops/flops (artifact_store.py), and hands both to the tracking servers it deploys: the
# stack must use these values, or no FLOps project reaches training. They are public.
CREDENTIALS = {"MYSQL_ROOT_PASSWORD": "oakestra", "FTP_PASSWORD": "flops"}
# Env file keys whose values are never printed (none while the only credentials are
# upstream's public ones above).
SECRET_KEYS: tuple[str, ...] = ()
# The service whose host each address names when it is not set. Oakestra's System Manager is
# not placed: it runs where the FLOps manager runs, which joins Oakestra's network to reach
# it by name (compose's SYSTEM_MANAGER_IP: system_manager).
COMPONENT = {
    "SYSTEM_MANAGER_IP": MANAGER,
    "FLOPS_MANAGER_IP": MANAGER,
    "FLOPS_MQTT_BROKER_IP": MQTT,
    "FLOPS_IMAGE_REGISTRY_IP": REGISTRY,
    "ARTIFACT_STORE_IP": ARTIFACT_STORE,
    "BACKEND_STORE_IP": BACKEND_STORE,
}
# env file keys: the registry (host:port) workers trust now, and earlier ones they may trust
REGISTRY_KEY = "FLOPS_REGISTRY"
FORMER_KEY = "FLOPS_FORMER_REGISTRIES"


@dataclass(frozen=True)
class Addresses:
    values: dict[str, str]
    sources: dict[str, str]

    def to_dict(self) -> dict[str, dict[str, str]]:
        return {k: {"value": v, "source": self.sources[k]} for k, v in self.values.items()}


def primary_ip() -> str:
    """This host's primary IPv4: the source address of its default route.

    A UDP ``connect`` only asks the kernel for a route; no packet is sent.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 9))
            return str(sock.getsockname()[0])
        except OSError:
            return ""


def check_address(var: str, value: str, source: str) -> str:
    fix = f"set {var} (or flops.addresses.{var.lower()}) to an address workers can reach"
    if "%" in value:
        raise UsageError(f"{var}={value!r} ({source}): zone IDs are not supported: {fix}")
    if not value:
        raise UsageError(f"{var} is empty ({source}): {fix}")
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise UsageError(f"{var}={value!r} ({source}) is not an IP address: {fix}") from None
    problem = _unusable(ip)
    if problem:
        raise UsageError(f"{var}={value} ({source}) is {problem}: {fix}")
    return str(ip)


_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_BROADCAST = ipaddress.ip_address("255.255.255.255")


def _unusable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why workers cannot reach the stack at ``ip`` (None: a unicast host address)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return "an IPv4-mapped IPv6 address (give a plain IPv4 address)"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address workers cannot reach"
    if ip == _BROADCAST:
        return "the broadcast address"
    if ip.is_multicast or ip.is_link_local:
        return "not a unicast host address"
    if ip.is_reserved or ip in _THIS_NETWORK:
        return "a reserved address"
    return None


def host_address(host: str) -> str:
    """An IP address of ``host`` (itself when it is one); '' when the name does not resolve."""
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return ""
    return str(infos[0][4][0]) if infos else ""


def resolve_addresses(
    s: Settings,
    detect: Callable[[], str] | None = None,
    locate: Callable[[str], str] = host_address,
) -> Addresses:
    """Config and environment first; an empty value is the address of the host that runs
    its component (``COMPONENT``): a placement host's address, else this host's primary IP
    (``detect``, default ``primary_ip``)."""
    detect = detect or primary_ip
    values: dict[str, str] = {}
    sources = dict(s.address_sources)
    detected: str | None = None
    for var in ADDRESS_VARS:
        value = s.addresses[var].strip()
        target = s.stack.placement.get(COMPONENT[var])
        if not value and target is not None:
            value = locate(target.host)
            why = (
                "beside Oakestra's System Manager" if var == "SYSTEM_MANAGER_IP" else "placed there"
            )
            sources[var] = f"address of {target.label}, which runs {COMPONENT[var]} ({why})"
            if not value:
                raise UsageError(
                    f"{var}: the placement host {target.host} does not resolve "
                    f"to an address: set {var} (or flops.addresses."
                    f"{var.lower()}) to an address workers can reach"
                )
        elif not value:
            if detected is None:
                detected = detect()
            value = detected
            sources[var] = "auto-detected primary IP of this host"
        values[var] = check_address(var, value, sources[var])
    return Addresses(values, sources)


def host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 address in brackets (``fd00::1`` + 5073 is ``[fd00::1]:5073``;
    unbracketed it would read as the address ``fd00::1:5073``)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def registry_host(s: Settings, addresses: Addresses) -> str:
    """``host:port`` of the FLOps image registry as workers address it."""
    address = s.registry_address or addresses.values["FLOPS_IMAGE_REGISTRY_IP"]
    return host_port(address, s.registry_port)


def check_env_path(path: str | Path) -> None:
    """The env file can be written where it is configured (read-only check): a regular file
    there, or none, in a folder that is one (or can be made)."""
    p = Path(path)
    fix = "set flops.stack.env_file to a file path in a folder of yours"
    if p.exists() and not p.is_file():
        what = "a directory" if p.is_dir() else "not a regular file"
        raise UsageError(f"the env file {str(p)!r} is {what}: {fix}")
    ancestor = p.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(
            f"the env file {str(p)!r} cannot be written: {str(ancestor)!r} is not a directory; "
            + fix
        )


def read_env_file(path: str | Path) -> dict[str, str]:
    data: dict[str, str] = {}
    p = Path(path)
    try:
        if not p.is_file():
            return data
        text = p.read_text()
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"cannot read the env file {str(p)!r} ({exc}): set "
            "flops.stack.env_file to a readable file path"
        ) from None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        data[key.strip()] = value.strip()
    return data


def env_values(
    s: Settings,
    addresses: Addresses,
    extra: dict[str, str] | None = None,
    existing: dict[str, str] | None = None,
) -> dict[str, str]:
    """Everything the compose files read: addresses, bind address, image, credentials."""
    existing = existing or {}
    values = dict(addresses.values)
    values["FLOPS_BIND_ADDRESS"] = s.stack.bind_address
    values["FLOPS_MANAGER_IMAGE"] = s.stack.manager_image
    values["FLOPS_ADDON_REF"] = s.addon_ref
    values["FLOPS_MANAGER_CONTEXT"] = str(manager_context_dir(s))
    if existing.get("FLOPS_NETWORK"):
        values["FLOPS_NETWORK"] = existing["FLOPS_NETWORK"]
    values.update(CREDENTIALS)  # upstream's, whatever an older env file held
    values.update(extra or {})
    for key, value in values.items():
        if any(ch in value for ch in "\n\r\"'$ #`\\"):
            shown = key if key in SECRET_KEYS else f"{key}={value!r}"  # never show a secret
            raise UsageError(
                f"{shown} cannot be written to the env file "
                f"{s.stack.env_file}: use letters, digits, '.', ':', '/', '_' "
                "and '-'"
            )
    return values


def env_body(values: dict[str, str]) -> str:
    return "# Written by flops-tasks (inv env); mode 0600, keep it private.\n" + "".join(
        f"{k}={v}\n" for k, v in values.items()
    )


def write_env_file(path: str | Path, values: dict[str, str]) -> bool:
    """Write ``KEY=value`` lines atomically with mode 0600; return True when it changed.

    The file is written to a new temp file (random name, ``O_EXCL``, ``O_NOFOLLOW``, owned
    by this user) and renamed over ``path``: a planted temp file or symlink is never
    written through, a file of another owner is replaced rather than kept, and a failed
    write leaves no temp file behind.
    """
    p = Path(path)
    body = env_body(values)
    try:
        if _holds(p, body.encode()):
            return False
        p.parent.mkdir(parents=True, exist_ok=True)
        _replace(p, body.encode())
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
        fix = (
            "free space on that disk (the old file is kept as it was), or set "
            "flops.stack.env_file to a file on another one"
            if full
            else "set flops.stack.env_file to a writable file path"
        )
        raise UsageError(f"cannot write the env file {str(p)!r} ({reason}): {fix}") from None
    return True


def _current(path: Path) -> str | None:
    """The env file's text as it is (None: absent or unreadable)."""
    try:
        return path.read_text() if path.is_file() else None
    except (OSError, UnicodeDecodeError):
        return None


def is_current(path: str | Path, values: dict[str, str]) -> bool:
    """True when ``path`` already holds exactly ``values`` (this user's, mode 0600)."""
    try:
        return _holds(Path(path), env_body(values).encode())
    except OSError:
        return False


def _holds(path: Path, body: bytes) -> bool:
    """True when ``path`` is this user's own regular file (not a link) holding ``body``;
    a mode looser than 0600 is tightened on the open file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink: replaced, never followed
            return False
        raise
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            return False
        if fh.read(len(body) + 1) != body:
            return False
        if info.st_mode & 0o077:
            os.fchmod(fh.fileno(), 0o600)
    return True


def _replace(path: Path, body: bytes) -> None:
    """Write ``body`` to a fresh private temp file beside ``path``, then rename it over."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def former_registries(
    s: Settings, current: str, record: dict[str, str] | None = None
) -> tuple[str, ...]:
    """Registries (``host:port``) workers were told to trust before ``current``: from the
    record in the configured env file (read unless given)."""
    record = read_env_file(s.stack.env_file) if record is None else record
    earlier = [r for r in record.get(FORMER_KEY, "").split(",") if r]
    last = record.get(REGISTRY_KEY) or (
        host_port(record["FLOPS_IMAGE_REGISTRY_IP"], int(record["FLOPS_REGISTRY_PORT"]))
        if record.get("FLOPS_IMAGE_REGISTRY_IP") and record.get("FLOPS_REGISTRY_PORT", "").isdigit()
        else ""
    )
    return tuple(r for r in dict.fromkeys([*earlier, last]) if r and r != current)


EnvWrite = tuple[str, str | None, dict[str, str]]  # path, its text now, the values wanted


def plan_env(
    s: Settings, extra: dict[str, str] | None = None, path: str | None = None
) -> tuple[Addresses, dict[str, str], list[EnvWrite]]:
    """Resolve and validate the addresses and the values of the env file ``path`` (default:
    the configured one); and the env files that must be written for them, with what each
    holds now. The configured env file is among them when it differs: it keeps the record of
    the registry addresses workers were told to trust. Reads only."""
    main = s.stack.env_file
    path = path or main
    check_env_path(main)
    check_env_path(path)
    addresses = resolve_addresses(s)
    record = read_env_file(main)
    registry = registry_host(s, addresses)
    history = {REGISTRY_KEY: registry}
    former = former_registries(s, registry, record)
    if former:
        history[FORMER_KEY] = ",".join(former)
    existing = record if path == main else read_env_file(path)
    values = env_values(s, addresses, {**history, **(extra or {})}, existing)
    wanted = [(path, values)]
    if path != main:
        wanted.insert(0, (main, env_values(s, addresses, history, record)))
    writes = [(p, _current(Path(p)), v) for p, v in wanted if not is_current(p, v)]
    return addresses, values, writes


def ensure_env(
    s: Settings, extra: dict[str, str] | None = None, path: str | None = None
) -> tuple[Addresses, dict[str, str], bool]:
    """``plan_env``, then write what it found out of date; True when anything was written
    (the testbed's own set-up; the stack's tasks write through ``Project.act``)."""
    addresses, values, writes = plan_env(s, extra, path)
    for target, _, wanted in writes:
        write_env_file(target, wanted)
    return addresses, values, bool(writes)
