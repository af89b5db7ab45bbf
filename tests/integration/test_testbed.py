"""The offline testbed: workers as containers with sshd + dockerd, reached over real SSH."""

from __future__ import annotations

import pytest

from flops_tasks import commands
from flops_tasks import testbed as tb
from flops_tasks.config import settings
from flops_tasks.probe_binaries import UNAME_AMD64_B64
from flops_tasks.ssh import HostSession, HostUnreachable

from .helpers import in_worker, worker

pytestmark = pytest.mark.integration


def test_workers_answer_ssh_with_the_pinned_key(tb_ctx):
    s = settings(tb_ctx)
    assert [t.name for t in s.inventory] == ["w1", "w2"]
    assert s.ssh.host_keys == "strict"
    for target in s.inventory:
        session = HostSession(target, s.ssh)
        try:
            res = session.probe("hostname")
        finally:
            session.close()
        assert res.ok and res.stdout.strip() == f"flops-testbed-{target.name}"


def test_workers_refuse_when_the_key_is_not_pinned(tb_ctx, tmp_path):
    from dataclasses import replace

    s = settings(tb_ctx)
    unpinned = replace(s.ssh, known_hosts=str(tmp_path / "empty_known_hosts"))
    session = HostSession(s.inventory[0], unpinned)
    with pytest.raises(HostUnreachable, match="is not in"):
        session.probe("true")


def test_each_worker_runs_a_nested_container(testbed):
    # nothing can be pulled: build FROM scratch around a static program inside the worker
    for i in (1, 2):
        out = in_worker(
            worker(i),
            (
                "d=$(mktemp -d) && cd $d && "
                f"printf '%s' {commands.q(UNAME_AMD64_B64)} | base64 -d > uname && "
                "chmod 755 uname && "
                "printf 'FROM scratch\\nCOPY uname /uname\\nENTRYPOINT [\"/uname\"]\\n' "
                "> Dockerfile && "
                "docker build -q -t nested-probe:1 . >/dev/null 2>&1 && "
                "docker run --rm nested-probe:1 && docker rmi -f nested-probe:1 >/dev/null"
            ),
        )
        assert out.stdout.strip() == "x86_64"


def test_every_object_carries_the_label(testbed):
    objects = tb.labelled()
    assert {"flops-testbed-w1", "flops-testbed-w2"} <= set(objects["containers"])
    assert "flops-testbed" in objects["networks"]
    assert any(v.startswith("flops-testbed-w1-") for v in objects["volumes"])
    assert any(v.startswith("flops_testbed_") for v in objects["volumes"])
    assert "flops-testbed/worker:1" in objects["images"]


def test_second_up_reuses_what_runs(testbed):
    from python_on_whales import docker

    first = tb.up(workers=2)
    before = {c.name: c.id for c in docker.container.list(filters=[tb.OWNED])}
    second = tb.up(workers=2)
    after = {c.name: c.id for c in docker.container.list(filters=[tb.OWNED])}
    assert before == after
    assert second["workers"] == first["workers"]
