"""FLOps' own images side-loaded on a worker: read, import, remove, and what doctor says.

A side-loaded image is a developer's build (``dev-images``) under the public name the FLOps
manager and NodeEngine use (``ghcr.io/oakestra/addon-flops/<component>:latest``), in
containerd namespace ``oakestra`` (NodeEngine's services) and, for the learners' sidecar
``ml-data-server``, in Docker (NodeEngine starts the sidecar with ``docker run``). NodeEngine
reuses an image it holds, so the next deploy runs the developer's code.

It is recognised by its labels: in containerd, the image record's labels
``org.flops-tasks.dev-source`` (the component's source hash) and ``org.flops-tasks.dev-digest``
(the registry index it was pulled from; a later pull of the public image replaces the record's
target, and then the two no longer agree); in Docker, the image's own config labels, which
``dev-images`` builds in. All reads of a worker are one SSH round trip.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import commands as C
from .facts import WorkerFacts
from .images import UPSTREAM_PREFIX
from .outcome import Outcome, changed, ok, warning
from .ssh import RemoteFailure

COMPONENTS = ("image-builder", "project-observer", "tracking-server", "mock-data-provider")
SIDECAR_COMPONENT = "ml-data-server"  # the learners' sidecar: also in Docker
ALL = (*COMPONENTS, SIDECAR_COMPONENT)
MACHINES = {"x86_64": "linux/amd64", "aarch64": "linux/arm64"}
CTR_STORE = f"containerd {C.OAKESTRA_NAMESPACE}"
DOCKER_STORE = "Docker"


def public_name(component: str) -> str:
    return f"{UPSTREAM_PREFIX}{component}:latest"


def component_of(ref: str) -> str | None:
    if not ref.startswith(UPSTREAM_PREFIX) or not ref.endswith(":latest"):
        return None
    name = ref[len(UPSTREAM_PREFIX) : -len(":latest")]
    return name if name in ALL else None


def probes() -> list[tuple[str, str]]:
    """Everything dev-images and doctor read of a worker (read-only, one batch)."""
    return [
        ("machine", "uname -m"),
        ("containerd", C.cmd("test", "-S", C.CONTAINERD_SOCKET)),
        ("dev_ctr", C.ctr_image_list()),
        ("docker", C.docker_info_or_missing()),
        ("dev_docker", C.docker_image_labels([public_name(c) for c in ALL])),
        ("dev_sidecar", C.sidecar_image()),
    ]


def doctor_probes() -> list[tuple[str, str]]:
    """What doctor adds to its batch to find side-loaded images."""
    return [p for p in probes() if p[0] in ("dev_ctr", "dev_docker")]


@dataclass(frozen=True)
class Held:
    """What one store holds under a component's public name."""

    digest: str  # containerd: the record's target; Docker: the image id
    source: str  # the dev-source label ("" for a public image)
    dev_digest: str = ""  # containerd: the registry index it was side-loaded from

    @property
    def side_loaded(self) -> bool:
        # containerd: a later pull of the public image replaced the target (labels stay)
        return bool(self.source) and (not self.dev_digest or self.dev_digest == self.digest)


def _missing(text: str, tool: str) -> bool:
    return text.strip().startswith(f"{C.MISSING_MARK} {tool}")


def parse_labels(text: str) -> dict[str, str]:
    """``ctr images ls``' LABELS column: ``k=v,k=v`` or ``-``."""
    if text in ("", "-"):
        return {}
    pairs = (item.partition("=") for item in text.split(","))
    return {k: v for k, sep, v in pairs if sep}


def parse_ctr(text: str) -> dict[str, Held]:
    """Public FLOps names in ``ctr images ls`` output -> what they hold."""
    found = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6 or component_of(parts[0]) is None:
            continue
        labels = parse_labels(parts[-1])
        found[parts[0]] = Held(
            digest=parts[2],
            source=labels.get(C.DEV_SOURCE_LABEL, ""),
            dev_digest=labels.get(C.DEV_DIGEST_LABEL, ""),
        )
    return found


