"""The FLOps management suite: one docker compose project driven by python-on-whales.

Every compose call goes through ``Stack``, which pins the compose files, the env file and
the project name, so all of them see the same values. Nothing here prints: progress goes
to an observer, results come back as ``Outcome``s.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import env as envmod
from .config import Settings
from .errors import FlopsError
from .outcome import Outcome, changed, failed, ok

SERVICES = (
    "flops_manager",
    "flops_image_registry",
    "flops_mqtt",
    "flops_db",
    "mlflow_backend_store",
    "vsftpd_server",
)
PORTS = {
    "flops_manager": (5072,),
    "flops_image_registry": (5073,),
    "flops_mqtt": (9027,),
    "flops_db": (10027,),
    "mlflow_backend_store": (3306,),
    "vsftpd_server": (20, 21, *range(21100, 21111)),
}
# volume key in the compose file -> what it holds
VOLUMES = {
    "registry_data": "FLOps registry images",
    "flops_db": "FLOps manager database (Mongo)",
    "mlflow_backend_store_data": "MLflow backend database (MySQL)",
    "vsftpd_home": "MLflow artifacts (FTP)",
    "vsftpd_logs": "FTP logs",
    "flops_mqtt_data": "MQTT broker persistence",
}
ORCHESTRATOR_NETWORKS = ("oakestra", "root_orchestrator_default")
STANDALONE_NETWORK = "flops_standalone"
FLOPS_DB = "flops"
STACK = "stack"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class ContainerView:
    """What flops-tasks needs of one container, read once from ``docker inspect``."""

    id: str
    name: str
    project: str
    service: str
    state: str
    health: str
    published: tuple[tuple[str, int], ...]
    config_hash: str = ""
    addon_ref: str = ""  # image label: the addon-FLOps ref a FLOps image was built from
    stand_in: str = ""  # image label: what a testbed stand-in stands in for

    @property
    def running(self) -> bool:
        return self.state == "running"

    @classmethod
    def from_inspect(cls, data: dict) -> ContainerView:
        labels = (data.get("Config") or {}).get("Labels") or {}
        state = data.get("State") or {}
        ports = ((data.get("NetworkSettings") or {}).get("Ports") or {})
        published = tuple(sorted({(b.get("HostIp") or "0.0.0.0", int(b["HostPort"]))
                                  for binds in ports.values() for b in (binds or [])
                                  if b.get("HostPort")}))
        return cls(
            id=data.get("Id", ""),
            name=(data.get("Name") or "").lstrip("/"),
            project=labels.get("com.docker.compose.project", ""),
            service=labels.get("com.docker.compose.service", ""),
            state=state.get("Status", ""),
            health=((state.get("Health") or {}).get("Status") or ""),
            published=published,
            config_hash=labels.get("com.docker.compose.config-hash", ""),
            addon_ref=labels.get("org.flops-tasks.addon-ref", ""),
            stand_in=labels.get("org.flops-tasks.stand-in", ""),
        )


@dataclass
class Stack:
    """The compose project of the FLOps management suite."""

    s: Settings
    dry: bool = False
    progress: Progress = _quiet
    plan: list[str] = field(default_factory=list)
    _docker: Any = None

    # -- plumbing ---------------------------------------------------------------------
    @property
    def docker(self) -> Any:
        if self._docker is None:
            from python_on_whales import DockerClient

            self._docker = DockerClient(
                compose_files=list(self.s.stack.compose_files),
                compose_env_files=[self.s.stack.env_file],
                compose_project_name=self.s.stack.project,
            )
        return self._docker

    def volume_name(self, key: str) -> str:
        return f"{self.s.stack.project}_{key}"

    def compose_cmd(self, *args: str) -> str:
        """The equivalent ``docker compose`` command line, for dry-run plans."""
        import shlex

        parts = ["docker", "compose", "-p", self.s.stack.project,
                 "--env-file", self.s.stack.env_file]
        for f in self.s.stack.compose_files:
            parts += ["-f", f]
        return shlex.join([*parts, *args])

    def _act(self, summary: str, action: Callable[[], Any]) -> Any:
        if self.dry:
            self.plan.append(summary)
            return None
        self.progress(summary)
        return _docker_call(action)

    # -- preflight --------------------------------------------------------------------
    def compose_version(self) -> str:
        version = _docker_call(lambda: self.docker.compose.version())
        text = str(version).strip()
        digits = text.split("version")[-1].strip().lstrip("v")
        if not digits[:1].isdigit() or int(digits.split(".")[0]) < 2:
            raise FlopsError(f"docker compose v2 is required, found {text!r}: install the "
                             "compose v2 plugin (Debian: docker-compose >= 2, Docker: "
                             "docker-compose-plugin); compose v1 cannot read this stack", code=2)
        return digits

    def check_docker(self) -> None:
        from python_on_whales.exceptions import DockerException

        try:
            self.docker.version()  # client and server; cheaper than a full docker info
        except DockerException as exc:
            raise FlopsError("the Docker engine does not answer (docker version failed): start "
                             f"dockerd or check DOCKER_HOST ({_last_line(exc)})") from None
        except FileNotFoundError:
            raise FlopsError("the docker CLI is not installed: install Docker "
                             "(Debian: apt-get install docker.io)") from None

    def snapshot(self, all_: bool = True, project_only: bool = True) -> list[ContainerView]:
        """One consistent look at containers: one ``ps`` and one ``inspect`` call.

        (python-on-whales objects re-inspect on nearly every attribute access.)
        """
        from python_on_whales.utils import run

        base = list(self.docker.client_config.docker_cmd)
        ps = [*base, "container", "ls", "-q", "--no-trunc"]
        if all_:
            ps.append("-a")
        if project_only:  # compose's project label: works before the env file exists
            ps += ["--filter", f"label=com.docker.compose.project={self.s.stack.project}"]
        ids = _docker_call(lambda: run(ps)).split()
        if not ids:
            return []
        raw = _docker_call(lambda: run([*base, "container", "inspect", *ids]))
        return [ContainerView.from_inspect(item) for item in json.loads(raw)]

    def containers(self, all_: bool = True) -> list[ContainerView]:
        """The stack's containers."""
        return self.snapshot(all_=all_)

    def ports_in_use(self, ours: set[str] | None = None) -> list[str]:
        """Required ports held by something other than this stack: one line each.

        ``ours``: the stack's running services, when the caller has already looked.
        """
        if ours is None:
            ours = {c.service for c in self.containers() if c.running}
        bind = self.s.stack.bind_address
        published: dict[int, str] = {}
        for c in self.snapshot(all_=False, project_only=False):
            if c.project == self.s.stack.project:
                continue
            for ip, port in c.published:
                if "0.0.0.0" in (ip, bind) or "::" in (ip, bind) or ip == bind:
                    published.setdefault(port, c.name)
        problems = []
        for service, ports in PORTS.items():
            if service in ours:
                continue
            for port in ports:
                holder = (f"container {published[port]}" if port in published
                          else _bound_elsewhere(bind, port))
                if holder:
                    problems.append(f"port {port} ({service}) is in use by {holder}")
        return problems

    def network(self) -> tuple[str, str]:
        """The network the stack joins and how it was chosen."""
        configured = self.s.stack.network
        if configured:
            if _docker_call(lambda: self.docker.network.exists(configured)):
                return configured, f"configured network {configured}"
            return configured, f"configured network {configured} (to be created)"
        from python_on_whales.exceptions import NoSuchContainer

        try:
            manager = self.docker.container.inspect("system_manager")
            names = list((manager.network_settings.networks or {}).keys())
        except NoSuchContainer:
            names = []
        for name in ORCHESTRATOR_NETWORKS:
            if name in names:
                return name, f"Oakestra's network {name} (from the system_manager container)"
        if names:
            return names[0], f"network {names[0]} of the system_manager container"
        for name in ORCHESTRATOR_NETWORKS:
            if _docker_call(lambda n=name: self.docker.network.exists(n)):
                return name, f"Oakestra's network {name}"
        return STANDALONE_NETWORK, ("no Oakestra orchestrator runs here: stand-alone network "
                                    f"{STANDALONE_NETWORK}")

    def ensure_network(self, name: str) -> bool:
        if _docker_call(lambda: self.docker.network.exists(name)):
            return False
        self._act(f"create network {name}", lambda: self.docker.network.create(
            name, labels={"org.flops-tasks.network": "standalone"}))
        return True

    def preflight(self, build: bool = False) -> tuple[dict[str, str], list[Outcome]]:
        """Docker, compose v2, env, ports, images; then write the env file and network.

        Every check runs before the first change, so a failed preflight changes nothing.
        """
        outcomes: list[Outcome] = []
        self.check_docker()
        version = self.compose_version()
        outcomes.append(ok(STACK, "compose", f"docker compose {version}"))
        network, how = self.network()
        envmod.resolve_addresses(self.s)  # validate before touching anything
        running = {c.service for c in self.containers() if c.running}
        complete = running >= set(SERVICES)  # the stack holds its ports; nothing to pull
        busy = [] if complete else self.ports_in_use(ours=running)
        if busy:
            more = f" (and {len(busy) - 1} more)" if len(busy) > 1 else ""
            raise FlopsError(f"{busy[0]}{more}: stop it or change flops.stack.bind_address; "
                             "ports 5072, 5073, 9027, 10027, 3306, 20-21, 21100-21110 must be "
                             "free")
        _, values, env_changed = envmod.ensure_env(
            self.s, extra={"FLOPS_NETWORK": network}, dry=self.dry)
        verb = "updated" if env_changed else "unchanged"
        outcomes.append((changed if env_changed else ok)(
            STACK, "env", f"{self.s.stack.env_file} {verb}"))
        created = self.ensure_network(network)
        outcomes.append((changed if created else ok)(STACK, "network", how))
        if build and self.builds_from_addon():
            from .addon import ensure_checkout
            from .build_context import ensure_manager_context

            outcomes.append(ensure_checkout(self.s, dry=self.dry, plan=self.plan))
            outcomes.append(ensure_manager_context(self.s, dry=self.dry, plan=self.plan))
        if not build and not self.dry and not complete:
            missing = self.missing_images()
            if missing:
                raise FlopsError(f"image {missing[0]} is not on this host and is not pulled "
                                 "implicitly: run 'inv up --build' (or pull it)", code=2)
        return values, outcomes

    def builds_from_addon(self) -> bool:
        """True when the manager is built from the addon-FLOps checkout (not an override)."""
        from .build_context import manager_context_dir

        config = _docker_call(lambda: self.docker.compose.config(return_json=True))
        build = ((config.get("services") or {}).get("flops_manager") or {}).get("build") or {}
        context = str(build.get("context", "")) if isinstance(build, dict) else str(build)
        return context == str(manager_context_dir(self.s))

    def missing_images(self) -> list[str]:
        config = _docker_call(lambda: self.docker.compose.config(return_json=True))
        missing = []
        for name, svc in (config.get("services") or {}).items():
            image = svc.get("image")
            if image and svc.get("build") and not _docker_call(
                    lambda i=image: self.docker.image.exists(i)):
                missing.append(f"{image} (service {name})")
        return missing

    # -- health -----------------------------------------------------------------------
    def health(self) -> dict[str, str]:
        """service -> running/healthy/starting/unhealthy/exited/missing."""
        states = {svc: "missing" for svc in SERVICES}
        for c in self.containers():
            if c.service in states:
                states[c.service] = c.health or c.state or "unknown"
        return states

    def wait_healthy(self, services: list[str] | None = None,
                     timeout: float | None = None) -> dict[str, str]:
        services = services or list(SERVICES)
        timeout = timeout or self.s.stack.health_timeout
        deadline = time.monotonic() + timeout
        last: dict[str, str] = {}
        while True:
            states = self.health()
            wanted = {svc: states[svc] for svc in services}
            if wanted != last:
                waiting = [f"{svc} {st}" for svc, st in wanted.items() if st != "healthy"]
                if waiting:
                    self.progress("waiting: " + ", ".join(waiting))
                last = wanted
            if all(st == "healthy" for st in wanted.values()):
                return wanted
            bad = [svc for svc, st in wanted.items() if st in ("exited", "dead", "missing")]
            if bad or time.monotonic() > deadline:
                reason = "stopped" if bad else f"not healthy after {timeout:g}s"
                culprit = bad[0] if bad else next(s for s, st in wanted.items() if st != "healthy")
                raise FlopsError(f"{culprit} {reason} ({wanted[culprit]}): see "
                                 f"'inv logs --service {culprit}'")
            time.sleep(0.25)

    # -- actions ----------------------------------------------------------------------
    def up(self, build: bool = False, services: list[str] | None = None,
           no_deps: bool = False) -> list[Outcome]:
        with_build = " --build" if build else ""
        which = " ".join(services or [])
        summary = self.compose_cmd("up", "-d", *(["--build"] if build else []),
                                   *(["--no-deps"] if no_deps else []), *(services or []))
        before = self.health()
        self._act(summary, lambda: self.docker.compose.up(
            services=services, detach=True, build=build, quiet=True, pull="missing" if not build
            else None, dependencies=not no_deps))
        if self.dry:
            return [ok(STACK, "up", f"would run: {summary}")]
        states = self.wait_healthy(services)
        started = [svc for svc in states if before.get(svc) != "healthy"]
        detail = f"{len(states)} services healthy{with_build}" + (f" ({which})" if which else "")
        return [(changed if started else ok)(STACK, "up", detail)]

    def config_hashes(self) -> dict[str, str]:
        """service -> the config hash compose would give its container now."""
        from python_on_whales.utils import run

        cmd = [*self.docker.client_config.docker_compose_cmd, "config", "--hash", "*"]
        out = _docker_call(lambda: run(cmd))
        return dict(line.split(None, 1) for line in out.splitlines() if " " in line)

    def restart(self, build: bool = False, recreate: tuple[str, ...] = ()) -> list[Outcome]:
        """Fresh processes for every service, all data kept; then wait until healthy.

        Services whose definition changed (by compose's config hash), or that are missing
        or stopped, go through ``up -d``; the others are restarted in place. Volumes are
        never touched.
        """
        current = {c.service: c for c in self.containers()}
        hashes = {} if build else self.config_hashes()
        stale = [svc for svc in SERVICES if build or svc in recreate or svc not in current
                 or not current[svc].running or current[svc].config_hash != hashes.get(svc)]
        kept = [svc for svc in SERVICES if svc not in stale]
        if stale:
            summary = self.compose_cmd("up", "-d", *(["--build"] if build else []))
            self._act(summary, lambda: self.docker.compose.up(
                detach=True, build=build, quiet=True, pull=None if build else "missing"))
        if kept:
            self._act(self.compose_cmd("restart", *kept),
                      lambda: self.docker.compose.restart(services=kept))
        if self.dry:
            return [ok(STACK, "reset", f"would recreate {len(stale)} and restart {len(kept)} "
                                       "services; data kept")]
        states = self.wait_healthy()
        return [changed(STACK, "reset", f"{len(kept)} services restarted, {len(stale)} "
                                        f"recreated; {len(states)} healthy; data kept")]

    def build(self, services: list[str] | None = None) -> None:
        self._act(self.compose_cmd("build", *(services or [])),
                  lambda: self.docker.compose.build(services=services, quiet=True))

    def down(self) -> list[Outcome]:
        running = [svc for svc, st in self.health().items() if st != "missing"]
        summary = self.compose_cmd("down")
        self._act(summary, lambda: self.docker.compose.down(quiet=True))
        if self.dry:
            return [ok(STACK, "down", f"would run: {summary} (volumes kept)")]
        if not running:
            return [ok(STACK, "down", "not running")]
        return [changed(STACK, "down", f"stopped {len(running)} services; all data kept")]

    def remove_volume(self, key: str) -> None:
        name = self.volume_name(key)
        if not _docker_call(lambda: self.docker.volume.exists(name)):
            return
        self._act(f"docker volume rm {name}", lambda: self.docker.volume.remove(name))

    def drop_registry(self) -> None:
        """Remove the registry container and its storage volume (``up`` brings both back)."""
        svc = "flops_image_registry"
        self._act(self.compose_cmd("rm", "--stop", "--force", svc),
                  lambda: self.docker.compose.rm(services=[svc], stop=True))
        self.remove_volume("registry_data")

    def clear_registry(self) -> list[Outcome]:
        """Empty registry storage and restart the registry (its blob cache is in memory)."""
        svc = "flops_image_registry"
        self.drop_registry()
        out = self.up(services=[svc], no_deps=True)
        if self.dry:
            return [ok(STACK, "clear-registry",
                       f"would remove volume {self.volume_name('registry_data')} and restart "
                       f"{svc}"), *out]
        self.verify_registry_empty()
        return [changed(STACK, "clear-registry",
                        "registry storage emptied and registry restarted; it answers")]

    def registry_url(self) -> str:
        host = _local_address(self.s.stack.bind_address)
        return f"http://{host}:{self.s.registry_port}"

    def registry_catalog(self) -> list[str]:
        with urllib.request.urlopen(self.registry_url() + "/v2/_catalog", timeout=10) as resp:
            return json.load(resp).get("repositories") or []

    def verify_registry_empty(self) -> None:
        repos = self.registry_catalog()
        if repos:
            raise FlopsError(f"registry still lists {len(repos)} repositories after clearing "
                             f"({repos[0]}, ...)")

    def mongo_client(self) -> Any:
        import pymongo

        host = _local_address(self.s.stack.bind_address)
        return pymongo.MongoClient(host, 10027, serverSelectionTimeoutMS=5000,
                                   connectTimeoutMS=5000, directConnection=True)

    def redb(self) -> list[Outcome]:
        """Empty the Mongo database ``flops``: through the manager API, else directly."""
        if self.dry:
            self.plan.append(f"DELETE {self.manager_url()}/api/flops/database/ "
                             "(else drop every collection of Mongo database 'flops')")
            return [ok(STACK, "redb", "would empty the FLOps database 'flops'")]
        how = self._redb_via_manager()
        if how is None:
            how = self._redb_direct()
        left = self._flops_collections()
        if left:
            raise FlopsError(f"FLOps database still has collections after reset: "
                             f"{', '.join(left[:3])}")
        return [changed(STACK, "redb", f"FLOps database 'flops' emptied ({how}); other "
                                       "databases untouched")]

    def manager_url(self) -> str:
        return f"http://{_local_address(self.s.stack.bind_address)}:5072"

    def _redb_via_manager(self) -> str | None:
        body = json.dumps({"customerID": "Admin"}).encode()
        req = urllib.request.Request(self.manager_url() + "/api/flops/database/", data=body,
                                     method="DELETE",
                                     headers={"Content-Type": "application/json"})
        self.progress("DELETE /api/flops/database/ on the FLOps manager")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                if resp.status == 200:
                    return "through the FLOps manager API"
        except urllib.error.HTTPError as exc:
            self.progress(f"manager answered {exc.code}: resetting the database directly")
        except (urllib.error.URLError, OSError) as exc:
            self.progress(f"manager does not answer ({exc}): resetting the database directly")
        return None

    def _redb_direct(self) -> str:
        from pymongo.errors import PyMongoError

        try:
            client = self.mongo_client()
            db = client[FLOPS_DB]
            for name in db.list_collection_names():
                db.drop_collection(name)
            client.close()
        except PyMongoError as exc:
            raise FlopsError(f"cannot reach the FLOps database on port 10027 ({exc}): start "
                             "it with 'inv up'; nothing was deleted") from None
        return "directly in Mongo"

    def _flops_collections(self) -> list[str]:
        from pymongo.errors import PyMongoError

        try:
            client = self.mongo_client()
            names = client[FLOPS_DB].list_collection_names()
            client.close()
            return names
        except PyMongoError as exc:
            raise FlopsError(f"cannot verify the FLOps database ({exc})") from None

    def doctor(self) -> list[Outcome]:
        """Read-only: every service running and healthy, the registry answering."""
        try:
            self.check_docker()
        except FlopsError as exc:
            return [failed(STACK, "docker", exc.message or "docker does not answer")]
        outcomes = []
        for row in self.status():
            svc = row["service"]
            if row["health"] == "healthy":
                outcomes.append(ok(STACK, svc, f"healthy; {', '.join(row['ports'])}"))
            else:
                outcomes.append(failed(STACK, svc, f"{row['state']} {row['health']}".strip()
                                       + "; fix: inv up"))
        try:
            repos = self.registry_catalog()
            outcomes.append(ok(STACK, "registry", f"answers at {self.registry_url()} "
                                                  f"({len(repos)} repositories)"))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            outcomes.append(failed(STACK, "registry", f"no answer at {self.registry_url()} "
                                                      f"({exc}); fix: inv up"))
        return outcomes

    def status(self) -> list[dict]:
        rows = []
        by_service = {c.service: c for c in self.containers()}
        for svc in SERVICES:
            c = by_service.get(svc)
            if c is None:
                rows.append({"service": svc, "state": "missing", "health": "", "ports": []})
                continue
            rows.append({
                "service": svc,
                "container": c.name,
                "state": c.state,
                "health": c.health,
                "ports": _port_ranges(set(c.published)),
                "addon_ref": c.addon_ref,
                "stand_in": c.stand_in,
            })
        return rows


def _bound_elsewhere(bind: str, port: int) -> str | None:
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


def _port_ranges(published: set[tuple[str, int]]) -> list[str]:
    """``{("0.0.0.0", 20), ("0.0.0.0", 21)}`` -> ``["0.0.0.0:20-21"]``."""
    out = []
    for ip in sorted({ip for ip, _ in published}):
        ports = sorted(p for i, p in published if i == ip)
        start = prev = ports[0]
        for port in [*ports[1:], None]:
            if port is not None and port == prev + 1:
                prev = port
                continue
            out.append(f"{ip}:{start}" + (f"-{prev}" if prev != start else ""))
            if port is not None:
                start = prev = port
    return out


def _local_address(bind: str) -> str:
    return "127.0.0.1" if bind in ("0.0.0.0", "::") else bind


def _last_line(exc: Exception) -> str:
    text = getattr(exc, "stderr", None) or str(exc)
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


def _docker_call(action: Callable[[], Any]) -> Any:
    """Run a python-on-whales call; a Docker error becomes one line."""
    from python_on_whales.exceptions import DockerException

    try:
        return action()
    except DockerException as exc:
        raise FlopsError(f"docker: {_last_line(exc)}") from None
