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
   utils/common.py), created by the user FLOps logs in as (api/utils/login.py), and every
   service in it is one of FLOps' (``SERVICE_NAMES``): an app that only borrows FLOps' name
   is kept.

Every other app is kept, with the reason. Nothing here prints: the plan and the outcomes
are returned, and ``ui`` shows them.

Removing an app (``clear_apps``) is three steps, each verified before the next:
1. every instance of its services is undeployed on its own (``DELETE
   /api/service/<id>/instance/<n>``): Oakestra's app delete undeploys through a loop that
   skips every second instance (system-manager-python services/instance_management.py
   lines 102-106) and then deletes the job, so the skipped instance would keep running,
   unknown to the System Manager;
2. the app is deleted; its services are read again, and an instance still deployed is
   undeployed on its own;
3. the FLOps DB forgets the records that point at the deleted apps (``RECORD_LINKS``): the
   manager returns its stored observatory, helper app and tracking server
   (classes/apps/customer_facing_base.py ``get_app``, tracking_server/management.py
   ``get_tracking_server``) and would append the next project's services to an app id that
   no longer exists (Oakestra answers 400). Every other record is kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .changes import Change, ChangeLog
from .errors import FlopsError
from .oakestra import ApiError, Application, Service, SystemManager, valid_id
from .outcome import Outcome, changed, failed, ok, warning

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
# FLOps' services: service namespace (the ``namespace`` ClassVar of each class under
# flops_manager/classes/services/) -> (the service names it gives, the app namespace the
# service is added to). Names are a prefix + ``get_shortened_unique_id`` (12 hex digits).
_HEX = "[0-9a-f]{12}"
SERVICE_NAMES = {
    # observatory/tracking_server/main.py TrackingServer: "tracking" + id(customer)
    "tracking": (re.compile(rf"tracking{_HEX}\Z"), "observatory"),
    # observatory/project_observer.py FLOpsProjectObserver: "observ" + id(project)
    "observ": (re.compile(rf"observ{_HEX}\Z"), "observatory"),
    # helper/mock_data_provider.py MockDataProvider: "mockdp" + id(helper app)
    "mockdp": (re.compile(rf"mockdp{_HEX}\Z"), "helper"),
    # helper/trained_model.py TrainedModel: namespace + id(helper app)
    "trmodel": (re.compile(rf"trmodel{_HEX}\Z"), "helper"),
    # project/builders/base_builder.py (FL actors and trained-model image builders)
    "builder": (re.compile(rf"builder{_HEX}\Z"), "proj"),
    # project/learners/main.py FLLearners
    "flearner": (re.compile(rf"flearner{_HEX}\Z"), "proj"),
    # project/aggregators/classic_aggregator.py ClassicFLAggregator
    "aggr": (re.compile(rf"aggr{_HEX}\Z"), "proj"),
    # project/aggregators/root_aggregator.py RootFLAggregator ("raggr" + id) and
    # cluster_aggregator.py ClusterFLAggregator, whose namespace is "raggr" too but whose
    # names are "cag" + id(cluster id + project id)
    "raggr": (re.compile(rf"(raggr|cag){_HEX}\Z"), "proj"),
}
# What links a FLOps DB record to an Oakestra app (flops_manager/classes, ``model_dump()``
# field names): the app's own id (FLOpsApp.app_id; FLOpsProject.flops_project_id is the same
# id), the id of one of its services (FLOpsService.service_id), and for the tracking server
# its customer, whose observatory hosts it (tracking_server/management.py).
RECORD_LINKS = ("app_id", "flops_project_id", "service_id")
DELETE, KEEP, BLOCKED = "delete", "keep", "blocked"
# opens the FLOps DB (a pymongo ``Database``) for the time of a ``with`` block
FlopsDbOpener = Callable[[], AbstractContextManager[Any]]


@dataclass(frozen=True)
class Record:
    """One document of the FLOps DB, with the fields that link it to Oakestra."""

    collection: str
    oid: Any  # the document's ``_id`` (an ObjectId)
    links: tuple[tuple[str, str], ...]  # (field, value) of RECORD_LINKS that are set
    customer_id: str = ""

    def link(self, name: str) -> str:
        return dict(self.links).get(name, "")

    @property
    def label(self) -> str:
        shown = ", ".join(f"{k} {v}" for k, v in self.links) or "no app link"
        return f"{self.collection} record {self.oid} ({shown})"


