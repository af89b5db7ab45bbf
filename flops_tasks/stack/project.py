"""The bottom layer of the stack: what every job shares.

The Docker handle of one compose project (its services, ports and volumes come from
``services``) with the compose files, env file and project name pinned (so every compose
call sees the same values), container snapshots, images, and ``start``: bring services up
and wait until they are healthy. Every job module above uses this and nothing else of the stack.
"""

from __future__ import annotations

import getpass
import json
import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ..changes import Change, ChangeLog
from ..config import Settings
from ..errors import FlopsError, UsageError
from ..hosts import Target
from ..outcome import Outcome, changed, ok
from .services import (  # the suite's identity, shared by every job of the stack
    OUR_LABEL,
    SERVICES,
    STACK,
)

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def unknown_service(service: str | None) -> None:
    """Refuse a service name that is not part of the stack, in one line."""
    if service is not None and service not in SERVICES:
        raise UsageError(f"unknown service {service!r}: choose one of {', '.join(SERVICES)}")


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
    image: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    health_log: str = ""

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def condition(self) -> str:
        """Health while running; else the state (a stopped container keeps its last health)."""
        return (self.health or self.state) if self.running else (self.state or "unknown")

    def label(self, key: str) -> str:
        return dict(self.labels).get(key, "")

    def publishes(self, port: int, address: str) -> bool:
        """True when host ``port`` is published on ``address`` (or on every address)."""
        return any(p == port and ip in (address, "0.0.0.0", "::") for ip, p in self.published)

    @classmethod
    def from_inspect(cls, data: dict[str, Any]) -> ContainerView:
        config = data.get("Config") or {}
        labels = config.get("Labels") or {}
        state = data.get("State") or {}
        health = state.get("Health") or {}
        log = health.get("Log") or []
        ports = (data.get("NetworkSettings") or {}).get("Ports") or {}
        published = tuple(
            sorted(
                {
                    (b.get("HostIp") or "0.0.0.0", int(b["HostPort"]))
                    for binds in ports.values()
                    for b in (binds or [])
                    if b.get("HostPort")
                }
            )
        )
        return cls(
            id=data.get("Id", ""),
            name=(data.get("Name") or "").lstrip("/"),
            project=labels.get("com.docker.compose.project", ""),
            service=labels.get("com.docker.compose.service", ""),
            state=state.get("Status", ""),
            health=health.get("Status") or "",
            published=published,
            config_hash=labels.get("com.docker.compose.config-hash", ""),
            image=config.get("Image", ""),
            labels=tuple(sorted(labels.items())),
            health_log=(log[-1].get("Output") or "").strip() if log else "",
        )


def last_line(exc: BaseException) -> str:
    text = getattr(exc, "stderr", None) or str(exc)
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


NO_DOCKER = (
    "the docker CLI is not installed here (no 'docker' on PATH): install Docker "
    "(Debian: apt-get install docker.io docker-compose, or run .ci/setup), or add its "
    "folder to PATH"
)
# compose's inline configs (compose/flops.compose.yml, ``configs: ... content:``) came with
# docker compose 2.23.1 (docker/compose#11187, compose-go 1.20.1); older ones refuse the file
COMPOSE_MIN = (2, 23, 1)


def docker_call(action: Callable[[], Any]) -> Any:
    """Run a python-on-whales call; a Docker error (or no docker CLI) becomes one line."""
    from python_on_whales import ClientNotFoundError
    from python_on_whales.exceptions import DockerException

    try:
        return action()
    except DockerException as exc:
        raise FlopsError(f"docker: {last_line(exc)}") from None
    except ClientNotFoundError:
        raise FlopsError(NO_DOCKER) from None


def compose_version_of(text: str) -> tuple[int, ...] | None:
    """``(2, 26, 1)`` from what ``docker compose version`` prints (None: not a version)."""
    match = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(part) for part in match.groups()) if match else None


def check_compose_version(text: str) -> str:
    """The compose version (``2.26.1``) when it can run the suite's compose file, else one
    line naming the fix: compose v1, missing or older than ``COMPOSE_MIN``."""
    found = compose_version_of(text)
    need = ".".join(map(str, COMPOSE_MIN))
    if found is None or found < COMPOSE_MIN:
        what = f"found {text.strip()!r}" if text.strip() else "none found"
        raise UsageError(
            f"docker compose v2 is required, {need} or later ({what}): install or upgrade the "
            "compose plugin (Debian trixie: docker-compose; Docker's packages: "
            f"docker-compose-plugin); older ones cannot read the suite's inline configs"
        )
    return ".".join(map(str, found))


