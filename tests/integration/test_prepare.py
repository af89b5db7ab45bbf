"""prepare-builder and prepare-learner on fresh testbed workers, checked independently."""

from __future__ import annotations

import json

import pytest

from flops_tasks import commands
from flops_tasks.ops import manifest_platforms
from flops_tasks.probe_binaries import UNAME_ARM64_B64

from .helpers import in_worker, inv, worker

pytestmark = pytest.mark.integration


def run_json(*args: str) -> dict:
    res = inv(*args, "--json")
    assert "Traceback" not in res.stderr
    try:
        return {"rc": res.returncode, **json.loads(res.stdout)}
    except ValueError:
        raise AssertionError(f"no JSON from inv {args}: {res.stdout}{res.stderr}") from None


def steps(data: dict, host: str) -> dict[str, dict]:
    return {s["step"]: s for s in data["hosts"][host]["steps"]}


def registry(fresh) -> str:
    return f"{fresh['gateway']}:5073"


def test_dry_run_on_fresh_workers_plans_and_changes_nothing(fresh):
    data = run_json("--dry", "prepare-builder")
    assert data["rc"] == 0 and data["dry"] and data["changed"]
    for host in ("w1", "w2"):
        qemu = steps(data, host)["qemu"]
        assert qemu["status"] == "changed" and qemu["detail"].startswith("would change")
    learner = run_json("--dry", "prepare-learner")
    assert steps(learner, "w1")["sidecar"]["detail"].startswith("would change")
    for i in (1, 2):
        in_worker(worker(i), "! dpkg -s qemu-user-static >/dev/null 2>&1")
        in_worker(worker(i), "! docker buildx version >/dev/null 2>&1")
        in_worker(worker(i), "! docker container inspect ml_data_server >/dev/null 2>&1")
        in_worker(worker(i), "! grep -q insecure-registries /etc/docker/daemon.json")


@pytest.fixture(scope="module")
def prepared(fresh):
    """The first run on the session's fresh workers (after the dry-run test, in file order)."""
    return run_json("prepare-builder"), run_json("prepare-learner")


def test_first_run_prepares_everything(prepared):
    builder, learner = prepared
    assert builder["rc"] == 0, builder
    assert learner["rc"] == 0, learner
    for host in ("w1", "w2"):
        b = steps(builder, host)
        for step in ("qemu", "buildx", "builder", "trust-docker"):
            assert b[step]["status"] == "changed", b[step]
        lrn = steps(learner, host)
        assert lrn["sidecar"]["status"] == "changed" and lrn["data"]["status"] == "changed"


def test_workers_are_ready_when_checked_independently(fresh, prepared):
    reg = registry(fresh)
    for i in (1, 2):
        w = worker(i)
        in_worker(w, "dpkg -s qemu-user-static | grep -qx 'Status: install ok installed'")
        out = in_worker(w, commands.run_binary_b64(UNAME_ARM64_B64)).stdout.strip()
        assert out == "aarch64"
        flags = in_worker(w, "grep ^flags /proc/sys/fs/binfmt_misc/qemu-aarch64").stdout
        assert "F" in flags.split(":")[1]
        platforms = in_worker(w, "docker --context flops-builder buildx inspect flops-builder "
                                 "| grep ^Platforms").stdout
        assert "linux/amd64" in platforms and "linux/arm64" in platforms
        index = json.loads(in_worker(
            w, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout)
        assert index[reg]["Secure"] is False
        state = in_worker(w, "docker inspect -f '{{.State.Running}} "
                             "{{.HostConfig.RestartPolicy.Name}}' ml_data_server").stdout.split()
        assert state == ["true", "unless-stopped"]
        in_worker(w, "timeout 3 bash -c 'exec 3<>/dev/tcp/172.17.0.1/11027'")
        # published on docker0's address only: not on the worker's own address
        bindings = json.loads(in_worker(w, "docker inspect -f '{{json .HostConfig.PortBindings}}' "
                                           "ml_data_server").stdout)
        assert bindings == {"11027/tcp": [{"HostIp": "172.17.0.1", "HostPort": "11027"}]}
        own = in_worker(w, "hostname -i").stdout.split()[0]
        assert in_worker(w, f"timeout 3 bash -c 'exec 3<>/dev/tcp/{own}/11027'",
                         check=False).returncode != 0


def test_builders_push_a_two_platform_image(fresh, prepared):
    data = run_json("prepare-builder", "--push-check")
    assert data["rc"] == 0, data
    for host in ("w1", "w2"):
        push = steps(data, host)["push"]
        assert push["status"] == "ok", push
        repo, tag = push["detail"].split("pushed ")[1].split(" ")[0].split(":")
        # read the index from the registry directly, not through the task
        assert {"linux/amd64", "linux/arm64"} <= set(
            manifest_platforms(registry(fresh), repo, tag))


def test_second_run_changes_nothing_and_says_so(fresh, prepared):
    for task in ("prepare-builder", "prepare-learner"):
        data = run_json(task)
        assert data["rc"] == 0 and data["changed"] is False, data
        for host in ("w1", "w2"):
            assert data["hosts"][host]["status"] == "ok"
    res = inv("prepare-learner")
    assert "(no changes)" in res.stdout


def test_a_broken_worker_is_repaired_and_the_other_left_alone(fresh, prepared):
    w1 = worker(1)
    in_worker(w1, "docker stop ml_data_server >/dev/null")
    in_worker(w1, "python3 -c \"import json; p='/etc/docker/daemon.json'; d=json.load(open(p)); "
                  "d.pop('insecure-registries'); json.dump(d, open(p, 'w'))\" && "
                  "kill -HUP $(pidof dockerd) && sleep 1")
    data = run_json("prepare-learner")
    assert data["rc"] == 0, data
    assert data["hosts"]["w2"]["changed"] is False
    s1 = steps(data, "w1")
    assert s1["trust-docker"]["status"] == "changed"
    assert s1["sidecar"]["status"] == "changed"
    in_worker(w1, "timeout 3 bash -c 'exec 3<>/dev/tcp/172.17.0.1/11027'")
    again = run_json("prepare-learner")
    assert again["changed"] is False


def test_unreachable_host_is_reported_and_others_finish(fresh, prepared):
    data = run_json("prepare-learner", "--host", f"w1,root@{fresh['gateway']}:1")
    assert data["rc"] == 1
    assert data["hosts"]["w1"]["status"] == "ok"
    bad = [h for h in data["hosts"] if h != "w1"][0]
    assert data["hosts"][bad]["status"] == "unreachable"
