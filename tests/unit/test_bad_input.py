"""The bad-input catalogue: every task, flag and config key fed malformed values.

Each case runs the real ``inv`` program in a process of its own (forked from one that has
imported the libraries, ``inv_forks.py``; ``test_forked_runs_match_subprocess_runs`` holds
the two ways to the same result) and must be refused before anything
touches Docker or SSH: a non-zero exit, exactly one non-empty output line that names the
problem (the key, flag or value, and for config keys the file it came from), no traceback,
and nothing written (the case's directory holds only its config file afterwards).

Safety nets, so that a regression cannot reach shared resources: every subprocess runs in
its own temporary directory (``--search-root`` finds tasks.py) with ``HOME`` there,
``DOCKER_HOST`` pointing at a socket that does not exist, the env file inside that
directory (in the config, or in ``INVOKE_FLOPS_STACK_ENV_FILE`` for raw config files),
and hosts that cannot be reached. The processes run in parallel, once per module (see
``outputs``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from flops_tasks.config import ADDRESS_VARS, DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
_VENV_INV = Path(sys.executable).parent / "inv"
INV = str(_VENV_INV if _VENV_INV.exists() else ROOT / ".venv" / "bin" / "inv")
GOOD_IP = "192.0.2.10"  # TEST-NET-1: a valid unicast address that is never this host
UNREACHABLE = "worker.invalid"  # RFC 6761: never resolves
CFG = "{cfg}"  # placeholder in needles: the path of the case's config file
FORKS = Path(__file__).resolve().parent / "inv_forks.py"
SAMPLE = str(ROOT / "tests" / "unit" / "files" / "sample.parquet")  # a real Parquet file
# PAR1 at both ends, the footer garbage; and a Parquet file of another schema than SAMPLE
CORRUPT_FOOTER = str(ROOT / "tests" / "unit" / "files" / "corrupt-footer.parquet")
OTHER_SCHEMA = str(ROOT / "tests" / "unit" / "files" / "other-schema.parquet")


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    needles: tuple[str, ...]
    flops: dict = field(default_factory=dict)  # merged into the base config, per section
    raw: bytes | None = None  # the config file's bytes instead of the base config
    env: dict = field(default_factory=dict)
    config_name: str | None = "c.yaml"  # None: no -f at all
    write_config: bool = True


@dataclass(frozen=True)
class Ran:
    returncode: int
    output: str
    before: frozenset[str]
    after: frozenset[str]
    cfg: str


def base_config(workdir: Path) -> dict:
    return {
        "addresses": {var.lower(): GOOD_IP for var in ADDRESS_VARS},
        "stack": {"env_file": str(workdir / "flops.env")},
        "ssh": {"known_hosts": str(workdir / "known_hosts")},
    }


def child_env(workdir: Path, case: Case) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("INVOKE_", "DOCKER_"))
        and k not in ADDRESS_VARS
        and k != DEFAULTS["ssh"]["sudo_password_env"]
    }
    env.update(COLUMNS="200", HOME=str(workdir), DOCKER_HOST=f"unix://{workdir}/no-docker.sock")
    if case.raw is not None or case.config_name is None:
        # the config may not name an env file: keep the project's out of reach
        env["INVOKE_FLOPS_STACK_ENV_FILE"] = str(workdir / "flops.env")
    env.update(case.env)
    return env


@dataclass(frozen=True)
class Prepared:
    """A case made ready to run: its directory holds the config, nothing else."""

    argv: list[str]
    env: dict
    workdir: Path
    before: frozenset[str]
    cfg: str


def prepare(case: Case, workdir: Path) -> Prepared:
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [INV, "--search-root", str(ROOT)]
    cfg = ""
    if case.config_name is not None:
        cfg = str(workdir / case.config_name)
        argv += ["-f", cfg]
        if case.write_config:
            if case.raw is not None:
                data = case.raw
            else:
                flops = base_config(workdir)
                for section, values in case.flops.items():
                    if isinstance(values, dict) and isinstance(flops.get(section), dict):
                        flops[section].update(values)
                    else:
                        flops[section] = values
                data = yaml.safe_dump({"flops": flops}).encode()
            # "{dir}" in a value stands for the case's directory
            Path(cfg).write_bytes(data.replace(b"{dir}", str(workdir).encode()))
    before = frozenset(p.name for p in workdir.iterdir())
    return Prepared([*argv, *case.args], child_env(workdir, case), workdir, before, cfg)


def finish(prep: Prepared, returncode: int, output: str) -> Ran:
    # HOME is the case's directory: ~/.local/state/flops-tasks/locks holds run locks
    # (released, empty files), which are not a change to anything the task manages
    workdir = prep.workdir
    locks_only = [workdir / ".local" / "state" / "flops-tasks" / "locks"]
    after = frozenset(
        p.name
        for p in workdir.iterdir()
        if p.name != ".local" or list((p / "state" / "flops-tasks").iterdir()) != locks_only
    )
    return Ran(returncode, output, prep.before, after, prep.cfg)


def run_case(case: Case, workdir: Path) -> Ran:
    """One case: ``inv`` started as a subprocess, as from a shell."""
    prep = prepare(case, workdir)
    proc = subprocess.run(
        prep.argv,
        cwd=workdir,
        env=prep.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    return finish(prep, proc.returncode, (proc.stdout + proc.stderr).decode(errors="replace"))


def run_cases(cases: dict[str, tuple[Case, Path]]) -> dict[str, Ran]:
    """Many cases, each ``inv`` in its own process forked from one that has imported the
    libraries (``inv_forks.py``): the catalogue's hundreds of runs skip Python's start-up."""
    preps = {key: prepare(case, workdir) for key, (case, workdir) in cases.items()}
    outs = {
        key: (prep.workdir / ".inv-out", prep.workdir / ".inv-err") for key, prep in preps.items()
    }
    requests = "".join(
        json.dumps(
            {
                "key": key,
                "argv": prep.argv,
                "cwd": str(prep.workdir),
                "env": prep.env,
                "out": str(outs[key][0]),
                "err": str(outs[key][1]),
            }
        )
        + "\n"
        for key, prep in preps.items()
    )
    proc = subprocess.run(
        [sys.executable, str(FORKS), str(2 * (os.cpu_count() or 1))],
        input=requests,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    codes = dict(line.split(" ") for line in proc.stdout.splitlines())
    assert set(codes) == set(preps), proc.stdout + proc.stderr
    ran = {}
    for key, prep in preps.items():
        out, err = outs[key]
        output = (out.read_bytes() + err.read_bytes()).decode(errors="replace")
        out.unlink()
        err.unlink()
        ran[key] = finish(prep, int(codes[key]), output)
    return ran


def assert_refused(ran: Ran, needles: tuple[str, ...]) -> None:
    assert "Traceback" not in ran.output, ran.output
    assert ran.returncode != 0, ran.output
    lines = ran.output.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].strip(), f"expected one line, got:\n{ran.output}"
    for needle in needles:
        needle = needle.replace(CFG, ran.cfg)
        assert needle in lines[0], f"{needle!r} not named in: {lines[0]}"
    assert ran.after == ran.before, f"files appeared: {sorted(ran.after - ran.before)}"


def p(case_id: str, *args: str, needles: tuple[str, ...] | str, marks=(), **kw):
    needles = (needles,) if isinstance(needles, str) else needles
    return pytest.param(Case(tuple(args), needles, **kw), id=case_id, marks=marks)


def cfg_case(case_id: str, flops: dict, key: str, marks=(), task: str = "env", **kw):
    """A config value refused at load: the line names the key and the config file."""
    return p(case_id, task, needles=(key, CFG), flops=flops, marks=marks, **kw)


def yaml_case(case_id: str, raw: bytes, *needles: str, marks=(), name: str = "c.yaml"):
    return p(case_id, "env", needles=needles or (CFG,), raw=raw, marks=marks, config_name=name)


# -- flags ----------------------------------------------------------------------------

HOST_CASES = [
    p("builder-host-semicolon", "prepare-builder", "--host", "a;b", needles="'a;b'"),
    p("builder-host-empty-no-inventory", "prepare-builder", "--host", "", needles="--host"),
    p("builder-host-port-99999", "prepare-builder", "--host", "u@h:99999", needles="99999"),
    p("builder-host-port-0", "prepare-builder", "--host", "h:0", needles="port must be 1-65535"),
    p(
        "builder-host-command-substitution",
        "prepare-builder",
        "--host",
        "$(touch PWNED)",
        needles="$(touch PWNED)",
    ),
    p(
        "builder-host-backticks",
        "prepare-builder",
        "--host",
        "`touch PWNED`",
        needles="`touch PWNED`",
    ),
    p("builder-host-pipe", "prepare-builder", "--host", "a|touch PWNED", needles="a|touch"),
    p(
        "builder-host-path-traversal",
        "prepare-builder",
        "--host",
        "../../etc/passwd",
        needles="../../etc/passwd",
    ),
    p("builder-host-newline", "prepare-builder", "--host", "a\nb", needles="'a\\nb'"),
    p(
        "builder-host-option-injection",
        "prepare-builder",
        "--host=-oProxyCommand=touch_PWNED",
        needles="-oProxyCommand",
    ),
    p("builder-host-too-long", "prepare-builder", "--host", "h" * 300, needles="h" * 300),
    p(
        "builder-host-superscript-port",
        "prepare-builder",
        "--host",
        "h:\u00b2",
        needles="port must be 1-65535",
    ),
    p("builder-host-list-empty-entry", "prepare-builder", "--host", "a,,b", needles="empty entry"),
    p(
        "builder-host-list-duplicate",
        "prepare-builder",
        "--host",
        "a,root@a",
        needles="listed twice",
    ),
    p("builder-host-user-backticks", "prepare-builder", "--host", "`id`@h", needles="invalid user"),
    p(
        "builder-push-check-bad-host",
        "prepare-builder",
        "--push-check",
        "--host",
        "h;id",
        needles="'h;id'",
    ),
    p("learner-host-semicolon", "prepare-learner", "--host", "h;id", needles="'h;id'"),
]

# mounted read-write into the sidecar: refused as learner data dirs (the full list is in
# test_config.py; these go through the real CLI, as a flag and as a config value)
DANGEROUS_DATA_DIRS = ["/", "/etc", "/proc/1/root", "/var/lib/docker", "//usr/", "/data:/etc"]

LEARNER_FLAG_CASES = [
    *[
        p(
            f"learner-data-dir-system-{d}",
            "prepare-learner",
            "--host",
            UNREACHABLE,
            "--data-dir",
            d,
            needles=f"--data-dir {d!r}",
        )
        for d in DANGEROUS_DATA_DIRS
    ],
    p(
        "learner-data-dir-relative",
        "prepare-learner",
        "--host",
        UNREACHABLE,
        "--data-dir",
        "relative",
        needles="--data-dir 'relative'",
    ),
    p(
        "learner-data-dir-dotdot",
        "prepare-learner",
        "--host",
        UNREACHABLE,
        "--data-dir",
        "/a/../b",
        needles="'/a/../b'",
    ),
    p(
        "learner-data-dir-tilde",
        "prepare-learner",
        "--host",
        UNREACHABLE,
        "--data-dir",
        "~/data",
        needles="'~/data'",
    ),
    p(
        "learner-data-dir-newline",
        "prepare-learner",
        "--host",
        UNREACHABLE,
        "--data-dir",
        "/a\nb",
        needles="--data-dir",
    ),
    p(
        "learner-image-empty",
        "prepare-learner",
        "--host",
        UNREACHABLE,
        "--image",
        "",
        needles="--image ''",
    ),
    p(
        "learner-image-space",
        "prepare-learner",
        "--host",
        UNREACHABLE,
        "--image",
        "img --privileged",
        needles="'img --privileged'",
    ),
    p(
        "learner-image-option",
        "prepare-learner",
        "--host",
        UNREACHABLE,
        "--image=--privileged",
        needles="'--privileged'",
    ),
    p(
        "learner-image-newline",
        "prepare-learner",
        "--host",
        UNREACHABLE,
        "--image",
        "img\n--privileged",
        needles="--image",
    ),
]

STACK_FLAG_CASES = [
    p("reset-service-unknown", "reset", "--service", "nope", needles="'nope'"),
    p("reset-service-empty", "reset", "--service", "", needles="unknown service ''"),
    p("reset-service-traversal", "reset", "--service", "../x", needles="'../x'"),
    p(
        "reset-service-with-registry",
        "reset",
        "--service",
        "flops_db",
        "--registry",
        needles="--registry",
    ),
    p("reset-service-with-db", "reset", "--service", "flops_db", "--db", needles="--db"),
    # DOCKER_HOST points nowhere: while this is a bug the docker CLI fails to connect
    p(
        "reset-service-with-recreate",
        "reset",
        "--service",
        "flops_db",
        "--recreate",
        needles="--recreate",
    ),
    p("logs-service-traversal", "logs", "--service", "../x", needles="'../x'"),
    p(
        "logs-service-command-substitution",
        "logs",
        "--service",
        "$(touch PWNED)",
        needles="$(touch PWNED)",
    ),
    p("testbed-workers-0", "testbed.up", "--workers", "0", needles="--workers"),
    p("testbed-workers-99", "testbed.up", "--workers", "99", needles="got 99"),
    p("testbed-workers-huge", "testbed.up", "--workers", "9" * 30, needles="9" * 30),
    p("testbed-workers-abc", "testbed.up", "--workers", "abc", needles="--workers"),
    p("testbed-workers-float", "testbed.up", "--workers", "1.5", needles="--workers"),
    p("testbed-workers-empty", "testbed.up", "--workers", "", needles="--workers"),
    p(
        "testbed-placement-unknown",
        "testbed.up",
        "--placement",
        "everywhere",
        needles=("--placement must be split or remote", "'everywhere'"),
    ),
    p("unknown-flag", "prepare-builder", "--bogus", needles="--bogus"),
    p("unknown-task", "no-such-task", needles="no-such-task"),
]

DEV_IMAGES_CASES = [
    # refused before any worker, engine or registry is asked (the hosts cannot be reached)
    p(
        "dev-images-not-a-checkout",
        "dev-images",
        "--addon",
        str(ROOT),
        "--component",
        "ml-data-server",
        "--host",
        UNREACHABLE,
        needles=(str(ROOT), "is not an addon-FLOps checkout"),
    ),
    p(
        "dev-images-missing-checkout",
        "dev-images",
        "--addon",
        "/nonexistent/addon-FLOps",
        "--component",
        "ml-data-server",
        needles=("/nonexistent/addon-FLOps", "is not an addon-FLOps checkout"),
    ),
    p(
        "dev-images-unknown-component",
        "dev-images",
        "--addon",
        str(ROOT),
        "--component",
        "ml-data-server,flops-manager",
        needles=("unknown component 'flops-manager'", "mock-data-provider"),
    ),
    p(
        "dev-images-empty-component",
        "dev-images",
        "--component",
        ",",
        needles="--component is empty",
    ),
    p(
        "dev-images-offline-image-builder",
        "dev-images",
        "--component",
        "image-builder",
        needles=("image-builder cannot be built offline", "flops.addon.build"),
        flops={"addon": {"build": "offline"}},
    ),
    p(
        "dev-images-platform-unknown",
        "dev-images",
        "--component",
        "ml-data-server",
        "--platform",
        "linux/s390x",
        needles="bad --platform 'linux/s390x'",
    ),
    p(
        "dev-images-restore-with-addon",
        "dev-images",
        "--restore",
        "--addon",
        str(ROOT),
        needles="--restore",
    ),
    p(
        "dev-images-restore-unknown-component",
        "dev-images",
        "--restore",
        "--component",
        "nope",
        "--host",
        UNREACHABLE,
        needles="unknown component 'nope'",
    ),
    p("dev-images-host-semicolon", "dev-images", "--restore", "--host", "h;id", needles="'h;id'"),
]

WORKFLOW_CASES = [
    p("learner-data-tag-missing", "learner-data", "--src", SAMPLE, needles="--tag is missing"),
    p(
        "learner-data-tag-dot",
        "learner-data",
        "--tag",
        "mnist.v2",
        "--src",
        SAMPLE,
        needles=("'mnist.v2'", "first dot"),
    ),
    p("learner-data-tag-dash", "learner-data", "--tag=-x", "--src", SAMPLE, needles="'-x'"),
    p("learner-data-tag-comma", "learner-data", "--tag", "a,b", "--src", SAMPLE, needles="'a,b'"),
    p("learner-data-tag-space", "learner-data", "--tag", "a b", "--src", SAMPLE, needles="'a b'"),
    p(
        "learner-data-tag-hostile",
        "learner-data",
        "--tag",
        "$(touch PWNED)",
        "--src",
        SAMPLE,
        needles="'$(touch PWNED)'",
    ),
    p("learner-data-src-missing", "learner-data", "--tag", "m", needles="--src is missing"),
    p("learner-data-src-empty", "learner-data", "--tag", "m", "--src=", needles="--src"),
    p(
        "learner-data-src-empty-entry",
        "learner-data",
        "--tag",
        "m",
        "--src",
        "/etc/hostname,,x",
        needles="empty entry",
    ),
    p(
        "learner-data-src-no-such-file",
        "learner-data",
        "--tag",
        "m",
        "--src",
        "/no-such-dir/$(touch PWNED)",
        needles="/no-such-dir/$(touch PWNED)",
    ),
    p(
        "learner-data-src-glob-no-match",
        "learner-data",
        "--tag",
        "m",
        "--src",
        "/no-such-dir/*.parquet",
        needles="matches no file",
    ),
    p(
        "learner-data-src-corrupt-footer",
        "learner-data",
        "--tag",
        "m",
        "--src",
        CORRUPT_FOOTER,
        needles=("corrupt-footer.parquet: its Parquet footer does not parse", "nothing copied"),
    ),
    p(
        "learner-data-src-two-schemas",
        "learner-data",
        "--tag",
        "m",
        "--src",
        f"{SAMPLE},{OTHER_SCHEMA}",
        needles=("schemas differ", "nothing copied"),
    ),
    p(
        "learner-data-src-folder-without-parquet",
        "learner-data",
        "--tag",
        "m",
        "--src",
        "/etc",
        needles="no parquet files",
    ),
    p(
        "learner-data-src-not-parquet",
        "learner-data",
        "--tag",
        "m",
        "--src",
        "/etc/hostname",
        needles=("/etc/hostname", "not a parquet file"),
    ),
    # one bad file among good ones: refused before any host is contacted
    p(
        "learner-data-one-bad-file",
        "learner-data",
        "--tag",
        "m",
        "--src",
        f"{SAMPLE},/etc/hostname",
        "--host",
        UNREACHABLE,
        needles="/etc/hostname",
    ),
    p(
        "learner-data-force-is-gone",
        "learner-data",
        "--tag",
        "m",
        "--src",
        "/etc/hostname",
        "--force",
        needles="--force",
    ),
    p(
        "learner-data-bad-host",
        "learner-data",
        "--tag",
        "m",
        "--src",
        SAMPLE,
        "--host",
        "a;touch PWNED",
        needles="'a;touch PWNED'",
    ),
    p("learner-data-list-with-src", "learner-data", "--list", "--src", SAMPLE, needles="--list"),
    p("learner-data-list-bad-tag", "learner-data", "--list", "--tag", "a.b", needles="'a.b'"),
    p("learner-data-list-bad-host", "learner-data", "--list", "--host", "a|b", needles="'a|b'"),
    p("clear-images-bad-host", "clear-images", "--host", "a|b", needles="'a|b'"),
    p("clear-images-no-inventory", "clear-images", needles="--host"),
    p(
        "clear-images-bad-address",
        "clear-images",
        "--host",
        UNREACHABLE,
        needles="0.0.0.0",
        env={"FLOPS_IMAGE_REGISTRY_IP": "0.0.0.0"},
    ),
    p(
        "clear-apps-bad-address",
        "clear-apps",
        "--yes",
        needles="SYSTEM_MANAGER_IP",
        env={"SYSTEM_MANAGER_IP": "0.0.0.0"},
    ),
    p(
        "oakestra-apps-loopback-address",
        "oakestra-apps",
        needles=("SYSTEM_MANAGER_IP", "loopback"),
        env={"SYSTEM_MANAGER_IP": "127.0.0.1"},
    ),
    p(
        "clear-images-registry-only-bad-host",
        "clear-images",
        "--registry-only",
        "--host",
        "a;b",
        needles="'a;b'",
    ),
    p("demo-workers-0", "demo", "--workers", "0", needles="--workers"),
    p("demo-workers-abc", "demo", "--workers", "abc", needles="--workers"),
    cfg_case(
        "doctor-bad-config", {"ssh": {"host_keys": "off"}}, "flops.ssh.host_keys", task="doctor"
    ),
    cfg_case(
        "bootstrap-bad-config",
        {"stack": {"bind_address": "any"}},
        "flops.stack.bind_address",
        task="bootstrap",
    ),
]

# -- config files ---------------------------------------------------------------------
ALIAS_BOMB = b"flops:\n  builder: {name: x}\n" + b"".join(
    b"l%d: &l%d [%s]\n" % (i, i, b",".join([b"*l%d" % (i - 1) if i else b"x"] * 9))
    for i in range(9)
)
PY_CONFIG = b"open('PWNED', 'w').write('ran')\nflops = {}\n"

FILE_CASES = [
    p("config-file-missing", "env", needles=("not found", CFG), write_config=False),
    # Invoke copies and formats the whole config: 9 levels of 9 aliases hung every run
    yaml_case("yaml-alias-bomb", ALIAS_BOMB, CFG, "aliases"),
    yaml_case("yaml-self-referencing-alias", b"flops: &a {x: *a}\n", CFG, "nested"),
    yaml_case(
        "yaml-nested-thousands-deep", b"flops: " + b"[" * 5000 + b"]" * 5000 + b"\n", CFG, "nested"
    ),
    yaml_case(
        "json-nested-thousands-deep",
        b'{"flops": ' + b"[" * 100000 + b"]" * 100000 + b"}",
        CFG,
        "nested",
        name="c.json",
    ),
    yaml_case("yaml-integer-key", b"flops:\n  ssh:\n    1: x\n", CFG, "key 1", "flops.ssh"),
    yaml_case("yaml-boolean-key", b"flops:\n  yes: 1\n", CFG, "key True"),
    yaml_case("python-config-file-is-not-run", PY_CONFIG, CFG, "not read", name="c.py"),
    yaml_case("yaml-unclosed-bracket", b"flops: [unclosed\n", CFG, "YAML"),
    yaml_case("yaml-top-level-list", b"- flops\n- x\n", CFG, "mapping"),
    yaml_case("yaml-not-utf8", b'flops:\n  ssh: {user: "\xff\xfe"}\n', CFG),
    yaml_case("config-unsupported-extension", b"flops: {}\n", CFG, name="flops.conf"),
    yaml_case("json-syntax-error", b'{"flops": ', CFG, name="c.json"),
    yaml_case("flops-is-a-number", b"flops: 5\n", "flops"),
    cfg_case("section-ssh-is-a-number", {"ssh": 5}, "flops.ssh"),
    cfg_case("section-inventory-is-a-list", {"inventory": ["a"]}, "flops.inventory"),
    cfg_case("section-addresses-is-a-string", {"addresses": GOOD_IP}, "flops.addresses"),
    cfg_case(
        "leaf-known-hosts-is-a-mapping", {"ssh": {"known_hosts": {"a": 1}}}, "flops.ssh.known_hosts"
    ),
    cfg_case("unknown-top-level-key", {"bogus": 1}, "flops.bogus"),
    cfg_case("unknown-ssh-key", {"ssh": {"password": "x"}}, "flops.ssh.password"),
    cfg_case(
        "unknown-inventory-setting", {"inventory": {"w1": {"password": "x"}}}, "flops.inventory.w1"
    ),
]


def acting_case(case_id: str, top: dict, key: str, *args: str):
    """A key Fabric or Invoke would act on, beside a valid ``flops`` section: refused at
    load, naming the key and the file (``args``: a task that connects)."""
    data = {"flops": base_config(Path("{dir}")), **top}
    raw = yaml.safe_dump(data).encode()
    return p(case_id, *(args or ("env",)), needles=(f"{key} (from {CFG})",), raw=raw)


# Fabric and Invoke act on these: a command run here, keys or an agent offered, code imported
ACTING_CASES = [
    acting_case(
        "fabric-gateway-runs-no-command",
        {"gateway": "touch PWNED"},
        "gateway",
        "prepare-builder",
        "--host",
        GOOD_IP,
    ),
    acting_case(
        "fabric-connect_kwargs",
        {"connect_kwargs": {"key_filename": ["/root/.ssh/id_rsa"]}},
        "connect_kwargs",
    ),
    acting_case(
        "fabric-ssh_config_path", {"ssh_config_path": "/tmp/ssh_config"}, "ssh_config_path"
    ),
    acting_case("fabric-load_ssh_configs", {"load_ssh_configs": True}, "load_ssh_configs"),
    acting_case("invoke-runners", {"runners": {"local": "os.system"}}, "runners"),
    acting_case(
        "fabric-authentication", {"authentication": {"identities": ["/x"]}}, "authentication"
    ),
    acting_case("fabric-forward_agent", {"forward_agent": True}, "forward_agent"),
    acting_case(
        "invoke-tasks.executor_class",
        {"tasks": {"executor_class": "this.X"}},
        "tasks.executor_class",
    ),
    acting_case("fabric-run.env", {"run": {"env": {"BASH_ENV": "/tmp/x"}}}, "run.env"),
    p(
        "env-invoke-tasks.executor_class",
        "env",
        needles="INVOKE_TASKS_EXECUTOR_CLASS",
        env={"INVOKE_TASKS_EXECUTOR_CLASS": "this.X"},
    ),
]

# one wrong type for every leaf key of DEFAULTS (a number where a string is expected, etc.)
WRONG_TYPES = {
    ("ssh", "user"): 5,
    ("ssh", "key"): 5,
    ("ssh", "known_hosts"): 5,
    ("ssh", "host_keys"): True,
    ("ssh", "connect_timeout"): "10",
    ("ssh", "command_timeout"): [900],
    ("ssh", "host_timeout"): "1800",
    ("ssh", "parallel"): 2.5,
    ("ssh", "sudo_password_env"): 5,
    **{("addresses", var.lower()): [GOOD_IP] for var in ADDRESS_VARS},
    ("registry", "address"): 5,
    ("registry", "port"): "5073",
    ("stack", "project"): 5,
    ("stack", "compose_file"): ["a.yml"],
    ("stack", "overrides"): "x.yml",
    ("stack", "env_file"): 5,
    ("stack", "network"): 5,
    ("stack", "bind_address"): 0,
    ("stack", "manager_image"): 5,
    ("stack", "health_timeout"): "300",
    ("stack", "db_timeout"): "5",
    ("stack", "placement"): "w1",
    ("stack", "omit"): ["flops_manager"],
    ("addon", "path"): 5,
    ("addon", "url"): 5,
    ("addon", "ref"): 2,
    ("addon", "build"): 5,
    ("builder", "name"): 5,
    ("builder", "driver"): 5,
    ("learner", "image"): 5,
    ("learner", "data_dir"): 5,
    ("learner", "publish_address"): 5,
    ("oakestra", "user"): 5,
    ("oakestra", "password_env"): 5,
    ("oakestra", "port"): "10000",
    ("oakestra", "timeout"): "15",
}
TYPE_CASES = [
    cfg_case(f"type-{section}.{key}", {section: {key: value}}, f"flops.{section}.{key}")
    for (section, key), value in WRONG_TYPES.items()
]

VALUE_CASES = [
    cfg_case("ssh.user-semicolon", {"ssh": {"user": "a;b"}}, "flops.ssh.user"),
    cfg_case("ssh.known_hosts-null", {"ssh": {"known_hosts": None}}, "flops.ssh.known_hosts"),
    cfg_case("ssh.host_timeout-huge", {"ssh": {"host_timeout": 1e9}}, "flops.ssh.host_timeout"),
    cfg_case("ssh.parallel-zero", {"ssh": {"parallel": 0}}, "flops.ssh.parallel"),
    cfg_case(
        "registry.address-traversal", {"registry": {"address": "../x"}}, "flops.registry.address"
    ),
    cfg_case(
        "registry.address-command", {"registry": {"address": "$(id)"}}, "flops.registry.address"
    ),
    cfg_case(
        "registry.address-ipv6-zone-id",
        {"registry": {"address": "fe80::1%a;b|c"}},
        "flops.registry.address",
    ),
    cfg_case("registry.port-65536", {"registry": {"port": 65536}}, "flops.registry.port"),
    cfg_case("stack.project-traversal", {"stack": {"project": "../x"}}, "flops.stack.project"),
    cfg_case(
        "stack.env_file-newline", {"stack": {"env_file": "/tmp/a\nb"}}, "flops.stack.env_file"
    ),
    cfg_case(
        "stack.bind_address-name",
        {"stack": {"bind_address": "localhost"}},
        "flops.stack.bind_address",
    ),
    cfg_case(
        "stack.bind_address-hostile",
        {"stack": {"bind_address": "0.0.0.0;rm"}},
        "flops.stack.bind_address",
    ),
    cfg_case("addon.ref-newline", {"addon": {"ref": "main\nx"}}, "flops.addon.ref"),
    cfg_case("addon.build-unknown", {"addon": {"build": "fast"}}, "flops.addon.build"),
    cfg_case("stack.omit-unknown", {"stack": {"omit": {"mongo": ""}}}, "flops.stack.omit.mongo"),
    cfg_case("state_dir-type", {"state_dir": 5}, "flops.state_dir"),
    cfg_case("state_dir-relative", {"state_dir": "state"}, "flops.state_dir"),
    cfg_case(
        "learner.data_dir-dotdot",
        {"learner": {"data_dir": "/data/../etc"}},
        "flops.learner.data_dir",
    ),
    cfg_case(
        "learner.data_dir-newline",
        {"learner": {"data_dir": "/data\n/etc"}},
        "flops.learner.data_dir",
    ),
    cfg_case("inventory-name-traversal", {"inventory": {"../x": {}}}, "flops.inventory.../x"),
    cfg_case(
        "inventory-host-semicolon",
        {"inventory": {"w1": {"host": "a;b"}}},
        "flops.inventory.w1.host",
    ),
    cfg_case("inventory-roles-unknown", {"inventory": {"w1": {"roles": ["chef"]}}}, "'chef'"),
    cfg_case(
        "config-error-wins-over-host-flag",
        {"ssh": {"parallel": 0}},
        "flops.ssh.parallel",
        task="prepare-builder",
    ),
    # the source named must be the one whose value is used: Invoke ranks -f above INVOKE_*
    cfg_case(
        "file-value-shadows-env-var",
        {"ssh": {"host_keys": "yolo"}},
        "flops.ssh.host_keys",
        env={"INVOKE_FLOPS_SSH_HOST_KEYS": "strict"},
    ),
    # NUL bytes can only arrive through a config file (argv and environ cannot hold them)
    cfg_case(
        "learner.data_dir-nul", {"learner": {"data_dir": "/data\0x"}}, "flops.learner.data_dir"
    ),
    cfg_case(
        "stack.manager_image-nul",
        {"stack": {"manager_image": "img\0x"}},
        "flops.stack.manager_image",
    ),
    cfg_case(
        "stack.env_file-nul", {"stack": {"env_file": "{dir}/flops\0.env"}}, "flops.stack.env_file"
    ),
    cfg_case("learner.image-option", {"learner": {"image": "--privileged"}}, "flops.learner.image"),
    # values that reach docker or git as arguments must not be options
    cfg_case("builder.name-option", {"builder": {"name": "--driver-opt=x"}}, "flops.builder.name"),
    # (every such key is checked in-process: test_config.py)
    cfg_case("stack.network-option", {"stack": {"network": "--internal"}}, "flops.stack.network"),
    cfg_case(
        "addon.url-option", {"addon": {"url": "--upload-pack=touch PWNED"}}, "flops.addon.url"
    ),
    # below 1 s Fabric's int() made it no timeout at all
    cfg_case(
        "ssh.connect_timeout-half-a-second",
        {"ssh": {"connect_timeout": 0.5}},
        "flops.ssh.connect_timeout",
    ),
    cfg_case(
        "learner.publish_address-hostile",
        {"learner": {"publish_address": "172.17.0.1:1:1 -v /:/x"}},
        "flops.learner.publish_address",
    ),
    *[
        cfg_case(
            f"learner.data_dir-system-{d}", {"learner": {"data_dir": d}}, "flops.learner.data_dir"
        )
        for d in DANGEROUS_DATA_DIRS
    ],
    cfg_case(
        "oakestra.user-empty", {"oakestra": {"user": ""}}, "flops.oakestra.user", task="clear-apps"
    ),
    cfg_case(
        "oakestra.password_env-digit",
        {"oakestra": {"password_env": "1PW"}},
        "flops.oakestra.password_env",
        task="clear-apps",
    ),
    cfg_case(
        "oakestra.password_env-hostile",
        {"oakestra": {"password_env": "PW;id"}},
        "flops.oakestra.password_env",
        task="oakestra-apps",
    ),
    # the value is sent away (login, sudo): never another program's secret
    cfg_case(
        "oakestra.password_env-foreign-secret",
        {"oakestra": {"password_env": "AWS_SECRET_ACCESS_KEY"}},
        "flops.oakestra.password_env",
        task="oakestra-apps",
    ),
    cfg_case(
        "ssh.sudo_password_env-foreign-secret",
        {"ssh": {"sudo_password_env": "GITHUB_TOKEN"}},
        "flops.ssh.sudo_password_env",
        task="doctor",
    ),
    cfg_case(
        "oakestra.port-0", {"oakestra": {"port": 0}}, "flops.oakestra.port", task="clear-apps"
    ),
    cfg_case(
        "oakestra.timeout-0",
        {"oakestra": {"timeout": 0}},
        "flops.oakestra.timeout",
        task="clear-apps",
    ),
]

ENV_FILE_CASES = [
    p("env_file-is-a-directory", "env", needles="director", flops={"stack": {"env_file": "{dir}"}}),
    p(
        "env_file-parent-is-a-file",
        "env",
        needles=("/etc/hostname/flops.env", "not a directory"),
        flops={"stack": {"env_file": "/etc/hostname/flops.env"}},
    ),
]

# INVOKE_FLOPS_* variables: uncastable, out of range, hostile
ENV_VAR_CASES = [
    p(
        "env-ssh.parallel-abc",
        "env",
        needles="INVOKE_FLOPS_SSH_PARALLEL",
        env={"INVOKE_FLOPS_SSH_PARALLEL": "abc"},
    ),
    p(
        "env-registry.port-x",
        "env",
        needles="INVOKE_FLOPS_REGISTRY_PORT",
        env={"INVOKE_FLOPS_REGISTRY_PORT": "x"},
    ),
    p(
        "env-ssh.command_timeout-nan",
        "env",
        needles="INVOKE_FLOPS_SSH_COMMAND_TIMEOUT",
        env={"INVOKE_FLOPS_SSH_COMMAND_TIMEOUT": "nan"},
    ),
    p(
        "env-stack.overrides-list",
        "env",
        needles="INVOKE_FLOPS_STACK_OVERRIDES",
        env={"INVOKE_FLOPS_STACK_OVERRIDES": "a.yml,b.yml"},
    ),
    p(
        "env-ssh.user-hostile",
        "env",
        needles="INVOKE_FLOPS_SSH_USER",
        env={"INVOKE_FLOPS_SSH_USER": "root;id"},
    ),
    p(
        "env-stack.bind_address-hostile",
        "env",
        needles="INVOKE_FLOPS_STACK_BIND_ADDRESS",
        env={"INVOKE_FLOPS_STACK_BIND_ADDRESS": "0.0.0.0;rm -rf /"},
    ),
    p(
        "env-learner.data_dir-traversal",
        "env",
        needles="INVOKE_FLOPS_LEARNER_DATA_DIR",
        env={"INVOKE_FLOPS_LEARNER_DATA_DIR": "../../etc"},
    ),
    p(
        "env-registry.address-backticks",
        "env",
        needles="INVOKE_FLOPS_REGISTRY_ADDRESS",
        env={"INVOKE_FLOPS_REGISTRY_ADDRESS": "`touch PWNED`"},
    ),
]

# the six address variables of the FLOps docs, for `inv env`
ADDRESS_VALUES = {
    "unspecified": "0.0.0.0",
    "loopback": "127.0.0.1",
    "name": "localhost",
    "hostile": "1.2.3.4;rm -rf /",
}
ADDRESS_CASES = [
    p(f"{var}-{label}", "env", needles=(var, value), env={var: value})
    for var in ADDRESS_VARS
    for label, value in ADDRESS_VALUES.items()
] + [
    p("FLOPS_MANAGER_IP-ipv6-loopback", "env", needles="loopback", env={"FLOPS_MANAGER_IP": "::1"}),
    p(
        "FLOPS_MANAGER_IP-multicast",
        "env",
        needles="224.0.0.1",
        env={"FLOPS_MANAGER_IP": "224.0.0.1"},
    ),
    p(
        "FLOPS_MANAGER_IP-newline",
        "env",
        needles="'1.2.3.4\\nrm'",
        env={"FLOPS_MANAGER_IP": "1.2.3.4\nrm"},
    ),
    p(
        "FLOPS_MANAGER_IP-ipv6-zone-id",
        "env",
        needles="FLOPS_MANAGER_IP",
        env={"FLOPS_MANAGER_IP": "2001:db8::1%a;b|c"},
    ),
    p("FLOPS_MANAGER_IP-long", "env", needles="1" * 5000, env={"FLOPS_MANAGER_IP": "1" * 5000}),
    cfg_case(
        "config-address-hostile",
        {"addresses": {"artifact_store_ip": "$(touch PWNED)"}},
        "ARTIFACT_STORE_IP",
    ),
    cfg_case(
        "address-checked-for-prepare",
        {"addresses": {"flops_manager_ip": "0.0.0.0"}},
        "FLOPS_MANAGER_IP",
        task="prepare-builder",
    ),
]

ALL_CASES = (
    HOST_CASES
    + LEARNER_FLAG_CASES
    + STACK_FLAG_CASES
    + WORKFLOW_CASES
    + DEV_IMAGES_CASES
    + FILE_CASES
    + ACTING_CASES
    + TYPE_CASES
    + VALUE_CASES
    + ENV_FILE_CASES
    + ENV_VAR_CASES
    + ADDRESS_CASES
)


@pytest.fixture(scope="module")
def outputs(request, tmp_path_factory) -> dict[str, Ran]:
    """Run the selected cases once, in parallel, each in a forked process (``run_cases``)."""
    wanted = {}
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and isinstance(callspec.params.get("case"), Case):
            wanted[callspec.id] = callspec.params["case"]
    root = tmp_path_factory.mktemp("bad-input")
    return run_cases(
        {cid: (case, root / f"case{n}") for n, (cid, case) in enumerate(wanted.items())}
    )


def test_every_defaults_key_has_a_wrong_type_case():
    leaves = {
        (section, key)
        for section, value in DEFAULTS.items()
        if isinstance(value, dict)
        for key in value
    }
    assert leaves == set(WRONG_TYPES)


@pytest.mark.parametrize("case", ALL_CASES)
def test_bad_input_is_refused_in_one_line(case, outputs, request):
    assert_refused(outputs[request.node.callspec.id], case.needles)


# -- behaviour around the catalogue ---------------------------------------------------
def test_forked_runs_match_subprocess_runs(tmp_path):
    """The catalogue's forked runs give what ``inv`` started from a shell gives: exit code,
    output and files, for refusals of every kind and for a run that succeeds."""
    picked = [
        param.values[0]
        for param in (*HOST_CASES[:2], *VALUE_CASES[:2], *ENV_VAR_CASES[:1], *FILE_CASES[:2])
    ]
    picked.append(Case(("--dry", "env"), ()))
    forked = run_cases({str(n): (case, tmp_path / f"f{n}") for n, case in enumerate(picked)})
    for n, case in enumerate(picked):
        alone = run_case(case, tmp_path / f"s{n}")
        mine = forked[str(n)]
        strip = (str(tmp_path / f"f{n}"), str(tmp_path / f"s{n}"))
        assert mine.returncode == alone.returncode, (case, mine.output, alone.output)
        assert mine.output.replace(*strip) == alone.output, case
        assert mine.after - mine.before == alone.after - alone.before, case


def test_base_config_is_accepted(tmp_path):
    """The control: without the bad value, the same config passes (nothing is written)."""
    ran = run_case(Case(("--dry", "env"), ()), tmp_path)
    assert ran.returncode == 0, ran.output
    assert "Traceback" not in ran.output
    assert not (tmp_path / "flops.env").exists()


def test_empty_address_variable_means_unset(tmp_path):
    """``FLOPS_MANAGER_IP=`` is not an address: the config's value is used."""
    ran = run_case(Case(("env", "--json"), (), env={"FLOPS_MANAGER_IP": ""}), tmp_path)
    assert ran.returncode == 0, ran.output
    assert f'"value": "{GOOD_IP}"' in ran.output
    assert not (tmp_path / "flops.env").exists()  # env only reads


