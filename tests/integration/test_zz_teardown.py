"""Runs last (file order): testbed.down removes exactly what carries the testbed label."""

from __future__ import annotations

import pytest

from flops_tasks import testbed as tb

from .helpers import inv

pytestmark = pytest.mark.integration


def test_testbed_down_leaves_no_labelled_object(testbed):
    from python_on_whales import docker

    # something of the user's, unlabelled, next to the testbed: it must survive
    keep = docker.volume.create(labels={"org.example.keep": "1"})
    try:
        res = inv("testbed.down", "--json", testbed=False)
        assert res.returncode == 0, res.stdout + res.stderr
        assert tb.labelled() == {"containers": [], "volumes": [], "networks": [], "images": []}
        assert not tb.default_paths().root.exists()
        assert docker.volume.exists(keep.name)
    finally:
        docker.volume.remove(keep)
