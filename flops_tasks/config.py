"""Settings on Invoke's own config system, namespace ``flops``.

Precedence (Invoke's own): defaults in ``tasks.py`` < ``invoke.yaml`` < ``INVOKE_FLOPS_*``
variables < ``-f FILE`` < command-line flags. The six address variables of the FLOps docs
(``FLOPS_MANAGER_IP`` ...) override the config when set in the environment.
``settings(c)`` validates everything at once and names the key and its source on error.
How the files themselves are read is ``invoke_config.FlopsConfig``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, FlopsError
from .hosts import Target, inventory_targets, valid_hostname, valid_user
from .paths import DATA_ROOT
from .stack.services import REGISTRY_PORT

if TYPE_CHECKING:
    from invoke.config import Config
    from invoke.context import Context

# the folder holding compose/ and testbed/: the checkout, or the installed package's data
PROJECT_ROOT = DATA_ROOT

# The six addresses of the FLOps docs, in the order the docs list them.
ADDRESS_VARS = (
    "SYSTEM_MANAGER_IP",
    "FLOPS_MANAGER_IP",
    "FLOPS_MQTT_BROKER_IP",
    "FLOPS_IMAGE_REGISTRY_IP",
    "ARTIFACT_STORE_IP",
    "BACKEND_STORE_IP",
)

HOST_KEY_POLICIES = ("strict", "accept-new")

# addon-FLOps at this commit (flops.addon.ref's default), and the sha256 of its source tarball
# (GitHub's archive of the commit), which the testbed builds from: change them together
ADDON_REF = "2fa0ab973b9d893b1d645b91d34297c468bdd36a"
ADDON_TARBALL_SHA256 = "8037a96027712d584a16d959c8812814e1b2c906fc70d629db687f25e62768ce"

DEFAULTS: dict[str, Any] = {
    # where flops-tasks keeps what it writes for itself (env file, testbed, build staging,
    # locks); empty: $XDG_STATE_HOME/flops-tasks, default ~/.local/state/flops-tasks
    "state_dir": "",
    # name -> {host, user, port, roles: [builder, learner]}
    "inventory": {},
    "ssh": {
        "user": None,
        "key": None,
        "known_hosts": "~/.ssh/known_hosts",
        "host_keys": "strict",
        "connect_timeout": 10.0,
        "command_timeout": 900.0,
        "host_timeout": 1800.0,
        "parallel": 16,
        "sudo_password_env": "FLOPS_SUDO_PASSWORD",
    },
    # lower-case keys of ADDRESS_VARS; empty = environment, else this host's primary IP
    "addresses": {name.lower(): "" for name in ADDRESS_VARS},
    # the port is FLOps' fixed 5073 (REGISTRY_PORT); any other value is refused at load
    "registry": {"address": "", "port": 5073},
    "stack": {
        "project": "flops_management",
        "compose_file": "compose/flops.compose.yml",
        "overrides": [],
        "env_file": "",  # empty: flops.env in the state directory
        "network": "",
        "bind_address": "0.0.0.0",
        "manager_image": "flops_manager:local",
        "health_timeout": 300.0,
        "db_timeout": 5.0,
        # service -> host that runs it (an inventory name, [user@]host[:port], or local);
        # "default" places every service not named; empty: everything on the local engine
        "placement": {},
        # service -> why it is left out on purpose: never started or checked, a warning in
        # up and doctor (the testbed leaves out what it could not build)
        "omit": {},
    },
    "addon": {
        "path": "~/.cache/flops-tasks/addon-FLOps",
        "url": "https://github.com/oakestra/addon-FLOps.git",
        "ref": ADDON_REF,
        # how dev-images builds FLOps' components from the checkout: "upstream" (upstream's
        # own Dockerfiles; needs Docker Hub, PyPI and GitHub) or "offline" (the staged recipes
        # in compose/dev/ on Debian bases made with debootstrap, packages from a wheelhouse)
        "build": "upstream",
    },
    "builder": {"name": "flops-builder", "driver": "auto"},
    "learner": {
        "image": "ghcr.io/oakestra/addon-flops/ml-data-server:latest",
        "data_dir": "",
        # where the sidecar's 11027 is published; empty: the worker's docker0 address,
        # which is what upstream's learners dial (172.17.0.1:11027)
        "publish_address": "",
    },
    # Oakestra's System Manager (SYSTEM_MANAGER_IP:port) for oakestra-apps / clear-apps. The
    # password comes from the variable named here; unset: Oakestra's default admin password,
    # the account FLOps' manager itself logs in with (flops_manager/api/utils/login.py).
    "oakestra": {
        "user": "Admin",
        "password_env": "FLOPS_OAKESTRA_PASSWORD",
        "port": 10000,
        "timeout": 15.0,
    },
}


@dataclass(frozen=True)
class SshSettings:
    user: str | None
    key: str | None
    known_hosts: str
    host_keys: str
    connect_timeout: float
    command_timeout: float
    host_timeout: float
    parallel: int
    sudo_password_env: str


@dataclass(frozen=True)
class StackSettings:
    project: str
    compose_files: tuple[str, ...]
    env_file: str
    network: str
    bind_address: str
    manager_image: str
    health_timeout: float
    db_timeout: float = 5.0  # seconds to wait for the FLOps DB (Mongo) to answer
    # service -> the host that runs it (None: the local engine); empty: all local
    placement: dict[str, Target | None] = field(default_factory=dict)
    # service -> why it is left out on purpose (not started, not checked: a warning)
    omit: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    inventory: tuple[Target, ...]
    ssh: SshSettings
    addresses: dict[str, str]  # upper-case var -> configured value ("" = auto)
    address_sources: dict[str, str]
    registry_address: str
    registry_port: int
    stack: StackSettings
    addon_path: str
    addon_url: str
    addon_ref: str
    builder_name: str
    builder_driver: str
    learner_image: str
    learner_data_dir: str
    learner_publish_address: str  # "" = the worker's docker0 address
    oakestra_user: str = "Admin"
    oakestra_password_env: str = "FLOPS_OAKESTRA_PASSWORD"
    oakestra_port: int = 10000
    oakestra_timeout: float = 15.0
    addon_build: str = "upstream"  # dev-images: "upstream" Dockerfiles or "offline" recipes
    state_dir: str = ""  # resolved: flops.state_dir or the default (paths.state_dir)


def source_of(config: Config, *path: str) -> str:
    """Name where a ``flops`` key's value came from, for error messages."""
    full = ("flops", *path)
    env_name = "INVOKE_" + "_".join(full).upper()
    levels = (  # Invoke's precedence, highest first
        ("_overrides", "a command-line flag"),
        ("_runtime", f"-f {getattr(config, '_runtime_path', None) or 'FILE'}"),
        ("_env", f"environment variable {env_name}"),
        ("_project", f"{getattr(config, '_project_path', None) or 'invoke.yaml'}"),
        ("_user", f"{getattr(config, '_user_path', None) or 'user config'}"),
        ("_system", f"{getattr(config, '_system_path', None) or 'system config'}"),
    )
    for attr, label in levels:
        node = getattr(config, attr, None) or {}
        found = True
        for key in full:
            if not isinstance(node, dict) or key not in node:
                found = False
                break
            node = node[key]
        if found:
            return label
    return "the defaults in tasks.py"


