"""Build contexts of the images made from upstream addon-FLOps code.

A build context is a directory staged here and never edited by hand: our Dockerfile, pins and
scripts next to upstream's code at the pinned ref, and ``wheels/`` (the host-filled
wheelhouse for offline builds; empty for online ones). Staging copies only what differs and
removes what is no longer wanted, so a second run changes nothing and Docker's layer cache
holds. A context holds no links: a link in the sources or in the context is refused in one line
(its target, a host file, would be built into the image, or written through).

- The FLOps manager (``compose/flops_manager/``): ``inv up --build`` stages it from the
  addon-FLOps checkout into ``compose/.build/flops_manager`` (the context the production
  compose file names); the testbed stages it from the upstream tarball with a wheelhouse.
- The ml_data_server (``testbed/ml_data_server/``): the testbed only; users get upstream's
  image.
"""

from __future__ import annotations

import filecmp
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .config import PROJECT_ROOT, Settings
from .errors import FlopsError
from .outcome import Outcome, changed, ok


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


def _refuse_link(path: Path) -> None:
    """A build context holds no links: a link's target (a host file) would be built into the
    image, and a link in the staged context would be written through."""
    if path.is_symlink():
        raise FlopsError(
            f"{path} is a symbolic link (to {os.readlink(path)}): a build context holds "
            "no links; replace it with the file itself, or remove it"
        )


def _files(root: Path) -> dict[str, Path]:
    """relative path -> file, for every file under ``root`` (bytecode caches left out); a
    link anywhere below ``root`` is refused, never followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            _refuse_link(Path(dirpath) / name)
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP)
        for name in filenames:
            if not name.endswith(_SKIP):
                path = Path(dirpath) / name
                out[path.relative_to(root).as_posix()] = path
    return out


def wanted_files(recipe: Recipe, addon_root: Path, wheels: Path | None = None) -> dict[str, Path]:
    """Everything the context must hold: relative path -> source file."""
    for _, rel in recipe.upstream:  # no link on the way down from the addon tree either
        for depth in range(1, len(Path(rel).parts) + 1):
            _refuse_link(addon_root.joinpath(*Path(rel).parts[:depth]))
    missing = [rel for _, rel in recipe.upstream if not (addon_root / rel).is_dir()]
    if missing:
        raise FlopsError(
            f"{addon_root} has no {missing[0]}/: it is not an addon-FLOps source "
            "tree; point flops.addon.path at an addon-FLOps checkout"
        )
    ours = sorted(recipe.ours.iterdir())
    for path in ours:
        _refuse_link(path)
    wanted = {p.name: p for p in ours if p.is_file()}
    for name, rel in recipe.upstream:
        wanted.update({f"{name}/{k}": v for k, v in _files(addon_root / rel).items()})
    if wheels is not None:
        found = sorted(wheels.glob("*.whl"))
        for path in found:
            _refuse_link(path)
        wanted.update({f"{WHEELS}/{w.name}": w for w in found})
    return wanted


def stage(recipe: Recipe, addon_root: Path, dest: Path, wheels: Path | None = None) -> bool:
    """Make ``dest`` hold exactly the recipe's files; True when anything changed.

    Links are refused in one line that names them, in what is staged and in ``dest``:
    nothing is followed, nothing is written through a link."""
    wanted = wanted_files(recipe, addon_root, wheels)
    _refuse_link(dest)
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
    """Where ``inv up --build`` stages the manager's context (named by the compose file)."""
    return Path(s.stack.compose_files[0]).parent / ".build" / MANAGER.name


def ensure_manager_context(
    s: Settings, dry: bool = False, plan: list[str] | None = None
) -> Outcome:
    """Stage the manager's build context from the addon-FLOps checkout (online build)."""
    source = Path(os.path.expanduser(s.addon_path))
    dest = manager_context_dir(s)
    if dry:
        if plan is not None:
            plan.append(f"stage the FLOps manager build context {dest} from {source}")
        return ok("stack", "build-context", f"would stage {dest} from {source}")
    updated = stage(MANAGER, source, dest)
    verb = "staged from" if updated else "up to date with"
    return (changed if updated else ok)("stack", "build-context", f"{dest} {verb} {source}")
