"""Task bodies: read settings, call the logic, render the result once.

Each function here takes an Invoke context plus keyword arguments and returns what it
rendered, so other tasks and Python code can compose them (``bootstrap`` does).
"""

from __future__ import annotations

from typing import Any

from .config import ADDRESS_VARS, settings


def is_dry(c: Any) -> bool:
    return bool(c.config.run.dry)


def env(c: Any, as_json: bool = False, quiet: bool = False) -> dict[str, str]:
    """Resolve and validate the six addresses and write the compose env file."""
    from . import env as envmod
    from . import ui

    s = settings(c)
    dry = is_dry(c)
    addresses, values, changed = envmod.ensure_env(s, dry=dry)
    if not quiet:
        rows = [(var, addresses.values[var], addresses.sources[var]) for var in ADDRESS_VARS]
        extra = {k: v for k, v in envmod.public_view(values).items() if k not in ADDRESS_VARS}
        ui.render_env(rows, s.stack.env_file, changed, dry, as_json, extra)
    return addresses.values
