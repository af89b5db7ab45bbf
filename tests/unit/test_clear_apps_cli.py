"""`inv oakestra-apps` and `inv clear-apps` through the real CLI, against the stand-in.

The stand-in (testbed/system_manager/) runs in this process on this host's primary address
(SYSTEM_MANAGER_IP may not be a loopback address). Each case runs `inv` as a subprocess with
the bad-input catalogue's safety nets (its own directory and HOME, no Docker).
"""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
import yaml

from flops_tasks.env import primary_ip

from .sm_standin import ADMIN_ROLES, Running, app
from .test_bad_input import INV, ROOT, Case, assert_refused, base_config, child_env, run_case

SECRET = "Oak-Pa55-3f9c1e-never-printed"
FLOPS = {
    "6650a1b2c3d4e5f601020301": app("6650a1b2c3d4e5f601020301", "observatory", "observatory"),
    "6650a1b2c3d4e5f601020302": app("6650a1b2c3d4e5f601020302", "helper", "helper"),
    "6650a1b2c3d4e5f601020303": app(
        "6650a1b2c3d4e5f601020303",
        "proj0123456789ab",
        "proj",
        services=(
            ("builder0123456789ab", "builder", "ghcr.io/oakestra/addon-flops/image-builder:latest"),
        ),
    ),
}
OTHERS = {"6650a1b2c3d4e5f601020310": app("6650a1b2c3d4e5f601020310", "webshop", "shop")}
UNROUTABLE = "192.0.2.10"  # TEST-NET-1: a FLOps DB there never answers


@pytest.fixture(scope="module")
def address():
    ip = primary_ip()
    if not ip:
        pytest.skip("this host has no IPv4 default route: SYSTEM_MANAGER_IP cannot be loopback")
    return ip


@pytest.fixture
def sm(address):
    running = Running(
        {
            "users": [{"name": "Admin", "password": SECRET, "roles": ADMIN_ROLES}],
            "applications": [*FLOPS.values(), *OTHERS.values()],
        },
        bind=address,
    )
    yield running
    running.stop()


def case(
    sm: Running, *args: str, password: str = SECRET, port: int | None = None, db: str | None = None
) -> Case:
    flops = {
        "addresses": {"system_manager_ip": sm.url.split("//")[1].split(":")[0]},
        "oakestra": {"port": port or sm.port, "timeout": 5},
    }
    if db:  # nothing answers there: wait 0.5 s, not the default 5 s
        flops["stack"] = {"bind_address": db, "db_timeout": 0.5}
    return Case(tuple(args), (), flops=flops, env={"FLOPS_OAKESTRA_PASSWORD": password})