def parse_docker(text: str) -> dict[str, Held]:
    """``docker_image_labels`` output -> the public names Docker holds."""
    found = {}
    for line in text.splitlines():
        ref, _, rest = line.strip().partition(" ")
        image_id, _, labels_json = rest.partition(" ")
        if component_of(ref) is None or not image_id or image_id == "-":
            continue
        try:
            labels = json.loads(labels_json) if labels_json else {}
        except ValueError:
            labels = {}
        labels = labels if isinstance(labels, dict) else {}
        found[ref] = Held(digest=image_id, source=str(labels.get(C.DEV_SOURCE_LABEL, "")))
    return found


@dataclass
class Worker:
    """One worker as dev-images sees it."""

    host: str
    raw: dict[str, tuple[int, str]]
    facts: WorkerFacts = field(init=False)

    def __post_init__(self) -> None:
        self.facts = WorkerFacts(dict(self.raw))

    def out(self, name: str) -> str:
        return self.raw.get(name, (255, ""))[1]

    @property
    def machine(self) -> str:
        return self.out("machine").strip()

    @property
    def platform(self) -> str | None:
        return MACHINES.get(self.machine)

    @property
    def containerd(self) -> bool:
        return self.raw.get("containerd", (1, ""))[0] == 0

    @property
    def ctr(self) -> bool:
        return not _missing(self.out("dev_ctr"), "ctr") and self.raw.get("dev_ctr", (1, ""))[0] == 0

    @property
    def docker(self) -> bool:
        return not _missing(self.out("docker"), "docker") and self.facts.docker_running

    def trusts(self, registry: str) -> bool:
        return self.facts.docker_trusts(registry)

    @property
    def containerd_images(self) -> dict[str, Held]:
        return parse_ctr(self.out("dev_ctr")) if self.ctr else {}

    @property
    def docker_images(self) -> dict[str, Held]:
        text = self.out("dev_docker")
        return {} if _missing(text, "docker") else parse_docker(text)

    @property
    def sidecar(self) -> tuple[str, str] | None:
        parts = self.out("dev_sidecar").split()
        return (parts[0], parts[1]) if len(parts) == 2 else None

    def problem(self, registry: str, docker_needed: bool) -> str | None:
        """Why dev-images cannot import here (one line with the fix), or None."""
        if self.platform is None:
            return (
                f"{self.host} is {self.machine or 'of an unknown machine'}: dev-images builds "
                "for linux/amd64 and linux/arm64 workers only; leave it out with --host"
            )
        if not self.containerd:
            return (
                f"{self.host} has no containerd ({C.CONTAINERD_SOCKET} is not a socket): "
                "NodeEngine runs FLOps' services in containerd; start containerd there, or "
                "leave the host out with --host"
            )
        if not self.ctr:
            tail = self.out("dev_ctr").strip().splitlines()[-1:] or ["no answer"]
            what = "ctr is not installed" if _missing(self.out("dev_ctr"), "ctr") else tail[0]
            return (
                f"{self.host}: containerd cannot be read with ctr ({what[:160]}): install "
                "containerd's ctr there, or leave the host out with --host"
            )
        if docker_needed and self.docker and not self.trusts(registry):
            return (
                f"{self.host}'s Docker does not trust the FLOps registry {registry} (it runs "
                f"the ml-data-server sidecar): run inv prepare-learner --host {self.host}"
            )
        return None


def read(session: Any) -> Worker:
    return Worker(session.label, session.probes(probes()))


# -- import ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Wanted:
    """A component's dev image, as the registry holds it."""

    component: str
    source: str  # the source hash (the dev tag is dev-<source>)
    repo: str  # REGISTRY/flops-dev/<component>
    digest: str  # the index digest; "" when it is not built yet (a dry run)

    @property
    def public(self) -> str:
        return public_name(self.component)

    @property
    def docker(self) -> bool:
        return self.component == SIDECAR_COMPONENT


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12] if digest else "?"


