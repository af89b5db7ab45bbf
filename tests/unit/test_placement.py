"""Placement: the suite's services on several Docker engines.

Config validation, addresses that follow the placement, one project per engine, and the
stack's jobs across engines against the recorded-shape engine of test_stack.py (one per
host). The real transport and real engines are in tests/integration (test_docker_ssh.py,
test_placement.py).
"""

from __future__ import annotations

import os

import pytest

from flops_tasks import env as envmod
from flops_tasks.config import ADDRESS_VARS, settings
from flops_tasks.errors import ConfigError, FlopsError
from flops_tasks.hosts import Target
from flops_tasks.outcome import Status
from flops_tasks.stack import flopsdb, health, lifecycle, placement, registry
from flops_tasks.stack import project as project_mod
from flops_tasks.stack import services as services_mod
from flops_tasks.stack.project import Project
from flops_tasks.stack.services import (
    ARTIFACT_STORE,
    FLOPS_DB_SERVICE,
    MANAGER,
    MQTT,
    REGISTRY,
    SERVICES,
)

from .test_stack import Engine, FakeProject, inspect, stores_answer

INVENTORY = {"w1": {"host": "10.0.0.7", "user": "root", "roles": ["builder"]}}
SPLIT = {REGISTRY: "w1", ARTIFACT_STORE: "w1"}


@pytest.fixture
def placed(ctx_factory, tmp_path):
    def make(placement: dict, **stack):
        return settings(
            ctx_factory(
                {
                    "inventory": INVENTORY,
                    "stack": {
                        "placement": placement,
                        "env_file": str(tmp_path / "flops.env"),
                        **stack,
                    },
                }
            )
        )

    return make


# -- config ---------------------------------------------------------------------------------
def test_without_a_placement_everything_is_local(ctx_factory):
    s = settings(ctx_factory())
    assert s.stack.placement == {}
    [only] = placement.projects(s)
    assert only.target is None and only.services == SERVICES and not only.partial
    assert only.where == "stack" and only.env_file == s.stack.env_file


def test_hosts_are_inventory_names_host_strings_or_local(placed):
    s = placed(
        {"default": "w1", MANAGER: "local", FLOPS_DB_SERVICE: "local", MQTT: "ubuntu@10.0.0.8:2222"}
    )
    assert s.stack.placement[MANAGER] is None
    assert s.stack.placement[REGISTRY] == Target("10.0.0.7", "root", 22, "w1", ("builder",))
    assert s.stack.placement[MQTT] == Target("10.0.0.8", "ubuntu", 2222)
    assert s.stack.placement[ARTIFACT_STORE].label == "w1"


def test_everything_placed_locally_is_no_placement(placed):
    assert placed({"default": "local"}).stack.placement == {}


@pytest.mark.parametrize(
    "placement, needle",
    [
        ({"flops_registry": "w1"}, "flops.stack.placement.flops_registry (from"),
        ({REGISTRY: "not a host!"}, "flops.stack.placement.flops_image_registry = 'not a host!'"),
        ({REGISTRY: 5}, "flops.stack.placement.flops_image_registry = 5"),
        ({REGISTRY: "w1", ARTIFACT_STORE: "root@10.0.0.7"}, "names 10.0.0.7:22 twice"),
        ({FLOPS_DB_SERVICE: "w1"}, "puts flops_db and flops_manager on different hosts"),
        ({MANAGER: "w1"}, "puts flops_db and flops_manager on different hosts"),
    ],
)
def test_bad_placements_are_one_line_naming_the_key(placed, placement, needle):
    with pytest.raises(ConfigError) as err:
        placed(placement)
    assert needle in err.value.message and "\n" not in err.value.message
    assert err.value.code == 2


