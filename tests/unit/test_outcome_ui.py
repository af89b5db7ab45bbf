import json

from flops_tasks import outcome, ui
from flops_tasks.outcome import Report, Status


def sample() -> Report:
    r = Report("prepare-builder")
    r.extend([
        outcome.ok("w1", "qemu", "installed"),
        outcome.changed("w1", "buildx", "builder created"),
        outcome.ok("w2", "qemu"),
        outcome.failed("w3", "qemu", "apt-get failed"),
        outcome.unreachable("w4", "connect", "timed out"),
    ])
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
        "host": "w1", "step": "buildx", "status": "changed", "detail": "builder created",
        "changed": True}
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
