"""The management stack with upstream's real FLOps manager, and its data safety.

Data safety: one test per row of README.md's "Data safety" table. Real data is written to
each store (registry image, FLOps DB record, MLflow MySQL row, FTP artifact, retained MQTT
message) and read back after each action. The manager is upstream's own code (built by the testbed
from the addon-FLOps tarball); tests drive it through its API and its own data layer.

Each store is reached on the engine and at the address where the placement runs it
(``stores.Where``): here everything is on the local engine; test_stack_split.py runs the
same data-safety tests with the registry and the artifact store on worker w1.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tarfile
import time
import uuid

import pytest

from flops_tasks import testbed as tb
from flops_tasks.config import DEFAULTS

from . import helpers, oakestra
from .helpers import dry_then_real, inv
from .stores import (
    ALL,
    Stores,
    Where,
    exec_in,
    sh,
)

pytestmark = pytest.mark.integration
PROJECT = tb.PROJECT


@pytest.fixture
def where(testbed) -> Where:
    """Everything on the local engine (test_stack_split.py overrides this fixture)."""
    return Where.of(helpers.TESTBED_CONFIG)


@pytest.fixture
def stores(where, tmp_path, monkeypatch):
    monkeypatch.setattr(helpers, "TESTBED_CONFIG", where.config)  # inv(...) uses its config
    s = Stores(tmp_path, where)
    s.write_all()
    assert s.held() == ALL
    yield s
    where.push_sidecar()  # learners pull the sidecar from the registry


def ok(res: subprocess.CompletedProcess) -> None:
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr


def test_down_then_up_keeps_everything(stores):
    ok(inv("down"))
    ok(inv("up"))
    assert stores.held() == ALL


# A FLOps-like record written and read through the manager's own data layer
# (upstream flops_manager/database/common.py: add_to_db stores a pydantic model in the
# collection named after its class; retrieve_from_db_by_customer_id loads it back).
MANAGER_DB = """
import sys
from pydantic import BaseModel
from database.common import add_to_db, retrieve_from_db_by_customer_id

class FlopsTasksProbe(BaseModel):
    customer_id: str
    flops_project_id: str = "probe"

mode, mark = sys.argv[1:3]
if mode == "write":
    print(add_to_db(FlopsTasksProbe(customer_id=mark)))
else:
    found = retrieve_from_db_by_customer_id(FlopsTasksProbe, mark)
    print(found.customer_id if found else "NONE")