@pytest.mark.parametrize(
    "args, what",
    [
        (("redb", "--skip-apps"), "FLOps manager database"),
        (("clear-registry",), "volume flops_management_registry_data"),
        (("reset", "--registry"), "volume flops_management_registry_data"),
        (("reset", "--db", "--skip-apps"), "FLOps manager database"),
        (
            ("reset", "--clean", "--skip-apps"),
            "MLflow backend database (MySQL) (volume flops_management_mlflow_backend_store_data)",
        ),
        (
            ("reset", "--all", "--skip-apps"),
            "FLOps registry images (volume flops_management_registry_data)",
        ),
    ],
    ids=["redb", "clear-registry", "reset-registry", "reset-db", "reset-clean", "reset-all"],
)
def test_destructive_task_checks_the_engine_before_it_asks(tmp_path, args, what):
    """No Docker engine answers: one line saying so, and nothing is asked or listed (the
    listing and the refusal without a terminal: tests/integration/test_stack.py
    ``test_destructive_tasks_refuse_without_a_tty_and_change_nothing``)."""
    ran = run_case(Case(args, ()), tmp_path)
    assert ran.returncode == 1, ran.output
    assert "Traceback" not in ran.output
    assert ran.output.strip().splitlines() == [ran.output.strip()], ran.output
    assert "the Docker engine does not answer" in ran.output
    assert "This will delete" not in ran.output and what not in ran.output
    assert ran.after == ran.before


