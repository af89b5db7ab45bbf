"""FLOps' applications in Oakestra: list them, remove them; and the step that removes them
before a scope empties the FLOps DB (the DB holds their ids)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import FlopsError
from ..outcome import failed
from ..stack.services import STACK

if TYPE_CHECKING:
    from ..oakestra_apps import AppsPlan
    from ..run import Run


def plan_for_reset(run: Run, empties_flops_db: bool, skip_apps: bool) -> AppsPlan | None:
    """FLOps' apps in Oakestra, read before the FLOps database is emptied; None when nothing
    empties that database or the step is skipped on purpose (``--skip-apps``)."""
    from ..oakestra_apps import flops_apps_plan

    if not empties_flops_db or skip_apps:
        return None
    try:
        return flops_apps_plan(run.settings, forget=False)  # the database is emptied next
    except FlopsError as exc:
        raise FlopsError(
            f"{exc.message}; to empty the FLOps database anyway and leave "
            "FLOps' apps deployed in Oakestra, pass --skip-apps",
            code=exc.code,
        ) from None


def deletes(plan: AppsPlan | None) -> list[str]:
    return plan.deletes() if plan is not None else []


def removed(run: Run, plan: AppsPlan | None) -> bool:
    """Remove the planned FLOps apps from Oakestra (once, whatever the placement): True when
    none is left, so the stack may be emptied; otherwise a "stopped" row says nothing of the
    stack was deleted."""
    from ..oakestra_apps import clear_apps

    if plan is None:
        return True
    rows = clear_apps(run.settings, plan, dry=run.dry, changes=run.changes)
    run.add(rows)
    if any(o.bad for o in rows):
        run.add(
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


def oakestra_apps(run: Run, as_json: bool = False) -> AppsPlan:
    """List Oakestra's applications and say which are FLOps' (read-only)."""
    from .. import ui
    from ..oakestra_apps import flops_apps_plan

    plan = flops_apps_plan(run.settings, strict=False)
    ui.render_apps(plan.to_dict(), as_json=as_json)
    return plan


def clear_apps(run: Run, yes: bool = False, without_db: bool = False) -> None:
    """Undeploy and delete FLOps' applications in Oakestra; every other app is kept."""
    from ..oakestra_apps import clear_apps as remove
    from ..oakestra_apps import flops_apps_plan

    plan = flops_apps_plan(run.settings, without_db=without_db)
    run.confirm(plan.deletes(), yes)
    run.add(remove(run.settings, plan, dry=run.dry, changes=run.changes))
    run.note(
        f"System Manager {plan.url}, user {plan.user}; FLOps' apps recognised "
        f"by {plan.identification}"
    )