def test_two_services_publishing_one_port_on_one_host_are_refused(placed, monkeypatch):
    # the shipped port table has no clash; a service that published the registry's port
    # must not be placed beside it
    ports = {**services_mod.PORTS, MQTT: (9027, 5073)}
    monkeypatch.setattr(services_mod, "PORTS", ports)
    with pytest.raises(ConfigError) as err:
        placed({REGISTRY: "w1", MQTT: "w1"})
    assert (
        "puts flops_image_registry and flops_mqtt on w1, and both publish port 5073"
        in err.value.message
    )
    placed({REGISTRY: "w1"})  # apart, they are fine


# -- addresses follow the placement ------------------------------------------------------------
def clear_address_env(monkeypatch):
    for var in ADDRESS_VARS:
        monkeypatch.delenv(var, raising=False)


def test_each_address_is_the_address_of_the_host_that_runs_its_component(placed, monkeypatch):
    clear_address_env(monkeypatch)
    s = placed(SPLIT)
    addresses = envmod.resolve_addresses(s, detect=lambda: "10.0.0.2")
    assert addresses.values["FLOPS_IMAGE_REGISTRY_IP"] == "10.0.0.7"
    assert addresses.values["ARTIFACT_STORE_IP"] == "10.0.0.7"
    assert (
        "address of w1, which runs flops_image_registry"
        in addresses.sources["FLOPS_IMAGE_REGISTRY_IP"]
    )
    for var in (
        "SYSTEM_MANAGER_IP",
        "FLOPS_MANAGER_IP",
        "FLOPS_MQTT_BROKER_IP",
        "BACKEND_STORE_IP",
    ):
        assert addresses.values[var] == "10.0.0.2"
        assert addresses.sources[var] == "auto-detected primary IP of this host"
    assert envmod.registry_host(s, addresses) == "10.0.0.7:5073"


def test_the_system_manager_address_follows_the_flops_manager(placed, monkeypatch):
    clear_address_env(monkeypatch)
    s = placed({"default": "w1"})
    addresses = envmod.resolve_addresses(s, detect=lambda: "10.0.0.2")
    assert set(addresses.values.values()) == {"10.0.0.7"}
    assert "beside Oakestra's System Manager" in addresses.sources["SYSTEM_MANAGER_IP"]


def test_an_explicit_address_still_wins(placed, monkeypatch):
    clear_address_env(monkeypatch)
    monkeypatch.setenv("FLOPS_IMAGE_REGISTRY_IP", "192.0.2.50")
    s = placed(SPLIT)
    addresses = envmod.resolve_addresses(s, detect=lambda: "10.0.0.2")
    assert addresses.values["FLOPS_IMAGE_REGISTRY_IP"] == "192.0.2.50"
    assert (
        addresses.sources["FLOPS_IMAGE_REGISTRY_IP"]
        == "environment variable FLOPS_IMAGE_REGISTRY_IP"
    )


def test_host_names_resolve_and_unusable_addresses_are_refused(placed, monkeypatch):
    clear_address_env(monkeypatch)
    s = placed({REGISTRY: "root@registry.example"})
    found = envmod.resolve_addresses(
        s, detect=lambda: "10.0.0.2", locate=lambda host: {"registry.example": "10.0.0.9"}[host]
    )
    assert found.values["FLOPS_IMAGE_REGISTRY_IP"] == "10.0.0.9"
    with pytest.raises(FlopsError, match="does not resolve"):
        envmod.resolve_addresses(s, detect=lambda: "10.0.0.2", locate=lambda host: "")
    # a host that is this machine's loopback is no address workers can reach
    with pytest.raises(FlopsError, match="loopback") as err:
        envmod.resolve_addresses(placed({REGISTRY: "root@127.0.0.1"}), detect=lambda: "10.0.0.2")
    assert "address of root@127.0.0.1, which runs flops_image_registry" in err.value.message


