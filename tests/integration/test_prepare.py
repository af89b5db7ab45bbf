"""prepare-builder and prepare-learner on fresh testbed workers of both kinds, checked
independently: w1 runs Docker (builder and learner), w2 only containerd (builder)."""

from __future__ import annotations

import json
import re

import pytest

from flops_tasks import commands
from flops_tasks.ops import manifest_platforms
from flops_tasks.probe_binaries import UNAME_ARM64_B64

from .helpers import changed_rows, in_worker, inv, text_rows, worker

pytestmark = pytest.mark.integration

W1, W2 = worker(1), worker(2)
# a container that runs without an image: busybox from Debian as a rootfs, started with ctr
CTR_SLEEPER = (
    "set -e; cd /tmp && apt-get update -qq && "
    "apt-get download -q busybox-static >/dev/null 2>&1 && "
    "dpkg-deb -x busybox-static_*.deb bb && mkdir -p rootfs/bin && "
    "cp bb/usr/bin/busybox rootfs/bin/ && ln -sf busybox rootfs/bin/sleep && "
    "ctr -n flops-test run -d --rootfs /tmp/rootfs sleeper /bin/sleep 3600 >/dev/null && "
    "ctr -n flops-test tasks ls | awk '$1 == \"sleeper\" {print $2, $3}'"
)


def run_json(*args: str) -> dict:
    res = inv(*args, "--json")
    assert "Traceback" not in res.stderr, res.stderr
    try:
        return {"rc": res.returncode, **json.loads(res.stdout)}
    except ValueError:
        raise AssertionError(f"no JSON from inv {args}: {res.stdout}{res.stderr}") from None


def steps(data: dict, host: str) -> dict[str, dict]:
    return {s["step"]: s for s in data["hosts"][host]["steps"]}


def registry(fresh_mixed) -> str:
    return f"{fresh_mixed['gateway']}:5073"


def untouched(name: str) -> None:
    """Nothing a preparation installs or writes is on the worker."""
    in_worker(name, "! dpkg -s qemu-user-static >/dev/null 2>&1")
    in_worker(name, "! ls /etc/containerd/certs.d/*/hosts.toml >/dev/null 2>&1")
    in_worker(name, "! test -e /etc/containers/registries.conf.d/50-flops-registry.conf")
    in_worker(name, "! grep -q config_path /etc/containerd/config.toml")


# -- bad input: one line, nothing changed ------------------------------------------------------
def test_broken_daemon_json_is_reported_and_nothing_changes(fresh_mixed):
    in_worker(
        W1,
        "cp /etc/docker/daemon.json /tmp/daemon.json.good && "
        "printf '{\"features\": {' > /etc/docker/daemon.json",
    )
    try:
        data = run_json("prepare-builder", "--host", "w1")
        assert data["rc"] == 1
        bad = [s for s in data["hosts"]["w1"]["steps"] if s["status"] == "failed"]
        assert [s["step"] for s in bad] == ["trust-docker"]
        assert "/etc/docker/daemon.json is not valid JSON" in bad[0]["detail"]
        assert bad[0]["detail"].endswith("nothing was changed on this host")
        assert "\n" not in bad[0]["detail"]
        assert in_worker(W1, "cat /etc/docker/daemon.json").stdout == '{"features": {'
        untouched(W1)
    finally:
        in_worker(W1, "mv /tmp/daemon.json.good /etc/docker/daemon.json")


def test_conflicting_mirrors_are_reported_and_nothing_changes(fresh_mixed):
    conf = (
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n'
        '  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n'
        '    endpoint = ["https://mirror.example"]\n'
    )
    in_worker(
        W2,
        "cp /etc/containerd/config.toml /tmp/config.toml.good && "
        f"printf '%s' {commands.q(conf)} > /etc/containerd/config.toml",
    )
    try:
        data = run_json("prepare-builder", "--host", "w2")
        assert data["rc"] == 1
        bad = [s for s in data["hosts"]["w2"]["steps"] if s["status"] == "failed"]
        assert [s["step"] for s in bad] == ["trust-containerd"]
        assert "sets registry mirrors" in bad[0]["detail"] and "\n" not in bad[0]["detail"]
        assert in_worker(W2, "cat /etc/containerd/config.toml").stdout == conf
        in_worker(W2, "! dpkg -s qemu-user-static >/dev/null 2>&1")
        in_worker(W2, "! ls /etc/containerd/certs.d/*/hosts.toml >/dev/null 2>&1")
    finally:
        in_worker(W2, "mv /tmp/config.toml.good /etc/containerd/config.toml")