"""


def manager_db(mode: str, mark: str) -> str:
    return exec_in("flops_manager", "python", "-c", MANAGER_DB, mode, mark).strip()


def test_reset_keeps_everything(stores):
    manager_db("write", stores.mark)
    ok(dry_then_real("reset"))
    assert stores.held() == ALL
    assert manager_db("read", stores.mark) == stores.mark
    ok(dry_then_real("reset", "--recreate"))
    assert stores.held() == ALL
    assert manager_db("read", stores.mark) == stores.mark


def test_redb_empties_only_the_flops_db_through_the_managers_api(stores):
    manager_db("write", stores.mark)
    assert manager_db("read", stores.mark) == stores.mark
    stores.mongo().other_db.keep.insert_one({"mark": stores.mark})
    res = dry_then_real("redb", "--yes")
    ok(res)
    assert "through the FLOps manager API" in res.stdout
    assert stores.held() == {**ALL, "flops_db": False}
    assert manager_db("read", stores.mark) == "NONE"
    assert stores.mongo().other_db.keep.find_one({"mark": stores.mark}) is not None


def test_reset_clean_empties_every_store_but_the_registry(stores):
    ok(dry_then_real("reset", "--clean", "--yes"))
    assert stores.held() == {**{k: False for k in ALL}, "registry": True}
    stores.write_all()  # every emptied store works again, with upstream's credentials
    assert stores.held() == ALL


def test_reset_all_empties_every_store(stores):
    ok(dry_then_real("reset", "--all", "--yes"))
    assert stores.held() == {k: False for k in ALL}
    stores.write_all()
    assert stores.held() == ALL
    assert stores.fetch_every_blob() == 2


def test_reset_db_empties_only_the_flops_db(stores):
    manager_db("write", stores.mark)
    ok(dry_then_real("reset", "--db", "--yes"))
    assert stores.held() == {**ALL, "flops_db": False}
    assert manager_db("read", stores.mark) == "NONE"


def test_clear_registry_empties_it_and_it_still_accepts_pushes(stores):
    ok(dry_then_real("clear-registry", "--yes"))
    assert stores.held() == {**ALL, "registry": False}
    # the same layers again: an in-memory blob cache would answer "already exists" and the
    # blobs would be missing; ours was restarted, so every blob must be fetchable
    stores.push_image(stores.image)
    assert stores.fetch_every_blob() == 2
    assert stores.held() == ALL


def test_reset_registry_flag(stores):
    ok(dry_then_real("reset", "--registry", "--yes"))
    assert stores.held() == {**ALL, "registry": False}
    stores.push_image(stores.image)
    assert stores.fetch_every_blob() == 2


def test_destructive_tasks_refuse_without_a_tty_and_change_nothing(stores):
    for args in (
        ("clear-registry",),
        ("redb",),
        ("reset", "--registry"),
        ("reset", "--db"),
        ("reset", "--clean"),
        ("reset", "--all"),
        ("fresh-start",),
    ):
        res = inv(*args)
        assert res.returncode == 3, res.stdout + res.stderr
        first, *items, last = res.stderr.strip().splitlines()
        assert first == "This will delete:", res.stderr
        assert items and all(item.startswith("  - ") for item in items), res.stderr
        assert last.startswith("nothing changed") and "--yes" in last, res.stderr
    assert stores.held() == ALL


def test_dry_reset_prints_a_plan_and_touches_nothing(stores):
    before = stores.where.container_ids()
    res = inv("--dry", "reset", "--registry", "--db", "--yes", "--verbose")
    ok(res)
    assert "reset (dry run: nothing changed): changes planned" in res.stdout
    assert "- docker compose" in res.stdout and " restart " in res.stdout
    assert "- docker volume rm flops_testbed_registry_data" in res.stdout
    assert "DELETE" in res.stdout
    assert stores.where.container_ids() == before
    assert stores.held() == ALL


def test_status_and_logs(testbed):
    res = inv("status", "--json")
    ok(res)
    rows = {r["service"]: r for r in json.loads(res.stdout)["services"]}
    assert {r["health"] for r in rows.values()} == {"healthy"}
    # bound to the testbed's gateway (flops.stack.bind_address), the registry also on
    # loopback (testbed/testbed-loopback.compose.yml): never on every address
    gateway = oakestra.gateway()  # of the current testbed network
    assert sorted(rows["flops_image_registry"]["ports"]) == sorted(
        [f"{gateway}:5073", "127.0.0.1:5073"]
    )
    assert rows["mlflow_backend_store"]["ports"] == [f"{gateway}:3306"]
    res = inv("logs", "--service", "flops_db", "--tail", "5")
    ok(res)
    res = inv("logs", "--service", "nope")
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0
    assert "unknown service 'nope'" in res.stderr


# -- upstream's real FLOps manager ---------------------------------------------------------
def inspect(container: str) -> dict:
    return json.loads(sh("docker", "container", "inspect", container))[0]


def logs(container: str) -> str:
    res = subprocess.run(["docker", "logs", container], capture_output=True, text=True, timeout=60)
    return res.stdout + res.stderr


def health(container: str) -> str:
    state = inspect(container)["State"]
    return (state.get("Health") or {}).get("Status") or state["Status"]


def wait_for(container: str, wanted: set[str], timeout: float) -> str:
    """Poll the container's health until it is one of ``wanted``; returns it."""
    deadline = time.monotonic() + timeout
    while (state := health(container)) not in wanted:
        assert time.monotonic() < deadline, f"{container} still {state} after {timeout:g}s"
        time.sleep(0.5)
    return state


