"""The quick reads a re-run starts with (facts.quick_probes), on real testbed workers: they
agree with the full probes on a prepared worker, see each state they claim to detect, and
`inv prepare-builder prepare-learner` checks a prepared worker over one SSH connection in one
round trip per task. w1 runs Docker (builder and learner), w2 only containerd (builder)."""

from __future__ import annotations

import json

import pytest

from flops_tasks import ops
from flops_tasks import testbed as tb
from flops_tasks.config import settings
from flops_tasks.run import Run
from flops_tasks.ssh import HostSession
from flops_tasks.workflows import workers

from .helpers import in_worker, inv, worker

pytestmark = pytest.mark.integration

W1, W2 = worker(1), worker(2)
BOTH = {"builder", "learner"}


@pytest.fixture(scope="module")
def prepared(fresh_mixed):
    ctx = tb.context_for(tb.default_paths())
    run = Run.of(ctx)
    workers.prepare(run, roles=None)
    assert run.report.ok, [o for o in run.report.outcomes if o.bad]
    return ctx


def facts_of(ctx, name: str, roles: set[str], quick: bool, prep=None):
    """Gather over real SSH, as a re-run does."""
    s = settings(ctx)
    target = next(t for t in s.inventory if t.name == name)
    prep = prep or workers.prep_context(s)
    session = HostSession(target, s.ssh, config=ctx.config)
    try:
        return ops.gather(session, ops.probes_for(roles, prep, quick=quick)), prep
    finally:
        session.close()


def json_docs(text: str) -> list[dict]:
    """Several JSON documents printed one after another (one per task of an inv run)."""
    decoder, docs, at = json.JSONDecoder(), [], 0
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        doc, end = decoder.raw_decode(text, at)
        docs.append(doc)
        at = end
    return docs