def test_a_host_without_apt_is_refused_in_one_line(fresh_mixed):
    in_worker(W2, "mv /usr/bin/apt-get /usr/bin/apt-get.away")
    try:
        res = inv("prepare-builder", "--host", "w2")
        assert res.returncode == 1 and "Traceback" not in res.stderr
        data = run_json("prepare-builder", "--host", "w2")
        (row,) = data["hosts"]["w2"]["steps"]
        assert row["step"] == "preflight" and "no apt-get on debian trixie" in row["detail"]
        untouched(W2)
    finally:
        in_worker(W2, "mv /usr/bin/apt-get.away /usr/bin/apt-get")


def test_a_learner_without_docker_is_refused(fresh_mixed):
    data = run_json("prepare-learner", "--host", f"root@{fresh_mixed['workers'][1]['ip']}")
    assert data["rc"] == 1
    (host,) = data["hosts"].values()
    (row,) = host["steps"]
    assert "the Docker engine is not running (docker is not installed)" in row["detail"]


def test_dry_run_on_fresh_workers_plans_and_changes_nothing(fresh_mixed):
    data = run_json("--dry", "prepare-builder")
    assert data["rc"] == 0 and data["dry"] and data["changed"]
    for host in ("w1", "w2"):
        qemu = steps(data, host)["qemu"]
        assert qemu["status"] == "changed" and qemu["detail"].startswith("would change")
    assert "buildx" in steps(data, "w1") and "buildx" not in steps(data, "w2")
    assert {"host": "w2", "step": "qemu", "summary": "apt-get install qemu-user-static"} in [
        {k: c[k] for k in ("host", "step", "summary")} for c in data["changes"]
    ]
    learner = run_json("--dry", "prepare-learner")
    assert list(learner["hosts"]) == ["w1"]
    assert steps(learner, "w1")["sidecar"]["detail"].startswith("would change")
    for name in (W1, W2):
        untouched(name)
    in_worker(W1, "! docker buildx version >/dev/null 2>&1")
    in_worker(W1, "! docker container inspect ml_data_server >/dev/null 2>&1")
    in_worker(W1, "! grep -q insecure-registries /etc/docker/daemon.json")


@pytest.fixture(scope="module")
def sleepers(fresh_mixed):
    """A container on each worker, started before any preparation: "PID RUNNING"."""
    return {name: in_worker(name, CTR_SLEEPER).stdout.strip() for name in (W1, W2)}


@pytest.fixture(scope="module")
def prepared(fresh_mixed, sleepers):
    """The first run on the fresh workers (after the tests above, in file order). w1's
    containerd config is what `containerd config default` writes (config_path = "")."""
    in_worker(
        W1,
        "containerd config default > /etc/containerd/config.toml && "
        "grep -q 'config_path = \"\"' /etc/containerd/config.toml",
    )
    planned_builder = run_json("--dry", "prepare-builder")
    builder = run_json("prepare-builder")
    planned_learner = run_json("--dry", "prepare-learner")
    learner = run_json("prepare-learner")
    PLANNED.update(builder=planned_builder, learner=planned_learner)
    return builder, learner


PLANNED: dict[str, dict] = {}


def test_each_dry_run_planned_exactly_the_changes_of_the_real_run(prepared):
    """Run under --dry, then for real, on the same state: the same (host, step) rows change,
    and every changed row has its recorded change (and every change its row)."""
    for made, planned in zip(prepared, (PLANNED["builder"], PLANNED["learner"]), strict=True):
        assert changed_rows(planned) == changed_rows(made) != set()
        for report in (planned, made):
            assert {(c["host"], c["step"]) for c in report["changes"]} == changed_rows(report)
        files = {c["path"]: c for c in made["changes"] if "path" in c}
        assert {p: c["after"] for p, c in files.items()} == {
            c["path"]: c["after"] for c in planned["changes"] if "path" in c
        }
    daemon = next(c for c in prepared[0]["changes"] if c.get("path") == "/etc/docker/daemon.json")
    assert "insecure-registries" in daemon["after"] and daemon["done"] is True


