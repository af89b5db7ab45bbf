"""FLOps' apps in Oakestra on the testbed: the System Manager stand-in, the FLOps DB, the CLI.

The stand-in (testbed/system_manager/, container ``system_manager``) is seeded per test
through its /_standin/ routes; the FLOps DB is the testbed stack's real ``flops_db`` service,
written with pymongo the way upstream's manager writes it (one collection per pydantic class,
``model_dump()`` field names: flops_manager/database/common.py).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from flops_tasks import testbed as tb

from ..unit.sm_standin import app
from .helpers import dry_then_real, inv
from .oakestra import (
    ADMIN,
    CLUSTERS,
    FLOPS,
    FLOPS_DOCS,
    GH,
    HELPER_ID,
    KEPT,
    OBS_ID,
    PROJ_ID,
    RENAMED_ID,
    SEED,
    flops_db,
    gateway,
    http,
    listed,
    managers_create_app,
    oak,
    oak_home,
    observatory_sla,
    seed,
    sm_url,
    state,
    write_flops_db,
)

pytestmark = pytest.mark.integration


# -- tests ------------------------------------------------------------------------------------
def test_the_stand_in_is_the_testbeds_system_manager(testbed):
    info = json.loads(
        subprocess.run(
            ["docker", "inspect", tb.SYSTEM_MANAGER], capture_output=True, text=True, check=True
        ).stdout
    )[0]
    assert info["Config"]["Labels"][tb.LABEL] == tb.TESTBED_ID
    assert info["Config"]["Labels"]["org.flops-tasks.stand-in"] == "oakestra system manager"
    assert tb.NETWORK in info["NetworkSettings"]["Networks"]
    bindings = info["HostConfig"]["PortBindings"]["10000/tcp"]
    assert bindings == [{"HostIp": gateway(), "HostPort": "10000"}]
    # the FLOps manager (its container on the same network) reaches it by name
    manager = subprocess.run(
        [
            "docker",
            "ps",
            "-q",
            "--filter",
            "label=com.docker.compose.service=flops_manager",
            "--filter",
            f"label=com.docker.compose.project={tb.PROJECT}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(manager) == 1
    probe = (
        "import json, urllib.request; print(json.load(urllib.request.urlopen("
        "'http://system_manager:10000/api/clusters/active', timeout=5)))"
    )
    res = subprocess.run(
        ["docker", "exec", manager[0], "python3", "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr
    # and the tool reaches it at SYSTEM_MANAGER_IP (the gateway), as in the testbed's invoke.yaml
    seed(testbed)
    res = inv("oakestra-apps", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["system_manager"] == sm_url(testbed)


def test_leftover_flops_apps_go_and_every_other_app_stays(testbed):
    seed(testbed)
    write_flops_db(FLOPS_DOCS)
    res = inv("oakestra-apps", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["identification"].startswith("ids in the FLOps DB (4 app ids")
    actions = {a["id"]: (a["action"], a["reason"]) for a in data["applications"]}
    assert {i for i, (action, _) in actions.items() if action == "delete"} == FLOPS
    assert "FLOpsProject.app_id" in actions[RENAMED_ID][1]  # only the DB knew this one

    res = inv("clear-apps")  # no terminal, no --yes
    assert res.returncode == 3 and "This will delete:\n  - Oakestra app" in res.stderr
    assert listed(testbed) == FLOPS | KEPT
    res = inv("--dry", "clear-apps", "--json")
    assert res.returncode == 0, res.stderr
    planned = [s for s in json.loads(res.stdout)["hosts"]["oakestra"]["steps"] if s["changed"]]
    # an undeploy per instance, a delete per app, a removal per FLOps DB record
    assert [s["step"] for s in planned] == ["undeploy"] * 4 + ["clear-apps"] * 4 + ["flops-db"] * 4
    assert listed(testbed) == FLOPS | KEPT and state(testbed)["deleted"] == []
    client, db = flops_db()
    assert sum(len(list(db[c].find({}))) for c in db.list_collection_names()) == 4
    client.close()

    res = dry_then_real("clear-apps", "--yes")  # the real run changes what the dry run planned
    assert res.returncode == 0, res.stdout + res.stderr
    assert {a["applicationID"] for a in state(testbed)["deleted"]} == FLOPS
    assert listed(testbed) == KEPT
    assert {s["microservice_name"] for s in state(testbed)["services"]} == {"frontend"}
    frontend = next(s for s in state(testbed)["services"] if s["microservice_name"] == "frontend")
    assert state(testbed)["cluster_instances"] == [  # no instance of a FLOps app left running
        {"microserviceID": frontend["microserviceID"], "instance_number": 0}
    ]
    client, db = flops_db()  # the FLOps DB forgot exactly the deleted apps' records
    assert [c for c in db.list_collection_names() if list(db[c].find({}))] == []
    client.close()
    kept = [
        s["detail"]
        for s in json.loads(res.stdout)["hosts"]["oakestra"]["steps"]
        if s["step"] == "kept"
    ]
    assert len(kept) == 3 and any("owned by 'alice'" in k for k in kept)

    again = inv("clear-apps", "--yes", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["changed"] is False


def test_redb_without_the_apps_step_leaves_them_deployed_and_the_observatory_gets_409(
    testbed, tmp_path
):
    """The failure redb used to cause (now only with --skip-apps, on purpose), then what
    clear-apps changes."""
    sla = observatory_sla(tmp_path)
    assert sla["applications"][0]["application_name"] == "observatory"
    seed(
        testbed,
        {"users": [ADMIN], "applications": [SEED["applications"][0], SEED["applications"][2]]},
    )
    write_flops_db({k: FLOPS_DOCS[k] for k in ("FLOpsObservatory", "FLOpsProject")})

    assert inv("redb", "--yes", "--skip-apps").returncode == 0
    client, db = flops_db()
    assert db.list_collection_names() == []  # the FLOps DB forgot them...
    client.close()
    assert {OBS_ID, PROJ_ID} <= listed(testbed)  # ...while Oakestra still runs them
    status, body = managers_create_app(testbed, sla)  # FLOpsObservatory.get_app -> create
    assert (status, body) == (409, {"code": 409, "status": "Conflict"})
    assert state(testbed)["refused"][-1]["application_name"] == "observatory"

    # clear-apps finds them by FLOps' names even with the FLOps DB empty
    res = inv("clear-apps", "--yes", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 app ids" in json.loads(res.stdout)["notes"][0]
    assert {a["applicationID"] for a in state(testbed)["deleted"]} == {OBS_ID, PROJ_ID}
    status, body = managers_create_app(testbed, sla)
    assert status == 200
    assert [a["application_name"] for a in json.loads(body)] == ["observatory"]


def test_redb_removes_flops_apps_first_so_the_observatory_is_created_again(testbed, tmp_path):
    sla = observatory_sla(tmp_path)
    seed(
        testbed,
        {"users": [ADMIN], "applications": [SEED["applications"][0], SEED["applications"][4]]},
    )
    write_flops_db({"FLOpsObservatory": FLOPS_DOCS["FLOpsObservatory"]})
    res = inv("redb", "--yes", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    steps = json.loads(res.stdout)["hosts"]
    # the observatory's two instances, then the app; its records go with the whole database
    assert [s["step"] for s in steps["oakestra"]["steps"] if s["status"] == "changed"] == [
        "undeploy",
        "undeploy",
        "clear-apps",
    ], steps
    assert "emptied" in steps["stack"]["steps"][-1]["detail"]
    assert {a["applicationID"] for a in state(testbed)["deleted"]} == {OBS_ID}
    assert listed(testbed) == {SEED["applications"][4]["applicationID"]}  # not FLOps': kept
    client, db = flops_db()
    assert db.list_collection_names() == []
    client.close()
    status, _ = managers_create_app(testbed, sla)
    assert status == 200 and state(testbed)["refused"] == []


def test_clear_apps_before_redb_prevents_the_409(testbed, tmp_path):
    sla = observatory_sla(tmp_path)
    seed(testbed, {"users": [ADMIN], "applications": [SEED["applications"][0]]})
    write_flops_db({"FLOpsObservatory": FLOPS_DOCS["FLOpsObservatory"]})
    res = inv("clear-apps", "--yes", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "FLOpsObservatory.app_id" in res.stdout
    assert inv("redb", "--yes").returncode == 0
    status, _ = managers_create_app(testbed, sla)
    assert status == 200 and state(testbed)["refused"] == []


UPSTREAM_CREATE = """
import json
from flops_manager.api.app_management import create_app
from flops_manager.utils.exceptions.main import FLOpsManagerException
from flops_manager.utils.sla.components import SlaComponentsWrapper, SlaCore, SlaNames
from flops_manager.utils.sla.generator import generate_sla
sla = generate_sla(SlaComponentsWrapper(core=SlaCore(
    customerID="Admin", names=SlaNames(app_name="observatory", app_namespace="observatory"))))
