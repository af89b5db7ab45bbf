"""FLOps' applications in Oakestra: which apps are FLOps', and removing exactly those.

An app is FLOps' when (in this order, upstream addon-FLOps at the pinned ref):

1. the FLOps DB holds its id. The manager keeps one Mongo collection per pydantic class
   (database ``flops``, collection = class name: flops_manager/database/common.py), dumped
   with field names: ``FLOpsProject``, ``FLOpsObservatory`` and ``FLOpsHelperApp`` hold the
   app id in ``app_id`` (classes/apps/app_base.py; a project's ``flops_project_id`` is the
   same id, classes/apps/project.py). The service collections (classes/services/**) hold
   ``service_id`` and, for project services and project observers, ``flops_project_id``;
   an app that contains such a service is FLOps' too.
2. it carries FLOps' own name in FLOps' namespace, which catches apps the FLOps DB forgot
   (after ``redb``): ``observatory``/``observatory`` and ``helper``/``helper`` (the app name
   is the namespace, classes/apps/customer_facing_base.py) and ``proj<12 hex>``/``proj``
   (classes/apps/project.py: ``proj`` + ``get_shortened_unique_id``, md5 digest[:6].hex(),
   utils/common.py), created by the user FLOps logs in as (api/utils/login.py).

Every other app is kept, with the reason. Nothing here prints: the plan and the outcomes
are returned, and ``ui`` shows them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .changes import Change, ChangeLog
from .errors import FlopsError
from .oakestra import ApiError, Application, SystemManager
from .outcome import Outcome, changed, failed, ok

if TYPE_CHECKING:
    from .config import Settings

HOST = "oakestra"
FLOPS_DB = "flops"
# collection -> fields holding the id of an Oakestra app
APP_COLLECTIONS = {
    "FLOpsProject": ("app_id", "flops_project_id"),
    "FLOpsObservatory": ("app_id",),
    "FLOpsHelperApp": ("app_id",),
}
# namespace -> FLOps' app names in it (pattern, as said to users)
APP_NAMES = {
    "observatory": (re.compile(r"observatory\Z"), "observatory"),
    "helper": (re.compile(r"helper\Z"), "helper"),
    "proj": (re.compile(r"proj[0-9a-f]{12}\Z"), "proj + 12 hex digits"),
}
# the namespaces of FLOps' services (the ``namespace`` ClassVar of each service class)
SERVICE_NAMESPACES = (
    "builder",
    "flearner",
    "aggr",
    "raggr",
    "observ",
    "tracking",
    "mockdp",
    "trmodel",
)
DELETE, KEEP, BLOCKED = "delete", "keep", "blocked"


@dataclass(frozen=True)
class FlopsIds:
    """What the FLOps DB knows: app id -> where, service id -> where."""

    apps: dict[str, str]
    services: dict[str, str]


def read_flops_ids(db: Any) -> FlopsIds:
    """Every app and service id in the FLOps DB (a pymongo ``Database``)."""
    apps: dict[str, str] = {}
    services: dict[str, str] = {}
    names = db.list_collection_names()
    # the apps' own collections first: they name where an id comes from
    for name in sorted(names, key=lambda n: (n not in APP_COLLECTIONS, n)):
        fields = APP_COLLECTIONS.get(name, ("flops_project_id",))
        for doc in db[name].find({}):  # small documents: no projection needed
            for f in fields:
                value = doc.get(f)
                if isinstance(value, str) and value:
                    apps.setdefault(value, f"{name}.{f}")
            sid = doc.get("service_id")
            if isinstance(sid, str) and sid:
                services.setdefault(sid, f"{name}.service_id")
    return FlopsIds(apps, services)


@dataclass(frozen=True)
class Verdict:
    app: Application
    action: str  # DELETE, KEEP or BLOCKED (FLOps' app this user cannot delete)
    reason: str

    def to_dict(self) -> dict:
        return {
            **self.app.to_dict(),
            "flops": self.action != KEEP,
            "action": self.action,
            "reason": self.reason,
        }


def _services(app: Application) -> str:
    """``with services a/ns, b/ns`` or ``with no services``."""
    if not app.services:
        return "with no services"
    return "with services " + ", ".join(f"{s.name}/{s.namespace}" for s in app.services)


@dataclass
class AppsPlan:
    """The apps the System Manager lists, each with what clear-apps does with it."""

    url: str
    user: str
    identification: str
    verdicts: list[Verdict]
    system_manager: SystemManager | None = field(default=None, repr=False, compare=False)

    def _of(self, action: str) -> list[Verdict]:
        return [v for v in self.verdicts if v.action == action]

    @property
    def doomed(self) -> list[Verdict]:
        return self._of(DELETE)

    @property
    def kept(self) -> list[Verdict]:
        return self._of(KEEP)

    @property
    def blocked(self) -> list[Verdict]:
        return self._of(BLOCKED)

    def deletes(self) -> list[str]:
        """What clear-apps deletes, one entry per app (for the confirmation)."""
        return [f"Oakestra app {v.app.label} {_services(v.app)} ({v.reason})" for v in self.doomed]

    def to_dict(self) -> dict:
        return {
            "system_manager": self.url,
            "user": self.user,
            "identification": self.identification,
            "applications": [v.to_dict() for v in self.verdicts],
        }


def recognise(apps: list[Application], ids: FlopsIds | None, user: str) -> list[Verdict]:
    """Decide for every app: FLOps' (delete, or blocked when another user owns it) or kept."""
    verdicts = []
    for app in apps:
        known = (ids.apps.get(app.id) if ids else None) or next(
            (
                f"its service {s} is in {ids.services[s]}"
                for s in app.service_ids
                if ids and s in ids.services
            ),
            None,
        )
        if known:
            why = known if known.startswith("its service") else f"id in FLOps DB {known}"
            if app.owner and app.owner != user:
                verdicts.append(
                    Verdict(
                        app,
                        BLOCKED,
                        f"FLOps' app ({why}) owned by "
                        f"{app.owner!r}: only its owner may delete it; set "
                        f"flops.oakestra.user to {app.owner!r}",
                    )
                )
            else:
                verdicts.append(Verdict(app, DELETE, f"FLOps' app: {why}"))
            continue
        rule, said = APP_NAMES.get(app.namespace, (None, ""))
        if rule is None:
            verdicts.append(
                Verdict(
                    app,
                    KEEP,
                    f"not FLOps': namespace {app.namespace!r} is "
                    "none of FLOps' (proj, observatory, helper) and the FLOps "
                    "DB does not hold its id"
                    if ids
                    else f"not FLOps': namespace {app.namespace!r} is none of "
                    "FLOps' (proj, observatory, helper)",
                )
            )
        elif not rule.match(app.name):
            verdicts.append(
                Verdict(
                    app,
                    KEEP,
                    f"not FLOps': namespace {app.namespace!r} but "
                    f"name {app.name!r} is not FLOps' ({said})",
                )
            )
        elif app.owner and app.owner != user:
            verdicts.append(
                Verdict(
                    app,
                    KEEP,
                    f"not this FLOps': owned by {app.owner!r}, "
                    f"FLOps creates its apps as the user it logs in as "
                    f"({user!r})",
                )
            )
        else:
            verdicts.append(
                Verdict(
                    app, DELETE, f"FLOps' app: FLOps' name in FLOps' namespace {app.namespace!r}"
                )
            )
    return verdicts


