"""Task bodies: read settings, call the logic, render the result once.

Each function here takes an Invoke context plus keyword arguments and returns what it
rendered, so other tasks and Python code can compose them (``bootstrap`` does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from .config import ADDRESS_VARS, Settings, settings

if TYPE_CHECKING:
    from invoke import Context


def is_dry(c: Context) -> bool:
    return bool(c.config.run.dry)


def env(c: Context, as_json: bool = False, quiet: bool = False) -> dict[str, str]:
    """Resolve and validate the six addresses and write the compose env file."""
    from . import env as envmod
    from . import ui

    s = settings(c)
    dry = is_dry(c)
    addresses, values, changed = envmod.ensure_env(s, dry=dry)
    if not quiet:
        rows = [(var, addresses.values[var], addresses.sources[var]) for var in ADDRESS_VARS]
        extra = {k: v for k, v in values.items() if k not in ADDRESS_VARS}
        ui.render_env(rows, s.stack.env_file, changed, dry, as_json, extra)
    return addresses.values


# -- the management stack ---------------------------------------------------------------
def _projects(c: Context, s: Settings | None = None) -> list[Any]:
    """One project per Docker engine of the placement (one, local, by default)."""
    from . import ui
    from .stack import placement

    return placement.projects(s or settings(c), dry=is_dry(c), progress=ui.info)


def _stack_lock(s: Settings) -> Any:
    from . import locks

    return locks.held(locks.stack_lock_path(s.stack.project), f"the stack {s.stack.project}")


def finish(
    report: Any, as_json: bool = False, plan: list[str] | None = None, render: bool = True
) -> Any:
    """Render once (unless a composing caller renders); exit non-zero when anything failed."""
    from . import ui
    from .errors import FlopsError

    if plan:
        report.notes.extend(f"plan: {step}" for step in plan)
    if not render:
        return report
    ui.render_report(report, as_json=as_json)
    if not report.ok:
        raise FlopsError("", code=report.exit_code)
    return report


def _confirm_deletion(what: list[str], yes: bool, dry: bool) -> None:
    from . import ui
    from .errors import FlopsError

    if dry or not what:
        return
    ui.info("This will delete:\n" + "\n".join(f"  - {item}" for item in what))
    if not ui.confirm("Delete it?", assume_yes=yes):
        raise FlopsError("nothing deleted: confirm on a terminal or pass --yes", code=3)


def _stack_task(
    c: Context,
    title: str,
    action: Any,
    deletes: Any = None,
    yes: bool = False,
    as_json: bool = False,
    render: bool = True,
    starts: bool = False,
    only: str | None = None,
    first: Any = None,
    apps: Any = None,
) -> Any:
    """Lock the stack, list what ``action`` deletes and ask, check that every engine of the
    placement answers (``starts``: and that no two hosts are one engine), run ``first`` on
    every engine (it raises: nothing after it runs anywhere), remove the FLOps apps of the
    plan ``apps`` from Oakestra once (any left: nothing after it runs anywhere), then
    ``action`` on each engine's project (``only``: on the engine that runs that service);
    render."""
    from .outcome import Report
    from .stack import placement

    s = settings(c)
    projects = _projects(c, s)
    if only is not None:
        projects = [placement.project_for(projects, only)]
    report = Report(title, dry=is_dry(c))
    with _stack_lock(s):
        if deletes is not None:
            _confirm_deletion(
                [*_apps_deletes(apps), *(line for p in projects for line in deletes(p))],
                yes,
                is_dry(c),
            )
        placement.require(projects, distinct=starts)
        if first is not None:
            for project in projects:
                report.extend(first(project))
        if _apps_removed(s, apps, report):
            report.extend(placement.run(projects, action, title))
    return finish(report, as_json, projects[0].plan, render)


def up(c: Context, build: bool = False, as_json: bool = False, render: bool = True) -> Any:
    """Env + preflight on every host, then start the stack (each host its services) and wait
    until every service is healthy."""
    from .stack import health, placement
    from .stack.preflight import preflight

    report = _stack_task(
        c,
        "up",
        lambda project: project.start(build=build),
        render=False,
        starts=True,
        first=lambda project: preflight(project, build=build)[1],
    )
    if not report.dry and report.ok:
        projects = _projects(c)
        rows = [row for p in projects for row in health.status(p)]
        report.notes.append(
            "endpoints: "
            + ", ".join(
                f"{row['service']}{'@' + str(row['host']) if len(projects) > 1 else ''} "
                f"{' '.join(str(p) for p in cast(list, row['ports']))}"
                for row in rows
            )
        )
        if len(projects) > 1:
            report.notes.append(f"placement: {placement.placed_on(projects)}")
    return finish(report, as_json, render=render)


def down(c: Context, as_json: bool = False, render: bool = True) -> Any:
    """Stop the stack; every volume is kept."""
    from .stack import lifecycle

    return _stack_task(c, "down", lifecycle.down, as_json=as_json, render=render)


def _apps_plan(s: Settings, empties_flops_db: bool, skip_apps: bool) -> Any:
    """FLOps' apps in Oakestra, read before the FLOps database is emptied (it holds their
    ids); None when nothing empties that database or the step is skipped on purpose."""
    from .errors import FlopsError
    from .oakestra_apps import flops_apps_plan

    if not empties_flops_db or skip_apps:
        return None
    try:
        return flops_apps_plan(s, forget=False)  # the database is emptied next
    except FlopsError as exc:
        raise FlopsError(
            f"{exc.message}; to empty the FLOps database anyway and leave "
            "FLOps' apps deployed in Oakestra, pass --skip-apps",
            code=exc.code,
        ) from None


def _apps_removed(s: Settings, plan: Any, report: Any) -> bool:
    """Remove the planned FLOps apps from Oakestra (once, whatever the placement): True when
    none is left, so the stack may be emptied; otherwise a "stopped" row says nothing of the
    stack was deleted."""
    from .oakestra_apps import clear_apps as remove_apps
    from .outcome import failed
    from .stack.services import STACK

    if plan is None:
        return True
    removed = remove_apps(s, plan, dry=report.dry)
    report.extend(removed)
    if any(o.bad for o in removed):
        report.extend(
            [
                failed(
                    STACK,
                    "stopped",
                    "FLOps' apps could not all be removed from "
                    "Oakestra: nothing of the stack was deleted",
                )
            ]
        )
        return False
    return True


def _apps_deletes(plan: Any) -> list[str]:
    return plan.deletes() if plan is not None else []


def reset(
    c: Context,
    registry: bool = False,
    db: bool = False,
    clean: bool = False,
    all_: bool = False,
    service: str | None = None,
    build: bool = False,
    recreate: bool = False,
    skip_apps: bool = False,
    yes: bool = False,
    as_json: bool = False,
    render: bool = True,
) -> Any:
    """Fresh processes for the whole stack (``recreate``: down + up). Data survives unless a
    scope says otherwise: ``registry``, ``db`` (the FLOps database), ``clean`` (every store
    but the registry), ``all_`` (every store). Scopes that empty the FLOps database remove
    FLOps' apps from Oakestra first (unless ``skip_apps``)."""
    from .errors import UsageError
    from .stack import lifecycle
    from .stack.project import unknown_service

    unknown_service(service)
    if service and (registry or db or clean or all_ or recreate):
        raise UsageError(
            "--service restarts one service and keeps all data: use it without "
            "--registry/--db/--clean/--all/--recreate"
        )
    if service:
        return _stack_task(
            c,
            "reset",
            lambda project: lifecycle.rebuild_service(project, service),
            as_json=as_json,
            render=render,
            only=service,
        )
    scope = lifecycle.Scope(registry=registry or all_, db=db, clean=clean or all_)
    plan = _apps_plan(settings(c), scope.empties_flops_db, skip_apps)
    return _stack_task(
        c,
        "reset",
        lambda project: lifecycle.reset(project, scope, build=build, recreate=recreate),
        deletes=lambda project: lifecycle.what_reset_deletes(project, scope),
        yes=yes,
        as_json=as_json,
        render=render,
        starts=True,
        apps=plan,
    )


