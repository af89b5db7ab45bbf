import json

import pytest

from flops_tasks import outcome, ui
from flops_tasks.outcome import Report, Status


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
    assert r.counts() == {"ok": 1, "changed": 1, "failed": 1, "unreachable": 1}
    assert r.exit_code == 1
    good = Report("x", [outcome.ok("w1", "s")])
    assert good.exit_code == 0 and not good.changed


def test_json_rendering(capsys):
    ui.render_report(sample(), as_json=True)
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


def test_table_rendering(capsys):
    ui.render_report(sample())
    out = capsys.readouterr().out
    assert "prepare-builder" in out
    assert "recap: 1 ok, 1 changed, 1 failed, 1 unreachable (problems)" in out
    ui.render_report(Report("again", [outcome.ok("w1", "qemu")]))
    assert "(no changes)" in capsys.readouterr().out


def test_confirm_without_tty_refuses(monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert ui.confirm("delete?", assume_yes=False) is False
    assert ui.confirm("delete?", assume_yes=True) is True


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
        changed=True,
        dry=False,
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
