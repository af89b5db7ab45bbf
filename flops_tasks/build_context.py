"""Build contexts of the images made from upstream addon-FLOps code.

A build context is a directory staged here and never edited by hand: our Dockerfile, pins and
scripts next to upstream's code at the pinned ref, and ``wheels/`` (the host-filled
wheelhouse for offline builds; empty for online ones). Staging copies only what differs and
removes what is no longer wanted, so a second run changes nothing and Docker's layer cache
holds.

- The FLOps manager (``compose/flops_manager/``): ``inv up --build`` stages it from the
  addon-FLOps checkout into ``build/flops_manager`` in the state directory (the context
  the production compose file names through the env file); the testbed stages it from the
  upstream tarball with a wheelhouse.
- The ml_data_server (``testbed/ml_data_server/``): the testbed only; users get upstream's
  image.
"""

from __future__ import annotations

import filecmp
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import PROJECT_ROOT, Settings
from .errors import FlopsError
from .outcome import Outcome, changed, ok
from .paths import default_state_dir

if TYPE_CHECKING:
    from .stack.project import Project

STEP = "build-context"


@dataclass(frozen=True)
class Recipe:
    """What one image's build context holds."""

    name: str
    ours: Path  # Dockerfile, requirements.txt and scripts: copied as they are
    upstream: tuple[tuple[str, str], ...]  # (name in the context, path in the addon tree)

    @property
    def requirements(self) -> Path:
        return self.ours / "requirements.txt"


MANAGER = Recipe(
    name="flops_manager",
    ours=PROJECT_ROOT / "compose" / "flops_manager",
    upstream=(
        ("flops_manager", "flops_manager_package/flops_manager"),
        ("utils_library", "utils_library"),
    ),
)
SIDECAR = Recipe(
    name="ml_data_server",
    ours=PROJECT_ROOT / "testbed" / "ml_data_server",
    upstream=(
        ("ml_data_server", "ml_data_server_package/ml_data_server"),
        ("utils_library", "utils_library"),
    ),
)
WHEELS = "wheels"
_SKIP = ("__pycache__", ".pyc", ".pyo")


def _files(root: Path) -> dict[str, Path]:
    """relative path -> file, for every file under ``root`` (bytecode caches left out)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP)
        for name in filenames:
            if not name.endswith(_SKIP):
                path = Path(dirpath) / name
                out[path.relative_to(root).as_posix()] = path
    return out


def wanted_files(recipe: Recipe, addon_root: Path, wheels: Path | None = None) -> dict[str, Path]:
    """Everything the context must hold: relative path -> source file."""
    missing = [rel for _, rel in recipe.upstream if not (addon_root / rel).is_dir()]
    if missing:
        raise FlopsError(
            f"{addon_root} has no {missing[0]}/: it is not an addon-FLOps source "
            "tree; point flops.addon.path at an addon-FLOps checkout"
        )
    wanted = {p.name: p for p in sorted(recipe.ours.iterdir()) if p.is_file()}
    for name, rel in recipe.upstream:
        wanted.update({f"{name}/{k}": v for k, v in _files(addon_root / rel).items()})
    if wheels is not None:
        wanted.update({f"{WHEELS}/{w.name}": w for w in sorted(wheels.glob("*.whl"))})
    return wanted


def differs(recipe: Recipe, addon_root: Path, dest: Path, wheels: Path | None = None) -> bool:
    """True when ``stage`` would change anything in ``dest`` (read-only)."""
    wanted = wanted_files(recipe, addon_root, wheels)
    have = _files(dest) if dest.is_dir() else {}
    if set(have) - set(wanted):
        return True
    return any(
        not (dest / rel).is_file() or not filecmp.cmp(src, dest / rel, shallow=True)
        for rel, src in wanted.items()
    )


def stage(recipe: Recipe, addon_root: Path, dest: Path, wheels: Path | None = None) -> bool:
    """Make ``dest`` hold exactly the recipe's files; True when anything changed."""
    wanted = wanted_files(recipe, addon_root, wheels)
    dest.mkdir(parents=True, exist_ok=True)
    changed_any = False
    for rel, path in _files(dest).items():
        if rel not in wanted:
            path.unlink()
            changed_any = True
    for dirpath, _, _ in sorted(os.walk(dest), reverse=True):  # deepest first
        if Path(dirpath) != dest and not os.listdir(dirpath):
            os.rmdir(dirpath)
    for rel, src in wanted.items():
        target = dest / rel
        if target.is_file() and filecmp.cmp(src, target, shallow=True):
            continue  # copy2 keeps size and mtime: the same signature means the same file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
        changed_any = True
    (dest / WHEELS).mkdir(exist_ok=True)  # the Dockerfile copies it, empty or not
    return changed_any


def manager_context_dir(s: Settings) -> Path:
    """Where ``inv up --build`` stages the manager's context: ``build/`` in the state
    directory (the env file's FLOPS_MANAGER_CONTEXT, which the compose file names)."""
    return Path(s.state_dir or default_state_dir()) / "build" / MANAGER.name


def ensure_manager_context(project: Project) -> Outcome:
    """Stage the manager's build context from the addon-FLOps checkout (online build)."""
    source = Path(os.path.expanduser(project.s.addon_path))
    dest = manager_context_dir(project.s)
    if not source.is_dir() and project.dry:  # the clone before it is only planned
        project.act(f"stage {dest} from {source}", lambda: None, step=STEP)
        return changed(project.where, STEP, f"would stage {dest} from {source} once cloned")
    if not differs(MANAGER, source, dest):
        return ok(project.where, STEP, f"{dest} up to date with {source}")
    project.act(f"stage {dest} from {source}", lambda: stage(MANAGER, source, dest), step=STEP)
    verb = "would stage" if project.dry else "staged"
    return changed(project.where, STEP, f"{dest} {verb} from {source}")
