"""A learner as flops_tasks.data sees it through a HostSession, without SSH.

Docker's answers are recordings made on a testbed worker (``recorded/``: ``docker container
inspect ml_data_server`` over the volume, and over a bind mount), with the mount's path
pointed at a temp dir. Every other command (``list_mount``, ``sha256_of``,
``install_file``, ``test -d``) runs for real under ``/bin/sh`` against that temp dir, so
the builders and the parsers meet real output. A ``docker exec ml_data_server ...`` into a
running sidecar runs its command here too, with this Python's pyarrow first on PATH and the
sidecar's ``/ml_data_server_volume`` pointed at the mount (``sidecar_python=False``: the
sidecar has no Python with pyarrow).
"""

from __future__ import annotations

import getpass
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flops_tasks import commands as C
from flops_tasks.hosts import Target
from flops_tasks.ssh import RemoteFailure, Result

RECORDED = Path(__file__).parent / "recorded"
NO_CONTAINER = "Error response from daemon: No such container: ml_data_server"
NO_VOLUME = "Error response from daemon: get ml_data_server_volume: no such volume"


def recorded_inspect(kind: str, source: Path) -> dict:
    """The recorded sidecar, its data mount's host path replaced by ``source``."""
    name = {"volume": "sidecar-inspect-volume.json", "bind": "sidecar-inspect-bind-created.json"}[
        kind
    ]
    info = json.loads((RECORDED / name).read_text())
    for m in info["Mounts"]:
        if m["Destination"] == C.DATA_MOUNT:
            m["Source"] = str(source)
    return info


@dataclass
class FakeLearner:
    """Quacks like HostSession for data.py: probe, probes, change, upload, plan, dry."""

    root: Path
    sidecar: dict | None = None  # container inspect JSON, None: no container
    volume: Path | None = None  # the volume's mountpoint, None: no volume
    dry: bool = False
    label: str = "w1"
    plan: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # every command, in order
    changes: list[str] = field(default_factory=list)  # commands run by change()
    on_change: Callable[[str], None] | None = None  # hook before a change runs
    uploads: int = 0
    user: str = field(default_factory=getpass.getuser)  # the SSH login
    sidecar_python: bool = True  # the sidecar's image has a Python with pyarrow

    def _sidecar_exec(self, command: str) -> tuple[int, str]:
        argv = shlex.split(command)[3:]  # after: docker exec ml_data_server
        running = bool(((self.sidecar or {}).get("State") or {}).get("Running"))
        if not running:
            return 1, f"Error response from daemon: container {C.SIDECAR} is not running"
        source = next(
            m["Source"] for m in self.sidecar["Mounts"] if m["Destination"] == C.DATA_MOUNT
        )
        argv = [source if a == C.DATA_MOUNT else a for a in argv]
        bin_dir = str(Path(sys.executable).parent) if self.sidecar_python else "/nonexistent"
        # without: only the system's Python, which has no pyarrow
        env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin"}
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
        return proc.returncode, proc.stdout + proc.stderr

    @property
    def target(self) -> Target:
        return Target(self.label, name=self.label, roles=("learner",))

    def _run(self, command: str) -> tuple[int, str]:
        self.commands.append(command)
        if command == C.container_inspect(C.SIDECAR):
            if self.sidecar is None:
                return 1, NO_CONTAINER
            return 0, json.dumps(self.sidecar)
        if command == C.volume_mountpoint(C.DATA_VOLUME):
            return (0, f"{self.volume}\n") if self.volume else (1, NO_VOLUME)
        if command.startswith(f"docker exec {C.SIDECAR} "):
            return self._sidecar_exec(command)
        proc = subprocess.run(
            ["/bin/sh", "-c", command], capture_output=True, text=True, timeout=30, cwd=self.root
        )
        return proc.returncode, proc.stdout + proc.stderr

    def probe(self, command: str, timeout: float | None = None) -> Result:
        rc, out = self._run(command)
        return Result(command, rc, out, "")

    def probes(self, probes: list[tuple[str, str]]) -> dict[str, tuple[int, str]]:
        self.commands.append("(batch)")
        return {name: self._run(command) for name, command in probes}

    def change(self, command: str, summary: str, timeout: float | None = None) -> Result:
        if self.dry:
            self.plan.append(summary)
            return Result(command, 0, dry=True)
        if self.on_change:
            self.on_change(command)
        self.changes.append(command)
        rc, out = self._run(command)
        if rc != 0:
            raise RemoteFailure(f"{summary}: {out.strip().splitlines()[-1:]}")
        return Result(command, rc, out)

    def upload(self, local: str, callback: Callable[[int, int], None] | None = None) -> str:
        uploads = self.root / "uploads"
        uploads.mkdir(exist_ok=True)
        dest = uploads / f"flops-upload.{self.uploads}"
        self.uploads += 1
        shutil.copyfile(local, dest)
        size = dest.stat().st_size
        if callback:
            callback(size // 2, size)
            callback(size, size)
        return str(dest)


def learner(tmp: Path, kind: str = "volume", **kw) -> FakeLearner:
    """A prepared learner: its sidecar serves ``tmp/mount`` (a volume or a bind mount)."""
    mount = tmp / "mount"
    mount.mkdir(parents=True, exist_ok=True)
    sidecar = recorded_inspect(kind, mount)
    volume = mount if kind == "volume" else None
    return FakeLearner(tmp, sidecar=sidecar, volume=volume, **kw)
