"""dev-images: FLOps' own images from a developer's addon-FLOps checkout, run by the cluster.

The FLOps manager deploys its helpers under fixed public names
(``ghcr.io/oakestra/addon-flops/<component>:latest``) and NodeEngine reuses an image it holds,
so a developer's change reaches the cluster only through a public push and cleared caches.
``dev-images`` closes that loop without a public registry:

1. **what**: the named components, or (none named) those whose sources changed since the last
   run for this checkout and registry (``state_path``); each component's *source hash* is the
   hash of everything its build reads from the checkout and from its recipe;
2. **where**: the target workers' platforms, from their facts (one SSH round trip each),
   plus ``--platform``; every check (checkout, components, workers, the local builder's
   platforms, the registry taking pushes) runs before anything is built;
3. **build** on the local engine, one platform at a time (QEMU for foreign ones where a
   Dockerfile runs programs): ``flops.addon.build`` ``upstream`` builds with upstream's own
   Dockerfile (needs Docker Hub, PyPI, GitHub); ``offline`` with the staged recipe in
   ``compose/dev/<component>/`` on Debian bases made with debootstrap and a wheelhouse
   (nothing runs on the target platform there, see its Dockerfile);
4. **push** to the FLOps registry as ``flops-dev/<component>:dev-<source hash>``, an index over
   the platforms (``oci``); a tag that already holds every wanted platform is neither built
   nor pushed;
5. **import** on every target worker under the public name, in containerd namespace
   ``oakestra`` and in Docker for the sidecar (``sideload``); a worker that holds it already
   is not touched.

``--restore`` removes the side-loaded images instead; the next deploy pulls the public ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import commands as C
from . import oci, sideload
from .build_context import Recipe, _files, stage, wanted_files
from .changes import Change, ChangeLog
from .config import PROJECT_ROOT, Settings
from .errors import FlopsError, UsageError
from .outcome import Outcome, Report, changed, ok

Progress = Callable[[str], None]
LOCAL = "local"  # report rows of the builds on this host's engine
DEV_REPO = "flops-dev"
PLATFORMS = ("linux/amd64", "linux/arm64")
ARCH_MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}
RECIPES = PROJECT_ROOT / "compose" / "dev"
PROGRESS_EVERY = 5.0


@dataclass(frozen=True)
class Component:
    """One of FLOps' own images, as the manager (or NodeEngine) names it."""

    name: str
    package: str  # its folder in the checkout
    dockerfile: str  # upstream's Dockerfile, relative to the checkout
    context: str  # upstream's build context, relative to the checkout
    code: str = ""  # offline recipe: the code folder inside ``package``
    requirements: Path | None = None  # offline recipe: its pins
    no_offline: str = ""  # why there is no offline recipe

    @property
    def public(self) -> str:
        return sideload.public_name(self.name)

    @property
    def repo(self) -> str:
        return f"{DEV_REPO}/{self.name}"

    @property
    def offline(self) -> bool:
        return bool(self.code)

    @property
    def recipe(self) -> Recipe:
        return Recipe(
            name=self.name,
            ours=RECIPES / self.name,
            upstream=(
                (self.code, f"{self.package}/{self.code}"),
                ("utils_library", "utils_library"),
            ),
        )


COMPONENTS = {
    c.name: c
    for c in (
        Component(
            "image-builder",
            "image_builder_package",
            "image_builder_package/Dockerfile",
            "image_builder_package",
            no_offline="its Dockerfile starts FROM ghcr.io/oakestra/addon-flops/aux-miniconda3 and "
            "installs MLflow with conda (and buildah, run privileged under QEMU): no offline "
            "recipe here",
        ),
        Component(
            "project-observer",
            "project_observer_package",
            "project_observer_package/Dockerfile",
            "project_observer_package",
            no_offline="no offline recipe yet (upstream's Dockerfile needs Docker Hub, PyPI and "
            "GitHub)",
        ),
        Component(
            "tracking-server",
            "docker",
            "docker/mlflow_tracking_server.Dockerfile",
            "docker",
            no_offline="no offline recipe (upstream's Dockerfile installs MLflow from PyPI onto "
            "python:3.10-slim-buster)",
        ),
        Component(
            "mock-data-provider",
            "mock_data_provider_package",
            "mock_data_provider_package/Dockerfile",
            "mock_data_provider_package",
            code="mock_data_provider",
            requirements=RECIPES / "mock-data-provider" / "requirements.txt",
        ),
        Component(
            "ml-data-server",
            "ml_data_server_package",
            "ml_data_server_package/Dockerfile",
            "ml_data_server_package",
            code="ml_data_server",
            # the testbed's sidecar pins: one wheelhouse for both
            requirements=PROJECT_ROOT / "testbed" / "ml_data_server" / "requirements.txt",
        ),
    )
}


