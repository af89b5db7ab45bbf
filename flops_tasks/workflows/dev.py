"""The FLOps developer's loop: FLOps' own images built from a checkout and side-loaded on the
workers under their public names, and back to the public images (``devimages``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from ..run import Run


def dev_images(
    run: Run,
    addon: str | None = None,
    component: str | None = None,
    host: str | None = None,
    platform: str | None = None,
    restore: bool = False,
    no_cache: bool = False,
) -> None:
    """Build FLOps' own images from an addon-FLOps checkout and side-load them on the workers
    under their public names (``restore``: remove the side-loaded ones again)."""
    from .. import devimages, ui
    from .. import env as envmod

    s = run.settings
    if restore:
        if addon is not None or platform is not None or no_cache:
            raise UsageError(
                "--restore removes side-loaded images: give it without --addon, --platform "
                "and --no-cache"
            )
        report = devimages.restore(s, run.config, component, host, dry=run.dry, changes=run.changes)
    else:
        registry = envmod.registry_host(s, envmod.resolve_addresses(s))
        report = devimages.run(
            s,
            run.config,
            registry,
            addon,
            component,
            host,
            platform,
            run.dry,
            ui.info,
            no_cache=no_cache,
            changes=run.changes,
        )
    run.report.absorb(report)
