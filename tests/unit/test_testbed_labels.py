"""The testbed label carries the checkout's own value, so two checkouts never collide."""

from __future__ import annotations

from pathlib import Path

import pytest

from flops_tasks import testbed as tb
from flops_tasks.errors import FlopsError
from flops_tasks.stack.services import SERVICES, VOLUMES


def test_each_checkout_has_its_own_label_value():
    assert tb.checkout_id(Path("/a/flops-tasks")) != tb.checkout_id(Path("/b/flops-tasks"))
    assert tb.checkout_id(Path("/a/flops-tasks")) == tb.checkout_id(Path("/a/flops-tasks"))
    assert tb.OWNED == ("label", f"{tb.LABEL}={tb.TESTBED_ID}")
    assert tb.mark(x="1") == {tb.LABEL: tb.TESTBED_ID, "x": "1"}


def test_the_stack_override_labels_every_service_image_and_volume():
    over = tb.labels_override()
    assert set(over["services"]) == set(SERVICES)
    for svc in SERVICES:
        assert over["services"][svc]["labels"] == {tb.LABEL: tb.TESTBED_ID}
        assert over["services"][svc]["build"]["labels"] == {tb.LABEL: tb.TESTBED_ID}
    assert {v: d["labels"][tb.LABEL] for v, d in over["volumes"].items()} == {
        v: tb.TESTBED_ID for v in VOLUMES
    }


def test_the_testbed_config_layers_the_label_override(tmp_path):
    paths = tb.Paths(tmp_path)
    config = tb.testbed_config(paths, [("flops-testbed-w1", "10.0.0.2", "docker")], "10.0.0.1")
    assert config["flops"]["stack"]["overrides"][-1] == str(paths.labels)
    tb.write_config(paths, config)
    import yaml

    written = yaml.safe_load(paths.labels.read_text())
    assert written == tb.labels_override(paths.build)
    # the manager's build context is the one testbed.up stages in the testbed's folder
    assert written["services"]["flops_manager"]["build"]["context"] == str(
        paths.build / "flops_manager"
    )


@pytest.mark.parametrize(
    "labels, whose",
    [
        (
            {tb.LABEL: "0123456789ab"},
            "the testbed of another checkout (run 'inv testbed.down' there)",
        ),
        ({}, "something that is not a testbed"),
        (None, "something that is not a testbed"),
    ],
)
def test_objects_of_others_are_never_taken_over(labels, whose):
    with pytest.raises(FlopsError) as exc:
        tb.refuse_foreign("container flops-testbed-w1", labels)
    assert f"container flops-testbed-w1 belongs to {whose}" in exc.value.message


def test_own_objects_and_those_of_older_versions_are_adopted():
    tb.refuse_foreign("network flops-testbed", tb.mark())
    tb.refuse_foreign("network flops-testbed", {tb.LABEL: tb.LEGACY_ID})