def read_flops_db(s: Settings) -> FlopsIds:
    """The ids in the stack's FLOps DB (raises pymongo's ``PyMongoError``, or FlopsError
    when the port is not held by this stack's database: ids read from another Mongo would
    decide what is deleted)."""
    from .stack import flopsdb, placement
    from .stack.services import FLOPS_DB, FLOPS_DB_PORT, FLOPS_DB_SERVICE

    project = placement.project_for(placement.projects(s), FLOPS_DB_SERVICE)
    try:
        foreign = project.foreign_holder(FLOPS_DB_PORT)
    except FlopsError:  # the engine does not answer: it runs no container on that port
        foreign = None
    if foreign is not None:
        project.owner(FLOPS_DB_SERVICE, FLOPS_DB_PORT)  # the refusal that names the holder
    client = flopsdb.client(project)
    try:
        return read_flops_ids(client[FLOPS_DB])
    finally:
        client.close()


def _short(exc: Exception) -> str:
    """pymongo's first clause (it appends timeouts and the whole topology), or a refusal's
    (the port's holder)."""
    text = str(exc)  # a FlopsError's str is its message
    return text.split(" (configured")[0].split(", Timeout:")[0].split(": refusing")[0][:200]


def flops_apps_plan(
    s: Settings,
    *,
    without_db: bool = False,
    strict: bool = True,
    system_manager: SystemManager | None = None,
    flops_ids: Callable[[Any], FlopsIds] = read_flops_db,
) -> AppsPlan:
    """List Oakestra's apps and decide which are FLOps'; reads only.

    ``strict``: a FLOps DB that cannot be read stops with one line (clear-apps); otherwise
    (the listing) FLOps' names and namespaces alone decide, and ``identification`` says so.
    ``without_db``: do not read the FLOps DB at all.
    """
    from pymongo.errors import PyMongoError

    sm = system_manager or _client(s)
    apps = sm.applications()
    names_only = "FLOps' names and namespaces only"
    ids: FlopsIds | None = None
    if without_db:
        how = f"{names_only} (--without-db: the FLOps DB was not read)"
    else:
        try:
            ids = flops_ids(s)
            how = (
                f"ids in the FLOps DB ({len(ids.apps)} app ids, {len(ids.services)} service "
                "ids), then FLOps' names and namespaces"
            )
        except (PyMongoError, FlopsError) as exc:
            if strict and isinstance(exc, FlopsError):
                raise
            if strict:
                raise FlopsError(
                    f"cannot read the FLOps DB (Mongo database 'flops', port 10027: "
                    f"{_short(exc)}): FLOps' apps are recognised first by the ids it holds; "
                    "start it with 'inv up', or pass --without-db to go by FLOps' names and "
                    "namespaces only; nothing was deleted"
                ) from None
            how = f"{names_only}: the FLOps DB could not be read ({_short(exc)})"
    return AppsPlan(
        url=sm.url,
        user=sm.user,
        identification=how,
        verdicts=recognise(apps, ids, sm.user),
        system_manager=sm,
    )


