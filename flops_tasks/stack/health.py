"""Readiness of the stack: ``status`` rows and ``doctor``'s checks.

A running container is not a working service. Beyond each container's own health check,
``doctor`` makes every store do its job once: a query on the FLOps database, a login to the
MLflow backend store, a login to the FTP artifact store, the registry's catalog. The
manager's health check holds only when its API answers and it holds its MQTT connection;
when it does not, ``doctor`` says why, and names the broker when the broker is the cause.
"""

from __future__ import annotations

import ftplib
import ipaddress
import urllib.error
from collections.abc import Callable

from .. import env as envmod
from ..errors import FlopsError
from ..outcome import Outcome, failed, ok, warning
from . import flopsdb, preflight, registry
from .project import ContainerView, Project
from .services import ARTIFACT_STORE, BACKEND_STORE, EXPOSED, FTP_PORT, MANAGER, MQTT, REGISTRY

ADDON_REF_LABEL = "org.flops-tasks.addon-ref"
STAND_IN_LABEL = "org.flops-tasks.stand-in"
FTP_USER = "flops"  # the FTP user of the artifact store (upstream's artifact_store.py)


def port_ranges(published: set[tuple[str, int]]) -> list[str]:
    """``{("0.0.0.0", 20), ("0.0.0.0", 21)}`` -> ``["0.0.0.0:20-21"]`` (IPv6 in brackets)."""
    out = []
    for ip in sorted({ip for ip, _ in published}):
        ports = sorted(p for i, p in published if i == ip)
        host = f"[{ip}]" if ":" in ip else ip
        start = prev = ports[0]
        for port in [*ports[1:], None]:
            if port is not None and port == prev + 1:
                prev = port
                continue
            out.append(f"{host}:{start}" + (f"-{prev}" if prev != start else ""))
            if port is not None:
                start = prev = port
    return out


def status(project: Project) -> list[dict[str, object]]:
    """One row per service placed on this engine: host, container, state, health, ports,
    image, stand-in, addon ref."""
    rows: list[dict[str, object]] = []
    found = project.containers()
    for svc in project.services:
        c = found.get(svc)
        if c is None:
            rows.append(
                {
                    "service": svc,
                    "host": project.label,
                    "state": "missing",
                    "health": "",
                    "ports": [],
                }
            )
            continue
        row: dict[str, object] = {
            "service": svc,
            "host": project.label,
            "container": c.name,
            "state": c.state,
            "health": c.health,
            "ports": port_ranges(set(c.published)),
            "image": c.image,
        }
        if c.label(STAND_IN_LABEL):
            row["stand_in"] = c.label(STAND_IN_LABEL)
        if c.label(ADDON_REF_LABEL):
            row["addon_ref"] = c.label(ADDON_REF_LABEL)
        rows.append(row)
    return rows


def unreachable_rows(project: Project, why: str) -> list[dict[str, object]]:
    """``status`` rows of the services on an engine that cannot be reached: ``why`` each."""
    return [
        {
            "service": svc,
            "host": project.label,
            "state": "unreachable",
            "health": "",
            "ports": [],
            "error": why,
        }
        for svc in project.services
    ]


def _why_unhealthy(
    c: ContainerView | None, found: dict[str, ContainerView], placed: tuple[str, ...]
) -> str:
    if c is None:
        return "missing"
    why = f"{c.state} {c.health}".strip()
    if c.health_log:
        why += f" ({c.health_log.splitlines()[-1][:200]})"
    if c.service == MANAGER and MQTT in placed:  # a broker elsewhere is checked there
        broker = found.get(MQTT)
        if broker is None or broker.condition != "healthy":
            state = "missing" if broker is None else f"{broker.state} {broker.health}".strip()
            why += f"; its MQTT broker {MQTT} is {state}"
    return why