def _stores_needing(worker: Worker, want: Wanted) -> tuple[list[str], list[str]]:
    """(stores that lack the dev image, what each of those holds now)."""
    need, replaced = [], []
    held = worker.containerd_images.get(want.public)
    if not (held and held.side_loaded and held.source == want.source):
        need.append(CTR_STORE)
        replaced.append(f"{_short(held.digest)} ({CTR_STORE})" if held else "")
    if want.docker and worker.docker:
        held = worker.docker_images.get(want.public)
        if not (held and held.source == want.source):
            need.append(DOCKER_STORE)
            replaced.append(f"{_short(held.digest)} ({DOCKER_STORE})" if held else "")
    return need, [r for r in replaced if r]


def _stores(worker: Worker, want: Wanted) -> list[str]:
    return [CTR_STORE, *([DOCKER_STORE] if want.docker and worker.docker else [])]


def import_host(session: Any, worker: Worker, wanted: list[Wanted]) -> list[Outcome]:
    """Check, act, verify: each component into every store of this worker that lacks it."""
    host = worker.host
    platform = worker.platform or "?"
    rows: list[Outcome] = []
    done: list[tuple[Wanted, list[str], list[str]]] = []
    for want in wanted:
        need, replaced = _stores_needing(worker, want)
        if not need:
            stores = ", ".join(_stores(worker, want))
            rows.append(
                ok(
                    host,
                    want.component,
                    f"{want.public} is already dev-{want.source} ({stores}): nothing imported",
                )
            )
            continue
        source = f"{want.repo}@{want.digest}"
        labels = {C.DEV_SOURCE_LABEL: want.source, C.DEV_DIGEST_LABEL: want.digest}
        if CTR_STORE in need:
            session.change(
                C.ctr_sideload(source, want.public, platform, labels),
                f"ctr -n {C.OAKESTRA_NAMESPACE} images pull --plain-http --platform {platform} "
                f"{source}, then tag it {want.public}",
                timeout=1800,
                step=want.component,
            )
        if DOCKER_STORE in need:
            session.change(
                C.docker_sideload(source, want.public),
                f"docker pull {source}, then tag it {want.public}",
                timeout=1800,
                step=want.component,
            )
        done.append((want, need, replaced))
    if not done:
        return rows
    after = None if session.dry else read(session)
    for want, need, replaced in done:
        was = f"; replaced {', '.join(replaced)}" if replaced else "; nothing replaced"
        if after is None:
            rows.append(
                changed(
                    host,
                    want.component,
                    f"would import {want.public} = dev-{want.source} ({platform}) into "
                    f"{' and '.join(need)}{was}",
                )
            )
            continue
        left, _ = _stores_needing(after, want)
        if left:
            raise RemoteFailure(
                f"{want.public} is not dev-{want.source} in {', '.join(left)} after the import"
            )
        rows.append(
            changed(
                host,
                want.component,
                f"imported {want.public} = {want.repo}@{want.digest} ({platform}) into "
                f"{' and '.join(need)}{was}",
            )
        )
    rows.extend(_sidecar_warnings(worker, [w for w, need, _ in done if DOCKER_STORE in need]))
    return rows


def _sidecar_warnings(worker: Worker, replaced: list[Wanted]) -> list[Outcome]:
    """The sidecar keeps running the image it started from: say how to restart it."""
    sidecar = worker.sidecar
    return [
        warning(
            worker.host,
            "sidecar",
            f"{C.SIDECAR} still runs the image it was started from ({_short(sidecar[1])}), "
            f"not the one now named {want.public}: remove it (docker rm -f {C.SIDECAR}) and "
            f"NodeEngine, or inv prepare-learner --host {worker.host}, starts it again",
        )
        for want in replaced
        if sidecar is not None and sidecar[0] == want.public
    ]