def test_first_run_prepares_both_kinds(prepared):
    builder, learner = prepared
    assert builder["rc"] == 0, builder
    assert learner["rc"] == 0, learner
    b1, b2 = steps(builder, "w1"), steps(builder, "w2")
    for step in ("qemu", "buildx", "builder", "trust-docker", "trust-containerd", "trust-buildah"):
        assert b1[step]["status"] == "changed", b1[step]
    assert {k: v["status"] for k, v in b2.items()} == {
        "preflight": "ok",
        "qemu": "changed",
        "trust-containerd": "changed",
        "trust-buildah": "changed",
        "nodeengine-imageBuilder": "warning",
    }
    for host in ("w1", "w2"):
        warned = steps(builder, host)["nodeengine-imageBuilder"]
        assert warned["detail"].startswith("NodeEngine not found: add-on not enabled")
        assert builder["hosts"][host]["status"] == "changed"
    lrn = steps(learner, "w1")
    assert lrn["sidecar"]["status"] == "changed" and lrn["data"]["status"] == "changed"


def test_containerd_restart_left_running_containers_running(prepared, sleepers):
    for name in (W1, W2):
        assert (
            "config_path set; containerd restarted"
            in steps(prepared[0], name[-2:])["trust-containerd"]["detail"]
        )
        now = in_worker(
            name, "ctr -n flops-test tasks ls | awk '$1 == \"sleeper\" {print $2, $3}'"
        ).stdout.strip()
        assert now == sleepers[name] and now.endswith("RUNNING")  # same PID, still running


def test_workers_are_ready_when_checked_independently(fresh_mixed, prepared):
    reg = registry(fresh_mixed)
    for name in (W1, W2):
        in_worker(name, "dpkg -s qemu-user-static | grep -qx 'Status: install ok installed'")
        out = in_worker(name, commands.run_binary_b64(UNAME_ARM64_B64)).stdout.strip()
        assert out == "aarch64"
        flags = in_worker(name, "grep ^flags /proc/sys/fs/binfmt_misc/qemu-aarch64").stdout
        assert "F" in flags.split(":")[1]
        dump = in_worker(name, "containerd config dump").stdout
        assert 'config_path = "/etc/containerd/certs.d"' in dump
        hosts = in_worker(name, f"cat /etc/containerd/certs.d/{reg}/hosts.toml").stdout
        assert f'server = "http://{reg}"' in hosts
    platforms = in_worker(
        W1, "docker --context flops-builder buildx inspect flops-builder | grep ^Platforms"
    ).stdout
    assert "linux/amd64" in platforms and "linux/arm64" in platforms
    index = json.loads(
        in_worker(W1, "docker info --format '{{json .RegistryConfig.IndexConfigs}}'").stdout
    )
    assert index[reg]["Secure"] is False
    state = in_worker(
        W1,
        "docker inspect -f '{{.State.Running}} {{.HostConfig.RestartPolicy.Name}}' ml_data_server",
    ).stdout.split()
    assert state == ["true", "unless-stopped"]
    in_worker(W1, "timeout 3 bash -c 'exec 3<>/dev/tcp/172.17.0.1/11027'")
    # the sidecar is published on docker0's address only: not on the worker's own address
    bindings = json.loads(
        in_worker(W1, "docker inspect -f '{{json .HostConfig.PortBindings}}' ml_data_server").stdout
    )
    assert bindings == {"11027/tcp": [{"HostIp": "172.17.0.1", "HostPort": "11027"}]}
    own = in_worker(W1, "hostname -i").stdout.split()[0]
    assert (
        in_worker(W1, f"timeout 3 bash -c 'exec 3<>/dev/tcp/{own}/11027'", check=False).returncode
        != 0
    )
    in_worker(W2, "! command -v docker && ! command -v dockerd")


def test_builders_push_a_two_platform_image_the_way_flops_does(fresh_mixed, prepared):
    data = run_json("prepare-builder", "--push-check")
    assert data["rc"] == 0, data
    paths = {"w1": ("push", "push-buildx"), "w2": ("push",)}
    for host, checks in paths.items():
        got = steps(data, host)
        assert [s for s in got if s.startswith("push")] == list(checks)
        for step in checks:
            # changed where the check installed its tools (buildah), else a verification
            installed = "installed for the check: " in got[step]["detail"]
            assert got[step]["status"] == ("changed" if installed else "ok"), got[step]
            repo, tag = got[step]["detail"].split("pushed ")[1].split(" ")[0].split(":")
            # read the index from the registry directly, not through the task
            assert {"linux/amd64", "linux/arm64"} <= set(
                manifest_platforms(registry(fresh_mixed), repo, tag)
            )
        assert "buildah (FLOps' image builder path; storage vfs" in got["push"]["detail"]
        assert "installed for the check: " in got["push"]["detail"]
    # no image stays behind on the workers
    for name in (W1, W2):
        in_worker(name, "! ls -d /var/tmp/flops-push.* /tmp/flops-push.* 2>/dev/null")
        images = in_worker(name, "for n in $(ctr ns ls -q); do ctr -n $n images ls -q; done")
        assert "builder-probe" not in images.stdout
        in_worker(name, "grep -qx buildah /var/lib/flops-tasks/check-tools.list")
    assert "builder-probe" not in in_worker(W1, "docker image ls").stdout


