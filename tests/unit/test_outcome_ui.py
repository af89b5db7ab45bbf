import json

import pytest

from flops_tasks import outcome, ui
from flops_tasks.changes import Change, ChangeLog
from flops_tasks.outcome import ExitCode, Report, Status
from flops_tasks.run import Output


def sample() -> Report:
    r = Report("prepare-builder")
    r.extend(
        [
            outcome.ok("w1", "qemu", "installed"),
            outcome.changed("w1", "buildx", "builder created"),
            outcome.ok("w2", "qemu"),
            outcome.failed("w3", "qemu", "apt-get failed"),
            outcome.unreachable("w4", "connect", "timed out"),
        ]
    )
    return r


def test_report_status_and_exit_code():
    r = sample()
    assert r.host_status("w1") is Status.CHANGED
    assert r.host_status("w2") is Status.OK
    assert r.host_status("w4") is Status.UNREACHABLE
    assert r.counts() == {
        "ok": 1,
        "changed": 1,
        "failed": 1,
        "unreachable": 1,
        "interrupted": 0,
    }
    assert r.exit_code == ExitCode.FAILED == 1
    good = Report("x", [outcome.ok("w1", "s")])
    assert good.exit_code == 0 and not good.changed
    # unreachable hosts and nothing failed: their own exit code
    away = Report("x", [outcome.ok("w1", "s"), outcome.unreachable("w2", "connect", "down")])
    assert away.exit_code == ExitCode.UNREACHABLE == 4
    assert Report("x", interrupted=True).exit_code == ExitCode.INTERRUPTED == 130


def test_json_rendering(capsys):
    ui.render_report(sample(), Output(json=True))
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    assert data["hosts"]["w1"]["changed"] is True
    assert data["hosts"]["w1"]["steps"][1] == {
        "host": "w1",
        "step": "buildx",
        "status": "changed",
        "detail": "builder created",
        "changed": True,
    }
    assert data["hosts"]["w4"]["status"] == "unreachable"
    assert data["hosts"]["w3"]["recap"] == {
        "ok": 0,
        "changed": 0,
        "warning": 0,
        "skipped": 0,
        "failed": 1,
        "unreachable": 0,
        "interrupted": 0,
    }
    assert data["exit_code"] == 1


def test_text_rendering_shows_what_changed_then_a_recap_per_host(capsys):
    ui.render_report(sample())
    assert capsys.readouterr().out.splitlines() == [
        "prepare-builder: problems",
        "changed     w1  buildx: builder created",
        "failed      w3  qemu: apt-get failed",
        "unreachable w4  connect: timed out",
        "w1  ok=1 changed=1 warning=0 failed=0 unreachable=0",
        "w2  ok=1 changed=0 warning=0 failed=0 unreachable=0",
        "w3  ok=0 changed=0 warning=0 failed=1 unreachable=0",
        "w4  ok=0 changed=0 warning=0 failed=0 unreachable=1",
    ]
    ui.render_report(Report("again", [outcome.ok("w1", "qemu")]))
    assert capsys.readouterr().out.splitlines() == [
        "again: no changes",
        "w1  ok=1 changed=0 warning=0 failed=0 unreachable=0",
    ]


def test_verbose_shows_every_row_with_its_detail(capsys):
    ui.render_report(sample(), Output(verbose=True))
    lines = capsys.readouterr().out.splitlines()
    assert "ok          w1  qemu: installed" in lines and "ok          w2  qemu" in lines


def test_identical_rows_of_several_hosts_are_one_line_and_a_fix_stands_alone(capsys):
    fix = "curl -sfL https://example.org/install.sh | sh -"
    r = Report("prepare-learner")
    for host in ("w1", "w2"):
        r.extend(
            [
                outcome.ok(host, "qemu", "fine"),
                outcome.warning(host, "nodeengine-imageBuilder", "NodeEngine not found", fix),
                outcome.warning(host, "nodeengine-FLOps", "NodeEngine not found", fix),
            ]
        )
    ui.render_report(r)
    assert capsys.readouterr().out.splitlines() == [
        "prepare-learner: no changes",
        "warning     w1, w2  nodeengine-imageBuilder: NodeEngine not found",
        "warning     w1, w2  nodeengine-FLOps: NodeEngine not found",
        f"            fix: {fix}",
        "w1  ok=1 changed=0 warning=2 failed=0 unreachable=0",
        "w2  ok=1 changed=0 warning=2 failed=0 unreachable=0",
    ]
    data = r.to_dict()  # JSON counts what the text shows
    assert data["hosts"]["w1"]["warnings"] == 2 and len(data["warnings"]) == 4
    assert data["hosts"]["w1"]["steps"][1]["fix"] == fix


def test_nothing_is_cut_or_folded_off_a_terminal(capsys):
    detail = "x" * 300 + " ssh-keyscan -p 2222 10.0.0.5 >> '/a b/known_hosts'"
    ui.render_report(Report("doctor", [outcome.failed("w1", "ssh", detail)]))
    lines = capsys.readouterr().out.splitlines()
    assert f"failed      w1  ssh: {detail}" in lines


def test_a_recorded_change_makes_its_row_changed_and_a_dry_run_agrees():
    """The row of a step that recorded a change is ``changed``, planned or made."""
    for done in (False, True):
        log = ChangeLog()
        log.record(Change("stack", "reset", "docker compose restart", done=done))
        r = Report("reset", dry=not done, changes=log)
        r.extend([outcome.ok("stack", "reset", "6 services"), outcome.ok("stack", "env", "")])
        assert [o.status for o in r.outcomes] == [Status.CHANGED, Status.OK]


