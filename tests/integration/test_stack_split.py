"""Data safety with a split placement: the registry and the artifact store on worker w1.

The testbed's placement ``split`` runs ``flops_image_registry`` and ``vsftpd_server`` on
w1's own dockerd (through Docker's SSH transport) and the rest on the local engine. The
data-safety tests of test_stack.py run here unchanged (imported, not copied): their stores
are reached where this placement runs them (the ``where`` fixture below), and every ``inv``
runs with the split config. Each scope must keep or empty exactly what it does locally.
"""

from __future__ import annotations

import json

import pytest

from flops_tasks import testbed as tb

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
ON_W1 = ("flops_image_registry", "vsftpd_server")


def _progress(line: str) -> None:
    print(f"[split] {line}", flush=True)


@pytest.fixture(scope="module")
def where(testbed):
    """The split placement, started (images sent to w1 once); afterwards everything is back
    on the local engine, as the other modules expect."""
    tb.up_placement("split", progress=_progress)
    yield Where.of(tb.default_paths().placement_config("split"))
    ok(inv("up"))


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
    before = in_worker(worker(1), "docker volume inspect -f '{{.CreatedAt}}' "
                                  "flops_testbed_registry_data").stdout.strip()
    ok(inv("reset", "--registry", "--yes"))
    after = in_worker(worker(1), "docker volume inspect -f '{{.CreatedAt}}' "
                                 "flops_testbed_registry_data").stdout.strip()
    assert before != after
    assert stores.held() == {**ALL, "registry": False}
    assert w1_containers()["flops_image_registry"] == "running"


def test_status_json_carries_the_host_of_each_service(where, monkeypatch):
    from . import helpers

    monkeypatch.setattr(helpers, "TESTBED_CONFIG", where.config)
    res = inv("status", "--json")
    ok(res)
    rows = {r["service"]: r for r in json.loads(res.stdout)["services"]}
    assert {svc: r["host"] for svc, r in rows.items()} == {
        "flops_manager": "local", "flops_image_registry": "w1", "flops_mqtt": "local",
        "flops_db": "local", "mlflow_backend_store": "local", "vsftpd_server": "w1"}
    assert {r["health"] for r in rows.values()} == {"healthy"}
    table = inv("status")
    ok(table)
    line = {svc: next(ln for ln in table.stdout.splitlines() if f" {svc} " in ln)
            for svc in rows}
    assert " w1 " in line["flops_image_registry"] and " w1 " in line["vsftpd_server"]
    assert " local " in line["flops_manager"] and " w1 " not in line["flops_manager"]
