"""Where flops-tasks finds its own files, and where it keeps what it writes.

- Its files (``data_root``): the compose files (``compose/``) and the testbed's files
  (``testbed/``). In a checkout, the checkout itself; in an installed package,
  ``flops_tasks/data/``, where pyproject.toml maps the same two folders as package data, so
  both trees have one layout (``compose/`` beside ``testbed/``).
- What it writes for itself (``state_dir``): ``flops.state_dir`` when the config sets it,
  else ``$XDG_STATE_HOME/flops-tasks`` (default ``~/.local/state/flops-tasks``). It holds
  the compose env file (unless ``flops.stack.env_file`` names another), the testbed
  (``testbed/<id>/``), the manager's ``--build`` staging (``build/``), run locks
  (``locks/``) and the tracebacks of unexpected errors (``crashes/``).

This module imports nothing of the project: everything else may use it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent
# a checkout holds the compose file and pyproject.toml beside the package
_MARKERS = (Path("compose") / "flops.compose.yml", Path("pyproject.toml"))


def in_checkout() -> bool:
    """True when the package runs from a checkout of the project (also an editable install)."""
    return all((CHECKOUT / marker).is_file() for marker in _MARKERS)


def data_root() -> Path:
    """The folder that holds ``compose/`` and ``testbed/``."""
    return CHECKOUT if in_checkout() else PACKAGE / "data"


DATA_ROOT = data_root()


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/flops-tasks``, or ``~/.local/state/flops-tasks`` (the XDG base
    directory spec ignores a relative ``XDG_STATE_HOME``)."""
    base = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.expanduser("~/.local/state")
    return Path(base) / "flops-tasks"


def state_dir(config: Any = None) -> Path:
    """The state directory: ``flops.state_dir`` of ``config`` (an Invoke config, when
    given and set), else ``default_state_dir``. config.py validates the key."""
    value: Any = ""
    flops: Any = config.get("flops") if hasattr(config, "get") else None
    if hasattr(flops, "get"):
        value = flops.get("state_dir", "")
    if isinstance(value, str) and value.strip():
        return Path(os.path.expanduser(value))
    return default_state_dir()


def installation_id() -> str:
    """Who owns the testbed's Docker objects (their label's value, 12 hex digits).

    A checkout: its path, so two checkouts on one engine never take each other's testbed.
    An installed package: the default state directory, where that testbed's keys and config
    live; a new virtual environment or an upgrade of the same user's package keeps it
    (the package's own path changes with every environment and would orphan it).
    """
    owner = CHECKOUT if in_checkout() else default_state_dir()
    return hashlib.sha256(str(owner.resolve()).encode()).hexdigest()[:12]


def command() -> str:
    """The command the user runs flops-tasks with, for hints: ``flops`` or ``inv``."""
    import sys

    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "flops" if name == "flops" else "inv"
