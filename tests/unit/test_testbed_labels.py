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


# -- the configs testbed.up writes ------------------------------------------------------
def test_the_testbed_configs_are_read_by_the_projects_config_class(tmp_path):
    """What the testbed reads goes through FlopsConfig, as inv reads it: bounded YAML, and
    keys Fabric or Invoke act on are refused."""
    from flops_tasks.errors import ConfigError
    from flops_tasks.invoke_config import FlopsConfig

    paths = tb.Paths(tmp_path)
    tb.write_config(
        paths, tb.testbed_config(paths, [("flops-testbed-w1", "10.0.0.2", "docker")], "10.0.0.1")
    )
    c = tb.context_for(paths)
    assert type(c.config) is FlopsConfig
    assert c.config.flops.inventory["w1"]["host"] == "10.0.0.2"
    planted = tmp_path / "planted.yaml"
    planted.write_text(paths.config.read_text() + "gateway: touch PWNED\n")
    with pytest.raises(ConfigError, match=f"gateway \\(from {planted}\\)"):
        tb.context_for(paths, runtime=planted)


def test_the_testbed_binds_the_stack_to_its_gateway_only(tmp_path):
    """The stores' fixed credentials reach the testbed network and this host, no other: the
    default config binds to the gateway (the registry also on loopback, where this host's
    dockerd pushes); a placement publishes on every address of its hosts (one bind address
    serves every engine, and w1 cannot bind this host's gateway)."""
    import yaml

    paths = tb.Paths(tmp_path)
    config = tb.testbed_config(paths, [("flops-testbed-w1", "10.0.0.2", "docker")], "10.0.0.1")
    stack = config["flops"]["stack"]
    assert stack["bind_address"] == "10.0.0.1"
    assert tb.LOOPBACK_OVERRIDE in stack["overrides"]
    loopback = yaml.safe_load(Path(tb.LOOPBACK_OVERRIDE).read_text())["services"]
    assert loopback == {"flops_image_registry": {"ports": ["127.0.0.1:5073:5073"]}}
    for placement in tb.PLACEMENTS.values():
        placed = tb.placement_config(config, placement)["flops"]["stack"]
        assert placed["bind_address"] == "0.0.0.0"
        assert tb.LOOPBACK_OVERRIDE not in placed["overrides"]
    assert stack["bind_address"] == "10.0.0.1"  # the default config is left as it was