@pytest.mark.parametrize(
    "args",
    [
        ("redb", "--yes"),
        ("reset", "--db", "--yes"),
        ("reset", "--clean", "--yes"),
        ("fresh-start", "--yes"),
    ],
)
def test_scopes_emptying_the_flops_db_stop_when_oakestra_does_not_answer(tmp_path, args):
    """FLOps' apps go before its database: an unreachable System Manager stops the task
    before anything is deleted, and the line names the flag that skips the step."""
    ran = run_case(Case(args, (), flops={"oakestra": {"timeout": 1}}), tmp_path)
    assert ran.returncode == 1, ran.output
    assert "Traceback" not in ran.output
    line = ran.output.strip()
    assert line.count("\n") == 0, ran.output
    assert "System Manager" in line and "does not answer" in line
    assert "nothing was deleted" in line and line.endswith("pass --skip-apps")
    assert ran.after == ran.before


def test_empty_host_flag_does_not_select_the_inventory(tmp_path):
    inventory = {"w1": {"host": "127.0.0.1", "port": 1, "roles": ["builder"]}}
    ran = run_case(
        Case(("prepare-builder", "--host", ""), (), flops={"inventory": inventory}), tmp_path
    )
    assert_refused(ran, ("--host",))


def test_default_ssh_key_reaches_the_connection(tmp_path):
    """With the default (no key), a closed port is reported as unreachable, not a TypeError."""
    ran = run_case(Case(("prepare-builder", "--host", "127.0.0.1:1", "--json"), ()), tmp_path)
    assert "TypeError" not in ran.output, ran.output
    assert '"unreachable"' in ran.output