def _expect(cond: bool, config: Config, path: tuple[str, ...], what: str, value: object) -> None:
    if not cond:
        key = "flops." + ".".join(path)
        raise ConfigError(f"{key} = {value!r} (from {source_of(config, *path)}): expected {what}")


def _section(flops: Any, config: Config, name: str) -> dict[str, Any]:
    value = flops.get(name, {})
    value = dict(value) if hasattr(value, "items") else value
    _expect(isinstance(value, dict), config, (name,), "a mapping", value)
    for key in value:
        if key not in DEFAULTS[name]:
            raise ConfigError(
                f"flops.{name}.{key} (from {source_of(config, name, key)}): "
                f"unknown key; known keys: {', '.join(DEFAULTS[name])}"
            )
    return value


def _number(
    section: dict[str, Any], config: Config, name: str, key: str, low: float, high: float
) -> float:
    value = section.get(key)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high
    _expect(ok, config, (name, key), f"a number from {low:g} to {high:g}", value)
    return float(value) if isinstance(value, float) else int(value)  # type: ignore[arg-type]


def _string(
    section: dict[str, Any], config: Config, name: str, key: str, empty_ok: bool = True
) -> str:
    value = section.get(key)
    ok = (
        isinstance(value, str)
        and (empty_ok or value.strip() != "")
        and not any(ch in value for ch in "\n\r\0")
    )
    _expect(
        ok, config, (name, key), "a single-line string" + ("" if empty_ok else ", not empty"), value
    )
    return str(value)