# -- restore ---------------------------------------------------------------------------------
def restore_host(session: Any, worker: Worker, components: list[str]) -> list[Outcome]:
    """Remove every side-loaded image of ``components``: the next deploy pulls the public one."""
    host = worker.host
    ctr_held, docker_held = worker.containerd_images, worker.docker_images
    rows: list[Outcome] = []
    plan: list[tuple[str, list[str], str]] = []
    for component in components:
        ref = public_name(component)
        stores = []
        held = ctr_held.get(ref)
        if held and held.side_loaded:
            stores.append(CTR_STORE)
        dheld = docker_held.get(ref)
        if dheld and dheld.source:
            stores.append(DOCKER_STORE)
        if not stores:
            rows.append(ok(host, component, f"{ref}: no side-loaded image"))
            continue
        source = (held.source if held and held.side_loaded else "") or (
            dheld.source if dheld else ""
        )
        plan.append((component, stores, source))
    in_ctr = [c for c, stores, _ in plan if CTR_STORE in stores]
    in_docker = [c for c, stores, _ in plan if DOCKER_STORE in stores]
    ctr_refs = [public_name(c) for c in in_ctr]
    docker_refs = [public_name(c) for c in in_docker]
    if ctr_refs:  # one command for several components: recorded for each
        session.change(
            C.ctr_unload(ctr_refs),
            f"ctr -n {C.OAKESTRA_NAMESPACE} images rm {' '.join(ctr_refs)}",
            step=in_ctr[0],
            also=tuple(in_ctr[1:]),
        )
    if docker_refs:
        session.change(
            C.docker_unload(docker_refs),
            f"docker image rm -f {' '.join(docker_refs)}",
            step=in_docker[0],
            also=tuple(in_docker[1:]),
        )
    after = None if session.dry or not plan else read(session)
    for component, stores, source in plan:
        ref = public_name(component)
        verb = "would remove" if after is None else "removed"
        if after is not None:
            left = [
                s
                for s, h in (
                    (CTR_STORE, after.containerd_images.get(ref)),
                    (DOCKER_STORE, after.docker_images.get(ref)),
                )
                if h is not None and h.source and (s == DOCKER_STORE or h.side_loaded)
            ]
            if left:
                raise RemoteFailure(f"{ref} is still side-loaded in {', '.join(left)}")
        rows.append(
            changed(
                host,
                component,
                f"{verb} the side-loaded {ref} (source {source}) from {' and '.join(stores)}: "
                "the next deploy pulls the public image",
            )
        )
    sidecar = worker.sidecar
    if sidecar and sidecar[0] in docker_refs:
        rows.append(
            warning(
                host,
                "sidecar",
                f"{C.SIDECAR} still runs the side-loaded {sidecar[0]} ({_short(sidecar[1])}): "
                f"remove it (docker rm -f {C.SIDECAR}) and NodeEngine, or inv "
                f"prepare-learner --host {host}, starts it from the public image",
            )
        )
    return rows


# -- doctor ----------------------------------------------------------------------------------
def doctor_rows(host: str, raw: dict[str, tuple[int, str]]) -> list[Outcome]:
    """A warning per side-loaded component: deploys there run a developer's build."""
    worker = Worker(host, raw)
    found: dict[str, tuple[str, list[str]]] = {}
    for ref, held in worker.containerd_images.items():
        if held.side_loaded:
            found.setdefault(ref, (held.source, []))[1].append(CTR_STORE)
    text = raw.get("dev_docker", (1, ""))[1]
    docker = {} if _missing(text, "docker") else parse_docker(text)
    for ref, held in docker.items():
        if held.source:
            found.setdefault(ref, (held.source, []))[1].append(DOCKER_STORE)
    return [
        warning(
            host,
            "side-loaded",
            f"{component_of(ref)}: {ref} is a dev image (source {source}) in "
            f"{' and '.join(stores)}, not the public one; back to it: inv dev-images "
            f"--restore --host {host}",
        )
        for ref, (source, stores) in sorted(found.items())
    ]
