"""Workflows on a fresh testbed: dry bootstrap, bootstrap, doctor, repair, data, images, demo.

w1 runs Docker (builder and learner), w2 only containerd (builder): bootstrap and doctor
cover both worker kinds."""

from __future__ import annotations

import json

import pytest

from .helpers import in_worker, inv, worker

pytestmark = pytest.mark.integration


def test_dry_bootstrap_on_fresh_workers_plans_and_changes_nothing(fresh_mixed):
    res = inv("--dry", "bootstrap")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "(dry run: nothing changed)" in res.stdout
    assert "would change" in res.stdout and "changes planned" in res.stdout
    for i in (1, 2):
        in_worker(worker(i), "! dpkg -s qemu-user-static >/dev/null 2>&1")
        in_worker(worker(i), "! docker container inspect ml_data_server >/dev/null 2>&1")
    assert inv("doctor").returncode == 1


def test_bootstrap_then_doctor_passes(fresh_mixed):
    res = inv("bootstrap", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads(res.stdout)
    for host in ("w1", "w2"):
        steps = {s["step"]: s for s in data["hosts"][host]["steps"]}
        assert steps["push"]["status"] == "ok"  # FLOps' path (buildah) on both kinds
        assert "NodeEngine not found: add-on not enabled" in steps["doctor"]["detail"]
        assert steps["doctor"]["status"] == "warning"  # ready, and says what it could not do
    w1 = {s["step"]: s for s in data["hosts"]["w1"]["steps"]}
    w2 = {s["step"]: s for s in data["hosts"]["w2"]["steps"]}
    assert w1["push-buildx"]["status"] == "ok" and "push-buildx" not in w2
    assert "sidecar" in w1 and "sidecar" not in w2  # a containerd worker only builds
    res = inv("doctor", "--json")
    assert res.returncode == 0, res.stdout
    doctor = json.loads(res.stdout)
    assert doctor["ok"] is True
    assert sorted(w.split(":")[0] for w in doctor["warnings"]) == ["stack", "w1", "w1", "w2"]
    # the stores answer on the testbed's gateway with upstream's fixed credentials: said so
    [exposure] = [s for s in doctor["hosts"]["stack"]["steps"] if s["step"] == "exposure"]
    assert exposure["status"] == "warning"
    gateway = fresh_mixed["gateway"]
    assert f"mlflow_backend_store on {gateway}:3306 (MySQL root/oakestra" in exposure["detail"]
    assert "127.0.0.1" not in exposure["detail"]  # the registry's loopback binding is no risk
    for host in ("w1", "w2"):
        assert doctor["hosts"][host]["status"] == "ok"
    text = inv("doctor")
    assert text.returncode == 0 and "NodeEngine not found: add-on not enabled" in text.stdout
    assert "warnings (no changes)" in text.stdout


def test_doctor_names_a_learner_whose_sidecar_stopped_and_bootstrap_repairs_it(fresh_mixed):
    in_worker(worker(1), "docker stop ml_data_server >/dev/null")
    res = inv("doctor", "--json")
    assert res.returncode == 1
    data = json.loads(res.stdout)
    assert data["hosts"]["w2"]["status"] == "ok"
    bad = [s for s in data["hosts"]["w1"]["steps"] if s["status"] == "failed"]
    assert [s["step"] for s in bad] == ["sidecar"]
    assert "fix: inv prepare-learner --host w1" in bad[0]["detail"]
    assert inv("bootstrap").returncode == 0
    assert inv("doctor").returncode == 0


def test_clear_images_lists_asks_and_keeps_the_running_sidecars_image(fresh_mixed):
    """After bootstrap w1 holds the sidecar's image (in use) and here a stale one from the
    registry; w2 has no Docker at all."""
    registry = f"{fresh_mixed['gateway']}:5073"
    sidecar = f"{registry}/flops/ml-data-server:offline"
    in_worker(
        worker(1),
        "d=$(mktemp -d) && cd $d && echo stale > f && "
        "printf 'FROM scratch\\nCOPY f /f\\n' > Dockerfile && "
        f"docker build -q -t {registry}/flops/stale:1 . >/dev/null && "
        "cd / && rm -rf $d",
    )
    res = inv("clear-images", "--host", "w1")
    assert res.returncode == 3, res.stdout + res.stderr
    assert f"This will delete:\n  - w1: {registry}/flops/stale:1 (docker)" in res.stderr
    assert sidecar not in res.stderr
    res = inv("clear-images", "--host", "w1,w2", "--yes", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    hosts = json.loads(res.stdout)["hosts"]
    rows = hosts["w1"]["steps"]
    assert rows[0]["status"] == "changed"
    assert rows[0]["detail"] == f"removed 1 image: docker: {registry}/flops/stale:1"
    assert {
        "step": "kept",
        "status": "ok",
        "changed": False,
        "host": "w1",
        "detail": f"{sidecar} (docker): in use by running container ml_data_server",
    } in rows
    left = in_worker(
        worker(1),
        f"docker image ls --format '{{{{.Repository}}}}:{{{{.Tag}}}}' | "
        f"grep '^{registry}/' || true",
    ).stdout.split()
    assert left == [sidecar]
    in_worker(worker(1), "docker inspect -f '{{.State.Running}}' ml_data_server | grep -qx true")
    notes = {s["step"]: s["detail"] for s in hosts["w2"]["steps"]}
    assert notes["docker"] == "no docker on this host: Docker images not checked"
    assert hosts["w2"]["status"] == "ok"


def test_demo_runs_end_to_end(fresh_mixed):
    res = inv("demo", testbed=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "what now:" in res.stdout and "doctor" in res.stdout
