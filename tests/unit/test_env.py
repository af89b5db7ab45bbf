import os
import re
import stat
from pathlib import Path

import pytest

from flops_tasks import env
from flops_tasks.config import ADDRESS_VARS, settings
from flops_tasks.errors import FlopsError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ADDRESS_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(
    "value, needle",
    [
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
    ],
)
def test_check_address_refuses(value, needle):
    with pytest.raises(FlopsError, match=needle):
        env.check_address("FLOPS_MANAGER_IP", value, "test")


def test_resolve_falls_back_to_detected_ip(monkeypatch, ctx_factory):
    monkeypatch.setenv("FLOPS_MQTT_BROKER_IP", "10.2.2.2")
    s = settings(ctx_factory({"addresses": {"backend_store_ip": "10.3.3.3"}}))
    addrs = env.resolve_addresses(s, detect=lambda: "10.1.1.1")
    assert addrs.values["FLOPS_MQTT_BROKER_IP"] == "10.2.2.2"
    assert addrs.values["BACKEND_STORE_IP"] == "10.3.3.3"
    assert addrs.values["FLOPS_MANAGER_IP"] == "10.1.1.1"
    assert addrs.sources["FLOPS_MANAGER_IP"].startswith("auto-detected")


def test_no_detectable_ip_is_one_clear_line(ctx_factory):
    s = settings(ctx_factory())
    with pytest.raises(FlopsError, match="SYSTEM_MANAGER_IP is empty"):
        env.resolve_addresses(s, detect=lambda: "")


def test_env_file_is_private_and_stable(tmp_path, ctx_factory):
    path = tmp_path / "flops.env"
    s = settings(
        ctx_factory(
            {
                "stack": {"env_file": str(path)},
                "addresses": {v.lower(): "10.0.0.7" for v in ADDRESS_VARS},
            }
        )
    )
    addrs, values, changed = env.ensure_env(s)
    assert changed
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    first = env.read_env_file(path)
    assert first["FLOPS_IMAGE_REGISTRY_IP"] == "10.0.0.7"
    # second write: nothing changed
    _, _, changed = env.ensure_env(s)
    assert not changed
    assert env.read_env_file(path) == first
    # dry run reports a pending change and writes nothing
    s2 = settings(
        ctx_factory(
            {
                "stack": {"env_file": str(path)},
                "addresses": {v.lower(): "10.0.0.8" for v in ADDRESS_VARS},
            }
        )
    )
    _, _, writes = env.plan_env(s2)
    assert [p for p, _, _ in writes] == [str(path)]
    assert env.read_env_file(path) == first


def test_env_file_holds_upstreams_credentials_even_over_old_generated_ones(tmp_path, ctx_factory):
    """The FLOps manager hard-codes root/oakestra and flops/flops: the stores must use them."""
    path = tmp_path / "flops.env"
    path.write_text("MYSQL_ROOT_PASSWORD=3f9c0a1b2c3d4e5f\nFTP_PASSWORD=0a1b2c3d4e5f6a7b\n")
    s = settings(
        ctx_factory(
            {
                "stack": {"env_file": str(path)},
                "addresses": {v.lower(): "10.0.0.7" for v in ADDRESS_VARS},
            }
        )
    )
    _, _, changed = env.ensure_env(s)
    assert changed
    written = env.read_env_file(path)
    assert written["MYSQL_ROOT_PASSWORD"] == "oakestra"
    assert written["FTP_PASSWORD"] == "flops"


def test_env_task_json(tmp_path, capsys, monkeypatch, ctx_factory):
    from flops_tasks.run import Run
    from flops_tasks.workflows import stack

    path = tmp_path / "x.env"
    monkeypatch.setenv("FLOPS_MANAGER_IP", "10.4.4.4")
    c = ctx_factory(
        {
            "stack": {"env_file": str(path)},
            "addresses": {v.lower(): "10.0.0.9" for v in ADDRESS_VARS},
        }
    )
    stack.env(Run.of(c), as_json=True)
    import json

    data = json.loads(capsys.readouterr().out)
    assert data["addresses"]["FLOPS_MANAGER_IP"] == {
        "value": "10.4.4.4",
        "source": "environment variable FLOPS_MANAGER_IP",
    }
    # upstream's public, fixed values are shown as they are
    assert data["other"]["MYSQL_ROOT_PASSWORD"] == "oakestra"
    assert data["other"]["FTP_PASSWORD"] == "flops"


