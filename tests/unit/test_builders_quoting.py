"""No value reaches a shell unquoted: property tests for every builder in commands.py.

Two oracles:

- simple commands (``cmd``-style builders) are parsed back with ``shlex.split`` and must
  give exactly the argv the builder was asked for, every value one intact token;
- builders with shell structure are executed by ``/bin/sh`` in a sandbox whose ``PATH``
  holds only recording stubs for the external programs (``docker``, ``apt-get``,
  ``NodeEngine``, ``sudo``, ``systemctl`` ...) and a few harmless tools (``touch``
  included, so a broken quote *would* create ``PWNED``). A stub writes its argv,
  NUL-separated, to one file per call; the test compares it with the expected argv and
  checks that nothing else appeared in the working directory.

Host-specific constants (``/run/systemd/system``, binfmt paths) are redirected into the
sandbox before a script runs, and a script that still names ``/proc`` is never run.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import inspect
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flops_tasks import commands as C
from flops_tasks import trust
from flops_tasks.env import check_address, host_port
from flops_tasks.errors import FlopsError
from flops_tasks.hosts import Target, parse_host

HOSTILE = [
    "$(touch PWNED)",
    "`touch PWNED`",
    ";touch PWNED",
    "a; touch PWNED #",
    "|touch PWNED",
    "&& touch PWNED",
    "& touch PWNED &",
    ">PWNED",
    "x 2>PWNED",
    "'; touch PWNED; '",
    '"; touch PWNED; "',
    "\\'; touch PWNED #",
    "a\ntouch PWNED",
    "a\rtouch PWNED",
    "${IFS}touch${IFS}PWNED",
    "$HOME",
    "*",
    "?",
    "[a]",
    "~",
    "{a,b}",
    "!!",
    "%s%n",
    "../../etc/passwd",
    "-rf",
    "--help",
    " lead and trail ",
    "\t",
    "é ü 中 \u2028",
    "x" * 3000,
    "",
]
# any text a POSIX argv can carry (no NUL), hostile values mixed in often
VALUE = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        max_size=40,
    ),
)
NON_EMPTY = VALUE.filter(bool)
# the sandbox redirects these host paths inside scripts: a value naming one is not a case
REDIRECTED = (
    "/run/systemd/system",
    "/usr/lib/binfmt.d/",
    C.STATE_DIR,
    C.CONTAINERD_CONFIG,
    C.BINFMT,
)
UNREDIRECTED = VALUE.filter(lambda v: not any(path in v for path in REDIRECTED))
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
EXEC_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# for builders whose every example runs several scripts (HOSTILE values come first anyway)
HEAVY_SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

STUBS = (
    "docker",
    "apt-get",
    "apt-cache",
    "NodeEngine",
    "curl",
    "systemctl",
    "service",
    "update-binfmts",
    "mount",
    "pidof",
    "ip",
    "timeout",
    "sudo",
    "ctr",
    "buildah",
    "dpkg-query",
    "modprobe",
)
TOOLS = (
    "sh",
    "bash",
    "touch",
    "mkdir",
    "chmod",
    "mv",
    "mktemp",
    "base64",
    "rm",
    "grep",
    "head",
    "cat",
    "cp",
    "sleep",
    "sed",
    "ls",
    "true",
    "false",
    "id",
    "sha256sum",
    "od",
    "tr",
    "tail",
    "wc",
    "dd",
    "awk",
    "stat",
    "sort",
    "comm",
    "readlink",
    "setsid",
    "nohup",
    "env",
    "cut",
)

RECORDER = r"""#!/bin/sh
# a stand-in for an external program: record argv (NUL-separated), one file per call
n=0
while [ -e "$FLOPS_REC/call.$n" ]; do n=$((n+1)); done
name=${0##*/}
{ printf '%s\0' "$name"; for a in "$@"; do printf '%s\0' "$a"; done; } > "$FLOPS_REC/call.$n"
last=
for a in "$@"; do last=$a; done
case $last in /tmp/flops-push.*) [ -d "$last" ] && cp -R "$last" "$FLOPS_REC/ctx.$n" ;; esac
[ -f "$FLOPS_REC/out.$name" ] && cat "$FLOPS_REC/out.$name"
[ -f "$FLOPS_REC/rc.$name" ] && exit "$(cat "$FLOPS_REC/rc.$name")"
"""
EXEC_AFTER = {
    # sudo runs what follows "--"; timeout runs what follows its duration
    "sudo": 'while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do shift; done; shift; exec "$@"\n',
    "timeout": 'shift; exec "$@"\n',
}


@dataclass
class Ran:
    rc: int
    stdout: bytes
    stderr: bytes
    calls: list[list[str]]
    work: Path
    sandbox: Path


class Sandbox:
    """A bin dir of stubs and tools; every ``run`` gets fresh record and work dirs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.stubs = root / "stubs"
        self.tools = root / "tools"
        self.stubs.mkdir()
        self.tools.mkdir()
        for name in STUBS:
            path = self.stubs / name
            path.write_text(RECORDER + EXEC_AFTER.get(name, "exit 0\n"))
            path.chmod(0o755)
        for name in TOOLS:
            found = shutil.which(name)
            if found:
                (self.tools / name).symlink_to(found)
        assert (self.tools / "touch").exists(), "touch is needed to detect injections"

    def run(
        self,
        script: str,
        out: dict[str, bytes] | None = None,
        rc: dict[str, int] | None = None,
        files: dict[str, bytes] | None = None,
        extra_path: Path | None = None,
    ) -> Ran:
        base = Path(tempfile.mkdtemp(dir=self.root))
        rec, work = base / "rec", base / "work"
        rec.mkdir()
        work.mkdir()
        # only the systemd check, never a value that happens to be that path
        script = script.replace("test -d /run/systemd/system", f"test -d {base / 'no-systemd'}")
        script = script.replace("/usr/lib/binfmt.d/", f"{base}/binfmt.d/")
        script = script.replace(C.BINFMT + "/register", str(base / "binfmt-register"))
        script = script.replace(C.STATE_DIR, str(base / "state"))
        script = script.replace(C.CONTAINERD_CONFIG, str(base / "containerd" / "config.toml"))
        assert C.BINFMT not in script, script  # never touch the kernel's binfmt_misc
        for name, data in (out or {}).items():
            (rec / f"out.{name}").write_bytes(data)
        for name, code in (rc or {}).items():
            (rec / f"rc.{name}").write_text(str(code))
        for name, data in (files or {}).items():
            (base / name).parent.mkdir(parents=True, exist_ok=True)
            (base / name).write_bytes(data)
        path = (f"{extra_path}:" if extra_path else "") + f"{self.stubs}:{self.tools}"
        proc = subprocess.run(
            ["/bin/sh", "-c", script],
            cwd=work,
            capture_output=True,
            timeout=30,
            env={"PATH": path, "FLOPS_REC": str(rec), "HOME": str(work), "LC_ALL": "C.UTF-8"},
        )
        calls = []
        n = 0
        while (rec / f"call.{n}").exists():
            raw = (rec / f"call.{n}").read_bytes().split(b"\0")[:-1]
            calls.append([part.decode("utf-8", "surrogateescape") for part in raw])
            n += 1
        return Ran(proc.returncode, proc.stdout, proc.stderr, calls, work, base)


