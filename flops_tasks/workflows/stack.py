"""The FLOps management suite: env, up, down, reset and its scopes, clear-registry, redb,
status, logs. Each acts on every engine of the placement (one, local, by default)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

from ..errors import FlopsError, UsageError
from ..outcome import Outcome
from . import oakestra as apps_step

if TYPE_CHECKING:
    from ..oakestra_apps import AppsPlan
    from ..run import Run
    from ..stack.project import Project

Job = Callable[["Project"], list[Outcome]]


def env(run: Run, as_json: bool = False) -> dict[str, str]:
    """Resolve, validate and show the six addresses, and whether the env file holds them
    (read-only: the tasks that start or change the stack write it)."""
    from .. import env as envmod
    from .. import ui
    from ..config import ADDRESS_VARS

    s = run.settings
    addresses, values, writes = envmod.plan_env(s)
    rows = [(var, addresses.values[var], addresses.sources[var]) for var in ADDRESS_VARS]
    extra = {k: v for k, v in values.items() if k not in ADDRESS_VARS}
    ui.render_env(rows, s.stack.env_file, bool(writes), as_json, extra)
    return addresses.values


def stack_task(
    run: Run,
    action: Job,
    *,
    deletes: Callable[[Project], list[str]] | None = None,
    yes: bool = False,
    starts: bool = False,
    only: str | None = None,
    first: Job | None = None,
    apps: AppsPlan | None = None,
    step: str = "stack",
) -> list[Project]:
    """Lock the stack; check that every engine of the placement answers (``starts``: and
    that no two hosts are one engine); list what ``action`` deletes and ask; run ``first``
    on every engine (it raises: nothing after it runs anywhere); remove the FLOps apps of the
    plan ``apps`` from Oakestra once (any left: nothing after it runs anywhere); then
    ``action`` on each engine's project (``only``: on the engine that runs that service)."""
    from ..stack import placement

    projects = run.projects()
    if only is not None:
        projects = [placement.project_for(projects, only)]
    with run.stack_lock():
        placement.require(projects, distinct=starts)
        if deletes is not None:
            run.confirm(
                [*apps_step.deletes(apps), *(line for p in projects for line in deletes(p))], yes
            )
        if first is not None:
            for project in projects:
                run.add(first(project))
        if apps_step.removed(run, apps):
            run.add(placement.run(projects, action, step))
    return projects


def left_out(run: Run, what: str) -> list[Outcome]:
    """A warning row per service left out on purpose (``flops.stack.omit``), with why."""
    from ..outcome import warning
    from ..stack.services import STACK

    return [
        warning(STACK, svc, f"left out on purpose (flops.stack.omit), {what}: {why or '-'}")
        for svc, why in run.settings.stack.omit.items()
    ]


def up(run: Run, build: bool = False) -> None:
    """Env + preflight on every host, then start the stack (each host its services) and wait
    until every service is healthy. Services left out on purpose are warnings."""
    from ..stack import health, placement
    from ..stack.preflight import preflight

    run.add(left_out(run, "not started"))
    projects = stack_task(
        run,
        lambda project: project.start(build=build),
        starts=True,
        first=lambda project: preflight(project, build=build)[1],
        step="up",
    )
    if run.dry or not run.report.ok:
        return
    rows = [row for p in projects for row in health.status(p)]
    run.note(
        "endpoints: "
        + ", ".join(
            f"{row['service']}{'@' + str(row['host']) if len(projects) > 1 else ''} "
            f"{' '.join(str(p) for p in cast(list, row['ports']))}"
            for row in rows
        )
    )
    if len(projects) > 1:
        run.note(f"placement: {placement.placed_on(projects)}")


def down(run: Run) -> None:
    """Stop the stack; every volume is kept."""
    from ..stack import lifecycle

    stack_task(run, lifecycle.down, step="down")