def clear_registry(
    c: Context, yes: bool = False, as_json: bool = False, render: bool = True
) -> Any:
    """Empty the FLOps registry's storage and restart it."""
    from .stack import registry
    from .stack.services import REGISTRY

    return _stack_task(
        c,
        "clear-registry",
        registry.clear,
        deletes=lambda project: [registry.what_clear_deletes(project)],
        yes=yes,
        as_json=as_json,
        render=render,
        only=REGISTRY,
    )


def redb(
    c: Context,
    yes: bool = False,
    skip_apps: bool = False,
    as_json: bool = False,
    render: bool = True,
) -> Any:
    """Empty the FLOps manager database (Mongo database 'flops') only, after removing
    FLOps' apps from Oakestra (unless ``skip_apps``)."""
    from .stack import flopsdb
    from .stack.services import FLOPS_DB_SERVICE

    plan = _apps_plan(settings(c), True, skip_apps)
    return _stack_task(
        c,
        "redb",
        flopsdb.redb,
        deletes=lambda project: [flopsdb.WHAT],
        yes=yes,
        as_json=as_json,
        render=render,
        only=FLOPS_DB_SERVICE,
        apps=plan,
    )


def status(c: Context, as_json: bool = False) -> list[dict]:
    """Every service with its host, state, health and published ports; a host whose engine
    does not answer shows its services as unreachable, with why (exit 1)."""
    from . import ui
    from .errors import FlopsError
    from .stack import health, placement

    projects = _projects(c)
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
        raise FlopsError("", code=1)
    return rows


