"""The stack's logic in-process, against a recorded-shape Docker engine.

``Engine`` answers the calls the stack makes (docker CLI listing and inspect, compose
up/restart/down/rm/config, volumes, images, networks, exec) with data in the shape
``docker inspect`` prints, and records every change, so each test asserts what the stack
decided and which changes it made or planned. The real engine is in the integration tests.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from flops_tasks.config import settings
from flops_tasks.errors import FlopsError
from flops_tasks.outcome import Status
from flops_tasks.stack import flopsdb, health, lifecycle, preflight, registry
from flops_tasks.stack.project import ContainerView, Project, unknown_service
from flops_tasks.stack.services import MANAGER, MQTT, PORTS, SERVICES, VOLUME_OWNERS, VOLUMES

PROJECT = "flops_management"
UPSTREAM_FILE = "/opt/addon-FLOps/docker/flops_management.docker_compose.yml"


def inspect(
    service: str,
    *,
    name: str | None = None,
    project: str = PROJECT,
    ours: bool = True,
    state: str = "running",
    health_: str = "healthy",
    ports: tuple[int, ...] | None = None,
    host_ip: str = "0.0.0.0",
    labels: dict[str, str] | None = None,
    log: str = "",
    config_hash: str = "h",
) -> dict[str, Any]:
    """One container as ``docker container inspect`` prints it (the fields the stack reads)."""
    all_labels = {
        "com.docker.compose.project": project,
        "com.docker.compose.service": service,
        "com.docker.compose.config-hash": config_hash,
        **(labels or {}),
    }
    if ours:
        all_labels["org.flops-tasks.stack"] = "1"
    ports = PORTS.get(service, ()) if ports is None else ports
    return {
        "Id": f"id-{name or service}-{project}",
        "Name": "/" + (name or service),
        "Config": {"Image": f"img/{service}:1", "Labels": all_labels},
        "State": {
            "Status": state,
            "Running": state == "running",
            "Health": {"Status": health_, "Log": [{"ExitCode": 1, "Output": log}]},
        },
        "NetworkSettings": {
            "Ports": {f"{p}/tcp": [{"HostIp": host_ip, "HostPort": str(p)}] for p in ports}
            if state == "running"
            else {}
        },
    }


class Compose:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def version(self) -> str:
        return self.engine.compose_version

    def config(self, return_json: bool = False) -> dict[str, Any]:
        return {
            "services": {
                svc: {"image": f"img/{svc}:1", "build": {"context": "."}} for svc in SERVICES
            }
        }

    def up(self, services: list[str] | None = None, **kwargs: Any) -> None:
        self.engine.calls.append(("up", tuple(services or ()), kwargs.get("build")))
        for svc in services or SERVICES:
            self.engine.put(inspect(svc))

    def restart(self, services: list[str]) -> None:
        self.engine.calls.append(("restart", tuple(services), None))

    def down(self, quiet: bool = False) -> None:
        self.engine.calls.append(("down", (), None))
        self.engine.containers = [
            c for c in self.engine.containers if ContainerView.from_inspect(c).project != PROJECT
        ]

    def rm(self, services: list[str], stop: bool = False) -> None:
        self.engine.calls.append(("rm", tuple(services), None))
        self.engine.containers = [
            c
            for c in self.engine.containers
            if ContainerView.from_inspect(c).service not in services
        ]

    def build(self, services: list[str] | None = None, quiet: bool = False) -> None:
        self.engine.calls.append(("build", tuple(services or ()), None))


class Named:
    """docker.volume / docker.image / docker.network: a set of names."""

    def __init__(self, engine: Engine, kind: str, names: set[str]) -> None:
        self.engine, self.kind, self.names = engine, kind, names

    def exists(self, name: str) -> bool:
        return name in self.names

    def remove(self, name: str) -> None:
        self.engine.calls.append((f"{self.kind} rm", (name,), None))
        self.names.discard(name)

    def create(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.engine.calls.append((f"{self.kind} create", (name,), None))
        self.names.add(name)


class NoContainers:
    def inspect(self, name: str) -> Any:
        from python_on_whales.exceptions import NoSuchContainer

        raise NoSuchContainer(["docker", "inspect", name], 1)


class Engine:
    """The part of a Docker engine the stack talks to."""

    def __init__(self) -> None:
        self.containers: list[dict[str, Any]] = []
        self.calls: list[tuple[str, tuple[str, ...], Any]] = []
        self.compose_version = "Docker Compose version v2.26.1"
        self.compose = Compose(self)
        self.volume = Named(self, "volume", {f"{PROJECT}_registry_data"})
        self.image = Named(self, "image", {f"img/{svc}:1" for svc in SERVICES})
        self.network = Named(self, "network", {"oakestra"})
        self.container = NoContainers()
        self.exec_output = "1"
        self.hashes = {svc: "h" for svc in SERVICES}

    def put(self, data: dict[str, Any]) -> None:
        name = data["Name"]
        self.containers = [c for c in self.containers if c["Name"] != name] + [data]

    def version(self) -> None:
        return None

    def execute(self, container: str, command: list[str], envs: dict[str, str]) -> str:
        self.calls.append(("exec", (container, *command), envs))
        return self.exec_output

    def cli(self, *args: str) -> str:
        if args[:2] == ("container", "ls"):
            wanted = [f.split("=", 1)[1] for f in args if f.startswith("label=")]
            keep = []
            for c in self.containers:
                labels = c["Config"]["Labels"]
                if "-a" not in args and c["State"]["Status"] != "running":
                    continue
                if all(labels.get(w.split("=")[0]) == w.split("=", 1)[1] for w in wanted):
                    keep.append(c["Id"])
            return "\n".join(keep)
        if args[:2] == ("container", "inspect"):
            return json.dumps([c for c in self.containers if c["Id"] in args[2:]])
        if args[:2] == ("config", "--hash"):
            return "\n".join(f"{svc} {h}" for svc, h in self.hashes.items())
        if args[:2] == ("context", "inspect"):  # the local engine, on this host's socket
            return json.dumps("unix:///var/run/docker.sock")
        raise AssertionError(f"unexpected docker call {args}")

    def changes(self) -> list[str]:
        return [kind for kind, _, _ in self.calls if kind != "exec"]


class FakeProject(Project):
    engine: Engine

    def cli(self, *args: str) -> str:
        return self.engine.cli(*args)

    def compose_cli(self, *args: str) -> str:
        return self.engine.cli(*args)


@pytest.fixture
def make(ctx_factory, tmp_path, monkeypatch):
    # the host's real ports are not part of these tests (see test_bound_elsewhere_*)
    monkeypatch.setattr(preflight, "bound_elsewhere", lambda bind, port: None)
    monkeypatch.setenv("FLOPS_IMAGE_REGISTRY_IP", "10.0.0.2")
    for var in (
        "SYSTEM_MANAGER_IP",
        "FLOPS_MANAGER_IP",
        "FLOPS_MQTT_BROKER_IP",
        "ARTIFACT_STORE_IP",
        "BACKEND_STORE_IP",
    ):
        monkeypatch.setenv(var, "10.0.0.2")

    def factory(dry: bool = False, **stack: Any) -> FakeProject:
        c = ctx_factory(
            {"stack": {"env_file": str(tmp_path / "flops.env"), "network": "oakestra", **stack}}
        )
        project = FakeProject(settings(c), dry=dry)
        project.engine = Engine()
        project._docker = project.engine
        return project

    return factory


def stores_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stores' own answers (HTTP, Mongo, FTP), as a working stack gives them."""
    monkeypatch.setattr(flopsdb, "collections", lambda p: [])
    monkeypatch.setattr(registry, "catalog", lambda p: [])
    monkeypatch.setattr(health, "_ftp_login", lambda p, pw: "login as flops succeeds")