@dataclass(frozen=True)
class FlopsIds:
    """What the FLOps DB knows: app id -> where, service id -> where, and its records."""

    apps: dict[str, str]
    services: dict[str, str]
    records: tuple[Record, ...] = ()


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def read_flops_ids(db: Any) -> FlopsIds:
    """Every app and service id in the FLOps DB (a pymongo ``Database``)."""
    apps: dict[str, str] = {}
    services: dict[str, str] = {}
    records: list[Record] = []
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
            records.append(
                Record(
                    collection=name,
                    oid=doc.get("_id"),
                    links=tuple((f, _text(doc.get(f))) for f in RECORD_LINKS if _text(doc.get(f))),
                    customer_id=_text(doc.get("customer_id")),
                )
            )
    return FlopsIds(apps, services, tuple(records))


def records_of(records: tuple[Record, ...], apps: list[Application]) -> list[tuple[Record, str]]:
    """The records that point at ``apps`` (deleted or about to be), each with the reason."""
    by_app = {a.id: a for a in apps}
    by_service = {sid: a for a in apps for sid in a.service_ids}
    found: list[tuple[Record, str]] = []
    gone_observatories: set[str] = set()
    for r in records:
        app = by_app.get(r.link("app_id")) or by_app.get(r.link("flops_project_id"))
        if app is not None:
            found.append((r, f"its app {app.label}"))
            if r.collection == "FLOpsObservatory" and r.customer_id:
                gone_observatories.add(r.customer_id)
            continue
        app = by_service.get(r.link("service_id"))
        if app is not None:
            found.append((r, f"its service {r.link('service_id')} of app {app.label}"))
    listed = {id(r) for r, _ in found}
    for r in records:  # tracking_server/management.py: one per customer, in its observatory
        if (
            id(r) not in listed
            and r.collection == "TrackingServer"
            and r.customer_id in gone_observatories
        ):
            found.append((r, f"the observatory of its customer {r.customer_id!r}"))
    return found


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
    # what the FLOps DB held when the plan was made (None: not read), and how to open it
    flops_ids: FlopsIds | None = field(default=None, repr=False, compare=False)
    flops_db: FlopsDbOpener | None = field(default=None, repr=False, compare=False)
    # remove the FLOps DB's records of the deleted apps (False: the caller empties the DB)
    forget: bool = True

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
        """What clear-apps deletes, one entry per app and, when it forgets them, per FLOps DB
        record (for the confirmation)."""
        apps = [f"Oakestra app {v.app.label} {_services(v.app)} ({v.reason})" for v in self.doomed]
        if not self.forget:
            return apps
        records = [
            f"FLOps DB {r.label}, which points at {why}"
            for r, why in records_of(self.flops_ids.records if self.flops_ids else (), self.apps)
        ]
        return apps + records

    @property
    def apps(self) -> list[Application]:
        return [v.app for v in self.doomed]

    def to_dict(self) -> dict:
        return {
            "system_manager": self.url,
            "user": self.user,
            "identification": self.identification,
            "applications": [v.to_dict() for v in self.verdicts],
        }


def flops_service(svc: Service, app: Application) -> bool:
    """True when ``svc`` has the name and namespace FLOps gives such a service, in an app of
    the namespace FLOps adds it to."""
    rule = SERVICE_NAMES.get(svc.namespace)
    return rule is not None and bool(rule[0].match(svc.name)) and rule[1] == app.namespace


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
        elif foreign := next((svc for svc in app.services if not flops_service(svc, app)), None):
            verdicts.append(
                Verdict(
                    app,
                    KEEP,
                    f"not FLOps': FLOps' name in namespace {app.namespace!r}, but its service "
                    f"{foreign.name}/{foreign.namespace} is none of the services FLOps adds "
                    f"to {app.namespace!r} apps",
                )
            )
        else:
            verdicts.append(
                Verdict(
                    app, DELETE, f"FLOps' app: FLOps' name in FLOps' namespace {app.namespace!r}"
                )
            )
    return verdicts