def logs(c: Context, service: str | None = None, follow: bool = False, tail: str = "200") -> None:
    """Show the stack's logs (one service, or all; of every host of the placement)."""
    from . import ui
    from .stack import placement
    from .stack.project import unknown_service

    unknown_service(service)
    projects = _projects(c)
    if service:
        projects = [placement.project_for(projects, service)]
    placement.require(projects)
    if follow:
        for line in placement.follow_logs(projects, service, tail):
            ui.raw(line)
        return
    for project in projects:
        ui.raw(
            project.call(
                lambda p=project: p.docker.compose.logs(
                    services=[service] if service else list(p.services) if p.partial else [],
                    tail=tail,
                )
            )
        )


# -- the offline testbed ------------------------------------------------------------------
def _workers(value: Any) -> int:
    """``--workers`` (a string from the command line, an int from Python; None: 2)."""
    from .errors import UsageError
    from .testbed import MAX_WORKERS

    if value is None:
        return 2
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_WORKERS:
        raise UsageError(f"--workers must be a whole number from 1 to {MAX_WORKERS}, got {value}")
    return int(text)


def _kinds(value: Any) -> list[str] | None:
    """``--kind``: docker, containerd, or a comma list applied to the workers in order."""
    from .errors import UsageError
    from .testbed import KINDS

    if value is None:
        return None
    kinds = [k.strip() for k in str(value).split(",")]
    if not kinds or any(k not in KINDS for k in kinds):
        raise UsageError(
            f"--kind must be {' or '.join(KINDS)} (or a comma list of them, one "
            f"per worker), got {value!r}"
        )
    return kinds


def testbed_up(
    c: Context, workers: int | str | None = None, kind: str | None = None, as_json: bool = False
) -> dict:
    """Start (or reuse) the offline testbed and write .testbed/invoke.yaml."""
    from . import testbed, ui

    summary = testbed.up(workers=_workers(workers), kinds=_kinds(kind), progress=ui.info)
    ui.render_testbed(summary, as_json=as_json)
    return summary


def testbed_down(c: Context, keep_images: bool = False, as_json: bool = False) -> dict:
    """Remove every testbed object and .testbed/."""
    from . import testbed, ui

    removed = testbed.down(keep_images=keep_images, progress=ui.info)
    if as_json:
        ui.print_json({"removed": removed})
    else:
        ui.info("removed: " + ", ".join(f"{len(v)} {k}" for k, v in removed.items()))
    return removed


# -- worker preparation ---------------------------------------------------------------------
def _prep_context(
    s: Settings, image: str | None = None, data_dir: str | None = None, push_check: bool = False
) -> Any:
    from . import env as envmod
    from .config import data_dir_problem, valid_image
    from .errors import UsageError
    from .ops import PrepContext

    problem = data_dir_problem(data_dir) if data_dir else None
    if problem:
        raise UsageError(f"bad --data-dir {data_dir!r}: {problem}")
    if image is not None and not valid_image(image):
        raise UsageError(
            f"bad --image {image!r}: give an image reference such as "
            "registry:5073/ml-data-server:latest"
        )
    addresses = envmod.resolve_addresses(s)
    registry = envmod.registry_host(s, addresses)
    return PrepContext(
        registry=registry,
        forget=envmod.former_registries(s, registry),
        builder_name=s.builder_name,
        builder_driver=s.builder_driver,
        learner_image=image or s.learner_image,
        data_dir=s.learner_data_dir if data_dir is None else data_dir,
        push_check=push_check,
        publish_address=s.learner_publish_address,
    )