# -- env files and the registry record ---------------------------------------------------------
def test_each_remote_engine_gets_its_own_env_file_here(placed, monkeypatch, tmp_path):
    clear_address_env(monkeypatch)
    monkeypatch.setattr(envmod, "primary_ip", lambda: "10.0.0.2")
    s = placed(SPLIT)
    local, w1 = placement.projects(s)
    assert local.env_file == str(tmp_path / "flops.env")
    assert w1.env_file == str(tmp_path / "flops.w1.env")
    envmod.ensure_env(s, extra={"FLOPS_NETWORK": "net-on-w1"}, path=w1.env_file)
    for path in (tmp_path / "flops.env", tmp_path / "flops.w1.env"):
        assert os.stat(path).st_mode & 0o777 == 0o600
    assert envmod.read_env_file(w1.env_file)["FLOPS_NETWORK"] == "net-on-w1"
    # the configured env file is written too (the record), without the other host's network
    main = envmod.read_env_file(local.env_file)
    assert main["FLOPS_REGISTRY"] == "10.0.0.7:5073" and "FLOPS_NETWORK" not in main


def test_a_moved_registry_is_remembered_until_it_comes_back(placed, monkeypatch):
    clear_address_env(monkeypatch)
    monkeypatch.setattr(envmod, "primary_ip", lambda: "10.0.0.2")
    here, there = placed({}), placed({REGISTRY: "w1"})
    envmod.ensure_env(here)
    assert envmod.former_registries(here, "10.0.0.2:5073") == ()
    envmod.ensure_env(there)  # the registry moved to w1
    assert envmod.former_registries(there, "10.0.0.7:5073") == ("10.0.0.2:5073",)
    envmod.ensure_env(there)  # a second run changes nothing
    assert envmod.former_registries(there, "10.0.0.7:5073") == ("10.0.0.2:5073",)
    envmod.ensure_env(here)  # and back: w1 is the former one now
    assert envmod.former_registries(here, "10.0.0.2:5073") == ("10.0.0.7:5073",)


def test_an_env_file_from_before_the_record_still_names_the_registry(placed, tmp_path):
    (tmp_path / "flops.env").write_text(
        "FLOPS_IMAGE_REGISTRY_IP=10.0.0.2\nFLOPS_REGISTRY_PORT=5073\n"
    )
    assert envmod.former_registries(placed({}), "10.0.0.7:5073") == ("10.0.0.2:5073",)


# -- one project per engine ---------------------------------------------------------------------
def test_one_project_per_engine_local_first(placed):
    local, w1 = placement.projects(placed(SPLIT))
    assert local.target is None and set(local.services) == set(SERVICES) - set(SPLIT)
    assert w1.target.label == "w1" and w1.services == (REGISTRY, ARTIFACT_STORE)
    assert (local.where, w1.where) == ("stack", "stack@w1")
    assert local.changes is w1.changes  # one change log
    assert w1.engine_url == "ssh://root@10.0.0.7:22"
    assert "docker --host ssh://root@10.0.0.7:22 compose -p flops_management" in w1.compose_cmd(
        "up"
    )
    assert w1.address() == "10.0.0.7" and w1.url(5073) == "http://10.0.0.7:5073"
    assert placement.project_for([local, w1], REGISTRY) is w1


def fake(project: Project) -> FakeProject:
    """The same project on a recorded-shape engine of its own."""
    twin = FakeProject(
        project.s,
        dry=project.dry,
        progress=project.progress,
        changes=project.changes,
        target=project.target,
        services=project.services,
    )
    twin.engine = Engine()
    twin._docker = twin.engine
    return twin


@pytest.fixture
def split(placed, monkeypatch):
    monkeypatch.setattr(envmod, "primary_ip", lambda: "10.0.0.2")
    clear_address_env(monkeypatch)
    return [fake(p) for p in placement.projects(placed(SPLIT, network="oakestra"))]