def _name(
    section: dict[str, Any], config: Config, name: str, key: str, empty_ok: bool = False
) -> str:
    """A value that ends up as an argument of docker or git: never an option."""
    value = _string(section, config, name, key, empty_ok)
    _expect(
        not value.startswith("-"),
        config,
        (name, key),
        "a name that does not start with '-' (it would be read as an option)",
        value,
    )
    return value


# The variables a password may come from: flops-tasks' and Oakestra's own. Their value is
# sent away, so another program's variable (a cloud secret, a token) is never named here.
PASSWORD_ENV_PREFIXES = ("FLOPS_", "OAKESTRA_")


def _password_env(
    section: dict[str, Any], config: Config, name: str, key: str, goes_to: str
) -> str:
    """The name of the environment variable that holds a password sent to ``goes_to``."""
    value = _string(section, config, name, key, empty_ok=False)
    _expect(
        re.fullmatch(r"[A-Z][A-Za-z0-9_]*", value) is not None
        and value.startswith(PASSWORD_ENV_PREFIXES)
        and value not in PASSWORD_ENV_PREFIXES,
        config,
        (name, key),
        f"a variable name that starts with {' or '.join(PASSWORD_ENV_PREFIXES)} (its value "
        f"is sent to {goes_to}), e.g. {DEFAULTS[name][key]}",
        value,
    )
    return value


def check_runtime_file(config: Config) -> None:
    """Invoke skips a missing ``-f FILE`` silently; we refuse it."""
    path = getattr(config, "_runtime_path", None)
    if path and getattr(config, "_runtime_found", None) is not True:
        raise ConfigError(f"config file {path} not found (given with -f): check the path")


def settings(c: Context) -> Settings:
    """Validate ``c.config.flops`` and return it as frozen settings."""
    return settings_of(c.config)


