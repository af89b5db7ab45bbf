import os
import stat

import pytest

from flops_tasks import env
from flops_tasks.config import ADDRESS_VARS, settings
from flops_tasks.errors import FlopsError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ADDRESS_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("value, needle", [
    ("", "is empty"),
    ("0.0.0.0", "unspecified"),
    ("127.0.0.1", "loopback"),
    ("127.8.9.1", "loopback"),
    ("::1", "loopback"),
    ("localhost", "not an IP address"),
    ("10.0.0", "not an IP address"),
    ("10.0.0.5; rm -rf /", "not an IP address"),
    ("169.254.1.1", "not a unicast"),
    ("224.0.0.1", "not a unicast"),
])
def test_check_address_refuses(value, needle):
    with pytest.raises(FlopsError, match=needle):
        env.check_address("FLOPS_MANAGER_IP", value, "test")


def test_resolve_falls_back_to_detected_ip(monkeypatch, make_context):
    monkeypatch.setenv("FLOPS_MQTT_BROKER_IP", "10.2.2.2")
    s = settings(make_context({"addresses": {"backend_store_ip": "10.3.3.3"}}))
    addrs = env.resolve_addresses(s, detect=lambda: "10.1.1.1")
    assert addrs.values["FLOPS_MQTT_BROKER_IP"] == "10.2.2.2"
    assert addrs.values["BACKEND_STORE_IP"] == "10.3.3.3"
    assert addrs.values["FLOPS_MANAGER_IP"] == "10.1.1.1"
    assert addrs.sources["FLOPS_MANAGER_IP"].startswith("auto-detected")


def test_no_detectable_ip_is_one_clear_line(make_context):
    s = settings(make_context())
    with pytest.raises(FlopsError, match="SYSTEM_MANAGER_IP is empty"):
        env.resolve_addresses(s, detect=lambda: "")


def test_env_file_is_private_and_keeps_secrets(tmp_path, make_context):
    path = tmp_path / "flops.env"
    s = settings(make_context({"stack": {"env_file": str(path)},
                               "addresses": {v.lower(): "10.0.0.7" for v in ADDRESS_VARS}}))
    addrs, values, changed = env.ensure_env(s)
    assert changed
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    first = env.read_env_file(path)
    assert first["FLOPS_IMAGE_REGISTRY_IP"] == "10.0.0.7"
    assert len(first["MYSQL_ROOT_PASSWORD"]) == 32
    # second write: same secrets, nothing changed
    _, _, changed = env.ensure_env(s)
    assert not changed
    assert env.read_env_file(path) == first
    # dry run reports a pending change and writes nothing
    s2 = settings(make_context({"stack": {"env_file": str(path)},
                                "addresses": {v.lower(): "10.0.0.8" for v in ADDRESS_VARS}}))
    _, _, changed = env.ensure_env(s2, dry=True)
    assert changed
    assert env.read_env_file(path) == first
    assert env.public_view(values)["FTP_PASSWORD"] == "********"


def test_env_task_json(tmp_path, capsys, monkeypatch, make_context):
    from flops_tasks import cli

    path = tmp_path / "x.env"
    monkeypatch.setenv("FLOPS_MANAGER_IP", "10.4.4.4")
    c = make_context({"stack": {"env_file": str(path)},
                      "addresses": {v.lower(): "10.0.0.9" for v in ADDRESS_VARS}})
    cli.env(c, as_json=True)
    import json

    data = json.loads(capsys.readouterr().out)
    assert data["addresses"]["FLOPS_MANAGER_IP"] == {
        "value": "10.4.4.4", "source": "environment variable FLOPS_MANAGER_IP"}
    assert data["other"]["MYSQL_ROOT_PASSWORD"] == "********"
    assert env.read_env_file(path)["MYSQL_ROOT_PASSWORD"] not in json.dumps(data)
