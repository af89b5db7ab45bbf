"""The System Manager client and the FLOps-app recognition, without Docker.

Client tests replay the answers upstream's code builds (tests/unit/data/system_manager/,
see its README); plan and clear tests run against the testbed's stand-in in this process.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from contextlib import contextmanager, nullcontext
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

    def delete_one(self, flt):
        hit = next(d for d in self.docs if all(d.get(k) == v for k, v in flt.items()))
        self.docs.remove(hit)


class FakeDb(dict):
    def list_collection_names(self):
        return list(self)


def fake_db(docs: dict[str, list[dict]]):
    """An opener of an in-memory FLOps DB holding ``docs`` (each given an ``_id``)."""
    db = FakeDb(
        {
            name: FakeCollection([{"_id": f"{name}-{i}", **d} for i, d in enumerate(items)])
            for name, items in docs.items()
        }
    )
    return lambda: nullcontext(db)


def failing_db(exc: Exception):
    @contextmanager
    def opener():
        raise exc
        yield

    return opener


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
DB_DOCS = {"FLOpsProject": [{"app_id": FLOPS_PROJ["applicationID"]}]}
SETTINGS = SimpleNamespace(oakestra_user="Admin")


@pytest.fixture
def sm_standin():
    running = Running(
        {"users": USERS, "applications": [FLOPS_PROJ, FLOPS_OBS, FLOPS_HELPER, OTHER, ALICE_OBS]}
    )
    yield running
    running.stop()


def plan_for(running: Running, docs=DB_DOCS, **kw) -> OA.AppsPlan:
    sm = SystemManager("127.0.0.1", running.port, "Admin", "Admin", "test", timeout=5)
    return OA.flops_apps_plan(SETTINGS, system_manager=sm, flops_db=fake_db(docs), **kw)


FLOPS = {FLOPS_PROJ["applicationID"], FLOPS_OBS["applicationID"], FLOPS_HELPER["applicationID"]}
KEPT = {OTHER["applicationID"], ALICE_OBS["applicationID"]}


def test_clear_apps_deletes_flops_apps_only_and_a_second_run_changes_nothing(sm_standin):
    plan = plan_for(sm_standin)
    assert {v.app.id for v in plan.doomed} == FLOPS
    assert "1 app ids" in plan.identification
    outcomes = OA.clear_apps(SETTINGS, plan)
    assert sorted(sm_standin.deleted_ids()) == sorted(FLOPS)
    assert sm_standin.app_ids() == KEPT
    steps = [o.step for o in outcomes if o.changed]
    # one undeploy per instance (builder, tracking), one delete per app, one record
    assert steps == ["undeploy"] * 2 + ["clear-apps"] * 3 + ["flops-db"], steps
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
    assert len(planned) == 6 and all(d.startswith("would ") for d in planned)
    assert sum(d.startswith("would undeploy and delete") for d in planned) == 3
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
    plan = plan_for(sm_standin, {"FLOpsObservatory": [{"app_id": ALICE_OBS["applicationID"]}]})
    assert [v.app.id for v in plan.blocked] == [ALICE_OBS["applicationID"]]
    outcomes = OA.clear_apps(SETTINGS, plan)
    bad = [o for o in outcomes if o.bad]
    assert len(bad) == 1 and "flops.oakestra.user to 'alice'" in bad[0].detail
    assert ALICE_OBS["applicationID"] in sm_standin.app_ids()


def test_an_unreadable_flops_db_stops_clear_apps_but_not_the_listing(sm_standin):
    unreadable = failing_db(
        ServerSelectionTimeoutError(
            "127.0.0.1:10027: [Errno 111] Connection refused "
            "(configured timeouts: connectTimeoutMS: 5000.0ms)"
        )
    )

    def sm():
        return SystemManager("127.0.0.1", sm_standin.port, "Admin", "Admin", "test")

    with pytest.raises(FlopsError) as err:
        OA.flops_apps_plan(SETTINGS, system_manager=sm(), flops_db=unreadable)
    message = str(err.value)
    assert "cannot read the FLOps DB" in message and "--without-db" in message
    assert "Connection refused" in message and "configured timeouts" not in message
    plan = OA.flops_apps_plan(SETTINGS, strict=False, flops_db=unreadable, system_manager=sm())
    assert plan.identification.startswith(
        "FLOps' names and namespaces only: the FLOps DB could not be read"
    )
    assert {v.app.id for v in plan.doomed} == FLOPS
    assert sm_standin.deleted_ids() == []


def test_a_flops_db_port_held_by_another_container_stops_clear_apps(sm_standin):
    foreign = failing_db(
        FlopsError(
            "port 10027 on 127.0.0.1 is held by container other-mongo (project "
            "none), not by flops_db of the stack flops: refusing to touch it; "
            "nothing was deleted (start the stack with 'inv up')"
        )
    )

    sm = SystemManager("127.0.0.1", sm_standin.port, "Admin", "Admin", "test")
    with pytest.raises(FlopsError) as err:
        OA.flops_apps_plan(SETTINGS, system_manager=sm, flops_db=foreign)
    message = str(err.value)
    assert message.startswith(
        "cannot read the FLOps DB: port 10027 on 127.0.0.1 is held by container other-mongo"
    )
    assert "refusing to touch it; nothing was deleted" in message and "--without-db" in message
    plan = OA.flops_apps_plan(SETTINGS, strict=False, flops_db=foreign, system_manager=sm)
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
    jobs = decode(recorded("services.json"))
    for job in jobs:
        job["instance_list"] = []
    undeployed = json.dumps(json.dumps(jobs)).encode()
    undeploys = {
        ("DELETE", f"/api/service/{i}/instance/0"): [(200, b'{"message": "ok"}')]
        for i in ("6650a1b2c3d4e5f6010203a1", "6650a1b2c3d4e5f6010203a2")
    }
    # the app listing never changes; the services lose their instances after the undeploys
    answers = {**ok_answers(), **deletes, **undeploys}
    answers[JOBS] = [answers[JOBS][0], answers[JOBS][0], (200, undeployed)]
    replay = Replay(answers)
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
    assert (ids.apps, ids.services) == (
        {"o1": "FLOpsObservatory.app_id"},
        {"t1": "TrackingServer.service_id"},
    )
    assert [(r.collection, r.links, r.customer_id) for r in ids.records] == [
        ("FLOpsObservatory", (("app_id", "o1"),), "Admin"),
        ("TrackingServer", (("service_id", "t1"),), "Admin"),
    ]


# -- the stand-in follows the real blueprints (what oak-cli meets) ---------------------------
def _login(running: Running, user: str = "Admin", **extra) -> str:
    status, body = _raw(
        running, "POST", "/api/auth/login", {"username": user, "password": user, **extra}
    )
    assert status == 200, body
    return json.loads(body)["token"]


def _headers(running: Running, method: str, path: str, token: str | None = None):
    """(status, headers, body) without following a redirect."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=5)
    try:
        conn.request(method, path, headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_standin_routes_follow_werkzeugs_rules(sm_standin):
    """Flask 2.1 / werkzeug 2.0.3, as pinned in system-manager-python/requirements.txt."""
    token = _login(sm_standin)
    # a rule with a trailing slash: 308 to it, for a method the rule allows
    status, headers, body = _headers(sm_standin, "GET", "/api/applications", token)
    assert status == 308 and headers["location"].endswith("/api/applications/")
    assert b"Redirecting..." in body
    status, headers, _ = _headers(sm_standin, "POST", "/api/application", token)
    assert status == 308 and headers["location"].endswith("/api/application/")
    # a method the matching rules do not allow: 405, as flask-smorest's JSON
    for method, path in (
        ("DELETE", "/api/applications"),
        ("DELETE", "/api/applications/"),
        ("GET", "/api/application/"),
        ("POST", f"/api/application/{OTHER['applicationID']}"),
    ):
        status, _, body = _headers(sm_standin, method, path, token)
        assert (status, json.loads(body)) == (405, {"code": 405, "status": "Method Not Allowed"})
    # no rule: 404 as JSON; a leaf rule does not take a trailing slash
    for path in ("/api/nothing", f"/api/service/{'0' * 24}/", "/api/applications/x/y"):
        status, _, body = _headers(sm_standin, "GET", path, token)
        assert (status, json.loads(body)) == (404, {"code": 404, "status": "Not Found"}), path
    status, headers, _ = _headers(sm_standin, "OPTIONS", "/api/applications/")
    assert status == 200 and set(headers["allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    # a route upstream has and the stand-in does not model says so
    status, body = _raw(sm_standin, "GET", "/api/users/", token=token)
    assert status == 501 and "does not model" in json.loads(body)["message"]


def test_standin_serves_single_services_instances_clusters_and_puts(sm_standin):
    token = _login(sm_standin)
    state = sm_standin.control("state")
    frontend = next(s for s in state["services"] if s["microservice_name"] == "frontend")
    sid = frontend["microserviceID"]
    # GET /api/service/<id>: the job as a JSON string, with the job-level status
    status, body = _raw(sm_standin, "GET", f"/api/service/{sid}", token=token)
    job = decode(body)
    assert status == 200 and isinstance(json.loads(body), str)
    assert job["_id"] == {"$oid": sid} and job["status"] == "RUNNING"
    assert [i["instance_number"] for i in job["instance_list"]] == [0]
    # DELETE /api/service/<id>/instance/<n>: 200 {"message": "ok"}, the instance goes
    status, body = _raw(sm_standin, "DELETE", f"/api/service/{sid}/instance/0", token=token)
    assert (status, json.loads(body)) == (200, {"message": "ok"})
    _, body = _raw(sm_standin, "GET", f"/api/service/{sid}", token=token)
    assert decode(body)["instance_list"] == []
    status, _ = _raw(sm_standin, "DELETE", f"/api/service/{sid}/instance/x", token=token)
    assert status == 500  # int("x") raises inside the view
    status, body = _raw(sm_standin, "GET", f"/api/service/{'0' * 24}", token=token)
    assert (status, json.loads(body)) == (404, {"code": 404, "status": "Not Found"})
    # PUT: the service update is commented out upstream (501, as JSON); an app update works
    sla = {"applications": [{"microservices": [{"microservice_name": "x"}]}]}
    status, body = _raw(sm_standin, "PUT", f"/api/service/{sid}", sla, token=token)
    assert (status, json.loads(body)) == (501, {"code": 501, "status": "Not Implemented"})
    update = {
        "application_name": "webshop2",
        "application_namespace": "shop",
        "microservices": [sid],
    }
    status, body = _raw(
        sm_standin, "PUT", f"/api/application/{OTHER['applicationID']}", update, token=token
    )
    assert (status, json.loads(body)) == (200, {"message": "Application is updated"})
    # GET /api/application/<id>: upstream's view falls through to None for a found app
    status, body = _raw(
        sm_standin, "GET", f"/api/application/{OTHER['applicationID']}", token=token
    )
    assert (status, json.loads(body)) == (200, None)
    # a service created with addresses carries RR_ip (generate_db_structure)
    svc = {
        "microservice_name": "obs",
        "microservice_namespace": "observ",
        "code": "img",
        "addresses": {"rr_ip": "10.30.1.2"},
    }
    status, body = _raw(
        sm_standin,
        "POST",
        "/api/service/",
        {"applications": [{"applicationID": OTHER["applicationID"], "microservices": [svc]}]},
        token=token,
    )
    assert status == 200
    _, body = _raw(sm_standin, "GET", f"/api/service/{json.loads(body)['job_id']}", token=token)
    assert decode(body)["RR_ip"] == "10.30.1.2"


def test_standin_lists_clusters_under_the_names_oak_cli_reads():
    candidates = [
        {"candidate_name": "edge1", "candidate_location": "lab", "active": True, "vcpus": 4},
        {"candidate_name": "edge2", "candidate_location": "roof", "active": False},
    ]
    running = Running({"users": USERS, "clusters": candidates})
    try:
        status, body = _raw(running, "GET", "/api/clusters/")  # no token needed
        assert status == 200
        clusters = json.loads(body)
        assert [
            (c["cluster_name"], c["cluster_location"], c["total_cpu_cores"]) for c in clusters
        ] == [
            ("edge1", "lab", 4),
            ("edge2", "roof", 0),
        ]
        _, body = _raw(running, "GET", "/api/clusters/active")
        assert [c["cluster_name"] for c in json.loads(body)] == ["edge1"]
    finally:
        running.stop()


def test_standin_tokens_expire_and_carry_their_organizations_roles():
    seed = {
        "users": USERS,
        "organizations": [{"name": "lab", "member": [{"user": "Admin", "roles": []}]}],
    }
    running = Running(seed)
    try:
        token = _login(running)
        assert _raw(running, "GET", "/api/applications/", token=token)[0] == 200
        running.control("expire", {})
        status, body = _raw(running, "GET", "/api/applications/", token=token)
        assert (status, json.loads(body)) == (401, {"msg": "Token has expired"})
        status, body = _raw(running, "GET", "/api/services/", token=token)
        assert (status, json.loads(body)) == (401, {"message": "Missing authentication token"})
        # organization_name picks the membership whose roles the token carries
        status, body = _raw(
            running,
            "POST",
            "/api/auth/login",
            {"username": "Admin", "password": "Admin", "organization_name": "nowhere"},
        )
        assert (status, json.loads(body)) == (404, {"code": 404, "status": "Not Found"})
        lab = _login(running, organization_name="lab")
        status, body = _raw(running, "GET", "/api/applications/", token=lab)
        assert (status, json.loads(body)) == (403, {"message": "You have not enough permissions!"})
        root = _login(running, organization_name="root")
        assert _raw(running, "GET", "/api/applications/", token=root)[0] == 200
    finally:
        running.stop()


def test_our_client_logs_in_again_when_the_token_expired(sm_standin):
    sm = SystemManager("127.0.0.1", sm_standin.port, "Admin", "Admin", "test", timeout=5)
    assert len(sm.applications()) == 5
    sm_standin.control("expire", {})
    assert len(sm.applications()) == 5
    logins = [r for r in sm_standin.control("state")["requests"] if r["path"] == "/api/auth/login"]
    assert len(logins) == 2


def _instances_seed(count: int) -> dict:
    proj = app(
        "6650a1b2c3d4e5f601020303",
        "projdd1d95927a2b",
        "proj",
        services=(("flearnerb98c287ecf1e", "flearner", "flops/learner:1"),),
    )
    proj["microservices"][0]["instances"] = count
    return {"users": USERS, "applications": [proj]}


def test_standin_app_delete_skips_every_second_instance_as_oakestra_does():
    """services/instance_management.py:102-106 removes items from the list it iterates."""
    running = Running(_instances_seed(3))
    try:
        sid = running.control("state")["services"][0]["microserviceID"]
        token = _login(running)
        status, _ = _raw(
            running, "DELETE", "/api/application/6650a1b2c3d4e5f601020303", token=token
        )
        assert status == 200
        state = running.control("state")
        assert state["applications"] == [] and state["services"] == []  # the job is gone...
        assert state["cluster_instances"] == [{"microserviceID": sid, "instance_number": 1}]
    finally:
        running.stop()


# -- clear-apps: instances, orphans and the FLOps DB -----------------------------------------
def test_clear_apps_undeploys_each_instance_so_oakestras_delete_leaves_no_orphan():
    # first the defect: deleting the app as Oakestra does it leaves instance 1 running
    running = Running(_instances_seed(2))
    try:
        token = _login(running)
        _raw(running, "DELETE", "/api/application/6650a1b2c3d4e5f601020303", token=token)
        (orphan,) = running.control("state")["cluster_instances"]
        assert orphan["instance_number"] == 1
        # then clear-apps on the same app: each instance on its own first
        running.control("seed", _instances_seed(2))
        sid = running.control("state")["services"][0]["microserviceID"]
        plan = plan_for(running, docs={})
        outcomes = OA.clear_apps(SETTINGS, plan)
        state = running.control("state")
        assert state["applications"] == [] and state["cluster_instances"] == []
        undeployed = [o for o in outcomes if o.step == "undeploy"]
        assert [o.detail.split(" of service")[0] for o in undeployed] == [
            "undeployed instance 0",
            "undeployed instance 1",
        ]
        assert all(o.status is Status.CHANGED for o in undeployed)
        calls = [(r["method"], r["path"]) for r in state["requests"]]
        assert [c for c in calls if c[0] == "DELETE"] == [
            ("DELETE", f"/api/service/{sid}/instance/0"),
            ("DELETE", f"/api/service/{sid}/instance/1"),
            ("DELETE", "/api/application/6650a1b2c3d4e5f601020303"),
        ]
    finally:
        running.stop()


def test_an_instance_that_will_not_undeploy_stops_clear_apps_before_any_delete():
    running = Running(_instances_seed(2))
    try:
        sid = running.control("state")["services"][0]["microserviceID"]
        running.control("stuck", {"microserviceID": sid, "instance_number": 1})
        docs = {"FLOpsProject": [{"app_id": "6650a1b2c3d4e5f601020303"}]}
        opener = fake_db(docs)
        plan = plan_for(running, docs=docs)
        plan.flops_db = opener
        outcomes = OA.clear_apps(SETTINGS, plan)
        bad = [o for o in outcomes if o.bad]
        assert len(bad) == 1 and "\n" not in bad[0].detail
        assert "instance 1 of service flearnerb98c287ecf1e/flearner" in bad[0].detail
        assert "will not undeploy" in bad[0].detail and "no app was deleted" in bad[0].detail
        assert running.deleted_ids() == []
        with opener() as db:  # the FLOps DB is untouched
            assert len(db["FLOpsProject"].docs) == 1
    finally:
        running.stop()


def test_the_service_table_recognises_every_flops_service_and_nothing_else():
    def svc(name, namespace):
        return Service("6650a1b2c3d4e5f6010203a9", name, namespace, "img", 1)

    def verdict(app_name, namespace, *services):
        application = Application(
            "6650a1b2c3d4e5f601020399",
            app_name,
            namespace,
            "Admin",
            tuple(s.id for s in services),
            services,
        )
        return OA.recognise([application], None, "Admin")[0]

    hexid = "b98c287ecf1e"
    for name, namespace, app_ns in (
        (f"tracking{hexid}", "tracking", "observatory"),
        (f"observ{hexid}", "observ", "observatory"),
        (f"mockdp{hexid}", "mockdp", "helper"),
        (f"trmodel{hexid}", "trmodel", "helper"),
        (f"builder{hexid}", "builder", "proj"),
        (f"flearner{hexid}", "flearner", "proj"),
        (f"aggr{hexid}", "aggr", "proj"),
        (f"raggr{hexid}", "raggr", "proj"),
        (f"cag{hexid}", "raggr", "proj"),  # cluster_aggregator.py: namespace raggr, name cag
    ):
        app_name = app_ns if app_ns != "proj" else f"proj{hexid}"
        assert verdict(app_name, app_ns, svc(name, namespace)).action == "delete", name
    for name, namespace, app_ns, why in (
        ("frontend", "shop", "observatory", "frontend/shop is none"),
        (f"cag{hexid}", "aggr", "proj", f"cag{hexid}/aggr"),
        (f"tracking{hexid}", "tracking", "helper", "tracking"),
        (f"builder{hexid[:6]}", "builder", "proj", "builder"),
    ):
        app_name = app_ns if app_ns != "proj" else f"proj{hexid}"
        found = verdict(app_name, app_ns, svc(name, namespace))
        assert found.action == "keep" and why in found.reason, (name, found.reason)


OBS_TRACKING = "trackinge3afed0047b0"


@pytest.fixture
def flops_mongo(tmp_path):
    """The testbed's flops_db stand-in, through pymongo, holding the FLOps DB as upstream's
    classes dump it; yields (opener, database)."""
    import pymongo

    from .test_mongod_standin import Server

    server = Server(tmp_path).start()
    client = pymongo.MongoClient(
        "127.0.0.1", server.port, directConnection=True, serverSelectionTimeoutMS=5000
    )

    @contextmanager
    def opener():
        yield client["flops"]

    yield opener, client["flops"]
    client.close()
    server.stop()


def _service_ids(running: Running) -> dict[str, str]:
    return {
        s["microservice_name"]: s["microserviceID"] for s in running.control("state")["services"]
    }


def test_clear_apps_forgets_exactly_the_records_of_the_apps_it_deleted(sm_standin, flops_mongo):
    opener, db = flops_mongo
    sids = _service_ids(sm_standin)
    proj, obs, helper = (a["applicationID"] for a in (FLOPS_PROJ, FLOPS_OBS, FLOPS_HELPER))
    doomed = {
        "FLOpsObservatory": [{"customer_id": "Admin", "app_id": obs, "app_name": "observatory"}],
        "FLOpsHelperApp": [{"customer_id": "Admin", "app_id": helper, "app_name": "helper"}],
        "FLOpsProject": [{"customer_id": "Admin", "app_id": proj, "flops_project_id": proj}],
        "TrackingServer": [
            {"customer_id": "Admin", "service_id": sids[OBS_TRACKING], "ip": "10.30.1.2"}
        ],
        "FLActorsImageBuilder": [
            {"service_id": sids["builderb98c287ecf1e"], "flops_project_id": proj}
        ],
        "FLOpsProjectObserver": [
            {"service_id": "6650a1b2c3d4e5f6010203ff", "flops_project_id": proj}
        ],
    }
    kept = {
        # another user's observatory is not deleted: its record stays
        "FLOpsObservatory": [{"customer_id": "alice", "app_id": ALICE_OBS["applicationID"]}],
        # a project record written before its app was created (app_id still empty)
        "FLOpsProject": [{"customer_id": "Admin", "app_id": "", "flops_project_id": ""}],
        "MockDataProvider": [{"service_id": "6650a1b2c3d4e5f6010203fe"}],
    }
    for docs in (doomed, kept):
        for name, items in docs.items():
            db[name].insert_many([dict(d) for d in items])

    def contents() -> set[tuple[str, str]]:
        return {
            (name, str(doc["_id"]))
            for name in db.list_collection_names()
            for doc in db[name].find({})
        }

    before = contents()
    sm = SystemManager("127.0.0.1", sm_standin.port, "Admin", "Admin", "test", timeout=5)
    plan = OA.flops_apps_plan(SETTINGS, system_manager=sm, flops_db=opener)
    assert {v.app.id for v in plan.doomed} == FLOPS
    records = [d for d in plan.deletes() if d.startswith("FLOps DB ")]
    assert len(records) == 6  # the confirmation lists them
    dry = OA.clear_apps(SETTINGS, plan, dry=True)
    planned = [o.detail for o in dry if o.step == "flops-db"]
    assert len(planned) == 6 and all(d.startswith("would remove ") for d in planned)
    assert all(o.status is Status.CHANGED for o in dry if o.step == "flops-db")
    assert contents() == before and sm_standin.deleted_ids() == []

    outcomes = OA.clear_apps(SETTINGS, plan)
    # alice's observatory is FLOps' (its id is in the FLOps DB), but only alice may delete it
    (blocked,) = [o.detail for o in outcomes if o.bad]
    assert "set flops.oakestra.user to 'alice'" in blocked
    forgotten = [o.detail for o in outcomes if o.step == "flops-db"]
    assert len(forgotten) == 6 and all(d.startswith("removed ") for d in forgotten)
    assert any("TrackingServer" in d and OBS_TRACKING not in d for d in forgotten)
    left = {
        (name, tuple(sorted((k, v) for k, v in doc.items() if k != "_id")))
        for name in db.list_collection_names()
        for doc in db[name].find({})
    }
    assert left == {(name, tuple(sorted(d.items()))) for name, items in kept.items() for d in items}
    again = OA.clear_apps(
        SETTINGS, OA.flops_apps_plan(SETTINGS, system_manager=sm, flops_db=opener)
    )
    assert not any(o.changed for o in again) and len([o for o in again if o.bad]) == 1


def test_a_tracking_server_goes_with_its_customers_observatory(sm_standin, flops_mongo):
    """tracking_server/management.py keys the tracking server by customer: its service may no
    longer be listed, but it lived in the customer's observatory."""
    opener, db = flops_mongo
    obs = FLOPS_OBS["applicationID"]
    db["FLOpsObservatory"].insert_one({"customer_id": "Admin", "app_id": obs})
    db["TrackingServer"].insert_one(
        {"customer_id": "Admin", "service_id": "6650a1b2c3d4e5f6010203fd"}
    )
    db["TrackingServer"].insert_one(
        {"customer_id": "bob", "service_id": "6650a1b2c3d4e5f6010203fc"}
    )
    sm = SystemManager("127.0.0.1", sm_standin.port, "Admin", "Admin", "test", timeout=5)
    outcomes = OA.clear_apps(
        SETTINGS, OA.flops_apps_plan(SETTINGS, system_manager=sm, flops_db=opener)
    )
    assert [o.detail.split(":")[1].strip() for o in outcomes if o.step == "flops-db"] == [
        f"it pointed at its app observatory (namespace observatory, id {obs})",
        "it pointed at the observatory of its customer 'Admin'",
    ]
    assert [d["customer_id"] for d in db["TrackingServer"].find({})] == ["bob"]


def test_records_cannot_be_removed_is_a_failure_that_names_redb(sm_standin):
    plan = plan_for(sm_standin)
    plan.flops_db = failing_db(ServerSelectionTimeoutError("127.0.0.1:10027: timed out"))
    outcomes = OA.clear_apps(SETTINGS, plan)
    bad = [o for o in outcomes if o.bad]
    assert len(bad) == 1 and bad[0].step == "flops-db" and "run 'inv redb'" in bad[0].detail
    assert sorted(sm_standin.deleted_ids()) == sorted(FLOPS)


def test_without_the_db_clear_apps_warns_that_the_manager_reuses_stale_ids(sm_standin):
    sm = SystemManager("127.0.0.1", sm_standin.port, "Admin", "Admin", "test", timeout=5)
    plan = OA.flops_apps_plan(SETTINGS, system_manager=sm, without_db=True)
    for dry in (True, False):
        outcomes = OA.clear_apps(SETTINGS, plan, dry=dry)
        warned = [o for o in outcomes if o.step == "flops-db"]
        assert [o.status for o in warned] == [Status.WARNING]
        assert "reuse their stale ids" in warned[0].detail
        assert "until 'inv redb'" in warned[0].detail
        assert not any(o.bad for o in outcomes)


def test_our_client_calls_each_route_in_the_form_its_blueprint_declares(sm_standin):
    """Listing, one service, one instance, a delete: no call needs a redirect (our client
    follows none) and none meets a 404 or 405, on the stand-in that routes as werkzeug does."""
    sm = SystemManager("127.0.0.1", sm_standin.port, "Admin", "Admin", "test", timeout=5)
    plan = OA.flops_apps_plan(SETTINGS, system_manager=sm, flops_db=fake_db(DB_DOCS))
    assert sm.service("0" * 24) is None  # a service nobody owns: 404 as upstream answers it
    OA.clear_apps(SETTINGS, plan)
    calls = [
        (r["method"], r["path"], r["status"])
        for r in sm_standin.control("state")["requests"]
        if r["path"].startswith("/api/")
    ]
    assert {(m, p) for m, p, _ in calls} >= {
        ("POST", "/api/auth/login"),
        ("GET", "/api/applications/"),
        ("GET", "/api/services/"),
        ("GET", f"/api/service/{'0' * 24}"),
    }
    assert any("/instance/" in p for _, p, _ in calls)
    assert any(m == "DELETE" and p.startswith("/api/application/") for m, p, _ in calls)
    odd = [c for c in calls if c[2] >= 300 and c[1] != f"/api/service/{'0' * 24}"]
    assert odd == [], odd


def test_an_instance_still_listed_after_its_app_was_deleted_is_undeployed_on_its_own():
    """A System Manager that keeps the job after the app delete (upstream deletes it, so this
    is the belt to the braces of undeploying first): the instance it still lists is
    undeployed on its own and reported."""
    jobs = decode(recorded("services.json"))
    tracking = jobs[0]["microserviceID"]
    observatory = "6650a1b2c3d4e5f601020301"
    kept = json.dumps(json.dumps([j for j in jobs if j["microserviceID"] == tracking])).encode()
    apps = decode(recorded("applications.json"))
    after = json.dumps(json.dumps([a for a in apps if a["applicationID"] != observatory]))
    answers = {
        **ok_answers(),
        ("DELETE", f"/api/application/{observatory}"): [(200, recorded("delete_ok.json"))],
        ("DELETE", f"/api/service/{tracking}/instance/0"): [(200, b'{"message": "ok"}')],
        ("DELETE", f"/api/service/{jobs[1]['microserviceID']}/instance/0"): [
            (200, b'{"message": "ok"}')
        ],
    }
    # listed twice with the instance (plan, check), gone after the undeploys, back after the
    # delete (the orphan), gone after its own undeploy
    gone = json.dumps(json.dumps([{**j, "instance_list": []} for j in jobs])).encode()
    answers[JOBS] = [answers[JOBS][0], answers[JOBS][0], (200, gone), (200, kept), (200, kept)]
    answers[APPS] = [answers[APPS][0], answers[APPS][0], (200, after.encode())]
    replay = Replay(answers)
    plan = OA.flops_apps_plan(SETTINGS, system_manager=client(replay), without_db=True)
    plan.verdicts = [v for v in plan.verdicts if v.app.id == observatory or v.action != "delete"]
    outcomes = OA.clear_apps(SETTINGS, plan)
    orphan = [o for o in outcomes if o.step == "orphan"]
    assert [o.status for o in orphan] == [Status.CHANGED]
    assert orphan[0].detail.startswith("undeployed instance 0 of service trackinge3afed0047b0")
    assert "still deployed after its app was deleted" in orphan[0].detail
    assert [c[:2] for c in replay.calls].count(
        ("DELETE", f"/api/service/{tracking}/instance/0")
    ) == 2
