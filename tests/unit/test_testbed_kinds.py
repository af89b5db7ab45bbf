"""Testbed worker kinds: which image, which volumes, which inventory roles."""

from __future__ import annotations

from pathlib import Path

import pytest

from flops_tasks import testbed as tb
from flops_tasks.errors import FlopsError
from flops_tasks.workflows import testbed as testbed_flow


def test_kinds_are_given_per_worker_and_the_last_repeats():
    assert tb.worker_kinds(3, None) == ["docker"] * 3
    assert tb.worker_kinds(3, ["containerd"]) == ["containerd"] * 3
    assert tb.worker_kinds(3, ["docker", "containerd"]) == ["docker", "containerd", "containerd"]


def test_a_containerd_worker_is_only_a_builder():
    paths = tb.Paths(Path("/tmp/tb"))
    config = tb.testbed_config(
        paths,
        [
            ("flops-testbed-w1", "10.0.0.2", "docker"),
            ("flops-testbed-w2", "10.0.0.3", "containerd"),
        ],
        "10.0.0.1",
    )
    inventory = config["flops"]["inventory"]
    assert inventory["w1"]["roles"] == ["builder", "learner"]
    assert inventory["w2"]["roles"] == ["builder"]
    assert tb.KINDS["containerd"][0] == tb.CONTAINERD_WORKER_IMAGE
    assert tb.KINDS["containerd"][1] == ("containerd",)  # no Docker store


@pytest.mark.parametrize(
    "value, kinds",
    [(None, None), ("docker", ["docker"]), ("docker, containerd", ["docker", "containerd"])],
)
def test_kind_flag(value, kinds):
    assert testbed_flow.kinds(value) == kinds


@pytest.mark.parametrize("value", ["podman", "", "docker,,containerd", "Docker"])
def test_bad_kind_is_one_line(value):
    with pytest.raises(FlopsError) as exc:
        testbed_flow.kinds(value)
    assert exc.value.code == 2 and "--kind must be docker or containerd" in exc.value.message
