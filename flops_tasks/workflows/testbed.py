"""The offline testbed: bring it up (or reuse it) and take it down."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UsageError


def workers(value: object) -> int:
    """``--workers`` (a string from the command line, an int from Python; None: 2)."""
    from ..testbed import MAX_WORKERS

    if value is None:
        return 2
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_WORKERS:
        raise UsageError(f"--workers must be a whole number from 1 to {MAX_WORKERS}, got {value}")
    return int(text)


def kinds(value: object) -> list[str] | None:
    """``--kind``: docker, containerd, or a comma list applied to the workers in order."""
    from ..testbed import KINDS

    if value is None:
        return None
    found = [k.strip() for k in str(value).split(",")]
    if not found or any(k not in KINDS for k in found):
        raise UsageError(
            f"--kind must be {' or '.join(KINDS)} (or a comma list of them, one "
            f"per worker), got {value!r}"
        )
    return found


def up(
    count: object = None,
    kind: object = None,
    as_json: bool = False,
    placement: str | None = None,
    state: Path | None = None,
) -> dict[str, Any]:
    """Start (or reuse) the offline testbed and write its invoke.yaml (in its folder of the
    state directory ``state``); ``placement``: with the suite placed so (split, remote)."""
    from .. import testbed, ui

    summary = testbed.up(
        workers=workers(count),
        kinds=kinds(kind),
        progress=ui.info,
        placement=placement,
        paths=testbed.default_paths(state),
    )
    ui.render_testbed(summary, as_json=as_json)
    return summary


def down(
    keep_images: bool = False, as_json: bool = False, state: Path | None = None
) -> dict[str, Any]:
    """Remove every testbed object and the testbed's folder of the state directory."""
    from .. import testbed, ui

    removed = testbed.down(
        keep_images=keep_images, progress=ui.info, paths=testbed.default_paths(state)
    )
    if as_json:
        ui.print_json({"removed": removed})
    else:
        ui.info("removed: " + ", ".join(f"{len(v)} {k}" for k, v in removed.items()))
    return removed
