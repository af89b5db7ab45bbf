import pytest

from flops_tasks.config import settings
from flops_tasks.errors import ConfigError
from flops_tasks.invoke_config import FlopsConfig


def test_defaults_are_valid(ctx_factory):
    s = settings(ctx_factory())
    assert s.ssh.host_keys == "strict"
    assert s.registry_port == 5073
    assert s.stack.project == "flops_management"
    assert s.inventory == ()


def test_inventory_in_config(ctx_factory):
    s = settings(ctx_factory({"inventory": {"w1": {"host": "10.1.1.1", "roles": ["builder"]}}}))
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
        ({"registry": {"port": 5074}}, "FLOPS_IMAGE_REGISTRY_IP:5073/"),
        ({"registry": {"address": "a;b"}}, "flops.registry.address"),
        ({"stack": {"project": "Bad Name"}}, "flops.stack.project"),
        ({"stack": {"bind_address": "everywhere"}}, "flops.stack.bind_address"),
        ({"stack": {"overrides": "x.yml"}}, "flops.stack.overrides"),
        ({"stack": {"db_timeout": 0}}, "flops.stack.db_timeout"),
        ({"builder": {"driver": "kubernetes"}}, "flops.builder.driver"),
        ({"learner": {"data_dir": "relative/dir"}}, "flops.learner.data_dir"),
        ({"learner": {"data_dir": "/data/../etc"}}, "flops.learner.data_dir"),
        ({"addresses": {"flops_manager_ip": "line\nbreak"}}, "flops.addresses.flops_manager_ip"),
        ({"ssh": {"surprise": 1}}, "flops.ssh.surprise"),
        ({"inventory": {"w1": {"roles": ["chef"]}}}, "unknown role"),
    ],
)
def test_bad_values_name_the_key_and_source(overrides, needle, ctx_factory):
    with pytest.raises(ConfigError) as err:
        settings(ctx_factory(overrides))
    assert needle in err.value.message
    assert "\n" not in err.value.message
    assert err.value.code == 2


def test_a_registry_port_other_than_flops_own_is_refused_in_one_line(tmp_path):
    """FLOps' manager hard-codes 5073; another port would make workers trust, and
    clear-images clear, a registry FLOps never pushes to. Through the real CLI: exit 2, one
    line, nothing run."""
    from .test_bad_input import Case, run_case

    ran = run_case(Case(("env",), (), flops={"registry": {"port": 5074}}), tmp_path)
    assert ran.returncode == 2, ran.output
    line = ran.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith("flops.registry.port = 5074 (from -f ")
    assert "expected 5073: FLOps' manager hard-codes it" in line
    assert ran.after == ran.before


def test_address_env_vars_override_config(monkeypatch, ctx_factory):
    monkeypatch.setenv("FLOPS_MANAGER_IP", "10.9.9.9")
    s = settings(ctx_factory({"addresses": {"flops_manager_ip": "10.1.1.1"}}))
    assert s.addresses["FLOPS_MANAGER_IP"] == "10.9.9.9"
    assert s.address_sources["FLOPS_MANAGER_IP"] == "environment variable FLOPS_MANAGER_IP"


# -- config files: read safely, refused in one line ----------------------------------------
BOMB = b"".join(
    b"l%d: &l%d [%s]\n" % (i, i, b",".join([b"*l%d" % (i - 1) if i else b"x"] * 9))
    for i in range(9)
)


@pytest.mark.parametrize(
    "name, data, needle",
    [
        ("bomb.yaml", BOMB, "expands to more than 10000 values"),
        ("loop.yaml", b"flops: &a {x: *a}\n", "nested more than 32"),
        ("deep.yaml", b"flops: " + b"[" * 3000 + b"]" * 3000 + b"\n", "nested more than 32"),
        ("deep.json", b'{"a": ' + b"[" * 100000 + b"]" * 100000 + b"}", "nested too deep"),
        ("deep33.json", b'{"a": ' + b"[" * 33 + b"]" * 33 + b"}", "nested more than 32"),
        ("keys.yaml", b"flops:\n  inventory:\n    1.5: {}\n", "key 1.5 under flops.inventory"),
        ("top.yaml", b"- a\n", "expected a mapping at the top level"),
        ("top.json", b"[1]", "expected a mapping at the top level"),
        ("code.py", b"import os\nflops = {}\n", "Python config files are not read"),
        ("bad.yaml", b"flops: [\n", "line 2"),
        ("bad.json", b'{"flops": ', "Expecting value"),
        ("latin1.yaml", b'flops: {ssh: {user: "\xe9"}}\n', "not UTF-8"),
        ("flops.conf", b"flops: {}\n", "use a .yaml, .yml or .json file"),
    ],
)
def test_a_broken_config_file_is_one_line(tmp_path, name, data, needle):
    path = tmp_path / name
    path.write_bytes(data)
    config = FlopsConfig(runtime_path=str(path), lazy=True)
    with pytest.raises(ConfigError) as err:
        config.load_runtime()
    assert needle in err.value.message and "\n" not in err.value.message
    assert err.value.code == 2