@pytest.fixture(scope="module")
def box():
    # a short path of safe characters: it is substituted into scripts unquoted
    root = Path(tempfile.mkdtemp(prefix="flops-quoting-"))
    yield Sandbox(root)
    shutil.rmtree(root, ignore_errors=True)


def assert_clean(ran: Ran, allowed: set[str] | None = None) -> None:
    """No stray file (PWNED or a redirect target) in the working directory."""
    left = {p.name for p in ran.work.iterdir()}
    assert left <= (allowed or set()), f"side effect: {sorted(left)} ({ran.stderr[-300:]!r})"


def enc(value: str) -> bytes:
    return value.encode("utf-8", "surrogateescape")


# -- 1. simple commands: shlex gives back exactly the requested argv ------------------------
SIMPLE = {
    "q": (lambda a, b, c: C.q(a), lambda a, b, c: [a]),
    "cmd": (lambda a, b, c: C.cmd("docker", a, b, c), lambda a, b, c: ["docker", a, b, c]),
    "sudo-n": (
        lambda a, b, c: C.sudo(a, None),
        lambda a, b, c: ["sudo", "-n", "-H", "--", "sh", "-c", a],
    ),
    "sudo-S": (
        lambda a, b, c: C.sudo(a, b),
        lambda a, b, c: ["sudo", "-S", "-p", b, "-H", "--", "sh", "-c", a],
    ),
    "echo_args": (
        lambda a, b, c: C.echo_args([a, b, c]),
        lambda a, b, c: ["printf", "%s\\n", a, b, c],
    ),
    "has_command": (lambda a, b, c: C.has_command(a), lambda a, b, c: ["command", "-v", "--", a]),
    "nodeengine_addon": (
        lambda a, b, c: C.nodeengine_addon(a, b),
        lambda a, b, c: ["NodeEngine", "config", "addon", a, b],
    ),
    "docker_volume_exists": (
        lambda a, b, c: C.docker_volume_exists(a),
        lambda a, b, c: ["docker", "volume", "inspect", "--format", "{{.Name}}", a],
    ),
    "docker_volume_create": (
        lambda a, b, c: C.docker_volume_create(a),
        lambda a, b, c: ["docker", "volume", "create", a],
    ),
    "container_inspect": (
        lambda a, b, c: C.container_inspect(a),
        lambda a, b, c: ["docker", "container", "inspect", "--format", "{{json .}}", a],
    ),
    "buildx_create_container": (
        lambda a, b, c: C.buildx_create_container(a, b, c),
        lambda a, b, c: [
            "docker",
            "buildx",
            "create",
            "--name",
            a,
            "--driver",
            "docker-container",
            "--platform",
            c,
            "--buildkitd-config",
            b,
            "--bootstrap",
        ],
    ),
    "volume_mountpoint": (
        lambda a, b, c: C.volume_mountpoint(a),
        lambda a, b, c: ["docker", "volume", "inspect", "--format", "{{.Mountpoint}}", a],
    ),
    "remove_images_docker": (
        lambda a, b, c: C.remove_images_docker([a, b, c]),
        lambda a, b, c: ["docker", "image", "rm", "-f", a, b, c],
    ),
    "remove_images_ctr": (
        lambda a, b, c: C.remove_images_ctr(a, [b, c]),
        lambda a, b, c: ["ctr", "-n", a, "images", "rm", b, c],
    ),
    "docker_context_create": (
        lambda a, b, c: C.docker_context_create(a),
        lambda a, b, c: [
            "docker",
            "context",
            "create",
            a,
            "--description",
            "FLOps image builder (docker driver)",
            "--docker",
            "host=unix:///var/run/docker.sock",
        ],
    ),
}


@pytest.mark.parametrize("name", SIMPLE)
@SETTINGS
@given(a=VALUE, b=VALUE, c=VALUE)
def test_simple_builders_parse_back_to_their_argv(name, a, b, c):
    build, expected = SIMPLE[name]
    assert shlex.split(build(a, b, c)) == expected(a, b, c)


