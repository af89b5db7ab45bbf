"""FLOps images on workers: find them in Docker and containerd, and remove the unused ones.

Two kinds are removed:

- images of the FLOps registry (``REGISTRY/...``: the FLOps projects' learners and
  aggregators, built on the workers' image builders);
- FLOps' own upstream images ``UPSTREAM`` (on by default): what the FLOps manager deploys
  (classes/services/**: image-builder, project-observer, tracking-server,
  mock-data-provider) and the learners' sidecar NodeEngine starts (oakestra
  go_node_engine/addons/flops/FLOps.go: ml-data-server). NodeEngine runs services in
  containerd namespace ``oakestra`` and reuses a cached image, so a stale one never updates.

Stores: Docker, and containerd namespaces ``default`` and ``oakestra``. An image in use by a
running container is kept and reported with that container. A worker without Docker or
without ctr is reported as such, not as an error. Listing is one SSH round trip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import commands as C
from .outcome import Outcome, changed, ok
from .ssh import HostSession, RemoteFailure

NAMESPACES = ("default", "oakestra")
UPSTREAM_PREFIX = "ghcr.io/oakestra/addon-flops/"
UPSTREAM = tuple(
    UPSTREAM_PREFIX + name
    for name in (
        "image-builder",
        "project-observer",
        "tracking-server",
        "mock-data-provider",
        "ml-data-server",
    )
)
DOCKER = "docker"


def repository(ref: str) -> str:
    """``host:port/a/b:tag`` or ``.../b@sha256:...`` -> ``host:port/a/b``."""
    ref = ref.split("@", 1)[0]
    head, sep, tail = ref.rpartition(":")
    return head if sep and "/" not in tail else ref


def wanted(ref: str, registry: str, upstream: bool) -> str | None:
    """Why ``ref`` is one of ours to remove (None: not ours)."""
    if ref.startswith(registry + "/"):
        return "FLOps registry"
    if upstream and repository(ref) in UPSTREAM:
        return "FLOps upstream"
    return None


@dataclass(frozen=True)
class Store:
    """One image store on one host: what goes, what stays (with its container)."""

    name: str  # "docker" or "containerd:<namespace>"
    available: bool = True
    note: str = ""
    remove: tuple[str, ...] = ()
    kept: tuple[tuple[str, str], ...] = ()  # (ref, running container using it)

    @property
    def namespace(self) -> str:
        return self.name.split(":", 1)[1]


@dataclass(frozen=True)
class HostImages:
    host: str
    registry: str
    upstream: bool
    stores: tuple[Store, ...] = field(default_factory=tuple)

    @property
    def to_remove(self) -> int:
        return sum(len(s.remove) for s in self.stores)

    def deletes(self) -> list[str]:
        """What will be deleted, one entry per image (for the confirmation)."""
        return [f"{self.host}: {ref} ({s.name})" for s in self.stores for ref in s.remove]

    def kept_outcomes(self) -> list[Outcome]:
        rows = [
            ok(self.host, "kept", f"{ref} ({s.name}): in use by running container {container}")
            for s in self.stores
            for ref, container in s.kept
        ]
        notes = {(s.name.split(":")[0], s.note): None for s in self.stores if not s.available}
        return rows + [ok(self.host, step, note) for step, note in notes]


def _sections(output: str) -> list[list[str]]:
    parts: list[list[str]] = [[]]
    for line in output.splitlines():
        if line.strip() == C.SECTION_MARK:
            parts.append([])
        elif line.strip():
            parts[-1].append(line.strip())
    return parts


def _unavailable(name: str, rc: int, output: str, tool: str) -> Store | None:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    if lines and lines[0].strip() == f"{C.MISSING_MARK} {tool}":
        what = "Docker" if tool == "docker" else "containerd"
        return Store(
            name, available=False, note=f"no {tool} on this host: {what} images not checked"
        )
    if rc != 0:
        tail = lines[-1].strip() if lines else f"exit {rc}"
        return Store(
            name,
            available=False,
            note=f"{tool} does not answer ({tail[:200]}): {name} images not checked",
        )
    return None


def parse_docker(rc: int, output: str, registry: str, upstream: bool) -> Store:
    """``docker_images_state`` output -> the Docker store's listing."""
    missing = _unavailable(DOCKER, rc, output, "docker")
    if missing:
        return missing
    images, running = (_sections(output) + [[]])[:2]
    in_use: dict[str, list[str]] = {}  # image id or ref -> container names
    for line in running:
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith("/"):
            name, ref, image_id = parts[0][1:], parts[1], parts[2]
            in_use.setdefault(image_id, []).append(name)
            in_use.setdefault(ref, []).append(name)
    remove, kept = [], []
    for line in images:
        parts = line.split()
        if len(parts) != 2 or parts[0].endswith(":<none>") or parts[0].startswith("<none>"):
            continue
        ref, image_id = parts
        if not wanted(ref, registry, upstream):
            continue
        users = sorted(set(in_use.get(image_id, []) + in_use.get(ref, [])))
        if users:
            kept.append((ref, ", ".join(users)))
        else:
            remove.append(ref)
    return Store(DOCKER, remove=tuple(sorted(set(remove))), kept=tuple(sorted(set(kept))))


