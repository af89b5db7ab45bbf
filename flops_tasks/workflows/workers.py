"""Worker nodes: prepare builders and learners, and clear FLOps' images off them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    from ..config import Settings
    from ..images import HostImages
    from ..ops import PrepContext
    from ..outcome import Outcome
    from ..run import Run
    from ..ssh import HostSession


def prep_context(
    s: Settings, image: str | None = None, data_dir: str | None = None, push_check: bool = False
) -> PrepContext:
    """What every host's preparation needs to know: the registry (as workers address it),
    the former registries whose trust goes, the builder, the sidecar and its data."""
    from .. import env as envmod
    from ..config import data_dir_problem, valid_image
    from ..ops import PrepContext

    problem = data_dir_problem(data_dir) if data_dir else None
    if problem:
        raise UsageError(f"bad --data-dir {data_dir!r}: {problem}")
    if image is not None and not valid_image(image):
        raise UsageError(
            f"bad --image {image!r}: give an image reference such as "
            "registry:5073/ml-data-server:latest"
        )
    addresses = envmod.resolve_addresses(s)
    registry = envmod.registry_host(s, addresses)
    return PrepContext(
        registry=registry,
        forget=envmod.former_registries(s, registry),
        builder_name=s.builder_name,
        builder_driver=s.builder_driver,
        learner_image=image or s.learner_image,
        data_dir=s.learner_data_dir if data_dir is None else data_dir,
        push_check=push_check,
        publish_address=s.learner_publish_address,
    )


def prepare(
    run: Run,
    roles: set[str] | None = None,
    host: str | None = None,
    data_dir: str | None = None,
    image: str | None = None,
    push_check: bool = False,
    remove_check_tools: bool = False,
    title: str = "prepare",
) -> None:
    """Prepare hosts for ``roles`` (None: each inventory host's own roles), in parallel.

    ``remove_check_tools``: instead, purge what earlier push checks installed (buildah ...).
    """
    from .. import ops
    from ..hosts import select_targets

    if remove_check_tools and push_check:
        raise UsageError(
            "--remove-check-tools removes what --push-check installs: give one of them"
        )
    s = run.settings
    ctx = prep_context(s, image=image, data_dir=data_dir, push_check=push_check)
    role = next(iter(roles)) if roles and len(roles) == 1 else None
    targets = select_targets(host, list(s.inventory), role)
    role_of = {t.label: (set(roles) if roles else set(t.roles)) for t in targets}
    targets = [t for t in targets if role_of[t.label]]

    def work(session: HostSession) -> list[Outcome]:
        if remove_check_tools:
            return ops.remove_check_tools(session)
        return ops.prepare_host(session, role_of[session.label], ctx)

    run.add(run.hosts(title, targets, work, lock=True))
    if ctx.forget and not remove_check_tools:
        run.note(
            f"the FLOps registry is now {ctx.registry}: workers' trust for "
            f"{', '.join(ctx.forget)} (where it was before) is dropped"
        )


class WorkerImages:
    """clear-images in two halves, so a workflow can ask once for everything it deletes:
    ``find`` reads every worker's stores, ``remove`` deletes what was listed. Inside one run
    the listing's connections also remove."""

    def __init__(self, run: Run, host: str | None, registry_only: bool) -> None:
        from .. import env as envmod
        from ..hosts import select_targets

        s = run.settings
        self.run, self.registry_only = run, registry_only
        self.registry = envmod.registry_host(s, envmod.resolve_addresses(s))
        self.targets = select_targets(host, list(s.inventory), None) if host or s.inventory else []
        self.found: dict[str, HostImages] = {}

    def find(self) -> None:
        """List every worker's FLOps images (read-only; a host that does not answer gets
        its row here and is left out of ``remove``)."""
        from .. import images

        def listing(session: HostSession) -> list[Outcome]:
            self.found[session.label] = images.list_images(
                session, self.registry, upstream=not self.registry_only
            )
            return []

        self.run.add(self.run.hosts("clear-images: list", self.targets, listing, step="list"))

    def deletes(self) -> list[str]:
        return [line for listing in self.found.values() for line in listing.deletes()]

    def remove(self) -> None:
        from .. import images

        reachable = [t for t in self.targets if t.label in self.found]
        self.run.add(
            self.run.hosts(
                "clear-images",
                reachable,
                lambda session: images.remove_images(session, self.found[session.label]),
                step="clear-images",
                lock=True,
            )
        )


def clear_images(
    run: Run, host: str | None = None, yes: bool = False, registry_only: bool = False
) -> None:
    """Remove unused FLOps images (FLOps registry, and unless ``registry_only`` FLOps' own
    upstream images) from workers' Docker and containerd stores."""
    workers = WorkerImages(run, host, registry_only)
    if not workers.targets:
        raise UsageError(
            "no hosts in the inventory: pass --host=[user@]host[:port] or add hosts "
            "under flops.inventory"
        )
    workers.find()
    run.confirm(workers.deletes(), yes)
    workers.remove()