@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_simple_builders_run_with_intact_argv(box, value):
    """The same builders executed: each stub sees exactly the requested argv, nothing else."""
    other = "second value"
    cases = [
        (C.cmd("docker", value, other), [["docker", value, other]]),
        (
            C.sudo(C.cmd("docker", value), None),
            [["sudo", "-n", "-H", "--", "sh", "-c", C.cmd("docker", value)], ["docker", value]],
        ),
        (
            C.sudo(C.cmd("docker", other), value),
            [
                ["sudo", "-S", "-p", value, "-H", "--", "sh", "-c", C.cmd("docker", other)],
                ["docker", other],
            ],
        ),
        (C.nodeengine_addon(value, other), [["NodeEngine", "config", "addon", value, other]]),
        (
            C.docker_volume_exists(value),
            [["docker", "volume", "inspect", "--format", "{{.Name}}", value]],
        ),
        (C.docker_volume_create(value), [["docker", "volume", "create", value]]),
        (
            C.container_inspect(value),
            [["docker", "container", "inspect", "--format", "{{json .}}", value]],
        ),
        (C.buildx_rm(value), [["docker", "buildx", "rm", "-f", value]]),
        (
            C.buildx_create_container(value, other, value),
            [
                [
                    "docker",
                    "buildx",
                    "create",
                    "--name",
                    value,
                    "--driver",
                    "docker-container",
                    "--platform",
                    value,
                    "--buildkitd-config",
                    other,
                    "--bootstrap",
                ]
            ],
        ),
        (
            C.docker_context_create(value),
            [
                [
                    "docker",
                    "context",
                    "create",
                    value,
                    "--description",
                    "FLOps image builder (docker driver)",
                    "--docker",
                    "host=unix:///var/run/docker.sock",
                ]
            ],
        ),
        (
            C.apt_install([value, other]),
            [
                ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", value, other],
            ],
        ),
        (
            C.volume_mountpoint(value),
            [["docker", "volume", "inspect", "--format", "{{.Mountpoint}}", value]],
        ),
        (C.remove_images_docker([value, other]), [["docker", "image", "rm", "-f", value, other]]),
        (
            C.ctr_images_state(value),
            [
                ["ctr", "--connect-timeout", C.CTR_CONNECT_TIMEOUT, "-n", value, *args]
                for args in (["images", "ls", "-q"], ["containers", "ls"], ["tasks", "ls"])
            ],
        ),
        (
            C.remove_images_ctr(value, [other, value]),
            [["ctr", "-n", value, "images", "rm", other, value]],
        ),
    ]
    for script, expected in cases:
        ran = box.run(script)
        assert ran.rc == 0, (script, ran.stderr)
        assert ran.calls == expected, script
        assert_clean(ran)


# -- 2. builders with shell structure, executed -----------------------------------------------
@EXEC_SETTINGS
@given(image=VALUE, source=VALUE, address=VALUE, port=st.one_of(st.integers(1, 65535), VALUE))
def test_sidecar_run(box, image, source, address, port):
    ran = box.run(C.sidecar_run(image, source, address, port))
    host = f"[{address}]" if ":" in address else address
    assert ran.calls == [
        ["docker", "rm", "-f", C.SIDECAR],
        [
            "docker",
            "run",
            "-d",
            "--name",
            C.SIDECAR,
            "--restart",
            "unless-stopped",
            "-p",
            f"{host}:{port}:{port}",
            "-v",
            f"{source}:{C.DATA_MOUNT}",
            image,
        ],
    ]
    assert_clean(ran)


@pytest.mark.parametrize(
    "build",
    [lambda: C.tcp_check_docker0(11027, 1), lambda: C.wait_tcp_docker0(11027, 0)],
    ids=["tcp_check_docker0", "wait_tcp_docker0"],
)
@pytest.mark.parametrize(
    "address",
    ["$(touch${IFS}PWNED)", "`touch${IFS}PWNED`", '1.2.3.4"${IFS}&&touch${IFS}PWNED${IFS}"'],
)
def test_docker0_tcp_checks_never_run_the_address_as_code(box, build, address):
    """Whatever docker0's address reads as reaches bash as data, never as code."""
    listing = f"5: docker0    inet {address}/16 brd 172.17.255.255 scope global\n".encode()
    ran = box.run(build(), out={"ip": listing})
    assert ran.rc != 0  # no such address: nothing answers
    assert_clean(ran)


@EXEC_SETTINGS
@given(packages=st.lists(VALUE, min_size=1, max_size=4))
def test_apt_install(box, packages):
    ran = box.run(C.apt_install(packages))
    assert ran.calls == [
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ]
    assert_clean(ran)


@EXEC_SETTINGS
@given(registry=VALUE)
def test_wait_docker_trusts_matches_the_literal_registry(box, registry):
    listed = b'{"' + enc(registry) + b'":{"Secure":false}}\n'
    found = box.run(C.wait_docker_trusts(registry, seconds=0), out={"docker": listed})
    assert found.rc == 0
    assert found.calls == [["docker", "info", "--format", "{{json .RegistryConfig.IndexConfigs}}"]]
    assert_clean(found)
    if "\n" in registry:
        return  # grep -F takes one pattern per line; registry addresses are one line
    absent = box.run(C.wait_docker_trusts(registry, seconds=0), out={"docker": b"{}\n"})
    assert absent.rc == 1
    assert_clean(absent)


