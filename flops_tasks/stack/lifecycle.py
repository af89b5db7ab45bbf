"""The stack's lifecycle: up, down, restart, and the reset scopes, composed from the jobs.

Data lives in named volumes; only the scopes that say so delete any of it. Each function
acts on one engine's project and on the services placed there (a scope about a service
placed elsewhere does nothing here); ``placement`` runs them on every host.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FlopsError
from ..outcome import Outcome, changed, ok
from . import flopsdb, registry
from .preflight import preflight
from .project import Project
from .services import VOLUME_OWNERS, VOLUMES


def up(project: Project, build: bool = False) -> list[Outcome]:
    """Preflight (changes nothing when it fails), start everything, wait until healthy."""
    _, outcomes = preflight(project, build=build)
    return [*outcomes, *project.start(build=build)]


def down(project: Project) -> list[Outcome]:
    """Stop and remove the containers; every volume is kept."""
    present = [svc for svc, st in project.states().items() if st != "missing"]
    if not present:
        return [ok(project.where, "down", "not running")]
    summary = project.compose_cmd("down")
    project.act(summary, lambda: project.docker.compose.down(quiet=True), step="down")
    verb = "would stop" if project.dry else "stopped"
    return [changed(project.where, "down", f"{verb} {len(present)} services; all data kept")]


def restart(project: Project, build: bool = False, recreate: tuple[str, ...] = ()) -> list[Outcome]:
    """Fresh processes for every service, all data kept; then wait until healthy.

    Services whose definition changed (by compose's config hash), or that are missing
    or stopped, go through ``up -d``; the others are restarted in place. Volumes are
    never touched.
    """
    outcomes = project.remove_moved_away() if project.partial else []
    placed = project.services
    stale = project.stale(build=build, recreate=recreate)
    kept = [svc for svc in placed if svc not in stale]
    if stale:
        # all services (compose recreates only what changed); with some placed elsewhere,
        # the ones placed here, without their dependencies
        only = list(placed) if project.partial else []
        summary = project.compose_cmd(
            "up", "-d", *(["--build"] if build else []), *(["--no-deps", *only] if only else [])
        )
        project.act(
            summary,
            lambda: project.docker.compose.up(
                services=only or None,
                detach=True,
                build=build,
                quiet=True,
                pull=None if build else "missing",
                dependencies=not only,
            ),
            step="reset",
        )
    if kept:
        project.act(
            project.compose_cmd("restart", *kept),
            lambda: project.docker.compose.restart(services=kept),
            step="reset",
        )
    if project.dry:
        return [
            *outcomes,
            changed(
                project.where,
                "reset",
                f"would recreate {len(stale)} and restart {len(kept)} services; data kept",
            ),
        ]
    states = project.wait_healthy()
    return [
        *outcomes,
        changed(
            project.where,
            "reset",
            f"{len(kept)} services restarted, "
            f"{len(stale)} recreated; {len(states)} "
            "healthy; data kept",
        ),
    ]


def rebuild_service(project: Project, service: str) -> list[Outcome]:
    """The inner loop: rebuild and restart one service, keeping all data."""
    _, outcomes = preflight(project, build=True)
    return [*outcomes, *project.start(build=True, services=[service], no_deps=True)]


# What ``reset --clean`` empties: everything but the registry (the FLOps docs' "clean,
# unpopulated management suite"); ``--all`` empties the registry too.
CLEAN_VOLUMES = tuple(key for key in VOLUMES if key != registry.VOLUME)


@dataclass(frozen=True)
class Scope:
    """What a reset empties; everything else survives it."""

    registry: bool = False  # every image in the FLOps registry
    db: bool = False  # the FLOps manager database only
    clean: bool = False  # every store but the registry

    @property
    def empties_flops_db(self) -> bool:
        return self.db or self.clean

    @property
    def volumes(self) -> tuple[str, ...]:
        """Volumes removed and created anew (the FLOps DB alone is emptied in place)."""
        return (
            *(CLEAN_VOLUMES if self.clean else ()),
            *((registry.VOLUME,) if self.registry else ()),
        )


def placed_volumes(project: Project, scope: Scope) -> tuple[str, ...]:
    """The volumes of ``scope`` whose services are placed on this project's engine."""
    return tuple(key for key in scope.volumes if VOLUME_OWNERS[key] in project.services)


def what_reset_deletes(project: Project, scope: Scope) -> list[str]:
    where = f" on {project.label}" if project.remote else ""
    what = [
        f"{VOLUMES[key]} (volume {project.volume_name(key)}{where})"
        for key in placed_volumes(project, scope)
    ]
    if scope.db and not scope.clean and flopsdb.holds(project):
        what.append(flopsdb.WHAT)
    return what


def empty_volumes(project: Project, keys: tuple[str, ...]) -> list[Outcome]:
    """Remove the services that mount ``keys`` and the volumes; a start makes them anew."""
    if not keys:
        return []
    owners = sorted({VOLUME_OWNERS[key] for key in keys})
    project.act(
        project.compose_cmd("rm", "--stop", "--force", *owners),
        lambda: project.docker.compose.rm(services=owners, stop=True),
        step="empty",
    )
    for key in keys:
        project.remove_volume(key, step="empty")
    verb = "would empty" if project.dry else "emptied"
    return [changed(project.where, "empty", f"{verb}: " + ", ".join(VOLUMES[key] for key in keys))]


def reset(
    project: Project, scope: Scope = Scope(), build: bool = False, recreate: bool = False
) -> list[Outcome]:
    """Fresh processes; only what ``scope`` names is emptied (of the stores placed on this
    project's engine), and that is verified."""
    _, outcomes = preflight(project, build=build)
    volumes = placed_volumes(project, scope)
    if recreate:
        outcomes += down(project)
    outcomes += empty_volumes(project, volumes)
    emptied = tuple(VOLUME_OWNERS[key] for key in volumes)
    outcomes += (
        project.start(build=build, recreate=project.services)
        if recreate
        else restart(project, build=build, recreate=emptied)
    )
    holds_db = flopsdb.holds(project)
    if project.dry:
        if scope.db and not scope.clean and holds_db:
            outcomes += flopsdb.redb(project)
        return outcomes
    if scope.registry and registry.holds(project):
        registry.verify_empty(project)  # the change itself is the "empty" row's
        outcomes.append(ok(project.where, "registry", "verified: it answers, empty"))
    if scope.clean and holds_db:
        left = flopsdb.collections(project)
        if left:
            raise FlopsError(
                f"the FLOps database still has collections after reset --clean: "
                f"{', '.join(left[:3])}"
            )
    elif scope.db and holds_db:
        outcomes += flopsdb.redb(project)
    return outcomes
