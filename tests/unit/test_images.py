"""clear-images' logic: which images go, which stay (and why), per store and host.

Probe outputs below have the real formats: ``docker image ls --no-trunc --format
'{{.Repository}}:{{.Tag}} {{.ID}}'``, ``docker container inspect --format '{{.Name}}
{{.Config.Image}} {{.Image}}'`` and ctr's ``images ls -q`` / ``containers ls`` / ``tasks ls``
tables (headers as ctr 1.6/1.7 print them).
"""

from __future__ import annotations

import shlex

import pytest

from flops_tasks import commands as C
from flops_tasks import images as I
from flops_tasks.outcome import Status
from flops_tasks.ssh import RemoteFailure

REG = "10.0.0.2:5073"
GH = "ghcr.io/oakestra/addon-flops/"
ID_A, ID_B, ID_C, ID_D = (f"sha256:{c * 64}" for c in "abcd")


def docker_output(images: list[tuple[str, str]], running: list[tuple[str, str, str]]) -> str:
    lines = [f"{ref} {image_id}" for ref, image_id in images] + [C.SECTION_MARK]
    lines += [f"/{name} {ref} {image_id}" for name, ref, image_id in running]
    return "\n".join(lines)


def ctr_output(
    refs: list[str], containers: list[tuple[str, str]], tasks: list[tuple[str, str]]
) -> str:
    lines = [
        *refs,
        C.SECTION_MARK,
        "CONTAINER                IMAGE                                       RUNTIME",
    ]
    lines += [f"{cid}    {image}    io.containerd.runc.v2" for cid, image in containers]
    lines += [C.SECTION_MARK, "TASK                     PID      STATUS"]
    lines += [f"{cid}    4242    {status}" for cid, status in tasks]
    return "\n".join(lines)


@pytest.mark.parametrize(
    "ref, upstream, why",
    [
        (f"{REG}/flops/learner:latest", True, "FLOps registry"),
        (f"{REG}/flops/learner:latest", False, "FLOps registry"),
        (f"{GH}image-builder:latest", True, "FLOps upstream"),
        (f"{GH}ml-data-server:latest", True, "FLOps upstream"),
        (f"{GH}tracking-server@sha256:{'e' * 64}", True, "FLOps upstream"),
        (f"{GH}image-builder:latest", False, None),
        (f"{GH}baseimage-mnist-sklearn:latest", True, None),  # built inside buildah, not pulled
        ("10.0.0.20:5073/flops/learner:latest", True, None),  # another registry
        (f"{REG}x/flops:1", True, None),
        ("docker.io/library/nginx:latest", True, None),
    ],
)
def test_which_images_are_ours(ref, upstream, why):
    assert I.wanted(ref, REG, upstream) == why


def test_docker_images_in_use_are_kept_with_their_container():
    out = docker_output(
        images=[
            (f"{GH}image-builder:latest", ID_A),
            (f"{GH}tracking-server:latest", ID_B),
            (f"{GH}ml-data-server:latest", ID_C),
            (f"{REG}/flops/learner:1", ID_D),
            ("nginx:latest", ID_A),
            ("<none>:<none>", ID_D),
        ],
        running=[
            ("ml_data_server", f"{GH}ml-data-server:latest", ID_C),
            ("by-id", ID_B, ID_B),
            ("web", "nginx:latest", ID_A),
        ],
    )
    store = I.parse_docker(0, out, REG, upstream=True)
    assert store.remove == (f"{REG}/flops/learner:1",)
    # image-builder shares its image id with the running nginx: in use, kept
    assert store.kept == (
        (f"{GH}image-builder:latest", "web"),
        (f"{GH}ml-data-server:latest", "ml_data_server"),
        (f"{GH}tracking-server:latest", "by-id"),
    )


def test_registry_only_leaves_upstream_images_alone():
    out = docker_output([(f"{GH}image-builder:latest", ID_A), (f"{REG}/flops/a:1", ID_B)], [])
    assert I.parse_docker(0, out, REG, upstream=False).remove == (f"{REG}/flops/a:1",)
    assert I.parse_docker(0, out, REG, upstream=True).remove == (
        f"{REG}/flops/a:1",
        f"{GH}image-builder:latest",
    )


def test_ctr_running_tasks_keep_their_images_stopped_ones_do_not():
    out = ctr_output(
        refs=[
            f"{GH}project-observer:latest",
            f"{GH}image-builder:latest",
            f"{GH}mock-data-provider:latest",
            f"{REG}/flops/aggr:1",
            "docker.io/x/y:1",
        ],
        containers=[
            ("observer.observatory.observ1", f"{GH}project-observer:latest"),
            ("builder.proj.builder1", f"{GH}image-builder:latest"),
            ("unrelated", "docker.io/x/y:1"),
        ],
        tasks=[
            ("observer.observatory.observ1", "RUNNING"),
            ("builder.proj.builder1", "STOPPED"),
            ("unrelated", "RUNNING"),
        ],
    )
    store = I.parse_ctr("oakestra", 0, out, REG, upstream=True)
    assert store.name == "containerd:oakestra"
    assert store.remove == (
        f"{REG}/flops/aggr:1",
        f"{GH}image-builder:latest",
        f"{GH}mock-data-provider:latest",
    )
    assert store.kept == ((f"{GH}project-observer:latest", "observer.observatory.observ1"),)