def healthy_stack(project: FakeProject) -> None:
    for svc in SERVICES:
        project.engine.put(inspect(svc))


# -- identity -----------------------------------------------------------------------------
def test_unknown_service_is_one_line():
    unknown_service("flops_manager")
    unknown_service(None)
    with pytest.raises(FlopsError) as exc:
        unknown_service("nope")
    assert exc.value.code == 2 and "choose one of flops_manager" in exc.value.message


def test_containers_of_another_project_or_compose_file_are_not_ours(make):
    project = make()
    project.engine.put(inspect(MANAGER))
    project.engine.put(inspect(MQTT, name="other-mqtt", project="other"))
    project.engine.put(inspect("flops_db", ours=False))  # upstream's file, same project name
    assert set(project.containers()) == {MANAGER}


def test_owner_accepts_this_stacks_container(make):
    project = make()
    project.engine.put(inspect(MANAGER))
    assert project.owner(MANAGER, 5072).name == MANAGER


@pytest.mark.parametrize(
    "holder",
    [
        inspect(MANAGER, project="someone_else"),
        inspect(
            MANAGER, ours=False, labels={"com.docker.compose.project.config_files": UPSTREAM_FILE}
        ),
    ],
)
def test_owner_refuses_a_port_held_by_anything_else(make, holder):
    project = make()
    project.engine.put(holder)
    with pytest.raises(FlopsError) as exc:
        project.owner(MANAGER, 5072)
    assert "refusing to touch it; nothing was deleted" in exc.value.message
    assert "container flops_manager" in exc.value.message


