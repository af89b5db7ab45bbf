"""The System Manager client and the FLOps-app recognition, without Docker.

Client tests replay the answers upstream's code builds (tests/unit/data/system_manager/,
see its README); plan and clear tests run against the testbed's stand-in in this process.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from flops_tasks import oakestra_apps as OA
from flops_tasks.errors import FlopsError
from flops_tasks.oakestra import ApiError, Application, Service, SystemManager, decode, password
from flops_tasks.outcome import Status

from .sm_standin import USERS, Running, app

DATA = Path(__file__).parent / "data" / "system_manager"
SECRET = "s3cr3t-Pa55-do-not-print"


def recorded(name: str) -> bytes:
    return (DATA / name).read_bytes()


class Replay:
    """A transport answering (method, path) from a queue of (status, body); records calls."""

    def __init__(self, answers: dict[tuple[str, str], list[tuple[int, bytes]]]) -> None:
        self.answers = {k: list(v) for k, v in answers.items()}
        self.calls: list[tuple[str, str, dict, bytes | None]] = []

    def __call__(self, method, url, headers, body, timeout):
        path = "/" + url.split("/", 3)[3]
        self.calls.append((method, path, dict(headers), body))
        queue = self.answers.get((method, path))
        if not queue:
            raise AssertionError(f"unexpected {method} {path}")
        return queue.pop(0) if len(queue) > 1 else queue[0]


LOGIN = ("POST", "/api/auth/login")
APPS = ("GET", "/api/applications/")
JOBS = ("GET", "/api/services/")


def client(replay: Replay, secret: str = SECRET) -> SystemManager:
    return SystemManager(
        "192.0.2.7", 10000, "Admin", secret, "environment variable X", timeout=1, transport=replay
    )


def ok_answers() -> dict:
    return {
        LOGIN: [(200, recorded("login_ok.json"))],
        APPS: [(200, recorded("applications.json"))],
        JOBS: [(200, recorded("services.json"))],
    }


# -- the client -----------------------------------------------------------------------------
def test_lists_decode_the_json_string_bodies_and_attach_services():
    replay = Replay(ok_answers())
    apps = client(replay).applications()
    assert [(a.name, a.namespace, a.owner) for a in apps] == [
        ("observatory", "observatory", "Admin"),
        ("projdd1d95927a2b", "proj", "Admin"),
        ("webshop", "shop", "Admin"),
    ]
    observatory = apps[0]
    assert observatory.id == "6650a1b2c3d4e5f601020301"
    assert [(s.name, s.namespace, s.image, s.instances) for s in observatory.services] == [
        (
            "trackinge3afed0047b0",
            "tracking",
            "ghcr.io/oakestra/addon-flops/tracking-server:latest",
            1,
        ),
        ("observb98c287ecf1e", "observ", "ghcr.io/oakestra/addon-flops/project-observer:latest", 1),
    ]
    assert apps[1].services[0].instances == 0 and apps[2].services == ()


def test_the_password_travels_only_in_the_login_body():
    replay = Replay(ok_answers())
    sm = client(replay)
    sm.applications()
    (method, path, headers, body), *rest = replay.calls
    assert (method, path) == LOGIN and "Authorization" not in headers
    assert json.loads(body) == {"username": "Admin", "password": SECRET}
    token = json.loads(recorded("login_ok.json"))["token"]
    assert [c[2]["Authorization"] for c in rest] == [f"Bearer {token}"] * 2
    assert all(SECRET.encode() not in (c[3] or b"") for c in rest)
    assert SECRET not in repr(sm)


def test_wrong_credentials_are_one_line_without_the_password():
    replay = Replay({LOGIN: [(401, recorded("login_401.json"))]})
    with pytest.raises(ApiError) as err:
        client(replay).applications()
    message = str(err.value)
    assert "refused the login of user 'Admin' (HTTP 401" in message
    assert "flops.oakestra.password_env" in message and "nothing was deleted" in message
    assert SECRET not in message and "\n" not in message


def test_unreachable_system_manager_is_one_line():
    def refused(*_):
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    with pytest.raises(FlopsError) as err:
        client(refused).applications()
    assert "at http://192.0.2.7:10000 does not answer (" in str(err.value)
    assert "SYSTEM_MANAGER_IP" in str(err.value) and SECRET not in str(err.value)


def test_something_else_on_the_port_is_named():
    replay = Replay({LOGIN: [(200, b"<html>hello</html>")]})
    with pytest.raises(FlopsError, match="no JSON: is it Oakestra's System Manager"):
        client(replay).applications()


def test_a_user_without_the_admin_role_is_told_why():
    replay = Replay({**ok_answers(), APPS: [(403, recorded("forbidden_403.json"))]})
    with pytest.raises(ApiError, match="You have not enough permissions!.*role Admin"):
        client(replay).applications()


def test_an_expired_token_means_one_new_login():
    expired = json.dumps({"msg": "Token has expired"}).encode()
    replay = Replay({**ok_answers(), APPS: [(401, expired), (200, recorded("applications.json"))]})
    assert len(client(replay).applications()) == 3
    assert [c[:2] for c in replay.calls] == [LOGIN, APPS, LOGIN, APPS, JOBS]


def test_delete_reports_the_status_of_a_refusal():
    path = ("DELETE", "/api/application/6650a1b2c3d4e5f601020301")
    replay = Replay(
        {
            **ok_answers(),
            path: [(200, recorded("delete_ok.json")), (501, recorded("delete_501.json"))],
        }
    )
    sm = client(replay)
    assert sm.delete_application("6650a1b2c3d4e5f601020301") == "Application Deleted"
    with pytest.raises(ApiError) as err:
        sm.delete_application("6650a1b2c3d4e5f601020301")
    assert err.value.status == 501 and "Not Implemented" in str(err.value)


def test_password_comes_from_the_variable_else_oakestras_default(monkeypatch):
    monkeypatch.setenv("FLOPS_TEST_PW", SECRET)
    assert password("FLOPS_TEST_PW") == (SECRET, "environment variable FLOPS_TEST_PW")
    monkeypatch.delenv("FLOPS_TEST_PW")
    value, source = password("FLOPS_TEST_PW")
    assert value == "Admin" and "FLOPS_TEST_PW is not set" in source


# -- recognition ------------------------------------------------------------------------------
def A(name, namespace, owner="Admin", app_id="a1", services=()):
    return Application(
        app_id,
        name,
        namespace,
        owner,
        tuple(services),
        tuple(Service(s, s, "x", "img", 1) for s in services),
    )


IDS = OA.FlopsIds(
    {"p1": "FLOpsProject.app_id", "o1": "FLOpsObservatory.app_id"},
    {"svc-tracking": "TrackingServer.service_id"},
)


@pytest.mark.parametrize(
    "application, ids, action, needle",
    [
        (A("proj1a2b3c4d5e6f", "proj", app_id="p1"), IDS, "delete", "FLOpsProject.app_id"),
        (A("renamed", "custom", app_id="p1"), IDS, "delete", "id in FLOps DB"),
        (
            A("obs", "x", app_id="z", services=("svc-tracking",)),
            IDS,
            "delete",
            "TrackingServer.service_id",
        ),
        (
            A("observatory", "observatory", app_id="o1", owner="alice"),
            IDS,
            "blocked",
            "flops.oakestra.user to 'alice'",
        ),
        (A("observatory", "observatory", app_id="zz"), IDS, "delete", "FLOps' name"),
        (A("helper", "helper", app_id="zz"), None, "delete", "namespace 'helper'"),
        (A("proj1a2b3c4d5e6f", "proj", app_id="zz"), None, "delete", "namespace 'proj'"),
        (A("proj1a2b3c", "proj", app_id="zz"), None, "keep", "proj + 12 hex digits"),
        (A("myproj", "proj", app_id="zz"), IDS, "keep", "name 'myproj' is not FLOps'"),
        (
            A("observatory", "observatory", app_id="zz", owner="alice"),
            IDS,
            "keep",
            "owned by 'alice'",
        ),
        (A("webshop", "shop", app_id="zz"), IDS, "keep", "does not hold its id"),
        (A("helper", "Helper", app_id="zz"), None, "keep", "namespace 'Helper'"),
    ],
    ids=[
        "db-project",
        "db-id-any-name",
        "db-service",
        "db-other-owner",
        "name-observatory",
        "name-helper-no-db",
        "name-project",
        "short-project-name",
        "namespace-not-name",
        "other-owner-lookalike",
        "other-app",
        "case-matters",
    ],
)
def test_recognise(application, ids, action, needle):
    (verdict,) = OA.recognise([application], ids, "Admin")
    assert verdict.action == action
    assert needle in verdict.reason


class FakeCollection:
    def __init__(self, docs):
        self.docs = docs

    def find(self, flt):
        assert flt == {}
        return [dict(d) for d in self.docs]


class FakeDb(dict):
    def list_collection_names(self):
        return list(self)


def test_read_flops_ids_follows_upstreams_collections():
    # documents as upstream's model_dump() writes them (field names, not aliases)
    db = FakeDb(
        {
            "FLOpsProject": FakeCollection(
                [
                    {"app_id": "p1", "flops_project_id": "p1", "app_name": "proj1a2b3c4d5e6f"},
                    {"app_id": "", "flops_project_id": ""},
                ]
            ),  # added before the app was created
            "FLOpsObservatory": FakeCollection([{"app_id": "o1", "customer_id": "Admin"}]),
            "FLOpsHelperApp": FakeCollection([{"app_id": "h1", "customer_id": "Admin"}]),
            "TrackingServer": FakeCollection([{"service_id": "t1", "customer_id": "Admin"}]),
            "FLOpsProjectObserver": FakeCollection(
                [{"service_id": "s1", "flops_project_id": "p2"}]
            ),
            "FLLearners": FakeCollection([{"service_id": "l1", "flops_project_id": "p1"}]),
        }
    )
    ids = OA.read_flops_ids(db)
    assert ids.apps == {
        "p1": "FLOpsProject.app_id",
        "o1": "FLOpsObservatory.app_id",
        "h1": "FLOpsHelperApp.app_id",
        "p2": "FLOpsProjectObserver.flops_project_id",
    }
    assert ids.services == {
        "t1": "TrackingServer.service_id",
        "s1": "FLOpsProjectObserver.service_id",
        "l1": "FLLearners.service_id",
    }


# -- plan and clear against the stand-in ------------------------------------------------------
FLOPS_PROJ = app(
    "6650a1b2c3d4e5f601020303",
    "projdd1d95927a2b",
    "proj",
    services=(
        ("builderb98c287ecf1e", "builder", "ghcr.io/oakestra/addon-flops/image-builder:latest"),
    ),
)
FLOPS_OBS = app(
    "6650a1b2c3d4e5f601020301",
    "observatory",
    "observatory",
    services=(
        ("trackinge3afed0047b0", "tracking", "ghcr.io/oakestra/addon-flops/tracking-server:latest"),
    ),
)
FLOPS_HELPER = app("6650a1b2c3d4e5f601020302", "helper", "helper")
OTHER = app(
    "6650a1b2c3d4e5f601020310", "webshop", "shop", services=(("frontend", "shop", "nginx:1.27"),)
)
ALICE_OBS = app("6650a1b2c3d4e5f601020312", "observatory", "observatory", owner="alice")
DB_IDS = OA.FlopsIds({FLOPS_PROJ["applicationID"]: "FLOpsProject.app_id"}, {})
SETTINGS = SimpleNamespace(oakestra_user="Admin")


@pytest.fixture
def sm_standin():
    running = Running(
        {"users": USERS, "applications": [FLOPS_PROJ, FLOPS_OBS, FLOPS_HELPER, OTHER, ALICE_OBS]}
    )
    yield running
    running.stop()


def plan_for(running: Running, ids=DB_IDS, **kw) -> OA.AppsPlan:
    sm = SystemManager("127.0.0.1", running.port, "Admin", "Admin", "test", timeout=5)
    return OA.flops_apps_plan(SETTINGS, system_manager=sm, flops_ids=lambda _: ids, **kw)


FLOPS = {FLOPS_PROJ["applicationID"], FLOPS_OBS["applicationID"], FLOPS_HELPER["applicationID"]}
KEPT = {OTHER["applicationID"], ALICE_OBS["applicationID"]}


def test_clear_apps_deletes_flops_apps_only_and_a_second_run_changes_nothing(sm_standin):
    plan = plan_for(sm_standin)
    assert {v.app.id for v in plan.doomed} == FLOPS
    assert "1 app ids" in plan.identification
    outcomes = OA.clear_apps(SETTINGS, plan)
    assert sorted(sm_standin.deleted_ids()) == sorted(FLOPS)
    assert sm_standin.app_ids() == KEPT
    assert [o.status for o in outcomes].count(Status.CHANGED) == 3
    kept = [o for o in outcomes if o.step == "kept"]
    assert len(kept) == 2 and all(o.status is Status.OK for o in kept)
    assert any("owned by 'alice'" in o.detail for o in kept)
    # the services went with their apps (delete_app deletes each service first)
    state = sm_standin.control("state")
    assert {s["microservice_name"] for s in state["services"]} == {"frontend"}
    again = OA.clear_apps(SETTINGS, plan_for(sm_standin))
    assert not any(o.changed or o.bad for o in again)
    assert "no FLOps apps among 2 apps" in again[0].detail


def test_dry_clear_apps_plans_from_the_real_listing_and_deletes_nothing(sm_standin):
    outcomes = OA.clear_apps(SETTINGS, plan_for(sm_standin), dry=True)
    planned = [o.detail for o in outcomes if o.changed]
    assert len(planned) == 3 and all(d.startswith("would undeploy and delete") for d in planned)
    assert any("trackinge3afed0047b0/tracking" in d for d in planned)
    assert sm_standin.deleted_ids() == [] and sm_standin.app_ids() == FLOPS | KEPT


def test_an_app_that_vanished_before_deleting_stops_the_run_with_nothing_deleted(sm_standin):
    plan = plan_for(sm_standin)
    sm_standin.control("vanish", {"applicationID": FLOPS_HELPER["applicationID"], "after_lists": 1})
    with pytest.raises(FlopsError) as err:
        OA.clear_apps(SETTINGS, plan)
    assert "vanished since the listing (helper" in str(err.value)
    assert "nothing was deleted" in str(err.value)
    assert sm_standin.deleted_ids() == []


def test_an_app_that_vanishes_mid_run_is_reported_and_the_others_are_deleted(sm_standin):
    plan = plan_for(sm_standin)
    first, second, third = (v.app.id for v in plan.doomed)
    sm_standin.control("vanish", {"applicationID": second, "after_deletes": 1})
    outcomes = OA.clear_apps(SETTINGS, plan)
    bad = [o for o in outcomes if o.bad]
    assert len(bad) == 1 and "vanished before it could be deleted" in bad[0].detail
    assert "501" in bad[0].detail
    assert sm_standin.deleted_ids() == [first, third]


def test_a_flops_app_of_another_user_is_a_failure_not_a_silent_keep(sm_standin):
    ids = OA.FlopsIds({ALICE_OBS["applicationID"]: "FLOpsObservatory.app_id"}, {})
    plan = plan_for(sm_standin, ids=ids)
    assert [v.app.id for v in plan.blocked] == [ALICE_OBS["applicationID"]]
    outcomes = OA.clear_apps(SETTINGS, plan)
    bad = [o for o in outcomes if o.bad]
    assert len(bad) == 1 and "flops.oakestra.user to 'alice'" in bad[0].detail
    assert ALICE_OBS["applicationID"] in sm_standin.app_ids()


def test_an_unreadable_flops_db_stops_clear_apps_but_not_the_listing(sm_standin):
    def unreadable(_):
        raise ServerSelectionTimeoutError(
            "127.0.0.1:10027: [Errno 111] Connection refused "
            "(configured timeouts: connectTimeoutMS: 5000.0ms)"
        )

    def sm():
        return SystemManager("127.0.0.1", sm_standin.port, "Admin", "Admin", "test")

    with pytest.raises(FlopsError) as err:
        OA.flops_apps_plan(SETTINGS, system_manager=sm(), flops_ids=unreadable)
    message = str(err.value)
    assert "cannot read the FLOps DB" in message and "--without-db" in message
    assert "Connection refused" in message and "configured timeouts" not in message
    plan = OA.flops_apps_plan(SETTINGS, strict=False, flops_ids=unreadable, system_manager=sm())
    assert plan.identification.startswith(
        "FLOps' names and namespaces only: the FLOps DB could not be read"
    )
    assert {v.app.id for v in plan.doomed} == FLOPS
    assert sm_standin.deleted_ids() == []


def test_a_flops_db_port_held_by_another_container_stops_clear_apps(sm_standin):
    def foreign(_):
        raise FlopsError(
            "port 10027 on 127.0.0.1 is held by container other-mongo (project "
            "none), not by flops_db of the stack flops: refusing to touch it; "
            "nothing was deleted (start the stack with 'inv up')"
        )

    sm = SystemManager("127.0.0.1", sm_standin.port, "Admin", "Admin", "test")
    with pytest.raises(FlopsError) as err:
        OA.flops_apps_plan(SETTINGS, system_manager=sm, flops_ids=foreign)
    message = str(err.value)
    assert message.startswith("port 10027 on 127.0.0.1 is held by container other-mongo")
    assert "refusing to touch it; nothing was deleted" in message
    plan = OA.flops_apps_plan(SETTINGS, strict=False, flops_ids=foreign, system_manager=sm)
    assert "could not be read (port 10027 on 127.0.0.1 is held by" in plan.identification
    assert sm_standin.deleted_ids() == []


# -- the stand-in answers as upstream's code does ---------------------------------------------
def _raw(running: Running, method: str, path: str, payload=None, token=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(running.url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_standin_answers_have_upstreams_shapes(sm_standin):
    def same(body: bytes, name: str) -> bool:
        return json.loads(body) == json.loads(recorded(name))

    status, body = _raw(
        sm_standin, "POST", "/api/auth/login", {"username": "Admin", "password": "wrong"}
    )
    assert status == 401 and same(body, "login_401.json")
    status, body = _raw(sm_standin, "GET", "/api/applications/")
    assert status == 401 and same(body, "missing_token_401.json")
    status, body = _raw(
        sm_standin, "POST", "/api/auth/login", {"username": "alice", "password": "alice"}
    )
    alice = json.loads(body)["token"]
    status, body = _raw(sm_standin, "GET", "/api/applications/", token=alice)
    assert status == 403 and same(body, "forbidden_403.json")
    status, body = _raw(
        sm_standin, "POST", "/api/auth/login", {"username": "Admin", "password": "Admin"}
    )
    assert status == 200 and set(json.loads(body)) == set(json.loads(recorded("login_ok.json")))
    token = json.loads(body)["token"]
    for path, name in (
        ("/api/applications/", "applications.json"),
        ("/api/services/", "services.json"),
    ):
        status, body = _raw(sm_standin, "GET", path, token=token)
        assert status == 200 and isinstance(json.loads(body), str)  # a JSON string
        got, want = decode(body), decode(recorded(name))
        assert set(got[0]) == set(want[0]), path  # the same fields
        assert all(isinstance(d["_id"], dict) and set(d["_id"]) == {"$oid"} for d in got)
    status, body = _raw(
        sm_standin, "DELETE", "/api/application/000000000000000000000000", token=token
    )
    assert status == 501 and same(body, "delete_501.json")
    # an app of another user cannot be deleted either (get_app_by_id filters by userId)
    status, body = _raw(
        sm_standin, "DELETE", f"/api/application/{ALICE_OBS['applicationID']}", token=token
    )
    assert status == 501
    sla = {
        "sla_version": "v2.0",
        "customerID": "Admin",
        "applications": [
            {
                "applicationID": "",
                "application_name": "observatory",
                "application_namespace": "observatory",
                "application_desc": "",
                "microservices": [],
            }
        ],
    }
    status, body = _raw(sm_standin, "POST", "/api/application/", sla, token=token)
    assert status == 409 and same(body, "create_409.json")
    status, body = _raw(
        sm_standin, "DELETE", f"/api/application/{FLOPS_OBS['applicationID']}", token=token
    )
    assert status == 200 and same(body, "delete_ok.json")
    status, body = _raw(sm_standin, "POST", "/api/application/", sla, token=token)
    assert status == 200
    created = [a for a in decode(body) if a["application_name"] == "observatory"]
    assert len(created) == 1 and created[0]["userId"] == "Admin"
    state = sm_standin.control("state")
    assert [r["application_name"] for r in state["refused"]] == ["observatory"]


def test_default_seed_has_flops_and_other_apps():
    seed = json.loads(
        (
            Path(__file__).resolve().parents[2] / "testbed" / "system_manager" / "seed.json"
        ).read_text()
    )
    running = Running(seed)
    try:
        sm = SystemManager("127.0.0.1", running.port, "Admin", "Admin", "test")
        plan = OA.flops_apps_plan(SETTINGS, system_manager=sm, without_db=True)
        assert {v.app.namespace for v in plan.doomed} == {"observatory", "helper", "proj"}
        assert len(plan.kept) == 3
    finally:
        running.stop()


def test_a_delete_the_system_manager_accepted_but_did_not_do_is_a_failure():
    deletes = {
        ("DELETE", f"/api/application/{i}"): [(200, recorded("delete_ok.json"))]
        for i in ("6650a1b2c3d4e5f601020301", "6650a1b2c3d4e5f601020303")
    }
    replay = Replay({**ok_answers(), **deletes})  # the listing never changes
    plan = OA.flops_apps_plan(SETTINGS, system_manager=client(replay), without_db=True)
    outcomes = OA.clear_apps(SETTINGS, plan)
    verify = [o for o in outcomes if o.step == "verify"]
    assert len(verify) == 2 and all(o.status is Status.FAILED for o in verify)
    assert "still listed after its delete was accepted" in verify[0].detail


def test_read_flops_ids_through_pymongo_against_the_testbeds_flops_db(tmp_path):
    """The same read against the flops_db stand-in the testbed runs (it refuses what it does
    not support, e.g. projections, instead of answering wrongly)."""
    import pymongo

    from .test_mongod_standin import Server

    server = Server(tmp_path).start()
    try:
        client = pymongo.MongoClient(
            "127.0.0.1", server.port, directConnection=True, serverSelectionTimeoutMS=5000
        )
        db = client["flops"]
        db["FLOpsObservatory"].insert_one(
            {"customer_id": "Admin", "app_id": "o1", "app_name": "observatory"}
        )
        db["TrackingServer"].insert_one({"customer_id": "Admin", "service_id": "t1", "ip": ""})
        ids = OA.read_flops_ids(db)
        client.close()
    finally:
        server.stop()
    assert ids == OA.FlopsIds(
        {"o1": "FLOpsObservatory.app_id"}, {"t1": "TrackingServer.service_id"}
    )