@EXEC_SETTINGS
@given(
    registry=VALUE,
    ref=VALUE,
    platforms=VALUE,
    builder=VALUE,
    driver=st.sampled_from(["docker", "docker-container"]),
    amd64=st.binary(max_size=64),
    arm64=st.binary(max_size=64),
)
def test_buildx_push_probe(box, registry, ref, platforms, builder, driver, amd64, arm64):
    script = C.buildx_push_probe(
        registry,
        ref,
        platforms,
        builder,
        driver,
        base64.b64encode(amd64).decode(),
        base64.b64encode(arm64).decode(),
    )
    ran = box.run(script)
    assert ran.rc == 0, ran.stderr
    # the docker driver keeps the image in the engine's store: the probe removes it again
    assert ran.calls[1:] == (
        [["docker", "image", "rm", "-f", f"{registry}/{ref}"]] if driver == "docker" else []
    )
    argv = ran.calls[0]
    head = (
        ["docker", "--context", builder, "buildx", "build"]
        if driver == "docker"
        else ["docker", "buildx", "build", "--builder", builder]
    )
    assert argv[:-1] == [
        *head,
        "--progress=plain",
        "--provenance=false",
        "--no-cache",
        "--platform",
        platforms,
        "--push",
        "-t",
        f"{registry}/{ref}",
    ]
    context = argv[-1]
    assert context.startswith("/tmp/flops-push.") and not Path(context).exists()
    copy = next(ran.sandbox.glob("rec/ctx.*"))
    assert (copy / "uname-amd64").read_bytes() == amd64
    assert (copy / "uname-arm64").read_bytes() == arm64
    assert b"COPY uname-${TARGETARCH} /uname" in (copy / "Dockerfile").read_bytes()
    assert_clean(ran)


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
        return True
    except ValueError:
        return False


NOT_BASE64 = [v for v in HOSTILE if not _is_base64(v)]


@pytest.mark.parametrize("value", NOT_BASE64, ids=range(len(NOT_BASE64)))
def test_push_probe_and_binary_runner_refuse_hostile_base64(box, value):
    """A payload that is not base64 stops the chain: nothing is built, nothing runs."""
    good = base64.b64encode(b"x").decode()
    for script in (
        C.buildx_push_probe("r:5073", "p/x:1", "linux/amd64", "b", "auto", value, good),
        C.buildx_push_probe("r:5073", "p/x:1", "linux/amd64", "b", "auto", good, value),
        C.run_binary_b64(value),
    ):
        ran = box.run(script)
        assert ran.rc != 0, (value, ran.stdout)
        assert ran.calls == []
        assert_clean(ran)


@EXEC_SETTINGS
@given(body=VALUE.filter(lambda v: "\n" not in v and "\r" not in v))
def test_run_binary_b64_runs_exactly_the_payload(box, body):
    program = b"#!/bin/sh\nprintf '%s' " + enc(shlex.quote(body)) + b"\n"
    ran = box.run(C.run_binary_b64(base64.b64encode(program).decode()))
    assert ran.rc == 0, ran.stderr
    assert ran.stdout == enc(body)
    assert_clean(ran)


FILE_NAME = VALUE.filter(
    lambda v: v not in ("", ".", "..") and "/" not in v and len(v.encode()) <= 200
)


@EXEC_SETTINGS
@given(folder=FILE_NAME, name=FILE_NAME, content=VALUE)
def test_write_file_hostile_path(box, folder, name, content):
    base = Path(tempfile.mkdtemp(dir=box.root))
    target = base / folder / name
    ran = box.run(C.write_file(str(target), content, "0600"))
    assert ran.rc == 0, ran.stderr
    assert target.read_bytes() == enc(content)
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == [name]
    assert_clean(ran)


@pytest.mark.parametrize("mode", ["0644; touch PWNED", "$(touch PWNED)", "u+x`touch PWNED`"])
def test_write_file_hostile_mode_stops_the_chain(box, mode):
    base = Path(tempfile.mkdtemp(dir=box.root))
    ran = box.run(C.write_file(str(base / "f"), "data", mode))
    assert ran.rc != 0
    assert not (base / "f").exists()
    assert_clean(ran)


def test_write_file_relative_name(box):
    ran = box.run(C.write_file("settings.json", "{}"))
    assert (ran.work / "settings.json").is_file()


@EXEC_SETTINGS
@given(
    folder=FILE_NAME,
    names=st.lists(FILE_NAME, min_size=1, max_size=4, unique=True),
    missing=FILE_NAME,
)
def test_sha256_of_hashes_exactly_the_named_files(box, folder, names, missing):
    base = Path(tempfile.mkdtemp(dir=box.root)) / folder
    base.mkdir()
    for n in names:
        (base / n).write_bytes(enc(n))
    (base / "link").symlink_to(base / names[0])
    asked = [*names, missing, "link"] if missing not in names else [*names, "link"]
    ran = box.run(C.sha256_of(str(base), asked))
    assert ran.rc == 0, ran.stderr
    # every name parses back, backslashes and line breaks included; links are not followed
    got = C.parse_sha256_of(ran.stdout.decode(), asked)
    assert got == {n: hashlib.sha256(enc(n)).hexdigest() for n in names}
    assert sorted(p.name for p in base.iterdir()) == sorted([*names, "link"])
    assert_clean(ran)


@EXEC_SETTINGS
@given(
    names=st.lists(FILE_NAME, min_size=1, max_size=4, unique=True),
    bodies=st.lists(st.binary(max_size=12), min_size=4, max_size=4),
)
def test_list_mount_reports_every_entry_without_following_links(box, names, bodies):
    from flops_tasks.data import parse_listing

    base = Path(tempfile.mkdtemp(dir=box.root)) / "mount"
    base.mkdir()
    for n, body in zip(names, bodies, strict=False):
        (base / n).write_bytes(body)
    outside = base.parent / "outside"
    outside.write_bytes(b"PAR1 secret PAR1")
    (base / "zz-link").symlink_to(outside)
    (base / "zz-dir").mkdir()
    ran = box.run(C.list_mount(str(base)))
    assert ran.rc == 0, ran.stderr
    got = {e.raw: e for e in parse_listing(ran.stdout.decode())}
    assert set(got) == {enc(n) for n in names} | {b"zz-link", b"zz-dir"}
    for n, body in zip(names, bodies, strict=False):
        e = got[enc(n)]
        assert (e.kind, e.size) == ("f", len(body))
        assert (e.head, e.tail) == (
            (body[:4].hex(), body[-4:].hex()) if len(body) >= 4 else ("-", "-")
        )
    assert (got[b"zz-link"].kind, got[b"zz-link"].size, got[b"zz-link"].head) == ("l", 0, "-")
    assert got[b"zz-dir"].kind == "d"
    assert_clean(ran)