def test_fractional_timeout_from_environment_is_accepted(tmp_path):
    ran = run_case(
        Case(("--dry", "env"), (), env={"INVOKE_FLOPS_SSH_CONNECT_TIMEOUT": "1.5"}), tmp_path
    )
    assert ran.returncode == 0, ran.output


def test_unknown_host_key_advice_names_a_real_setting():
    """The advice names config keys that exist, set to values they accept."""
    import re

    from flops_tasks.config import HOST_KEY_POLICIES
    from flops_tasks.ssh import HostUnreachable, _policies

    class Key:
        def get_name(self):
            return "ssh-ed25519"

        def asbytes(self):
            return b"key"

    with pytest.raises(HostUnreachable) as err:
        _policies(Path("/nonexistent/known_hosts"), accept_new=False).missing_host_key(
            None, "[10.0.0.5]:2222", Key()
        )
    advice = re.findall(r"\bflops\.(\w+)\.(\w+): ([\w-]+)", str(err.value))
    assert advice, f"no setting named in: {err.value}"
    for section, key, value in advice:
        assert key in DEFAULTS.get(section, {}), f"flops.{section}.{key} does not exist"
        if (section, key) == ("ssh", "host_keys"):
            assert value in HOST_KEY_POLICIES


def test_the_projects_invoke_yaml_is_read_safely_by_the_stock_inv(tmp_path):
    """tasks.py gives the stock inv a FlopsConfig before it reads the project's invoke.yaml."""
    import shutil

    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(ROOT / "tasks.py", project / "tasks.py")
    (project / "flops_tasks").symlink_to(ROOT / "flops_tasks")
    (project / "invoke.yaml").write_bytes(ALIAS_BOMB)
    proc = subprocess.run(
        [INV, "--search-root", str(project), "--dry", "env"],
        cwd=project,
        env=child_env(tmp_path, Case((), ())),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip() == (
        f"{project}/invoke.yaml: expands to more than 10000 values "
        "(YAML aliases?); write the config out without aliases"
    )
