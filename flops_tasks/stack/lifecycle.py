"""The stack's lifecycle: up, down, restart, and the reset scopes, composed from the jobs.

Data lives in named volumes; only the scopes that say so delete any of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import FlopsError
from ..outcome import Outcome, changed, ok
from . import flopsdb, registry
from .preflight import preflight
from .project import SERVICES, STACK, VOLUME_OWNERS, VOLUMES, Project


def up(project: Project, build: bool = False) -> list[Outcome]:
    """Preflight (changes nothing when it fails), start everything, wait until healthy."""
    _, outcomes = preflight(project, build=build)
    return [*outcomes, *project.start(build=build)]


def down(project: Project) -> list[Outcome]:
    """Stop and remove the containers; every volume is kept."""
    running = [svc for svc, st in project.states().items() if st != "missing"]
    summary = project.compose_cmd("down")
    project.act(summary, lambda: project.docker.compose.down(quiet=True))
    if project.dry:
        return [ok(STACK, "down", f"would run: {summary} (volumes kept)")]
    if not running:
        return [ok(STACK, "down", "not running")]
    return [changed(STACK, "down", f"stopped {len(running)} services; all data kept")]


def config_hashes(project: Project) -> dict[str, str]:
    """service -> the config hash compose would give its container now."""
    out = project.compose_cli("config", "--hash", "*")
    return dict(line.split(None, 1) for line in out.splitlines() if " " in line)


def restart(project: Project, build: bool = False,
            recreate: tuple[str, ...] = ()) -> list[Outcome]:
    """Fresh processes for every service, all data kept; then wait until healthy.

    Services whose definition changed (by compose's config hash), or that are missing
    or stopped, go through ``up -d``; the others are restarted in place. Volumes are
    never touched.
    """
    current = project.containers()
    hashes = {} if build else config_hashes(project)
    stale = [svc for svc in SERVICES if build or svc in recreate or svc not in current
             or not current[svc].running or current[svc].config_hash != hashes.get(svc)]
    kept = [svc for svc in SERVICES if svc not in stale]
    if stale:
        summary = project.compose_cmd("up", "-d", *(["--build"] if build else []))
        project.act(summary, lambda: project.docker.compose.up(
            detach=True, build=build, quiet=True, pull=None if build else "missing"))
    if kept:
        project.act(project.compose_cmd("restart", *kept),
                    lambda: project.docker.compose.restart(services=kept))
    if project.dry:
        return [ok(STACK, "reset", f"would recreate {len(stale)} and restart {len(kept)} "
                                   "services; data kept")]
    states = project.wait_healthy()
    return [changed(STACK, "reset", f"{len(kept)} services restarted, {len(stale)} "
                                    f"recreated; {len(states)} healthy; data kept")]


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
        return (*(CLEAN_VOLUMES if self.clean else ()),
                *((registry.VOLUME,) if self.registry else ()))


def what_reset_deletes(project: Project, scope: Scope) -> list[str]:
    what = [f"{VOLUMES[key]} (volume {project.volume_name(key)})" for key in scope.volumes]
    if scope.db and not scope.clean:
        what.append(flopsdb.WHAT)
    return what


def empty_volumes(project: Project, keys: tuple[str, ...]) -> list[Outcome]:
    """Remove the services that mount ``keys`` and the volumes; a start makes them anew."""
    if not keys:
        return []
    owners = sorted({VOLUME_OWNERS[key] for key in keys})
    project.act(project.compose_cmd("rm", "--stop", "--force", *owners),
                lambda: project.docker.compose.rm(services=owners, stop=True))
    for key in keys:
        project.remove_volume(key)
    verb = "would empty" if project.dry else "emptied"
    return [changed(STACK, "empty", f"{verb}: " + ", ".join(VOLUMES[key] for key in keys))]


def reset(project: Project, scope: Scope = Scope(), build: bool = False,
          recreate: bool = False) -> list[Outcome]:
    """Fresh processes; only what ``scope`` names is emptied, and that is verified."""
    _, outcomes = preflight(project, build=build)
    if recreate:
        outcomes += down(project)
    outcomes += empty_volumes(project, scope.volumes)
    emptied = tuple(VOLUME_OWNERS[key] for key in scope.volumes)
    outcomes += (project.start(build=build) if recreate else restart(
        project, build=build, recreate=emptied))
    if project.dry:
        if scope.db and not scope.clean:
            outcomes += flopsdb.redb(project)
        return outcomes
    if scope.registry:
        registry.verify_empty(project)
        outcomes.append(changed(STACK, "clear-registry", "registry storage emptied; it "
                                                         "answers, empty"))
    if scope.clean:
        left = flopsdb.collections(project)
        if left:
            raise FlopsError(f"the FLOps database still has collections after reset --clean: "
                             f"{', '.join(left[:3])}")
    elif scope.db:
        outcomes += flopsdb.redb(project)
    return outcomes
