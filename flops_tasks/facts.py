"""Read-only facts about a worker, gathered in one SSH round trip.

Each probe is a (name, command) pair built in ``commands``; ``gather`` runs them all in one
batch (with ``dry=False`` semantics: probes always run) and ``WorkerFacts`` parses the
output. Operations decide from these facts what differs.

Two sets of probes answer the same questions:

- ``quick_probes``: what a re-run of a preparation reads first (also on small edge boards,
  while they train). No docker CLI, no buildx: the engine's API over its socket in one perl
  process, buildx's and the CLI's own files, shell builtins. ``quick_probes`` says, read by
  read, what each still proves and what it no longer does. A quick read can only confirm
  that a host is already as wanted; it never decides a change.
- the full probes (``base_probes`` ... ``learner_probes``): the docker CLI, ``docker buildx
  inspect`` (BuildKit's own answer), the probe programs of both machines. They run whenever
  the quick reads do not confirm everything (and decide what to change), for the verify
  pass after any change, and for ``doctor``.

Add a probe only where no existing probe can answer, and prefer shell builtins (``test``,
``command -v``) to programs.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from . import commands as C
from .probe_binaries import MACHINES

MISSING = "@@flops-missing"
# packages whose state decides a builder step, in one dpkg-query call
PACKAGES = (
    "qemu-user-static",
    "qemu-user-binfmt",
    "docker-ce",
    "docker.io",
    "buildah",
    "netavark",
    "docker-buildx",
    "docker-buildx-plugin",
)
# NodeEngine's add-on names as `NodeEngine config addon` lists them (oakestra/oakestra
# go_node_engine/model/Node.go: IMAGE_BUILDER "image-builder", FLOPS_LEARNER "FLOps-learner")
ADDON_LISTED = {"imageBuilder": "image-builder", "FLOps": "FLOps-learner"}


def _cat(path: str) -> str:
    return C.cat_or_mark(path, MISSING)


def handler_probe(machine: str) -> tuple[str, str]:
    return f"handler_{machine}", _cat(f"{C.BINFMT}/qemu-{machine}")


def foreign_machine(machine: str) -> str:
    """The architecture a builder emulates: arm64 on amd64 hosts, amd64 on arm64 hosts."""
    return "x86_64" if machine == "aarch64" else "aarch64"


def base_probes() -> list[tuple[str, str]]:
    return [
        ("machine", "uname -m"),
        ("os", '. /etc/os-release 2>/dev/null; echo "${ID:-unknown} ${VERSION_CODENAME:-}"'),
        ("apt", C.has_command("apt-get")),
        ("systemd", C.cmd("test", "-d", "/run/systemd/system")),
        ("docker", C.docker_info_json()),
        ("daemon_json", _cat(C.DAEMON_JSON)),
        (
            "nodeengine",
            C.if_else(
                C.has_command("NodeEngine") + " >/dev/null",
                C.nodeengine_addon_list(),
                C.cmd("echo", MISSING),
            ),
        ),
        ("containerd", C.cmd("test", "-S", C.CONTAINERD_SOCKET)),
        ("containerd_config", _cat(C.CONTAINERD_CONFIG)),
        ("buildah", C.has_command("buildah")),
    ]


def registry_probes(registry: str) -> list[tuple[str, str]]:
    return [
        ("containerd_hosts", _cat(C.hosts_toml_path(registry))),
        ("registries_conf", _cat(C.REGISTRIES_CONF)),
    ]


def former_registry_probes(former: tuple[str, ...]) -> list[tuple[str, str]]:
    """containerd hosts files of registries workers were told to trust before (a move)."""
    return [
        (f"containerd_hosts {registry}", _cat(C.hosts_toml_path(registry))) for registry in former
    ]


def builder_probes(builder: str) -> list[tuple[str, str]]:
    probes = [
        ("packages", C.dpkg_status(PACKAGES)),
        ("binfmt_support", C.binfmt_supported()),
        ("binfmt_mounted", C.cmd("test", "-e", f"{C.BINFMT}/status")),
        ("binfmt_persist", C.binfmt_rules()),
        ("buildx", C.cmd("docker", "buildx", "version")),
        (
            "context",
            C.cmd(
                "docker", "context", "inspect", builder, "--format", "{{.Endpoints.docker.Host}}"
            ),
        ),
        # the docker-driver builder is a context of that name; else a container builder
        (
            "builder",
            C.any_of(
                C.cmd("docker", "--context", builder, "buildx", "inspect", builder)
                + " 2>/dev/null",
                C.cmd("docker", "buildx", "inspect", builder),
            ),
        ),
        ("buildkitd", _cat(C.BUILDKITD_TOML)),
    ]
    for machine, (_, program) in MACHINES.items():
        probes.append(handler_probe(machine))
        probes.append((f"run_{machine}", C.run_binary_b64(program)))
    return probes


def learner_probes(port: int = C.SIDECAR_PORT) -> list[tuple[str, str]]:
    return [
        ("volume", C.docker_volume_exists(C.DATA_VOLUME)),
        ("sidecar", C.container_inspect(C.SIDECAR)),
        ("docker0", C.docker0_address()),
        ("sidecar_tcp", C.tcp_check_docker0(port, seconds=2)),
    ]


def builder_container(builder: str) -> str:
    """The container of a docker-container builder's first node, as ``buildx create --name
    B`` makes it (buildx driver/docker-container: ``buildx_buildkit_`` + node ``B0``)."""
    return f"buildx_buildkit_{builder}0"


def context_dir(name: str) -> str:
    """The docker CLI keeps context ``name`` under ``contexts/meta/<sha256 of name>``."""
    return hashlib.sha256(name.encode()).hexdigest()


def quick_probes(
    roles: set[str], registry: str, builder: str, data_dir: str = ""
) -> list[tuple[str, str]]:
    """The reads a re-run starts with; each answers what a full probe answers, cheaper.

    What each still proves, and what it no longer does (the full probe, run for every host
    whose quick reads do not confirm everything, for the verify pass after any change and
    for ``doctor``, still does it):

    - ``engine`` replaces ``docker info`` and ``docker volume/container inspect``: the same
      JSON, read from the engine's API over ``/var/run/docker.sock`` in one perl process
      (perl-base is Essential on Debian and Ubuntu). It proves that the engine answers, its
      live registry trust, image store, the volume and the sidecar's state, exactly as the
      CLI would print them. It no longer proves that the docker CLI itself runs (only that
      it is installed, ``docker_cli``). Where the CLI would talk to another engine
      (``DOCKER_HOST``, ``DOCKER_CONTEXT``, a current context) or perl is missing, the CLI
      answers as before.
    - ``buildx_plugin`` replaces ``docker buildx version``: the plugin is an executable file
      where the CLI looks for plugins (version from dpkg). It no longer proves that the
      plugin runs.
    - ``context_meta``, ``buildx_instance`` and the engine's view of the builder's container
      replace ``docker buildx inspect``: the docker-driver builder is the CLI's context of
      that name pointing at the engine's socket, the engine runs, with the containerd image
      store; a docker-container builder is buildx's instance file (driver, platforms) and
      its BuildKit container running. They no longer ask BuildKit itself which platforms it
      offers: for the docker driver these follow from the QEMU handler read in the same
      batch (BuildKit finds emulators through the same binfmt handlers); for
      docker-container from the platforms the builder was made for.
    - The QEMU handler's own file (enabled, the ``F`` flag) replaces running a program of
      the emulated machine: with ``F`` the kernel opened the interpreter when the handler
      was registered, so a handler that reads so runs foreign programs unless the
      interpreter itself is broken. It no longer proves that a foreign program runs now.
    - The TCP check of the sidecar's port on docker0 is the same connect, made by the
      engine read's perl process (docker0's address from one ``ip`` call).
    Everything else is the full probe's own read (files, dpkg-query, shell tests). All of
    them run in the batch's own shell (no fork per probe: ``probe_batch(grouped=True)``).
    """
    full = dict(base_probes() + registry_probes(registry))
    keep = [
        "machine",
        "os",
        "apt",
        "systemd",
        "daemon_json",
        "nodeengine",
        "containerd",
        "containerd_config",
        "buildah",
        "containerd_hosts",
        "registries_conf",
    ]
    probes = [(name, full[name]) for name in keep]
    probes.append(("docker_cli", C.has_command("docker")))
    volumes, containers = [], []
    if "builder" in roles:
        builder_full = dict(builder_probes(builder))
        probes += [
            (name, builder_full[name])
            for name in (
                "packages",
                "binfmt_support",
                "binfmt_mounted",
                "binfmt_persist",
                "buildkitd",
            )
        ]
        probes += [handler_probe(machine) for machine in MACHINES]
        probes.append(("buildx_plugin", C.find_cli_plugin("docker-buildx")))
        probes.append(
            (
                "context_meta",
                C.cat_docker_config(
                    "contexts", "meta", context_dir(builder), "meta.json", mark=MISSING
                ),
            )
        )
        probes.append(
            ("buildx_instance", C.cat_docker_config("buildx", "instances", builder, mark=MISSING))
        )
        containers.append(builder_container(builder))
    tcp = None
    if "learner" in roles:
        volumes.append(C.DATA_VOLUME)
        containers.append(C.SIDECAR)
        tcp = C.SIDECAR_PORT
        if data_dir:
            probes.append(("data_dir", C.data_dir_facts(data_dir)))
    probes.append(("engine", C.engine_reads(volumes, containers, tcp_port=tcp)))
    return probes


def parse_addons(text: str) -> dict[str, bool] | None:
    """``NodeEngine config addon`` output -> {listed name: active}, None when unreadable.

    The real tool (oakestra/oakestra go_node_engine/cmd/conf.go, ``showAddons``) prints
    ``Configured Addons:`` then one ``\\t - NAME: 🟢 Active`` or ``\\t - NAME: ❌ Disabled``
    line per add-on, or ``No Addons Configured.``. A NodeEngine without add-on support prints
    something else (its help): that is None, "unknown".
    """
    lines = text.splitlines()
    if not any(line.strip() == "Configured Addons:" for line in lines):
        return None
    addons: dict[str, bool] = {}
    for line in lines:
        match = re.match(r"^\s*-\s*(\S+?):\s*(.*)$", line)
        if not match:
            continue
        name, state = match.group(1), match.group(2)
        if state.endswith("Active"):
            addons[name] = True
        elif state.endswith("Disabled"):
            addons[name] = False
        else:
            return None
    return addons


@dataclass(frozen=True)
class DataDirFacts:
    """A configured data dir as the worker sees it (``commands.data_dir_facts``)."""

    path: str  # as configured
    real: str  # resolved on the worker (readlink -m); "" when it could not be resolved
    present: bool  # the resolved path is a directory
    var_lib_taken: bool  # its folder under /var/lib exists and flops-tasks did not make it
    homes: tuple[str, ...]  # the users' home folders

    def problem(self) -> str | None:
        """Why the worker's data dir is refused (config.data_dir_problem on the resolved
        path, with the worker's homes and /var/lib), or None."""
        from .config import data_dir_problem

        if not self.real:
            return "it could not be resolved on this host (readlink -m failed)"
        problem = data_dir_problem(self.real, self.homes, self.var_lib_taken)
        if problem is None:
            return None
        if self.real != "/" + "/".join(p for p in self.path.split("/") if p not in ("", ".")):
            problem = f"it leads to {self.real} on this host (a symbolic link): {problem}"
        return problem


