"""Host strings (``[user@]host[:port]``) and inventory targets."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from .errors import ConfigError, UsageError

ROLES = ("builder", "learner")

_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\Z")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")


@dataclass(frozen=True)
class Target:
    """One worker host as a task addresses it."""

    host: str
    user: str | None = None
    port: int = 22
    name: str = ""
    roles: tuple[str, ...] = field(default=())

    @property
    def label(self) -> str:
        """What reports call this host: its inventory name, else its host string."""
        return self.name or self.spec

    @property
    def spec(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port != 22 else ""
        return f"{user}{host}{port}"


def valid_hostname(host: str) -> bool:
    """True for an IPv4/IPv6 address or a DNS name made of letters, digits, dots and hyphens."""
    if "%" in host:  # IPv6 zone IDs may hold any character
        return False
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    if not host or len(host) > 253:
        return False
    return all(_LABEL.match(label) for label in host.rstrip(".").split("."))


def valid_user(user: str) -> bool:
    return bool(_USER.match(user))


def parse_host(text: str) -> Target:
    """Parse one ``[user@]host[:port]``; refuse anything else with one line."""
    raw = text
    fix = "expected [user@]host[:port], e.g. ubuntu@10.0.0.5:22"
    if not text or text != text.strip() or any(ch.isspace() for ch in text):
        raise UsageError(f"bad host {raw!r}: empty or contains white space; {fix}")
    user = None
    if "@" in text:
        user, _, text = text.rpartition("@")
        if not valid_user(user):
            raise UsageError(f"bad host {raw!r}: invalid user name {user!r}; {fix}")
    port = 22
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise UsageError(f"bad host {raw!r}: unclosed '['; {fix}")
        if rest:
            if not rest.startswith(":"):
                raise UsageError(f"bad host {raw!r}: junk after ']'; {fix}")
            port = _port(rest[1:], raw, fix)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text, raw, fix)
    else:
        host = text
    if not valid_hostname(host):
        raise UsageError(f"bad host {raw!r}: {host!r} is not a host name or IP address; {fix}")
    return Target(host=host, user=user, port=port)


def _port(text: str, raw: str, fix: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise UsageError(f"bad host {raw!r}: port must be 1-65535, got {text!r}; {fix}")
    return int(text)


def parse_host_list(text: str) -> list[Target]:
    """Parse ``--host`` (comma-separated); duplicates are refused, order is kept."""
    parts = text.split(",")
    if any(not part for part in parts):
        raise UsageError(f"bad --host {text!r}: empty entry in the comma-separated list")
    targets = [parse_host(part) for part in parts]
    seen: set[tuple[str, int]] = set()
    for target in targets:
        key = (target.host, target.port)
        if key in seen:
            raise UsageError(f"bad --host {text!r}: {target.spec} is listed twice")
        seen.add(key)
    return targets


def inventory_targets(inventory: dict, source: str = "flops.inventory") -> list[Target]:
    """Validate the inventory mapping ``name -> {host, user, port, roles}``."""
    if not isinstance(inventory, dict):
        raise ConfigError(f"{source}: expected a mapping of host names to settings")
    targets = []
    for name, entry in inventory.items():
        key = f"{source}.{name}"
        if not isinstance(name, str) or not valid_hostname(name) and not _LABEL.match(name):
            raise ConfigError(f"{key}: host names use letters, digits, dots and hyphens")
        entry = entry or {}
        if not isinstance(entry, dict):
            raise ConfigError(f"{key}: expected a mapping with host, user, port, roles")
        unknown = set(entry) - {"host", "user", "port", "roles"}
        if unknown:
            raise ConfigError(
                f"{key}: unknown setting(s) {', '.join(sorted(unknown))}; "
                "allowed: host, user, port, roles"
            )
        host = entry.get("host", name)
        if not isinstance(host, str) or not valid_hostname(host):
            raise ConfigError(f"{key}.host: {host!r} is not a host name or IP address")
        user = entry.get("user")
        if user is not None and (not isinstance(user, str) or not valid_user(user)):
            raise ConfigError(f"{key}.user: {user!r} is not a valid user name")
        port = entry.get("port", 22)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ConfigError(f"{key}.port: expected an integer 1-65535, got {port!r}")
        roles = entry.get("roles", [])
        if isinstance(roles, str) or not isinstance(roles, list):
            raise ConfigError(f"{key}.roles: expected a list such as [builder, learner]")
        bad = [r for r in roles if r not in ROLES]
        if bad:
            raise ConfigError(f"{key}.roles: unknown role {bad[0]!r}; roles are builder, learner")
        targets.append(Target(host=host, user=user, port=port, name=name, roles=tuple(roles)))
    return targets


def select_targets(host_arg: str | None, inventory: list[Target], role: str | None) -> list[Target]:
    """``--host`` when given (inventory settings apply to hosts it names), else the role's hosts."""
    if host_arg is not None:
        if not host_arg.strip():
            raise UsageError(
                "bad --host '': give [user@]host[:port], comma-separated, or leave "
                "--host out to use the inventory"
            )
        chosen = []
        for target in parse_host_list(host_arg):
            match = next((t for t in inventory if target.host in (t.host, t.name)), None)
            if match is not None:
                target = Target(
                    host=match.host,
                    user=target.user or match.user,
                    port=target.port if target.port != 22 else match.port,
                    name=match.name,
                    roles=match.roles,
                )
            chosen.append(target)
        return chosen
    chosen = [t for t in inventory if role is None or role in t.roles]
    if not chosen:
        what = f"with role {role!r} " if role else ""
        raise UsageError(
            f"no hosts {what}in the inventory: pass --host=[user@]host[:port] "
            "or add hosts under flops.inventory in invoke.yaml",
        )
    return chosen