def upstream_file(rel: str) -> bytes:
    tarball = tb.upstream_tarball()
    if not tarball.is_file():
        pytest.fail(
            f"the upstream tarball {tarball} is missing: the testbed cannot have built "
            f"the real manager (set {tb.UPSTREAM_VAR})"
        )
    with tarfile.open(tarball) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(rel))
        return tar.extractfile(member).read()


def test_up_brings_upstreams_real_manager_to_healthy(testbed):
    ok(inv("up"))
    rows = {r["service"]: r for r in json.loads(inv("status", "--json").stdout)["services"]}
    manager = rows["flops_manager"]
    assert manager["health"] == "healthy" and manager["container"] == "flops_manager"
    assert manager["addon_ref"] == DEFAULTS["addon"]["ref"]
    assert not manager.get("stand_in")
    assert rows["flops_db"]["stand_in"] == "mongo 3.6"  # the one stand-in left
    assert {r["container"] for r in rows.values()} == set(rows)  # upstream's container names
    # the code in the container is upstream's, byte for byte
    for rel in (
        "flops_manager/main.py",
        "flops_manager/database/common.py",
        "flops_manager/mqtt/main.py",
    ):
        inside = sh("docker", "exec", "flops_manager", "sha256sum", f"/{rel}").split()[0]
        assert inside == hashlib.sha256(upstream_file(rel)).hexdigest(), rel
    assert "FLOps Manager started." in logs("flops_manager")  # docker logs by upstream's name
    log = inspect("flops_manager")["State"]["Health"]["Log"][-1]["Output"]
    assert "MQTT connected" in log