def test_a_python_config_file_is_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.py").write_text("open('PWNED', 'w').write('ran')\nflops = {}\n")
    with pytest.raises(ConfigError):
        FlopsConfig(runtime_path=str(tmp_path / "c.py"), lazy=True).load_runtime()
    assert not (tmp_path / "PWNED").exists()


def test_a_project_without_invoke_yaml_looks_on_quietly(tmp_path):
    config = FlopsConfig(project_location=str(tmp_path), lazy=True)
    config.load_project()
    assert config._project_found is False


def test_anchors_within_the_bound_work(tmp_path, ctx_factory):
    path = tmp_path / "invoke.yaml"
    path.write_text(
        "defaults: &worker {user: ubuntu, roles: [builder, learner]}\n"
        "flops:\n  inventory:\n"
        "    w1: {<<: *worker, host: 10.0.0.1}\n"
        "    w2: {<<: *worker, host: 10.0.0.2, roles: [learner]}\n"
    )
    config = FlopsConfig(runtime_path=str(path), lazy=True)
    config.load_runtime()
    inventory = config._runtime["flops"]["inventory"]
    s = settings(ctx_factory({"inventory": inventory}))
    assert [(t.host, t.user, t.roles) for t in s.inventory] == [
        ("10.0.0.1", "ubuntu", ("builder", "learner")),
        ("10.0.0.2", "ubuntu", ("learner",)),
    ]


def test_an_environment_variable_of_the_wrong_type_is_one_line(monkeypatch):
    monkeypatch.setenv("INVOKE_FLOPS_SSH_PARALLEL", "many")
    config = FlopsConfig(defaults={"flops": {"ssh": {"parallel": 16}}}, lazy=True)
    with pytest.raises(ConfigError, match="INVOKE_FLOPS_SSH_PARALLEL='many': expected a int"):
        config.load_shell_env()


def test_a_section_given_as_a_value_names_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("flops:\n  ssh: 5\n")
    config = FlopsConfig(
        defaults={"flops": {"ssh": {"user": None}}}, runtime_path=str(path), lazy=True
    )
    with pytest.raises(ConfigError, match=f"flops.ssh \\(from {path}\\): expected a mapping"):
        config.load_runtime()


def test_the_running_inv_gets_a_flops_config(monkeypatch):
    import sys
    import types

    from invoke import Config, Program

    from flops_tasks.invoke_config import adopt_running_program

    program = Program()
    program.config = Config(overrides={"run": {"dry": True}}, lazy=True)
    monkeypatch.setitem(sys.modules, "invoke.main", types.SimpleNamespace(program=program))
    adopt_running_program()
    assert type(program.config) is FlopsConfig and program.config_class is FlopsConfig
    assert program.config.run.dry is True  # what was loaded before is kept
    again = program.config
    adopt_running_program()
    assert program.config is again


def test_adoption_outside_a_running_inv_does_nothing(monkeypatch):
    import sys
    import types

    from flops_tasks.invoke_config import adopt_running_program

    monkeypatch.setitem(sys.modules, "invoke.main", types.SimpleNamespace())
    adopt_running_program()
    monkeypatch.delitem(sys.modules, "invoke.main")
    adopt_running_program()


@pytest.mark.parametrize(
    "key, value",
    [
        (("builder", "name"), "-x"),
        (("stack", "network"), "--internal"),
        (("stack", "project"), "-p"),
        (("addon", "ref"), "--orphan"),
        (("addon", "url"), "--upload-pack=x"),
        (("addon", "path"), "-x"),
        (("stack", "manager_image"), "--rm"),
        (("ssh", "connect_timeout"), 0.5),
        (("learner", "publish_address"), "docker0"),
        (("learner", "publish_address"), "fe80::1%eth0"),
    ],
)
def test_values_that_would_be_options_or_no_timeout_are_refused(ctx_factory, key, value):
    section, name = key
    with pytest.raises(ConfigError, match=f"flops.{section}.{name}"):
        settings(ctx_factory({section: {name: value}}))


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/etc",
        "/etc/",
        "//etc",
        "/./etc",
        "/proc/self/root",
        "/sys/fs",
        "/dev/shm",
        "/boot",
        "/usr",
        "/usr/lib",
        "/bin",
        "/sbin",
        "/lib",
        "/lib64/x",
        "/libx32",
        "/var/lib/docker",
        "/var/lib/docker/volumes/x",
        "/var/lib/containerd",
        "/run",
        "/var/run/docker.sock",
        "/root",
        "/home",
        "/tmp",
        "/var",
        "/var/lib",
        "/srv",
        "/data:/etc",
        "/srv/d:ro",
    ],
)
def test_dangerous_data_dirs_are_refused(ctx_factory, path):
    from flops_tasks.config import data_dir_problem

    assert data_dir_problem(path)
    with pytest.raises(ConfigError, match="flops.learner.data_dir") as err:
        settings(ctx_factory({"learner": {"data_dir": path}}))
    assert "\n" not in err.value.message


