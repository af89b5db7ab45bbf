"""Registry trust files on workers: merge the FLOps registry in, keep everything else.

One pure function per file. Each takes the file's current text (``None``: no such file) and
returns the new text, or ``None`` when the file already says what is needed (so a second run
writes nothing). A file that cannot be read, whose settings forbid the change, or that holds
a value of another type where a table is read (valid TOML such as ``plugins = 5``) raises
``Refusal`` naming the file and the key: it is reported and never overwritten.

TOML files are read with ``tomllib`` (the standard library's parser decides what is valid)
and written with ``tomlkit``, which keeps the operator's comments, order and layout; JSON
with ``json``. ``registry`` is ``host:port`` as workers address it, an IPv6 host in brackets.

When the registry moves (another placement host, another address), ``forget`` names the
registries workers were told to trust before: each function also drops those from its file,
so workers trust exactly the current registry again (``forgets_hosts_toml`` says when a
former registry's containerd hosts file is ours to remove).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Sequence
from typing import Any

from . import commands as C

NEEDED_CAPABILITIES = ("pull", "resolve", "push")
# containerd's CRI registry table per config version (containerd 1.x reads 1 and 2, 2.x 3)
CRI_PLUGIN = {1: "cri", 2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.images"}


class Refusal(Exception):
    """A file or state on the host forbids the change: report it, change nothing."""


def _toml(text: str | None, path: str) -> tuple[Any, dict]:
    """(tomlkit document, plain data) of a TOML file; an empty document when absent."""
    import tomlkit

    if text is None or not text.strip():
        return tomlkit.document(), {}
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise Refusal(f"{path} is not valid TOML ({exc}): fix it by hand") from None
    # probe output arrives without its final newline: tomlkit would append the next table
    # on the last value's line
    return tomlkit.parse(text if text.endswith("\n") else text + "\n"), data


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(keys: Sequence[str]) -> str:
    """A dotted TOML key as an operator would write it: ``plugins."io.containerd..."``."""
    return ".".join(k if _BARE_KEY.fullmatch(k) else json.dumps(k) for k in keys)


_KINDS = (
    (bool, "a boolean"),
    (int, "an integer"),
    (float, "a float"),
    (str, "a string"),
    (list, "an array"),
)


def _kind(value: Any) -> str:
    """What a TOML value is, in TOML's words (bool before int: True is an int)."""
    return next((name for t, name in _KINDS if isinstance(value, t)), "a date or time")


def _at(data: dict, path: str, *keys: str) -> dict:
    """The table at ``keys`` (empty when missing). Valid TOML can hold any type anywhere: a
    value that is not a table is refused, naming the file and the key."""
    node: Any = data
    for depth, key in enumerate(keys, 1):
        node = node.get(key, {})
        if not isinstance(node, dict):
            raise Refusal(
                f"{path}: {_key(keys[:depth])} is {_kind(node)}, not a table: fix it by hand"
            )
    return node


def _table(container: Any, key: str) -> Any:
    """``container[key]`` as a table, created when missing."""
    import tomlkit

    if key not in container:
        container[key] = tomlkit.table()
    return container[key]


def _dump(doc: Any) -> str:
    import tomlkit

    text = tomlkit.dumps(doc)
    tomllib.loads(text)  # what we write must be what any TOML reader accepts
    return text if text.endswith("\n") else text + "\n"


# -- Docker ----------------------------------------------------------------------------------
def daemon_json(text: str | None, registry: str, forget: Sequence[str] = ()) -> str | None:
    """daemon.json with ``registry`` in ``insecure-registries`` and none of ``forget``; every
    other key and entry kept."""
    path = C.DAEMON_JSON
    try:
        data = json.loads(text) if text and text.strip() else {}
    except ValueError as exc:
        raise Refusal(f"{path} is not valid JSON ({exc}): fix it by hand") from None
    if not isinstance(data, dict):
        raise Refusal(f"{path} is not a JSON object: fix it by hand")
    registries = data.get("insecure-registries", [])
    if not isinstance(registries, list):
        raise Refusal(f"{path}: insecure-registries is not a list: fix it by hand")
    stale = [r for r in registries if r in forget and r != registry]
    if registry in registries and text is not None and not stale:
        return None
    kept = [r for r in registries if r not in stale]
    data["insecure-registries"] = kept if registry in kept else [*kept, registry]
    return json.dumps(data, indent=2) + "\n"


# -- containerd --------------------------------------------------------------------------
def hosts_toml(text: str | None, registry: str) -> str | None:
    """certs.d/REGISTRY/hosts.toml: plain HTTP to the registry for pull, resolve and push."""
    path = C.hosts_toml_path(registry)
    doc, data = _toml(text, path)
    url = f"http://{registry}"
    host = _at(data, path, "host", url)
    caps = host.get("capabilities", [])
    if not isinstance(caps, list):
        key = _key(["host", url, "capabilities"])
        raise Refusal(f"{path}: {key} is {_kind(caps)}, not an array: fix it by hand")
    if data.get("server") == url and set(NEEDED_CAPABILITIES) <= set(caps):
        return None
    doc["server"] = url
    hosts = _table(doc, "host")
    entry = _table(hosts, url)
    entry["capabilities"] = [
        *NEEDED_CAPABILITIES,
        *[c for c in caps if c not in NEEDED_CAPABILITIES],
    ]
    return _dump(doc)