def reset(
    run: Run,
    registry: bool = False,
    db: bool = False,
    clean: bool = False,
    all_: bool = False,
    service: str | None = None,
    build: bool = False,
    recreate: bool = False,
    skip_apps: bool = False,
    yes: bool = False,
) -> None:
    """Fresh processes for the whole stack (``recreate``: down + up). Data survives unless a
    scope says otherwise: ``registry``, ``db`` (the FLOps database), ``clean`` (every store
    but the registry), ``all_`` (every store). Scopes that empty the FLOps database remove
    FLOps' apps from Oakestra first (unless ``skip_apps``)."""
    from ..stack import lifecycle
    from ..stack.project import unknown_service

    unknown_service(service)
    if service and (registry or db or clean or all_ or recreate):
        raise UsageError(
            "--service restarts one service and keeps all data: use it without "
            "--registry/--db/--clean/--all/--recreate"
        )
    if service:
        stack_task(
            run,
            lambda project: lifecycle.rebuild_service(project, service),
            only=service,
            step="reset",
        )
        return
    scope = lifecycle.Scope(registry=registry or all_, db=db, clean=clean or all_)
    plan = apps_step.plan_for_reset(run, scope.empties_flops_db, skip_apps)
    stack_task(
        run,
        lambda project: lifecycle.reset(project, scope, build=build, recreate=recreate),
        deletes=lambda project: lifecycle.what_reset_deletes(project, scope),
        yes=yes,
        starts=True,
        apps=plan,
        step="reset",
    )


def clear_registry(run: Run, yes: bool = False) -> None:
    """Empty the FLOps registry's storage and restart it."""
    from ..stack import registry
    from ..stack.services import REGISTRY

    stack_task(
        run,
        registry.clear,
        deletes=lambda project: [registry.what_clear_deletes(project)],
        yes=yes,
        only=REGISTRY,
        step="clear-registry",
    )


def redb(run: Run, yes: bool = False, skip_apps: bool = False) -> None:
    """Empty the FLOps manager database (Mongo database 'flops') only, after removing
    FLOps' apps from Oakestra (unless ``skip_apps``)."""
    from ..stack import flopsdb
    from ..stack.services import FLOPS_DB_SERVICE

    plan = apps_step.plan_for_reset(run, True, skip_apps)
    stack_task(
        run,
        flopsdb.redb,
        deletes=lambda project: [flopsdb.WHAT],
        yes=yes,
        only=FLOPS_DB_SERVICE,
        apps=plan,
        step="redb",
    )


def status(run: Run, as_json: bool = False) -> list[dict[str, object]]:
    """Every service with its host, state, health and published ports; a host whose engine
    does not answer shows its services as unreachable, with why (exit 4)."""
    from .. import ui
    from ..outcome import ExitCode
    from ..stack import health, placement

    projects = run.projects()
    problems = placement.answers(projects)
    if len(projects) == 1 and problems:
        raise FlopsError(next(iter(problems.values())))
    rows = [
        row
        for p in projects
        for row in (
            health.unreachable_rows(p, problems[p.label])
            if p.label in problems
            else health.status(p)
        )
    ]
    ui.render_status(rows, as_json=as_json, hosts=len(projects) > 1)
    if problems:
        raise FlopsError("", code=ExitCode.UNREACHABLE)
    return rows


def logs(run: Run, service: str | None = None, follow: bool = False, tail: str = "200") -> None:
    """Show the stack's logs (one service, or all; of every host of the placement)."""
    from .. import ui
    from ..stack import placement
    from ..stack.project import unknown_service

    unknown_service(service)
    projects = run.projects()
    if service:
        projects = [placement.project_for(projects, service)]
    placement.require(projects)
    if follow:
        for line in placement.follow_logs(projects, service, tail):
            ui.raw(line)
        return
    for project in projects:
        services = [service] if service else list(project.services) if project.partial else []
        ui.raw(project.call(partial(project.docker.compose.logs, services=services, tail=tail)))
