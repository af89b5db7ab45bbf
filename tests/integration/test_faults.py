"""Faults survived: hosts that vanish or stall, dockerd down, stack services down, Ctrl-C,
two runs at once. Each run ends in a clear report, and a re-run converges."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from flops_tasks import testbed as tb

from .helpers import INV, ROOT, TESTBED_CONFIG, in_worker, inv, worker

pytestmark = pytest.mark.integration


def run_json(*args: str, env: dict | None = None) -> dict:
    res = inv(*args, "--json", env=env)
    assert "Traceback" not in res.stderr, res.stderr
    return {"rc": res.returncode, **json.loads(res.stdout)}


def docker(*args: str) -> None:
    subprocess.run(["docker", *args], check=True, capture_output=True)


def test_a_host_that_stops_speaking_is_cut_off_and_the_other_finishes(fresh):
    docker("pause", worker(2))  # the kernel still accepts TCP, sshd never answers
    try:
        start = time.monotonic()
        data = run_json("prepare-learner", env={"INVOKE_FLOPS_SSH_CONNECT_TIMEOUT": "3"})
        elapsed = time.monotonic() - start
    finally:
        docker("unpause", worker(2))
    assert data["rc"] == 4  # a host unreachable and nothing failed: its own exit code
    assert data["hosts"]["w1"]["status"] == "changed"
    assert data["hosts"]["w2"]["status"] == "unreachable"
    assert "no SSH banner within 3s" in data["hosts"]["w2"]["steps"][0]["detail"]
    assert elapsed < 60
    again = run_json("prepare-learner")
    assert again["rc"] == 0 and again["hosts"]["w1"]["changed"] is False
    assert again["hosts"]["w2"]["status"] == "changed"


def test_ctrl_c_stops_at_once_with_the_partial_report(fresh):
    """The first interrupt stops new work and closes every connection: the partial report
    shows the hosts still at work as interrupted, and the exit (130) comes within 2 s, not
    after the paused worker's timeouts."""
    docker("pause", worker(2))  # its sshd never answers: w2 would wait out its timeouts
    try:
        proc = subprocess.Popen(
            [INV, "-f", str(TESTBED_CONFIG), "prepare-learner"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(1)
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole process group
        out, err = proc.communicate(timeout=60)
        elapsed = time.monotonic() - sent
    finally:
        docker("unpause", worker(2))
    assert proc.returncode == 130, out + err
    assert elapsed < 2, elapsed
    assert "Traceback" not in out + err
    assert out.splitlines()[0] == "prepare-learner: interrupted", out
    assert any(ln.startswith("interrupted") and " w2 " in ln for ln in out.splitlines()), out
    assert any(ln.startswith("w2  ") and "interrupted=1" in ln for ln in out.splitlines()), out
    assert "interrupted: stopping" in err
    again = run_json("prepare-learner")  # nothing was left half-done that a re-run cannot mend
    assert again["rc"] == 0, again


def test_a_worker_that_disappears_mid_run_is_reported_and_a_rerun_converges(fresh):
    proc = subprocess.Popen(
        [INV, "-f", str(TESTBED_CONFIG), "prepare-builder", "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    # wait until w2 is installing packages, then take it away
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if in_worker(worker(2), "pgrep -f 'apt-get' >/dev/null", check=False).returncode == 0:
            break
        time.sleep(0.2)
    docker("stop", "-t", "1", worker(2))
    out, err = proc.communicate(timeout=900)
    assert "Traceback" not in err
    data = json.loads(out)
    assert data["hosts"]["w2"]["status"] in ("unreachable", "failed")
    assert proc.returncode == (4 if data["hosts"]["w2"]["status"] == "unreachable" else 1)
    assert data["hosts"]["w1"]["status"] == "changed"
    docker("start", worker(2))
    tb.wait_ssh_ready(tb.context_for(tb.default_paths()), lambda _: None)
    again = run_json("prepare-builder")
    assert again["rc"] == 0, again
    assert again["hosts"]["w1"]["changed"] is False


def test_dockerd_stopped_preflight_says_so_and_changes_nothing(fresh):
    in_worker(worker(1), "worker-dockerd stop")
    try:
        before = in_worker(worker(1), "md5sum /etc/docker/daemon.json").stdout
        data = run_json("prepare-learner", "--host", "w1")
        assert data["rc"] == 1
        (step,) = data["hosts"]["w1"]["steps"]
        assert step["step"] == "preflight" and "Docker engine is not running" in step["detail"]
        assert in_worker(worker(1), "md5sum /etc/docker/daemon.json").stdout == before
    finally:
        in_worker(worker(1), "worker-dockerd start")


def test_two_runs_at_once_on_one_host_never_interleave(fresh):
    from flops_tasks.hosts import Target
    from flops_tasks.ssh import host_lock

    w1 = next(w for w in fresh["workers"] if w["name"] == worker(1))
    with host_lock(Target(host=w1["ip"], port=22)):
        data = run_json("prepare-learner", "--host", "w1")
    assert data["rc"] == 1
    assert "another flops-tasks run" in data["hosts"]["w1"]["steps"][0]["detail"]


def test_two_runs_at_once_on_the_stack_the_second_refuses(fresh):
    proc = subprocess.Popen(
        [INV, "-f", str(TESTBED_CONFIG), "reset"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    from flops_tasks.locks import stack_lock_path

    lock = stack_lock_path(tb.PROJECT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if lock.exists() and lock.read_text().strip() == str(proc.pid):
            break
        time.sleep(0.05)
    res = inv("redb", "--yes")
    proc.wait(timeout=300)
    assert res.returncode != 0
    assert "another flops-tasks run" in res.stderr and res.stderr.strip().count("\n") == 0
    assert proc.returncode == 0


def test_ctrl_c_during_reset_leaves_a_state_the_next_run_repairs(fresh):
    proc = subprocess.Popen(
        [INV, "-f", str(TESTBED_CONFIG), "reset", "--recreate"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    time.sleep(1.5)  # mid-way: containers are being stopped or recreated
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole process group
    proc.wait(timeout=120)
    res = inv("reset")
    assert res.returncode == 0, res.stdout + res.stderr
    status = json.loads(inv("status", "--json").stdout)["services"]
    assert {row["health"] for row in status} == {"healthy"}
    tb.push_sidecar(lambda _: None)


def test_database_down_redb_fails_clearly_and_touches_nothing_else(fresh):
    import pymongo

    client = pymongo.MongoClient(  # the testbed binds the stack to its gateway
        fresh["gateway"], 10027, directConnection=True, serverSelectionTimeoutMS=5000
    )
    client.flops.faults.insert_one({"kept": True})
    docker("stop", "flops_db")
    try:
        # FLOps' apps are found through the ids the FLOps DB holds: no DB, no plan, and
        # nothing is deleted; the line names the flag that skips the Oakestra step
        res = inv("redb", "--yes")
        assert res.returncode == 1 and "Traceback" not in res.stderr
        line = res.stderr.strip()
        assert line.count("\n") == 0, line
        assert "nothing was deleted" in line and line.endswith("pass --skip-apps")
        res = inv("redb", "--yes", "--skip-apps")
        assert res.returncode == 1
        assert "Traceback" not in res.stderr
        head, item, last = res.stderr.strip().splitlines()
        assert head == "This will delete:"
        assert item.startswith("  - every collection of the FLOps manager")
        # the database's port is published by no container of the stack: refused before any
        # request, so no DELETE reached the manager either
        assert "DELETE /api" not in res.stderr
        assert "held by no container of this stack" in last
        assert "nothing was deleted" in last
    finally:
        docker("start", "flops_db")
    assert inv("up").returncode == 0
    assert client.flops.faults.find_one({"kept": True}) is not None


def test_registry_down_clear_registry_brings_it_back_empty(fresh):
    docker("stop", "flops_image_registry")
    res = inv("clear-registry", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    import urllib.request

    with urllib.request.urlopen("http://127.0.0.1:5073/v2/_catalog", timeout=10) as resp:
        assert json.load(resp)["repositories"] == []
    tb.push_sidecar(lambda _: None)


def test_env_file_stays_private(fresh):
    # The stack holds no generated secrets any more: its MySQL and FTP passwords are
    # upstream's public, fixed values (flops_tasks.env.CREDENTIALS). The file stays 0600.
    res = inv("env")
    assert res.returncode == 0, res.stdout + res.stderr
    assert oct(os.stat(tb.default_paths().env_file).st_mode & 0o777) == "0o600"