def test_list_mount_of_a_missing_folder_fails(box):
    ran = box.run(C.list_mount("/no/such/folder $(touch PWNED)"))
    assert ran.rc != 0 and ran.stdout == b""
    assert_clean(ran)


@EXEC_SETTINGS
@given(src=FILE_NAME, dest=FILE_NAME, content=VALUE)
def test_install_file_moves_the_literal_paths(box, src, dest, content):
    base = Path(tempfile.mkdtemp(dir=box.root))
    (base / "in").mkdir()
    (base / "out").mkdir()
    (base / "in" / src).write_bytes(enc(content))
    sha = hashlib.sha256(enc(content)).hexdigest()
    ran = box.run(
        C.install_file(str(base / "in" / src), str(base / "out" / dest), sha, getpass.getuser())
    )
    assert ran.rc == 0, ran.stderr
    assert (base / "out" / dest).read_bytes() == enc(content)
    assert (base / "out" / dest).stat().st_mode & 0o777 == 0o644
    assert list((base / "in").iterdir()) == []
    assert [p.name for p in (base / "out").iterdir()] == [dest]
    assert_clean(ran)


@EXEC_SETTINGS
@given(name=FILE_NAME, content=VALUE)
def test_cat_or_mark(box, name, content):
    absent = box.run(C.cat_or_mark(name, "@@missing $(touch PWNED)"))
    assert absent.rc == 0 and absent.stdout == b"@@missing $(touch PWNED)\n"
    assert_clean(absent)
    base = Path(tempfile.mkdtemp(dir=box.root))
    (base / name).write_bytes(enc(content))
    ran = box.run(C.cat_or_mark(str(base / name), "@@missing"))
    assert ran.rc == 0 and ran.stdout == enc(content)
    assert_clean(ran)


@EXEC_SETTINGS
@given(name=FILE_NAME.filter(lambda v: not v.startswith("-")))
def test_has_command_looks_up_the_literal_name(box, name):
    bindir = Path(tempfile.mkdtemp(dir=box.root))
    (bindir / name).write_text("#!/bin/sh\n")
    (bindir / name).chmod(0o755)
    ran = box.run(C.has_command(name), extra_path=bindir)
    assert ran.rc == 0
    # a shell builtin or keyword of the same name is reported by name
    assert ran.stdout in (enc(f"{bindir}/{name}\n"), enc(f"{name}\n"))
    assert_clean(ran)


@EXEC_SETTINGS
@given(machine=UNREDIRECTED)
def test_register_binfmt_every_branch(box, machine):
    script = C.register_binfmt(machine)
    # no systemd (the sandbox hides it), update-binfmts present: it gets the literal name
    ran = box.run(script)
    assert ran.calls == [["update-binfmts", "--enable", f"qemu-{machine}"]]
    assert_clean(ran)
    # neither: the first rule of the literal binfmt.d file goes to the register file
    if "/" in machine or len(machine.encode()) > 200:
        return
    without = script.replace(C.has_command("update-binfmts"), C.has_command("no-such-tool"))
    rule = b":qemu-x:M::\\x7fELF::/usr/bin/qemu-x-static:F\n"
    ran = box.run(without, files={f"binfmt.d/qemu-{machine}.conf": b"# c\n" + rule})
    assert ran.calls == []
    assert (ran.sandbox / "binfmt-register").read_bytes() == rule
    assert_clean(ran)


@pytest.mark.parametrize("bad", ["1; touch PWNED", "$(touch PWNED)", None, "1.5"])
def test_numeric_arguments_are_coerced(bad):
    """Ports and durations are put in scripts through int(): anything else is refused."""
    for build in (
        lambda v: C.wait_docker_trusts("r:5073", v),
        lambda v: C.wait_tcp_docker0(v),
        lambda v: C.wait_tcp_docker0(11027, v),
        lambda v: C.tcp_check_docker0(v),
        lambda v: C.tcp_check_docker0(11027, v),
    ):
        with pytest.raises((TypeError, ValueError)):
            build(bad)


@EXEC_SETTINGS
@given(
    names=st.lists(
        VALUE.filter(lambda v: v == " ".join(v.splitlines())), min_size=1, max_size=4, unique=True
    ),
    values=st.lists(VALUE.filter(lambda v: C.PROBE_MARK not in v), min_size=4, max_size=4),
)
def test_probe_batch_round_trip(box, names, values):
    probes = [(n, C.cmd("printf", "%s", v)) for n, v in zip(names, values, strict=False)]
    ran = box.run(C.probe_batch(probes))
    parsed = C.parse_probe_batch(ran.stdout.decode("utf-8", "surrogateescape"))
    assert parsed == {
        n: (0, "\n".join(v.splitlines()).strip()) for n, v in zip(names, values, strict=False)
    }
    assert_clean(ran)


@EXEC_SETTINGS
@given(registry=VALUE)
def test_hosts_toml_path_is_read_as_one_path(box, registry):
    ran = box.run(C.cat_or_mark(C.hosts_toml_path(registry), "@@missing"))
    assert ran.rc == 0 and ran.stdout == b"@@missing\n"
    assert C.hosts_toml_path(registry) == f"/etc/containerd/certs.d/{registry}/hosts.toml"
    assert_clean(ran)


@HEAVY_SETTINGS
@given(packages=st.lists(VALUE, min_size=1, max_size=4))
def test_dpkg_status_and_check_tools(box, packages):
    ran = box.run(C.dpkg_status(packages))
    assert ran.calls == [
        ["dpkg-query", "-W", "-f", "${Package} ${Status} ${Version}\n", "--", *packages]
    ]
    assert_clean(ran)
    ran = box.run(C.install_check_tools(packages), out={"dpkg-query": b"a\nb\n"})
    assert ran.rc == 0, ran.stderr
    assert [c[0] for c in ran.calls] == ["dpkg-query", "apt-get", "apt-get", "dpkg-query"]
    assert ran.calls[2] == ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    assert (ran.sandbox / "state" / "check-tools.list").read_text() == ""  # nothing new
    assert_clean(ran)
    ran = box.run(C.remove_check_tools(packages), files={"state/check-tools.list": b"x\n"})
    assert ran.calls == [["apt-get", "purge", "-y", "-qq", "--", *packages]]
    assert not (ran.sandbox / "state" / "check-tools.list").exists()
    assert_clean(ran)


