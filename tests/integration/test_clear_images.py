"""clear-images on real workers: FLOps' upstream and registry images, Docker and containerd.

Nothing can be pulled here, so each worker gets small images named as FLOps' upstream ones
(``ghcr.io/oakestra/addon-flops/...``): built in the worker's Docker from Debian's
busybox-static, and imported into containerd namespaces the way NodeEngine's pulls land
there (``docker save | ctr -n oakestra images import -``). Running containers use some of
them, in Docker and in containerd.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from .helpers import in_worker, inv, worker

pytestmark = pytest.mark.integration

GH = "ghcr.io/oakestra/addon-flops/"
UPSTREAM = ("image-builder", "project-observer", "tracking-server", "mock-data-provider")


@pytest.fixture(scope="module")
def busybox(tmp_path_factory):
    """A static busybox from Debian (host side; workers need no mirror for this)."""
    d = tmp_path_factory.mktemp("busybox")
    res = subprocess.run(
        "apt-get download busybox-static && dpkg-deb -x busybox-static_*.deb x",
        shell=True,
        cwd=d,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if res.returncode != 0 or not (d / "x" / "bin" / "busybox").is_file():
        pytest.fail(f"cannot get Debian's busybox-static (apt-get download): {res.stderr[-300:]}")
    return d / "x" / "bin" / "busybox"


def stock(name: str, busybox, registry: str) -> None:
    """Images in Docker, containerd 'oakestra' and 'default'; two of them in use."""
    in_worker(name, "mkdir -p /tmp/flops-bb")
    subprocess.run(["docker", "cp", str(busybox), f"{name}:/tmp/flops-bb/busybox"], check=True)
    builds = " && ".join(
        f"docker build -q --label org.flops-tasks.test={n} -t {GH}{n}:latest . >/dev/null"
        for n in UPSTREAM
    )
    in_worker(
        name,
        f"""set -e
cd /tmp/flops-bb
printf 'FROM scratch\\nCOPY busybox /bin/busybox\\nENTRYPOINT ["/bin/busybox"]\\n' > Dockerfile
{builds}
docker tag {GH}image-builder:latest {registry}/flops/learner:old
docker tag {GH}image-builder:latest flops-test/unrelated:1
docker save {GH}image-builder:latest {GH}project-observer:latest {GH}tracking-server:latest \
  | ctr -n oakestra images import - >/dev/null
docker save {GH}mock-data-provider:latest | ctr -n default images import - >/dev/null
docker run -d --name tracking-in-use {GH}tracking-server:latest sleep 3600 >/dev/null
ctr -n oakestra run -d {GH}project-observer:latest observer-in-use /bin/busybox sleep 3600 \
  >/dev/null
""",
    )


def images_of(name: str) -> dict[str, set[str]]:
    docker = in_worker(name, "docker image ls --format '{{.Repository}}:{{.Tag}}'").stdout
    out = {"docker": set(docker.split())}
    for ns in ("oakestra", "default"):
        out[ns] = set(in_worker(name, f"ctr -n {ns} images ls -q").stdout.split())
    return out


def steps(res: subprocess.CompletedProcess, host: str) -> list[dict]:
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)["hosts"][host]["steps"]


def test_upstream_and_registry_images_go_images_in_use_stay(fresh, busybox):
    registry = f"{fresh['gateway']}:5073"
    stock(worker(1), busybox, registry)
    before = images_of(worker(1))
    assert {f"{GH}{n}:latest" for n in UPSTREAM} <= before["docker"]

    res = inv("clear-images", "--host", "w1")  # no terminal: list and refuse
    assert res.returncode == 3, res.stdout + res.stderr
    listing = " ".join(res.stderr.split())
    assert f"w1: {GH}image-builder:latest (containerd:oakestra)" in listing
    assert f"w1: {GH}mock-data-provider:latest (containerd:default)" in listing
    assert f"{GH}tracking-server:latest (docker)" not in listing  # in use
    assert images_of(worker(1)) == before

    dry = steps(inv("--dry", "clear-images", "--host", "w1", "--json"), "w1")
    assert dry[0]["detail"].startswith("would remove 7 images")
    assert images_of(worker(1)) == before

    only = steps(inv("clear-images", "--host", "w1", "--registry-only", "--yes", "--json"), "w1")
    assert only[0]["detail"] == f"removed 1 image: docker: {registry}/flops/learner:old"
    after_only = images_of(worker(1))
    assert after_only["docker"] == before["docker"] - {f"{registry}/flops/learner:old"}
    assert after_only["oakestra"] == before["oakestra"]

    done = steps(inv("clear-images", "--host", "w1", "--yes", "--json"), "w1")
    assert done[0]["status"] == "changed" and done[0]["detail"].startswith("removed 6 images")
    kept = sorted(s["detail"] for s in done if s["step"] == "kept")
    assert kept == [
        f"{GH}project-observer:latest (containerd:oakestra): in use by running container "
        "observer-in-use",
        f"{GH}tracking-server:latest (docker): in use by running container tracking-in-use",
    ]
    after = images_of(worker(1))
    assert after["docker"] == {f"{GH}tracking-server:latest", "flops-test/unrelated:1"}
    assert after["oakestra"] == {f"{GH}project-observer:latest"}
    assert after["default"] == set()
    # the containers using them still run
    in_worker(worker(1), "docker inspect -f '{{.State.Running}}' tracking-in-use | grep -qx true")
    in_worker(worker(1), "ctr -n oakestra tasks ls | grep -q 'observer-in-use .*RUNNING'")

    again = steps(inv("clear-images", "--host", "w1", "--yes", "--json"), "w1")
    assert again[0]["status"] == "ok" and again[0]["detail"].startswith("no unused images")
    assert sorted(s["detail"] for s in again if s["step"] == "kept") == kept


def test_a_worker_without_ctr_or_docker_is_a_note_not_an_error(fresh):
    name = worker(2)
    in_worker(name, "mv /usr/bin/ctr /usr/bin/ctr.hidden")
    try:
        rows = steps(inv("clear-images", "--host", "w2", "--yes", "--json"), "w2")
        notes = {s["step"]: s for s in rows}
        assert notes["containerd"]["status"] == "ok"
        assert notes["containerd"]["detail"] == (
            "no ctr on this host: containerd images not checked"
        )
        assert all(s["status"] == "ok" for s in rows)
    finally:
        in_worker(name, "mv /usr/bin/ctr.hidden /usr/bin/ctr")
    in_worker(name, "mv /usr/bin/docker /usr/bin/docker.hidden")
    try:
        rows = steps(inv("clear-images", "--host", "w2", "--yes", "--json"), "w2")
        notes = {s["step"]: s for s in rows}
        assert notes["docker"]["detail"] == "no docker on this host: Docker images not checked"
        assert all(s["status"] == "ok" for s in rows)
    finally:
        in_worker(name, "mv /usr/bin/docker.hidden /usr/bin/docker")
