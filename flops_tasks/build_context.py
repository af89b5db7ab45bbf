"""Build contexts of the images made from upstream addon-FLOps code.

A build context is a directory staged here and never edited by hand: our Dockerfile, pins and
scripts next to upstream's code at the pinned ref, and ``wheels/`` (the host-filled
wheelhouse for offline builds; empty for online ones). Staging copies only what differs and
removes what is no longer wanted, so a second run changes nothing and Docker's layer cache
holds. A context holds no links: a link in the sources or in the context is refused in one line
(its target, a host file, would be built into the image, or written through).

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
# written into every context ``stage`` makes: a compose build section whose context holds it
# is one flops-tasks stages from the addon-FLOps checkout (``manager_context``)
STAMP = ".flops-tasks-staged"
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


def wanted_files(
    recipe: Recipe,
    addon_root: Path,
    wheels: Path | None = None,
    extra: dict[str, Path] | None = None,
) -> dict[str, Path]:
    """Everything the context must hold: relative path -> source file (``extra``: more files
    by their path in the context)."""
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
    wanted.update(extra or {})
    return wanted


def differs(
    recipe: Recipe,
    addon_root: Path,
    dest: Path,
    wheels: Path | None = None,
    extra: dict[str, Path] | None = None,
) -> bool:
    """True when ``stage`` would change anything in ``dest`` (read-only)."""
    wanted = wanted_files(recipe, addon_root, wheels, extra)
    have = _files(dest) if dest.is_dir() else {}
    if set(have) - set(wanted) - {STAMP}:
        return True
    return any(
        not (dest / rel).is_file() or not filecmp.cmp(src, dest / rel, shallow=True)
        for rel, src in wanted.items()
    )


def stage(
    recipe: Recipe,
    addon_root: Path,
    dest: Path,
    wheels: Path | None = None,
    extra: dict[str, Path] | None = None,
) -> bool:
    """Make ``dest`` hold exactly the recipe's files; True when anything changed.

    Links are refused in one line that names them, in what is staged and in ``dest``:
    nothing is followed, nothing is written through a link."""
    wanted = wanted_files(recipe, addon_root, wheels, extra)
    _refuse_link(dest)
    dest.mkdir(parents=True, exist_ok=True)
    changed_any = False
    for rel, path in _files(dest).items():
        if rel not in wanted and rel != STAMP:
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
    stamp = dest / STAMP
    if not stamp.is_file() or stamp.read_text() != recipe.name + "\n":
        stamp.write_text(recipe.name + "\n")
    return changed_any


def manager_context_dir(s: Settings) -> Path:
    """Where ``inv up --build`` stages the manager's context: ``build/`` in the state
    directory (the env file's FLOPS_MANAGER_CONTEXT, which the compose file names)."""
    return Path(s.state_dir or default_state_dir()) / "build" / MANAGER.name


def is_staged(context: Path, s: Settings) -> bool:
    """True for a build context flops-tasks stages: the production one, or any that
    ``stage`` made (the testbed's, offline)."""
    return context == manager_context_dir(s) or (context / STAMP).is_file()


def ensure_manager_context(
    project: Project, dest: Path | None = None, offline: bool = False
) -> Outcome:
    """Stage the manager's build context (``dest``; default the production one) from the
    addon-FLOps checkout at ``flops.addon.path``; ``offline``: with the wheelhouse (the
    compose file builds with ``PIP_SOURCE=wheelhouse``), filled once by this host's pip."""
    source = Path(os.path.expanduser(project.s.addon_path))
    dest = dest or manager_context_dir(project.s)
    how = " with the wheelhouse" if offline else ""
    summary = f"stage {dest} from {source}{how}"
    if not source.is_dir() and project.dry:  # the clone before it is only planned
        project.act(summary, lambda: None, step=STEP)
        return changed(project.where, STEP, f"would stage {dest} from {source} once cloned")
    wheels = None
    if offline:
        from . import wheelhouse

        wheels, _ = wheelhouse.ensure(MANAGER.requirements)
    if not differs(MANAGER, source, dest, wheels):
        return ok(project.where, STEP, f"{dest} up to date with {source}{how}")
    project.act(summary, lambda: stage(MANAGER, source, dest, wheels), step=STEP)
    verb = "would stage" if project.dry else "staged"
    return changed(project.where, STEP, f"{dest} {verb} from {source}{how}")