@HEAVY_SETTINGS
@given(content=UNREDIRECTED)
def test_apply_containerd_config_writes_exactly_the_content(box, content):
    script = C.apply_containerd_config(content)
    assert C.restart_containerd() in script
    # systemd present (the sandbox's stand-in dir exists): systemctl restarts containerd
    ran = box.run(script, files={"no-systemd/unit": b"", "containerd/config.toml": b"old"})
    assert ran.rc == 0, ran.stderr
    assert (ran.sandbox / "containerd" / "config.toml").read_bytes() == enc(content)
    assert not (ran.sandbox / "containerd" / "config.toml.flops-bak").exists()
    assert ["systemctl", "restart", "containerd"] in ran.calls
    assert ran.stdout.endswith(b"containers running before and after: 0\n")
    assert_clean(ran)


def test_apply_containerd_config_restores_the_old_file_when_containerd_stays_down(box):
    ran = box.run(
        C.apply_containerd_config("new"),
        rc={"systemctl": 1},
        files={"no-systemd/unit": b"", "containerd/config.toml": b"old"},
    )
    assert ran.rc == 1 and b"old config restored" in ran.stderr
    assert (ran.sandbox / "containerd" / "config.toml").read_bytes() == b"old"
    assert_clean(ran)


@pytest.mark.parametrize("n, arg", list(enumerate(["x y;$(touch PWNED)", "'\"`", "--help"])))
def test_relaunch_restarts_with_the_same_argv_and_log(box, n, arg, tmp_path):
    """A real process (python under another name) is stopped and started again."""
    import sys
    import time

    real = Path(tempfile.mkdtemp(dir=box.root))
    (real / "pidof").symlink_to(shutil.which("pidof"))
    name = f"flops-relaunch{n}"  # a name of its own per case (and within comm's 15 chars)
    (real / name).symlink_to(sys.executable)
    log = tmp_path / "daemon.log"
    code = "import sys, time; print(sys.argv[1:], flush=True); time.sleep(60)"
    with open(log, "w") as fh:
        old = subprocess.Popen(
            [str(real / name), "-c", code, arg], stdout=fh, stderr=fh, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 10
        while log.read_text() == "" and time.monotonic() < deadline:
            time.sleep(0.05)
        ran = box.run(C.relaunch(name, "true"), extra_path=real)
        assert ran.rc == 0, ran.stderr
        assert old.wait(timeout=10) is not None  # the old process is gone
        new: list[str] = []
        deadline = time.monotonic() + 10
        while not new and time.monotonic() < deadline:  # started in the background
            time.sleep(0.05)
            new = subprocess.run(["pidof", name], capture_output=True, text=True).stdout.split()
        assert len(new) == 1 and int(new[0]) != old.pid
        argv = Path(f"/proc/{new[0]}/cmdline").read_bytes().split(b"\0")[:-1]
        assert argv == [str(real / name).encode(), b"-c", code.encode(), enc(arg)]
        deadline = time.monotonic() + 10
        while log.read_text().count("\n") < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.read_text().splitlines() == [repr([arg])] * 2  # same log, same argv
        assert_clean(ran)
    finally:
        for pid in subprocess.run(["pidof", name], capture_output=True, text=True).stdout.split():
            os.kill(int(pid), 9)


@HEAVY_SETTINGS
@given(
    ref=VALUE,
    platforms=st.lists(VALUE, min_size=1, max_size=2),
    amd64=st.binary(max_size=64),
    arm64=st.binary(max_size=64),
)
def test_buildah_push_probe(box, ref, platforms, amd64, arm64):
    script = C.buildah_push_probe(
        ref, platforms, base64.b64encode(amd64).decode(), base64.b64encode(arm64).decode()
    )
    ran = box.run(script)
    assert ran.rc == 0, ran.stderr
    build, push, rmi = ran.calls
    root = build[2].removesuffix("/root")
    assert root.startswith("/var/tmp/flops-push.") and not Path(root).exists()  # removed
    head = [
        "buildah",
        "--root",
        f"{root}/root",
        "--runroot",
        f"{root}/run",
        "--storage-driver",
        build[6],
    ]
    assert build[6] in ("vfs", "overlay")
    limits = build[8:12] if build[8:9] == ["--ulimit"] else []
    assert build == [
        *head,
        "build",
        *limits,
        *[a for p in platforms for a in ("--platform", p)],
        "--isolation=chroot",
        "--tls-verify=false",
        "--manifest",
        f"{ref}-manifest",
        "-t",
        ref,
        ".",
    ]
    assert push == [
        *head,
        "manifest",
        "push",
        "--tls-verify=false",
        "--all",
        f"{ref}-manifest",
        f"docker://{ref}",
    ]
    assert rmi == [*head, "rmi", "-a", "-f"]
    assert ran.stdout.startswith(f"storage-driver: {build[6]}".encode())
    assert_clean(ran)


# -- 3. host strings -------------------------------------------------------------------------
SHELL_META = set(";|&$()`<>'\"\\*?!{}#~%,=") | {chr(c) for c in range(33)} | {"\x7f"}
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
HOSTNAME = st.lists(_label, min_size=1, max_size=4).map(".".join)
HOST_PART = st.one_of(
    HOSTNAME,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.ip_addresses(v=6).map(str),
    st.text(max_size=12),
)
USER_PART = st.one_of(
    st.none(), st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}", fullmatch=True), st.text(max_size=8)
)
PORT_PART = st.one_of(st.none(), st.integers(-5, 70000).map(str), st.text(max_size=6))
HOST_TEXT = st.one_of(
    st.builds(
        lambda u, h, p: (f"{u}@" if u is not None else "") + h + (f":{p}" if p is not None else ""),
        USER_PART,
        HOST_PART,
        PORT_PART,
    ),
    st.text(max_size=40),
)


