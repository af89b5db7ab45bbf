"""Workflows that compose the others: doctor, bootstrap, fresh-start, demo."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import oakestra as apps_step
from . import stack as stack_flow
from . import workers

if TYPE_CHECKING:
    from ..outcome import Outcome
    from ..run import Run


def doctor_rows(run: Run) -> list[Outcome]:
    """Read-only readiness of every stack service and every inventory host."""
    from ..ops import doctor_host
    from ..stack import health, placement

    s = run.settings
    rows = stack_flow.left_out(run, "not checked")
    rows += placement.run(run.projects(), health.doctor, "doctor")
    ctx = workers.prep_context(s)
    targets = [t for t in s.inventory if t.roles]
    if not targets:
        run.note("no hosts in the inventory: add them under flops.inventory")
    rows += run.hosts(
        "doctor",
        targets,
        lambda session: doctor_host(session, set(session.target.roles), ctx),
        step="ssh",
    )
    return rows


def doctor(run: Run) -> None:
    run.add(doctor_rows(run))


def _summarised_doctor(run: Run) -> None:
    """The doctor after a workflow that changed things: one row per host (its first problem,
    else its warnings, else "ready")."""
    if run.dry:
        run.note("doctor skipped in a dry run (nothing was changed to check)")
        return
    with run.section("doctor") as checked:
        checked.extend(doctor_rows(run))
        run.add(checked.summary("doctor"))


def bootstrap(run: Run) -> None:
    """up, then every inventory host for its roles (builders push-check), then doctor, over
    one SSH connection per host."""
    stack_flow.up(run)
    if not run.report.ok:
        return
    workers.prepare(run, roles=None, push_check=True, title="bootstrap")
    _summarised_doctor(run)


def fresh_start(
    run: Run, registry: bool = False, skip_apps: bool = False, yes: bool = False
) -> None:
    """Between experiments: FLOps' apps out of Oakestra, ``reset --clean`` (``--all`` with
    ``registry``), FLOps images off every worker, then doctor; one confirmation for all."""
    from ..stack import lifecycle, placement

    scope = lifecycle.Scope(registry=registry, clean=True)
    plan = apps_step.plan_for_reset(run, True, skip_apps)
    if plan is None:
        run.note("FLOps' apps in Oakestra were not checked (--skip-apps)")
    projects = run.projects()
    images = workers.WorkerImages(run, None, False)
    if not images.targets:
        run.note("no workers in the inventory: no worker images to clear")
    with run.stack_lock():
        placement.require(projects, distinct=True)
        images.find()
        run.confirm(
            [
                *apps_step.deletes(plan),
                *(line for p in projects for line in lifecycle.what_reset_deletes(p, scope)),
                *images.deletes(),
            ],
            yes,
        )
        if apps_step.removed(run, plan):
            run.add(placement.run(projects, lambda p: lifecycle.reset(p, scope), "reset"))
    if run.report.ok:
        images.remove()
    if run.report.ok:
        _summarised_doctor(run)


def demo(run: Run, workers_count: int, as_json: bool = False) -> None:
    """Testbed up, bootstrap against it, doctor; then say how to go on. What the testbed
    could not build from upstream's source is left out, each a warning row saying how to
    provide it (the manager's comes from ``flops.stack.omit`` of the testbed's config)."""
    from .. import testbed, ui
    from ..outcome import warning
    from ..paths import command, state_dir
    from ..run import Run as RunType

    paths = testbed.default_paths(state_dir(run.config))
    summary = testbed.up(workers=workers_count, progress=ui.info, paths=paths)
    tb_ctx = testbed.context_for(paths, dry=run.dry)
    inner = RunType(tb_ctx.config, dry=run.dry)
    inner.changes, inner.report = run.changes, run.report
    run.report.title = f"demo: bootstrap of a {len(summary['workers'])}-worker testbed"
    if summary["upstream"].get("ml_data_server") == "missing":
        run.add(
            [
                warning(
                    "testbed",
                    "ml_data_server",
                    "left out: the learners' sidecar image could not be built, so the "
                    f"workers are builders only; {summary['upstream_hint']}",
                )
            ]
        )
    bootstrap(inner)
    config, cmd = summary["config"], command()
    run.report.notes.extend(
        [
            "what now:",
            f"  {cmd} -f {config} doctor            # check it again (read-only)",
            f"  {cmd} -f {config} status            # the FLOps management suite",
            f"  {cmd} -f {config} reset --registry  # wipe the registry between experiments",
            f"  {cmd} testbed.down                    # remove everything the testbed created",
        ]
    )