@contextmanager
def open_flops_db(s: Settings) -> Iterator[Any]:
    """The stack's FLOps DB (Mongo database ``flops``), after proving that the port it is
    reached on is published by this stack's own ``flops_db`` container, on the engine the
    docker CLI really talks to (``Project.owner``, as redb does): ids read from, or records
    removed in, another Mongo would be wrong. Raises FlopsError or pymongo's errors."""
    from .stack import flopsdb, placement
    from .stack.services import FLOPS_DB, FLOPS_DB_PORT, FLOPS_DB_SERVICE

    project = placement.project_for(placement.projects(s), FLOPS_DB_SERVICE)
    project.owner(FLOPS_DB_SERVICE, FLOPS_DB_PORT)
    client = flopsdb.client(project)
    try:
        yield client[FLOPS_DB]
    finally:
        client.close()


def read_flops_db(s: Settings) -> FlopsIds:
    """The ids in the stack's FLOps DB (see ``open_flops_db``)."""
    with open_flops_db(s) as db:
        return read_flops_ids(db)


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
    flops_db: FlopsDbOpener | None = None,
    forget: bool = True,
) -> AppsPlan:
    """List Oakestra's apps and decide which are FLOps'; reads only.

    ``strict``: a FLOps DB that cannot be read stops with one line (clear-apps); otherwise
    (the listing) FLOps' names and namespaces alone decide, and ``identification`` says so.
    ``without_db``: do not read the FLOps DB at all. ``flops_db`` opens the FLOps DB
    (default: the stack's, ``open_flops_db``). ``forget`` False: the caller empties the
    FLOps DB after the apps are gone, so clear-apps leaves its records alone.
    """
    from pymongo.errors import PyMongoError

    opener: FlopsDbOpener = flops_db or (lambda: open_flops_db(s))
    sm = system_manager or _client(s)
    apps = sm.applications()
    names_only = "FLOps' names and namespaces only"
    ids: FlopsIds | None = None
    if without_db:
        how = f"{names_only} (--without-db: the FLOps DB was not read)"
    else:
        try:
            with opener() as db:
                ids = read_flops_ids(db)
            how = (
                f"ids in the FLOps DB ({len(ids.apps)} app ids, {len(ids.services)} service "
                "ids), then FLOps' names and namespaces"
            )
        except (PyMongoError, FlopsError) as exc:
            if strict and isinstance(exc, FlopsError):  # the port's proof refused: say it all
                said = (exc.message or "").rstrip(".")
                if "nothing was deleted" not in said:
                    said += "; nothing was deleted"
                raise FlopsError(
                    f"cannot read the FLOps DB: {said}; or pass --without-db to go by FLOps' "
                    "names and namespaces only"
                ) from None
            if strict:
                raise FlopsError(
                    f"cannot read the FLOps DB (Mongo database 'flops', port 10027: "
                    f"{_short(exc)}): FLOps' apps are recognised first by the ids it holds, "
                    "and clear-apps removes its records of the apps it deletes; start it with "
                    "'inv up', or pass --without-db to go by FLOps' names and namespaces only; "
                    "nothing was deleted"
                ) from None
            how = f"{names_only}: the FLOps DB could not be read ({_short(exc)})"
    return AppsPlan(
        url=sm.url,
        user=sm.user,
        identification=how,
        verdicts=recognise(apps, ids, sm.user),
        system_manager=sm,
        flops_ids=ids,
        flops_db=None if ids is None else opener,
        forget=forget,
    )


def _client(s: Settings) -> SystemManager:
    from . import env as envmod
    from .oakestra import system_manager

    return system_manager(s, envmod.resolve_addresses(s).values["SYSTEM_MANAGER_IP"])


STALE = (
    "the FLOps DB was not read (--without-db): its records of the deleted apps stay, and the "
    "FLOps manager will reuse their stale ids (observatory, helper app, tracking server) for "
    "the next project until 'inv redb' empties it"
)


def _instances(app: Application) -> list[tuple[Service, int]]:
    return [(svc, n) for svc in app.services for n in svc.numbers]


def _instance_label(svc: Service, n: int, app: Application) -> str:
    return f"instance {n} of service {svc.name}/{svc.namespace} (app {app.name}, id {app.id})"


