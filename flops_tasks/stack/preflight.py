"""Before the stack starts: Docker and compose v2, the network, free ports and names.

Every check runs before the first change, so a failed preflight changes nothing. Whatever
holds a port or a container name the stack needs is named: a process, another compose
project, or upstream's own compose file as oak-cli drives it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from .. import env as envmod
from ..errors import FlopsError, UsageError
from ..outcome import Outcome, changed, ok
from .project import ContainerView, Project
from .services import MANAGER, OUR_LABEL, PORTS

ORCHESTRATOR_NETWORKS = ("oakestra", "root_orchestrator_default")
STANDALONE_NETWORK = "flops_standalone"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"
UPSTREAM_COMPOSE = "flops_management.docker_compose.yml"


def compose_version(project: Project) -> str:
    """Compose's version, refused when missing or older than the suite's file needs
    (``project.COMPOSE_MIN``); checked with the engine."""
    project.check_docker()
    return project.compose_version


def describe(c: ContainerView) -> str:
    """A container as a user can find it: its name, project, and where it came from."""
    files = c.label(CONFIG_FILES_LABEL)
    if UPSTREAM_COMPOSE in files:
        return (
            f"container {c.name} of upstream's own compose file {files} (as oak-cli "
            "starts it; stop it with: docker compose -f "
            f"{files.split(',')[0]} down)"
        )
    if c.project:
        return f"container {c.name} of compose project {c.project}"
    return f"container {c.name}"


def is_ours(project: Project, c: ContainerView) -> bool:
    """This stack's container: our project name and our compose file's label."""
    return c.project == project.name and c.label(OUR_LABEL) == "1"


@dataclass(frozen=True)
class Conflicts:
    """What would keep the stack from starting, one line each."""

    lines: list[str]

    def raise_first(self) -> None:
        if self.lines:
            more = f" (and {len(self.lines) - 1} more)" if len(self.lines) > 1 else ""
            raise FlopsError(
                f"{self.lines[0]}{more}: stop it or change "
                "flops.stack.bind_address; ports 5072, 5073, 9027, 10027, 3306, "
                "20-21, 21100-21110 and the container names must be free"
            )


def conflicts(project: Project, running: set[str] | None = None) -> Conflicts:
    """Ports and container names the services placed on this engine need that something
    else holds (on a remote engine: its containers; docker names any other holder at start).

    ``running``: the stack's running services, when the caller has already looked.
    """
    everything = project.snapshot(all_=True, project_only=False)
    if running is None:
        running = {c.service for c in everything if is_ours(project, c) and c.running}
    bind = project.s.stack.bind_address
    lines: list[str] = []
    on = f" on {project.label}" if project.remote else ""
    foreign = [c for c in everything if not is_ours(project, c)]
    for c in foreign:  # the stack's containers carry upstream's names
        if c.name in project.services:
            lines.append(f"the container name {c.name}{on} is taken by {describe(c)}")
    published: dict[int, ContainerView] = {}
    for c in foreign:
        if not c.running:
            continue
        for ip, port in c.published:
            if "0.0.0.0" in (ip, bind) or "::" in (ip, bind) or ip == bind:
                published.setdefault(port, c)
    for service in project.services:
        if service in running:
            continue
        for port in PORTS[service]:
            holder = (
                describe(published[port])
                if port in published
                else None
                if project.remote
                else bound_elsewhere(bind, port)
            )
            if holder:
                lines.append(f"port {port} ({service}){on} is in use by {holder}")
    return Conflicts(lines)


def bound_elsewhere(bind: str, port: int) -> str | None:
    """Who holds ``bind:port`` when no container publishes it (a plain bind test)."""
    with socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind, port))
        except PermissionError:
            return None  # not root: leave it to docker to say
        except OSError:
            return f"another process (see: ss -ltnp 'sport = :{port}')"
    return None


def network(project: Project) -> tuple[str, str]:
    """The network the stack joins and how it was chosen."""
    docker = project.docker
    configured = project.s.stack.network
    if configured:
        if project.call(lambda: docker.network.exists(configured)):
            return configured, f"configured network {configured}"
        return configured, f"configured network {configured} (to be created)"
    from python_on_whales.exceptions import NoSuchContainer

    def networks_of_system_manager() -> list[str]:
        try:
            manager = docker.container.inspect("system_manager")
        except NoSuchContainer:
            return []
        return list((manager.network_settings.networks or {}).keys())

    names = project.call(networks_of_system_manager)
    for name in ORCHESTRATOR_NETWORKS:
        if name in names:
            return name, f"Oakestra's network {name} (from the system_manager container)"
    if names:
        return names[0], f"network {names[0]} of the system_manager container"
    for name in ORCHESTRATOR_NETWORKS:
        if project.call(partial(docker.network.exists, name)):
            return name, f"Oakestra's network {name}"
    return STANDALONE_NETWORK, (
        f"no Oakestra orchestrator runs here: stand-alone network {STANDALONE_NETWORK}"
    )


def ensure_network(project: Project, name: str) -> bool:
    docker = project.docker
    if project.call(lambda: docker.network.exists(name)):
        return False
    project.act(
        f"create network {name}",
        lambda: docker.network.create(name, labels={"org.flops-tasks.network": "standalone"}),
        step="network",
    )
    return True


def builds_from_addon(project: Project) -> tuple[Path, bool] | None:
    """The manager's build context when flops-tasks stages it from the addon-FLOps checkout
    (the production one, or a staged one such as the testbed's), and whether the compose
    file builds it offline (``PIP_SOURCE=wheelhouse``); None for any other build."""
    from ..build_context import is_staged

    services = project.compose_config().get("services") or {}
    build = (services.get("flops_manager") or {}).get("build") or {}
    context = str(build.get("context", "")) if isinstance(build, dict) else str(build)
    if not context or not is_staged(Path(context), project.s):
        return None
    args = (build.get("args") or {}) if isinstance(build, dict) else {}
    return Path(context), str(args.get("PIP_SOURCE", "")) == "wheelhouse"


def preflight(project: Project, build: bool = False) -> tuple[dict[str, str], list[Outcome]]:
    """Docker, compose v2, env, ports and names, images; then write the env file and network.

    Every check runs before the first change, so a failed preflight changes nothing. On a
    remote engine the same holds for the services placed there; its env file is written
    here, where compose reads it.
    """
    outcomes: list[Outcome] = []
    where = project.where
    project.check_docker()
    version = compose_version(project)
    outcomes.append(ok(where, "compose", f"docker compose {version}"))
    name, how = network(project)
    envmod.resolve_addresses(project.s)  # validate before touching anything
    running = {svc for svc, c in project.containers().items() if c.running}
    complete = running >= set(project.services)  # the stack holds its ports; nothing to pull
    if not complete:
        conflicts(project, running).raise_first()
    _, values, writes = envmod.plan_env(
        project.s, extra={"FLOPS_NETWORK": name}, path=project.env_file
    )
    for path, before, wanted in writes:
        project.act(
            f"write {path} (mode 0600)",
            partial(envmod.write_env_file, path, wanted),
            step="env",
            file=(path, before, envmod.env_body(wanted)),
        )
    verb = ("would update" if project.dry else "updated") if writes else "up to date:"
    outcomes.append(
        (changed if writes else ok)(
            where, "env", f"{verb} {', '.join(p for p, _, _ in writes) or project.env_file}"
        )
    )
    created = ensure_network(project, name)
    outcomes.append((changed if created else ok)(where, "network", how))
    staged = builds_from_addon(project) if build and MANAGER in project.services else None
    if staged is not None:
        from ..addon import ensure_checkout
        from ..build_context import ensure_manager_context

        context, offline = staged
        outcomes.append(ensure_checkout(project))
        outcomes.append(ensure_manager_context(project, dest=context, offline=offline))
    if not build and not project.dry and not complete:
        missing = project.missing_images()
        if missing:
            on = f"host {project.label}" if project.remote else "this host"
            raise UsageError(
                f"image {missing[0]} is not on {on} and is not pulled "
                "implicitly: run 'inv up --build' (or pull it)"
            )
    return values, outcomes
