"""Preparations in process: recorded probe output of real nodes in, Outcomes and planned
commands out (see fake_worker.py for where the recordings come from)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from flops_tasks import commands as C
from flops_tasks import ops
from flops_tasks.env import host_port
from flops_tasks.outcome import Status
from flops_tasks.probe_binaries import UNAME_AMD64_B64, UNAME_ARM64_B64

from .fake_worker import REGISTRY, FakeSession, recorded, recorded_registry

CTX = ops.PrepContext(registry=REGISTRY, learner_image=f"{REGISTRY}/flops/ml-data-server:offline")
BOTH = {"builder", "learner"}
BUILDER = {"builder"}

# `NodeEngine config addon` as the real tool prints it: oakestra/oakestra
# go_node_engine/cmd/conf.go showAddons() (fmt "\t - %s: %s" with "🟢 Active" / "❌ Disabled",
# "No Addons Configured." when the list is empty; names from go_node_engine/model/Node.go)
NE_ON = "Configured Addons:\n\t - image-builder: 🟢 Active\n\t - FLOps-learner: 🟢 Active\n"
NE_OFF = "Configured Addons:\n\t - image-builder: ❌ Disabled\n"
NE_NONE = "Configured Addons:\nNo Addons Configured.\n"
# a NodeEngine from before add-ons (conf.go without setAddonCmd): cobra finds no `addon`
# under `config`, which has no Run, and prints config's help
NE_UNKNOWN = """configure the node engine

Usage:
  NodeEngine config [command]

Available Commands:
  applogs     Configure the log directory for the applications
  cluster     set the cluster address (and port)
  default     generates the default configuration file
  network     Enable/Disable networking support
  unikernel   Enable/Disable unikernel support

Flags:
  -h, --help   help for config

