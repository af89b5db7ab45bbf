"""Workflows on a fresh testbed: dry bootstrap, bootstrap, doctor, repair, data, images, demo.

w1 runs Docker (builder and learner), w2 only containerd (builder): bootstrap and doctor
cover both worker kinds."""

from __future__ import annotations

import json
import re

import pytest

from .helpers import changed_rows, dry_then_real, in_worker, inv, text_rows, worker

pytestmark = pytest.mark.integration
PLANNED: dict[str, dict] = {}


def test_dry_bootstrap_on_fresh_workers_plans_and_changes_nothing(fresh_mixed):
    res = inv("--dry", "bootstrap")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "bootstrap (dry run: nothing changed): changes planned" in res.stdout
    assert "would change" in res.stdout
    for i in (1, 2):
        in_worker(worker(i), "! dpkg -s qemu-user-static >/dev/null 2>&1")
        in_worker(worker(i), "! docker container inspect ml_data_server >/dev/null 2>&1")
    assert inv("doctor").returncode == 1
    PLANNED["bootstrap"] = json.loads(inv("--dry", "bootstrap", "--json").stdout)


def test_bootstrap_changes_what_its_dry_run_planned_in_at_most_80_lines(fresh_mixed):
    """The first bootstrap of two fresh workers, as a log shows it (no terminal, default
    verbosity): the changed rows are the dry run's, and it takes at most 80 lines."""
    res = inv("bootstrap")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = (res.stdout + res.stderr).splitlines()
    assert len(lines) <= 80, "\n".join(lines)
    assert text_rows(res.stdout) == changed_rows(PLANNED["bootstrap"]), res.stdout
    assert res.stdout.splitlines()[0] == "bootstrap: changes made"
    for host in ("w1", "w2"):  # the recap
        assert any(re.match(rf"{host} +ok=\d+ ", line) for line in res.stdout.splitlines())


def test_bootstrap_again_changes_nothing_then_doctor_passes(fresh_mixed):
    res = inv("bootstrap", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads(res.stdout)
    assert changed_rows(data) == set() and data["changes"] == []
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
    assert text.stdout.splitlines()[0] == "doctor: no changes"


def test_doctor_names_a_learner_whose_sidecar_stopped_and_bootstrap_repairs_it(fresh_mixed):
    in_worker(worker(1), "docker stop ml_data_server >/dev/null")
    res = inv("doctor", "--json")
    assert res.returncode == 1
    data = json.loads(res.stdout)
    assert data["hosts"]["w2"]["status"] == "ok"
    bad = [s for s in data["hosts"]["w1"]["steps"] if s["status"] == "failed"]
    assert [s["step"] for s in bad] == ["sidecar"]
    assert bad[0]["fix"] == "inv prepare-learner --host w1"
    text = inv("doctor").stdout.splitlines()  # the fix on a line of its own, ready to copy
    assert text[text.index(next(ln for ln in text if ln.startswith("failed "))) + 1].split() == [
        "fix:",
        "inv",
        "prepare-learner",
        "--host",
        "w1",
    ]
    assert inv("bootstrap").returncode == 0
    assert inv("doctor").returncode == 0


def test_learner_data_dry_run_plans_the_copy_it_makes_and_a_rerun_changes_nothing(
    fresh_mixed, tmp_path
):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1, 2, 3]}), tmp_path / "train.parquet")
    args = ("learner-data", "--tag", "parity", "--src", str(tmp_path / "train.parquet"))
    res = dry_then_real(*args)
    assert res.returncode == 0, res.stdout + res.stderr
    assert changed_rows(json.loads(res.stdout)) == {("w1", "learner-data")}
    again = inv(*args, "--json")
    assert again.returncode == 0 and changed_rows(json.loads(again.stdout)) == set()
    in_worker(
        worker(1),
        "rm -f $(docker volume inspect -f '{{.Mountpoint}}' "
        "ml_data_server_volume)/parity.train.parquet",
    )


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
    res = dry_then_real("clear-images", "--host", "w1,w2", "--yes")
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


def test_demo_runs_end_to_end_in_at_most_120_lines(fresh_mixed):
    res = inv("demo", testbed=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "what now:" in res.stdout and "doctor" in res.stdout
    lines = (res.stdout + res.stderr).splitlines()
    assert len(lines) <= 120, "\n".join(lines)