def test_each_engine_starts_only_its_own_services_without_dependencies(split):
    local, w1 = split
    w1.engine.put(inspect(MANAGER))  # left from before the placement changed
    outcomes = w1.start()
    assert ("rm", (MANAGER,), None) in w1.engine.calls
    assert ("up", (REGISTRY, ARTIFACT_STORE)) in [c[:2] for c in w1.engine.calls]
    assert [o.step for o in outcomes] == ["moved", "up"]
    assert "their volumes stay here" in outcomes[0].detail
    assert outcomes[1].host == "stack@w1"
    assert set(w1.states()) == {REGISTRY, ARTIFACT_STORE}


def test_the_managers_engine_runs_last_and_a_failure_stays_on_its_host(split):
    local, w1 = split
    order = []

    def job(project):
        order.append(project.label)
        if project.label == "w1":
            raise FlopsError("host w1: connection to 10.0.0.7:22 timed out")
        return [project_mod.ok(project.where, "up", "fine")]

    outcomes = placement.run([local, w1], job, "up")
    assert order == ["w1", "local"]  # the manager's dependencies start first
    by_host = {o.host: o for o in outcomes}
    assert by_host["stack@w1"].status is Status.FAILED
    assert "timed out" in by_host["stack@w1"].detail
    assert by_host["stack"].status is Status.OK
    with pytest.raises(FlopsError):  # one engine: raised, as before placement
        placement.run([w1], job, "up")


def test_nothing_changes_anywhere_when_one_engine_does_not_answer(split):
    local, w1 = split

    def down():
        raise __import__("python_on_whales").exceptions.DockerException(
            ["docker", "version"], 1, stderr=b"boom"
        )

    w1.engine.version = down
    with pytest.raises(FlopsError) as err:
        placement.require([local, w1])
    message = err.value.message
    assert "nothing was changed on any host" in message
    assert "flops_image_registry, vsftpd_server on w1" in message
    assert local.engine.changes() == [] and w1.engine.changes() == []


def test_two_names_for_one_engine_are_refused(split, monkeypatch):
    local, w1 = split
    for project in split:
        project.engine.cli = lambda *args: "ENGINE-ID-1\n"
    with pytest.raises(FlopsError, match="are one Docker engine"):
        placement.require([local, w1], distinct=True)


def test_status_and_doctor_name_each_services_host(split, monkeypatch):
    local, w1 = split
    stores_answer(monkeypatch)
    for project in split:
        for svc in project.services:
            project.engine.put(inspect(svc))
    rows = [row for p in split for row in health.status(p)]
    assert {r["service"]: r["host"] for r in rows} == {
        **{svc: "local" for svc in local.services},
        REGISTRY: "w1",
        ARTIFACT_STORE: "w1",
    }
    outcomes = placement.run(split, health.doctor, "doctor")
    hosts = {o.step: o.host for o in outcomes}
    assert hosts[REGISTRY] == hosts["registry"] == "stack@w1"
    assert hosts["artifact-store"] == "stack@w1"
    assert hosts[MANAGER] == hosts["flops-db"] == hosts["backend-store"] == "stack"
    # published on every address (the fake's bindings): one warning per engine, its own stores
    exposure = {o.host: o for o in outcomes if o.step == "exposure"}
    assert {h: o.status for h, o in exposure.items()} == {
        "stack": Status.WARNING,
        "stack@w1": Status.WARNING,
    }
    assert "vsftpd_server" in exposure["stack@w1"].detail
    assert "vsftpd_server" not in exposure["stack"].detail
    assert all(o.status is Status.OK for o in outcomes if o.step != "exposure")


def test_a_host_that_is_down_fails_only_its_services(split, monkeypatch):
    local, w1 = split
    stores_answer(monkeypatch)
    for svc in local.services:
        local.engine.put(inspect(svc))

    def unreachable():
        raise FlopsError("host w1: cannot connect to 10.0.0.7:22: No route to host")

    monkeypatch.setattr(w1, "check_docker", unreachable)
    outcomes = placement.run(split, health.doctor, "doctor")
    bad = [o for o in outcomes if o.bad]
    assert {o.step for o in bad} == {REGISTRY, ARTIFACT_STORE}
    assert all(o.host == "stack@w1" and "No route to host" in o.detail for o in bad)
    local_rows = [o for o in outcomes if o.host == "stack" and o.step != "exposure"]
    assert local_rows and all(o.status is Status.OK for o in local_rows)
    rows = health.unreachable_rows(w1, "host w1: cannot connect")
    assert [(r["service"], r["state"]) for r in rows] == [
        (REGISTRY, "unreachable"),
        (ARTIFACT_STORE, "unreachable"),
    ]