Use "NodeEngine config [command] --help" for more information about a command.
"""


def by_step(outcomes) -> dict:
    return {o.step: o for o in outcomes}


def statuses(outcomes) -> dict[str, str]:
    return {o.step: o.status.value for o in outcomes}


# -- fresh nodes, prepared from scratch -------------------------------------------------------
def test_fresh_docker_node_plans_every_step_in_a_dry_run():
    s = FakeSession(recorded("fresh-docker-both"), dry=True)
    out = ops.prepare_host(s, BOTH, CTX)
    assert statuses(out) == {
        "preflight": "ok",
        "qemu": "changed",
        "buildx": "changed",
        "trust-docker": "changed",
        "builder": "changed",
        "trust-containerd": "changed",
        "trust-buildah": "changed",
        "nodeengine-imageBuilder": "warning",
        "data": "changed",
        "sidecar": "changed",
        # the recorded worker's docker0 is 172.18.0.1: learners dial 172.17.0.1
        "sidecar-caveat": "warning",
        "nodeengine-FLOps": "warning",
    }
    assert s.changes == []  # nothing ran
    # every package of both roles in one apt transaction
    assert s.plan[0] == "apt-get install qemu-user-static docker-buildx"
    assert not [p for p in s.plan[1:] if "apt-get" in p]
    assert any(p.startswith("set config_path in /etc/containerd/config.toml") for p in s.plan)
    assert all(o.detail.startswith("would change") for o in out if o.changed)


def test_fresh_docker_node_is_prepared_and_verified():
    s = FakeSession(
        recorded("fresh-docker-both"),
        after=recorded("prepared-docker-both"),
        results={"containerd": (0, "containers running before and after: 1\n")},
    )
    out = ops.prepare_host(s, BOTH, CTX)
    got = by_step(out)
    for step in (
        "qemu",
        "buildx",
        "trust-docker",
        "builder",
        "trust-containerd",
        "trust-buildah",
        "data",
        "sidecar",
    ):
        assert got[step].status is Status.CHANGED, got[step]
        assert "verified:" in got[step].detail
    assert "1 running containers kept running" in got["trust-containerd"].detail
    # a warning is a row of its own, never text in a row of another status
    assert "warning" not in got["sidecar"].detail
    assert got["sidecar-caveat"].status is Status.WARNING
    assert got["sidecar-caveat"].detail.startswith(
        "learners dial 172.17.0.1:11027, but docker0 is 172.18.0.1 on this host"
    )
    summaries = s.summaries()
    assert [sm for sm in summaries if "apt-get" in sm] == [
        "apt-get install qemu-user-static docker-buildx"
    ]
    assert "installed qemu-user-static" in got["qemu"].detail
    assert got["buildx"].detail.startswith("installed docker-buildx; verified:")
    # the config written is containerd's own file with config_path added
    config = next(c for sm, c in s.changes if sm.startswith("set config_path"))
    assert (
        'config_path = \\"/etc/containerd/certs.d\\"' in config
        or 'config_path = "/etc/containerd/certs.d"' in config
    )
    assert s.gathers == 4  # quick reads, full probes, the handler re-check in qemu, verify


def test_fresh_containerd_only_builder():
    s = FakeSession(
        recorded("fresh-containerd-builder"),
        after=recorded("prepared-containerd-builder"),
        results={"containerd": (0, "containers running before and after: 0\n")},
    )
    out = ops.prepare_host(s, BUILDER, CTX)
    assert statuses(out) == {
        "preflight": "ok",
        "qemu": "changed",
        "trust-containerd": "changed",
        "trust-buildah": "changed",
        "nodeengine-imageBuilder": "warning",
    }
    assert by_step(out)["preflight"].detail == "debian trixie amd64, containerd, root"
    assert not any("docker" in sm for sm in s.summaries())


@pytest.mark.parametrize(
    "name, roles", [("prepared-docker-both", BOTH), ("prepared-containerd-builder", BUILDER)]
)
def test_a_prepared_node_changes_nothing(name, roles):
    """Recordings of the full probes: the engine read of the quick probes is missing (as if
    it had not run), which never confirms a host: the full probes decide."""
    s = FakeSession(recorded(name))
    out = ops.prepare_host(s, roles, CTX)
    assert not [o for o in out if o.changed or o.bad], out
    assert s.changes == [] and s.gathers == 2


def test_quick_reads_that_fail_to_run_hand_the_host_to_the_full_probes():
    class Failing(FakeSession):
        def probes(self, probes, grouped=False):
            if grouped:
                self.gathers += 1
                raise ops.RemoteFailure("probes did not run (engine): sh: syntax error")
            return super().probes(probes)

    s = Failing(recorded("prepared-docker-both"))
    out = ops.prepare_host(s, BOTH, CTX)
    assert not [o for o in out if o.changed or o.bad], out
    assert s.gathers == 2


# -- the quick reads of a re-run (facts.quick_probes), recorded on prepared testbed workers ---
QUICK_REGISTRY = recorded_registry("prepared-docker-both-quick")
QUICK_CTX = ops.PrepContext(
    registry=QUICK_REGISTRY, learner_image=f"{QUICK_REGISTRY}/flops/ml-data-server:offline"
)


def quick(name: str = "prepared-docker-both-quick", **overrides: tuple[int, str]) -> dict:
    return recorded(name, **overrides)


def quick_facts(
    roles: set[str] = BOTH, name: str = "prepared-docker-both-quick", **overrides: tuple[int, str]
) -> ops.WorkerFacts:
    return ops.gather(
        FakeSession(quick(name, **overrides)), ops.probes_for(roles, QUICK_CTX, quick=True)
    )


@pytest.mark.parametrize(
    "name, roles",
    [("prepared-docker-both-quick", BOTH), ("prepared-containerd-builder-quick", BUILDER)],
)
def test_a_prepared_node_is_confirmed_by_the_quick_reads_alone(name, roles):
    s = FakeSession(quick(name))
    out = ops.prepare_host(s, roles, QUICK_CTX)
    assert not [o for o in out if o.changed or o.bad], out
    assert s.changes == [] and s.gathers == 1
    # no docker CLI, no buildx, no awk: only the engine read falls back to the CLI, where
    # the CLI would talk to another engine or perl is missing (its else branch)
    probes = dict(ops.probes_for(roles, QUICK_CTX, quick=True))
    probes["engine"] = probes["engine"].split("; else ")[0]
    assert "perl -e" in probes["engine"]
    for name, command in probes.items():
        for program in ("docker ", "awk", "ls "):
            assert program not in command, (name, program)


def test_the_quick_reads_say_what_they_read():
    got = by_step(ops.prepare_host(FakeSession(quick()), BOTH, QUICK_CTX))
    assert got["buildx"].detail == (
        "docker buildx plugin /usr/libexec/docker/cli-plugins/"
        "docker-buildx (docker-buildx 0.13.1+ds1-3)"
    )
    assert got["builder"].detail == (
        "builder flops-builder (docker driver): linux/amd64, linux/arm64"
    )
    assert got["sidecar"].detail == (
        "ml_data_server running, TCP 11027 answers on docker0 172.17.0.1"
    )
    assert got["trust-docker"].detail.startswith(f"docker trusts {QUICK_REGISTRY}")
    assert got["preflight"].detail == "debian trixie amd64, docker 26.1.5+dfsg1 + containerd, root"


def _engine(path: str, status: int, body: str) -> tuple[int, str]:
    """The recorded engine reads with one path answered differently."""
    reads = C.parse_engine_reads(quick()["engine"][1])
    reads[path] = (status, body)
    return 0, "\n".join(f"{C.API_MARK} {st} {p}\n{b}" for p, (st, b) in reads.items())


def _sidecar(**state: object) -> str:
    info = json.loads(C.parse_engine_reads(quick()["engine"][1])[C.container_path(C.SIDECAR)][1])
    info["State"] = {**info["State"], **state}
    return json.dumps(info)


BUILDX_INSTANCE = json.dumps(
    {
        "Name": "flops-builder",
        "Driver": "docker-container",
        "Dynamic": False,
        "Nodes": [
            {
                "Name": "flops-builder0",
                "Endpoint": "unix:///var/run/docker.sock",
                "Platforms": [
                    {"architecture": "amd64", "os": "linux"},
                    {"architecture": "arm64", "os": "linux"},
                ],
            }
        ],
    }
)


@pytest.mark.parametrize(
    "why, overrides, step",
    [
        ("the builder's context is gone", {"context_meta": (0, "@@flops-missing")}, "builder"),
        (
            "the context points elsewhere",
            {
                "context_meta": (
                    0,
                    json.dumps(
                        {
                            "Name": "flops-builder",
                            "Endpoints": {"docker": {"Host": "tcp://10.0.0.9:2375"}},
                        }
                    ),
                )
            },
            "builder",
        ),
        ("the QEMU handler is disabled", {"handler_aarch64": (0, "disabled\nflags: PF")}, "qemu"),
        ("the QEMU handler has no F flag", {"handler_aarch64": (0, "enabled\nflags: P")}, "qemu"),
        ("the QEMU handler is gone", {"handler_aarch64": (0, "@@flops-missing")}, "qemu"),
        ("buildx is gone", {"buildx_plugin": (1, "")}, "buildx"),
        (
            "the sidecar stopped",
            {
                "engine": _engine(
                    C.container_path(C.SIDECAR), 200, _sidecar(Running=False, Status="exited")
                )
            },
            "sidecar",
        ),
        (
            "the sidecar is gone",
            {
                "engine": _engine(
                    C.container_path(C.SIDECAR), 404, '{"message":"No such container"}'
                )
            },
            "sidecar",
        ),
        (
            "the volume is gone",
            {"engine": _engine(C.volume_path(C.DATA_VOLUME), 404, "{}")},
            "data",
        ),
        (
            "the port does not answer",
            {"engine": _engine("tcp:172.17.0.1:11027", 0, "refused")},
            "sidecar",
        ),
        ("docker0 has no address", {"engine": _engine("docker0", 200, "")}, "sidecar"),
    ],
)
def test_each_quick_read_sees_the_state_it_claims_to_detect(why, overrides, step):
    f = quick_facts(**overrides)
    check = next(st for st in ops.STEPS if st.name == step).check
    assert not check(f, QUICK_CTX)[0], why
    assert not ops.all_in_place(f, BOTH, QUICK_CTX)
    assert check(quick_facts(), QUICK_CTX)[0]


def test_a_host_the_quick_reads_do_not_confirm_gets_the_full_probes():
    """They alone decide: here the full probes find the sidecar in place, so nothing changes."""
    facts = quick(buildx_plugin=(1, ""))
    facts.update(recorded("prepared-docker-both"))
    s = FakeSession(facts)
    out = ops.prepare_host(s, BOTH, CTX)
    assert s.gathers == 2 and s.changes == [] and not [o for o in out if o.changed], out
    assert by_step(out)["buildx"].detail.startswith("github.com/docker/buildx")


def test_an_engine_that_does_not_answer_fails_preflight_on_the_full_probes():
    f = quick_facts(
        engine=(
            0,
            f"{C.API_MARK} 0 /info\nCannot connect to the Docker daemon "
            "at unix:///var/run/docker.sock: No such file or directory",
        )
    )
    assert not f.docker_running and f.docker_installed
    assert "Cannot connect to the Docker daemon" in f.docker_error
    assert not quick_facts(docker_cli=(1, "")).docker_running  # the engine, but no CLI


def test_a_docker_container_builder_is_read_from_buildx_and_its_container():
    running = json.dumps(
        {"Name": "/buildx_buildkit_flops-builder0", "State": {"Running": True, "Status": "running"}}
    )
    stopped = json.dumps(
        {"Name": "/buildx_buildkit_flops-builder0", "State": {"Running": False, "Status": "exited"}}
    )
    ctx = ops.PrepContext(
        registry=QUICK_REGISTRY,
        builder_driver="docker-container",
        learner_image=QUICK_CTX.learner_image,
    )
    toml = (0, '[registry."' + QUICK_REGISTRY + '"]\n  http = true\n  insecure = true\n')
    container = C.container_path("buildx_buildkit_flops-builder0")
    up = quick_facts(
        buildx_instance=(0, BUILDX_INSTANCE),
        buildkitd=toml,
        engine=_engine(container, 200, running),
    )
    assert ops.check_builder(up, ctx) == (
        True,
        "builder flops-builder (docker-container driver): linux/amd64, linux/arm64",
    )
    down = quick_facts(
        buildx_instance=(0, BUILDX_INSTANCE),
        buildkitd=toml,
        engine=_engine(container, 200, stopped),
    )
    assert not ops.check_builder(down, ctx)[0]
    gone = quick_facts(
        buildx_instance=(0, BUILDX_INSTANCE), buildkitd=toml, engine=_engine(container, 404, "{}")
    )
    assert not ops.check_builder(gone, ctx)[0]
    one = json.loads(BUILDX_INSTANCE)
    one["Nodes"][0]["Platforms"] = one["Nodes"][0]["Platforms"][:1]
    amd64_only = quick_facts(
        buildx_instance=(0, json.dumps(one)),
        buildkitd=toml,
        engine=_engine(container, 200, running),
    )
    assert ops.check_builder(amd64_only, ctx) == (False, "builder flops-builder lacks linux/arm64")


def test_a_learner_needs_docker_and_says_why():
    s = FakeSession(recorded("fresh-containerd-builder"))
    (row,) = ops.prepare_host(s, {"learner"}, CTX)
    assert row.step == "preflight" and row.bad
    assert "the Docker engine is not running (docker is not installed)" in row.detail
    assert "docker run" in row.detail and "apt-get install docker.io" in row.detail


# -- bad input: one line, nothing changed -------------------------------------------------------
@pytest.mark.parametrize(
    "override, needle",
    [
        ({"apt": (1, "")}, "no apt-get on debian trixie"),
        ({"binfmt_support": (1, "")}, "no binfmt_misc support"),
        ({"containerd": (1, "")}, "neither containerd nor the Docker engine runs"),
        ({"machine": (0, "riscv64")}, "unsupported architecture riscv64"),
    ],
)
def test_preflight_refusals(override, needle):
    s = FakeSession(recorded("fresh-containerd-builder", **override))
    out = ops.prepare_host(s, BUILDER, CTX)
    assert [o.step for o in out] == ["preflight"]
    assert out[0].bad and needle in out[0].detail and "\n" not in out[0].detail
    assert s.changes == [] and s.probed == []


MIRRORS = (
    'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n'
    '  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n'
    '    endpoint = ["https://mirror.local"]\n'
)


@pytest.mark.parametrize(
    "probe, text, step, needle",
    [
        ("containerd_config", MIRRORS, "trust-containerd", "registry mirrors"),
        # valid TOML of the wrong shape: was 'connect: AttributeError'
        ("containerd_config", "plugins = 5\n", "trust-containerd", "config.toml: plugins is"),
        ("daemon_json", '{"features": {', "trust-docker", "not valid JSON"),
        ("registries_conf", "[[registry]\n", "trust-buildah", "not valid TOML"),
        ("containerd_hosts", "server = \n", "trust-containerd", "not valid TOML"),
    ],
)
def test_host_files_that_forbid_a_change_leave_the_host_untouched(probe, text, step, needle):
    s = FakeSession(recorded("fresh-docker-both", **{probe: (0, text)}))
    out = ops.prepare_host(s, BOTH, CTX)
    bad = [o for o in out if o.bad]
    assert [o.step for o in bad] == [step]
    assert needle in bad[0].detail and bad[0].detail.endswith("nothing was changed on this host")
    assert s.changes == [] and s.probed == []
    assert not any(o.changed for o in out)


def test_doctor_reports_a_refusal_and_the_rest():
    s = FakeSession(recorded("prepared-docker-both", daemon_json=(0, "{")))
    out = ops.doctor_host(s, BOTH, CTX)
    got = by_step(out)
    assert got["trust-docker"].bad and "not valid JSON" in got["trust-docker"].detail
    assert got["sidecar"].status is Status.OK


# -- NodeEngine ------------------------------------------------------------------------------
@pytest.mark.parametrize("text, active", [(NE_ON, True), (NE_OFF, False), (NE_NONE, False)])
def test_nodeengine_on_and_off(text, active):
    s = FakeSession(
        recorded("prepared-containerd-builder", nodeengine=(0, text)),
        after=recorded("prepared-containerd-builder", nodeengine=(0, NE_ON)),
    )
    row = by_step(ops.prepare_host(s, BUILDER, CTX))["nodeengine-imageBuilder"]
    if active:
        assert row.status is Status.OK and s.changes == []
        return
    assert (
        row.status is Status.CHANGED
        and "verified: NodeEngine add-on imageBuilder active" in row.detail
    )
    assert s.changes[0] == (
        "NodeEngine config addon imageBuilder on",
        "NodeEngine config addon imageBuilder on",
    )
    assert s.changes[1][1] == C.restart_nodeengine()


def test_nodeengine_that_stays_off_fails_verification():
    s = FakeSession(recorded("prepared-containerd-builder", nodeengine=(0, NE_OFF)))
    row = by_step(ops.prepare_host(s, BUILDER, CTX))["nodeengine-imageBuilder"]
    assert row.bad and "still not right" in row.detail


def test_nodeengine_unknown_listing_is_refused():
    s = FakeSession(recorded("prepared-containerd-builder", nodeengine=(0, NE_UNKNOWN)))
    out = ops.prepare_host(s, BUILDER, CTX)
    row = by_step(out)["nodeengine-imageBuilder"]
    assert row.bad and "lists no add-ons (configure the node engine / Usage:)" in row.detail
    assert s.changes == []


def test_learner_addon_is_flops():
    facts = recorded("prepared-docker-both", nodeengine=(0, NE_OFF))
    s = FakeSession(facts, after=dict(facts, nodeengine=(0, NE_ON)))
    got = by_step(ops.prepare_host(s, BOTH, CTX))
    assert got["nodeengine-FLOps"].changed and got["nodeengine-imageBuilder"].changed
    assert ("NodeEngine config addon FLOps on", "NodeEngine config addon FLOps on") in s.changes


def test_without_nodeengine_prepare_and_doctor_warn_and_do_not_fail():
    s = FakeSession(recorded("prepared-docker-both"))
    for out in (ops.prepare_host(s, BOTH, CTX), ops.doctor_host(s, BOTH, CTX)):
        warned = [o for o in out if o.warning and o.step.startswith("nodeengine")]
        assert [o.step for o in warned] == ["nodeengine-imageBuilder", "nodeengine-FLOps"]
        for o in warned:
            assert (
                o.detail
                == "NodeEngine not found: add-on not enabled (install NodeEngine, then re-run)"
            )
            # the install command is the row's fix, printed on a line of its own
            assert o.fix == (
                "curl -sfL https://raw.githubusercontent.com/oakestra/oakestra/develop/"
                "scripts/InstallOakestraWorker.sh | sh -"
            )
        assert not any(o.bad for o in out)


# -- arm64 nodes: the foreign platform is amd64 -------------------------------------------
# Recorded in an arm64 Debian bookworm container (debootstrap --arch=arm64, run under QEMU on
# an amd64 machine, docker.io + containerd + qemu-user-static installed). What the amd64
# kernel underneath and the unprivileged container made untrue of a real arm64 node is set
# here: binfmt_misc mounted, qemu-x86_64 registered as binfmt-support registers this image's
# /usr/share/binfmts/qemu-x86_64 (fix_binary yes, preserve yes: flags PF), dockerd running.
HANDLER_X86_64 = (
    "enabled\ninterpreter /usr/libexec/qemu-binfmt/x86_64-binfmt-P\nflags: PF\n"
    "offset 0\nmagic 7f454c4602010100000000000000000002003e00\n"
    "mask fffffffffffefefcfffffffffffffffffeffffff"
)


def arm64(**overrides):
    docker = recorded("prepared-docker-both")["docker"]
    return recorded(
        "arm64-debian-builder",
        docker=docker,
        containerd=(0, ""),
        binfmt_mounted=(0, ""),
        **overrides,
    )


def test_arm64_node_checks_the_x86_64_handler_and_runs_the_amd64_probe():
    f = ops.gather(FakeSession(arm64()), ops.probes_for(BUILDER, CTX))
    assert f.foreign == "x86_64"
    ok, detail = ops.check_qemu(f, CTX)
    assert not ok and detail == "qemu-x86_64 handler not registered"
    ok, detail = ops.check_qemu(
        ops.gather(
            FakeSession(arm64(handler_x86_64=(0, HANDLER_X86_64))), ops.probes_for(BUILDER, CTX)
        ),
        CTX,
    )
    assert ok and detail.startswith("qemu-user-static installed; qemu-x86_64 flags PF")
    # the run probe of the foreign machine is the amd64 program
    probes = dict(ops.probes_for(BUILDER, CTX))
    assert UNAME_AMD64_B64 in probes["run_x86_64"] and UNAME_ARM64_B64 in probes["run_aarch64"]


def test_arm64_debian_node_through_every_builder_step():
    s = FakeSession(arm64(), dry=True)
    out = ops.prepare_host(s, BUILDER, CTX)
    assert by_step(out)["preflight"].detail.startswith("debian bookworm arm64, docker ")
    assert statuses(out)["qemu"] == "changed"
    assert "register the qemu-x86_64 binfmt handler" in s.plan
    assert "apt-get install qemu-user-static" not in s.plan  # already installed
    assert "apt-get install docker-buildx" in s.plan  # Debian's name


def test_arm64_ubuntu_node_with_dockers_repository_gets_docker_buildx_plugin():
    packages = "docker-ce install ok installed\nqemu-user-static install ok installed\n"
    s = FakeSession(
        arm64(os=(0, "ubuntu noble"), packages=(0, packages), handler_x86_64=(0, HANDLER_X86_64))
    )
    ops.prepare_host(s, BUILDER, CTX)
    assert (
        "apt-get install docker-buildx-plugin",
        C.apt_install(["docker-buildx-plugin"]),
    ) in s.changes


def test_register_command_names_the_foreign_handler():
    assert "qemu-x86_64" in C.register_binfmt("x86_64")


# -- the push checks ------------------------------------------------------------------------
BUILDAH_OUT = (
    "storage-driver: vfs; ulimits: kept at the hard limits\n"
    '[linux/amd64] STEP 4/4: RUN ["/uname"]\nx86_64\n'
    '[linux/arm64] STEP 4/4: RUN ["/uname"]\naarch64\nWriting manifest list\n'
)
BUILDX_OUT = "#7 0.200 x86_64\n#8 0.228 aarch64\n#9 pushing manifest done\n"


@pytest.fixture
def registry_index(monkeypatch):
    seen = []

    def fake(registry, repo, tag):
        seen.append((registry, repo, tag))
        return ["linux/amd64", "linux/arm64"]

    monkeypatch.setattr(ops, "manifest_platforms", fake)
    return seen


def test_push_check_on_a_docker_builder_runs_both_paths(registry_index):
    ctx = ops.PrepContext(registry=REGISTRY, push_check=True)
    s = FakeSession(
        recorded("prepared-docker-both"),
        results={
            "apt-get install buildah netavark": (
                0,
                "installed buildah\ninstalled netavark\ninstalled uidmap\n",
            ),
            "buildah build": (0, BUILDAH_OUT),
            "docker buildx build": (0, BUILDX_OUT),
        },
    )
    got = by_step(ops.prepare_host(s, BUILDER, ctx))
    # installing the check's tools changed the host; the buildx check changed nothing
    assert got["push"].status is Status.CHANGED and got["push-buildx"].status is Status.OK
    assert (
        "buildah (FLOps' image builder path; storage vfs; ulimits: kept at the hard "
        "limits)" in got["push"].detail
    )
    assert (
        "installed for the check: buildah, netavark, uidmap (remove: inv prepare-builder "
        "--remove-check-tools --host w1)" in got["push"].detail
    )
    assert [r[1] for r in registry_index] == [
        "flops-tasks/builder-probe-w1-buildah",
        "flops-tasks/builder-probe-w1-buildx",
    ]
    build = next(c for sm, c in s.checks if sm.startswith("buildah build"))
    assert (
        "--platform linux/amd64 --platform linux/arm64 --isolation=chroot "
        "--tls-verify=false --manifest" in build
    )
    assert "manifest push --tls-verify=false --all" in build


def test_push_check_on_a_containerd_builder_is_buildah_only(registry_index):
    ctx = ops.PrepContext(registry=REGISTRY, push_check=True)
    s = FakeSession(
        recorded("prepared-containerd-builder"), results={"buildah build": (0, BUILDAH_OUT)}
    )
    out = ops.prepare_host(s, BUILDER, ctx)
    assert "push-buildx" not in by_step(out) and by_step(out)["push"].status is Status.OK


def test_push_check_fails_when_the_foreign_step_did_not_run(registry_index):
    ctx = ops.PrepContext(registry=REGISTRY, push_check=True)
    s = FakeSession(
        recorded("prepared-containerd-builder"),
        results={"buildah build": (0, "storage-driver: overlay\nx86_64\n")},
    )
    row = by_step(ops.prepare_host(s, BUILDER, ctx))["push"]
    assert row.bad and "printed no aarch64 line" in row.detail


def test_push_check_finds_a_machine_line_that_landed_inside_another(registry_index):
    """buildah's two platform builds share one output: the foreign program's line once came
    glued to a line of the other build, and the check called the RUN step not run."""
    ctx = ops.PrepContext(registry=REGISTRY, push_check=True)
    glued = (
        "storage-driver: vfs\n"
        '[linux/amd64] STEP 4/4: RUN ["/uname"]\nx86_64\n'
        '[linux/arm64] STEP 4/4: RUN ["/uname"]\n[linux/amd64] --> 3f2aaarch64\n'
        "Writing manifest list\n"
    )
    s = FakeSession(recorded("prepared-containerd-builder"), results={"buildah build": (0, glued)})
    assert by_step(ops.prepare_host(s, BUILDER, ctx))["push"].status is Status.OK


def test_push_check_fails_when_the_index_lacks_a_platform(monkeypatch):
    monkeypatch.setattr(ops, "manifest_platforms", lambda *a: ["linux/amd64"])
    ctx = ops.PrepContext(registry=REGISTRY, push_check=True)
    s = FakeSession(
        recorded("prepared-containerd-builder"), results={"buildah build": (0, BUILDAH_OUT)}
    )
    row = by_step(ops.prepare_host(s, BUILDER, ctx))["push"]
    assert row.bad and "lacks linux/arm64" in row.detail


def test_push_check_is_only_planned_in_a_dry_run(registry_index):
    ctx = ops.PrepContext(registry=REGISTRY, push_check=True)
    s = FakeSession(recorded("prepared-docker-both"), dry=True)
    got = by_step(ops.prepare_host(s, BUILDER, ctx))
    # installing the tools is a change the real run makes too; the checks write to the
    # registry and are not run in a dry run
    assert got["push"].changed and got["push"].detail.startswith(
        "would install buildah, netavark for the check"
    )
    assert got["push-buildx"].status is Status.SKIPPED
    assert s.changes == [] and registry_index == [] and s.checks == []
    assert [p.split(" ")[0:2] for p in s.plan] == [["apt-get", "install"]]


def test_remove_check_tools():
    s = FakeSession(
        {},
        probe_out={
            "check-tools.list": "listed buildah\nlisted netavark\n"
            "Purg buildah [1.39]\nPurg netavark\n"
        },
    )
    (row,) = ops.remove_check_tools(s)
    assert row.changed and row.detail == "removed buildah, netavark"
    assert s.changes == [
        ("apt-get purge buildah netavark", C.remove_check_tools(["buildah", "netavark"]))
    ]
    s = FakeSession({}, probe_out={"check-tools.list": "listed uidmap\nPurg uidmap\nPurg podman\n"})
    (row,) = ops.remove_check_tools(s)
    assert row.bad and "would also remove podman" in row.detail and s.changes == []
    (row,) = ops.remove_check_tools(FakeSession({}))
    assert row.status is Status.OK


# -- IPv6 registries --------------------------------------------------------------------
def test_ipv6_registry_is_bracketed_in_what_a_preparation_writes():
    registry = host_port("fd00::1", 5073)
    assert registry == "[fd00::1]:5073"
    ctx = ops.PrepContext(registry=registry, learner_image="img")
    s = FakeSession(recorded("fresh-docker-both"), dry=False)
    ops.prepare_host(s, BOTH, ctx)
    written = {sm: c for sm, c in s.changes}
    assert "write /etc/containerd/certs.d/[fd00::1]:5073/hosts.toml" in written
    daemon = next(c for sm, c in s.changes if "daemon.json" in sm)
    assert '"[fd00::1]:5073"' in daemon and "fd00::1:5073" not in daemon.replace(
        "[fd00::1]:5073", ""
    )
    hosts = tomllib.loads(ops.trust.hosts_toml(None, registry))
    assert hosts["server"] == "http://[fd00::1]:5073"


def test_registry_host_brackets_ipv6_from_config(ctx_factory):
    """The registry's host:port as every trust file and image name uses it."""
    from flops_tasks import env as envmod
    from flops_tasks.config import settings

    s = settings(
        ctx_factory(
            {
                "addresses": {
                    v: "fd00::1"
                    for v in (
                        "system_manager_ip",
                        "flops_manager_ip",
                        "flops_mqtt_broker_ip",
                        "flops_image_registry_ip",
                        "artifact_store_ip",
                        "backend_store_ip",
                    )
                }
            }
        )
    )
    assert envmod.registry_host(s, envmod.resolve_addresses(s)) == "[fd00::1]:5073"