def _parse_or_error(text: str) -> Target | FlopsError:
    try:
        return parse_host(text)
    except FlopsError as err:
        return err


@settings(max_examples=300, deadline=None)
@given(text=HOST_TEXT)
def test_parse_host_accepts_only_shell_safe_hosts(text):
    result = _parse_or_error(text)
    if isinstance(result, FlopsError):
        assert result.code == 2
        assert result.message and "\n" not in result.message and "\r" not in result.message
        return
    assert parse_host(result.spec) == result
    assert not SHELL_META & set(result.spec), result.spec
    assert not any(ch.isspace() for ch in result.spec)
    assert result.user is None or result.user in result.spec


@settings(max_examples=200, deadline=None)
@given(before=HOST_TEXT, meta=st.sampled_from(sorted(SHELL_META)), after=HOST_TEXT)
def test_parse_host_refuses_metacharacters_in_one_line(before, meta, after):
    text = before + meta + after
    result = _parse_or_error(text)
    if not isinstance(result, FlopsError):
        # ':' '[' ']' '@' are syntax, not metacharacters: the meta must not be in the result
        assert meta not in result.spec, (text, result)
        return
    assert result.code == 2
    assert "\n" not in result.message and result.message.strip() == result.message


@pytest.mark.parametrize(
    "text", ["fe80::1%;touch_PWNED", "u@[2001:db8::1%a|b]:22", "[fe80::1%$(id)]:2222"]
)
def test_parse_host_refuses_ipv6_zone_ids(text):
    with pytest.raises(FlopsError):
        parse_host(text)


def test_parse_host_superscript_port_is_a_flops_error():
    with pytest.raises(FlopsError):
        parse_host("h:\u00b2")


# -- 4. registry trust: the files written on workers name exactly the configured registry -----
REGISTRY = st.builds(
    lambda h, port: f"{h}:{port}",
    st.one_of(HOSTNAME, st.ip_addresses(v=4).map(str)),
    st.integers(1, 65535),
)


REGISTRY_V6 = st.builds(
    lambda h, port: f"[{h}]:{port}", st.ip_addresses(v=6).map(str), st.integers(1, 65535)
)


@settings(max_examples=150, deadline=None)
@given(
    registry=st.one_of(REGISTRY, REGISTRY_V6),
    others=st.lists(REGISTRY, max_size=3, unique=True),
    extra=st.dictionaries(
        st.sampled_from(["log-driver", "data-root", "features"]), st.text(max_size=10), max_size=3
    ),
)
def test_registry_trust_files_name_only_the_registry(registry, others, extra):
    assert tomllib.loads(trust.buildkitd_toml(None, registry)) == {
        "registry": {registry: {"http": True, "insecure": True}}
    }
    hosts = tomllib.loads(trust.hosts_toml(None, registry))
    assert hosts["server"] == f"http://{registry}"
    assert list(hosts["host"]) == [f"http://{registry}"]
    assert tomllib.loads(trust.registries_conf(None, registry)) == {
        "registry": [{"location": registry, "insecure": True}]
    }
    current = json.dumps({**extra, "insecure-registries": others})
    merged_text = trust.daemon_json(current, registry)
    merged = json.loads(merged_text) if merged_text else json.loads(current)
    added = [] if registry in others else [registry]
    assert merged == {**extra, "insecure-registries": [*others, *added]}
    assert not any("*" in r or "/" in r for r in merged["insecure-registries"])


def test_zone_ids_never_reach_the_worker_toml_files():
    with pytest.raises(FlopsError, match="zone IDs are not supported"):
        check_address("FLOPS_IMAGE_REGISTRY_IP", '2001:db8::1%a"b', "test")
    registry = host_port(check_address("FLOPS_IMAGE_REGISTRY_IP", "2001:db8::1", "test"), 5073)
    assert registry == "[2001:db8::1]:5073"
    assert list(tomllib.loads(trust.buildkitd_toml(None, registry))["registry"]) == [registry]