def prepare(
    c: Context,
    roles: set[str] | None = None,
    host: str | None = None,
    data_dir: str | None = None,
    image: str | None = None,
    push_check: bool = False,
    remove_check_tools: bool = False,
    as_json: bool = False,
    title: str = "prepare",
    render: bool = True,
) -> Any:
    """Prepare hosts for ``roles`` (None: each inventory host's own roles), in parallel.

    ``remove_check_tools``: instead, purge what earlier push checks installed (buildah ...).
    """
    from . import ops, ui
    from .errors import UsageError
    from .hosts import select_targets
    from .outcome import Report
    from .ssh import fan_out

    if remove_check_tools and push_check:
        raise UsageError(
            "--remove-check-tools removes what --push-check installs: give one of them"
        )
    s = settings(c)
    ctx = _prep_context(s, image=image, data_dir=data_dir, push_check=push_check)
    role = next(iter(roles)) if roles and len(roles) == 1 else None
    targets = select_targets(host, list(s.inventory), role)
    role_of = {t.label: (set(roles) if roles else set(t.roles)) for t in targets}
    targets = [t for t in targets if role_of[t.label]]
    report = Report(title, dry=is_dry(c))
    plan: list[str] = []

    def work(session: Any) -> list:
        if remove_check_tools:
            outcomes = ops.remove_check_tools(session)
        else:
            outcomes = ops.prepare_host(session, role_of[session.label], ctx)
        plan.extend(f"{session.label}: {step}" for step in session.plan)
        return outcomes

    with ui.LiveHosts(title, [t.label for t in targets]) as live:
        report.extend(
            fan_out(
                targets,
                work,
                ssh=s.ssh,
                config=c.config,
                dry=is_dry(c),
                observer=live,
                lock=not is_dry(c),
                traffic=report.ssh,
            )
        )
    if ctx.forget and not remove_check_tools:
        report.notes.append(
            f"the FLOps registry is now {ctx.registry}: workers' trust for "
            f"{', '.join(ctx.forget)} (where it was before) is dropped"
        )
    return finish(report, as_json, plan=plan, render=render)


# -- workflows ------------------------------------------------------------------------------
def doctor(c: Context, as_json: bool = False, render: bool = True) -> Any:
    """Read-only readiness of every inventory host and every stack service."""
    from . import ui
    from .ops import doctor_host
    from .outcome import Report
    from .ssh import fan_out

    s = settings(c)
    report = Report("doctor")
    from .stack import health, placement

    report.extend(placement.run(_projects(c, s), health.doctor, "doctor"))
    ctx = _prep_context(s)
    targets = [t for t in s.inventory if t.roles]
    if not targets:
        report.notes.append("no hosts in the inventory: add them under flops.inventory")
    with ui.LiveHosts("doctor", [t.label for t in targets]) as live:
        report.extend(
            fan_out(
                targets,
                lambda session: doctor_host(session, set(session.target.roles), ctx),
                ssh=s.ssh,
                config=c.config,
                observer=live,
                traffic=report.ssh,
            )
        )
    return finish(report, as_json, render=render)


def bootstrap(c: Context, as_json: bool = False, render: bool = True) -> Any:
    """up, then every inventory host for its roles (builders push-check), then doctor, over
    one SSH connection per host."""
    from .outcome import Report
    from .ssh import shared_connections

    dry = is_dry(c)
    report = Report("bootstrap", dry=dry)
    stack_report = up(c, render=False)
    report.absorb(stack_report)
    if not stack_report.ok:
        return finish(report, as_json, render=render)
    with shared_connections():
        report.absorb(prepare(c, roles=None, push_check=True, render=False))
        if dry:
            report.notes.append("doctor skipped in a dry run (nothing was changed to check)")
        else:
            checked = doctor(c, render=False)
            report.extend(checked.summary("doctor"))
            report.count_ssh(checked.ssh)
    return finish(report, as_json, render=render)


def demo(c: Context, workers: int | str | None = None, as_json: bool = False) -> Any:
    """Testbed up, bootstrap against it, doctor; then say how to go on."""
    from . import testbed, ui

    summary = testbed.up(workers=_workers(workers), progress=ui.info)
    tb_ctx = testbed.context_for(testbed.default_paths(), dry=is_dry(c))
    report = bootstrap(tb_ctx, render=False)
    report.title = f"demo: bootstrap of a {len(summary['workers'])}-worker testbed"
    config = summary["config"]
    report.notes.extend(
        [
            "what now:",
            f"  inv -f {config} doctor            # check it again (read-only)",
            f"  inv -f {config} status            # the FLOps management suite",
            f"  inv -f {config} reset --registry  # wipe the registry between experiments",
            "  inv testbed.down                    # remove everything the testbed created",
        ]
    )
    return finish(report, as_json)