@pytest.mark.parametrize(
    "value, needle",
    [
        ("::ffff:127.0.0.1", "IPv4-mapped"),
        ("::ffff:10.0.0.5", "IPv4-mapped"),
        ("::ffff:0.0.0.0", "IPv4-mapped"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("0.1.2.3", "reserved"),
        ("::", "unspecified"),
        ("::127.0.0.1", "reserved"),
        ("fe80::1", "not a unicast"),
        ("ff02::1", "not a unicast"),
    ],
)
def test_check_address_refuses_addresses_no_worker_can_use(value, needle):
    with pytest.raises(FlopsError, match=needle) as err:
        env.check_address("FLOPS_MANAGER_IP", value, "test")
    assert err.value.code == 2 and "\n" not in err.value.message


@pytest.mark.parametrize("value", ["10.0.0.5", "192.0.2.10", "2001:db8::5", "100.64.1.1"])
def test_check_address_accepts_unicast_host_addresses(value):
    assert env.check_address("FLOPS_MANAGER_IP", value, "test") == value


# -- the env file holds secrets: how it is written ------------------------------------------
VALUES = {"FLOPS_MANAGER_IP": "10.0.0.7", "MYSQL_ROOT_PASSWORD": "0123abcd"}
OTHER_UID = 65534  # nobody


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_planted_temp_symlink_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    folder = tmp_path / "compose"
    folder.mkdir()
    (folder / "flops.env.tmp").symlink_to(victim)
    assert env.write_env_file(folder / "flops.env", VALUES)
    assert victim.read_text() == "keep me\n"
    assert env.read_env_file(folder / "flops.env") == VALUES
    assert _files(folder) == ["flops.env", "flops.env.tmp"]  # the planted link, untouched


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file of another owner needs root")
def test_a_pre_created_temp_file_never_becomes_the_env_file(tmp_path):
    planted = tmp_path / "flops.env.tmp"
    planted.write_text("")
    os.chown(planted, OTHER_UID, OTHER_UID)
    assert env.write_env_file(tmp_path / "flops.env", VALUES)
    info = os.stat(tmp_path / "flops.env")
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.geteuid(), 0o600)
    assert planted.read_text() == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file of another owner needs root")
def test_an_env_file_of_another_owner_is_replaced_even_when_its_content_is_right(tmp_path):
    path = tmp_path / "flops.env"
    env.write_env_file(path, VALUES)
    os.chown(path, OTHER_UID, OTHER_UID)
    os.chmod(path, 0o644)
    assert env.write_env_file(path, VALUES)
    info = os.stat(path)
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (os.geteuid(), 0o600)
    assert not env.write_env_file(path, VALUES)  # now ours and right: nothing to do


def test_a_looser_mode_is_tightened_without_rewriting(tmp_path):
    path = tmp_path / "flops.env"
    env.write_env_file(path, VALUES)
    os.chmod(path, 0o644)
    inode = os.stat(path).st_ino
    assert not env.write_env_file(path, VALUES)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and os.stat(path).st_ino == inode


def test_an_env_file_that_is_a_symlink_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    path = tmp_path / "flops.env"
    path.symlink_to(victim)
    assert env.write_env_file(path, VALUES)
    assert victim.read_text() == "keep me\n"
    assert not path.is_symlink() and env.read_env_file(path) == VALUES


def test_a_failed_write_leaves_no_temp_file(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(FlopsError, match="No space left on device"):
        env.write_env_file(tmp_path / "flops.env", VALUES)
    assert _files(tmp_path) == []


def test_a_secret_never_appears_in_an_error_message(ctx_factory, monkeypatch):
    """A key in SECRET_KEYS is named without its value; other values are shown."""
    monkeypatch.setattr(env, "SECRET_KEYS", ("FLOPS_TOKEN",))
    s = settings(ctx_factory({"addresses": {v.lower(): "10.0.0.7" for v in ADDRESS_VARS}}))
    addresses = env.resolve_addresses(s)
    with pytest.raises(FlopsError) as err:
        env.env_values(s, addresses, extra={"FLOPS_TOKEN": "hunter2 $(x)"})
    assert "FLOPS_TOKEN cannot be written" in err.value.message
    assert "hunter2" not in err.value.message
    with pytest.raises(FlopsError, match="FLOPS_LABEL='a b' cannot be written"):
        env.env_values(s, addresses, extra={"FLOPS_LABEL": "a b"})


def test_the_env_file_holds_only_what_compose_reads(ctx_factory):
    """Besides the six addresses (flops-tasks reads SYSTEM_MANAGER_IP itself), every key of
    the env file is one that the compose files interpolate, and each of those is written."""
    root = Path(__file__).resolve().parents[2]
    read = set(re.findall(r"\$\{([A-Z_]+)", (root / "compose" / "flops.compose.yml").read_text()))
    s = settings(ctx_factory({"addresses": {v.lower(): "10.0.0.7" for v in ADDRESS_VARS}}))
    written = set(env.env_values(s, env.resolve_addresses(s), existing={"FLOPS_NETWORK": "n"}))
    assert written - set(ADDRESS_VARS) == read - set(ADDRESS_VARS)
    assert read <= written