def settings_of(config: Config) -> Settings:
    """Validate ``config.flops`` and return it as frozen settings."""
    check_runtime_file(config)
    flops = config.get("flops")
    if flops is None:
        raise ConfigError(
            "no 'flops' config namespace: run the flops command, or inv in the flops-tasks "
            "project (a tasks.py of your own: adopt_running_program(), README 'Composing tasks')"
        )
    for key in flops:
        if key not in DEFAULTS:
            raise ConfigError(
                f"flops.{key} (from {source_of(config, key)}): unknown key; "
                f"known keys: {', '.join(DEFAULTS)}"
            )

    state = _state_dir(flops, config)

    inventory = flops.get("inventory") or {}
    inventory = (
        {k: dict(v) if hasattr(v, "items") else v for k, v in dict(inventory).items()}
        if hasattr(inventory, "items")
        else inventory
    )
    try:
        targets = inventory_targets(inventory)
    except ConfigError as exc:
        raise ConfigError(f"{exc.message} (from {source_of(config, 'inventory')})") from None

    ssh = _section(flops, config, "ssh")
    ssh_user = ssh.get("user")
    _expect(
        ssh_user is None or isinstance(ssh_user, str) and valid_user(ssh_user),
        config,
        ("ssh", "user"),
        "a user name or null",
        ssh_user,
    )
    key = ssh.get("key")
    _expect(
        key is None or isinstance(key, str) and key.strip() != "",
        config,
        ("ssh", "key"),
        "a path to a private key or null",
        key,
    )
    host_keys = ssh.get("host_keys")
    _expect(
        host_keys in HOST_KEY_POLICIES,
        config,
        ("ssh", "host_keys"),
        " or ".join(HOST_KEY_POLICIES),
        host_keys,
    )
    parallel = _number(ssh, config, "ssh", "parallel", 1, 256)
    _expect(isinstance(parallel, int), config, ("ssh", "parallel"), "a whole number", parallel)
    sudo_env = _password_env(ssh, config, "ssh", "sudo_password_env", "the workers' sudo")
    ssh_settings = SshSettings(
        user=ssh_user,
        key=key,
        known_hosts=_string(ssh, config, "ssh", "known_hosts", empty_ok=False),
        host_keys=str(host_keys),
        # at least 1 s: paramiko waits whole seconds at some steps, and below 1 s Fabric's
        # own int() turned the timeout into none at all
        connect_timeout=_number(ssh, config, "ssh", "connect_timeout", 1, 600),
        command_timeout=_number(ssh, config, "ssh", "command_timeout", 1, 86400),
        host_timeout=_number(ssh, config, "ssh", "host_timeout", 1, 86400),
        parallel=int(parallel),
        sudo_password_env=sudo_env,
    )

    addr_section = _section(flops, config, "addresses")
    addresses: dict[str, str] = {}
    address_sources: dict[str, str] = {}
    for var in ADDRESS_VARS:
        if os.environ.get(var, "") != "":
            addresses[var] = os.environ[var]
            address_sources[var] = f"environment variable {var}"
        else:
            addresses[var] = _string(addr_section, config, "addresses", var.lower())
            address_sources[var] = (
                source_of(config, "addresses", var.lower()) if addresses[var] else "auto-detected"
            )

    registry = _section(flops, config, "registry")
    registry_address = _string(registry, config, "registry", "address")
    _expect(
        registry_address == "" or valid_hostname(registry_address),
        config,
        ("registry", "address"),
        "an IP address or host name",
        registry_address,
    )
    registry_port = _number(registry, config, "registry", "port", 1, 65535)
    _expect(
        isinstance(registry_port, int),
        config,
        ("registry", "port"),
        "a whole number",
        registry_port,
    )
    _expect(
        registry_port == REGISTRY_PORT,
        config,
        ("registry", "port"),
        f"{REGISTRY_PORT}: FLOps' manager hard-codes it (it names every image "
        f"FLOPS_IMAGE_REGISTRY_IP:{REGISTRY_PORT}/..., and the stack publishes the registry "
        "there), so workers would trust and clear another registry than the one FLOps "
        "pushes to; remove the key",
        registry_port,
    )

    stack = _section(flops, config, "stack")
    project = _name(stack, config, "stack", "project")
    _expect(
        project.replace("-", "_").isidentifier() and project == project.lower(),
        config,
        ("stack", "project"),
        "lower-case letters, digits, '_' and '-'",
        project,
    )
    raw_overrides = stack.get("overrides")
    overrides: list[str] = list(raw_overrides) if isinstance(raw_overrides, list | tuple) else []
    _expect(
        isinstance(raw_overrides, list | tuple)
        and all(isinstance(o, str) and o for o in overrides),
        config,
        ("stack", "overrides"),
        "a list of compose file paths",
        raw_overrides,
    )
    compose_files = tuple(
        str(resolve_path(p))
        for p in [_string(stack, config, "stack", "compose_file", False), *overrides]
    )
    network = _name(stack, config, "stack", "network", empty_ok=True)
    bind = _string(stack, config, "stack", "bind_address", empty_ok=False)
    _expect(_is_ip(bind), config, ("stack", "bind_address"), "an IP address such as 0.0.0.0", bind)
    stack_settings = StackSettings(
        project=project,
        compose_files=compose_files,
        env_file=str(
            resolve_path(_string(stack, config, "stack", "env_file"))
            if _string(stack, config, "stack", "env_file")
            else state / "flops.env"
        ),
        network=network,
        bind_address=bind,
        manager_image=_image(stack, config, "stack", "manager_image"),
        health_timeout=_number(stack, config, "stack", "health_timeout", 1, 3600),
        db_timeout=_number(stack, config, "stack", "db_timeout", 0.1, 600),
        placement=_placement(stack, config, targets),
        omit=_omit(stack, config),
    )

    addon = _section(flops, config, "addon")
    addon_build = addon.get("build")
    _expect(
        addon_build in ("upstream", "offline"),
        config,
        ("addon", "build"),
        "upstream or offline",
        addon_build,
    )
    builder = _section(flops, config, "builder")
    driver = builder.get("driver")
    _expect(
        driver in ("auto", "docker", "docker-container"),
        config,
        ("builder", "driver"),
        "auto, docker or docker-container",
        driver,
    )
    learner = _section(flops, config, "learner")
    data_dir = _string(learner, config, "learner", "data_dir")
    problem = data_dir_problem(data_dir) if data_dir else None
    if problem:
        raise ConfigError(
            f"flops.learner.data_dir = {data_dir!r} (from "
            f"{source_of(config, 'learner', 'data_dir')}): {problem}"
        )
    publish = _string(learner, config, "learner", "publish_address")
    _expect(
        publish == "" or _is_ip(publish),
        config,
        ("learner", "publish_address"),
        "an IP address of the worker, or empty for its docker0 address",
        publish,
    )
    oak = _section(flops, config, "oakestra")
    oak_user = _string(oak, config, "oakestra", "user", empty_ok=False)
    oak_env = _password_env(oak, config, "oakestra", "password_env", "the System Manager's login")
    oak_port = _number(oak, config, "oakestra", "port", 1, 65535)
    _expect(isinstance(oak_port, int), config, ("oakestra", "port"), "a whole number", oak_port)
    return Settings(
        inventory=tuple(targets),
        ssh=ssh_settings,
        addresses=addresses,
        address_sources=address_sources,
        registry_address=registry_address,
        registry_port=int(registry_port),
        stack=stack_settings,
        addon_path=_name(addon, config, "addon", "path"),
        addon_url=_name(addon, config, "addon", "url"),
        addon_ref=_name(addon, config, "addon", "ref"),
        builder_name=_name(builder, config, "builder", "name"),
        builder_driver=str(driver),
        learner_image=_image(learner, config, "learner", "image"),
        learner_data_dir=data_dir,
        learner_publish_address=publish,
        oakestra_user=oak_user,
        oakestra_password_env=oak_env,
        oakestra_port=int(oak_port),
        oakestra_timeout=_number(oak, config, "oakestra", "timeout", 1, 600),
        addon_build=str(addon_build),
        state_dir=str(state),
    )


