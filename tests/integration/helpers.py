"""Helpers for integration tests: run the real CLI, run commands inside workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flops_tasks.testbed import default_paths

ROOT = Path(__file__).resolve().parents[2]
TESTBED_CONFIG = default_paths().config  # in the state directory (its testbed/<id>/)
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


def changed_rows(data: dict) -> set[tuple[str, str]]:
    """(host, step) of every ``changed`` row of a ``--json`` report."""
    return {
        (host, step["step"])
        for host, found in data["hosts"].items()
        for step in found["steps"]
        if step["status"] == "changed"
    }


def text_rows(stdout: str, status: str = "changed") -> set[tuple[str, str]]:
    """(host, step) of every row of ``status`` in a report printed as text (a row of several
    hosts counts for each)."""
    rows = set()
    for line in stdout.splitlines():
        if line.split(" ", 1)[0] != status:
            continue
        hosts, _, rest = line[len(status) :].strip().partition("  ")
        step = rest.split(": ", 1)[0]
        rows.update((host, step) for host in hosts.split(", "))
    return rows


def dry_then_real(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``inv --dry TASK`` then ``inv TASK``, both ``--json`` on the same state: the dry run
    changes nothing and plans exactly the changes the real run reports (the (host, step) of
    every ``changed`` row). Returns the real run."""
    import json

    dry = inv("--dry", *args, "--json", env=env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    planned = json.loads(dry.stdout)
    assert planned["dry"] is True
    assert all(not c["done"] for c in planned["changes"]), planned["changes"]
    real = inv(*args, "--json", env=env)
    if real.returncode == 0:
        made = json.loads(real.stdout)
        assert changed_rows(planned) == changed_rows(made), (planned, made)
        # every change has its changed row, and every changed row its change
        for report in (planned, made):
            assert {(c["host"], c["step"]) for c in report["changes"]} == changed_rows(report)
    return real
