"""The suite placed across machines: the registry and artifact store on worker w1.

Fresh workers first trust the registry where the default placement runs it (this host);
then the placement ``split`` moves the registry and the FTP store to w1's own dockerd
(through Docker's SSH transport), once for the whole module. The data-safety tests of
test_stack.py run here unchanged (imported, not copied): their stores are reached where
this placement runs them (the ``where`` fixture), and every ``inv`` runs with the split
config, so each scope must keep or empty exactly what it does locally. Workers must push
and pull through the registry on w1, trust exactly its new address (the old one is
dropped), and every stack task must name the host of each service; a host that is down
fails only its services.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest

from flops_tasks import testbed as tb
from flops_tasks.config import settings

from . import helpers
from .helpers import in_worker, inv, worker
from .stores import ALL, Where
from .test_stack import (  # noqa: F401 - pytest collects these tests and fixtures here
    ok,
    stores,
    test_clear_registry_empties_it_and_it_still_accepts_pushes,
    test_destructive_tasks_refuse_without_a_tty_and_change_nothing,
    test_down_then_up_keeps_everything,
    test_dry_reset_prints_a_plan_and_touches_nothing,
    test_redb_empties_only_the_flops_db_through_the_managers_api,
    test_reset_all_empties_every_store,
    test_reset_clean_empties_every_store_but_the_registry,
    test_reset_db_empties_only_the_flops_db,
    test_reset_keeps_everything,
    test_reset_registry_flag,
)

pytestmark = pytest.mark.integration
PORT = 5073
ON_W1 = ("flops_image_registry", "vsftpd_server")


def _progress(line: str) -> None:
    print(f"[placement] {line}", flush=True)


@pytest.fixture(scope="module")
def split(fresh):
    """Workers that trusted the local registry; then the suite placed 'split'."""
    ok(inv("prepare-learner"))  # default placement: the registry at the gateway
    tb.up_placement("split", progress=_progress)
    where = Where.of(tb.default_paths().placement_config("split"))
    yield where
    in_worker(worker(1), "true")  # w1 must be up again for what follows
    ok(inv("up"))  # everything back on the local engine


@pytest.fixture
def where(split) -> Where:
    """The stores of the imported data-safety tests, where the split placement runs them."""
    return split


@pytest.fixture
def placed(split, monkeypatch):
    """``inv(...)`` with the split config."""
    monkeypatch.setattr(helpers, "TESTBED_CONFIG", split.config)
    return split


def addresses() -> tuple[str, str]:
    """(the gateway, where the default placement's registry is; w1's address)."""
    s = settings(tb.context_for(tb.default_paths()))
    return s.addresses["FLOPS_IMAGE_REGISTRY_IP"], s.inventory[0].host


def daemon_json(i: int) -> list[str]:
    text = in_worker(worker(i), "cat /etc/docker/daemon.json").stdout
    return json.loads(text).get("insecure-registries", [])


def catalog(host: str) -> list[str]:
    with urllib.request.urlopen(f"http://{host}:{PORT}/v2/_catalog", timeout=10) as resp:
        return json.load(resp)["repositories"]


def test_a_moved_registry_is_a_planned_change_under_dry(placed):
    gateway, w1 = addresses()
    assert f"{gateway}:{PORT}" in daemon_json(1) and f"{gateway}:{PORT}" in daemon_json(2)
    res = inv("--dry", "bootstrap", "--verbose")  # each planned change under its row
    ok(res)
    assert f"drop former {gateway}:{PORT}" in res.stdout
    assert f"remove /etc/containerd/certs.d/{gateway}:{PORT}/hosts.toml" in res.stdout
    assert f"workers' trust for {gateway}:{PORT}" in res.stdout
    assert daemon_json(1) == daemon_json(2) == [f"{gateway}:{PORT}"]  # nothing changed


def test_workers_push_and_pull_through_the_registry_on_w1(placed):
    gateway, w1 = addresses()
    res = inv("bootstrap", "--json")
    ok(res)
    data = json.loads(res.stdout)
    for host in ("w1", "w2"):
        steps = {s["step"]: s for s in data["hosts"][host]["steps"]}
        # buildah, as FLOps builds; changed where the check installed its tools
        installed = "installed for the check: " in steps["push"]["detail"]
        assert steps["push"]["status"] == ("changed" if installed else "ok"), steps["push"]
        assert f"{w1}:{PORT}" in steps["push"]["detail"]
        assert steps["sidecar"]["status"] in ("ok", "changed")
        # trust moved: the registry on w1 only; the gateway's is gone from every file
        assert daemon_json(int(host[1])) == [f"{w1}:{PORT}"]
        in_worker(
            worker(int(host[1])),
            f"test -f /etc/containerd/certs.d/{w1}:{PORT}/hosts.toml"
            f" && ! test -e /etc/containerd/certs.d/{gateway}:{PORT}",
        )
        conf = in_worker(
            worker(int(host[1])), "cat /etc/containers/registries.conf.d/50-flops-registry.conf"
        ).stdout
        assert f"{w1}:{PORT}" in conf and gateway not in conf
    # what the workers pushed is in the registry on w1, read over the network from here
    repos = catalog(w1)
    assert {
        "flops-tasks/builder-probe-w1-buildah",
        "flops-tasks/builder-probe-w2-buildah",
        tb.SIDECAR_REPO.split(":")[0],
    } <= set(repos), repos
    # a learner's sidecar came from there: its image names the registry on w1
    image = in_worker(worker(2), "docker inspect -f '{{.Config.Image}}' ml_data_server").stdout
    assert image.strip() == f"{w1}:{PORT}/{tb.SIDECAR_REPO}"
    # and a plain pull from the other worker goes through it as well
    in_worker(worker(2), f"docker pull -q {w1}:{PORT}/{tb.SIDECAR_REPO} >/dev/null")
    # a second bootstrap changes nothing on the workers
    again = json.loads(inv("bootstrap", "--json").stdout)
    for host in ("w1", "w2"):
        changed = [
            s["step"]
            for s in again["hosts"][host]["steps"]
            if s["changed"] and s["step"] not in ("push", "push-buildx")
        ]
        assert changed == [], changed


def test_doctor_names_the_host_of_each_service(placed):
    res = inv("doctor", "--json")
    ok(res)
    hosts = json.loads(res.stdout)["hosts"]
    on_w1 = {s["step"] for s in hosts["stack@w1"]["steps"]}
    # exposure: a placement publishes on every address (one bind address for every engine)
    assert on_w1 == {
        "flops_image_registry",
        "vsftpd_server",
        "exposure",
        "registry",
        "artifact-store",
    }
    local = {s["step"] for s in hosts["stack"]["steps"]}
    assert {
        "flops_manager",
        "flops_db",
        "flops_mqtt",
        "mlflow_backend_store",
        "exposure",
        "flops-db",
        "backend-store",
    } == local
    assert "stack@w1" in inv("doctor").stdout


def w1_containers() -> dict[str, str]:
    """Container name -> state in w1's own dockerd, read inside the worker (not over SSH)."""
    out = in_worker(worker(1), "docker ps -a --format '{{.Names}} {{.State}}'").stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def test_w1s_engine_runs_the_registry_and_the_artifact_store(where):
    assert where.project("flops_image_registry").label == "w1"
    running = w1_containers()
    assert all(running.get(svc) == "running" for svc in ON_W1), running
    local = {c.service for c in where.project("flops_manager").snapshot()}
    assert local == {"flops_manager", "flops_mqtt", "flops_db", "mlflow_backend_store"}


