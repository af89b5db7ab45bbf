"""The FLOps manager's database (Mongo database ``flops``) and ``redb``.

``redb`` asks the manager to reset its database through its own API (upstream's
``DELETE /api/flops/database/``), and drops the collections directly when the manager does
not answer. Both targets are published ports; before deleting anything it proves that the
container behind each port is this stack's own (``Project.owner``), so a DELETE never goes
to whatever else happens to answer on 5072 or 10027.
"""

from __future__ import annotations

import json
from typing import Any

from .. import httpclient
from ..errors import FlopsError
from ..outcome import Outcome, changed
from .project import Project
from .services import FLOPS_DB, FLOPS_DB_PORT, FLOPS_DB_SERVICE, MANAGER, MANAGER_PORT

WHAT = (
    "every collection of the FLOps manager database 'flops' (MLflow, registry and "
    "artifacts are kept)"
)


def client(project: Project) -> Any:
    import pymongo

    wait_ms = int(project.s.stack.db_timeout * 1000)
    address = project.address()
    return pymongo.MongoClient(
        f"[{address}]" if ":" in address else address,  # pymongo parses a bare IPv6 as host:port
        FLOPS_DB_PORT,
        serverSelectionTimeoutMS=wait_ms,
        connectTimeoutMS=wait_ms,
        directConnection=True,
    )


def collections(project: Project) -> list[str]:
    """The collections of the FLOps database (raises FlopsError when Mongo does not answer)."""
    from pymongo.errors import PyMongoError

    try:
        mongo = client(project)
        try:
            names: list[str] = mongo[FLOPS_DB].list_collection_names()
            return names
        finally:
            mongo.close()
    except PyMongoError as exc:
        raise FlopsError(
            f"the FLOps database does not answer on port {FLOPS_DB_PORT} "
            f"({exc}): start it with 'inv up'"
        ) from None


def holds(project: Project) -> bool:
    """True when the FLOps database (and so its manager) is placed on this engine."""
    return FLOPS_DB_SERVICE in project.services


def redb(project: Project) -> list[Outcome]:
    """Empty the Mongo database ``flops`` of this stack, and prove it is empty (nothing to do
    on an engine the database is not placed on)."""
    if not holds(project):
        return []
    manager_url = project.url(MANAGER_PORT)
    summary = (
        f"DELETE {manager_url}/api/flops/database/ (else drop every "
        "collection of Mongo database 'flops')"
    )
    if project.dry:
        project.act(summary, lambda: None, step="redb")
        return [changed(project.where, "redb", "would empty the FLOps database 'flops'")]
    db = project.owner(FLOPS_DB_SERVICE, FLOPS_DB_PORT)  # checked before anything is deleted

    def empty() -> str:
        how = _via_manager(project)
        if how is None:
            if project.owner(FLOPS_DB_SERVICE, FLOPS_DB_PORT).id != db.id:
                raise FlopsError(f"{FLOPS_DB_SERVICE} was replaced while resetting: run redb again")
            how = _direct(project)
        return how

    how = project.act(summary, empty, step="redb")
    left = collections(project)
    if left:
        raise FlopsError(f"FLOps database still has collections after reset: {', '.join(left[:3])}")
    return [
        changed(
            project.where,
            "redb",
            f"FLOps database 'flops' emptied ({how}); other databases untouched",
        )
    ]


def _via_manager(project: Project) -> str | None:
    """The manager's own reset; None when this stack's manager cannot do it."""
    try:
        project.owner(MANAGER, MANAGER_PORT)
    except FlopsError as exc:
        project.progress(f"{str(exc).split(':')[0]}: resetting the database directly")
        return None
    body = json.dumps({"customerID": "Admin"}).encode()
    project.progress("DELETE /api/flops/database/ on the FLOps manager")
    try:  # no proxy, no redirect (httpclient): the DELETE reaches the proven manager or nothing
        answer = httpclient.request(
            "DELETE",
            project.url(MANAGER_PORT) + "/api/flops/database/",
            headers={"Content-Type": "application/json"},
            body=body,
            timeout=30,
        )
    except httpclient.HttpFailure as exc:
        project.progress(f"manager does not answer ({exc}): resetting the database directly")
        return None
    if answer.status == 200:
        return "through the FLOps manager API"
    project.progress(f"manager answered {answer.status}: resetting the database directly")
    return None


def _direct(project: Project) -> str:
    from pymongo.errors import PyMongoError

    try:
        mongo = client(project)
        try:
            db = mongo[FLOPS_DB]
            for name in db.list_collection_names():
                db.drop_collection(name)
        finally:
            mongo.close()
    except PyMongoError as exc:
        raise FlopsError(
            f"cannot reach the FLOps database on port {FLOPS_DB_PORT} ({exc}): "
            "start it with 'inv up' and run redb again"
        ) from None
    return "directly in Mongo"
