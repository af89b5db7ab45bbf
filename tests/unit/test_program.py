"""The ``flops`` command (flops_tasks/program.py) in-process: its version line, its --dry
help, the invoke.yaml of the folder it runs in, and its catch-all at the edge. The wheel,
installed and run from an empty folder, is tests/integration/test_installed.py."""

from __future__ import annotations

import json
import os
import sys

import pytest

from flops_tasks import __version__, program
from flops_tasks.config import DEFAULTS


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """An empty folder as the working directory, with HOME and the state there."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    for key in [k for k in os.environ if k.startswith("INVOKE_")]:
        monkeypatch.delenv(key)
    return tmp_path


def flops(*args: str) -> int:
    try:
        program.main(["flops", *args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_version_names_the_project_and_the_pinned_addon_ref(folder, capsys):
    assert flops("--version") == 0
    assert capsys.readouterr().out == (
        f"flops {__version__} (addon-FLOps {DEFAULTS['addon']['ref']})\n"
    )


def test_the_version_is_the_packages():
    from importlib.metadata import version

    assert version("flops-tasks") == __version__


def test_dry_is_described_as_it_runs_here(folder, capsys):
    assert flops("--help") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Run every probe and check, change nothing" in out
    assert "Echo commands instead of running" not in out


def test_the_stock_inv_shows_the_same_dry_help_once_it_has_read_tasks_py():
    """``inv`` with no task prints its help after loading tasks.py (``inv --help`` answers
    before, with Invoke's own text: README says so)."""
    import subprocess
    from pathlib import Path

    inv = Path(sys.executable).parent / "inv"
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([str(inv)], cwd=root, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "Run every probe and check, change nothing" in " ".join(res.stdout.split())


def test_the_invoke_yaml_of_the_working_folder_is_read(folder, capsys):
    (folder / "invoke.yaml").write_text(
        "flops:\n  addresses:\n    flops_manager_ip: 10.1.2.3\n"
        f"  stack:\n    env_file: {folder / 'flops.env'}\n"
    )
    assert flops("env", "--json") == 0
    shown = json.loads(capsys.readouterr().out)["addresses"]["FLOPS_MANAGER_IP"]
    assert shown == {"value": "10.1.2.3", "source": f"{folder / 'invoke.yaml'}"}
    assert sorted(p.name for p in folder.iterdir()) == ["invoke.yaml"]  # env only reads


def test_an_exception_outside_the_executor_is_one_line_and_exit_70(folder, capsys, monkeypatch):
    def broken(self):
        raise RuntimeError("the parser broke")

    monkeypatch.setattr(program.FlopsProgram, "parse_cleanup", broken)
    assert flops("env") == 70
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert err.startswith("unexpected error: RuntimeError: the parser broke;")
    crashes = list((folder / "state" / "flops-tasks" / "crashes").iterdir())
    assert len(crashes) == 1 and str(crashes[0]) in err
    assert "the parser broke" in crashes[0].read_text()


def test_a_bad_config_is_one_line_not_a_crash(folder, capsys):
    (folder / "invoke.yaml").write_text("flops: [not, a, mapping\n")
    assert flops("env") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"{folder / 'invoke.yaml'}:")