def test_reset_registry_clears_it_on_w1(stores):  # noqa: F811 - the imported fixture
    """The registry is emptied and restarted where it runs: a new volume on w1's engine."""
    before = in_worker(
        worker(1), "docker volume inspect -f '{{.CreatedAt}}' flops_testbed_registry_data"
    ).stdout.strip()
    ok(inv("reset", "--registry", "--yes"))
    after = in_worker(
        worker(1), "docker volume inspect -f '{{.CreatedAt}}' flops_testbed_registry_data"
    ).stdout.strip()
    assert before != after
    assert stores.held() == {**ALL, "registry": False}
    assert w1_containers()["flops_image_registry"] == "running"


def test_status_json_carries_the_host_of_each_service(placed):
    res = inv("status", "--json")
    ok(res)
    rows = {r["service"]: r for r in json.loads(res.stdout)["services"]}
    assert {svc: r["host"] for svc, r in rows.items()} == {
        "flops_manager": "local",
        "flops_image_registry": "w1",
        "flops_mqtt": "local",
        "flops_db": "local",
        "mlflow_backend_store": "local",
        "vsftpd_server": "w1",
    }
    assert {r["health"] for r in rows.values()} == {"healthy"}
    table = inv("status")
    ok(table)
    line = {svc: next(ln for ln in table.stdout.splitlines() if f" {svc} " in ln) for svc in rows}
    assert " w1 " in line["flops_image_registry"] and " w1 " in line["vsftpd_server"]
    assert " local " in line["flops_manager"] and " w1 " not in line["flops_manager"]


