import pytest

from flops_tasks.errors import ConfigError, FlopsError
from flops_tasks.hosts import Target, inventory_targets, parse_host, parse_host_list, select_targets


@pytest.mark.parametrize(
    "text, expected",
    [
        ("10.0.0.5", Target(host="10.0.0.5")),
        ("ubuntu@10.0.0.5", Target(host="10.0.0.5", user="ubuntu")),
        ("ubuntu@10.0.0.5:2222", Target(host="10.0.0.5", user="ubuntu", port=2222)),
        ("node-1.example.org", Target(host="node-1.example.org")),
        ("root@[::1]:22", Target(host="::1", user="root")),
        ("[fe80::1]", Target(host="fe80::1")),
        ("edge_user@w1:65535", Target(host="w1", user="edge_user", port=65535)),
    ],
)
def test_parse_host_accepts(text, expected):
    assert parse_host(text) == expected


@pytest.mark.parametrize(
    "text, needle",
    [
        ("", "empty"),
        (" 10.0.0.5", "white space"),
        ("10.0.0.5 ", "white space"),
        ("a b", "white space"),
        ("host;rm -rf /", "white space"),
        ("host;id", "not a host name"),
        ("$(id)", "not a host name"),
        ("`id`@host", "invalid user"),
        ("user@host:0", "port must be 1-65535"),
        ("user@host:65536", "port must be 1-65535"),
        ("user@host:22a", "port must be 1-65535"),
        ("user@host:", "port must be 1-65535"),
        ("@host", "invalid user"),
        ("[::1", "unclosed"),
        ("[::1]x", "junk"),
        ("host\nother", "white space"),
        ("-oProxyCommand=x", "not a host name"),
        ("../etc/passwd", "not a host name"),
    ],
)
def test_parse_host_refuses_with_one_line(text, needle):
    with pytest.raises(FlopsError) as err:
        parse_host(text)
    assert needle in err.value.message
    assert "\n" not in err.value.message
    assert err.value.code == 2


def test_host_list_rejects_empty_and_duplicates():
    assert [t.host for t in parse_host_list("a,b,root@c:2")] == ["a", "b", "c"]
    with pytest.raises(FlopsError, match="empty entry"):
        parse_host_list("a,,b")
    with pytest.raises(FlopsError, match="listed twice"):
        parse_host_list("a,root@a")


def test_inventory_roles_and_selection():
    inv = inventory_targets(
        {
            "w1": {"host": "10.0.0.1", "user": "ubuntu", "roles": ["builder", "learner"]},
            "w2": {"host": "10.0.0.2", "port": 2222, "roles": ["learner"]},
        }
    )
    assert [t.name for t in select_targets(None, inv, "builder")] == ["w1"]
    assert [t.name for t in select_targets(None, inv, "learner")] == ["w1", "w2"]
    # --host naming an inventory host takes its settings
    (t,) = select_targets("10.0.0.2", inv, "builder")
    assert (t.name, t.port) == ("w2", 2222)
    (t,) = select_targets("w1", inv, None)
    assert (t.host, t.user) == ("10.0.0.1", "ubuntu")
    with pytest.raises(FlopsError, match="no hosts with role 'builder'"):
        select_targets(None, inventory_targets({}), "builder")


@pytest.mark.parametrize(
    "inventory, needle",
    [
        ({"w1": {"roles": ["cook"]}}, "unknown role 'cook'"),
        ({"w1": {"roles": "builder"}}, "expected a list"),
        ({"w1": {"port": "22"}}, "expected an integer"),
        ({"w1": {"port": 70000}}, "expected an integer"),
        ({"w1": {"host": "a b"}}, "not a host name"),
        ({"w1": {"user": "r;m"}}, "not a valid user"),
        ({"w1": {"hots": "x"}}, "unknown setting"),
        (["w1"], "expected a mapping"),
    ],
)
def test_inventory_refuses(inventory, needle):
    with pytest.raises(ConfigError, match=needle):
        inventory_targets(inventory)
