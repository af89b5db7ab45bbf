import pytest

from flops_tasks.config import settings
from flops_tasks.errors import ConfigError


def test_defaults_are_valid(make_context):
    s = settings(make_context())
    assert s.ssh.host_keys == "strict"
    assert s.registry_port == 5073
    assert s.stack.project == "flops_management"
    assert s.inventory == ()


def test_inventory_in_config(make_context):
    s = settings(make_context({"inventory": {"w1": {"host": "10.1.1.1", "roles": ["builder"]}}}))
    assert s.inventory[0].host == "10.1.1.1"
    assert s.inventory[0].roles == ("builder",)


@pytest.mark.parametrize(
    "overrides, needle",
    [
        ({"ssh": {"host_keys": "yolo"}}, "flops.ssh.host_keys"),
        ({"ssh": {"parallel": 0}}, "flops.ssh.parallel"),
        ({"ssh": {"parallel": 2.5}}, "flops.ssh.parallel"),
        ({"ssh": {"connect_timeout": "10"}}, "flops.ssh.connect_timeout"),
        ({"ssh": {"user": "bad user"}}, "flops.ssh.user"),
        ({"registry": {"port": 99999}}, "flops.registry.port"),
        ({"registry": {"address": "a;b"}}, "flops.registry.address"),
        ({"stack": {"project": "Bad Name"}}, "flops.stack.project"),
        ({"stack": {"bind_address": "everywhere"}}, "flops.stack.bind_address"),
        ({"stack": {"overrides": "x.yml"}}, "flops.stack.overrides"),
        ({"builder": {"driver": "kubernetes"}}, "flops.builder.driver"),
        ({"learner": {"data_dir": "relative/dir"}}, "flops.learner.data_dir"),
        ({"learner": {"data_dir": "/data/../etc"}}, "flops.learner.data_dir"),
        ({"addresses": {"flops_manager_ip": "line\nbreak"}}, "flops.addresses.flops_manager_ip"),
        ({"ssh": {"surprise": 1}}, "flops.ssh.surprise"),
        ({"inventory": {"w1": {"roles": ["chef"]}}}, "unknown role"),
    ],
)
def test_bad_values_name_the_key_and_source(overrides, needle, make_context):
    with pytest.raises(ConfigError) as err:
        settings(make_context(overrides))
    assert needle in err.value.message
    assert "\n" not in err.value.message
    assert err.value.code == 2


def test_address_env_vars_override_config(monkeypatch, make_context):
    monkeypatch.setenv("FLOPS_MANAGER_IP", "10.9.9.9")
    s = settings(make_context({"addresses": {"flops_manager_ip": "10.1.1.1"}}))
    assert s.addresses["FLOPS_MANAGER_IP"] == "10.9.9.9"
    assert s.address_sources["FLOPS_MANAGER_IP"] == "environment variable FLOPS_MANAGER_IP"