# -- input -----------------------------------------------------------------------------------
def checkout(path: str) -> Path:
    """The addon-FLOps checkout at ``path`` (a clone or an unpacked source tree)."""
    root = Path(os.path.expanduser(path)).resolve()
    if not (root / "utils_library" / "pyproject.toml").is_file() or not any(
        (root / c.package).is_dir() for c in COMPONENTS.values()
    ):
        raise UsageError(
            f"{path} is not an addon-FLOps checkout (no utils_library/ and *_package/ "
            "folders): give --addon the folder of your addon-FLOps clone"
        )
    return root


def parse_components(text: str | None, mode: str) -> list[Component] | None:
    """``--component`` (comma list) -> components; None when not given."""
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise UsageError(f"--component is empty: give one or more of {', '.join(COMPONENTS)}")
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        raise UsageError(
            f"unknown component {unknown[0]!r}: FLOps' components are {', '.join(COMPONENTS)}"
        )
    chosen = [COMPONENTS[n] for n in dict.fromkeys(names)]
    if mode == "offline":
        for c in chosen:
            if not c.offline:
                raise UsageError(
                    f"{c.name} cannot be built offline: {c.no_offline}; build it with "
                    "flops.addon.build: upstream (needs the internet), or leave it out"
                )
    return chosen


def parse_platforms(text: str | None) -> list[str]:
    if text is None:
        return []
    values = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in values if p not in PLATFORMS]
    if bad or not values:
        raise UsageError(
            f"bad --platform {text!r}: give {' or '.join(PLATFORMS)} (comma-separated)"
        )
    return values


def parse_restore_components(text: str | None) -> list[str]:
    """``--component`` with ``--restore``: any known name, default all."""
    if text is None:
        return list(COMPONENTS)
    found = parse_components(text, "upstream")
    return [c.name for c in found or []]


# -- source hashes and state -----------------------------------------------------------------
def build_files(component: Component, root: Path, mode: str) -> dict[str, Path]:
    """Every file the build reads (the wheelhouse aside: its requirements stand for it)."""
    if mode == "offline":
        files = wanted_files(component.recipe, root)
        assert component.requirements is not None
        files["requirements.txt"] = component.requirements
        return files
    context = root / component.context
    if not context.is_dir():
        raise UsageError(
            f"{root} has no {component.context}/: it is not an addon-FLOps checkout with "
            f"{component.name}"
        )
    files = {f"context/{k}": v for k, v in _files(context).items()}
    files["Dockerfile"] = root / component.dockerfile
    return files


def source_hash(component: Component, root: Path, mode: str) -> str:
    """16 hex digits over the component's build inputs (names, contents, exec bits)."""
    digest = hashlib.sha256(f"flops-dev 1\0{component.name}\0{mode}\0".encode())
    for rel, path in sorted(build_files(component, root, mode).items()):
        content = hashlib.sha256(path.read_bytes()).hexdigest()
        executable = "x" if os.access(path, os.X_OK) else "-"
        digest.update(f"{rel}\0{executable}\0{content}\n".encode())
    return digest.hexdigest()[:16]


def state_path(s: Settings) -> Path:
    """The one place dev-images keeps what it side-loaded last (beside the manager's staged
    build context, in the state directory)."""
    from .build_context import manager_context_dir

    return manager_context_dir(s).parent / "dev-images.json"


def contexts_dir(s: Settings) -> Path:
    return state_path(s).parent / "dev"


def read_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def recorded(path: Path, registry: str, root: Path) -> dict[str, dict[str, Any]]:
    """component -> what the last run side-loaded from ``root`` via ``registry``."""
    entry = (read_state(path).get(registry) or {}).get(str(root)) or {}
    return {k: v for k, v in entry.items() if k in COMPONENTS and isinstance(v, dict)}


