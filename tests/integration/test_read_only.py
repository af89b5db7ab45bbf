"""Read-only tasks write nothing: ``env``, ``status``, ``doctor``, ``oakestra-apps``,
``learner-data --list`` and ``logs``, against the testbed with a prepared learner.

Before and after each, a snapshot of flops-tasks' state directory (every file: its path,
mode, size, content digest and modification time; the testbed's config and env file live
there) and of worker w1's trust and sidecar files (daemon.json, containerd's config and
hosts files, buildah's registries drop-in, BuildKit's config, the learner data mount), and
the stack's and w1's containers. A read-only task must leave all of it exactly as it was
(and pass: the workers are prepared first).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from flops_tasks.paths import default_state_dir

from .helpers import in_worker, inv, worker

pytestmark = pytest.mark.integration

TRUST = (
    "/etc/docker",
    "/etc/containerd",
    "/etc/containers",
    "/etc/buildkit",
    "/var/lib/docker/volumes/ml_data_server_volume/_data",
)
READ_ONLY = [
    ("env",),
    ("env", "--json"),
    ("status",),
    ("status", "--json"),
    ("doctor",),
    ("doctor", "--json"),
    ("oakestra-apps",),
    ("learner-data", "--list"),
    ("logs", "--tail", "5"),
    ("logs", "--service", "flops_mqtt", "--tail", "5"),
]


def state_snapshot(root: Path) -> dict[str, tuple[int, int, str, int]]:
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted([*filenames, *dirnames]):
            path = Path(dirpath) / name
            info = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            found[str(path.relative_to(root))] = (
                info.st_mode,
                info.st_size,
                digest,
                info.st_mtime_ns,
            )
    return found


def worker_snapshot() -> str:
    """w1's trust and data files (path, mode, size, mtime, digest) and its containers."""
    paths = " ".join(TRUST)
    script = (
        f'for d in {paths}; do [ -e "$d" ] && find "$d" -xdev '
        "-printf '%p %m %s %T@\\n'; done | sort; "
        f"find {paths} -xdev -type f -exec sha256sum {{}} + 2>/dev/null | sort; "
        "docker ps -a --format '{{.Names}} {{.ID}} {{.Status}}' | sed 's/Up [^(]*/Up/' | sort"
    )
    return in_worker(worker(1), script).stdout


def stack_containers() -> str:
    from python_on_whales import docker

    return "\n".join(
        sorted(f"{c.name} {c.id} {c.state.started_at}" for c in docker.container.list(all=True))
    )


@pytest.fixture(scope="module")
def prepared(testbed):
    """The stack up and every worker prepared for its roles (no change when it already
    is), so that doctor passes and the trust files all exist."""
    for args in (("up",), ("prepare-builder", "prepare-learner")):
        res = inv(*args)
        assert res.returncode == 0, res.stdout + res.stderr
    return testbed


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_a_read_only_task_writes_nothing(prepared, args):
    state = default_state_dir()
    before = (state_snapshot(state), worker_snapshot(), stack_containers())
    res = inv(*args)
    assert res.returncode == 0, res.stdout + res.stderr
    after = (state_snapshot(state), worker_snapshot(), stack_containers())
    assert after[0] == before[0], "the state directory changed"
    assert after[1] == before[1], "w1's trust files, data or containers changed"
    assert after[2] == before[2], "the stack's containers changed"
    assert any(key.endswith("invoke.yaml") for key in before[0])  # the testbed's config is in it
