"""README.md's blocks that need a package index or the testbed, run as written: the
install block in a fresh clone, the "Composing tasks" tasks.py with the stock inv, and the
Python example outside inv, both against the testbed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ..readme import python_block, run_block
from .helpers import INV, ROOT, TESTBED_CONFIG

pytestmark = pytest.mark.integration


def test_the_install_block_runs_as_written(tmp_path):
    clone = tmp_path / "flops-tasks"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    res = subprocess.run(
        ["bash", "-ec", run_block("test_the_install_block_runs_as_written").text],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    version = [line for line in res.stdout.splitlines() if line.startswith("flops 0.")]
    assert version and "addon-FLOps" in version[0], res.stdout  # after pip's own output
    assert "testbed.up" in res.stdout and "bootstrap" in res.stdout
    assert (clone / ".venv" / "bin" / "flops").is_file()


def test_the_composing_example_runs_as_written(testbed, tmp_path):
    (tmp_path / "tasks.py").write_text(python_block("def morning(c)").text)
    res = subprocess.run(
        [INV, "-f", str(TESTBED_CONFIG), "morning"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=900,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert res.returncode == 0, res.stdout + res.stderr
    recap = [line for line in res.stdout.splitlines() if " ok=" in line]
    assert {line.split()[0] for line in recap} >= {"stack", "w1", "w2"}, res.stdout


def test_the_python_example_runs_as_written(testbed, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(python_block("finish(run)").text)
    res = subprocess.run(
        [sys.executable, str(script), str(TESTBED_CONFIG)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=900,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert res.returncode == 0, res.stdout + res.stderr
    recap = [line.split() for line in res.stdout.splitlines() if " ok=" in line]
    assert {words[0] for words in recap} >= {"stack", "w1", "w2"}, res.stdout
    assert all("failed=0" in words for words in recap), res.stdout
    assert list(Path(tmp_path).iterdir()) == [script]  # nothing written where it runs