def clear_apps(
    s: Settings, plan: AppsPlan, dry: bool = False, changes: ChangeLog | None = None
) -> list[Outcome]:
    """``remove_apps``, with every change it made (or, under ``dry``, plans) recorded in
    ``changes``, the run's change log: each changed row is one confirmed change (an instance
    undeployed, an app deleted, a record forgotten), so the rows are the record."""
    rows = remove_apps(s, plan, dry)
    if changes is not None:
        for row in rows:
            if row.changed:
                changes.record(Change(row.host, row.step, row.detail, done=not dry))
    return rows


def remove_apps(s: Settings, plan: AppsPlan, dry: bool = False) -> list[Outcome]:
    """Undeploy every instance of the plan's FLOps apps, delete the apps, make the FLOps DB
    forget its records of them (unless the plan says the caller empties the DB); verify each
    step; report kept apps with the reason.

    Before the first change the listing is read again: an app that vanished since the plan
    was made, or an id that is not Oakestra's, stops the run with one line and nothing
    deleted. An instance that is still deployed after its undeploy was accepted stops the
    run before any app is deleted. An app that vanishes while others are being deleted is
    reported as failed, and the run goes on.
    """
    sm = plan.system_manager or _client(s)
    forget = plan.forget
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
    stale = [warning(HOST, "flops-db", STALE)] if plan.flops_ids is None and forget else []
    if dry:
        records = records_of(plan.flops_ids.records, plan.apps) if plan.flops_ids else []
        return (
            [
                changed(HOST, "undeploy", f"would undeploy {_instance_label(svc, n, v.app)}")
                for v in plan.doomed
                for svc, n in _instances(v.app)
            ]
            + [
                changed(
                    HOST,
                    "clear-apps",
                    f"would undeploy and delete {v.app.label} {_services(v.app)} ({v.reason})",
                )
                for v in plan.doomed
            ]
            + (
                [
                    changed(HOST, "flops-db", f"would remove {r.label}: it points at {why}")
                    for r, why in records
                ]
                if forget
                else []
            )
            + stale
            + blocked
            + kept
        )
    now = {a.id: a for a in sm.applications()}
    gone = [v.app.label for v in plan.doomed if v.app.id not in now]
    if gone:
        raise FlopsError(
            f"{len(gone)} of the apps to delete vanished since the listing "
            f"({gone[0]}): someone else changed Oakestra meanwhile; nothing was "
            "deleted: run clear-apps again to see the current list"
        )
    doomed = [Verdict(now[v.app.id], v.action, v.reason) for v in plan.doomed]
    for v in doomed:
        bad = next(
            (i for i in (v.app.id, *v.app.service_ids) if not valid_id(i)),
            None,
        )
        if bad is not None:
            raise FlopsError(
                f"{v.app.label}: the id {bad[:40]!r} is not an Oakestra id (24 hex digits) and "
                "would not be sent safely in a URL: is it Oakestra's System Manager? nothing "
                "was deleted"
            )
    outcomes = _undeploy(sm, doomed)
    if any(o.bad for o in outcomes):
        return outcomes + blocked + kept
    deleted: list[Verdict] = []
    for i, v in enumerate(doomed):
        try:
            sm.delete_application(v.app.id)
        except ApiError as exc:
            outcomes.append(failed(HOST, "clear-apps", _refusal(sm, v, exc)))
            continue
        except FlopsError as exc:  # unreachable mid-run: stop, say what was not tried
            rest = ", ".join(w.app.label for w in doomed[i:])
            outcomes.append(failed(HOST, "clear-apps", f"{exc.message} (not deleted: {rest})"))
            break
        deleted.append(v)
        outcomes.append(
            changed(
                HOST,
                "clear-apps",
                f"undeployed and deleted {v.app.label} {_services(v.app)} ({v.reason})",
            )
        )
    if deleted:
        outcomes += _verify_deleted(sm, deleted)
        if forget and plan.flops_db is not None:
            outcomes += forget_records(plan.flops_db, [v.app for v in deleted])
    return outcomes + (stale if deleted else []) + blocked + kept