def test_owner_refuses_when_nothing_publishes_the_port(make):
    project = make()
    project.engine.put(inspect(MANAGER, ports=()))
    with pytest.raises(FlopsError, match="held by no container of this stack"):
        project.owner(MANAGER, 5072)


# -- preflight ------------------------------------------------------------------------------
def test_preflight_refuses_compose_v1_before_any_change(make):
    project = make()
    project.engine.compose_version = "docker-compose version 1.29.2, build unknown"
    with pytest.raises(FlopsError, match="compose v2 is required"):
        preflight.preflight(project)
    assert project.engine.changes() == []


@pytest.mark.parametrize(
    "version",
    [
        "Docker Compose version v2.20.2",  # no inline configs yet
        "Docker Compose version v2.23.0",
        "",  # docker: 'compose' is not a docker command
    ],
)
def test_preflight_refuses_a_compose_that_cannot_read_the_suite(make, version):
    project = make()
    project.engine.compose_version = version
    with pytest.raises(FlopsError) as err:
        preflight.preflight(project)
    assert "compose v2 is required, 2.23.1 or later" in err.value.message
    assert "install or upgrade the compose plugin" in err.value.message
    assert project.engine.changes() == []


@pytest.mark.parametrize(
    "text, version",
    [("Docker Compose version v2.23.1", "2.23.1"), ("v2.40.3", "2.40.3"), ("2.26.1+ds1", "2.26.1")],
)
def test_compose_from_2_23_1_is_accepted(text, version):
    from flops_tasks.stack.project import check_compose_version

    assert check_compose_version(text) == version


def test_preflight_names_upstreams_own_compose_stack(make):
    project = make()
    project.engine.put(
        inspect(
            MANAGER, ours=False, labels={"com.docker.compose.project.config_files": UPSTREAM_FILE}
        )
    )
    with pytest.raises(FlopsError) as exc:
        preflight.preflight(project)
    message = exc.value.message
    assert "the container name flops_manager is taken by" in message
    assert f"upstream's own compose file {UPSTREAM_FILE}" in message
    assert f"docker compose -f {UPSTREAM_FILE} down" in message
    assert project.engine.changes() == []
    assert not (project.s.stack.env_file and __import__("os").path.exists(project.s.stack.env_file))


def test_conflicts_name_a_port_held_by_another_project(make):
    project = make()
    project.engine.put(
        inspect("registry", name="my-registry", project="mine", ours=False, ports=(5073,))
    )
    lines = preflight.conflicts(project).lines
    assert lines == [
        "port 5073 (flops_image_registry) is in use by container my-registry of "
        "compose project mine"
    ]