def local_address(bind: str) -> str:
    """Where this host reaches a port published on ``bind``."""
    return "127.0.0.1" if bind in ("0.0.0.0", "::") else bind


LOCAL_LABEL = "local"  # how reports name the Docker engine inv talks to by default
HEARTBEAT = 5.0  # seconds between progress lines while waiting
_SLUG = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class Project:
    """The compose project of the FLOps management suite on one Docker engine.

    ``target`` None is the engine ``docker`` reaches by default (the local one); otherwise
    the engine on that host, through Docker's own SSH transport (``docker_ssh``).
    ``services`` are the services placed on this engine: every job acts on these only.
    """

    s: Settings
    dry: bool = False
    progress: Progress = _quiet
    # the run's change log: every change of this project is recorded there (``act``)
    changes: ChangeLog = field(default_factory=ChangeLog)
    target: Target | None = None
    services: tuple[str, ...] = SERVICES
    _docker: Any = None
    _config: dict[str, Any] | None = None
    _answered: bool = False
    _endpoint: str | None = None
    compose_version: str = ""  # found by check_docker

    # -- identity ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.s.stack.project

    @property
    def remote(self) -> bool:
        return self.target is not None

    @property
    def partial(self) -> bool:
        """True when some services of the stack run on another host."""
        return set(self.services) != set(SERVICES)

    @property
    def label(self) -> str:
        """The host as reports name it: ``local``, an inventory name, or its host string."""
        return self.target.label if self.target is not None else LOCAL_LABEL

    @property
    def where(self) -> str:
        """The host column of this project's outcomes (``stack`` on the local engine)."""
        return f"{STACK}@{self.label}" if self.target is not None else STACK

    @property
    def user(self) -> str:
        assert self.target is not None
        return self.target.user or self.s.ssh.user or getpass.getuser()

    @property
    def engine_url(self) -> str | None:
        """``ssh://user@host:port`` of a remote engine; None for the local one."""
        if self.target is None:
            return None
        from ..docker_ssh import engine_url

        return engine_url(self.target, self.user)

    @property
    def env_file(self) -> str:
        """The env file compose reads for this engine (on this machine, never sent anywhere):
        the configured one for the local engine, one beside it per remote host."""
        main = Path(self.s.stack.env_file)
        if self.target is None:
            return str(main)
        slug = _SLUG.sub("_", self.target.label)
        return str(main.with_name(f"{main.stem}.{slug}{main.suffix}"))

    @property
    def docker(self) -> Any:
        if self._docker is None:
            from python_on_whales import DockerClient

            extra: dict[str, Any] = {}
            if self.target is not None:
                from ..docker_ssh import client_call

                extra = {"host": self.engine_url, "client_call": client_call(self.s.ssh)}
            self._docker = DockerClient(
                compose_files=list(self.s.stack.compose_files),
                compose_env_files=[self.env_file],
                compose_project_name=self.name,
                **extra,
            )
        return self._docker

    def volume_name(self, key: str) -> str:
        return f"{self.name}_{key}"

    @property
    def endpoint(self) -> str:
        """The engine this project's docker calls really reach: for a remote host its
        ``ssh://`` URL; for the local project what the docker CLI resolves (``DOCKER_HOST``,
        ``DOCKER_CONTEXT``, or the context ``docker context use`` chose), read once."""
        if self.target is not None:
            return self.engine_url or ""
        if self._endpoint is None:
            try:
                raw = self.cli("context", "inspect", "--format", "{{json .Endpoints.docker.Host}}")
            except FileNotFoundError:  # no docker CLI: no engine is reached at all
                raw = ""
            try:
                found = json.loads(raw.strip() or '""')
            except ValueError:
                found = ""
            self._endpoint = found if isinstance(found, str) else ""
        return self._endpoint

    def engine_host(self) -> str | None:
        """The host of the engine when it is another machine (a tcp:// or ssh:// endpoint);
        None for a local socket (unix://, npipe://, fd://): the ports are published here."""
        from urllib.parse import urlsplit

        if self.target is not None:
            return self.target.host
        parts = urlsplit(self.endpoint)
        if parts.scheme in ("", "unix", "npipe", "fd"):
            return None
        return parts.hostname or None

    def address(self) -> str:
        """Where this machine reaches the ports the stack publishes on this engine: proofs
        (``owner``) and actions (redb, the FLOps DB, the registry) must meet the same machine,
        so a local project whose docker CLI talks to another engine is treated as remote."""
        bind = self.s.stack.bind_address
        host = self.engine_host()
        if host is None:
            return local_address(bind)
        if bind in ("0.0.0.0", "::"):
            return host
        if self.target is None and local_address(bind).startswith(("127.", "::1")):
            raise FlopsError(
                f"the docker CLI talks to the engine at {self.endpoint} (DOCKER_HOST, "
                "DOCKER_CONTEXT or 'docker context use'), which publishes the stack's ports on "
                f"its own loopback {bind}: this machine cannot reach them; point the docker "
                "CLI at this host's engine, or place the stack there with "
                "flops.stack.placement; nothing was changed"
            )
        return bind

    def url(self, port: int) -> str:
        address = self.address()
        host = f"[{address}]" if ":" in address else address
        return f"http://{host}:{port}"

    # -- running compose and docker -----------------------------------------------------
    def compose_cmd(self, *args: str) -> str:
        """The equivalent ``docker compose`` command line, for dry-run plans."""
        parts = [
            "docker",
            *(["--host", self.engine_url] if self.engine_url else []),
            "compose",
            "-p",
            self.name,
            "--env-file",
            self.env_file,
        ]
        for f in self.s.stack.compose_files:
            parts += ["-f", f]
        return shlex.join([*parts, *args])

    def call(self, action: Callable[[], Any]) -> Any:
        """``docker_call`` for this engine: a failed SSH connection to a remote engine is
        explained in one line (host key, authentication, no Docker there ...)."""
        from python_on_whales import ClientNotFoundError
        from python_on_whales.exceptions import DockerException

        try:
            return action()
        except DockerException as exc:
            raise FlopsError(self._explain(exc) or f"docker: {last_line(exc)}") from None
        except ClientNotFoundError:
            raise FlopsError(NO_DOCKER) from None

    def _explain(self, exc: BaseException) -> str | None:
        if self.target is None:
            return None
        from ..docker_ssh import explain

        text = f"{getattr(exc, 'stderr', '') or ''}\n{exc}"
        return explain(text, self.target, f"host {self.label}", self.s.ssh, "start dockerd there")

    def act(
        self,
        summary: str,
        action: Callable[[], Any],
        step: str,
        file: tuple[str, str | None, str | None] | None = None,
    ) -> Any:
        """A change of this project's ``step``, recorded in the run's change log: under
        ``--dry`` recorded only, else announced, run, then recorded. ``file``: (path,
        before, after) of a file it writes, for ``--diff``."""
        path, before, after = file if file is not None else ("", None, None)
        record = Change(self.where, step, summary, not self.dry, path, before, after)
        if self.dry:
            self.changes.record(record)
            return None
        self.progress(summary)
        self.changes.start(record)
        result = self.call(action)
        self.changes.record(record)
        return result

    def check_docker(self) -> None:
        """The docker CLI is here, the engine answers, and compose can run the suite's
        compose file (checked once per run)."""
        from python_on_whales import ClientNotFoundError
        from python_on_whales.exceptions import DockerException

        if self._answered:
            return
        try:
            self.docker.version()  # client and server; cheaper than a full docker info
        except ClientNotFoundError:
            raise FlopsError(NO_DOCKER) from None
        except DockerException as exc:
            explained = self._explain(exc)
            if explained:
                raise FlopsError(explained) from None
            where = f" on host {self.label}" if self.target is not None else ""
            raise FlopsError(
                f"the Docker engine{where} does not answer (docker version "
                f"failed): start dockerd or check DOCKER_HOST ({last_line(exc)})"
            ) from None
        except FileNotFoundError:
            raise FlopsError(NO_DOCKER) from None
        self.compose_version = self.check_compose()
        self._answered = True

    def check_compose(self) -> str:
        """``docker compose version``, refused when compose is missing or too old."""
        from python_on_whales.exceptions import DockerException

        try:
            text = str(self.docker.compose.version())
        except DockerException as exc:
            text = ""
            if "compose" not in f"{getattr(exc, 'stderr', '') or ''}{exc}":
                raise FlopsError(f"docker compose version failed: {last_line(exc)}") from None
        return check_compose_version(text)

    def cli(self, *args: str) -> str:
        """Run the docker CLI against this project's engine; an error becomes one line."""
        from python_on_whales.utils import run

        return str(self.call(lambda: run([*self.docker.client_config.docker_cmd, *args])))

    def compose_cli(self, *args: str) -> str:
        """Run ``docker compose`` with this project's files, env file and name."""
        from python_on_whales.utils import run

        return str(self.call(lambda: run([*self.docker.client_config.docker_compose_cmd, *args])))

    def compose_config(self) -> dict[str, Any]:
        """The resolved compose model (read once per run)."""
        if self._config is None:
            self._config = self.call(lambda: self.docker.compose.config(return_json=True))
        return self._config

    # -- containers -------------------------------------------------------------------
    def snapshot(self, all_: bool = True, project_only: bool = True) -> list[ContainerView]:
        """One consistent look at containers: one ``ps`` and one ``inspect`` call.

        (python-on-whales objects re-inspect on nearly every attribute access.)
        """
        ps = ["container", "ls", "-q", "--no-trunc"]
        if all_:
            ps.append("-a")
        if project_only:  # labels, not compose: works before the env file exists
            ps += [
                "--filter",
                f"label=com.docker.compose.project={self.name}",
                "--filter",
                f"label={OUR_LABEL}=1",
            ]
        ids = self.cli(*ps).split()
        if not ids:
            return []
        raw = self.cli("container", "inspect", *ids)
        return [ContainerView.from_inspect(item) for item in json.loads(raw)]

    def containers(self) -> dict[str, ContainerView]:
        """service -> this project's container."""
        return {c.service: c for c in self.snapshot() if c.service}

    def states(self) -> dict[str, str]:
        """service -> healthy/starting/unhealthy/running/exited/missing."""
        found = self.containers()
        return {svc: found[svc].condition if svc in found else "missing" for svc in self.services}

    def moved_away(self) -> list[ContainerView]:
        """This project's containers here of services placed on another host (those left
        out on purpose, ``flops.stack.omit``, are left alone)."""
        return [
            c
            for svc, c in self.containers().items()
            if svc not in self.services and svc not in self.s.stack.omit
        ]

    def owner(self, service: str, port: int) -> ContainerView:
        """This project's running ``service`` container, proven to publish ``port`` here.

        Destructive calls go to published ports; this makes sure the port is ours and not a
        process or another compose project that happens to answer there.
        """
        address = self.address()
        mine = self.containers().get(service)
        if mine is not None and mine.running and mine.publishes(port, address):
            return mine
        other = self.foreign_holder(port)
        holder = (
            f"container {other.name} (project {other.project or 'none'})"
            if other
            else "no container of this stack"
        )
        raise FlopsError(
            f"port {port} on {address} is held by {holder}, not by {service} of "
            f"the stack {self.name}: refusing to touch it; nothing was deleted "
            "(start the stack with 'inv up' or check flops.stack.project)"
        )

    def foreign_holder(self, port: int) -> ContainerView | None:
        """A running container outside this stack that publishes ``port`` here, if any."""
        address = self.address()
        mine = {c.id for c in self.containers().values()}
        return next(
            (
                c
                for c in self.snapshot(all_=False, project_only=False)
                if c.publishes(port, address) and c.id not in mine
            ),
            None,
        )

    # -- images -----------------------------------------------------------------------
    def missing_images(self) -> list[str]:
        """Images of services with a build section that are not on this engine."""
        missing = []
        for name, svc in (self.compose_config().get("services") or {}).items():
            image = svc.get("image")
            if (
                name in self.services
                and image
                and svc.get("build")
                and not self.call(partial(self.docker.image.exists, image))
            ):
                missing.append(f"{image} (service {name})")
        return missing

    def build(self, services: list[str] | None = None) -> None:
        if services is None and self.partial:
            services = list(self.services)
        self.act(
            self.compose_cmd("build", *(services or [])),
            lambda: self.docker.compose.build(services=services, quiet=True),
            step="build",
        )

    def remove_volume(self, key: str, step: str) -> None:
        name = self.volume_name(key)
        if not self.call(lambda: self.docker.volume.exists(name)):
            return
        self.act(f"docker volume rm {name}", lambda: self.docker.volume.remove(name), step=step)

    # -- starting ---------------------------------------------------------------------
    def wait_healthy(
        self, services: list[str] | None = None, timeout: float | None = None
    ) -> dict[str, str]:
        """Poll until every one of ``services`` is healthy; fail at once when one stopped."""
        services = services or list(self.services)
        timeout = timeout or self.s.stack.health_timeout
        deadline = time.monotonic() + timeout
        last: dict[str, str] = {}
        said = 0.0
        while True:
            states = self.states()
            wanted = {svc: states[svc] for svc in services}
            now = time.monotonic()
            if wanted != last or now - said >= HEARTBEAT:  # a line at least every 5 s
                waiting = [f"{svc} {st}" for svc, st in wanted.items() if st != "healthy"]
                if waiting:
                    left = deadline - now
                    self.progress(f"waiting: {', '.join(waiting)} ({left:.0f} s left)")
                    said = now
                last = wanted
            if all(st == "healthy" for st in wanted.values()):
                return wanted
            bad = [svc for svc, st in wanted.items() if st in ("exited", "dead", "missing")]
            if bad or time.monotonic() > deadline:
                reason = "stopped" if bad else f"not healthy after {timeout:g}s"
                culprit = bad[0] if bad else next(s for s, st in wanted.items() if st != "healthy")
                raise FlopsError(
                    f"{culprit} {reason} ({wanted[culprit]}): see 'inv logs --service {culprit}'"
                )
            time.sleep(0.25)

    def config_hashes(self) -> dict[str, str]:
        """service -> the config hash compose would give its container now."""
        out = self.compose_cli("config", "--hash", "*")
        return dict(line.split(None, 1) for line in out.splitlines() if " " in line)

    def stale(
        self, services: list[str] | None = None, build: bool = False, recreate: tuple[str, ...] = ()
    ) -> list[str]:
        """Of ``services`` (default: those placed here), the ones ``compose up -d`` would
        create or recreate: missing, stopped, or defined differently than their container
        (compose's config hash); every one with ``build``; and those named in ``recreate``."""
        wanted = services or list(self.services)
        current = self.containers()
        hashes = {} if build else self.config_hashes()
        return [
            svc
            for svc in wanted
            if build
            or svc in recreate
            or svc not in current
            or not current[svc].running
            or current[svc].config_hash != hashes.get(svc)
        ]

    def start(
        self,
        services: list[str] | None = None,
        build: bool = False,
        no_deps: bool = False,
        recreate: tuple[str, ...] = (),
    ) -> list[Outcome]:
        """``compose up -d`` (the services placed here, or some) when any of them is missing,
        stopped or defined differently, then wait until they are healthy. Starting everything
        placed here also removes this project's containers of services placed on another host
        (their volumes stay). ``recreate``: services an earlier step of the run removes
        (so a dry run, where they are still there, plans their start too)."""
        outcomes = []
        if services is None and self.partial:
            services, no_deps = list(self.services), True  # their dependencies run elsewhere
            outcomes = self.remove_moved_away()
        stale = self.stale(services, build=build, recreate=recreate)
        summary = self.compose_cmd(
            "up",
            "-d",
            *(["--build"] if build else []),
            *(["--no-deps"] if no_deps else []),
            *(services or []),
        )
        if stale:
            self.act(
                summary,
                lambda: self.docker.compose.up(
                    services=services,
                    detach=True,
                    build=build,
                    quiet=True,
                    pull=None if build else "missing",
                    dependencies=not no_deps,
                ),
                step="up",
            )
        which = f" ({' '.join(services)})" if services else ""
        if self.dry:
            what = f"would start {', '.join(stale)}" if stale else "nothing to start"
            return [*outcomes, (changed if stale else ok)(self.where, "up", f"{what}{which}")]
        states = self.wait_healthy(services)
        started = f"; started {', '.join(stale)}" if stale else ""
        detail = f"{len(states)} services healthy{' --build' if build else ''}{which}{started}"
        return [*outcomes, (changed if stale else ok)(self.where, "up", detail)]

    def remove_moved_away(self) -> list[Outcome]:
        """Remove this project's containers of services now placed on another host: they
        would hold the service's ports and name here. Their volumes (data) stay."""
        moved = self.moved_away()
        if not moved:
            return []
        names = sorted(c.service for c in moved)
        self.act(
            self.compose_cmd("rm", "--stop", "--force", *names),
            lambda: self.docker.compose.rm(services=names, stop=True),
            step="moved",
        )
        verb = "would remove" if self.dry else "removed"
        return [
            changed(
                self.where,
                "moved",
                f"{verb} {', '.join(names)} here (placed on "
                f"another host now); their volumes stay here",
            )
        ]