try:
    print(json.dumps({"created": create_app(sla)["applicationID"]}))
except FLOpsManagerException as exc:
    print(json.dumps({"status": int(exc.http_status or 0), "text": exc.text}))
"""


def upstream_manager() -> str:
    """The testbed's manager container, which must run upstream's code."""
    found = subprocess.run(
        [
            "docker",
            "ps",
            "-q",
            "--filter",
            "label=com.docker.compose.service=flops_manager",
            "--filter",
            f"label=com.docker.compose.project={tb.PROJECT}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(found) == 1, "the testbed's flops_manager is not running"
    image = subprocess.run(
        [
            "docker",
            "inspect",
            "-f",
            '{{index .Config.Labels "org.flops-tasks.addon-ref"}}',
            found[0],
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not image or image == "<no value>":
        pytest.fail(
            "the testbed's flops_manager is not built from upstream's code (no "
            "org.flops-tasks.addon-ref label): is the addon-FLOps tarball missing?"
        )
    return found[0]


def test_upstreams_own_client_meets_the_409_and_creates_after_clear_apps(testbed):
    """The manager's real code (api/utils/login.py, api/app_management.py create_app, run in
    its container against system_manager:10000) logs in and re-creates its observatory."""
    manager = upstream_manager()
    seed(testbed, {"users": [ADMIN], "applications": [SEED["applications"][0]]})
    write_flops_db({})  # after redb: the FLOps DB forgot the observatory

    def create() -> dict:
        res = subprocess.run(
            ["docker", "exec", manager, "python", "-c", UPSTREAM_CREATE],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, res.stderr[-2000:]
        return json.loads(res.stdout.strip().splitlines()[-1])

    refused = create()
    # upstream's client cannot name the status (custom_requests.py tests the Response's truth,
    # False for any error status); the System Manager's log says it was the 409
    assert "application request failed" in refused.get("text", ""), refused
    assert [r["status"] for r in state(testbed)["refused"]] == [409]
    assert inv("clear-apps", "--yes").returncode == 0
    created = create()
    assert created["created"] in listed(testbed) and OBS_ID not in listed(testbed)


def assert_one_line(
    res: subprocess.CompletedProcess, *needles: str, after_listing: bool = False
) -> None:
    """Exit 1 with one line naming the problem (after the list of what --yes would delete)."""
    assert res.returncode == 1, res.stdout + res.stderr
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    assert "Traceback" not in res.stdout + res.stderr
    if after_listing:
        assert lines[0] == "This will delete:", lines[0]
        assert lines[1].startswith("  - Oakestra app "), lines[1]
    else:
        assert len(lines) == 1, res.stdout + res.stderr
    for needle in needles:
        assert needle in lines[-1], lines[-1]


def test_bad_input_is_one_line_and_deletes_nothing(testbed):
    seed(testbed)
    write_flops_db(FLOPS_DOCS)
    wrong = "wr0ng-7c1d9a"
    res = inv("clear-apps", "--yes", env={"FLOPS_OAKESTRA_PASSWORD": wrong})
    assert_one_line(res, "refused the login of user 'Admin' (HTTP 401", "FLOPS_OAKESTRA_PASSWORD")
    assert wrong not in res.stdout + res.stderr

    # gone between the listing (the 1st) and the check before deleting (the 2nd)
    http(
        sm_url(testbed) + "/_standin/vanish", "POST", {"applicationID": HELPER_ID, "after_lists": 2}
    )
    res = inv("clear-apps", "--yes")
    assert_one_line(
        res, "vanished since the listing (helper", "nothing was deleted", after_listing=True
    )
    assert state(testbed)["deleted"] == []

    seed(testbed)
    subprocess.run(["docker", "stop", tb.SYSTEM_MANAGER], check=True, capture_output=True)
    try:
        res = inv("clear-apps", "--yes")
        assert_one_line(res, f"{sm_url(testbed)} does not answer", "SYSTEM_MANAGER_IP")
    finally:
        subprocess.run(["docker", "start", tb.SYSTEM_MANAGER], check=True, capture_output=True)
        tb.wait_system_manager(gateway())
    assert state(testbed)["deleted"] == []

    db = subprocess.run(
        [
            "docker",
            "ps",
            "-q",
            "--filter",
            "label=com.docker.compose.service=flops_db",
            "--filter",
            f"label=com.docker.compose.project={tb.PROJECT}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(db) == 1
    subprocess.run(["docker", "stop", db[0]], check=True, capture_output=True)
    try:
        res = inv("clear-apps", "--yes")
        assert_one_line(res, "cannot read the FLOps DB", "--without-db", "nothing was deleted")
        assert state(testbed)["deleted"] == []
        listing = inv("oakestra-apps", "--json")
        assert listing.returncode == 0
        assert "the FLOps DB could not be read" in json.loads(listing.stdout)["identification"]
    finally:
        subprocess.run(["docker", "start", db[0]], check=True, capture_output=True)
    assert inv("up").returncode == 0  # wait until the stack is healthy again


# -- oak-cli 0.5.5 against the stand-in ------------------------------------------------------
def _requests(testbed) -> list[tuple[str, str, int]]:
    return [(r["method"], r["path"], r["status"]) for r in state(testbed)["requests"]]


def test_oak_cli_works_against_the_stand_in(testbed, tmp_path):
    """Oakestra's own CLI (oak-cli 0.5.5 from PyPI) meets the stand-in as it meets the real
    blueprints: slash-less routes answered with 308 and followed, a single service, one
    instance, the clusters, and a login (Admin/Admin, oak-cli's own) before each command."""
    learner = app(
        "6650a1b2c3d4e5f601020305",
        "projc0ffee123456",
        "proj",
        services=(("flearnerc0ffee123456", "flearner", GH + "learner:1"),),
    )
    learner["microservices"][0]["instances"] = 2
    seed(
        testbed,
        {
            "users": [ADMIN],
            "clusters": CLUSTERS,
            "applications": [SEED["applications"][4], learner],
        },
    )
    home = oak_home(tmp_path, gateway())
    checked: dict[str, str] = {}

    def run(*args: str) -> str:
        before = len(state(testbed)["requests"])
        res = oak(home, *args)
        assert res.returncode == 0, (args, res.stdout[-2000:], res.stderr[-2000:])
        assert "Traceback" not in res.stdout + res.stderr, args
        calls = [c for c in _requests(testbed)[before:] if c[1].startswith("/api/")]
        assert ("POST", "/api/auth/login", 200) in calls or args[0] == "cl", (args, calls)
        assert all(status < 400 for _, _, status in calls), (args, calls)
        checked[" ".join(args)] = ", ".join(f"{m} {p} {s}" for m, p, s in calls)
        return res.stdout

    # applications show: GET /api/applications -> 308 -> /api/applications/
    out = run("a", "s")
    assert "webshop" in out and "projc0ffee123456" in out
    assert ("GET", "/api/applications", 308) in _requests(testbed)
    # services show, info, undeploy one instance, undeploy all
    out = run("s", "s")
    assert "frontend" in out and "flearnerc0ffee123456" in out and "RUNNING" in out
    services = {s["microservice_name"]: s for s in state(testbed)["services"]}
    frontend = services["frontend"]["microserviceID"]
    learners = services["flearnerc0ffee123456"]["microserviceID"]
    out = run("s", "i", frontend)
    assert "frontend" in out and "nginx:1.27" in out and "RUNNING" in out
    run("s", "u", "--service-id", frontend)
    assert ("DELETE", f"/api/service/{frontend}/instance/0", 200) in _requests(testbed)
    run("s", "u")
    assert all(s["instance_list"] == [] for s in state(testbed)["services"])
    assert state(testbed)["cluster_instances"] == []  # one at a time: none skipped
    assert {("DELETE", f"/api/service/{learners}/instance/{n}", 200) for n in (0, 1)} <= set(
        _requests(testbed)
    )
    # clusters list: the active ones, then all (no token needed)
    out = run("cl", "ls")
    assert "edge1" in out and "edge2" not in out
    out = run("cl", "ls", "-all")
    assert "edge1" in out and "edge2" in out and "Disconnected" in out
    # applications create (POST /api/application -> 308 -> /api/application/) and delete
    run("a", "c", "--sla-file-name", "blank_app_without_services")
    assert ("POST", "/api/application", 308) in _requests(testbed)
    assert "blank" in {a["application_name"] for a in state(testbed)["applications"]}
    run("a", "d", "-y")
    assert state(testbed)["applications"] == []
    print(json.dumps(checked, indent=1))  # what each command sent, for the README's table


# -- the real manager after clear-apps -------------------------------------------------------
TRACKING = """
import json
from flops_manager.classes.apps.observatory import FLOpsObservatory
from flops_manager.classes.services.observatory.tracking_server.management import (
    get_tracking_server,
)
from flops_manager.utils.exceptions.main import FLOpsManagerException
try:
    server = get_tracking_server("Admin")
    observatory = FLOpsObservatory.get_app("Admin")
    print(json.dumps({"observatory": observatory.app_id, "service": server.service_id,
                      "url": server.get_url()}))
except FLOpsManagerException as exc:
    print(json.dumps({"status": int(exc.http_status or 0), "text": exc.text}))
"""


def test_after_clear_apps_the_real_manager_makes_a_fresh_observatory_and_tracking_server(
    testbed,
):
    """Upstream's manager (its own classes, in its container, against system_manager:10000
    and the FLOps DB) asks for the customer's tracking server: the observatory app and the
    tracking service are created, and stored. clear-apps deletes the app and makes the FLOps
    DB forget both records, so the next ask creates them afresh instead of handing out the
    stored ones (whose app no longer exists: a service appended to it is refused with 400)."""
    manager = upstream_manager()
    seed(testbed, {"users": [ADMIN], "applications": []})
    write_flops_db({})

    def ask() -> dict:
        res = subprocess.run(
            ["docker", "exec", manager, "python", "-c", TRACKING],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        answer = json.loads(res.stdout.strip().splitlines()[-1])
        assert "observatory" in answer, answer
        return answer

    first = ask()
    assert listed(testbed) == {first["observatory"]}
    client, db = flops_db()
    stored = {c: len(list(db[c].find({}))) for c in db.list_collection_names()}
    client.close()
    assert stored == {"FLOpsObservatory": 1, "TrackingServer": 1}, stored

    res = inv("clear-apps", "--yes", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    steps = json.loads(res.stdout)["hosts"]["oakestra"]["steps"]
    assert [s["step"] for s in steps if s["changed"]] == [
        "undeploy",
        "clear-apps",
        "flops-db",
        "flops-db",
    ], steps
    assert listed(testbed) == set() and state(testbed)["cluster_instances"] == []
    client, db = flops_db()
    assert [c for c in db.list_collection_names() if list(db[c].find({}))] == []
    client.close()

    second = ask()
    assert second["observatory"] != first["observatory"]
    assert listed(testbed) == {second["observatory"]}  # the stand-in shows the fresh app
    services = state(testbed)["services"]
    assert [(s["applicationID"], s["microserviceID"]) for s in services] == [
        (second["observatory"], second["service"])
    ]
    assert not [r for r in state(testbed)["requests"] if r["status"] == 400]


def test_an_instance_that_will_not_undeploy_stops_clear_apps_with_nothing_deleted(testbed):
    seed(testbed)
    write_flops_db(FLOPS_DOCS)
    tracking = next(
        s for s in state(testbed)["services"] if s["microservice_name"] == "trackinge3afed0047b0"
    )
    http(
        sm_url(testbed) + "/_standin/stuck",
        "POST",
        {"microserviceID": tracking["microserviceID"], "instance_number": 0},
    )
    res = inv("clear-apps", "--yes", "--json")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    steps = json.loads(res.stdout)["hosts"]["oakestra"]["steps"]
    (failure,) = [s for s in steps if s["status"] == "failed"]
    assert failure["detail"].startswith("instance 0 of service trackinge3afed0047b0/tracking")
    assert "will not undeploy" in failure["detail"]
    assert "no app was deleted, the FLOps DB is unchanged" in failure["detail"]
    assert state(testbed)["deleted"] == [] and listed(testbed) == FLOPS | KEPT
    client, db = flops_db()
    assert sum(len(list(db[c].find({}))) for c in db.list_collection_names()) == 4
    client.close()


def test_clear_apps_reads_the_flops_db_only_on_the_engine_the_docker_cli_proved(testbed):
    """DOCKER_HOST names an engine that cannot prove flops_db's port: the FLOps DB published
    on this host is not read on trust, and nothing is deleted."""
    seed(testbed)
    write_flops_db(FLOPS_DOCS)
    res = inv("clear-apps", "--yes", env={"DOCKER_HOST": "tcp://127.0.0.1:1"})
    assert_one_line(res, "cannot read the FLOps DB", "--without-db", "nothing was deleted")
    assert state(testbed)["deleted"] == [] and listed(testbed) == FLOPS | KEPT
