"""Read-only facts about a worker, gathered in one SSH round trip.

Each probe is a (name, command) pair built in ``commands``; ``gather`` runs them all in one
batch (with ``dry=False`` semantics: probes always run) and ``WorkerFacts`` parses the
output. Operations decide from these facts what differs.

Every probe here runs on every re-run of a preparation (also on small edge boards): add one
only where no existing probe can answer, and prefer shell builtins (``test``, ``command -v``)
to programs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from . import commands as C
from .probe_binaries import MACHINES

MISSING = "@@flops-missing"
# packages whose state decides a builder step, in one dpkg-query call
PACKAGES = ("qemu-user-static", "qemu-user-binfmt", "docker-ce", "docker.io", "buildah",
            "netavark")
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
        ("nodeengine", C.if_else(C.has_command("NodeEngine") + " >/dev/null",
                                 C.nodeengine_addon_list(), C.cmd("echo", MISSING))),
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
    return [(f"containerd_hosts {registry}", _cat(C.hosts_toml_path(registry)))
            for registry in former]


def builder_probes(builder: str) -> list[tuple[str, str]]:
    probes = [
        ("packages", C.dpkg_status(PACKAGES)),
        ("binfmt_support", C.binfmt_supported()),
        ("binfmt_mounted", C.cmd("test", "-e", f"{C.BINFMT}/status")),
        ("binfmt_persist", "ls /usr/lib/binfmt.d/qemu-*.conf /usr/share/binfmts/qemu-* "
                           "2>/dev/null | head -n 4"),
        ("buildx", C.cmd("docker", "buildx", "version")),
        ("context", C.cmd("docker", "context", "inspect", builder, "--format",
                          "{{.Endpoints.docker.Host}}")),
        # the docker-driver builder is a context of that name; else a container builder
        ("builder", C.any_of(C.cmd("docker", "--context", builder, "buildx", "inspect", builder)
                             + " 2>/dev/null", C.cmd("docker", "buildx", "inspect", builder))),
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


@dataclass
class WorkerFacts:
    raw: dict[str, tuple[int, str]]

    def rc(self, name: str) -> int:
        return self.raw.get(name, (255, ""))[0]

    def out(self, name: str) -> str:
        return self.raw.get(name, (255, ""))[1]

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
        return self.rc("docker") != 127

    @property
    def docker_running(self) -> bool:
        info = self.docker_info
        return bool(info.get("ServerVersion")) and not info.get("ServerErrors")

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
        return any(pair[:2] == ["driver-type", "io.containerd.snapshotter.v1"]
                   for pair in status if isinstance(pair, list))

    def docker_trusts(self, registry: str) -> bool:
        configs = (self.docker_info.get("RegistryConfig") or {}).get("IndexConfigs") or {}
        entry = configs.get(registry)
        return bool(entry) and entry.get("Secure") is False

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
        found: dict[str, bool] = {}
        for line in self.out("packages").splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[0] in PACKAGES:
                found[parts[0]] = parts[1:] == ["install", "ok", "installed"]
        return found

    def installed(self, package: str) -> bool:
        return self.packages.get(package, False)

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

    def runs(self, machine: str) -> bool:
        return self.ok(f"run_{machine}") and self.out(f"run_{machine}").strip() == machine

    @property
    def buildx_package(self) -> str:
        """Docker's own repository names it docker-buildx-plugin, Debian/Ubuntu docker-buildx."""
        return "docker-buildx-plugin" if self.installed("docker-ce") else "docker-buildx"

    def builder_platforms(self, driver: str) -> list[str]:
        """The named builder's platforms, when it exists with ``driver``."""
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


def gather(session: Any, probes: list[tuple[str, str]]) -> WorkerFacts:
    return WorkerFacts(session.probes(probes))