def test_two_tasks_of_one_run_share_one_connection_per_host(prepared):
    res = inv("prepare-builder", "--json", "prepare-learner", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    (data,) = json_docs(res.stdout)  # one run, one report
    assert data["title"] == "prepare-builder + prepare-learner" and data["changed"] is False
    # one handshake per host for the run: the second task finds the connection open
    assert data["ssh"] == {
        "w1": {"handshakes": 1, "round_trips": 2},
        "w2": {"handshakes": 1, "round_trips": 1},
    }


def test_the_quick_reads_agree_with_the_full_probes(prepared):
    quick, prep = facts_of(prepared, "w1", BOTH, quick=True)
    full, _ = facts_of(prepared, "w1", BOTH, quick=False)
    assert quick.quick and not full.quick
    for key in ("ServerVersion", "DriverStatus", "RegistryConfig", "ID"):
        assert quick.docker_info[key] == full.docker_info[key], key
    assert quick.sidecar == full.sidecar
    assert quick.ok("volume") and full.ok("volume")
    assert quick.docker0 == full.docker0 == "172.17.0.1"
    assert quick.builder_platforms("docker") == ["linux/amd64", "linux/arm64"]
    assert {"linux/amd64", "linux/arm64"} <= set(full.builder_platforms("docker"))
    assert quick.context_host == full.context_host == "unix:///var/run/docker.sock"
    assert quick.runs("aarch64") is None and full.runs("aarch64")  # quick: no program run
    assert quick.handler("aarch64") == full.handler("aarch64")
    for step in ops.steps_for(BOTH):
        if step.applies(full, prep):
            assert step.check(quick, prep)[0] and step.check(full, prep)[0], step.name
    w2, prep2 = facts_of(prepared, "w2", {"builder"}, quick=True)
    assert ops.all_in_place(w2, {"builder"}, prep2) and not w2.docker_installed


def _sees(ctx, name: str, roles: set[str], step: str) -> str:
    """The quick reads see ``step`` out of place (and so hand the host to the full probes)."""
    facts, prep = facts_of(ctx, name, roles, quick=True)
    check = next(st for st in ops.STEPS if st.name == step).check
    in_place, detail = check(facts, prep)
    assert not in_place, detail
    assert not ops.all_in_place(facts, roles, prep)
    return detail


def test_a_stopped_sidecar_is_seen_and_started_again(prepared):
    in_worker(W1, "docker stop ml_data_server >/dev/null")
    assert "ml_data_server is exited" in _sees(prepared, "w1", {"learner"}, "sidecar")
    data = json.loads(inv("prepare-learner", "--host", "w1", "--json").stdout)
    steps = {s["step"]: s for s in data["hosts"]["w1"]["steps"]}
    assert steps["sidecar"]["status"] == "changed"
    assert data["ssh"]["w1"]["round_trips"] > 2  # quick reads, full probes, change, verify
    assert json.loads(inv("prepare-learner", "--host", "w1", "--json").stdout)["ssh"] == {
        "w1": {"handshakes": 1, "round_trips": 1}
    }


def test_a_removed_builder_context_is_seen_and_made_again(prepared):
    in_worker(W1, "docker context rm flops-builder >/dev/null")
    assert "does not exist" in _sees(prepared, "w1", {"builder"}, "builder")
    data = json.loads(inv("prepare-builder", "--host", "w1", "--json").stdout)
    assert {s["step"]: s["status"] for s in data["hosts"]["w1"]["steps"]}["builder"] == "changed"
    in_worker(W1, "docker --context flops-builder buildx inspect flops-builder >/dev/null")


def test_a_missing_buildx_plugin_is_seen(prepared):
    plugin = "/usr/libexec/docker/cli-plugins/docker-buildx"
    in_worker(W1, f"mv {plugin} /tmp/docker-buildx.away")
    try:
        assert _sees(prepared, "w1", {"builder"}, "buildx") == "docker buildx is not installed"
    finally:
        in_worker(W1, f"mv /tmp/docker-buildx.away {plugin}")
    facts, prep = facts_of(prepared, "w1", {"builder"}, quick=True)
    assert ops.all_in_place(facts, {"builder"}, prep)


def test_a_removed_qemu_handler_is_seen_and_registered_again(prepared):
    """The handlers live in the kernel this machine's workers share: put it back at once."""
    handler = "/proc/sys/fs/binfmt_misc/qemu-aarch64"
    rule = "/usr/lib/binfmt.d/qemu-aarch64.conf"
    in_worker(W2, f"echo -1 > {handler}")
    try:
        assert "handler not registered" in _sees(prepared, "w2", {"builder"}, "qemu")
        data = json.loads(inv("prepare-builder", "--host", "w2", "--json").stdout)
        qemu = {s["step"]: s for s in data["hosts"]["w2"]["steps"]}["qemu"]
        assert qemu["status"] == "changed" and "registered qemu-aarch64" in qemu["detail"]
    finally:
        in_worker(
            W2,
            f"test -e {handler} || grep -v '^#' {rule} | head -n 1 > "
            "/proc/sys/fs/binfmt_misc/register",
        )
    assert in_worker(W1, f"head -n 1 {handler}").stdout.strip() == "enabled"


def test_a_stopped_docker_container_builder_is_seen(prepared):
    """A docker-container builder is buildx's instance file and its BuildKit container. The
    moby/buildkit image cannot be had offline: buildx writes the instance file (create
    without --bootstrap), and a container of buildx's name from an image the worker has
    stands in for BuildKit's. The quick read claims no more than "that container runs"."""
    image = in_worker(
        W1, "docker container inspect -f '{{.Config.Image}}' ml_data_server"
    ).stdout.strip()
    in_worker(
        W1,
        "docker buildx create --name flops-dc --driver docker-container "
        "--platform linux/amd64,linux/arm64 >/dev/null && "
        f"docker run -d --name buildx_buildkit_flops-dc0 --entrypoint sleep {image} "
        "600 >/dev/null",
    )
    try:
        prep = ops.PrepContext(
            registry=workers.prep_context(settings(prepared)).registry,
            builder_name="flops-dc",
            builder_driver="docker-container",
        )
        running, _ = facts_of(prepared, "w1", {"builder"}, quick=True, prep=prep)
        assert running.builder_platforms("docker-container") == ["linux/amd64", "linux/arm64"]
        in_worker(W1, "docker stop -t 1 buildx_buildkit_flops-dc0 >/dev/null")
        stopped, _ = facts_of(prepared, "w1", {"builder"}, quick=True, prep=prep)
        assert stopped.builder_platforms("docker-container") == []
        assert not ops.check_builder(stopped, prep)[0]
    finally:
        in_worker(
            W1,
            "docker rm -f buildx_buildkit_flops-dc0 >/dev/null 2>&1; "
            "docker buildx rm -f flops-dc >/dev/null 2>&1; true",
        )