def learner_data(
    c: Context,
    host: str | None = None,
    src: str | None = None,
    tag: str | None = None,
    listing: bool = False,
    as_json: bool = False,
    render: bool = True,
) -> Any:
    """Copy Parquet files into learners' data mounts under ``tag`` (unchanged files are
    skipped), or with ``listing`` show per learner what its sidecar will serve."""
    from . import data, ui
    from .errors import UsageError
    from .hosts import select_targets
    from .outcome import Report
    from .ssh import fan_out

    s = settings(c)
    if listing:
        if src is not None:
            raise UsageError("--src copies files and --list only shows them: use one of them")
        return _learner_data_list(c, s, host, tag, as_json, render)
    tag = data.check_tag(tag)
    if src is None:
        raise UsageError("--src is missing: give parquet files, folders or globs")
    files = data.collect(src, tag)
    targets = select_targets(host, list(s.inventory), "learner")
    report = Report("learner-data", dry=is_dry(c))
    total = sum(f.size for f in files) * len(targets)
    with ui.Transfer(total, f"{len(files)} files to {len(targets)} hosts") as bar:
        report.extend(
            fan_out(
                targets,
                lambda session: data.copy_data(
                    session, files, s.learner_data_dir, progress=bar.advance
                ),
                ssh=s.ssh,
                config=c.config,
                dry=is_dry(c),
                step="learner-data",
                lock=not is_dry(c),
                traffic=report.ssh,
            )
        )
    return finish(report, as_json, render=render)


def _learner_data_list(
    c: Context, s: Settings, host: str | None, tag: str | None, as_json: bool, render: bool
) -> Any:
    from . import data, ui
    from .errors import FlopsError, UsageError
    from .hosts import select_targets
    from .outcome import Report
    from .ssh import fan_out

    if tag is not None:
        data.check_tag(tag)
    targets = select_targets(host, list(s.inventory), "learner")
    found: dict[str, Any] = {}

    def work(session: Any) -> list:
        found[session.label] = data.read_mount(session, s.learner_data_dir)
        return data.listing_outcomes(session.label, found[session.label].only(tag))

    report = Report("learner-data --list" + (f" --tag {tag}" if tag else ""))
    report.extend(fan_out(targets, work, ssh=s.ssh, config=c.config, step="list"))
    if tag is not None and found and not any(tag in d.tags() for d in found.values()):
        held = sorted({t for d in found.values() for t in d.tags()})
        silent = [t.label for t in targets if t.label not in found]
        raise UsageError(
            f"unknown tag {tag!r}: the learners hold "
            + (f"the tags {', '.join(held)}" if held else "no tagged data")
            + (f" ({', '.join(silent)} did not answer)" if silent else "")
        )
    result = {
        "title": report.title,
        "ok": report.ok,
        "tag": tag,
        "hosts": {
            label: {
                "status": report.host_status(label).value,
                **(
                    found[label].only(tag).to_dict()
                    if label in found
                    else {"detail": "; ".join(o.detail for o in report.outcomes if o.host == label)}
                ),
            }
            for label in report.hosts()
        },
    }
    if not render:
        return result
    if as_json:
        ui.print_json(result)
    else:
        ui.render_report(report)
    if not report.ok:
        raise FlopsError("", code=report.exit_code)
    return result


class _WorkerImages:
    """clear-images in two halves, so a workflow can ask once for everything it deletes:
    ``find`` reads every worker's stores, ``remove`` deletes what was listed. Run both
    inside ``ssh.shared_connections()``: the listing's connections also remove."""

    def __init__(
        self, c: Context, s: Settings, host: str | None, registry_only: bool, report: Any
    ) -> None:
        from . import env as envmod
        from .hosts import select_targets

        self.c, self.s, self.registry_only, self.report = c, s, registry_only, report
        self.registry = envmod.registry_host(s, envmod.resolve_addresses(s))
        self.targets = select_targets(host, list(s.inventory), None)
        self.found: dict[str, Any] = {}

    def find(self) -> list:
        from . import images
        from .ssh import fan_out

        def listing(session: Any) -> list:
            self.found[session.label] = images.list_images(
                session, self.registry, upstream=not self.registry_only
            )
            return []

        traffic: dict[str, dict[str, int]] = {}
        outcomes = fan_out(
            self.targets,
            listing,
            ssh=self.s.ssh,
            config=self.c.config,
            dry=is_dry(self.c),
            step="list",
            traffic=traffic,
        )
        self.report.count_ssh(traffic)
        return outcomes

    def deletes(self) -> list[str]:
        return [line for listing in self.found.values() for line in listing.deletes()]

    def remove(self) -> list:
        from . import images
        from .ssh import fan_out

        reachable = [t for t in self.targets if t.label in self.found]
        traffic: dict[str, dict[str, int]] = {}
        outcomes = fan_out(
            reachable,
            lambda session: images.remove_images(session, self.found[session.label]),
            ssh=self.s.ssh,
            config=self.c.config,
            dry=is_dry(self.c),
            step="clear-images",
            lock=not is_dry(self.c),
            traffic=traffic,
        )
        self.report.count_ssh(traffic)
        return outcomes