def _state_dir(flops: Any, config: Config) -> Path:
    """``flops.state_dir``: empty (the default state directory), or an absolute path."""
    from .paths import state_dir

    value = flops.get("state_dir", "")
    ok = (
        isinstance(value, str)
        and not any(ch in value for ch in "\n\r\0")
        and (value == "" or os.path.isabs(os.path.expanduser(value)))
    )
    _expect(ok, config, ("state_dir",), "an absolute path (or ~/...), or empty", value)
    return state_dir(config)


def _omit(stack: dict[str, Any], config: Config) -> dict[str, str]:
    """``flops.stack.omit``: service -> why it is left out (a single line, may be empty)."""
    from .stack.services import SERVICES

    raw: Any = stack.get("omit")
    raw = dict(raw) if hasattr(raw, "items") else raw
    what = f"a mapping of service ({', '.join(SERVICES)}) to why it is left out"
    _expect(isinstance(raw, dict), config, ("stack", "omit"), what, raw)
    for key, value in raw.items():
        _expect(key in SERVICES, config, ("stack", "omit", str(key)), "a service name", key)
        ok = isinstance(value, str) and not any(ch in value for ch in "\n\r\0")
        _expect(ok, config, ("stack", "omit", key), "a single-line string", value)
    return {str(k): str(v) for k, v in raw.items()}