def _undeploy(sm: SystemManager, doomed: list[Verdict]) -> list[Outcome]:
    """Undeploy every instance of the doomed apps on its own, then read the services again:
    the System Manager answers 200 whatever happened, so only the second read says which
    instances went. One still deployed is a failure, and no app may be deleted then."""
    asked = [(v.app, svc, n) for v in doomed for svc, n in _instances(v.app)]
    if not asked:
        return []
    for i, (app, svc, n) in enumerate(asked):
        try:
            sm.undeploy_instance(svc.id, n)
        except FlopsError as exc:
            return [
                *(_undeployed(a, s, m) for a, s, m in asked[:i]),
                failed(
                    HOST,
                    "undeploy",
                    f"{_instance_label(svc, n, app)}: the System Manager answered "
                    f"{exc.message}; no app was deleted, the FLOps DB is unchanged",
                ),
            ]
    try:
        services = sm.services()
    except FlopsError as exc:
        return [
            failed(
                HOST,
                "undeploy",
                f"cannot read the services again to verify the undeploys ({exc.message}); no "
                "app was deleted, the FLOps DB is unchanged",
            )
        ]

    def still(svc: Service, n: int) -> bool:
        return svc.id in services and n in services[svc.id].numbers

    outcomes = [_undeployed(app, svc, n) for app, svc, n in asked if not still(svc, n)]
    left = [(app, svc, n) for app, svc, n in asked if still(svc, n)]
    if left:
        app, svc, n = left[0]
        more = f" (and {len(left) - 1} more)" if len(left) > 1 else ""
        outcomes.append(
            failed(
                HOST,
                "undeploy",
                f"{_instance_label(svc, n, app)}{more} will not undeploy: the System Manager "
                "accepted the undeploy and still lists it; see its log and the cluster's; no "
                "app was deleted, the FLOps DB is unchanged",
            )
        )
    return outcomes


def _undeployed(app: Application, svc: Service, n: int) -> Outcome:
    return changed(HOST, "undeploy", f"undeployed {_instance_label(svc, n, app)}")


def _verify_deleted(sm: SystemManager, deleted: list[Verdict]) -> list[Outcome]:
    """The deleted apps are no longer listed; an instance of theirs still listed (Oakestra's
    delete skips every second one when it undeploys) is undeployed on its own."""
    outcomes: list[Outcome] = []
    try:
        listed = {a.id for a in sm.applications()}
        services = sm.services()
    except FlopsError as exc:
        return [failed(HOST, "verify", f"cannot list the apps again to verify: {exc.message}")]
    for v in deleted:
        if v.app.id in listed:
            outcomes.append(
                failed(
                    HOST,
                    "verify",
                    f"{v.app.label} is still listed after its delete was accepted",
                )
            )
        for sid in v.app.service_ids:
            svc = services.get(sid)
            for n in svc.numbers if svc else ():
                assert svc is not None
                what = _instance_label(svc, n, v.app)
                try:
                    sm.undeploy_instance(sid, n)
                except FlopsError as exc:
                    outcomes.append(
                        failed(HOST, "orphan", f"{what} is still deployed: {exc.message}")
                    )
                    continue
                outcomes.append(
                    changed(
                        HOST,
                        "orphan",
                        f"undeployed {what}, still deployed after its app was deleted",
                    )
                )
    return outcomes


def forget_records(opener: FlopsDbOpener, apps: list[Application]) -> list[Outcome]:
    """Remove the FLOps DB's records that point at ``apps`` (deleted), read afresh; verify
    none is left. Every other record is kept."""
    from pymongo.errors import PyMongoError

    try:
        with opener() as db:
            targets = records_of(read_flops_ids(db).records, apps)
            for r, _ in targets:
                db[r.collection].delete_one({"_id": r.oid})
            left = {
                (r.collection, str(r.oid)) for r, _ in records_of(read_flops_ids(db).records, apps)
            }
    except (PyMongoError, FlopsError) as exc:
        return [
            failed(
                HOST,
                "flops-db",
                f"the apps were deleted, but their records in the FLOps DB could not be "
                f"removed ({_short(exc)}): the manager would reuse their ids; run 'inv redb'",
            )
        ]
    outcomes = []
    for r, why in targets:
        if (r.collection, str(r.oid)) in left:
            outcomes.append(
                failed(HOST, "flops-db", f"{r.label} is still in the FLOps DB after its removal")
            )
        else:
            outcomes.append(changed(HOST, "flops-db", f"removed {r.label}: it pointed at {why}"))
    return outcomes


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