def test_diff_shows_file_changes_with_secrets_masked(capsys):
    log = ChangeLog()
    log.record(
        Change(
            "w1",
            "trust-docker",
            "add 10.0.0.2:5073",
            done=False,
            path="/etc/docker/daemon.json",
            before='{"bip": "172.17.0.1/16"}\n',
            after='{"bip": "172.17.0.1/16", "insecure-registries": ["10.0.0.2:5073"]}\n',
        )
    )
    log.record(
        Change(
            "stack",
            "env",
            "write flops.env",
            done=False,
            path="/x/flops.env",
            before=None,
            after="MYSQL_ROOT_PASSWORD=oakestra\nFTP_PASSWORD=flops\nA=1\n",
        )
    )
    r = Report("prepare-builder", dry=True, changes=log)
    r.extend([outcome.changed("w1", "trust-docker", "would change")])
    ui.render_report(r, Output(diff=True))
    out = capsys.readouterr().out
    assert "--- w1:/etc/docker/daemon.json" in out and "+++ w1:/etc/docker/daemon.json" in out
    assert '+{"bip": "172.17.0.1/16", "insecure-registries": ["10.0.0.2:5073"]}' in out
    assert "+MYSQL_ROOT_PASSWORD=********" in out and "+FTP_PASSWORD=********" in out
    assert "oakestra" not in out and "=flops" not in out
    data = r.to_dict()["changes"]
    assert data[0]["before"] == '{"bip": "172.17.0.1/16"}\n' and data[0]["done"] is False
    assert "oakestra" not in json.dumps(data)


def test_confirm_without_tty_cannot_ask(monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert ui.confirm("delete?") is None


# -- worker text is data, never markup or terminal control ------------------------------------
HOSTILE_TEXT = [
    "E: [/red] closes a tag that was never opened",
    "see [link=https://evil.example/x]the docs[/link] now",
    "\x1b[2J\x1b[H\x1b]0;owned title\x07cleared the screen",
    "[bold red]loud[/]",
    "bell\x07 backspace\x08 carriage\r return \x9b31m c1 csi",
    ":warning: :smiley:",
    "bidi \u202eevil\u202c end",
]


@pytest.fixture
def wide(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # no folding: every cell stays on one line


def _assert_literal(out: str) -> None:
    for bad in ("\x1b", "\x07", "\x08", "\r", "\x9b", "\u202e", "\u26a0"):
        assert bad not in out, f"{bad!r} reached the terminal"
    assert "[/red] closes a tag" in out
    assert "[link=https://evil.example/x]the docs[/link]" in out
    assert "[bold red]loud[/]" in out and ":warning: :smiley:" in out
    assert "\\x1b[2J\\x1b[H\\x1b]0;owned title\\x07cleared" in out


def test_hostile_worker_output_is_shown_literally_in_the_report(capsys, wide):
    report = Report(
        "prepare-builder", [outcome.failed("w1", "qemu", text) for text in HOSTILE_TEXT]
    )
    report.notes.extend(HOSTILE_TEXT)
    ui.render_report(report)
    _assert_literal(capsys.readouterr().out)


def test_hostile_text_in_progress_lines_is_shown_literally(capsys, wide):
    for text in HOSTILE_TEXT:
        ui.info(text)
    _assert_literal(capsys.readouterr().err)


def test_hostile_values_in_every_table_are_shown_literally(capsys, wide):
    rows = [
        {"service": text, "state": "running", "health": text, "ports": [text]}
        for text in HOSTILE_TEXT
    ]
    ui.render_status(rows)
    ui.render_env(
        [("FLOPS_MANAGER_IP", text, text) for text in HOSTILE_TEXT],
        "/x/flops.env",
        stale=True,
        as_json=False,
        extra={},
    )
    ui.render_testbed(
        {
            "seconds": 1,
            "workers": [{"name": t, "ip": t} for t in HOSTILE_TEXT],
            "gateway": "172.17.0.1",
            "config": "/x/invoke.yaml",
        }
    )
    _assert_literal(capsys.readouterr().out)


def test_the_live_view_shows_hostile_text_literally():
    from io import StringIO

    from rich.console import Console

    live = ui.LiveHosts("prepare", ["w1"], enabled=False)
    live.host_step("w1", outcome.failed("w1", "[/red]\x1b[2J", "detail"))
    live.host_done("w1", [outcome.failed("w1", "x")])
    buffer = StringIO()
    Console(file=buffer, width=200).print(live._table())
    assert "done: failed" in buffer.getvalue()
    live.host_step("w1", outcome.failed("w1", "[/red]\x1b[2J", "detail"))
    buffer = StringIO()
    Console(file=buffer, width=200).print(live._table())
    assert "[/red]\\x1b[2J: failed" in buffer.getvalue()


def test_hostile_oakestra_names_in_the_apps_table_are_shown_literally(capsys, wide):
    plan = {
        "system_manager": "http://[fd00::2]:10000",
        "identification": "the FLOps DB",
        "applications": [
            {
                "name": text,
                "namespace": text,
                "id": text,
                "owner": text,
                "services": [{"name": text, "namespace": text}],
                "action": "keep",
                "reason": text,
            }
            for text in HOSTILE_TEXT
        ],
    }
    ui.render_apps(plan)
    out = capsys.readouterr().out
    _assert_literal(out)
    assert "http://[fd00::2]:10000" in out


def test_one_line_errors_escape_control_characters():
    """Text from a worker, a container or a server in an error line is data too."""
    from flops_tasks.errors import FlopsError, UsageError

    for text in HOSTILE_TEXT:
        for exc in (FlopsError(f"docker: {text}"), UsageError(f"unknown tag {text!r}")):
            for bad in ("\x1b", "\x07", "\x08", "\r", "\x9b", "\u202e"):
                assert bad not in exc.message
    assert FlopsError("a\x1b[2Jb").message == "a\\x1b[2Jb"
