"""fresh-start between experiments, on prepared Docker workers with FLOps leftovers everywhere:
FLOps' apps in Oakestra, data in every store, stale FLOps images on a worker."""

from __future__ import annotations

import json

import pytest

from .helpers import dry_then_real, in_worker, inv, worker
from .oakestra import FLOPS, FLOPS_DOCS, KEPT, SEED, gateway, listed, seed, state, write_flops_db
from .stores import ALL, Stores

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prepared(fresh):
    res = inv("prepare-builder", "prepare-learner")
    assert res.returncode == 0, res.stdout + res.stderr
    return fresh


def stale_image(i: int) -> str:
    """An image of the FLOps registry on worker i that nothing uses (as a finished run
    leaves its learner images behind)."""
    ref = f"{gateway()}:5073/flops/stale:1"
    in_worker(
        worker(i),
        "d=$(mktemp -d) && cd $d && echo stale > f && "
        "printf 'FROM scratch\\nCOPY f /f\\n' > Dockerfile && "
        f"docker build -q -t {ref} . >/dev/null && cd / && rm -rf $d",
    )
    return ref


def on_worker(i: int, ref: str) -> bool:
    return (
        in_worker(worker(i), f"docker image inspect {ref} >/dev/null 2>&1", check=False).returncode
        == 0
    )


@pytest.fixture
def leftovers(prepared, tmp_path):
    stores = Stores(tmp_path)
    stores.write_all()
    seed(prepared, SEED)
    write_flops_db(FLOPS_DOCS)  # after the stores' marker: the apps' ids, as the manager has
    stores.mongo().flops.safety.insert_one({"mark": stores.mark})
    image = stale_image(1)
    assert stores.held() == ALL and listed(prepared) == FLOPS | KEPT and on_worker(1, image)
    return stores, image


def test_dry_fresh_start_lists_everything_and_changes_nothing(prepared, leftovers):
    stores, image = leftovers
    res = inv("--dry", "fresh-start", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads(res.stdout)
    assert data["dry"] is True
    oakestra = " ".join(s["detail"] for s in data["hosts"]["oakestra"]["steps"])
    assert oakestra.count("would undeploy and delete") == len(FLOPS)
    plan = "\n".join(c["summary"] for c in data["changes"])
    for volume in ("flops_db", "mlflow_backend_store_data", "vsftpd_home", "flops_mqtt_data"):
        assert f"docker volume rm flops_testbed_{volume}" in plan
    assert "registry_data" not in plan
    assert all(not c["done"] for c in data["changes"])
    w1 = " ".join(s["detail"] for s in data["hosts"]["w1"]["steps"])
    assert "would remove" in w1
    # nothing changed anywhere
    assert listed(prepared) == FLOPS | KEPT and state(prepared)["deleted"] == []
    assert stores.held() == ALL
    assert on_worker(1, image)


def test_fresh_start_asks_once_for_everything(prepared, leftovers):
    stores, image = leftovers
    res = inv("fresh-start")  # no terminal, no --yes
    assert res.returncode == 3, res.stdout + res.stderr
    head, *items, last = res.stderr.strip().splitlines()
    assert head == "This will delete:" and "--yes" in last
    text = "\n".join(items)
    assert text.count("  - Oakestra app ") == len(FLOPS)
    assert "(volume flops_testbed_mlflow_backend_store_data)" in text
    assert f"  - w1: {image} (docker)" in text
    assert stores.held() == ALL and listed(prepared) == FLOPS | KEPT and on_worker(1, image)


def test_fresh_start_clears_apps_stores_and_images_then_doctor(prepared, leftovers):
    stores, image = leftovers
    sidecar_image = in_worker(
        worker(1), "docker container inspect -f '{{.Config.Image}}' ml_data_server"
    ).stdout.strip()
    res = dry_then_real("fresh-start", "--yes")  # the dry run plans exactly these changes
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads(res.stdout)
    assert listed(prepared) == KEPT
    assert {a["applicationID"] for a in state(prepared)["deleted"]} == FLOPS
    assert stores.held() == {**{k: False for k in ALL}, "registry": True}
    assert not on_worker(1, image)
    assert on_worker(1, sidecar_image)  # in use by the running sidecar: kept
    doctor = {
        host: [s for s in h["steps"] if s["step"] == "doctor"] for host, h in data["hosts"].items()
    }
    assert doctor["w1"][0]["status"] in ("ok", "warning"), doctor
    # ready; the one warning says the stores' fixed credentials answer on the gateway
    assert doctor["stack"][0]["status"] == "warning", doctor
    assert doctor["stack"][0]["detail"].startswith("ready, with warnings: exposure: "), doctor