def test_json_of_a_report_with_warnings_stays_compatible():
    from flops_tasks.outcome import Report

    s = FakeSession(recorded("prepared-containerd-builder"))
    report = Report("prepare-builder", ops.prepare_host(s, BUILDER, CTX))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True and data["hosts"]["w1"]["status"] == "ok"
    assert data["hosts"]["w1"]["warnings"] == 1 and len(data["warnings"]) == 1
    assert report.exit_code == 0


def test_a_moved_registry_is_trusted_and_the_former_one_dropped():
    """The node was prepared for REGISTRY; the registry now runs elsewhere."""
    from flops_tasks.facts import MISSING

    new = "192.0.2.77:5073"
    ctx = ops.PrepContext(
        registry=new, forget=(REGISTRY,), learner_image=f"{new}/flops/ml-data-server:offline"
    )
    facts = recorded("prepared-docker-both")
    facts[f"containerd_hosts {REGISTRY}"] = facts["containerd_hosts"]  # ours, for the old one
    facts["containerd_hosts"] = (0, MISSING + "\n")  # none yet for the new one
    probes = dict(ops.probes_for(BOTH, ctx))
    assert probes[f"containerd_hosts {REGISTRY}"] == C.cat_or_mark(
        C.hosts_toml_path(REGISTRY), MISSING
    )
    s = FakeSession(facts, dry=True)
    out = by_step(ops.prepare_host(s, BOTH, ctx))
    for step in ("trust-docker", "trust-containerd", "trust-buildah"):
        assert out[step].status is Status.CHANGED, out[step]
    plan = "\n".join(s.plan)
    assert (
        f"add {new} to /etc/docker/daemon.json insecure-registries, drop former {REGISTRY}" in plan
    )
    assert f"remove /etc/containerd/certs.d/{REGISTRY}/hosts.toml (a former registry)" in plan
    # with the new registry trusted, doctor still names the former one left behind
    from flops_tasks import trust

    half = {**facts, "containerd_hosts": (0, trust.hosts_toml(None, new).strip())}
    d = by_step(ops.doctor_host(FakeSession(half), BOTH, ctx))
    assert d["trust-containerd"].bad
    assert f"containerd still trusts a former registry ({REGISTRY})" in d["trust-containerd"].detail
    # what is written: the new registry, the old one gone
    s = FakeSession(facts)
    ops.prepare_host(s, BOTH, ctx)
    written = {summary: command for summary, command in s.changes}
    daemon = next(c for sm, c in written.items() if sm.startswith("add "))
    assert new in daemon and f'"{REGISTRY}"' not in daemon
    conf = next(c for sm, c in written.items() if C.REGISTRIES_CONF in sm)
    assert new in conf and REGISTRY not in conf
    removal = next(c for sm, c in written.items() if sm.startswith("remove "))
    assert removal == C.remove_registry_hosts(REGISTRY)


