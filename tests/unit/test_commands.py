import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flops_tasks import commands


def run_local(script: str) -> str:
    # bytes, decoded by hand: text mode would translate "\r" into "\n"
    return subprocess.run(["sh", "-c", script], capture_output=True, check=True).stdout.decode()


HOSTILE = [
    "a b",
    "$(touch /tmp/flops-pwned)",
    "`id`",
    "'; rm -rf /tmp/x; '",
    '"',
    "\\",
    "*",
    "a\nb",
    "--help",
    "-n",
    "%s%n",
    "$HOME",
    "${IFS}",
    "!!",
    "~root",
    "",
]


def test_cmd_quotes_every_argument():
    out = run_local(commands.echo_args(HOSTILE))
    assert out.split("\n")[:-1] == [v for part in HOSTILE for v in part.split("\n")]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(
            alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
            max_size=20,
        ),
        min_size=1,
        max_size=5,
    )
)
def test_no_value_reaches_the_shell_unquoted(values):
    out = run_local(commands.cmd("printf", "%s\\0", *values))
    assert out.split("\0")[:-1] == values


@settings(max_examples=100, deadline=None)
@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        max_size=200,
    )
)
def test_write_file_writes_exact_content(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("w") / "sub dir" / "f;ile"
    run_local(commands.write_file(str(path), content))
    assert path.read_bytes() == content.encode()


def test_probe_batch_round_trip():
    script = commands.probe_batch(
        [
            ("one", commands.cmd("echo", "hello world")),
            ("fails", "exit 3"),
            ("quiet", "true"),
            ("reads_stdin", "cat"),
        ]
    )
    parsed = commands.parse_probe_batch(run_local(script))
    assert parsed == {
        "one": (0, "hello world"),
        "fails": (3, ""),
        "quiet": (0, ""),
        "reads_stdin": (0, ""),
    }


def test_sudo_wraps_whole_compound_command():
    inner = commands.all_of(commands.cmd("true"), commands.cmd("echo", "x y"))
    built = commands.sudo(inner, None)
    assert built.startswith("sudo -n -H -- sh -c ")
    assert commands.q(inner) in built
    assert commands.sudo(inner, "[p] ").startswith("sudo -S -p '[p] ' -H -- sh -c ")


@pytest.mark.parametrize(
    "chain, rc", [(commands.all_of("true", "false"), 1), (commands.any_of("false", "true"), 0)]
)
def test_chains(chain, rc):
    assert subprocess.run(["sh", "-c", chain]).returncode == rc


def test_probe_output_without_trailing_newline():
    script = commands.probe_batch([("a", "printf 'no newline'"), ("b", "echo x")])
    assert commands.parse_probe_batch(run_local(script)) == {"a": (0, "no newline"), "b": (0, "x")}


@pytest.mark.parametrize("name", ["a\\0b", "x\\cy", "tab\\tz", "-n", "-e \\n", "%s%n"])
def test_probe_names_arrive_literally_under_dash(name):
    """dash's echo reads backslash escapes ('\\c' even cuts the line): names go through
    printf '%s'."""
    script = commands.probe_batch([(name, commands.cmd("printf", "%s", "out")), ("b", "true")])
    assert commands.parse_probe_batch(run_local(script)) == {name: (0, "out"), "b": (0, "")}


# -- the engine's API read of the quick probes (facts.quick_probes) ----------------------------
class _Engine:
    """An HTTP server on a unix socket answering as the Docker engine's API does."""

    def __init__(self, path, answers):
        import http.server
        import socketserver
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                status, body = answers.get(self.path, (404, '{"message":"page not found"}'))
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

            def get_request(self):  # BaseHTTPRequestHandler wants a (host, port) address
                request, _ = super().get_request()
                return request, ("local", 0)

        self.server = Server(str(path), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _engine_reads(socket_path, env, volumes=("vol",), containers=("side", "gone")):
    script = commands.engine_reads(list(volumes), list(containers)).replace(
        commands.DOCKER_SOCKET, str(socket_path)
    )
    res = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=30)
    return commands.parse_engine_reads(res.stdout)


@pytest.mark.skipif(not __import__("shutil").which("perl"), reason="perl is not installed")
def test_engine_reads_get_the_engines_json_over_its_socket(tmp_path):
    import os

    info = '{"ServerVersion":"26.1.5","RegistryConfig":{"IndexConfigs":{}}}'
    engine = _Engine(
        tmp_path / "docker.sock",
        {
            "/info": (200, info),
            "/volumes/vol": (200, '{"Name":"vol"}'),
            "/containers/side/json": (200, '{"State":{"Running":true}}'),
        },
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    try:
        got = _engine_reads(tmp_path / "docker.sock", env)
    finally:
        engine.close()
    assert got == {
        "/info": (200, info),
        "/volumes/vol": (200, '{"Name":"vol"}'),
        "/containers/side/json": (200, '{"State":{"Running":true}}'),
        "/containers/gone/json": (404, '{"message":"page not found"}'),
    }
    down = _engine_reads(tmp_path / "nothing.sock", env)
    assert down["/info"][0] == 0 and down["/info"][1].startswith(
        f"Cannot connect to the Docker daemon at unix://{tmp_path}/nothing.sock: "
    )


@pytest.mark.parametrize("why", ["DOCKER_HOST", "currentContext", "no perl"])
def test_engine_reads_ask_the_cli_where_it_would_talk_to_another_engine(tmp_path, why):
    """The docker CLI answers in the same format (a stub CLI here, printing what it got)."""

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(
        '#!/bin/sh\ncase "$1" in info) echo \'{"ServerVersion":"cli"}\';; '
        'volume) exit 1;; *) echo "{\\"Name\\":\\"$5\\"}";; esac\n'
    )
    docker.chmod(0o755)
    for tool in ("sh", "grep", "cat", "perl"):
        found = __import__("shutil").which(tool)
        if found and not (why == "no perl" and tool == "perl"):
            (bin_dir / tool).symlink_to(found)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    if why == "DOCKER_HOST":
        env["DOCKER_HOST"] = "tcp://10.0.0.9:2375"
    if why == "currentContext":
        (tmp_path / ".docker").mkdir()
        (tmp_path / ".docker" / "config.json").write_text('{"currentContext": "remote"}')
    got = _engine_reads(tmp_path / "docker.sock", env)
    assert got == {
        "/info": (200, '{"ServerVersion":"cli"}'),
        "/volumes/vol": (404, ""),
        "/containers/side/json": (200, '{"Name":"side"}'),
        "/containers/gone/json": (200, '{"Name":"gone"}'),
    }


@pytest.mark.parametrize(
    "lists, install_rc, calls",
    [
        ("fresh", 0, ["install"]),
        ("fresh", 100, ["install", "update", "install"]),  # lists that lack a package
        ("old", 0, ["update", "install"]),
        ("none", 0, ["update", "install"]),
    ],
)
def test_apt_install_updates_the_lists_only_when_they_are_old(tmp_path, lists, install_rc, calls):
    import os
    import shutil
    import time

    listdir = tmp_path / "lists"
    listdir.mkdir()
    if lists != "none":
        release = listdir / "deb.debian.org_debian_dists_trixie_InRelease"
        release.write_text("x")
        if lists == "old":
            past = time.time() - 2 * 3600
            os.utime(release, (past, past))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    (bin_dir / "apt-get").write_text(
        f'#!/bin/sh\necho "$1" >> {log}\n[ "$1" = install ] && [ ! -e {tmp_path}/updated ] '
        f'&& exit {install_rc}\n[ "$1" = update ] && touch {tmp_path}/updated\nexit 0\n'
    )
    (bin_dir / "apt-get").chmod(0o755)
    for tool in ("find", "grep", "touch"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    script = commands.apt_install(["qemu-user-static"]).replace(commands.APT_LISTS, str(listdir))
    res = subprocess.run(
        ["/bin/sh", "-c", script], env={"PATH": str(bin_dir)}, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert log.read_text().split() == calls


@pytest.mark.skipif(not __import__("shutil").which("perl"), reason="perl is not installed")
def test_the_engine_reads_tcp_check_says_which_port_answers(tmp_path):
    import socket

    listening = socket.create_server(("127.0.0.1", 0))
    closed = socket.create_server(("127.0.0.1", 0))
    free = closed.getsockname()[1]
    closed.close()
    port = listening.getsockname()[1]
    try:
        res = subprocess.run(
            [
                "perl",
                "-e",
                commands._ENGINE_GET_PERL,
                str(tmp_path / "none"),
                f"tcp:127.0.0.1:{port}",
                f"tcp:127.0.0.1:{free}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        listening.close()
    got = commands.parse_engine_reads(res.stdout)
    assert got[f"tcp:127.0.0.1:{port}"] == (200, "")
    assert got[f"tcp:127.0.0.1:{free}"][0] == 0
    assert "refused" in got[f"tcp:127.0.0.1:{free}"][1].lower()
