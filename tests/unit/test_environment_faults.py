"""Environment problems, never a traceback: each is one line that names the fix, a
non-zero exit, and nothing changed (no file appears in the case's directory, which is its
HOME, and no traceback file either).

The real ``inv`` runs each case in a process of its own (the bad-input catalogue's runner,
``test_bad_input.run_cases``), in a faked environment where the real one cannot be had
here: a PATH without docker; a docker CLI whose engine answers but whose compose plugin is
missing or too old (a script); a Docker socket nobody serves; a host name that never
resolves (RFC 6761 ``.invalid``); a port nobody listens on; a state directory below a
file (not even root can write there); a System Manager that answers HTML. A full disk is
injected in-process, at the env file's write, on the stack's fake engine (test_stack.py).
"""

from __future__ import annotations

import errno
import http.server
import json
import os
import threading
from pathlib import Path

import pytest

from flops_tasks.env import primary_ip
from flops_tasks.errors import FlopsError
from flops_tasks.stack import preflight

from .test_bad_input import Case, Ran, run_cases
from .test_stack import make  # noqa: F401 - the fixture

FAKE_DOCKER = """#!/bin/sh
# a docker CLI whose engine answers, and whose compose plugin is missing (no
# FAKE_COMPOSE_VERSION) or the version it names
for arg in "$@"; do last="$arg"; done
case "$1" in
  version) echo '{"Client":{"Version":"26.1.5","ApiVersion":"1.45"},\
"Server":{"Version":"26.1.5","ApiVersion":"1.45"}}' ;;
  compose)
    if [ "$last" = version ] && [ -n "$FAKE_COMPOSE_VERSION" ]; then
      echo "Docker Compose version $FAKE_COMPOSE_VERSION"; exit 0
    fi
    echo "docker: 'compose' is not a docker command." >&2; exit 1 ;;
  *) echo "fake docker: no $1 here" >&2; exit 1 ;;
esac
"""
NO_DOCKER = "the docker CLI is not installed here (no 'docker' on PATH): install Docker"
NO_ENGINE = "the Docker engine does not answer"
OLD_COMPOSE = "docker compose v2 is required, 2.23.1 or later"
UPGRADE = "install or upgrade the compose plugin"
STACK_TASKS = [
    ("up",),
    ("down",),
    ("status",),
    ("logs",),
    ("doctor",),
    ("bootstrap",),
    ("reset", "--service", "flops_manager"),
    ("clear-registry", "--yes"),
    ("redb", "--yes", "--skip-apps"),
]