def test_scopes_act_where_their_service_runs(split):
    local, w1 = split
    both = lifecycle.Scope(registry=True, db=True)
    assert lifecycle.what_reset_deletes(local, both) == [flopsdb.WHAT]
    [what] = lifecycle.what_reset_deletes(w1, both)
    assert "volume flops_management_registry_data on w1" in what
    assert registry.clear(local) == []
    every = lifecycle.Scope(registry=True, clean=True)
    assert [line.rsplit("(volume ", 1)[1] for line in lifecycle.what_reset_deletes(w1, every)] == [
        "flops_management_vsftpd_home on w1)",
        "flops_management_vsftpd_logs on w1)",
        "flops_management_registry_data on w1)",
    ]
    assert {
        line.rsplit("(volume ", 1)[1] for line in lifecycle.what_reset_deletes(local, every)
    } == {
        "flops_management_flops_db)",
        "flops_management_mlflow_backend_store_data)",
        "flops_management_flops_mqtt_data)",
    }


def test_restart_on_an_engine_recreates_only_its_own_services(split):
    local, w1 = split
    for svc in w1.services:
        w1.engine.put(inspect(svc))
    w1.engine.hashes[REGISTRY] = "new"
    lifecycle.restart(w1)
    calls = [(k, s) for k, s, _ in w1.engine.calls]
    assert ("up", (REGISTRY, ARTIFACT_STORE)) in calls  # --no-deps, these two only
    assert ("restart", (ARTIFACT_STORE,)) in calls


def test_the_local_bind_test_is_not_run_for_a_remote_engine(split, monkeypatch):
    from flops_tasks.stack import preflight

    local, w1 = split
    monkeypatch.setattr(preflight, "bound_elsewhere", lambda bind, port: "another process")
    assert preflight.conflicts(w1).lines == []
    assert len(preflight.conflicts(local).lines) == sum(
        len(services_mod.PORTS[s]) for s in local.services
    )


@pytest.mark.parametrize("removal_fails", [False, True])
def test_flops_apps_go_once_before_any_host_deletes(
    split, monkeypatch, ctx_factory, tmp_path, removal_fails
):
    """A scope that empties the FLOps DB removes FLOps' apps from Oakestra once for the whole
    placement; when any is left, no host runs the reset."""
    from flops_tasks import locks, oakestra_apps
    from flops_tasks.outcome import changed, failed
    from flops_tasks.run import Run
    from flops_tasks.workflows import stack

    removals, acted = [], []

    def clear(s, plan, dry=False, changes=None):
        removals.append(plan)
        return [(failed if removal_fails else changed)("oakestra", "app", "flops app")]

    monkeypatch.setattr(oakestra_apps, "clear_apps", clear)
    monkeypatch.setattr(Run, "projects", lambda self: split)
    monkeypatch.setattr(placement, "require", lambda found, distinct=False: None)
    monkeypatch.setattr(
        locks, "stack_lock_path", lambda project, state=None: tmp_path / "stack.lock"
    )
    run = Run.of(ctx_factory())
    stack.stack_task(run, lambda p: acted.append(p.label) or [], apps="the plan", step="reset")
    report = run.report
    assert removals == ["the plan"]  # once, not once per host
    if removal_fails:
        assert acted == [] and not report.ok
        assert any(
            o.step == "stopped" and "nothing of the stack was deleted" in o.detail
            for o in report.outcomes
        )
    else:
        assert sorted(acted) == ["local", "w1"] and report.ok