def _client(s: Settings) -> SystemManager:
    from . import env as envmod
    from .oakestra import system_manager

    return system_manager(s, envmod.resolve_addresses(s).values["SYSTEM_MANAGER_IP"])


def clear_apps(
    s: Settings, plan: AppsPlan, dry: bool = False, changes: ChangeLog | None = None
) -> list[Outcome]:
    """Undeploy and delete the plan's FLOps apps; verify; report kept apps with the reason.

    Before the first delete the listing is read again: an app that vanished since the plan
    was made stops the run with one line and nothing deleted. An app that vanishes while
    others are being deleted is reported as failed, and the run goes on. Every delete is
    recorded in ``changes`` (the run's change log), planned under ``dry``.
    """
    log = changes if changes is not None else ChangeLog()

    def record(v: Verdict) -> None:
        log.record(Change(HOST, "clear-apps", f"undeploy and delete {v.app.label}", done=not dry))

    sm = plan.system_manager or _client(s)
    kept = [ok(HOST, "kept", f"{v.app.label}: {v.reason}") for v in plan.kept]
    blocked = [
        failed(HOST, "clear-apps", f"cannot delete {v.app.label}: {v.reason}") for v in plan.blocked
    ]
    if not plan.doomed:
        return [
            ok(HOST, "clear-apps", f"no FLOps apps among {len(plan.verdicts)} apps at {plan.url}"),
            *blocked,
            *kept,
        ]
    if dry:
        for v in plan.doomed:
            record(v)
        return (
            [
                changed(
                    HOST,
                    "clear-apps",
                    f"would undeploy and delete {v.app.label} {_services(v.app)} ({v.reason})",
                )
                for v in plan.doomed
            ]
            + blocked
            + kept
        )
    listed = {a.id for a in sm.applications()}
    gone = [v.app.label for v in plan.doomed if v.app.id not in listed]
    if gone:
        raise FlopsError(
            f"{len(gone)} of the apps to delete vanished since the listing "
            f"({gone[0]}): someone else changed Oakestra meanwhile; nothing was "
            "deleted: run clear-apps again to see the current list"
        )
    outcomes: list[Outcome] = []
    deleted: list[Verdict] = []
    for i, v in enumerate(plan.doomed):
        try:
            sm.delete_application(v.app.id)
        except ApiError as exc:
            outcomes.append(failed(HOST, "clear-apps", _refusal(sm, v, exc)))
            continue
        except FlopsError as exc:  # unreachable mid-run: stop, say what was not tried
            rest = ", ".join(w.app.label for w in plan.doomed[i:])
            outcomes.append(failed(HOST, "clear-apps", f"{exc.message} (not deleted: {rest})"))
            break
        deleted.append(v)
        record(v)
        outcomes.append(
            changed(
                HOST,
                "clear-apps",
                f"undeployed and deleted {v.app.label} {_services(v.app)} ({v.reason})",
            )
        )
    if deleted:
        try:
            listed = {a.id for a in sm.applications()}
        except FlopsError as exc:
            outcomes.append(
                failed(HOST, "verify", f"cannot list the apps again to verify: {exc.message}")
            )
            listed = set()
        for v in deleted:
            if v.app.id in listed:
                outcomes.append(
                    failed(
                        HOST,
                        "verify",
                        f"{v.app.label} is still listed after its delete was accepted",
                    )
                )
    return outcomes + blocked + kept


def _refusal(sm: SystemManager, v: Verdict, exc: ApiError) -> str:
    """Why a delete failed: the app vanished meanwhile, or the System Manager refused."""
    answer = f"the System Manager answered {exc.message}"
    if exc.status in (404, 501):
        try:
            listed = {a.id for a in sm.applications()}
        except FlopsError:
            listed = {v.app.id}
        if v.app.id not in listed:
            return (
                f"{v.app.label} vanished before it could be deleted ({answer} and no "
                "longer lists it): someone else removed it meanwhile"
            )
        return (
            f"{answer} to deleting {v.app.label}, which it still lists: it deletes only "
            f"apps of the logged-in user {sm.user!r} (owner: {v.app.owner or 'unknown'})"
        )
    return f"{answer} to deleting {v.app.label}"