def test_bound_elsewhere_names_a_process_holding_the_port():
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert "another process" in preflight.bound_elsewhere("127.0.0.1", port)
    assert preflight.bound_elsewhere("127.0.0.1", port) is None


def test_a_running_stack_holds_its_own_ports(make):
    project = make()
    healthy_stack(project)
    assert preflight.conflicts(project).lines == []


def test_preflight_writes_env_and_refuses_missing_images(make):
    project = make()
    project.engine.image.names.clear()
    with pytest.raises(FlopsError, match="is not on this host and is not pulled"):
        preflight.preflight(project)


def test_dry_preflight_writes_nothing(make, tmp_path):
    project = make(dry=True)
    _, outcomes = preflight.preflight(project)
    assert not (tmp_path / "flops.env").exists()
    assert [o.step for o in outcomes] == ["compose", "env", "network"]
    assert project.engine.changes() == []


def test_network_is_created_only_when_missing(make):
    project = make(network="flops_standalone")
    name, how = preflight.network(project)
    assert (name, how) == (
        "flops_standalone",
        "configured network flops_standalone (to be created)",
    )
    assert preflight.ensure_network(project, name) is True
    assert preflight.ensure_network(project, name) is False
    assert project.engine.changes() == ["network create"]


def test_network_without_orchestrator_is_standalone(make):
    project = make(network="")
    project.engine.network.names.clear()
    assert preflight.network(project)[0] == "flops_standalone"


# -- lifecycle ------------------------------------------------------------------------------
def test_up_starts_and_waits_until_healthy(make):
    project = make()
    outcomes = lifecycle.up(project)
    assert outcomes[-1].status is Status.CHANGED and "6 services healthy" in outcomes[-1].detail
    again = lifecycle.up(project)
    assert again[-1].status is Status.OK


def test_restart_recreates_only_what_changed(make):
    project = make()
    healthy_stack(project)
    project.engine.hashes[MQTT] = "new"
    outcomes = lifecycle.restart(project)
    calls = [(k, s) for k, s, _ in project.engine.calls]
    assert ("up", ()) in calls
    assert ("restart", tuple(s for s in SERVICES if s != MQTT)) in calls
    assert "5 services restarted, 1 recreated" in outcomes[0].detail


def test_dry_reset_with_scopes_plans_and_changes_nothing(make):
    project = make(dry=True)
    healthy_stack(project)
    outcomes = lifecycle.reset(project, lifecycle.Scope(registry=True, db=True))
    assert project.engine.changes() == []
    plan = "\n".join(c.summary for c in project.changes.entries())
    assert "rm --stop --force flops_image_registry" in plan
    assert "docker volume rm flops_management_registry_data" in plan
    assert "DELETE" in plan
    assert any("would empty the FLOps database" in o.detail for o in outcomes)


def test_what_reset_deletes_lists_each_scope(make):
    project = make()
    assert lifecycle.what_reset_deletes(project, lifecycle.Scope()) == []
    what = lifecycle.what_reset_deletes(project, lifecycle.Scope(registry=True, db=True))
    assert what == ["FLOps registry images (volume flops_management_registry_data)", flopsdb.WHAT]
    clean = lifecycle.what_reset_deletes(project, lifecycle.Scope(clean=True))
    assert [w.split(" (volume ")[1] for w in clean] == [
        "flops_management_flops_db)",
        "flops_management_mlflow_backend_store_data)",
        "flops_management_vsftpd_home)",
        "flops_management_vsftpd_logs)",
        "flops_management_flops_mqtt_data)",
    ]
    every = lifecycle.what_reset_deletes(project, lifecycle.Scope(registry=True, clean=True))
    assert every == [*clean, what[0]]