def parse_data_dir(path: str, rc: int, out: str) -> DataDirFacts:
    real, taken, homes = "", False, []
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        if key == "real" and not real:
            try:
                real = bytes.fromhex(value.strip()).decode("utf-8", "surrogateescape")
            except ValueError:
                real = ""
        elif key == "varlib":
            exists, _, ours = value.partition(" ")
            taken = exists.strip() == "1" and ours.strip() != "1"
        elif key == "home" and value.startswith("/"):
            homes.append(value.rstrip("/") or "/")
    return DataDirFacts(path, real, rc == 0 and bool(real), taken, tuple(homes))


@dataclass
class WorkerFacts:
    raw: dict[str, tuple[int, str]]
    # quick reads (``quick_probes``): engine API path -> (HTTP status, body)
    api: dict[str, tuple[int, str]] = field(default_factory=dict)
    # packages this run installed (or, under --dry, plans to) after the facts were read
    fresh_installs: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        """Quick reads fill the names the full probes use, in the same shape."""
        if "engine" not in self.raw:
            return
        self.api = C.parse_engine_reads(self.out("engine"))
        status, body = self.api.get("/info", (0, "the engine did not answer"))
        self.raw.setdefault("docker", (0 if status == 200 else 1, body))
        for name, path in (
            ("volume", C.volume_path(C.DATA_VOLUME)),
            ("sidecar", C.container_path(C.SIDECAR)),
        ):
            if path in self.api:
                status, body = self.api[path]
                self.raw.setdefault(name, (0 if status == 200 else 1, body))
        if "docker0" in self.api:
            address = self.api["docker0"][1]
            status = self.api.get(f"tcp:{address}:{C.SIDECAR_PORT}", (0, ""))[0]
            self.raw.setdefault("docker0", (0, address))
            self.raw.setdefault("sidecar_tcp", (0 if status == 200 and address else 1, address))

    @property
    def quick(self) -> bool:
        """True for facts from ``quick_probes``."""
        return "engine" in self.raw

    def has(self, name: str) -> bool:
        return name in self.raw

    def rc(self, name: str) -> int:
        return self.raw.get(name, (255, ""))[0]

    def out(self, name: str) -> str:
        return self.raw.get(name, (255, ""))[1]

    def data_dir(self, path: str) -> DataDirFacts:
        """The configured data dir ``path`` as the worker resolved it (probe ``data_dir``)."""
        rc, out = self.raw.get("data_dir", (1, ""))
        return parse_data_dir(path, rc, out)

    def ok(self, name: str) -> bool:
        return self.rc(name) == 0

    def file(self, name: str) -> str | None:
        """Contents of a file probe, ``None`` when the file does not exist."""
        text = self.out(name)
        return None if text.strip() == MISSING else text

    # -- base ---------------------------------------------------------------------
    @property
    def machine(self) -> str:
        return self.out("machine").strip()

    @property
    def foreign(self) -> str:
        return foreign_machine(self.machine)

    @property
    def os(self) -> str:
        return self.out("os").strip()

    @property
    def has_apt(self) -> bool:
        return self.ok("apt")

    @property
    def systemd(self) -> bool:
        return self.ok("systemd")

    @property
    def docker_info(self) -> dict[str, Any]:
        if not self.ok("docker"):
            return {}
        try:
            return json.loads(self.out("docker").strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {}

    @property
    def docker_installed(self) -> bool:
        if self.has("docker_cli"):
            return self.ok("docker_cli")
        return self.rc("docker") != 127

    @property
    def docker_running(self) -> bool:
        info = self.docker_info
        return (
            bool(info.get("ServerVersion"))
            and not info.get("ServerErrors")
            and self.docker_installed
        )

    @property
    def docker_error(self) -> str:
        if not self.docker_installed:
            return "docker is not installed"
        text = self.out("docker").strip().splitlines()
        return text[-1] if text else "docker info failed"

    @property
    def containerd_running(self) -> bool:
        return self.ok("containerd")

    @property
    def containerd_store(self) -> bool:
        status = self.docker_info.get("DriverStatus") or []
        return any(
            pair[:2] == ["driver-type", "io.containerd.snapshotter.v1"]
            for pair in status
            if isinstance(pair, list)
        )

    def docker_trusts(self, registry: str) -> bool:
        configs = (self.docker_info.get("RegistryConfig") or {}).get("IndexConfigs") or {}
        entry = configs.get(registry)
        return isinstance(entry, dict) and entry.get("Secure") is False

    @property
    def nodeengine(self) -> str | None:
        """``NodeEngine config addon`` output; None when NodeEngine is not installed."""
        text = self.out("nodeengine")
        return None if text.strip() == MISSING else text

    def addon_active(self, addon: str) -> bool | None:
        """True/False as NodeEngine lists ``addon``; None when its listing is unreadable."""
        text = self.nodeengine
        if text is None or not self.ok("nodeengine"):
            return None
        listed = parse_addons(text)
        if listed is None:
            return None
        return listed.get(ADDON_LISTED[addon], False)

    # -- builder ------------------------------------------------------------------
    @property
    def packages(self) -> dict[str, bool]:
        """Package -> installed, for the packages dpkg knows (see ``PACKAGES``)."""
        return {
            name: state == ["install", "ok", "installed"]
            for name, (state, _) in self._dpkg().items()
        }

    def _dpkg(self) -> dict[str, tuple[list[str], str]]:
        found: dict[str, tuple[list[str], str]] = {}
        for line in self.out("packages").splitlines():
            parts = line.split()
            if len(parts) in (4, 5) and parts[0] in PACKAGES:
                found[parts[0]] = (parts[1:4], parts[4] if len(parts) == 5 else "")
        return found

    def installed(self, package: str) -> bool:
        return package in self.fresh_installs or self.packages.get(package, False)

    def version(self, package: str) -> str:
        """The installed version of ``package`` ("" when unknown or not installed)."""
        return self._dpkg().get(package, ([], ""))[1] if self.installed(package) else ""

    @property
    def binfmt_supported(self) -> bool:
        return self.ok("binfmt_support")

    def handler(self, machine: str) -> tuple[bool, str]:
        """(enabled with the F flag, flags) of the QEMU handler for ``machine``."""
        text = self.file(f"handler_{machine}")
        if text is None:
            return False, ""
        lines = text.splitlines()
        flags = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("flags:")), "")
        return (bool(lines) and lines[0].strip() == "enabled" and "F" in flags), flags

    def runs(self, machine: str) -> bool | None:
        """A program of ``machine`` ran and printed its machine; None: not run (quick reads)."""
        name = f"run_{machine}"
        if not self.has(name):
            return None
        return self.ok(name) and self.out(name).strip() == machine

    @property
    def buildx_package(self) -> str:
        """Docker's own repository names it docker-buildx-plugin, Debian/Ubuntu docker-buildx."""
        return "docker-buildx-plugin" if self.installed("docker-ce") else "docker-buildx"

    def builder_platforms(self, driver: str) -> list[str]:
        """The named builder's platforms, when it exists with ``driver`` (quick reads: see
        ``quick_probes``)."""
        if not self.has("builder"):
            return self._quick_platforms(driver)
        if not self.ok("builder") or self.builder_driver() != driver:
            return []
        for line in self.out("builder").splitlines():
            if line.strip().startswith("Platforms:"):
                return [p.strip() for p in line.split(":", 1)[1].split(",") if p.strip()]
        return []

    def builder_driver(self) -> str:
        for line in self.out("builder").splitlines():
            if line.strip().startswith("Driver:"):
                return line.split(":", 1)[1].strip()
        return ""

    def _json_file(self, name: str) -> dict[str, Any]:
        text = self.file(name) if self.has(name) else None
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}

    @property
    def context_host(self) -> str:
        """The docker endpoint of the builder's CLI context ("" without one)."""
        if self.has("context"):
            return self.out("context").strip() if self.ok("context") else ""
        endpoint = (self._json_file("context_meta").get("Endpoints") or {}).get("docker") or {}
        return str(endpoint.get("Host") or "")

    def _quick_platforms(self, driver: str) -> list[str]:
        if not self.docker_running:
            return []
        if driver == "docker":
            if self.context_host != f"unix://{C.DOCKER_SOCKET}" or not self.containerd_store:
                return []
            native = MACHINES.get(self.machine, ("", ""))[0]
            emulated = MACHINES.get(self.foreign, ("", ""))[0]
            enabled, _ = self.handler(self.foreign)
            return [
                p
                for p in (
                    native,
                    emulated if enabled and self.runs(self.foreign) is not False else "",
                )
                if p
            ]
        instance = self._json_file("buildx_instance")
        nodes = instance.get("Nodes") or []
        if instance.get("Driver") != driver or not nodes or not isinstance(nodes[0], dict):
            return []
        node = str(nodes[0].get("Name") or "")
        status, body = self.api.get(C.container_path(f"buildx_buildkit_{node}"), (0, ""))
        if not node or status != 200:
            return []
        try:
            running = bool((json.loads(body).get("State") or {}).get("Running"))
        except (ValueError, AttributeError):
            running = False
        if not running:
            return []
        return [
            "/".join(str(x) for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
            for p in nodes[0].get("Platforms") or []
            if isinstance(p, dict)
        ]

    # -- learner ------------------------------------------------------------------
    @property
    def sidecar(self) -> dict[str, Any] | None:
        if not self.ok("sidecar"):
            return None
        try:
            return json.loads(self.out("sidecar").strip().splitlines()[-1])
        except (ValueError, IndexError):
            return None

    @property
    def docker0(self) -> str:
        return self.out("docker0").strip()


def gather(session: Any, probes: list[tuple[str, str]], grouped: bool = False) -> WorkerFacts:
    """One round trip; ``grouped`` for probes that may share the batch's shell (quick)."""
    if grouped:
        return WorkerFacts(session.probes(probes, grouped=True))
    return WorkerFacts(session.probes(probes))