@pytest.mark.parametrize(
    "path",
    [
        "/srv/flops-data",
        "/data",
        "/home/ubuntu/data",
        "/var/lib/flops",
        "/mnt/disk1/parquet",
        "/opt/flops/data",
        "/library",
    ],
)
def test_data_dirs_of_their_own_are_accepted(ctx_factory, path):
    s = settings(ctx_factory({"learner": {"data_dir": path}}))
    assert s.learner_data_dir == path


@pytest.mark.parametrize("address", ["", "172.17.0.1", "0.0.0.0", "10.0.0.5", "::1"])
def test_publish_addresses(ctx_factory, address):
    s = settings(ctx_factory({"learner": {"publish_address": address}}))
    assert s.learner_publish_address == address


# -- config that would run commands or add credentials ------------------------------------
ACTING = [
    ("gateway", "gateway: touch PWNED\n"),
    ("connect_kwargs", "connect_kwargs: {key_filename: [/root/.ssh/other]}\n"),
    ("ssh_config_path", "ssh_config_path: /tmp/ssh_config\n"),
    ("load_ssh_configs", "load_ssh_configs: true\n"),
    ("runners", "runners: {remote: os.system}\n"),
    ("authentication", "authentication: {identities: [/root/.ssh/other]}\n"),
    ("forward_agent", "forward_agent: true\n"),
    ("tasks.executor_class", "tasks: {executor_class: antigravity.Executor}\n"),
    ("run.env", "run: {env: {BASH_ENV: /tmp/x}}\n"),
]


@pytest.mark.parametrize("key, text", ACTING, ids=[k for k, _ in ACTING])
def test_keys_fabric_or_invoke_act_on_are_refused_naming_the_file(tmp_path, key, text):
    """Fabric runs ``gateway`` as a ProxyCommand, adds ``connect_kwargs`` keys to every
    connection, reads ProxyCommand from SSH configs; Invoke imports ``executor_class``; Fabric
    puts ``run.env`` unquoted before every remote command."""
    path = tmp_path / "c.yaml"
    path.write_text("flops: {}\n" + text)
    config = FlopsConfig(runtime_path=str(path), lazy=True)
    with pytest.raises(ConfigError) as err:
        config.load_runtime()
    message = err.value.message
    assert message.startswith(f"{key} (from {path}): ") and "\n" not in message


def test_harmless_invoke_settings_stay_allowed(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("flops: {}\nrun: {echo: true}\ntasks: {dedupe: false}\n")
    config = FlopsConfig(runtime_path=str(path), lazy=True)
    config.load_runtime()
    assert config.run.echo is True


def test_an_acting_key_from_the_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv("INVOKE_TASKS_EXECUTOR_CLASS", "antigravity.Executor")
    config = FlopsConfig(lazy=True)
    with pytest.raises(ConfigError, match="from environment variable INVOKE_TASKS_EXECUTOR_CLASS"):
        config.load_shell_env()


def test_an_acting_key_in_the_user_config_is_refused_when_inv_adopts_it(monkeypatch, tmp_path):
    """The stock inv reads ~/.invoke.yaml before tasks.py; the adopted config refuses it."""
    import sys
    import types

    from invoke import Config, Program

    from flops_tasks.invoke_config import adopt_running_program

    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "invoke.yaml").write_text("gateway: touch PWNED\n")
    program = Program()
    program.config = Config(user_prefix=f"{tmp_path}/home/", system_prefix=f"{tmp_path}/etc/")
    assert program.config.gateway == "touch PWNED"
    monkeypatch.setitem(sys.modules, "invoke.main", types.SimpleNamespace(program=program))
    with pytest.raises(ConfigError, match=f"gateway \\(from {tmp_path}/home/invoke.yaml\\)"):
        adopt_running_program()


@pytest.mark.parametrize(
    "key, name",
    [
        ("oakestra.password_env", "AWS_SECRET_ACCESS_KEY"),
        ("oakestra.password_env", "HOME"),
        ("oakestra.password_env", "FLOPS"),
        ("ssh.sudo_password_env", "GITHUB_TOKEN"),
        ("ssh.sudo_password_env", "OAKESTRA"),
    ],
)
def test_password_variables_must_be_flops_or_oakestra_ones(ctx_factory, key, name):
    """The value is sent away (the System Manager's login, the workers' sudo): a variable of
    another program, such as a cloud secret, may not be named."""
    section, leaf = key.split(".")
    with pytest.raises(ConfigError) as err:
        settings(ctx_factory({section: {leaf: name}}))
    assert f"flops.{key}" in err.value.message and "FLOPS_" in err.value.message


@pytest.mark.parametrize("name", ["FLOPS_OAKESTRA_PASSWORD", "OAKESTRA_ADMIN_PASSWORD", "FLOPS_X"])
def test_flops_and_oakestra_password_variables_are_accepted(ctx_factory, name):
    s = settings(
        ctx_factory({"oakestra": {"password_env": name}, "ssh": {"sudo_password_env": name}})
    )
    assert s.oakestra_password_env == s.ssh.sudo_password_env == name