# -- last: they stop services on w1, or w1 itself ---------------------------------------
def running_here() -> dict[str, str]:
    out = subprocess.run(
        [
            "docker",
            "ps",
            "--filter",
            f"label=com.docker.compose.project={tb.PROJECT}",
            "--format",
            "{{.Names}} {{.ID}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def test_a_port_taken_on_w1_stops_up_before_anything_starts(placed):
    ok(inv("down"))
    in_worker(
        worker(1),
        "docker run -d --name squatter -p 5073:5073 "
        f"{tb.BASE_IMAGE.format(suite='trixie')} sleep 600 >/dev/null",
    )
    try:
        res = inv("up")
        assert res.returncode == 1, res.stdout + res.stderr
        line = res.stderr.strip()
        assert "\n" not in line and "Traceback" not in line
        assert "port 5073 (flops_image_registry) on w1 is in use by container squatter" in line
        assert running_here() == {}  # nothing started on the local engine either
    finally:
        in_worker(worker(1), "docker rm -f squatter >/dev/null")
    ok(inv("up"))


def test_a_placement_host_that_is_down_fails_only_its_services(placed):
    before = running_here()
    subprocess.run(["docker", "stop", "-t", "1", worker(1)], check=True, capture_output=True)
    try:
        res = inv("status", "--json")
        assert res.returncode == 4  # a host unreachable
        rows = {r["service"]: r for r in json.loads(res.stdout)["services"]}
        for svc in ("flops_image_registry", "vsftpd_server"):
            assert rows[svc]["state"] == "unreachable" and rows[svc]["host"] == "w1"
            assert "host w1" in rows[svc]["error"] and "\n" not in rows[svc]["error"]
        assert all(r["health"] == "healthy" for svc, r in rows.items() if r["host"] == "local")
        res = inv("doctor", "--json")
        assert res.returncode == 1
        hosts = json.loads(res.stdout)["hosts"]
        failed = {s["step"] for s in hosts["stack@w1"]["steps"] if s["status"] == "failed"}
        assert failed == {"flops_image_registry", "vsftpd_server"}
        assert hosts["stack"]["status"] == "ok"
        res = inv("up")
        assert res.returncode == 1 and res.stderr.strip().count("\n") == 0
        assert "host w1" in res.stderr and "nothing was changed on any host" in res.stderr
        assert running_here() == before
    finally:
        subprocess.run(["docker", "start", worker(1)], check=True, capture_output=True)
    # w1 comes back with its services (restart policy); the placement is whole again
    deadline = time.monotonic() + 180
    while (res := inv("status", "--json")).returncode != 0 or any(
        r["health"] != "healthy" for r in json.loads(res.stdout)["services"]
    ):
        assert time.monotonic() < deadline, res.stdout + res.stderr
        time.sleep(2)
