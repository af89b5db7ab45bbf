"""Helpers for integration tests: run the real CLI, run commands inside workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTBED_CONFIG = ROOT / ".testbed" / "invoke.yaml"
INV = str(Path(sys.executable).parent / "inv")


def inv(
    *args: str, testbed: bool = True, env: dict | None = None, timeout: float = 900
) -> subprocess.CompletedProcess:
    """Run the real `inv` CLI (no TTY, no stdin) from the project root."""
    cmd = [INV]
    if testbed:
        cmd += ["-f", str(TESTBED_CONFIG)]
    return subprocess.run(
        [*cmd, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def in_worker(name: str, script: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run a shell script inside a worker container (independent of the SSH layer)."""
    res = subprocess.run(
        ["docker", "exec", name, "sh", "-c", script], capture_output=True, text=True, timeout=300
    )
    if check and res.returncode != 0:
        raise AssertionError(f"{script!r} failed in {name}: {res.stdout}{res.stderr}")
    return res


def worker(i: int) -> str:
    return f"flops-testbed-w{i}"