@pytest.mark.parametrize(
    "scope, emptied",
    [
        (lifecycle.Scope(), set()),
        (lifecycle.Scope(db=True), set()),
        (lifecycle.Scope(registry=True), {"registry_data"}),
        (lifecycle.Scope(clean=True), set(lifecycle.CLEAN_VOLUMES)),
        (lifecycle.Scope(clean=True, db=True), set(lifecycle.CLEAN_VOLUMES)),
        (lifecycle.Scope(registry=True, clean=True), set(VOLUMES)),
    ],
)
def test_each_scope_removes_exactly_its_volumes(make, monkeypatch, scope, emptied):
    project = make()
    healthy_stack(project)
    project.engine.volume.names |= {f"{PROJECT}_{key}" for key in VOLUMES}
    redb_calls: list[str] = []
    monkeypatch.setattr(flopsdb, "redb", lambda p: redb_calls.append("redb") or [])
    monkeypatch.setattr(flopsdb, "collections", lambda p: [])
    monkeypatch.setattr(registry, "verify_empty", lambda p: None)
    lifecycle.reset(project, scope)
    removed = {
        name.removeprefix(f"{PROJECT}_")
        for kind, (name,), _ in [c for c in project.engine.calls if c[0] == "volume rm"]
    }
    assert removed == emptied
    owners = {svc for kind, services, _ in project.engine.calls if kind == "rm" for svc in services}
    assert owners == {VOLUME_OWNERS[key] for key in emptied}
    # the FLOps DB alone is emptied in place; within --clean its volume goes instead
    assert redb_calls == (["redb"] if scope.db and not scope.clean else [])
    assert all(st == "healthy" for st in project.states().values())


def test_clean_fails_when_the_flops_db_still_holds_collections(make, monkeypatch):
    project = make()
    healthy_stack(project)
    monkeypatch.setattr(flopsdb, "collections", lambda p: ["FLOpsProject"])
    with pytest.raises(FlopsError, match="still has collections after reset --clean"):
        lifecycle.reset(project, lifecycle.Scope(clean=True))


def test_down_keeps_volumes(make):
    project = make()
    healthy_stack(project)
    outcomes = lifecycle.down(project)
    assert outcomes[0].status is Status.CHANGED and "all data kept" in outcomes[0].detail
    assert "volume rm" not in project.engine.changes()
    assert lifecycle.down(project)[0].detail == "not running"


def test_wait_healthy_fails_at_once_when_a_service_stopped(make):
    project = make()
    healthy_stack(project)
    project.engine.put(inspect(MQTT, state="exited", health_="unhealthy"))
    with pytest.raises(FlopsError, match="flops_mqtt stopped"):
        project.wait_healthy(timeout=30)


def test_a_stopped_container_is_not_healthy_by_its_last_health(make, monkeypatch):
    stores_answer(monkeypatch)
    project = make()
    healthy_stack(project)
    project.engine.put(inspect(MQTT, state="exited", health_="healthy"))
    assert project.states()[MQTT] == "exited"
    rows = {o.step: o for o in health.doctor(project) if o.step in SERVICES}
    assert rows[MQTT].status is Status.FAILED


def test_rebuild_service_builds_only_that_service(make):
    project = make()
    healthy_stack(project)
    lifecycle.rebuild_service(project, MANAGER)
    assert ("up", (MANAGER,), True) in project.engine.calls


# -- registry and FLOps DB ----------------------------------------------------------------
def test_dry_clear_registry_plans_drop_and_restart(make):
    project = make(dry=True)
    healthy_stack(project)
    outcomes = registry.clear(project)
    assert "would remove volume flops_management_registry_data" in outcomes[0].detail
    assert project.engine.changes() == []


def test_redb_refuses_a_database_that_is_not_this_stacks(make, monkeypatch):
    project = make()
    project.engine.put(inspect("flops_db", project="someone_else"))
    deleted: list[str] = []
    monkeypatch.setattr(flopsdb, "_direct", lambda p: deleted.append("direct") or "x")
    monkeypatch.setattr(flopsdb, "_via_manager", lambda p: deleted.append("api") or "x")
    with pytest.raises(FlopsError, match="not by flops_db of the stack flops_management"):
        flopsdb.redb(project)
    assert deleted == []