def test_the_push_checks_installed_packages_come_from_dpkg_not_apts_output(registry_index):
    """apt's stdout is progress ("Selecting previously unselected package ...", "(Reading
    database ... 5%"): the packages the check installed are dpkg's state before and after,
    printed as ``installed PKG`` lines; nothing of apt's chatter reaches the row."""
    chatter = (Path(__file__).parent / "recorded" / "apt-install.stdout").read_text()
    ctx = ops.PrepContext(registry=REGISTRY, push_check=True)
    s = FakeSession(
        recorded("prepared-containerd-builder"),
        results={
            "apt-get install buildah netavark": (
                0,
                chatter + "installed buildah\ninstalled netavark\ninstalled uidmap\n",
            ),
            "buildah build": (0, BUILDAH_OUT),
        },
    )
    row = by_step(ops.prepare_host(s, BUILDER, ctx))["push"]
    assert "installed for the check: buildah, netavark, uidmap (remove:" in row.detail
    assert "Selecting" not in row.detail and "Reading" not in row.detail
    assert C.parse_installed(chatter) == []
    # apt itself writes to stderr: stdout carries only the ``installed`` lines
    command = C.install_check_tools(["buildah", "netavark"])
    assert f"{{ {C.apt_install(['buildah', 'netavark'])}; }} >&2" in command


@pytest.mark.parametrize(
    "fresh, after, roles",
    [
        ("fresh-docker-both", "prepared-docker-both", BOTH),
        ("fresh-containerd-builder", "prepared-containerd-builder", BUILDER),
    ],
)
def test_a_dry_run_plans_exactly_the_steps_the_real_run_changes(fresh, after, roles):
    """Dry and real runs on the same recorded node: the same steps change, and each changed
    row has its recorded change (and each recorded change its changed row)."""
    results = {"containerd": (0, "containers running before and after: 1\n")}
    dry = FakeSession(recorded(fresh), dry=True)
    real = FakeSession(recorded(fresh), after=recorded(after), results=results)
    rows = {}
    for name, s in (("dry", dry), ("real", real)):
        out = ops.prepare_host(s, roles, CTX)
        changed_steps = {o.step for o in out if o.changed}
        assert changed_steps == {c.step for c in s.log.entries()}, name
        rows[name] = changed_steps
    assert rows["dry"] == rows["real"] and rows["dry"]
