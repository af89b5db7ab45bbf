"""Registry trust files: unrelated settings survive, a broken file is refused, a second run
writes nothing, IPv6 registries are bracketed. One table per file."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from flops_tasks import commands as C
from flops_tasks import trust
from flops_tasks.trust import Refusal

REG = "10.0.0.5:5073"
V6 = "[fd00::1]:5073"
# `containerd config default` of containerd 1.7.24 (Debian trixie), recorded in a worker
DEFAULT_17 = (Path(__file__).parent / "facts" / "containerd-1.7.24-config-default.toml").read_text()
DEBIAN_17 = """version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
"""

# file -> (merge function, existing file with unrelated settings, how to read it back,
#          a check that the unrelated settings are still there, a broken file)
FILES = {
    "daemon.json": (
        trust.daemon_json,
        '{"log-driver": "journald", "features": {"containerd-snapshotter": true},\n'
        ' "insecure-registries": ["other:5000"]}\n',
        json.loads,
        lambda d: (
            d["log-driver"] == "journald"
            and d["features"] == {"containerd-snapshotter": True}
            and d["insecure-registries"][0] == "other:5000"
        ),
        '{"log-driver": "journald",,}',
    ),
    "hosts.toml": (
        trust.hosts_toml,
        '# operator\'s note\nca = "/etc/ssl/reg.pem"\n\n[host."https://mirror.local"]\n'
        '  capabilities = ["pull"]\n',
        tomllib.loads,
        lambda d: (
            d["ca"] == "/etc/ssl/reg.pem"
            and d["host"]["https://mirror.local"] == {"capabilities": ["pull"]}
        ),
        'server = "http://x\n',
    ),
    "buildkitd.toml": (
        trust.buildkitd_toml,
        'debug = true\n[worker.oci]\n  gc = false\n[registry."docker.io"]\n'
        '  mirrors = ["mirror.local"]\n',
        tomllib.loads,
        lambda d: (
            d["debug"] is True
            and d["worker"]["oci"]["gc"] is False
            and d["registry"]["docker.io"]["mirrors"] == ["mirror.local"]
        ),
        "[registry\n",
    ),
    "registries.conf": (
        trust.registries_conf,
        '# keep me\nunqualified-search-registries = ["docker.io"]\n\n[[registry]]\n'
        'location = "other:5000"\nblocked = true\n',
        tomllib.loads,
        lambda d: (
            d["unqualified-search-registries"] == ["docker.io"]
            and d["registry"][0] == {"location": "other:5000", "blocked": True}
        ),
        "[[registry]]\nlocation = \n",
    ),
}


def wanted(name: str, data: dict, registry: str) -> bool:
    if name == "daemon.json":
        return registry in data["insecure-registries"]
    if name == "hosts.toml":
        return data["server"] == f"http://{registry}" and {"pull", "resolve", "push"} <= set(
            data["host"][f"http://{registry}"]["capabilities"]
        )
    if name == "buildkitd.toml":
        return data["registry"][registry] == {"http": True, "insecure": True}
    return any(
        e.get("location") == registry and e.get("insecure") is True for e in data["registry"]
    )


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("registry", [REG, V6])
def test_unrelated_settings_are_kept_and_a_second_run_writes_nothing(name, registry):
    merge, existing, load, kept, _ = FILES[name]
    merged = merge(existing, registry)
    assert merged is not None
    data = load(merged)
    assert kept(data), merged
    assert wanted(name, data, registry), merged
    assert merge(merged, registry) is None  # the second run changes nothing
    if name != "daemon.json":
        assert "# " not in existing or existing.split("\n")[0] in merged  # comments survive


@pytest.mark.parametrize("name", FILES)
def test_a_missing_file_is_created_and_then_left_alone(name):
    merge, _, load, _, _ = FILES[name]
    created = merge(None, REG)
    assert wanted(name, load(created), REG)
    assert merge(created, REG) is None


@pytest.mark.parametrize("name", FILES)
def test_a_broken_file_is_refused_in_one_line(name):
    merge, _, _, _, broken = FILES[name]
    with pytest.raises(Refusal) as exc:
        merge(broken, REG)
    message = str(exc.value)
    assert "\n" not in message and "by hand" in message


def test_daemon_json_shapes_that_cannot_be_merged_are_refused():
    for text in ("[1, 2]", '{"insecure-registries": "a:1"}'):
        with pytest.raises(Refusal):
            trust.daemon_json(text, REG)


def test_registries_conf_v1_format_and_an_existing_entry():
    with pytest.raises(Refusal, match="v1 format"):
        trust.registries_conf('[registries.insecure]\nregistries = ["a"]\n', REG)
    text = f'[[registry]]\nlocation = "{REG}"\ninsecure = false\nmirror-by-digest-only = true\n'
    merged = tomllib.loads(trust.registries_conf(text, REG))
    assert merged["registry"] == [
        {"location": REG, "insecure": True, "mirror-by-digest-only": True}
    ]


def test_ipv6_registries_are_bracketed_in_every_file_and_path():
    assert C.hosts_toml_path(V6) == "/etc/containerd/certs.d/[fd00::1]:5073/hosts.toml"
    assert tomllib.loads(trust.hosts_toml(None, V6))["server"] == "http://[fd00::1]:5073"
    assert list(tomllib.loads(trust.buildkitd_toml(None, V6))["registry"]) == [V6]
    assert tomllib.loads(trust.registries_conf(None, V6))["registry"][0]["location"] == V6
    assert json.loads(trust.daemon_json(None, V6))["insecure-registries"] == [V6]


# -- containerd's config.toml ---------------------------------------------------------------
def registry_table(text: str) -> dict:
    data = tomllib.loads(text)
    return data["plugins"]["io.containerd.grpc.v1.cri"]["registry"]


def test_containerd_config_default_with_empty_config_path_is_set():
    """`containerd config default` writes config_path = "": set it, change nothing else."""
    assert 'config_path = ""' in DEFAULT_17
    new = trust.containerd_config(DEFAULT_17)
    assert registry_table(new)["config_path"] == C.CERTS_D
    changed = [
        (a, b) for a, b in zip(DEFAULT_17.splitlines(), new.splitlines(), strict=True) if a != b
    ]
    assert changed == [('      config_path = ""', f'      config_path = "{C.CERTS_D}"')]
    assert trust.containerd_config(new) is None


def test_debians_config_gets_the_registry_table_and_keeps_the_rest():
    new = trust.containerd_config(DEBIAN_17)
    data = tomllib.loads(new)
    assert data["plugins"]["io.containerd.grpc.v1.cri"]["cni"]["bin_dir"] == "/usr/lib/cni"
    assert data["plugins"]["io.containerd.internal.v1.opt"]["path"] == "/var/lib/containerd/opt"
    assert registry_table(new)["config_path"] == C.CERTS_D
    assert trust.containerd_config(new) is None


@pytest.mark.parametrize("text", [None, "", "# nothing yet\n"])
def test_no_config_gets_a_version_2_one(text):
    new = trust.containerd_config(text)
    assert tomllib.loads(new)["version"] == 2
    assert registry_table(new)["config_path"] == C.CERTS_D


def test_an_existing_config_path_elsewhere_is_kept_and_certs_d_added():
    text = (
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\n'
        '  config_path = "/etc/docker/certs.d"\n'
    )
    new = trust.containerd_config(text)
    assert registry_table(new)["config_path"] == f"/etc/docker/certs.d:{C.CERTS_D}"
    assert trust.containerd_config(new) is None


@pytest.mark.parametrize(
    "conflict, word",
    [
        (
            '[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n'
            '  endpoint = ["https://mirror.local"]\n',
            "mirrors",
        ),
        (
            '[plugins."io.containerd.grpc.v1.cri".registry.configs."r:5000".tls]\n'
            "  insecure_skip_verify = true\n",
            "configs.tls",
        ),
    ],
)
def test_conflicting_registry_settings_are_refused(conflict, word):
    """containerd 1.7.24 logs `\\`mirrors\\` cannot be set when \\`config_path\\` is provided`
    (and the same for configs.tls) and runs without its CRI plugin: never write that."""
    text = DEFAULT_17.replace(
        '[plugins."io.containerd.grpc.v1.cri".x509_key_pair_streaming]',
        conflict + '[plugins."io.containerd.grpc.v1.cri".x509_key_pair_streaming]',
    )
    with pytest.raises(Refusal) as exc:
        trust.containerd_config(text)
    assert word in str(exc.value) and "\n" not in str(exc.value)


def test_empty_mirror_tables_are_no_conflict():
    assert "registry.mirrors]" in DEFAULT_17  # present, empty
    assert trust.containerd_config(DEFAULT_17) is not None


def test_other_config_versions():
    v1 = '[plugins.cri]\n  sandbox_image = "pause"\n'
    assert (
        tomllib.loads(trust.containerd_config(v1))["plugins"]["cri"]["registry"]["config_path"]
        == C.CERTS_D
    )
    assert trust.containerd_config("version = 3\n") is None  # 2.x defaults to certs.d
    v3 = 'version = 3\n[plugins."io.containerd.cri.v1.images".registry]\n  config_path = ""\n'
    assert (
        tomllib.loads(trust.containerd_config(v3))["plugins"]["io.containerd.cri.v1.images"][
            "registry"
        ]["config_path"]
        == C.CERTS_D
    )
    with pytest.raises(Refusal, match="version"):
        trust.containerd_config("version = 9\n")
    with pytest.raises(Refusal, match="not valid TOML"):
        trust.containerd_config("version = 2\n[plugins\n")
    with pytest.raises(Refusal, match="not a string"):
        trust.containerd_config(
            'version = 2\n[plugins."io.containerd.grpc.v1.cri".registry]\nconfig_path = 1\n'
        )


CRI = '"io.containerd.grpc.v1.cri"'
# (merge call, file text, the key the refusal must name): valid TOML of the wrong shape
WRONG_SHAPES = {
    "containerd-plugins-number": (trust.containerd_config, "plugins = 5\n", "plugins"),
    "containerd-plugins-string": (
        trust.containerd_config,
        'version = 2\nplugins = "cri"\n',
        "plugins",
    ),
    "containerd-cri-array": (
        trust.containerd_config,
        f"version = 2\n[plugins]\n{CRI} = [1]\n",
        f"plugins.{CRI}",
    ),
    "containerd-registry-bool": (
        trust.containerd_config,
        f"version = 2\n[plugins.{CRI}]\nregistry = true\n",
        f"plugins.{CRI}.registry",
    ),
    "containerd-mirrors-number": (
        trust.containerd_config,
        f"version = 2\n[plugins.{CRI}.registry]\nmirrors = 5\n",
        f"plugins.{CRI}.registry.mirrors",
    ),
    "containerd-mirrors-array": (
        trust.containerd_config,
        f'version = 2\n[plugins.{CRI}.registry]\nmirrors = ["docker.io"]\n',
        f"plugins.{CRI}.registry.mirrors",
    ),
    "containerd-configs-string": (
        trust.containerd_config,
        f'version = 2\n[plugins.{CRI}.registry]\nconfigs = "x"\n',
        f"plugins.{CRI}.registry.configs",
    ),
    "containerd-version-bool": (trust.containerd_config, "version = true\n", "version"),
    "containerd-version-float": (trust.containerd_config, "version = 2.0\n", "version"),
    "hosts-host-number": (lambda t: trust.hosts_toml(t, REG), "host = 5\n", "host"),
    "hosts-entry-string": (
        lambda t: trust.hosts_toml(t, REG),
        f'[host]\n"http://{REG}" = "x"\n',
        f'host."http://{REG}"',
    ),
    "hosts-capabilities-string": (
        lambda t: trust.hosts_toml(t, REG),
        f'[host."http://{REG}"]\ncapabilities = "pull"\n',
        f'host."http://{REG}".capabilities',
    ),
    "buildkitd-registry-number": (
        lambda t: trust.buildkitd_toml(t, REG),
        "registry = 5\n",
        "registry",
    ),
    "buildkitd-entry-array": (
        lambda t: trust.buildkitd_toml(t, REG),
        f'[registry]\n"{REG}" = [1]\n',
        f'registry."{REG}"',
    ),
}


@pytest.mark.parametrize("case", WRONG_SHAPES)
def test_valid_toml_of_the_wrong_shape_is_one_line_naming_the_file_and_the_key(case):
    """tomllib accepts these; the merge used to crash on them (AttributeError, TypeError),
    which reached the report as 'connect: AttributeError ...'."""
    merge, text, key = WRONG_SHAPES[case]
    tomllib.loads(text)  # valid TOML: the shape is what is wrong
    with pytest.raises(Refusal) as exc:
        merge(text)
    message = str(exc.value)
    assert "\n" not in message and "by hand" in message
    path = {"containerd": C.CONTAINERD_CONFIG, "buildkitd": C.BUILDKITD_TOML}.get(
        case.split("-")[0], C.hosts_toml_path(REG)
    )
    assert message.startswith(f"{path}: {key} ")


# -- a registry that moved -------------------------------------------------------------------
OLD, NEW = "10.0.0.2:5073", "10.0.0.7:5073"


@pytest.mark.parametrize("name", ["registries_conf", "buildkitd_toml", "hosts_toml"])
def test_a_file_without_a_final_newline_gets_another_registry(name):
    """Probe output arrives stripped: a table appended after the last value must still be
    valid TOML (it was written onto the value's line: a parse error and a traceback)."""
    fn = getattr(trust, name)
    text = fn(None, OLD).rstrip("\n")
    out = fn(text, NEW)
    assert out is not None and tomllib.loads(out)


def test_daemon_json_drops_former_registries_and_keeps_the_rest():
    text = json.dumps({"debug": True, "insecure-registries": [OLD, "other:5000"]})
    data = json.loads(trust.daemon_json(text, NEW, forget=[OLD]))
    assert data == {"debug": True, "insecure-registries": ["other:5000", NEW]}
    again = json.dumps(data)
    assert trust.daemon_json(again, NEW, forget=[OLD]) is None
    # the current registry is never forgotten
    assert trust.daemon_json(again, NEW, forget=[NEW]) is None


def test_buildkitd_and_registries_conf_drop_former_registries():
    bk = trust.buildkitd_toml(trust.buildkitd_toml(None, OLD), "other:5000")
    out = trust.buildkitd_toml(bk, NEW, forget=[OLD])
    assert set(tomllib.loads(out)["registry"]) == {"other:5000", NEW}
    assert trust.buildkitd_toml(out, NEW, forget=[OLD]) is None
    rc = trust.registries_conf(trust.registries_conf(None, OLD), "other:5000")
    out = trust.registries_conf(rc, NEW, forget=[OLD])
    assert [e["location"] for e in tomllib.loads(out)["registry"]] == ["other:5000", NEW]
    assert trust.registries_conf(out, NEW, forget=[OLD]) is None


def test_only_our_hosts_file_of_a_former_registry_is_removed():
    assert trust.forgets_hosts_toml(trust.hosts_toml(None, OLD), OLD)
    assert not trust.forgets_hosts_toml(None, OLD)
    assert not trust.forgets_hosts_toml('server = "https://10.0.0.2:5073"\n', OLD)
    assert not trust.forgets_hosts_toml("not toml [", OLD)