def test_redb_skips_a_manager_port_that_is_not_this_stacks(make, monkeypatch):
    project = make()
    project.engine.put(inspect("flops_db"))
    project.engine.put(inspect(MANAGER, project="someone_else"))
    said: list[str] = []
    project.progress = said.append
    monkeypatch.setattr(flopsdb, "_direct", lambda p: "directly in Mongo")
    monkeypatch.setattr(flopsdb, "collections", lambda p: [])
    outcomes = flopsdb.redb(project)
    assert "directly in Mongo" in outcomes[0].detail
    assert any("resetting the database directly" in line for line in said)


def test_redb_fails_when_collections_remain(make, monkeypatch):
    project = make()
    project.engine.put(inspect("flops_db"))
    monkeypatch.setattr(flopsdb, "_via_manager", lambda p: "through the FLOps manager API")
    monkeypatch.setattr(flopsdb, "collections", lambda p: ["FLOpsProject"])
    with pytest.raises(FlopsError, match="still has collections after reset: FLOpsProject"):
        flopsdb.redb(project)


# -- health ---------------------------------------------------------------------------------
def test_port_ranges_fold_consecutive_ports():
    assert health.port_ranges(
        {("0.0.0.0", 20), ("0.0.0.0", 21), ("0.0.0.0", 5073), ("10.0.0.2", 22)}
    ) == ["0.0.0.0:20-21", "0.0.0.0:5073", "10.0.0.2:22"]


def test_status_rows_show_stand_ins_and_the_addon_ref(make):
    project = make()
    healthy_stack(project)
    project.engine.put(inspect("flops_db", labels={"org.flops-tasks.stand-in": "mongo 3.6"}))
    project.engine.put(inspect(MANAGER, labels={"org.flops-tasks.addon-ref": "2fa0ab9"}))
    rows = {r["service"]: r for r in health.status(project)}
    assert rows["flops_db"]["stand_in"] == "mongo 3.6"
    assert rows[MANAGER]["addon_ref"] == "2fa0ab9"
    assert rows["flops_image_registry"]["ports"] == ["0.0.0.0:5073"]
    assert "stand_in" not in rows[MANAGER]


def test_doctor_names_the_broker_when_the_manager_lost_it(make, monkeypatch):
    project = make()
    healthy_stack(project)
    project.engine.put(inspect(MQTT, state="exited", health_="unhealthy"))
    project.engine.put(
        inspect(
            MANAGER, health_="unhealthy", log="Traceback...\nno MQTT connection to 10.0.0.2:9027"
        )
    )
    stores_answer(monkeypatch)
    rows = {o.step: o for o in health.doctor(project)}
    manager = rows[MANAGER]
    assert manager.status is Status.FAILED
    assert "no MQTT connection to 10.0.0.2:9027" in manager.detail
    assert "its MQTT broker flops_mqtt is exited unhealthy" in manager.detail
    assert rows[MQTT].status is Status.FAILED
    assert rows["backend-store"].status is Status.OK


def test_doctor_names_what_holds_the_place_of_a_service_that_is_not_up(make, monkeypatch):
    stores_answer(monkeypatch)
    project = make()
    healthy_stack(project)
    project.engine.containers = [
        c for c in project.engine.containers if c["Name"] != "/flops_manager"
    ]
    project.engine.put(
        inspect(
            MANAGER, ours=False, labels={"com.docker.compose.project.config_files": UPSTREAM_FILE}
        )
    )
    rows = [o for o in health.doctor(project) if o.step == "conflict"]
    assert [o.status for o in rows] == [Status.FAILED, Status.FAILED]
    assert f"upstream's own compose file {UPSTREAM_FILE}" in rows[0].detail
    assert "port 5072 (flops_manager) is in use" in rows[1].detail