def _table(lines: list[str], header: str) -> list[list[str]]:
    return [ln.split() for ln in lines if not ln.startswith(header)]


def parse_ctr(namespace: str, rc: int, output: str, registry: str, upstream: bool) -> Store:
    """``ctr_images_state`` output -> one containerd namespace's listing."""
    name = f"containerd:{namespace}"
    missing = _unavailable(name, rc, output, "ctr")
    if missing:
        return missing
    refs, containers, tasks = (_sections(output) + [[], []])[:3]
    running = {row[0] for row in _table(tasks, "TASK") if len(row) >= 3 and row[2] == "RUNNING"}
    in_use: dict[str, list[str]] = {}
    for row in _table(containers, "CONTAINER"):
        if len(row) >= 2 and row[0] in running:
            in_use.setdefault(row[1], []).append(row[0])
    remove, kept = [], []
    for ref in refs:
        if " " in ref or not wanted(ref, registry, upstream):
            continue
        if ref in in_use:
            kept.append((ref, ", ".join(sorted(in_use[ref]))))
        else:
            remove.append(ref)
    return Store(name, remove=tuple(sorted(set(remove))), kept=tuple(sorted(set(kept))))


def list_images(session: HostSession, registry: str, upstream: bool = True) -> HostImages:
    """Every store of one worker, in one round trip (read-only, also under ``--dry``)."""
    probes = [(DOCKER, C.docker_images_state())] + [
        (f"containerd:{ns}", C.ctr_images_state(ns)) for ns in NAMESPACES
    ]
    found = session.probes(probes)
    stores = [parse_docker(*found[DOCKER], registry, upstream)]
    stores += [parse_ctr(ns, *found[f"containerd:{ns}"], registry, upstream) for ns in NAMESPACES]
    return HostImages(session.label, registry, upstream, tuple(stores))


def _images(count: int) -> str:
    return f"{count} image" + ("" if count == 1 else "s")


def _what(listing: HostImages) -> str:
    return "; ".join(f"{s.name}: {', '.join(s.remove)}" for s in listing.stores if s.remove)


def remove_images(session: HostSession, listing: HostImages) -> list[Outcome]:
    """Remove what ``listing`` says, then list again to verify; kept images are reported."""
    host = session.label
    kinds = f"from {listing.registry}" + (f" or {UPSTREAM_PREFIX}*" if listing.upstream else "")
    kept = listing.kept_outcomes()
    if not listing.to_remove:
        return [ok(host, "clear-images", f"no unused images {kinds}"), *kept]
    for store in listing.stores:
        if not store.remove:
            continue
        if store.name == DOCKER:
            session.change(
                C.remove_images_docker(store.remove),
                f"docker image rm {_images(len(store.remove))}",
            )
        else:
            session.change(
                C.remove_images_ctr(store.namespace, store.remove),
                f"ctr -n {store.namespace} images rm {_images(len(store.remove))}",
            )
    if session.dry:
        return [
            changed(
                host, "clear-images", f"would remove {_images(listing.to_remove)}: {_what(listing)}"
            ),
            *kept,
        ]
    again = list_images(session, listing.registry, listing.upstream)
    doomed = {(s.name, ref) for s in listing.stores for ref in s.remove}
    left = sorted(
        f"{ref} ({s.name})"
        for s in again.stores
        for ref in (*s.remove, *(r for r, _ in s.kept))
        if (s.name, ref) in doomed
    )
    if left:
        raise RemoteFailure(f"{_images(len(left))} still there after removal: {left[0]}")
    return [
        changed(host, "clear-images", f"removed {_images(listing.to_remove)}: {_what(listing)}"),
        *kept,
    ]
