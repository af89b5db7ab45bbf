"""The demo from a plain clone: no ``shared/`` beside it, no FLOPS_UPSTREAM_TARBALL, and no
route to GitHub (this machine has none), so upstream's source cannot be had. ``inv demo``
must still finish, exit 0, without the manager and the sidecar, and name both as warnings
that say how to provide the source.

The clone is another checkout path, so its testbed is its own (labels, state folder); this
checkout's testbed, when up, is taken down first (fixed container names) and brought up
again afterwards. Images are built through Docker's cache; one worker keeps it short.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from flops_tasks import testbed as tb

from .helpers import INV, ROOT

pytestmark = pytest.mark.integration


def _progress(line: str) -> None:
    print(f"[plain clone] {line}", flush=True)


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    root = tmp_path_factory.mktemp("plain")
    res = subprocess.run(
        ["git", "clone", "-q", str(ROOT), str(root / "flops-tasks")], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert not any((p / "shared").exists() for p in (root / "flops-tasks").parents)
    env = {
        k: v
        for k, v in os.environ.items()
        if k != tb.UPSTREAM_VAR and not k.startswith(("INVOKE_", "XDG_STATE"))
    }
    env.update(COLUMNS="200", XDG_STATE_HOME=str(root / "state"))
    was_up = bool(tb.labelled()["containers"])
    if was_up:
        tb.down(keep_images=True, progress=_progress)
    yield root / "flops-tasks", env
    down = inv(root / "flops-tasks", env, "testbed.down")
    if was_up:
        tb.up(workers=2, progress=_progress)
    assert down.returncode == 0, down.stdout + down.stderr


def inv(where: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    started = time.monotonic()
    res = subprocess.run(
        [INV, "--search-root", str(where), *args],
        cwd=where,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=1800,
    )
    _progress(f"inv {' '.join(args)}: exit {res.returncode} in {time.monotonic() - started:.0f} s")
    return res


def test_the_demo_of_a_plain_clone_finishes_and_names_what_it_left_out(clone):
    where, env = clone
    res = inv(where, env, "demo", "--workers", "1")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "Traceback" not in out
    assert "cannot fetch upstream addon-FLOps" in out  # it tried the clone first
    warnings = [line for line in res.stdout.splitlines() if line.startswith("warning")]
    manager = [line for line in warnings if "flops_manager" in line]
    sidecar = [line for line in warnings if "ml_data_server" in line]
    assert manager and sidecar, res.stdout
    for line in (manager[0], sidecar[0]):
        assert tb.UPSTREAM_VAR in line and tb.DEFAULTS["addon"]["url"] in line, line
    assert "what now:" in res.stdout
    # the clone's testbed is its own: its label, its folder in its state directory
    clone_id = tb.checkout_id(where)
    assert clone_id != tb.TESTBED_ID
    assert (Path(env["XDG_STATE_HOME"]) / "flops-tasks" / "testbed" / clone_id).is_dir()