# -- 5. every builder that takes a value is called here with hostile values -------------------
# combinators take scripts, parsers take output: neither puts a value into a command
COMBINATORS = {
    "all_of",
    "any_of",
    "quiet",
    "if_else",
    "parse_probe_batch",
    "parse_sha256_of",
    "parse_engine_reads",
    "parse_installed",
    "parse_parquet_tails",
}
# no '/' in these: some become file names inside a temp folder
HOSTILE_SAMPLE = [
    "$(touch PWNED)",
    "`touch PWNED`",
    "a; touch PWNED #",
    "'; touch PWNED; '",
    "x\ntouch PWNED",
    "-rf",
]
B64 = base64.b64encode(b"x").decode()
# builder name -> a script that calls it with the hostile value v (d: a fresh temp folder)
HOSTILE_CALLS = {
    "q": lambda v, d: "true " + C.q(v),
    "cmd": lambda v, d: C.cmd("docker", v, v),
    "sudo": lambda v, d: C.sudo(C.cmd("docker", v), v),
    "write_file": lambda v, d: C.write_file(str(d / v), v, "0600"),
    "probe_batch": lambda v, d: C.probe_batch([(v, C.cmd("docker", v))]),
    "echo_args": lambda v, d: C.echo_args([v, v]),
    "has_command": lambda v, d: C.has_command(v),
    "apt_install": lambda v, d: C.apt_install([v, v]),
    "run_binary_b64": lambda v, d: C.run_binary_b64(v),
    "buildx_create_container": lambda v, d: C.buildx_create_container(v, v, v),
    "docker_context_create": lambda v, d: C.docker_context_create(v),
    "buildx_rm": lambda v, d: C.buildx_rm(v),
    "buildx_push_probe": lambda v, d: C.buildx_push_probe(v, v, v, v, v, B64, B64),
    "register_binfmt": lambda v, d: C.register_binfmt(v),
    "wait_docker_trusts": lambda v, d: C.wait_docker_trusts(v, 0),
    "wait_tcp_docker0": lambda v, d: C.wait_tcp_docker0(v),
    "nodeengine_addon": lambda v, d: C.nodeengine_addon(v, v),
    "docker_volume_exists": lambda v, d: C.docker_volume_exists(v),
    "docker_volume_create": lambda v, d: C.docker_volume_create(v),
    "container_inspect": lambda v, d: C.container_inspect(v),
    "publish_spec": lambda v, d: C.cmd("docker", "run", "-p", C.publish_spec(v, 11027)),
    "sidecar_run": lambda v, d: C.sidecar_run(v, v, v),
    "tcp_check_docker0": lambda v, d: C.tcp_check_docker0(v),
    "volume_mountpoint": lambda v, d: C.volume_mountpoint(v),
    "sha256_of": lambda v, d: C.sha256_of(str(d), [v, v + "2"]),
    "install_file": lambda v, d: C.install_file(str(d / v), str(d / (v + "2")), v, v),
    "remove_files": lambda v, d: C.remove_files(str(d / v), [v, v + "2"]),
    "data_dir_facts": lambda v, d: f"{C.data_dir_facts(str(d / v))}; true",
    "make_data_dir": lambda v, d: C.make_data_dir(str(d / v)),
    "parquet_tails": lambda v, d: (
        C.parquet_tails(str(d / v), [v, v]) + "; " + C.parquet_tails(str(d))
    ),
    "sidecar_python": lambda v, d: C.sidecar_python(v, v, v, container=v),
    "remove_images_docker": lambda v, d: C.remove_images_docker([v, v]),
    "remove_images_ctr": lambda v, d: C.remove_images_ctr(v, [v]),
    "ctr_images_state": lambda v, d: C.ctr_images_state(v),
    "cat_or_mark": lambda v, d: C.cat_or_mark(str(d / v), v),
    "apply_containerd_config": lambda v, d: C.apply_containerd_config(v),
    "buildah_push_probe": lambda v, d: C.buildah_push_probe(v, [v, v], B64, B64),
    "dpkg_status": lambda v, d: C.dpkg_status([v, v]),
    "hosts_toml_path": lambda v, d: C.cat_or_mark(C.hosts_toml_path(v), "@@missing"),
    "remove_registry_hosts": lambda v, d: C.remove_registry_hosts(v),
    "install_check_tools": lambda v, d: C.install_check_tools([v, v]),
    "remove_check_tools": lambda v, d: C.remove_check_tools([v, v]),
    "list_mount": lambda v, d: C.list_mount(str(d / v)),
    # ready is a script (like all_of's arguments); the process name is the value
    "relaunch": lambda v, d: C.relaunch(v, "true", 0),
    "restart_containerd": lambda v, d: C.restart_containerd(v),
    "volume_path": lambda v, d: C.cmd("docker", C.volume_path(v)),
    "container_path": lambda v, d: C.cmd("docker", C.container_path(v)),
    "engine_reads": lambda v, d: C.engine_reads([v, v], [v], tcp_port=11027),
    "docker_config_file": lambda v, d: f"cat {C.docker_config_file(v, v)} 2>/dev/null; true",
    "cat_docker_config": lambda v, d: C.cat_docker_config(v, v, mark=v),
    "find_cli_plugin": lambda v, d: f"{C.find_cli_plugin(v)}; true",
    "ctr_image_list": lambda v, d: C.ctr_image_list(v),
    "docker_image_labels": lambda v, d: C.docker_image_labels([v, v + "2"]),
    "ctr_sideload": lambda v, d: C.ctr_sideload(v, v, v, {v: v, "k": v}),
    "docker_sideload": lambda v, d: C.docker_sideload(v, v),
    "ctr_unload": lambda v, d: C.ctr_unload([v, v]),
    "docker_unload": lambda v, d: C.docker_unload([v, v]),
}


def test_every_value_taking_builder_is_called_with_hostile_values(box, monkeypatch):
    """A new builder in commands.py needs an entry in HOSTILE_CALLS; each entry must call its
    builder, and the script it builds, run with recording stubs, must run nothing else."""
    builders = {
        name
        for name, fn in inspect.getmembers(C, inspect.isfunction)
        if fn.__module__ == C.__name__
        and not name.startswith("_")
        and inspect.signature(fn).parameters
        and name not in COMBINATORS
    }
    assert builders - set(HOSTILE_CALLS) == set(), "builders without a hostile-value call"
    assert set(HOSTILE_CALLS) - builders == set(), "entries for builders that do not exist"
    for name in sorted(builders):
        calls: list[tuple[object, ...]] = []
        real = getattr(C, name)

        def spy(*args, _real=real, _calls=calls, **kwargs):
            _calls.append(args)
            return _real(*args, **kwargs)

        monkeypatch.setattr(C, name, spy)
        for value in HOSTILE_SAMPLE:
            folder = Path(tempfile.mkdtemp(dir=box.root))
            try:
                script = HOSTILE_CALLS[name](value, folder)
            except (TypeError, ValueError):
                continue  # a number-only parameter refuses text: nothing is built
            assert_clean(box.run(script))
            assert not list(folder.rglob("PWNED")), name
        monkeypatch.setattr(C, name, real)
        assert len(calls) >= len(HOSTILE_SAMPLE), f"HOSTILE_CALLS[{name!r}] never calls it"