class HtmlServer:
    """Answers every request with an HTML page, or only the login with a JSON token."""

    def __init__(self, address: str, login_ok: bool) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if login_ok and "login" in self.path:
                    body, kind = json.dumps({"token": "t"}).encode(), "application/json"
                else:
                    body, kind = b"<html><body>502 Bad Gateway</body></html>", "text/html"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((address, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def cases(root: Path, sm_address: str, html_port: int, login_port: int) -> dict[str, Case]:
    """Case id -> case; every path below ``root``."""
    fake = root / "fakebin"
    fake.mkdir()
    (fake / "docker").write_text(FAKE_DOCKER)
    (fake / "docker").chmod(0o755)
    (root / "a-file").write_text("")
    below_a_file = str(root / "a-file" / "state")
    no_path = {"PATH": str(root / "empty-path")}
    found: dict[str, Case] = {}
    for args in STACK_TASKS:
        name = args[0]
        found[f"no-docker-{name}"] = Case(args, (NO_DOCKER,), env=no_path)
        found[f"compose-missing-{name}"] = Case(
            args, (OLD_COMPOSE, "none found", UPGRADE), env={"PATH": str(fake)}
        )
        found[f"compose-too-old-{name}"] = Case(
            args,
            (OLD_COMPOSE, "v2.20.2", UPGRADE),
            env={"PATH": str(fake), "FAKE_COMPOSE_VERSION": "v2.20.2"},
        )
    for args in (("testbed.up", "--workers", "1"), ("testbed.down",), ("demo",)):
        found[f"no-docker-{args[0]}"] = Case(args, (NO_DOCKER,), env=no_path)
    for args in (("up",), ("status",), ("doctor",), ("testbed.up",)):
        found[f"no-engine-{args[0]}"] = Case(args, (NO_ENGINE,))
    found["resolve-inventory-name"] = Case(
        ("prepare-builder", "--host", "edge-0.invalid"), ("cannot resolve 'edge-0.invalid'",)
    )
    found["resolve-dry-learner"] = Case(
        ("--dry", "prepare-learner", "--host", "root@nosuchhost.invalid"),
        ("cannot resolve 'nosuchhost.invalid'", "check the host name"),
    )
    found["refused"] = Case(
        ("prepare-builder", "--host", "127.0.0.1:1"),
        ("connection refused by 127.0.0.1:1", "start sshd there"),
    )
    found["state-dir-unwritable-up"] = Case(
        ("up",),
        ("cannot create the lock file", "flops.state_dir"),
        flops={"state_dir": below_a_file},
    )
    found["xdg-state-unwritable-testbed"] = Case(
        ("testbed.up",),
        ("cannot create the testbed's folder", "flops.state_dir"),
        env={"XDG_STATE_HOME": below_a_file},
    )
    sm = {
        "addresses": {"system_manager_ip": sm_address},
        "oakestra": {"timeout": 3},
    }
    for args in (("oakestra-apps",), ("clear-apps", "--yes", "--without-db")):
        found[f"sm-html-{args[0]}"] = Case(
            args,
            ("answered the login with HTTP 200 and no JSON", "check SYSTEM_MANAGER_IP"),
            flops={**sm, "oakestra": {"timeout": 3, "port": html_port}},
        )
        found[f"sm-html-after-login-{args[0]}"] = Case(
            args,
            ("answered list applications with HTTP 200 and no JSON", "check SYSTEM_MANAGER_IP"),
            flops={**sm, "oakestra": {"timeout": 3, "port": login_port}},
        )
    return found


REPORTS = ("doctor", "prepare-builder", "--dry")  # a report: the line is a row of it
EXPECTED_CODE = {"resolve-inventory-name": 4, "resolve-dry-learner": 4, "refused": 4}
CASE_IDS = [
    *(f"{kind}-{args[0]}" for kind in ("no-docker", "compose-missing") for args in STACK_TASKS),
    *(f"compose-too-old-{args[0]}" for args in STACK_TASKS),
    "no-docker-testbed.up",
    "no-docker-testbed.down",
    "no-docker-demo",
    "no-engine-up",
    "no-engine-status",
    "no-engine-doctor",
    "no-engine-testbed.up",
    "resolve-inventory-name",
    "resolve-dry-learner",
    "refused",
    "state-dir-unwritable-up",
    "xdg-state-unwritable-testbed",
    "sm-html-oakestra-apps",
    "sm-html-clear-apps",
    "sm-html-after-login-oakestra-apps",
    "sm-html-after-login-clear-apps",
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, tuple[Case, Ran]]:
    address = primary_ip()
    if not address:
        pytest.skip("this host has no IPv4 default route: SYSTEM_MANAGER_IP cannot be loopback")
    root = tmp_path_factory.mktemp("faults")
    html, login = HtmlServer(address, login_ok=False), HtmlServer(address, login_ok=True)
    try:
        found = cases(root, address, html.port, login.port)
        assert set(found) == set(CASE_IDS)
        ran = run_cases(
            {cid: (case, root / f"case{n}") for n, (cid, case) in enumerate(found.items())}
        )
    finally:
        html.stop()
        login.stop()
    return {cid: (found[cid], ran[cid]) for cid in found}


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_an_environment_problem_is_one_line_naming_the_fix(outcomes, case_id):
    case, ran = outcomes[case_id]
    assert "Traceback" not in ran.output and "unexpected error" not in ran.output, ran.output
    assert ran.returncode != 0, ran.output
    if case_id in EXPECTED_CODE:  # unreachable hosts
        assert ran.returncode == EXPECTED_CODE[case_id], ran.output
    lines = ran.output.strip("\n").split("\n")
    hits = [line for line in lines if case.needles[0] in line]
    assert len(hits) == 1, ran.output
    for needle in case.needles:
        assert needle in hits[0], f"{needle!r} not in: {hits[0]}"
    if not any(word in case.args for word in REPORTS):
        assert lines == hits, f"expected one line, got:\n{ran.output}"
    assert ran.after == ran.before, f"files appeared: {sorted(ran.after - ran.before)}"


def test_a_new_enough_compose_passes_the_check(tmp_path):
    """The control: with compose 2.23.1 the same fake gets past the check (and stops at the
    first call the fake does not answer)."""
    root = tmp_path / "c"
    root.mkdir()
    fake = cases(root, "192.0.2.10", 1, 1)["compose-too-old-status"]
    case = Case(fake.args, (), env={**fake.env, "FAKE_COMPOSE_VERSION": "v2.23.1"})
    ran = run_cases({"ok": (case, tmp_path / "run")})["ok"]
    assert "compose" not in ran.output and "fake docker: no container here" in ran.output


def test_a_full_disk_on_the_env_file_write_changes_nothing(make, monkeypatch):  # noqa: F811
    """``No space left on device`` while the env file is written: one line that says to
    free space, the old env file as it was, no temp file, and nothing else done."""
    project = make()
    env_file = Path(project.s.stack.env_file)
    env_file.write_text("# an older env file\n")
    env_file.chmod(0o600)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(FlopsError) as err:
        preflight.preflight(project)
    message = err.value.message
    assert "\n" not in message and "No space left on device" in message
    assert "free space on that disk" in message and str(env_file) in message
    assert env_file.read_text() == "# an older env file\n"
    assert sorted(p.name for p in env_file.parent.iterdir()) == [env_file.name]
    assert project.engine.changes() == []