def run_json(c: Case, workdir) -> tuple[int, dict, str]:
    """Run with --json: (exit code, stdout as JSON, stderr)."""
    workdir.mkdir(parents=True, exist_ok=True)
    flops = base_config(workdir)
    for section, values in c.flops.items():
        flops.setdefault(section, {}).update(values)
    cfg = workdir / "c.yaml"
    cfg.write_text(yaml.safe_dump({"flops": flops}))
    proc = subprocess.run(
        [INV, "--search-root", str(ROOT), "-f", str(cfg), *c.args],
        cwd=workdir,
        env=child_env(workdir, c),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def untouched(sm: Running) -> bool:
    return sm.deleted_ids() == [] and sm.app_ids() == set(FLOPS) | set(OTHERS)


def test_without_a_terminal_it_lists_flops_apps_and_refuses(sm, tmp_path):
    ran = run_case(case(sm, "clear-apps", "--without-db"), tmp_path)
    assert ran.returncode == 3, ran.output
    head, *listing, second = ran.output.strip().splitlines()
    assert head == "This will delete:"
    assert listing and all(line.startswith("  - Oakestra app ") for line in listing)
    first = " ".join(listing)
    for flops_app in FLOPS.values():
        assert f"{flops_app['application_name']} (namespace " in first
    assert "webshop" not in first and "builder0123456789ab/builder" in first
    assert "--yes" in second
    assert SECRET not in ran.output and untouched(sm)


def test_dry_run_shows_the_real_plan_and_deletes_nothing(sm, tmp_path):
    code, data, stderr = run_json(
        case(sm, "--dry", "clear-apps", "--without-db", "--json"), tmp_path
    )
    assert code == 0, stderr
    steps = data["hosts"]["oakestra"]["steps"]
    planned = [s["detail"] for s in steps if s["changed"]]
    assert len(planned) == 4 and all(d.startswith("would undeploy") for d in planned)
    assert sum(d.startswith("would undeploy and delete") for d in planned) == 3
    kept = [s["detail"] for s in steps if s["step"] == "kept"]
    assert len(kept) == 1 and kept[0].startswith("webshop (namespace shop")
    assert data["dry"] is True and SECRET not in json.dumps(data) + stderr and untouched(sm)


def test_yes_deletes_exactly_flops_apps_and_never_prints_the_password(sm, tmp_path):
    code, data, stderr = run_json(
        case(sm, "clear-apps", "--without-db", "--yes", "--json"), tmp_path
    )
    assert code == 0, stderr
    assert SECRET not in json.dumps(data) + stderr
    assert sorted(sm.deleted_ids()) == sorted(FLOPS) and sm.app_ids() == set(OTHERS)
    assert "--without-db" in data["notes"][0]
    warned = [s for s in data["hosts"]["oakestra"]["steps"] if s["status"] == "warning"]
    assert len(warned) == 1 and "stale ids" in warned[0]["detail"]
    assert "until 'inv redb'" in warned[0]["detail"]
    code, again, _ = run_json(
        case(sm, "clear-apps", "--without-db", "--yes", "--json"), tmp_path / "2"
    )
    assert code == 0 and again["changed"] is False


def test_wrong_credentials_are_refused_in_one_line(sm, tmp_path):
    wrong = "Wr0ng-b7d2e4-also-never-printed"
    ran = run_case(case(sm, "clear-apps", "--without-db", "--yes", password=wrong), tmp_path)
    assert_refused(
        ran, ("refused the login of user 'Admin'", "FLOPS_OAKESTRA_PASSWORD", "nothing was deleted")
    )
    assert wrong not in ran.output and untouched(sm)


def test_an_unreachable_system_manager_is_one_line(sm, tmp_path):
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind((sm.url.split("//")[1].split(":")[0], 0))
        port = closed.getsockname()[1]
    ran = run_case(case(sm, "clear-apps", "--yes", port=port), tmp_path)
    assert_refused(ran, ("does not answer", "SYSTEM_MANAGER_IP", "nothing was deleted"))
    assert untouched(sm)


def test_an_unreadable_flops_db_stops_clear_apps_and_names_the_way_out(sm, tmp_path):
    ran = run_case(case(sm, "clear-apps", "--yes", db=UNROUTABLE), tmp_path)
    assert_refused(ran, ("cannot read the FLOps DB", "--without-db", "nothing was deleted"))
    assert untouched(sm)


def test_the_listing_says_which_identification_it_used(sm, tmp_path):
    code, data, stderr = run_json(case(sm, "oakestra-apps", "--json", db=UNROUTABLE), tmp_path)
    assert code == 0, stderr
    assert data["identification"].startswith(
        "FLOps' names and namespaces only: the FLOps DB could not be read"
    )
    actions = {a["name"]: a["action"] for a in data["applications"]}
    assert actions == {
        "observatory": "delete",
        "helper": "delete",
        "proj0123456789ab": "delete",
        "webshop": "keep",
    }
    proj = next(a for a in data["applications"] if a["namespace"] == "proj")
    assert proj["services"] == [
        {
            "id": proj["services"][0]["id"],
            "name": "builder0123456789ab",
            "namespace": "builder",
            "instances": 1,
            "image": "ghcr.io/oakestra/addon-flops/image-builder:latest",
        }
    ]
    table = run_case(case(sm, "oakestra-apps", db=UNROUTABLE), tmp_path / "t2")
    assert table.returncode == 0 and "3 FLOps apps of 4" in table.output
    assert SECRET not in json.dumps(data) + stderr + table.output and untouched(sm)


def test_an_instance_that_will_not_undeploy_fails_with_one_line_and_no_app_deleted(sm, tmp_path):
    state = sm.control("state")
    builder = next(s for s in state["services"] if s["microservice_name"] == "builder0123456789ab")
    sm.control("stuck", {"microserviceID": builder["microserviceID"], "instance_number": 0})
    code, data, stderr = run_json(
        case(sm, "clear-apps", "--without-db", "--yes", "--json"), tmp_path
    )
    assert code == 1, stderr
    assert "Traceback" not in stderr and SECRET not in json.dumps(data) + stderr
    steps = data["hosts"]["oakestra"]["steps"]
    (failure,) = [s for s in steps if s["status"] == "failed"]
    assert failure["step"] == "undeploy" and "\n" not in failure["detail"]
    assert failure["detail"].startswith(
        "instance 0 of service builder0123456789ab/builder (app proj0123456789ab"
    )
    assert "will not undeploy" in failure["detail"] and "no app was deleted" in failure["detail"]
    assert not any(s["changed"] for s in steps)  # the only instance did not go
    assert untouched(sm)