LOCAL = "local"  # the placement value for the Docker engine inv talks to by default
DEFAULT_KEY = "default"  # the placement key for every service not named


def _placement(
    stack: dict[str, Any], config: Config, inventory: list[Target]
) -> dict[str, Target | None]:
    """``flops.stack.placement`` as service -> host (None: the local engine).

    Refused in one line: a key that is no service, a value that is no host, one host under
    two names, ``flops_db`` away from ``flops_manager`` (upstream's manager reaches its
    database at FLOPS_MANAGER_IP:10027), and services on one host that publish one port.
    """
    from .hosts import parse_host
    from .stack.services import FLOPS_DB_SERVICE, MANAGER, PORTS, SERVICES

    raw: Any = stack.get("placement")
    raw = dict(raw) if hasattr(raw, "items") else raw
    _expect(
        isinstance(raw, dict),
        config,
        ("stack", "placement"),
        f"a mapping of service to host ({', '.join(SERVICES)}, {DEFAULT_KEY})",
        raw,
    )
    if not raw:
        return {}
    where = source_of(config, "stack", "placement")
    by_name = {t.name: t for t in inventory}
    hosts: dict[str, Target | None] = {}
    for key, value in raw.items():
        if key not in (*SERVICES, DEFAULT_KEY):
            raise ConfigError(
                f"flops.stack.placement.{key} (from {where}): unknown service; "
                f"services are {', '.join(SERVICES)}, and {DEFAULT_KEY} for "
                "the rest"
            )
        fix = (
            f"expected {LOCAL}, an inventory name ({', '.join(by_name) or 'none yet'}) or "
            "[user@]host[:port]"
        )
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"flops.stack.placement.{key} = {value!r} (from {where}): {fix}")
        if value == LOCAL:
            hosts[key] = None
        elif value in by_name:
            hosts[key] = by_name[value]
        else:
            try:
                hosts[key] = parse_host(value)
            except FlopsError:
                raise ConfigError(
                    f"flops.stack.placement.{key} = {value!r} (from {where}): {fix}"
                ) from None
    default = hosts.get(DEFAULT_KEY)
    placed = {svc: hosts.get(svc, default) for svc in SERVICES}
    names: dict[tuple[str, int], str] = {}
    for target in [t for t in dict.fromkeys(placed.values()) if t is not None]:
        key2 = (target.host, target.port)
        if key2 in names and names[key2] != target.label:
            raise ConfigError(
                f"flops.stack.placement (from {where}) names {target.host}:"
                f"{target.port} twice ({names[key2]} and {target.label}): use "
                "one name for one host"
            )
        names[key2] = target.label
    if placed[FLOPS_DB_SERVICE] != placed[MANAGER]:
        raise ConfigError(
            f"flops.stack.placement (from {where}) puts {FLOPS_DB_SERVICE} and "
            f"{MANAGER} on different hosts: upstream's manager reaches its "
            "database at FLOPS_MANAGER_IP:10027, so place them together"
        )
    for engine in dict.fromkeys(placed.values()):
        here = [svc for svc, t in placed.items() if t == engine]
        seen: dict[int, str] = {}
        for svc in here:
            for port in PORTS[svc]:
                if port in seen:
                    label = engine.label if engine is not None else LOCAL
                    raise ConfigError(
                        f"flops.stack.placement (from {where}) puts {seen[port]}"
                        f" and {svc} on {label}, and both publish port {port}: "
                        "place one of them on another host"
                    )
                seen[port] = svc
    if all(t is None for t in placed.values()):
        return {}
    return placed


def _image(section: dict[str, Any], config: Config, name: str, key: str) -> str:
    image = _string(section, config, name, key, empty_ok=False)
    _expect(
        valid_image(image),
        config,
        (name, key),
        "an image reference such as registry:5073/name:tag",
        image,
    )
    return image