def record(path: Path, registry: str, root: Path, done: dict[str, dict[str, Any]]) -> None:
    data = read_state(path)
    data.setdefault(registry, {}).setdefault(str(root), {}).update(done)
    _write_state(path, data)


def forget(path: Path, components: list[str]) -> None:
    """Restored components are no longer side-loaded anywhere this state knows of."""
    data = read_state(path)
    if not data:
        return
    for registry in data.values():
        for entry in registry.values() if isinstance(registry, dict) else ():
            for name in components:
                entry.pop(name, None)
    kept = {
        registry: {root: entry for root, entry in checkouts.items() if entry}
        for registry, checkouts in data.items()
        if isinstance(checkouts, dict)
    }
    _write_state(path, {registry: roots for registry, roots in kept.items() if roots})


def _write_state(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def changed_since(
    path: Path, registry: str, root: Path, mode: str
) -> tuple[list[Component], list[str]]:
    """The default selection: recorded components whose source hash moved; and notes."""
    last = recorded(path, registry, root)
    if not last:
        raise UsageError(
            f"no earlier dev-images run for {root} with the registry {registry}: name the "
            f"components with --component ({', '.join(COMPONENTS)}); later runs default to "
            "those whose sources changed"
        )
    picked: list[Component] = []
    same: list[Component] = []
    for name in last:
        component = COMPONENTS[name]
        if mode == "offline" and not component.offline:
            continue
        now = source_hash(component, root, mode)
        (picked if now != last[name].get("source") else same).append(component)
    notes = [f"unchanged since the last run: {', '.join(c.name for c in same)}"] if same else []
    return picked, notes


# -- the local engine ------------------------------------------------------------------------
def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            ["docker", *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise FlopsError("the docker CLI is not installed here: install Docker") from None


def engine_arch() -> str:
    res = _docker("version", "--format", "{{.Server.Arch}}")
    if res.returncode != 0:
        tail = (res.stderr.strip().splitlines() or ["no answer"])[-1]
        raise FlopsError(f"the local Docker engine does not answer ({tail}): start it")
    return res.stdout.strip()


def builder_platforms() -> list[str]:
    """The platforms the local engine's default buildx builder offers."""
    res = _docker("buildx", "inspect")
    if res.returncode != 0:
        tail = (res.stderr.strip().splitlines() or ["no answer"])[-1]
        raise FlopsError(
            f"docker buildx does not answer here ({tail}): install docker-buildx (or run .ci/setup)"
        )
    return parse_builder_platforms(res.stdout)


def parse_builder_platforms(text: str) -> list[str]:
    for line in text.splitlines():
        if line.strip().startswith("Platforms:"):
            return [p.strip().rstrip("*") for p in line.split(":", 1)[1].split(",") if p.strip()]
    return []


def check_builder(platforms: list[str], offered: list[str]) -> None:
    missing = [p for p in platforms if p not in offered]
    if missing:
        raise FlopsError(
            f"the local engine's builder cannot build {', '.join(missing)} (it offers "
            f"{', '.join(offered) or 'nothing'}): register QEMU's binfmt handlers here "
            "(apt-get install qemu-user-static binfmt-support), or leave those workers out "
            "with --host; nothing was built"
        )


def _arch(platform: str) -> str:
    return platform.split("/")[1]


def build_argv(
    component: Component,
    context: Path,
    dockerfile: Path,
    platform: str,
    tag: str,
    source: str,
    build_args: dict[str, str],
    no_cache: bool = False,
) -> list[str]:
    return [
        "docker",
        "buildx",
        "build",
        "--progress",
        "plain",
        "--platform",
        platform,
        "--load",
        "-t",
        tag,
        "-f",
        str(dockerfile),
        "--label",
        f"{C.DEV_SOURCE_LABEL}={source}",
        "--label",
        f"{C.DEV_COMPONENT_LABEL}={component.name}",
        *(x for k, v in sorted(build_args.items()) for x in ("--build-arg", f"{k}={v}")),
        *(["--no-cache"] if no_cache else []),
        str(context),
    ]


def build(
    component: Component,
    context: Path,
    dockerfile: Path,
    platform: str,
    tag: str,
    source: str,
    build_args: dict[str, str],
    log: Path,
    progress: Progress,
    no_cache: bool = False,
) -> None:
    """``docker buildx build --platform P --load`` with the dev labels; a progress line at
    least every ``PROGRESS_EVERY`` seconds; the whole log in ``log``."""
    argv = build_argv(component, context, dockerfile, platform, tag, source, build_args, no_cache)
    log.parent.mkdir(parents=True, exist_ok=True)
    started = last = time.monotonic()
    progress(f"building {component.name} for {platform} (log: {log})")
    step = ""
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            match = re.match(r"#\d+ \[[^\]]+\] (.*)", line)
            if match:
                step = match.group(1)[:100]
            if time.monotonic() - last >= PROGRESS_EVERY:
                last = time.monotonic()
                progress(
                    f"building {component.name} for {platform}: {time.monotonic() - started:.0f}s"
                    + (f", {step}" if step else "")
                )
        code = proc.wait()
    if code != 0:
        lines = [ln.strip() for ln in log.read_text().splitlines() if ln.strip()]
        errors = [ln for ln in lines if "ERROR" in ln or "error:" in ln.lower()]
        tail = (errors or lines or [f"exit {code}"])[-1]
        raise FlopsError(
            f"docker build of {component.name} for {platform} failed: {tail[:300]} (whole "
            f"log: {log}); nothing was imported"
        )


# -- the plan --------------------------------------------------------------------------------
@dataclass
class Built:
    """A component's dev image in the registry (or, in a dry run, what would be there)."""

    component: Component
    source: str
    digest: str = ""
    platforms: list[str] = field(default_factory=list)

    def wanted(self, registry: str) -> sideload.Wanted:
        return sideload.Wanted(
            self.component.name, self.source, f"{registry}/{self.component.repo}", self.digest
        )


@dataclass
class Job:
    """Everything one run needs, read and checked before anything changes."""

    s: Settings
    registry: str
    root: Path | None
    mode: str
    components: list[Component]
    platforms: list[str]
    dry: bool
    progress: Progress
    cache: oci.BlobCache | None = None
    no_cache: bool = False  # docker build --no-cache: every layer again (a cold build)
    changes: ChangeLog = field(default_factory=ChangeLog)  # the run's change log

    @property
    def client(self) -> oci.Registry:
        return oci.Registry(self.registry)


def offline_inputs(job: Job, component: Component, platforms: list[str]) -> dict[str, Path]:
    """Bases and wheels of the offline recipe for ``platforms`` (built or filled once)."""
    from . import testbed, wheelhouse

    host = engine_arch()
    extra: dict[str, Path] = {}
    for arch in dict.fromkeys([host, *(_arch(p) for p in platforms)]):
        testbed.ensure_python_base(arch, job.progress)
    assert component.requirements is not None
    for platform in platforms:
        arch = _arch(platform)
        wheels, _ = wheelhouse.ensure(
            component.requirements, job.progress, machine=ARCH_MACHINE[arch]
        )
        for whl in sorted(wheels.glob("*.whl")):
            extra[f"wheels/{arch}/{whl.name}"] = whl
    extra["requirements.txt"] = component.requirements
    return extra


def build_and_push(job: Job, component: Component, source: str) -> tuple[Outcome, Built]:
    """Check the registry; build and push the platforms it lacks; verify the index."""
    from . import testbed, wheelhouse

    tag = f"dev-{source}"
    where = f"{job.registry}/{component.repo}:{tag}"
    found = oci.read_index(job.client, component.repo, tag)
    entries = found[1] if found else []
    have = {e.name for e in entries}
    missing = [p for p in job.platforms if p not in have]
    built = Built(component, source, found[0] if found else "", sorted(have))
    if not missing:
        return (
            ok(
                LOCAL,
                component.name,
                f"{where} holds {', '.join(job.platforms)} already: nothing built or pushed",
            ),
            built,
        )
    summary = f"build {component.name} for {', '.join(missing)} and push {where}"
    if job.dry:
        job.changes.record(Change(LOCAL, component.name, summary, done=False))
        return (
            changed(
                LOCAL,
                component.name,
                f"would build {component.name} (source {source}) for {', '.join(missing)} "
                f"and push {where}",
            ),
            built,
        )
    job.changes.start(record := Change(LOCAL, component.name, summary, done=True))
    assert job.root is not None and job.cache is not None
    started = time.monotonic()
    ctx_dir = contexts_dir(job.s) / component.name
    build_args: dict[str, str] = {}
    if job.mode == "offline":
        extra = offline_inputs(job, component, missing)
        stage(component.recipe, job.root, ctx_dir, extra=extra)
        context, dockerfile = ctx_dir, ctx_dir / "Dockerfile"
    else:
        context, dockerfile = job.root / component.context, job.root / component.dockerfile
    uploaded = sent = 0
    building = pushing = 0.0
    new = list(entries)
    for platform in missing:
        arch = _arch(platform)
        if job.mode == "offline":
            build_args = {
                "BASE_IMAGE": testbed.PYTHON_BASE.format(arch=arch),
                "BUILD_BASE": testbed.PYTHON_BASE.format(arch=engine_arch()),
                "PIP_PLATFORMS": " ".join(wheelhouse.platforms(ARCH_MACHINE[arch])),
            }
        local = f"{DEV_REPO}/{component.name}:{source}-{arch}"
        log = contexts_dir(job.s) / f"{component.name}-{arch}.build.log"
        step = time.monotonic()
        build(
            component,
            context,
            dockerfile,
            platform,
            local,
            source,
            build_args,
            log,
            job.progress,
            no_cache=job.no_cache,
        )
        building += time.monotonic() - step
        step = time.monotonic()
        job.progress(f"pushing {component.name} ({platform}) to {job.registry}")
        image = oci.saved_image(local, job.cache, job.progress)
        if image.platform_name.split("/")[:2] != platform.split("/"):
            raise FlopsError(
                f"the build of {component.name} for {platform} gave an image for "
                f"{image.platform_name}: the local builder ignored --platform; nothing was "
                "imported"
            )
        digest, blobs, size = oci.push_image(job.client, component.repo, image)
        uploaded, sent = uploaded + blobs, sent + size
        new = [e for e in new if e.name != image.platform_name]
        new.append(oci.Entry(digest, len(image.manifest()), image.platform))
        pushing += time.monotonic() - step
    index = oci.push_index(job.client, component.repo, tag, new)
    again = oci.read_index(job.client, component.repo, tag)
    names = sorted(e.name for e in again[1]) if again else []
    if again is None or again[0] != index or any(p not in names for p in job.platforms):
        raise FlopsError(f"{where} does not read back as pushed ({names}): nothing was imported")
    _drop_older(component, source)
    job.changes.record(record)
    built = Built(component, source, index, names)
    return (
        changed(
            LOCAL,
            component.name,
            f"built {component.name} (source {source}) for {', '.join(missing)} and pushed "
            f"{where} = {index} ({uploaded} blobs, {sent / 2**20:.1f} MiB uploaded) in "
            f"{time.monotonic() - started:.0f}s (build {building:.0f}s, push {pushing:.0f}s)",
        ),
        built,
    )


def _drop_older(component: Component, source: str) -> None:
    """Remove this component's local dev images of other sources (the build cache stays)."""
    res = _docker(
        "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", f"{DEV_REPO}/{component.name}"
    )
    old = [r for r in res.stdout.split() if not r.split(":")[-1].startswith(source)]
    if old:
        _docker("image", "rm", *old)


# -- the task --------------------------------------------------------------------------------
def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _targets(s: Settings, host: str | None) -> list[Any]:
    from .hosts import select_targets

    targets = select_targets(host, list(s.inventory), None)
    return [t for t in targets if host is not None or t.roles]


def _read_workers(
    s: Settings, config: Any, targets: list[Any], report: Report, observer: Any
) -> dict[str, sideload.Worker]:
    """Every target's facts (read-only, one round trip each); unreachable ones are rows."""
    from .ssh import fan_out

    workers: dict[str, sideload.Worker] = {}

    def probe(session: Any) -> list[Outcome]:
        workers[session.label] = sideload.read(session)
        return []

    traffic: dict[str, dict[str, int]] = {}
    report.extend(
        fan_out(
            targets,
            probe,
            ssh=s.ssh,
            config=config,
            step="facts",
            observer=observer,
            traffic=traffic,
        )
    )
    report.count_ssh(traffic)
    return workers


def on_workers(
    report: Report,
    targets: list[Any],
    workers: dict[str, sideload.Worker],
    act: Callable[[Any, sideload.Worker], list[Outcome]],
    s: Settings,
    config: Any,
    step: str,
    dry: bool,
    changes: ChangeLog,
) -> None:
    """``act(session, worker)`` on every target whose facts were read, under the host
    lock in a real run; its rows and SSH counts go to ``report``."""
    from .ssh import fan_out

    traffic: dict[str, dict[str, int]] = {}
    report.extend(
        fan_out(
            [t for t in targets if t.label in workers],
            lambda session: act(session, workers[session.label]),
            ssh=s.ssh,
            config=config,
            dry=dry,
            step=step,
            lock=not dry,
            traffic=traffic,
            changes=changes,
        )
    )
    report.count_ssh(traffic)


def run(
    s: Settings,
    config: Any,
    registry: str,
    addon: str | None = None,
    component: str | None = None,
    host: str | None = None,
    platform: str | None = None,
    dry: bool = False,
    progress: Progress = lambda _: None,
    observer: Any = None,
    no_cache: bool = False,
    changes: ChangeLog | None = None,
) -> Report:
    """Build, push and import (see the module docstring); every check before any change.
    ``changes``: the run's change log (every build, push and import is recorded there)."""
    from .ssh import shared_connections

    mode = s.addon_build
    chosen = parse_components(component, mode)
    extra_platforms = parse_platforms(platform)
    root = checkout(addon or s.addon_path)
    targets = _targets(s, host)
    log = changes if changes is not None else ChangeLog()
    report = Report("dev-images", dry=dry, changes=log)
    state = state_path(s)
    notes: list[str] = []
    if chosen is None:
        chosen, notes = changed_since(state, registry, root, mode)
    report.notes.extend(notes)
    if not chosen:
        report.extend(
            [
                ok(
                    LOCAL,
                    "changes",
                    "no component changed since the last run: nothing built, pushed or imported",
                )
            ]
        )
        return report
    sources = {c.name: source_hash(c, root, mode) for c in chosen}
    with shared_connections():
        workers = _read_workers(s, config, targets, report, observer)
        docker_needed = any(c.name == sideload.SIDECAR_COMPONENT for c in chosen)
        for worker in workers.values():
            problem = worker.problem(registry, docker_needed)
            if problem:
                raise FlopsError(problem + "; nothing was built or imported")
        platforms = sorted(
            {*(w.platform for w in workers.values() if w.platform), *extra_platforms}
        )
        if not platforms:
            return report  # no worker answered: their rows say why
        check_builder(platforms, builder_platforms())
        job = Job(
            s,
            registry,
            root,
            mode,
            chosen,
            platforms,
            dry,
            progress,
            oci.BlobCache(),
            no_cache,
            log,
        )
        job.client.check()
        if not dry:
            job.client.accepts_push(chosen[0].repo)
        built: dict[str, Built] = {}
        for c in chosen:
            row, built[c.name] = build_and_push(job, c, sources[c.name])
            report.extend([row])
        wanted = [built[c.name].wanted(registry) for c in chosen]
        on_workers(
            report,
            targets,
            workers,
            lambda session, worker: sideload.import_host(session, worker, wanted),
            s,
            config,
            step="import",
            dry=dry,
            changes=log,
        )
    if not dry:
        bad = {o.host for o in report.outcomes if o.bad}
        done = {
            c.name: {"source": sources[c.name], "digest": built[c.name].digest, "at": now()}
            for c in chosen
            if not bad
        }
        if done:
            record(state, registry, root, done)
    report.notes.append(
        f"source {root} ({mode} build); registry {registry}; platforms {', '.join(platforms)}"
    )
    return report


def restore(
    s: Settings,
    config: Any,
    component: str | None = None,
    host: str | None = None,
    dry: bool = False,
    observer: Any = None,
    changes: ChangeLog | None = None,
) -> Report:
    """Remove the side-loaded images of ``component`` (default: every component) from the
    target workers; the next deploy pulls the public images."""
    from .ssh import shared_connections

    names = parse_restore_components(component)
    targets = _targets(s, host)
    log = changes if changes is not None else ChangeLog()
    report = Report("dev-images --restore", dry=dry, changes=log)
    with shared_connections():
        workers = _read_workers(s, config, targets, report, observer)
        on_workers(
            report,
            targets,
            workers,
            lambda session, worker: sideload.restore_host(session, worker, names),
            s,
            config,
            step="restore",
            dry=dry,
            changes=log,
        )
    if not dry and report.ok and host is None:
        forget(state_path(s), names)
    return report