def test_doctor_reports_a_store_that_does_not_do_its_job(make, monkeypatch):
    project = make()
    healthy_stack(project)
    project.engine.exec_output = "ERROR 1045 (28000): Access denied"

    def no_mongo(p: Project) -> list[str]:
        raise FlopsError("the FLOps database does not answer on port 10027 (timeout)")

    stores_answer(monkeypatch)
    monkeypatch.setattr(flopsdb, "collections", no_mongo)
    monkeypatch.setattr(registry, "catalog", lambda p: ["a", "b"])
    rows = {o.step: o for o in health.doctor(project)}
    assert rows["flops-db"].status is Status.FAILED and rows["flops-db"].fix == "inv up"
    assert rows["backend-store"].status is Status.FAILED
    assert "made with another" in rows["backend-store"].detail
    assert rows["backend-store"].detail.endswith(
        "the fix empties every store but the registry, MLflow's backend store among them"
    )
    assert rows["backend-store"].fix == "inv reset --clean"
    assert rows["registry"].status is Status.OK and "2 repositories" in rows["registry"].detail
    assert all(rows[svc].status is Status.OK for svc in SERVICES)


# -- exposure: stores with fixed credentials, or none, published beyond this host ------------
def exposure_rows(project: FakeProject, monkeypatch: pytest.MonkeyPatch) -> list:
    stores_answer(monkeypatch)
    return [o for o in health.doctor(project) if o.step == "exposure"]


def test_doctor_warns_about_every_store_published_on_every_address(make, monkeypatch):
    project = make()
    healthy_stack(project)  # as the default bind_address 0.0.0.0 publishes them
    rows = exposure_rows(project, monkeypatch)
    assert [o.status for o in rows] == [Status.WARNING]
    detail = rows[0].detail
    for shown in (
        "mlflow_backend_store on 0.0.0.0:3306 (MySQL root/oakestra",
        "vsftpd_server on 0.0.0.0:20-21, 0.0.0.0:21100-21110 (FTP flops/flops",
        "flops_db on 0.0.0.0:10027 (Mongo without authentication",
        "flops_image_registry on 0.0.0.0:5073 (registry without authentication",
        "flops_manager on 0.0.0.0:5072 (FLOps manager API without authentication, its "
        "container mounts docker.sock",
        "flops_mqtt on 0.0.0.0:9027 (MQTT, anonymous",
    ):
        assert shown in detail
    assert "flops.stack.bind_address" in detail and "\n" not in detail


def test_doctor_warns_about_a_store_on_one_outside_address_too(make, monkeypatch):
    project = make(bind_address="10.0.0.2")
    for svc in SERVICES:
        project.engine.put(inspect(svc, host_ip="10.0.0.2"))
    project.engine.put(inspect("flops_db", host_ip="127.0.0.1"))
    [row] = exposure_rows(project, monkeypatch)
    assert "mlflow_backend_store on 10.0.0.2:3306" in row.detail
    assert "flops_db" not in row.detail  # loopback only: nobody else reaches it
    assert "firewall" in row.detail and "bind_address" not in row.detail


@pytest.mark.parametrize("address", ["127.0.0.1", "::1"])
def test_no_warning_when_every_store_is_on_loopback(make, monkeypatch, address):
    project = make(bind_address=address)
    for svc in SERVICES:
        project.engine.put(inspect(svc, host_ip=address))
    assert exposure_rows(project, monkeypatch) == []


def test_the_warning_reads_the_real_bindings_not_the_config(make, monkeypatch):
    """Configured on loopback, but a container still published on every address (started
    with another env file): the binding is what counts."""
    project = make(bind_address="127.0.0.1")
    for svc in SERVICES:
        project.engine.put(inspect(svc, host_ip="127.0.0.1"))
    project.engine.put(inspect("mlflow_backend_store", host_ip="::"))
    [row] = exposure_rows(project, monkeypatch)
    assert "mlflow_backend_store on [::]:3306 (MySQL root/oakestra" in row.detail
    assert "flops_image_registry" not in row.detail