# The data dir is mounted read-write behind upstream's sidecar, which takes unauthenticated
# do_put and drop_dataset from anything on docker0 (SECURITY.md): it must be a folder of its
# own. Never a system tree, root's home, a spool, nor one of the wide folders itself (a
# folder of its own inside /srv, /opt, /home/<user> ... is fine).
_SYSTEM_TREES = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/run",
    "/var/spool",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/var/lib/flops-tasks",
)
_TOO_WIDE = (
    "/",
    "/home",
    "/media",
    "/mnt",
    "/opt",
    "/srv",
    "/tmp",
    "/var",
    "/var/lib",
    "/var/log",
    "/var/tmp",
)
# folders under /var/lib that packages own: refused by name here; on the worker, any folder
# under /var/lib that flops-tasks did not make is refused (``var_lib_taken``)
_VAR_LIB_KNOWN = (
    "apt",
    "dpkg",
    "mysql",
    "postgresql",
    "systemd",
    "sudo",
    "snapd",
    "kubelet",
    "containers",
    "libvirt",
    "lxd",
    "cloud",
    "ucf",
    "pam",
)
DATA_DIR_EXAMPLE = "/srv/flops-data"


def data_dir_problem(
    path: str, homes: Sequence[str] = (), var_lib_taken: bool = False
) -> str | None:
    """Why ``path`` cannot be a learner's data dir (config and --data-dir), or None.

    On a worker the path is checked again after ``readlink -m`` resolved it there
    (``facts.DataDirFacts``), with what only the worker knows: its users' ``homes`` and
    whether the folder under /var/lib the path lies in already exists and was not made by
    flops-tasks (``var_lib_taken``).
    """
    if any(ch in path for ch in "\n\r\0"):
        return "a path cannot hold line breaks or NUL"
    if not path.startswith("/"):
        return f"give an absolute path, e.g. {DATA_DIR_EXAMPLE}"
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        return "give a path without '..'"
    if ":" in path:
        return "give a path without ':' (docker -v would split the path there)"
    norm = "/" + "/".join(parts)
    own = f"give a directory of its own, e.g. {DATA_DIR_EXAMPLE}"
    system = (
        norm in _TOO_WIDE
        or re.match(r"/lib(32|64|x32)?(/|$)", norm)
        or any(norm == tree or norm.startswith(tree + "/") for tree in _SYSTEM_TREES)
    )
    if system:
        return (
            f"{norm} is a system directory, and the sidecar mounts the data dir read-write: {own}"
        )
    hidden = next((part for part in parts if part.startswith(".")), None)
    if hidden:
        return f"{norm} is in the dot folder {hidden} (a home's settings, keys...): {own}"
    if len(parts) == 2 and parts[0] == "home":
        return f"{norm} is a home folder itself: {own} (such as {norm}/flops-data)"
    if norm in homes:
        return f"{norm} is a user's home folder on this host: {own}"
    holds = sorted(h for h in homes if h.startswith(norm + "/"))
    if holds:
        return f"{norm} holds the home folder {holds[0]}: {own}"
    if len(parts) >= 3 and parts[:2] == ["var", "lib"]:
        top = "/" + "/".join(parts[:3])
        if parts[2] in _VAR_LIB_KNOWN or var_lib_taken:
            return (
                f"{top} belongs to something else (a package's state): under /var/lib only "
                f"a new folder that flops-tasks makes is accepted; {own}"
            )
    return None


def valid_data_dir(path: str) -> bool:
    """A data dir ``data_dir_problem`` finds nothing wrong with."""
    return data_dir_problem(path) is None


def valid_image(ref: str) -> bool:
    """An image reference that cannot be mistaken for an option (config and --image)."""
    return (
        bool(ref.strip())
        and not ref.startswith("-")
        and not any(ch.isspace() or ch == "\0" for ch in ref)
    )


def _is_ip(value: str) -> bool:
    if "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def resolve_path(path: str) -> Path:
    """Config paths are relative to the folder that holds compose/ and testbed/ (the
    checkout, or the installed package's data)."""
    p = Path(os.path.expanduser(path))
    return p if p.is_absolute() else PROJECT_ROOT / p
