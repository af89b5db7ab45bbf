"""FLOps' apps in Oakestra on the testbed: the System Manager stand-in, the FLOps DB, the CLI.

The stand-in (testbed/system_manager/, container ``system_manager``) is seeded per test
through its /_standin/ routes; the FLOps DB is the testbed stack's real ``flops_db`` service,
written with pymongo the way upstream's manager writes it (one collection per pydantic class,
``model_dump()`` field names: flops_manager/database/common.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pymongo
import pytest
import yaml

from flops_tasks import testbed as tb

from .helpers import ROOT, TESTBED_CONFIG, inv

pytestmark = pytest.mark.integration

ADMIN = {"name": "Admin", "password": "Admin",
         "roles": ["Admin", "Organization_Admin", "Application_Provider",
                   "Infrastructure_Provider"]}
ALICE = {"name": "alice", "password": "alice", "roles": ["Application_Provider"]}
GH = "ghcr.io/oakestra/addon-flops/"
OBS_ID, HELPER_ID, PROJ_ID = "6650a1b2c3d4e5f601020301", "6650a1b2c3d4e5f601020302", \
    "6650a1b2c3d4e5f601020303"
RENAMED_ID = "6650a1b2c3d4e5f601020304"  # a FLOps project whose name is not FLOps' pattern
SHOP_ID, MYPROJ_ID, ALICE_ID = "6650a1b2c3d4e5f601020310", "6650a1b2c3d4e5f601020311", \
    "6650a1b2c3d4e5f601020312"


def app(app_id, name, namespace, owner="Admin", services=()):
    return {"applicationID": app_id, "application_name": name,
            "application_namespace": namespace, "userId": owner,
            "microservices": [{"microservice_name": n, "microservice_namespace": ns,
                               "code": image, "instances": 1} for n, ns, image in services]}


SEED = {"users": [ADMIN, ALICE], "applications": [
    app(OBS_ID, "observatory", "observatory", services=(
        ("trackinge3afed0047b0", "tracking", GH + "tracking-server:latest"),
        ("observb98c287ecf1e", "observ", GH + "project-observer:latest"))),
    app(HELPER_ID, "helper", "helper",
        services=(("mockdpe4c834343b6b", "mockdp", GH + "mock-data-provider:latest"),)),
    app(PROJ_ID, "projdd1d95927a2b", "proj",
        services=(("builderb98c287ecf1e", "builder", GH + "image-builder:latest"),)),
    app(RENAMED_ID, "flopsrun7", "experiments"),
    app(SHOP_ID, "webshop", "shop", services=(("frontend", "shop", "nginx:1.27"),)),
    app(MYPROJ_ID, "myproj", "proj"),
    app(ALICE_ID, "observatory", "observatory", owner="alice"),
]}
FLOPS = {OBS_ID, HELPER_ID, PROJ_ID, RENAMED_ID}
KEPT = {SHOP_ID, MYPROJ_ID, ALICE_ID}


# -- the stand-in and the FLOps DB ---------------------------------------------------------
def gateway() -> str:
    """SYSTEM_MANAGER_IP of the current testbed config (an earlier module may have made a
    new testbed, on a new network, since the session's fixture started)."""
    config = yaml.safe_load(TESTBED_CONFIG.read_text())
    return config["flops"]["addresses"]["system_manager_ip"]


def sm_url(_testbed=None) -> str:
    return f"http://{gateway()}:{tb.SYSTEM_MANAGER_PORT}"


def http(url: str, method: str = "GET", payload=None, token: str | None = None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def seed(testbed, data=SEED) -> None:
    status, _ = http(sm_url(testbed) + "/_standin/seed", "POST", data)
    assert status == 200


def state(testbed) -> dict:
    return http(sm_url(testbed) + "/_standin/state")[1]


def listed(testbed) -> set[str]:
    return {a["applicationID"] for a in state(testbed)["applications"]}


def flops_db():
    client = pymongo.MongoClient("127.0.0.1", 10027, serverSelectionTimeoutMS=5000,
                                 directConnection=True)
    return client, client["flops"]


def write_flops_db(docs: dict[str, list[dict]]) -> None:
    client, db = flops_db()
    try:
        for name in db.list_collection_names():
            db.drop_collection(name)
        for collection, items in docs.items():
            db[collection].insert_many(items)
    finally:
        client.close()


# documents as upstream's classes dump them (classes/apps/*.py, classes/services/**)
FLOPS_DOCS = {
    "FLOpsProject": [{"customer_id": "Admin", "ml_repo_url": "https://github.com/x/y",
                      "flops_project_id": PROJ_ID, "app_id": PROJ_ID,
                      "app_name": "projdd1d95927a2b"},
                     {"customer_id": "Admin", "ml_repo_url": "https://github.com/x/z",
                      "flops_project_id": RENAMED_ID, "app_id": RENAMED_ID,
                      "app_name": "flopsrun7"}],
    "FLOpsObservatory": [{"customer_id": "Admin", "app_id": OBS_ID, "app_name": "observatory"}],
    "FLOpsHelperApp": [{"customer_id": "Admin", "app_id": HELPER_ID, "app_name": "helper"}],
}


def login(testbed) -> str:
    status, body = http(sm_url(testbed) + "/api/auth/login", "POST",
                        {"username": "Admin", "password": "Admin"})
    assert status == 200
    return body["token"]


def upstream_sla_generator(tmp_path: Path):
    """upstream's generate_sla (addon-FLOps at the pinned ref), from the shared tarball."""
    candidates = [ROOT.parent / "shared" / "upstream", ROOT.parent.parent / "shared" / "upstream"]
    tarballs = [p / "addon-FLOps-2fa0ab9.tar.gz" for p in candidates]
    tarball = next((t for t in tarballs if t.is_file()), None)
    if tarball is None:
        pytest.fail("upstream addon-FLOps test data is missing (looked for "
                    f"{', '.join(map(str, tarballs))}): this test builds the FLOps manager's "
                    "observatory SLA with upstream's own generate_sla")
    prefix = "addon-FLOps/flops_manager_package/"
    wanted = [prefix + p for p in ("flops_manager/__init__.py", "flops_manager/utils/__init__.py",
                                   "flops_manager/utils/types.py",
                                   "flops_manager/utils/sla/components.py",
                                   "flops_manager/utils/sla/generator.py")]
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp_path, members=[tar.getmember(m) for m in wanted], filter="data")
    sys.path.insert(0, str(tmp_path / prefix))
    try:
        from flops_manager.utils.sla import components, generator
    finally:
        sys.path.pop(0)
    return components, generator


def observatory_sla(tmp_path: Path) -> dict:
    """The SLA FLOpsObservatory sends to create its app (classes/apps/customer_facing_base.py:
    app name = namespace = 'observatory', customerID = the customer)."""
    components, generator = upstream_sla_generator(tmp_path)
    return generator.generate_sla(components.SlaComponentsWrapper(core=components.SlaCore(
        customerID="Admin", names=components.SlaNames(app_name="observatory",
                                                       app_namespace="observatory"))))


def managers_create_app(testbed, sla: dict) -> tuple[int, object]:
    """What api/app_management.create_app does: POST /api/application/ with the token."""
    return http(sm_url(testbed) + "/api/application/", "POST", sla, token=login(testbed))


# -- tests ------------------------------------------------------------------------------------
def test_the_stand_in_is_the_testbeds_system_manager(testbed):
    info = json.loads(subprocess.run(["docker", "inspect", tb.SYSTEM_MANAGER],
                                     capture_output=True, text=True, check=True).stdout)[0]
    assert info["Config"]["Labels"][tb.LABEL] == "1"
    assert info["Config"]["Labels"]["org.flops-tasks.stand-in"] == "oakestra system manager"
    assert tb.NETWORK in info["NetworkSettings"]["Networks"]
    bindings = info["HostConfig"]["PortBindings"]["10000/tcp"]
    assert bindings == [{"HostIp": gateway(), "HostPort": "10000"}]
    # the FLOps manager (its container on the same network) reaches it by name
    manager = subprocess.run(["docker", "ps", "-q", "--filter",
                              "label=com.docker.compose.service=flops_manager", "--filter",
                              f"label=com.docker.compose.project={tb.PROJECT}"],
                             capture_output=True, text=True, check=True).stdout.split()
    assert len(manager) == 1
    probe = ("import json, urllib.request; print(json.load(urllib.request.urlopen("
             "'http://system_manager:10000/api/clusters/active', timeout=5)))")
    res = subprocess.run(["docker", "exec", manager[0], "python3", "-c", probe],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr
    # and the tool reaches it at SYSTEM_MANAGER_IP (the gateway), as in .testbed/invoke.yaml
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
    assert res.returncode == 3 and "This will delete: Oakestra app" in res.stderr
    assert listed(testbed) == FLOPS | KEPT
    res = inv("--dry", "clear-apps", "--json")
    assert res.returncode == 0, res.stderr
    assert sum(s["changed"] for s in json.loads(res.stdout)["hosts"]["oakestra"]["steps"]) == 4
    assert listed(testbed) == FLOPS | KEPT and state(testbed)["deleted"] == []

    res = inv("clear-apps", "--yes", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert {a["applicationID"] for a in state(testbed)["deleted"]} == FLOPS
    assert listed(testbed) == KEPT
    assert {s["microservice_name"] for s in state(testbed)["services"]} == {"frontend"}
    kept = [s["detail"] for s in json.loads(res.stdout)["hosts"]["oakestra"]["steps"]
            if s["step"] == "kept"]
    assert len(kept) == 3 and any("owned by 'alice'" in k for k in kept)

    again = inv("clear-apps", "--yes", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["changed"] is False


def test_redb_leaves_the_apps_deployed_and_the_managers_observatory_gets_409(testbed, tmp_path):
    """Today's failure, shown, then what clear-apps changes."""
    sla = observatory_sla(tmp_path)
    assert sla["applications"][0]["application_name"] == "observatory"
    seed(testbed, {"users": [ADMIN], "applications": [SEED["applications"][0],
                                                      SEED["applications"][2]]})
    write_flops_db({k: FLOPS_DOCS[k] for k in ("FLOpsObservatory", "FLOpsProject")})

    assert inv("redb", "--yes").returncode == 0
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
    found = subprocess.run(["docker", "ps", "-q", "--filter",
                            "label=com.docker.compose.service=flops_manager", "--filter",
                            f"label=com.docker.compose.project={tb.PROJECT}"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert len(found) == 1, "the testbed's flops_manager is not running"
    image = subprocess.run(["docker", "inspect", "-f",
                            '{{index .Config.Labels "org.flops-tasks.addon-ref"}}', found[0]],
                           capture_output=True, text=True, check=True).stdout.strip()
    if not image or image == "<no value>":
        pytest.fail("the testbed's flops_manager is not built from upstream's code (no "
                    "org.flops-tasks.addon-ref label): is the addon-FLOps tarball missing?")
    return found[0]


def test_upstreams_own_client_meets_the_409_and_creates_after_clear_apps(testbed):
    """The manager's real code (api/utils/login.py, api/app_management.py create_app, run in
    its container against system_manager:10000) logs in and re-creates its observatory."""
    manager = upstream_manager()
    seed(testbed, {"users": [ADMIN], "applications": [SEED["applications"][0]]})
    write_flops_db({})  # after redb: the FLOps DB forgot the observatory

    def create() -> dict:
        res = subprocess.run(["docker", "exec", manager, "python", "-c", UPSTREAM_CREATE],
                             capture_output=True, text=True, timeout=120)
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


def assert_one_line(res: subprocess.CompletedProcess, *needles: str,
                    after_listing: bool = False) -> None:
    """Exit 1 with one line naming the problem (after the list of what --yes would delete)."""
    assert res.returncode == 1, res.stdout + res.stderr
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    assert "Traceback" not in res.stdout + res.stderr
    if after_listing:
        assert lines[0].startswith("This will delete: Oakestra app "), lines[0]
    else:
        assert len(lines) == 1, res.stdout + res.stderr
    for needle in needles:
        assert needle in lines[-1], lines[-1]


def test_bad_input_is_one_line_and_deletes_nothing(testbed):
    seed(testbed)
    write_flops_db(FLOPS_DOCS)
    wrong = "wr0ng-7c1d9a"
    res = inv("clear-apps", "--yes", env={"FLOPS_OAKESTRA_PASSWORD": wrong})
    assert_one_line(res, "refused the login of user 'Admin' (HTTP 401",
                    "FLOPS_OAKESTRA_PASSWORD")
    assert wrong not in res.stdout + res.stderr

    # gone between the listing (the 1st) and the check before deleting (the 2nd)
    http(sm_url(testbed) + "/_standin/vanish", "POST",
         {"applicationID": HELPER_ID, "after_lists": 2})
    res = inv("clear-apps", "--yes")
    assert_one_line(res, "vanished since the listing (helper", "nothing was deleted",
                    after_listing=True)
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

    db = subprocess.run(["docker", "ps", "-q", "--filter",
                         "label=com.docker.compose.service=flops_db", "--filter",
                         f"label=com.docker.compose.project={tb.PROJECT}"],
                        capture_output=True, text=True, check=True).stdout.split()
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
