"""The addon-FLOps checkout the FLOps manager image is built from (only on --build).

A git clone, or an unpacked source tree of addon-FLOps (a release tarball, the testbed's
upstream tree): both build the same way; only a clone can be cloned when missing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Settings
from .errors import FlopsError, UsageError
from .outcome import Outcome, changed, ok

if TYPE_CHECKING:
    from .stack.project import Project

STEP = "addon"


def _git(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600
        )
    except FileNotFoundError:
        raise FlopsError("git is not installed: apt-get install git") from None


def ensure_checkout(project: Project) -> Outcome:
    """A checkout of ``addon.url`` at ``addon.ref`` at ``addon.path``; cloned when missing."""
    s, where = project.s, project.where
    path = Path(os.path.expanduser(s.addon_path))
    if (path / ".git").exists():
        head = _git("-C", str(path), "rev-parse", "HEAD")
        if head.returncode != 0:
            raise FlopsError(f"{path} is not a usable git checkout: {head.stderr.strip()}")
        at = head.stdout.strip()
        note = "" if at.startswith(s.addon_ref) else f" (not the pinned {s.addon_ref[:12]})"
        return ok(where, STEP, f"addon-FLOps checkout {path} at {at[:12]}{note}")
    if (path / "flops_manager_package").is_dir() and (path / "utils_library").is_dir():
        return ok(where, STEP, f"addon-FLOps source tree {path} (not a git checkout)")
    if path.exists() and any(path.iterdir()):
        raise UsageError(
            f"{path} exists but is not a git checkout: remove it or set flops.addon.path"
        )
    summary = f"git clone {s.addon_url} {path} && git checkout {s.addon_ref}"
    project.act(summary, lambda: _clone(s, path), step=STEP)
    verb = "would clone" if project.dry else "cloned"
    return changed(where, STEP, f"{verb} addon-FLOps to {path} at {s.addon_ref[:12]}")


def _clone(s: Settings, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    clone = _git("clone", "--quiet", s.addon_url, str(path))
    if clone.returncode != 0:
        tail = (clone.stderr.strip().splitlines() or ["?"])[-1]
        raise FlopsError(
            f"cannot clone {s.addon_url} ({tail}): clone it yourself to {path}, "
            "or set flops.addon.path to an existing checkout"
        )
    checkout = _git("-C", str(path), "checkout", "--quiet", s.addon_ref)
    if checkout.returncode != 0:
        raise FlopsError(f"addon-FLOps has no ref {s.addon_ref}: set flops.addon.ref")
