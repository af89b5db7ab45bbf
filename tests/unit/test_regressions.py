"""Regression tests of defects in the containerd trust step and in registry addresses.

They use only names that existed before the fixes (``ops.check_trust_containerd``,
``ops.act_trust_containerd``, ``facts.WorkerFacts``, ``env.registry_host``), so each one ran
against the code before its fix, and failed there.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from flops_tasks import ops
from flops_tasks.facts import MISSING, WorkerFacts

from .fake_worker import FakeSession

REG = "10.0.0.5:5073"
CTX = ops.PrepContext(registry=REG)
DEFAULT_17 = (Path(__file__).parent / "facts" / "containerd-1.7.24-config-default.toml").read_text()
MIRRORS = (
    'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n'
    '  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n'
    '    endpoint = ["https://mirror.local"]\n'
)


def facts(config: str, **more: tuple[int, str]) -> WorkerFacts:
    raw = {
        "containerd_config": (0, config),
        "containerd_hosts": (0, MISSING),
        "containerd": (0, ""),
        "systemd": (1, ""),
    }
    raw.update(more)
    return WorkerFacts(raw)


def written_config(session: FakeSession) -> str:
    """The config.toml content inside the command that writes it."""
    import shlex

    command = next(c for s, c in session.changes if "config_path" in s)
    start = command.index("printf '%s' ") + len("printf '%s' ")
    return shlex.split(command[start:])[0]


def test_config_default_with_empty_config_path_is_set_not_a_decode_error():
    """Before: the line was inserted a second time, tomllib raised TOMLDecodeError out of
    the step; the host's results were lost and it was reported as a connect error."""
    s = FakeSession({})
    ops.act_trust_containerd(s, facts(DEFAULT_17), CTX)
    data = tomllib.loads(written_config(s))
    assert (
        data["plugins"]["io.containerd.grpc.v1.cri"]["registry"]["config_path"]
        == "/etc/containerd/certs.d"
    )


def test_containerd_is_restarted_without_systemd_too():
    """Before: without systemd the step stopped at "applies when containerd restarts"."""
    s = FakeSession({})
    did = ops.act_trust_containerd(s, facts("version = 2\n"), CTX)
    assert "applies when containerd restarts" not in did
    command = next(c for sm, c in s.changes if "config_path" in sm)
    assert "kill -TERM" in command and "systemctl restart containerd" in command


def test_mirrors_are_never_joined_by_config_path():
    """Before: config_path was written next to mirrors; containerd then drops its CRI plugin
    ("`mirrors` cannot be set when `config_path` is provided")."""
    s = FakeSession({})
    with pytest.raises(Exception, match="mirrors") as exc:
        ops.check_trust_containerd(facts(MIRRORS), CTX)
        ops.act_trust_containerd(s, facts(MIRRORS), CTX)
    assert "\n" not in str(exc.value)
    assert s.changes == []


def test_ipv6_registry_address_is_bracketed(ctx_factory):
    """Before: fd00::1 + 5073 became fd00::1:5073, another address, in daemon.json, the
    certs.d path and the BuildKit config."""
    from flops_tasks import env as envmod
    from flops_tasks.config import settings

    names = (
        "system_manager_ip",
        "flops_manager_ip",
        "flops_mqtt_broker_ip",
        "flops_image_registry_ip",
        "artifact_store_ip",
        "backend_store_ip",
    )
    s = settings(ctx_factory({"addresses": dict.fromkeys(names, "fd00::1")}))
    assert envmod.registry_host(s, envmod.resolve_addresses(s)) == "[fd00::1]:5073"
    s = settings(
        ctx_factory(
            {
                "registry": {"address": "fd00::2", "port": 5073},
                "addresses": dict.fromkeys(names, "10.0.0.1"),
            }
        )
    )
    assert envmod.registry_host(s, envmod.resolve_addresses(s)) == "[fd00::2]:5073"
