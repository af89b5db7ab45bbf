"""Workflows on a fresh testbed: dry bootstrap, bootstrap, doctor, repair, data, images, demo."""

from __future__ import annotations

import json

import pytest

from .helpers import in_worker, inv, worker

pytestmark = pytest.mark.integration


def test_dry_bootstrap_on_fresh_workers_plans_and_changes_nothing(fresh):
    res = inv("--dry", "bootstrap")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "(dry run: nothing changed)" in res.stdout
    assert "would change" in res.stdout and "changes planned" in res.stdout
    for i in (1, 2):
        in_worker(worker(i), "! dpkg -s qemu-user-static >/dev/null 2>&1")
        in_worker(worker(i), "! docker container inspect ml_data_server >/dev/null 2>&1")
    assert inv("doctor").returncode == 1


def test_bootstrap_then_doctor_passes(fresh):
    res = inv("bootstrap", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads(res.stdout)
    for host in ("w1", "w2"):
        steps = {s["step"]: s for s in data["hosts"][host]["steps"]}
        assert steps["push"]["status"] == "ok"
        assert steps["doctor"]["status"] == "ok"
    res = inv("doctor", "--json")
    assert res.returncode == 0, res.stdout
    assert json.loads(res.stdout)["ok"] is True


def test_doctor_names_a_learner_whose_sidecar_stopped_and_bootstrap_repairs_it(fresh):
    in_worker(worker(2), "docker stop ml_data_server >/dev/null")
    res = inv("doctor", "--json")
    assert res.returncode == 1
    data = json.loads(res.stdout)
    assert data["hosts"]["w1"]["status"] == "ok"
    bad = [s for s in data["hosts"]["w2"]["steps"] if s["status"] == "failed"]
    assert [s["step"] for s in bad] == ["sidecar"]
    assert "fix: inv prepare-learner --host w2" in bad[0]["detail"]
    assert inv("bootstrap").returncode == 0
    assert inv("doctor").returncode == 0


def test_learner_data_twice_copies_once(fresh, tmp_path):
    for name, body in (("a.parquet", b"PAR1" + b"x" * 100 + b"PAR1"),
                       ("b.parquet", b"PAR1" + b"y" * 50 + b"PAR1")):
        (tmp_path / name).write_bytes(body)
    first = json.loads(inv("learner-data", "--src", str(tmp_path), "--json").stdout)
    assert first["hosts"]["w1"]["steps"][0]["status"] == "changed"
    assert "copied 2 files" in first["hosts"]["w1"]["steps"][0]["detail"]
    second = json.loads(inv("learner-data", "--src", str(tmp_path), "--json").stdout)
    assert second["changed"] is False
    listing = in_worker(worker(1), "docker exec ml_data_server ls /ml_data_server_volume")
    assert listing.stdout.split() == ["a.parquet", "b.parquet"]
    (tmp_path / "c.csv").write_text("not parquet")
    res = inv("learner-data", "--src", str(tmp_path / "c.csv"))
    assert res.returncode == 2 and "not a parquet file" in res.stderr


def test_clear_images_lists_asks_and_keeps_the_running_sidecars_image(fresh):
    registry = f"{fresh['gateway']}:5073"
    in_worker(worker(1), f"docker tag {registry}/flops/ml-data-server:offline "
                         f"{registry}/flops/stale:1")
    res = inv("clear-images", "--host", "w1")
    assert res.returncode == 3 and "This will delete:" in res.stderr
    assert f"{registry}/flops/stale:1 (docker)" in res.stderr
    res = inv("clear-images", "--host", "w1", "--yes", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    rows = json.loads(res.stdout)["hosts"]["w1"]["steps"]
    assert rows[0]["status"] == "changed" and f"{registry}/flops/stale:1" in rows[0]["detail"]
    assert {"step": "kept", "status": "ok", "changed": False, "host": "w1",
            "detail": f"{registry}/flops/ml-data-server:offline (docker): in use by running "
                      "container ml_data_server"} in rows
    left = in_worker(worker(1), f"docker image ls --format '{{{{.Repository}}}}:{{{{.Tag}}}}' | "
                                f"grep '^{registry}/' || true").stdout.split()
    assert left == [f"{registry}/flops/ml-data-server:offline"]
    in_worker(worker(1), "docker inspect -f '{{.State.Running}}' ml_data_server | grep -qx true")


def test_demo_runs_end_to_end(fresh):
    res = inv("demo", testbed=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "what now:" in res.stdout and "doctor" in res.stdout
