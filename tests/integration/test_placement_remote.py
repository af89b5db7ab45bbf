"""Every service of the suite on one remote host: the testbed's placement ``remote`` puts
the whole suite on worker w1's own dockerd (through Docker's SSH transport). It must work as
well as the local default: ``bootstrap`` prepares every worker against it and ``doctor``
passes, with every service on w1 and none on the local engine.
"""

from __future__ import annotations

import json

import pytest

from flops_tasks import testbed as tb
from flops_tasks.stack.services import SERVICES

from . import helpers
from .helpers import inv, worker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def remote(testbed):
    """The suite on w1, as a user starts it (``inv testbed.up --placement remote``, which
    stops the suite here first), and back on the local engine after."""
    up = inv("testbed.up", "--placement", "remote", "--json", testbed=False, timeout=1800)
    assert up.returncode == 0, up.stdout + up.stderr
    config = tb.default_paths().placement_config("remote")
    assert json.loads(up.stdout)["config"] == str(config)
    yield config
    inv("-f", str(config), "down", testbed=False)
    back = inv("up")
    assert back.returncode == 0, back.stdout + back.stderr


def test_bootstrap_and_doctor_pass_with_every_service_on_one_remote_host(remote, monkeypatch):
    monkeypatch.setattr(helpers, "TESTBED_CONFIG", remote)
    res = inv("bootstrap", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    res = inv("doctor", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    hosts = json.loads(res.stdout)["hosts"]
    steps = {s["step"]: s for s in hosts["stack@w1"]["steps"]}
    assert all(steps[svc]["status"] == "ok" for svc in SERVICES), steps
    assert "stack" not in hosts  # nothing of the suite on the local engine
    res = inv("status", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    rows = json.loads(res.stdout)["services"]
    assert {r["service"] for r in rows} == set(SERVICES)
    assert all(r["host"] == "w1" and r["health"] == "healthy" for r in rows), rows
    running = helpers.in_worker(worker(1), "docker ps --format '{{.Names}}'").stdout.split()
    assert set(SERVICES) <= set(running)