class _Refused(FlopsError):
    """A store answers but refuses, and ``fix`` is not the usual one."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


def _check(where: str, name: str, probe: Callable[[], str], fix: str) -> Outcome:
    try:
        return ok(where, name, probe())
    except _Refused as exc:
        return failed(where, name, exc.message or "", fix=exc.fix)
    except FlopsError as exc:
        return failed(where, name, exc.message or "", fix=fix)
    except (OSError, EOFError, ValueError, ftplib.Error) as exc:
        return failed(where, name, f"{type(exc).__name__}: {exc}", fix=fix)


def doctor(project: Project) -> list[Outcome]:
    """Read-only: every service placed here healthy, and every store here doing its job once.

    An engine that does not answer fails its own services, one row each with the reason
    (with everything on the local engine: one ``docker`` row, as before placement)."""
    where = project.where
    try:
        project.check_docker()
    except FlopsError as exc:
        why = exc.message or "docker does not answer"
        if not project.partial and not project.remote:
            return [failed(where, "docker", why)]
        return [failed(where, svc, f"not checked: {why}") for svc in project.services]
    found = project.containers()
    outcomes = []
    for svc in project.services:
        c = found.get(svc)
        if c is not None and c.condition == "healthy":
            extra = f"; stand-in: {c.label(STAND_IN_LABEL)}" if c.label(STAND_IN_LABEL) else ""
            outcomes.append(
                ok(where, svc, f"healthy; {', '.join(port_ranges(set(c.published)))}" + extra)
            )
        else:
            why = _why_unhealthy(c, found, project.services)
            outcomes.append(failed(where, svc, why, fix="inv up"))
    exposed = exposure(project, found)
    if exposed is not None:
        outcomes.append(exposed)
    running = {svc for svc, c in found.items() if c.running}
    if not set(project.services) <= running:  # what holds the names or ports of those not up
        outcomes += [
            failed(where, "conflict", line) for line in preflight.conflicts(project, running).lines
        ]
    secrets = envmod.read_env_file(project.env_file)
    if REGISTRY in project.services:
        outcomes.append(_check(where, "registry", lambda: _registry(project), "inv up"))
    if flopsdb.holds(project):
        outcomes.append(_check(where, "flops-db", lambda: _flops_db(project), "inv up"))
    if (
        BACKEND_STORE in project.services
        and BACKEND_STORE in found
        and found[BACKEND_STORE].running
    ):
        outcomes.append(
            _check(
                where,
                "backend-store",
                lambda: _mysql_login(
                    project, found[BACKEND_STORE], secrets.get("MYSQL_ROOT_PASSWORD", "")
                ),
                "inv up",
            )
        )
    if (
        ARTIFACT_STORE in project.services
        and ARTIFACT_STORE in found
        and found[ARTIFACT_STORE].running
    ):
        outcomes.append(
            _check(
                where,
                "artifact-store",
                lambda: _ftp_login(project, secrets.get("FTP_PASSWORD", "")),
                "inv up",
            )
        )
    return outcomes


def _beyond_this_host(ip: str) -> bool:
    try:
        return not ipaddress.ip_address(ip).is_loopback
    except ValueError:  # not an address docker would print: count it as reachable
        return True


def exposure(project: Project, found: dict[str, ContainerView]) -> Outcome | None:
    """A ``warning`` naming every service of this engine that is published on an address
    other hosts can reach (the real bindings of the running containers, not the config),
    with what anyone there gets (``EXPOSED``: upstream's fixed credentials, or none)."""
    shown, everywhere = [], False
    for svc in project.services:
        c = found.get(svc)
        if c is None or not c.running:
            continue
        wide = {(ip, port) for ip, port in c.published if _beyond_this_host(ip)}
        if wide:
            everywhere |= any(ip in ("0.0.0.0", "::") for ip, _ in wide)
            shown.append(f"{svc} on {', '.join(port_ranges(wide))} ({EXPOSED[svc]})")
    if not shown:
        return None
    fix = "let only the workers reach these ports (host firewall; see SECURITY.md)"
    if everywhere:
        fix = f"set flops.stack.bind_address to the control-plane address, and {fix}"
    return warning(
        project.where,
        "exposure",
        "published beyond this host with upstream's fixed credentials or none: "
        f"{'; '.join(shown)}; {fix}",
    )


def _registry(project: Project) -> str:
    try:
        repos = registry.catalog(project)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise FlopsError(f"no catalog at {registry.url(project)} ({exc})") from None
    return f"catalog answers at {registry.url(project)} ({len(repos)} repositories)"


def _flops_db(project: Project) -> str:
    names = flopsdb.collections(project)
    return f"query answers: database 'flops' has {len(names)} collections"


def _mysql_login(project: Project, c: ContainerView, password: str) -> str:
    """Log in as the manager's MLflow tracking server does (root over TCP), run one query."""
    out = project.call(
        lambda: project.docker.execute(
            c.id,
            ["mysql", "-h", "127.0.0.1", "-u", "root", "-N", "-e", "SELECT 1"],
            envs={"MYSQL_PWD": password},
        )
    )
    answer = str(out).strip()
    if "Access denied" in answer:  # MySQL keeps the root password its volume was made with
        raise _Refused(
            f"{BACKEND_STORE} refuses root's password (FLOps' manager logs in with "
            "upstream's fixed one): its data volume was made with another; the fix "
            "empties every store but the registry, MLflow's backend store among them",
            "inv reset --clean",
        )
    if answer != "1":
        raise FlopsError(f"login as root to {BACKEND_STORE} gave {answer[:80]!r}")
    return "login as root over TCP and a query succeed"


def _ftp_login(project: Project, password: str) -> str:
    with ftplib.FTP() as ftp:
        ftp.connect(project.address(), FTP_PORT, timeout=10)
        ftp.login(FTP_USER, password)
        ftp.pwd()
    return f"login as {FTP_USER} succeeds"