def test_second_run_changes_nothing_and_says_so_in_at_most_6_lines(fresh_mixed, prepared):
    for task in ("prepare-builder", "prepare-learner"):
        data = run_json(task)
        assert data["rc"] == 0 and data["changed"] is False, data
        for host in data["hosts"]:
            assert data["hosts"][host]["status"] == "ok"
            assert data["hosts"][host]["warnings"] == 1  # NodeEngine is not installed here
    res = inv("prepare-builder", "prepare-learner")  # as a log shows it: no terminal
    assert res.returncode == 0, res.stdout + res.stderr
    lines = (res.stdout + res.stderr).splitlines()
    assert len(lines) <= 6, "\n".join(lines)
    assert lines[0] == "prepare-builder + prepare-learner: no changes"
    assert "NodeEngine not found" in res.stdout
    assert text_rows(res.stdout, "warning") == {
        ("w1", "nodeengine-imageBuilder"),
        ("w2", "nodeengine-imageBuilder"),
        ("w1", "nodeengine-FLOps"),
    }
    assert re.fullmatch(r"w1  ok=\d+ changed=0 warning=2 failed=0 unreachable=0", lines[-2])
    assert re.fullmatch(r"w2  ok=\d+ changed=0 warning=1 failed=0 unreachable=0", lines[-1])


def test_what_the_push_check_installed_can_be_removed(fresh_mixed, prepared):
    data = run_json("prepare-builder", "--remove-check-tools", "--host", "w2")
    assert data["rc"] == 0, data
    (row,) = data["hosts"]["w2"]["steps"]
    assert row["status"] == "changed" and "buildah" in row["detail"]
    in_worker(
        W2, "! dpkg -s buildah >/dev/null 2>&1 && ! test -e /var/lib/flops-tasks/check-tools.list"
    )
    again = run_json("prepare-builder", "--remove-check-tools", "--host", "w2")
    assert again["changed"] is False
    assert run_json("prepare-builder", "--host", "w2")["changed"] is False


def test_a_broken_worker_is_repaired_and_the_other_left_alone(fresh_mixed, prepared):
    in_worker(W1, "docker stop ml_data_server >/dev/null")
    in_worker(
        W1,
        "python3 -c \"import json; p='/etc/docker/daemon.json'; d=json.load(open(p)); "
        "d.pop('insecure-registries'); json.dump(d, open(p, 'w'))\" && "
        "kill -HUP $(pidof dockerd) && sleep 1",
    )
    in_worker(W2, "rm /etc/containerd/certs.d/*/hosts.toml")
    # --diff: the file the repair writes, as a unified diff, in the dry run and the real one
    dry = inv("--dry", "prepare-learner", "--host", "w1", "--diff")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    diff = [ln for ln in dry.stdout.splitlines() if ln[:1] in "+-@" and ln[:3] != "---"]
    assert "--- w1:/etc/docker/daemon.json" in dry.stdout
    assert any(ln.startswith("+") and "insecure-registries" in ln for ln in diff), dry.stdout
    data = run_json("prepare-learner", "--diff")
    assert data["rc"] == 0, data
    s1 = steps(data, "w1")
    assert s1["trust-docker"]["status"] == "changed"
    assert s1["sidecar"]["status"] == "changed"
    in_worker(W1, "timeout 3 bash -c 'exec 3<>/dev/tcp/172.17.0.1/11027'")
    data = run_json("prepare-builder")
    assert data["hosts"]["w1"]["changed"] is False
    assert steps(data, "w2")["trust-containerd"]["status"] == "changed"
    assert run_json("prepare-builder")["changed"] is False


def test_unreachable_host_is_reported_and_others_finish(fresh_mixed, prepared):
    data = run_json("prepare-learner", "--host", f"w1,root@{fresh_mixed['gateway']}:1")
    assert data["rc"] == 4  # a host unreachable and nothing failed
    assert data["hosts"]["w1"]["status"] == "ok"
    bad = [h for h in data["hosts"] if h != "w1"][0]
    assert data["hosts"][bad]["status"] == "unreachable"