def test_the_managers_own_credentials_log_in_to_mariadb_and_vsftpd(testbed):
    """From inside the manager, with its own modules, constants and drivers (pymysql, ftplib)."""
    probe = f"flopstasks_{uuid.uuid4().hex[:8]}"
    script = """
import ftplib, io, sys
from flops_manager.mlflow.storages import artifact_store as a, backend_store as b
probe, password = sys.argv[1], sys.argv[2]
b.ensure_user_backend_store_exists(probe)  # the manager's own step before each project
with b._get_db_connection() as conn, conn.cursor() as cur:
    cur.execute("SHOW DATABASES LIKE %s", (probe,))
    print("mysql", b.BACKEND_STORE_CONNECTION_USER_NAME, cur.fetchone()[0])
    cur.execute("DROP DATABASE `%s`" % probe)
with ftplib.FTP(a.ARTIFACT_STORE_IP, timeout=10) as ftp:
    ftp.login(a.ARTIFACT_STORE_CONNECTION_USER_NAME, password or a.ARTIFACT_STORE_CONNECTION_PWD)
    ftp.mkd(probe)
    ftp.storbinary(f"STOR {probe}/artifact.txt", io.BytesIO(probe.encode()))
    got = io.BytesIO()
    ftp.retrbinary(f"RETR {probe}/artifact.txt", got.write)
    print("ftp", a.ARTIFACT_STORE_CONNECTION_USER_NAME, got.getvalue().decode())
    ftp.delete(f"{probe}/artifact.txt")
    ftp.rmd(probe)
"""
    out = exec_in("flops_manager", "python", "-c", script, probe, "").split("\n")
    assert out[:2] == [f"mysql root {probe}", f"ftp flops {probe}"]
    # the same FTP login with another password is refused: the check can fail
    res = subprocess.run(
        ["docker", "exec", "flops_manager", "python", "-c", script, f"{probe}x", "not-flops"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode != 0 and "530" in res.stderr


def healthcheck_command() -> list[str]:
    """The manager's health check exactly as compose gave it to Docker."""
    test = inspect("flops_manager")["Config"]["Healthcheck"]["Test"]
    assert test[0] == "CMD"
    return test[1:]


def test_the_health_check_fails_when_the_api_answers_without_mqtt(testbed):
    """Upstream's failure mode: its MQTT main thread dies, its API thread answers on."""
    check = healthcheck_command()
    assert sh("docker", "exec", "flops_manager", *check).startswith("healthy")
    name = f"flops-health-probe-{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in (e.split("=", 1) for e in inspect("flops_manager")["Config"]["Env"])}
    # plain `python main.py`, as upstream runs it, with the broker on a port nothing serves
    sh(
        "docker",
        "run",
        "-d",
        "--name",
        name,
        "--label",
        f"{tb.LABEL}={tb.TESTBED_ID}",
        "--network",
        tb.NETWORK,
        "-e",
        f"FLOPS_MANAGER_IP={env['FLOPS_MANAGER_IP']}",
        "-e",
        f"FLOPS_MQTT_BROKER_IP={env['FLOPS_MQTT_BROKER_IP']}",
        "-e",
        "FLOPS_MQTT_BROKER_PORT=9",
        tb.MANAGER_IMAGE,
        "python",
        "main.py",
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            res = subprocess.run(
                ["docker", "exec", "-e", "FLOPS_MQTT_BROKER_PORT=9", name, *check],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if "API answers" in res.stdout + res.stderr:
                break
            assert time.monotonic() < deadline, res.stdout + res.stderr
            time.sleep(0.5)
        assert res.returncode == 1
        assert "no MQTT connection to the broker" in res.stderr
        assert "ConnectionRefusedError" in logs(name)  # upstream's main thread died
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_manager_is_unhealthy_while_its_broker_is_down(testbed):
    ok(inv("up"))
    restarts = inspect("flops_manager")["RestartCount"]
    sh("docker", "stop", "flops_mqtt")
    try:
        assert wait_for("flops_manager", {"unhealthy", "starting", "restarting"}, 60)
        rows = {r["service"]: r for r in json.loads(inv("status", "--json").stdout)["services"]}
        assert rows["flops_manager"]["health"] != "healthy"
    finally:
        sh("docker", "start", "flops_mqtt")
    # run-manager.py exits when upstream's main thread dies; the restart policy brings the
    # manager back, and it is healthy again once the broker is
    wait_for("flops_manager", {"healthy"}, 120)
    assert inspect("flops_manager")["RestartCount"] > restarts


def test_the_testbeds_ml_data_server_is_upstreams_flight_server(testbed):
    """The image the testbed pushes for learners runs upstream's Arrow Flight server."""
    rel = "ml_data_server/flight_server/main.py"
    name = f"flops-sidecar-probe-{uuid.uuid4().hex[:6]}"
    sh(
        "docker",
        "run",
        "-d",
        "--name",
        name,
        "--label",
        f"{tb.LABEL}={tb.TESTBED_ID}",
        tb.SIDECAR_IMAGE,
    )
    try:
        inside = sh("docker", "exec", name, "sha256sum", f"/{rel}").split()[0]
        assert inside == hashlib.sha256(upstream_file(rel)).hexdigest()
        client = """
import json, time
import pyarrow as pa, pyarrow.flight as flight, pyarrow.parquet as pq
for tag, rows in (("mnist", [1, 2, 3]), ("other", [9])):
    pq.write_table(pa.table({"x": rows}), f"/ml_data_server_volume/{tag}.part1.parquet")
for _ in range(100):
    try:
        client = flight.connect("grpc://127.0.0.1:11027")
        infos = list(client.list_flights(json.dumps({"data_tags": ["mnist"]}).encode()))
        break
    except flight.FlightUnavailableError:
        time.sleep(0.1)
[info] = infos
table = client.do_get(info.endpoints[0].ticket).read_all()
print(info.descriptor.path[0].decode(), table.column("x").to_pylist())
"""
        out = sh("docker", "exec", name, "python", "-c", client).strip()
        assert out == "mnist.part1.parquet [1, 2, 3]"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