def forgets_hosts_toml(text: str | None, registry: str) -> bool:
    """True when a former registry's certs.d hosts file exists and says what ``hosts_toml``
    writes (plain HTTP to it): flops-tasks' trust, to be removed. Any other file is kept."""
    try:
        return text is not None and hosts_toml(text, registry) is None
    except Refusal:
        return False


def containerd_registry(data: dict) -> tuple[int, dict]:
    """(config version, the CRI registry table) of a parsed containerd config."""
    path = C.CONTAINERD_CONFIG
    version = data.get("version", 1 if data else 2)
    if type(version) is not int or version not in CRI_PLUGIN:
        raise Refusal(
            f"{path}: version = {version!r}, which flops-tasks "
            "does not know (1, 2 or 3): set config_path for the registry by hand"
        )
    keys = ("plugins", CRI_PLUGIN[version], "registry")
    registry = _at(data, path, *keys)
    for name in ("mirrors", "configs"):
        _at(data, path, *keys, name)
    return version, registry


def containerd_config(text: str | None) -> str | None:
    """containerd's config with ``config_path`` naming /etc/containerd/certs.d.

    ``config_path = ""`` (what ``containerd config default`` writes) counts as unset.
    containerd's CRI plugin refuses ``config_path`` next to ``mirrors`` or ``configs.*.tls``
    (it then fails to load, and containerd runs without it): those are refused here.
    """
    path = C.CONTAINERD_CONFIG
    doc, data = _toml(text, path)
    version, registry = containerd_registry(data)
    current = registry.get("config_path")
    if not isinstance(current, str | None):
        raise Refusal(f"{path}: config_path is not a string: fix it by hand")
    dirs = [d for d in (current or "").split(":") if d]
    if C.CERTS_D in dirs or (version == 3 and current is None):
        return None  # containerd 2.x defaults to /etc/containerd/certs.d:/etc/docker/certs.d
    where = f'[plugins."{CRI_PLUGIN[version]}".registry]'
    if registry.get("mirrors"):
        raise Refusal(
            f"{path} sets registry mirrors in {where} ({', '.join(registry['mirrors'])}),"
            " and containerd refuses config_path next to them: move them to "
            f"{C.CERTS_D}/<host>/hosts.toml files (containerd docs/hosts.md), then "
            "re-run"
        )
    tls = [
        name
        for name, conf in (registry.get("configs") or {}).items()
        if isinstance(conf, dict) and conf.get("tls")
    ]
    if tls:
        raise Refusal(
            f"{path} sets configs.tls for {', '.join(tls)} in {where}, and "
            "containerd refuses config_path next to it: move the TLS settings to "
            f"{C.CERTS_D}/<host>/hosts.toml files (containerd docs/hosts.md), then "
            "re-run"
        )
    if not data:
        doc["version"] = 2
    plugins = _table(doc, "plugins")
    table = _table(_table(plugins, CRI_PLUGIN[version]), "registry")
    table["config_path"] = ":".join([*dirs, C.CERTS_D])
    return _dump(doc)


# -- BuildKit and buildah ------------------------------------------------------------------
def buildkitd_toml(text: str | None, registry: str, forget: Sequence[str] = ()) -> str | None:
    """BuildKit's config with ``[registry."REGISTRY"] http = true, insecure = true`` and no
    table for a registry in ``forget``."""
    doc, data = _toml(text, C.BUILDKITD_TOML)
    tables = _at(data, C.BUILDKITD_TOML, "registry")
    entry = _at(data, C.BUILDKITD_TOML, "registry", registry)
    stale = [r for r in tables if r in forget and r != registry]
    if entry.get("http") is True and entry.get("insecure") is True and not stale:
        return None
    for name in stale:
        del doc["registry"][name]
    table = _table(_table(doc, "registry"), registry)
    table["http"] = True
    table["insecure"] = True
    return _dump(doc)


def registries_conf(text: str | None, registry: str, forget: Sequence[str] = ()) -> str | None:
    """containers-registries.conf drop-in: a ``[[registry]]`` for REGISTRY with insecure, and
    none for a registry in ``forget``."""
    import tomlkit

    path = C.REGISTRIES_CONF
    doc, data = _toml(text, path)
    if "registries" in data:
        raise Refusal(
            f"{path} uses the old v1 format ([registries.*]), which cannot be mixed "
            "with [[registry]] tables: fix it by hand"
        )
    entries = data.get("registry", [])
    if not isinstance(entries, list):
        raise Refusal(f"{path}: registry is not an array of tables: fix it by hand")

    def names(e: Any) -> set[Any]:
        return {e.get("location"), e.get("prefix")} if isinstance(e, dict) else set()

    mine = [i for i, e in enumerate(entries) if registry in names(e)]
    stale = [i for i, e in enumerate(entries) if i not in mine and names(e) & set(forget)]
    if mine and all(entries[i].get("insecure") is True for i in mine) and not stale:
        return None
    for i in reversed(stale):
        del doc["registry"][i]
    mine = [i - sum(1 for j in stale if j < i) for i in mine]
    if mine:
        for i in mine:
            doc["registry"][i]["insecure"] = True
    else:
        if "registry" not in doc:
            doc["registry"] = tomlkit.aot()
        entry = tomlkit.table()
        entry["location"] = registry
        entry["insecure"] = True
        doc["registry"].append(entry)
    return _dump(doc)