def clear_images(
    c: Context,
    host: str | None = None,
    yes: bool = False,
    registry_only: bool = False,
    as_json: bool = False,
    render: bool = True,
) -> Any:
    """Remove unused FLOps images (FLOps registry, and unless ``registry_only`` FLOps' own
    upstream images) from workers' Docker and containerd stores."""
    from .outcome import Report
    from .ssh import shared_connections

    report = Report("clear-images", dry=is_dry(c))
    with shared_connections():
        workers = _WorkerImages(c, settings(c), host, registry_only, report)
        report.extend(workers.find())
        _confirm_deletion(workers.deletes(), yes, is_dry(c))
        report.extend(workers.remove())
    return finish(report, as_json, render=render)


def fresh_start(
    c: Context,
    registry: bool = False,
    skip_apps: bool = False,
    yes: bool = False,
    as_json: bool = False,
    render: bool = True,
) -> Any:
    """Between experiments: FLOps' apps out of Oakestra, ``reset --clean`` (``--all`` with
    ``registry``), FLOps images off every worker, then doctor; one confirmation for all."""
    from .outcome import Report
    from .ssh import shared_connections
    from .stack import lifecycle, placement

    s = settings(c)
    dry = is_dry(c)
    scope = lifecycle.Scope(registry=registry, clean=True)
    report = Report("fresh-start", dry=dry)
    plan = _apps_plan(s, True, skip_apps)
    if plan is None:
        report.notes.append("FLOps' apps in Oakestra were not checked (--skip-apps)")
    projects = _projects(c, s)
    with shared_connections():
        workers = _WorkerImages(c, s, None, False, report)
        with _stack_lock(s):
            report.extend(workers.find())
            _confirm_deletion(
                [
                    *_apps_deletes(plan),
                    *(line for p in projects for line in lifecycle.what_reset_deletes(p, scope)),
                    *workers.deletes(),
                ],
                yes,
                dry,
            )
            placement.require(projects, distinct=True)
            if _apps_removed(s, plan, report):
                report.extend(placement.run(projects, lambda p: lifecycle.reset(p, scope), "reset"))
        if report.ok:
            report.extend(workers.remove())
    if dry:
        report.notes.append("doctor skipped in a dry run (nothing was changed to check)")
    elif report.ok:
        report.extend(doctor(c, render=False).summary("doctor"))
    return finish(report, as_json, projects[0].plan, render=render)


# -- Oakestra ---------------------------------------------------------------------------------
def oakestra_apps(c: Context, as_json: bool = False, render: bool = True) -> Any:
    """List Oakestra's applications and say which are FLOps' (read-only)."""
    from . import ui
    from .oakestra_apps import flops_apps_plan

    plan = flops_apps_plan(settings(c), strict=False)
    if render:
        ui.render_apps(plan.to_dict(), as_json=as_json)
    return plan


def clear_apps(
    c: Context,
    yes: bool = False,
    without_db: bool = False,
    as_json: bool = False,
    render: bool = True,
) -> Any:
    """Undeploy and delete FLOps' applications in Oakestra; every other app is kept."""
    from . import oakestra_apps
    from .outcome import Report

    s = settings(c)
    dry = is_dry(c)
    plan = oakestra_apps.flops_apps_plan(s, without_db=without_db)
    _confirm_deletion(plan.deletes(), yes, dry)
    report = Report("clear-apps", dry=dry)
    report.extend(oakestra_apps.clear_apps(s, plan, dry=dry))
    report.notes.append(
        f"System Manager {plan.url}, user {plan.user}; FLOps' apps recognised "
        f"by {plan.identification}"
    )
    return finish(report, as_json, render=render)