@pytest.mark.parametrize(
    "parse, rc, out, needle",
    [
        (
            lambda rc, out: I.parse_docker(rc, out, REG, True),
            0,
            f"{C.MISSING_MARK} docker",
            "no docker on this host: Docker images not checked",
        ),
        (
            lambda rc, out: I.parse_docker(rc, out, REG, True),
            1,
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock",
            "docker does not answer (Cannot connect to the Docker daemon",
        ),
        (
            lambda rc, out: I.parse_ctr("default", rc, out, REG, True),
            0,
            f"{C.MISSING_MARK} ctr",
            "no ctr on this host: containerd images not checked",
        ),
        (
            lambda rc, out: I.parse_ctr("oakestra", rc, out, REG, True),
            1,
            'ctr: failed to dial "/run/containerd/containerd.sock": context deadline exceeded',
            "ctr does not answer (ctr: failed to dial",
        ),
    ],
    ids=["no-docker", "docker-down", "no-ctr", "containerd-down"],
)
def test_a_store_that_is_not_there_is_a_note_not_an_error(parse, rc, out, needle):
    store = parse(rc, out)
    assert not store.available and store.remove == () and needle in store.note


class FakeSession:
    """Answers the listing probes from a model of the stores; applies the removal builders."""

    def __init__(self, docker, running, ctr, dry=False, broken_rm=False):
        self.label, self.dry, self.plan = "w1", dry, []
        self.docker, self.running, self.ctr = (
            dict(docker),
            running,
            {k: list(v) for k, v in ctr.items()},
        )
        self.broken_rm = broken_rm
        self.changes = []

    def probes(self, probes):
        assert [name for name, _ in probes] == [
            "docker",
            "containerd:default",
            "containerd:oakestra",
        ]
        assert probes[0][1] == C.docker_images_state()
        found = {"docker": (0, docker_output(list(self.docker.items()), self.running))}
        for ns in I.NAMESPACES:
            assert dict(probes)[f"containerd:{ns}"] == C.ctr_images_state(ns)
            found[f"containerd:{ns}"] = (0, ctr_output(self.ctr.get(ns, []), [], []))
        return found

    def change(self, command, summary):
        self.changes.append(command)
        if self.dry:
            self.plan.append(summary)
            return
        if self.broken_rm:
            return
        argv = shlex.split(command)
        if argv[:4] == ["docker", "image", "rm", "-f"]:
            for ref in argv[4:]:
                del self.docker[ref]
        elif argv[0] == "ctr" and argv[3:5] == ["images", "rm"]:
            self.ctr[argv[2]] = [r for r in self.ctr[argv[2]] if r not in argv[5:]]
        else:
            raise AssertionError(command)


def session(**kw):
    return FakeSession(
        docker={
            f"{GH}image-builder:latest": ID_A,
            f"{GH}ml-data-server:latest": ID_C,
            "nginx:latest": ID_B,
        },
        running=[("ml_data_server", f"{GH}ml-data-server:latest", ID_C)],
        ctr={"oakestra": [f"{GH}tracking-server:latest", f"{REG}/flops/l:1"]},
        **kw,
    )


def test_remove_then_verify_reports_removed_and_kept_per_host():
    s = session()
    listing = I.list_images(s, REG)
    assert listing.deletes() == [
        f"w1: {GH}image-builder:latest (docker)",
        f"w1: {REG}/flops/l:1 (containerd:oakestra)",
        f"w1: {GH}tracking-server:latest (containerd:oakestra)",
    ]
    outcomes = I.remove_images(s, listing)
    assert s.changes == [
        C.remove_images_docker([f"{GH}image-builder:latest"]),
        C.remove_images_ctr("oakestra", [f"{REG}/flops/l:1", f"{GH}tracking-server:latest"]),
    ]
    first, kept = outcomes
    assert first.status is Status.CHANGED and first.detail.startswith("removed 3 images: ")
    assert kept.step == "kept" and kept.status is Status.OK
    assert kept.detail == (
        f"{GH}ml-data-server:latest (docker): in use by running container ml_data_server"
    )
    again = I.remove_images(s, I.list_images(s, REG))
    assert [o.status for o in again] == [Status.OK, Status.OK]
    assert again[0].detail.startswith("no unused images from 10.0.0.2:5073 or ghcr.io/")


def test_dry_run_plans_and_removes_nothing():
    s = session(dry=True)
    outcomes = I.remove_images(s, I.list_images(s, REG))
    assert outcomes[0].status is Status.CHANGED and outcomes[0].detail.startswith(
        "would remove 3 images"
    )
    assert s.docker[f"{GH}image-builder:latest"] == ID_A
    assert len(s.plan) == 2


def test_images_still_there_after_removal_fail_the_host():
    s = session(broken_rm=True)
    with pytest.raises(RemoteFailure, match="3 images still there after removal"):
        I.remove_images(s, I.list_images(s, REG))


def test_one_image_is_one_image():
    s = FakeSession(docker={f"{GH}image-builder:latest": ID_A}, running=[], ctr={})
    (row,) = I.remove_images(s, I.list_images(s, REG))
    assert row.detail == f"removed 1 image: docker: {GH}image-builder:latest"
