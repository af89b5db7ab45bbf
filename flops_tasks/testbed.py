"""The offline testbed: worker nodes as containers (sshd + dockerd) and the management stack.

Everything is built locally (no container registry is needed): Debian base images with
debootstrap, a worker image, the stack's images from Debian packages (testbed/), and
upstream's real FLOps manager and ml_data_server from the upstream addon-FLOps tarball, with
Python packages from a wheelhouse this host's pip fills (flops_tasks/wheelhouse.py). Only
flops_db is a stand-in (MongoDB is not in Debian). Everything created carries the label
``org.flops-tasks.testbed`` with this checkout's own value (``TESTBED_ID``; for an installed
package, its state directory's: ``paths.installation_id``); ``down`` removes exactly that, so
two checkouts on one engine never remove each other's objects. ``up`` writes ``invoke.yaml``
in the testbed's folder of the state directory (``default_paths``), a config that points
every task at the testbed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from . import build_context, paths, wheelhouse
from .config import ADDON_TARBALL_SHA256, ADDRESS_VARS, DEFAULTS, PROJECT_ROOT
from .errors import FlopsError, UsageError

LABEL = "org.flops-tasks.testbed"
ROLE_LABEL = "org.flops-tasks.role"
NETWORK = "flops-testbed"
PREFIX = "flops-testbed"
BASE_IMAGE = "flops-testbed/base:{suite}"
WORKER_IMAGE = "flops-testbed/worker:1"
CONTAINERD_WORKER_IMAGE = "flops-testbed/worker-containerd:1"
KIND_LABEL = "org.flops-tasks.kind"
# worker kind -> (image, its volumes, inventory roles): a learner needs Docker (NodeEngine
# starts the ml_data_server sidecar with docker run), so a containerd worker only builds
KINDS = {
    "docker": (WORKER_IMAGE, ("containerd", "docker"), ["builder", "learner"]),
    "containerd": (CONTAINERD_WORKER_IMAGE, ("containerd",), ["builder"]),
}
VOLUME_PATHS = {"docker": "/var/lib/docker", "containerd": "/var/lib/containerd"}
MANAGER_IMAGE = "flops-testbed/flops_manager:1"  # built by compose (testbed/testbed.compose.yml)
SIDECAR_IMAGE = "flops-testbed/ml_data_server:1"
SIDECAR_REPO = "flops/ml-data-server:offline"
MANAGER = "flops_manager"
# Upstream addon-FLOps at the pinned ref, kept beside the project as test data
# (shared/upstream/ beside the project or above it), or the file this variable names.
UPSTREAM_VAR = "FLOPS_UPSTREAM_TARBALL"
PROJECT = "flops_testbed"
MIRROR = "http://deb.debian.org/debian"


def checkout_id(root: Path = PROJECT_ROOT) -> str:
    """The testbed label's value for the checkout at ``root``."""
    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]


TESTBED_ID = paths.installation_id()
OWNED = ("label", f"{LABEL}={TESTBED_ID}")  # the docker filter for this checkout's objects
# Testbeds of versions before the per-checkout value were labelled "1": any checkout adopts
# (and removes) those, so an upgrade never leaves a testbed nobody can take down.
LEGACY_ID = "1"


def mark(**extra: str) -> dict[str, str]:
    """Labels of an object this checkout's testbed creates."""
    return {LABEL: TESTBED_ID, **extra}


def refuse_foreign(what: str, labels: dict[str, str] | None) -> None:
    """Never take over (or remove) an object of another checkout's testbed, or a user's."""
    owner = (labels or {}).get(LABEL)
    if owner in (TESTBED_ID, LEGACY_ID):
        return
    whose = (
        "the testbed of another checkout (run 'inv testbed.down' there)"
        if owner
        else "something that is not a testbed (remove or rename it)"
    )
    raise FlopsError(f"{what} belongs to {whose}: this checkout's testbed needs the name")


MAX_WORKERS = 32  # bench/README.md: memory and start time of a 32-worker testbed here
WORKER_FLAGS = dict(
    cap_add=["ALL"],
    cap_drop=["SYS_RESOURCE"],
    security_options=["seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"],
    device_cgroup_rules=["a *:* rwm"],
    cgroupns="host",
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def ssh(self) -> Path:
        return self.root / "ssh"

    @property
    def key(self) -> Path:
        return self.ssh / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.ssh / "known_hosts"

    @property
    def config(self) -> Path:
        return self.root / "invoke.yaml"

    @property
    def labels(self) -> Path:
        return self.root / "testbed-labels.compose.yml"

    @property
    def env_file(self) -> Path:
        return self.root / "flops.env"

    @property
    def build(self) -> Path:
        """Build contexts staged by ``up`` (testbed/testbed.compose.yml names the manager's)."""
        return self.root / "build"

    def placement_config(self, name: str) -> Path:
        """The config of the testbed with the placement ``name`` (see ``PLACEMENTS``)."""
        return self.root / f"{name}.yaml"


def default_paths(state: Path | None = None) -> Paths:
    """The testbed's folder: ``testbed/<TESTBED_ID>`` in the state directory (``state``, or
    the default one), one per checkout or installation."""
    return Paths((state or paths.default_state_dir()) / "testbed" / TESTBED_ID)


def _docker() -> Any:
    from python_on_whales import docker

    return docker


def _call(action: Callable[[], Any]) -> Any:
    from .stack.project import docker_call

    return docker_call(action)


def worker_name(i: int) -> str:
    return f"{PREFIX}-w{i}"


# -- images ---------------------------------------------------------------------------
def ensure_base_image(suite: str, progress: Progress, mirror: str = MIRROR) -> bool:
    """Debian ``suite`` as an image, made with debootstrap; built once and cached."""
    docker = _docker()
    tag = BASE_IMAGE.format(suite=suite)
    if _call(lambda: docker.image.exists(tag)):
        return False
    if not shutil.which("debootstrap"):
        raise FlopsError(
            "debootstrap is not installed: apt-get install debootstrap (or run .ci/setup)"
        )
    progress(f"building base image {tag} with debootstrap (about 30 s)")
    with tempfile.TemporaryDirectory(prefix=f"flops-{suite}-") as tmp:
        root = Path(tmp) / "root"
        log = Path(tmp) / "debootstrap.log"
        with open(log, "w") as fh:
            res = subprocess.run(
                ["debootstrap", "--variant=minbase", suite, str(root), mirror],
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        if res.returncode != 0:
            tail = log.read_text().strip().splitlines()[-1:] or ["?"]
            raise FlopsError(f"debootstrap {suite} failed: {tail[0]}")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run(
            [
                "docker",
                "import",
                "-c",
                f"LABEL {LABEL}={TESTBED_ID}",
                "-c",
                'CMD ["/bin/bash"]',
                "-",
                tag,
            ],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
        )
        tar.wait()
        if imp.returncode != 0:
            raise FlopsError(f"docker import of {tag} failed: {imp.stderr.strip()}")
    return True


PYTHON_BASE = "flops-testbed/python:bookworm-{arch}"
PYTHON_PACKAGES = "python3,python3-venv"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# what a base for COPY-only images does without: documentation, translations, package lists
_TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale")


def ensure_python_base(arch: str, progress: Progress, mirror: str = MIRROR) -> bool:
    """Debian bookworm with python3 for ``arch`` (``amd64``, ``arm64``) as an image of that
    platform, made without running any of its programs; built once and cached.

    ``debootstrap --foreign`` downloads and unpacks the base system and python3, dpkg-deb
    unpacks the rest of its packages; no package script runs (they would need QEMU for a
    foreign platform: about 3.5 minutes here for arm64, against 30 s this way). What the
    scripts would have done and a COPY-only image needs (``/etc/passwd``, ``/etc/group``) is
    copied from base-passwd's templates. The result runs Python, and is the base of the
    dev-images offline recipes (compose/dev/), whose last stage only copies; it is not a
    Debian system to ``apt-get install`` into (dpkg's database lists nothing configured).
    """
    docker = _docker()
    tag = PYTHON_BASE.format(arch=arch)
    if _call(lambda: docker.image.exists(tag)):
        return False
    if not shutil.which("debootstrap") or not shutil.which("dpkg-deb"):
        raise FlopsError(
            "debootstrap is not installed: apt-get install debootstrap (or run .ci/setup)"
        )
    progress(f"building base image {tag} with debootstrap --foreign (about 30 s)")
    with tempfile.TemporaryDirectory(prefix=f"flops-python-{arch}-") as tmp:
        root = Path(tmp) / "root"
        log = Path(tmp) / "debootstrap.log"
        with open(log, "w") as fh:
            res = subprocess.run(
                [
                    "debootstrap",
                    "--foreign",
                    f"--arch={arch}",
                    "--variant=minbase",
                    f"--include={PYTHON_PACKAGES}",
                    "bookworm",
                    str(root),
                    mirror,
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if res.returncode != 0:
            tail = log.read_text().strip().splitlines()[-1:] or ["?"]
            raise FlopsError(f"debootstrap --foreign --arch={arch} bookworm failed: {tail[0]}")
        for line in (root / "debootstrap" / "debpaths").read_text().splitlines():
            _, _, deb = line.partition(" ")
            unpack = subprocess.run(
                ["dpkg-deb", "-x", str(root / deb.lstrip("/")), str(root)],
                capture_output=True,
                text=True,
            )
            if unpack.returncode != 0:
                raise FlopsError(f"dpkg-deb -x {deb} failed: {unpack.stderr.strip()}")
        for name in ("passwd", "group"):
            shutil.copyfile(
                root / "usr" / "share" / "base-passwd" / f"{name}.master", root / "etc" / name
            )
        shutil.rmtree(root / "debootstrap")
        for rel in (*_TRIM, "var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(root / rel, ignore_errors=True)
        _docker_import(root, tag, platform=f"linux/{arch}")
    return True


ROOTFS_DOCKERFILE = f"""FROM scratch
ADD rootfs.tar /
ENV PATH={DEFAULT_PATH}
CMD ["/bin/bash"]
"""


def _docker_import(root: Path, tag: str, platform: str) -> None:
    """``root`` as an image of ``platform``: BuildKit writes that platform into the image's
    config (``docker import`` on Docker 20.10 records the engine's own architecture); the
    build runs nothing."""
    with tempfile.TemporaryDirectory(prefix="flops-rootfs-") as tmp:
        context = Path(tmp)
        tar = subprocess.run(
            ["tar", "-C", str(root), "-cf", str(context / "rootfs.tar"), "."],
            capture_output=True,
            text=True,
        )
        if tar.returncode != 0:
            raise FlopsError(f"tar of the {tag} root failed: {tar.stderr.strip()}")
        (context / "Dockerfile").write_text(ROOTFS_DOCKERFILE)
        res = subprocess.run(
            [
                "docker",
                "buildx",
                "build",
                "--platform",
                platform,
                "--load",
                "--label",
                f"{LABEL}={TESTBED_ID}",
                "-t",
                tag,
                str(context),
            ],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        if res.returncode != 0:
            tail = (res.stderr.strip().splitlines() or ["?"])[-1]
            raise FlopsError(f"building the base image {tag} failed: {tail}")


def build_image(
    context: Path, tag: str, progress: Progress, build_args: dict[str, str] | None = None
) -> None:
    """Build (cached by Docker) with the testbed label."""
    docker = _docker()
    exists = _call(lambda: docker.image.exists(tag))
    progress(f"{'checking' if exists else 'building'} image {tag}")
    _call(
        lambda: docker.build(
            str(context),
            tags=[tag],
            labels=mark(),
            progress=False,
            load=True,
            build_args=build_args or {},
        )
    )


# -- images from upstream's code ---------------------------------------------------------
def upstream_tarball() -> Path:
    """The upstream addon-FLOps source tarball at the pinned ref (where expected, if missing).

    ``FLOPS_UPSTREAM_TARBALL``, else ``shared/upstream/`` beside the project or above it (a
    worktree sits deeper than the main checkout); when none exists, the path beside it.
    """
    if os.environ.get(UPSTREAM_VAR):
        return Path(os.environ[UPSTREAM_VAR])
    name = f"addon-FLOps-{DEFAULTS['addon']['ref'][:7]}.tar.gz"
    for parent in PROJECT_ROOT.parents:
        candidate = parent / "shared" / "upstream" / name
        if candidate.is_file():
            return candidate
    return PROJECT_ROOT.parent / "shared" / "upstream" / name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _member_problem(member: Any) -> str | None:
    """Why a tarball member may not be unpacked (None: a plain file or folder with a
    normalised relative name)."""
    name = member.name.rstrip("/") if member.isdir() else member.name
    parts = name.split("/")
    if name.startswith("/") or any(part in ("", ".", "..") for part in parts):
        return "is not a relative name without '.', '..' or '//'"
    if member.issym():
        return f"is a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"is a hard link (to {member.linkname!r})"
    if member.isfifo():
        return "is a FIFO"
    if member.ischr() or member.isblk():
        return "is a device"
    if not (member.isreg() or member.isdir()):
        return "is neither a file nor a folder"
    return None


def unpack_upstream(tarball: Path, dest: Path) -> Path:
    """Unpack the tarball into ``dest`` (emptied first); returns the addon-FLOps tree.

    The tarball must have the sha256 pinned beside ``addon.ref`` (``ADDON_TARBALL_SHA256``),
    and every member is checked before ``dest`` is touched: plain files and folders with
    normalised relative names only, no links. ``tarfile``'s own ``data`` filter is not
    enough: before Python 3.11.13 / 3.12.11 links can lead it outside (CVE-2025-4517).
    """
    import tarfile

    fix = "replace it with the addon-FLOps source tarball of the pinned ref"
    try:
        digest = _sha256(tarball)
        if digest != ADDON_TARBALL_SHA256:
            raise FlopsError(
                f"{tarball} has sha256 {digest}, not {ADDON_TARBALL_SHA256} (addon-FLOps "
                f"{DEFAULTS['addon']['ref'][:7]}): {fix}"
            )
        with tarfile.open(tarball) as tar:
            members = tar.getmembers()
            for member in members:
                problem = _member_problem(member)
                if problem:
                    raise FlopsError(f"{tarball}: member {member.name!r} {problem}: {fix}")
            if dest.exists():
                shutil.rmtree(dest)
            dest.mkdir(parents=True)
            # nothing but plain files and folders inside dest: no path can lead outside
            tar.extractall(dest, members=members, filter="data")
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise FlopsError(f"cannot unpack {tarball} ({exc}): {fix}") from None
    roots = [p for p in dest.iterdir() if p.is_dir()]
    if len(roots) != 1:
        raise FlopsError(f"{tarball} does not hold one addon-FLOps folder: replace it")
    return roots[0]


def upstream_clone_dir() -> Path:
    """Where the testbed clones upstream addon-FLOps at the pinned commit (a cache)."""
    return wheelhouse.default_cache().parent / f"addon-FLOps-{DEFAULTS['addon']['ref'][:12]}"


def _git(*args: str, timeout: float = 600) -> subprocess.CompletedProcess | None:
    """``git ARGS`` without prompts; None when git is not installed or timed out."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        return subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def _head(tree: Path) -> str:
    res = _git("-C", str(tree), "rev-parse", "HEAD", timeout=30) if tree.is_dir() else None
    return res.stdout.strip() if res is not None and res.returncode == 0 else ""


def fetch_upstream(dest: Path, progress: Progress) -> Path | None:
    """Upstream addon-FLOps at the pinned commit in ``dest``: kept when ``dest`` is already
    at that commit, else cloned from ``flops.addon.url``'s default and checked out there. The
    commit id is the check: a tree at any other commit is never used. None (and one progress
    line saying why) when it cannot be had, e.g. without a route to the git server."""
    url, ref = DEFAULTS["addon"]["url"], DEFAULTS["addon"]["ref"]
    if _head(dest) == ref:
        return dest
    progress(f"cloning upstream addon-FLOps from {url} at {ref[:12]} into {dest}")
    partial_dir = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial_dir, ignore_errors=True)
    partial_dir.parent.mkdir(parents=True, exist_ok=True)
    steps = (
        ("clone", "--quiet", "--no-checkout", url, str(partial_dir)),
        ("-C", str(partial_dir), "checkout", "--quiet", "--detach", ref),
    )
    for args in steps:
        res = _git(*args)
        if res is None or res.returncode != 0:
            why = (res.stderr.strip().splitlines() or ["?"])[-1] if res else "git not found"
            progress(f"cannot fetch upstream addon-FLOps: {why}")
            shutil.rmtree(partial_dir, ignore_errors=True)
            return None
    if _head(partial_dir) != ref:
        progress(f"cannot fetch upstream addon-FLOps: {url} did not give commit {ref}")
        shutil.rmtree(partial_dir, ignore_errors=True)
        return None
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(partial_dir, dest)
    return dest


def upstream_hint() -> str:
    """How to give the testbed upstream's source, for the rows that say it is missing."""
    from .paths import command

    url, ref = DEFAULTS["addon"]["url"], DEFAULTS["addon"]["ref"]
    return (
        f"upstream addon-FLOps (commit {ref[:12]}) could not be had: put its source tarball "
        f"at {upstream_tarball()} (or set {UPSTREAM_VAR} to it), or let this machine reach "
        f"{url}; then run '{command()} testbed.up' again"
    )


def _own_image(tag: str) -> bool:
    """``tag`` exists and was built by this testbed (another checkout's is not reused)."""
    docker = _docker()
    if not _call(lambda: docker.image.exists(tag)):
        return False
    labels = _call(lambda: docker.image.inspect(tag)).config.labels or {}
    return labels.get(LABEL) in (TESTBED_ID, LEGACY_ID)


def upstream_images(paths: Paths, progress: Progress) -> dict[str, str]:
    """Prepare the images made from upstream's code: service/image -> how it is provided.

    Upstream's source: the tarball (``upstream_tarball``), else a clone at the pinned
    commit (``fetch_upstream``). ``build``: the manager's context is staged, compose builds
    it with the stack; ``built``: the ml_data_server image was built here; ``reused``: no
    source, but this testbed built the image before; ``missing``: neither (the testbed runs
    without it, and says how to provide it: ``upstream_hint``).
    """
    tarball = upstream_tarball()
    ref = DEFAULTS["addon"]["ref"]
    if tarball.is_file():
        root: Path | None = unpack_upstream(tarball, paths.build / "upstream")
    else:
        progress(f"upstream addon-FLOps source tarball not found at {tarball}")
        root = fetch_upstream(upstream_clone_dir(), progress)
    if root is None:
        have = {MANAGER: _own_image(MANAGER_IMAGE), "ml_data_server": _own_image(SIDECAR_IMAGE)}
        states = {name: "reused" if ok else "missing" for name, ok in have.items()}
        # a context staged from an earlier tarball cannot be staged again without it
        shutil.rmtree(paths.build / MANAGER, ignore_errors=True)
        reused = [n for n, st in states.items() if st == "reused"]
        missing = [n for n, st in states.items() if st == "missing"]
        progress(
            "; ".join(
                [
                    *([f"reusing the built {', '.join(reused)}"] if reused else []),
                    *([f"running without {' and '.join(missing)}"] if missing else []),
                ]
            )
        )
        return states
    contexts = {}
    for recipe in (build_context.MANAGER, build_context.SIDECAR):
        wheels, filled = wheelhouse.ensure(recipe.requirements, progress)
        if not filled:
            progress(f"wheelhouse for {recipe.name} in place ({wheels})")
        contexts[recipe.name] = paths.build / recipe.name
        build_context.stage(recipe, root, contexts[recipe.name], wheels)
    build_image(
        contexts["ml_data_server"], SIDECAR_IMAGE, progress, build_args={"FLOPS_ADDON_REF": ref}
    )
    return {MANAGER: "build", "ml_data_server": "built"}


# -- workers --------------------------------------------------------------------------
def ensure_key(paths: Paths) -> str:
    paths.ssh.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not paths.key.exists():
        subprocess.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "flops-testbed",
                "-f",
                str(paths.key),
            ],
            check=True,
        )
    return Path(str(paths.key) + ".pub").read_text().strip()


def ensure_network() -> tuple[str, str]:
    """The testbed network and its gateway (the address workers reach this host at)."""
    docker = _docker()
    if not _call(lambda: docker.network.exists(NETWORK)):
        _call(lambda: docker.network.create(NETWORK, labels=mark()))
    net = _call(lambda: docker.network.inspect(NETWORK))
    refuse_foreign(f"network {NETWORK}", net.labels)
    configs = net.ipam.config or []
    gateway = next((cfg.get("Gateway") for cfg in configs if cfg.get("Gateway")), None)
    subnet = next((cfg.get("Subnet") for cfg in configs if cfg.get("Subnet")), "")
    if not gateway:
        raise FlopsError(f"network {NETWORK} has no gateway: remove it (inv testbed.down)")
    if subnet.startswith("172.17."):
        raise FlopsError(
            f"network {NETWORK} uses {subnet}, which collides with the workers' "
            "own docker0: remove it and retry"
        )
    return NETWORK, gateway


def worker_kinds(count: int, kinds: list[str] | None) -> list[str]:
    """One kind per worker: ``kinds`` in order, its last entry repeated (default docker)."""
    kinds = kinds or ["docker"]
    return [kinds[min(i, len(kinds) - 1)] for i in range(count)]


def ensure_workers(
    count: int, pubkey: str, progress: Progress, kinds: list[str] | None = None
) -> list[tuple[str, str, str]]:
    """Start ``count`` workers of ``kinds`` (reusing running ones of the right kind); remove
    extra ones and ones of another kind. -> [(name, ip, kind)]."""
    docker = _docker()
    existing = {
        c.name: c
        for c in _call(
            lambda: docker.container.list(all=True, filters=[("label", f"{ROLE_LABEL}=worker")])
        )
        if (c.config.labels or {}).get(LABEL) in (TESTBED_ID, LEGACY_ID)
    }
    wanted = dict(
        zip([worker_name(i) for i in range(1, count + 1)], worker_kinds(count, kinds), strict=True)
    )
    for name in wanted.keys() - existing.keys():
        if _call(partial(docker.container.exists, name)):
            other = _call(partial(docker.container.inspect, name))
            refuse_foreign(f"container {name}", other.config.labels)
    for name, c in list(existing.items()):
        kind = (c.config.labels or {}).get(KIND_LABEL, "docker")
        if wanted.get(name) != kind:
            progress(f"removing worker {name} ({kind})")
            _call(partial(docker.container.remove, c, force=True, volumes=True))
            _remove_worker_volumes(name)
            existing.pop(name)
    result = []
    for name, kind in wanted.items():
        c = existing.get(name)
        image, stores, _ = KINDS[kind]
        if c is not None and not c.state.running:
            progress(f"starting stopped worker {name}")
            _call(partial(docker.container.start, c))
        elif c is None:
            progress(f"starting worker {name} ({kind})")
            volumes: list[tuple[str, ...]] = []
            for suffix in stores:
                vol = f"{name}-{suffix}"
                if not _call(partial(docker.volume.exists, vol)):
                    _call(partial(docker.volume.create, vol, labels=mark()))
                volumes.append((vol, VOLUME_PATHS[suffix]))
            volumes.append(("/sys/fs/cgroup", "/sys/fs/cgroup", "rw"))
            _call(
                partial(
                    docker.run,
                    image,
                    name=name,
                    hostname=name,
                    detach=True,
                    networks=[NETWORK],
                    envs={"SSH_AUTHORIZED_KEYS": pubkey},
                    labels=mark(**{ROLE_LABEL: "worker", KIND_LABEL: kind}),
                    volumes=volumes,
                    **WORKER_FLAGS,
                )
            )
        c = _call(partial(docker.container.inspect, name))
        ip = c.network_settings.networks[NETWORK].ip_address
        result.append((name, ip, kind))
    return result


def _remove_worker_volumes(name: str) -> None:
    docker = _docker()
    for suffix in VOLUME_PATHS:
        vol = f"{name}-{suffix}"
        if _call(partial(docker.volume.exists, vol)):
            _call(partial(docker.volume.remove, vol))


def host_key(name: str, timeout: float = 60) -> str:
    """The worker's ed25519 host key, read over ``docker exec`` (a trusted channel)."""
    docker = _docker()
    from python_on_whales.exceptions import DockerException

    deadline = time.monotonic() + timeout
    while True:
        try:
            text = docker.execute(name, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"])
            kind, key = text.split()[:2]
            return f"{kind} {key}"
        except (DockerException, ValueError):
            if time.monotonic() > deadline:
                raise FlopsError(
                    f"worker {name} has no SSH host key after {timeout:g}s: see "
                    f"'docker logs {name}'"
                ) from None
            time.sleep(0.3)


def pin_host_keys(paths: Paths, workers: list[tuple[str, str, str]]) -> None:
    lines = [f"{ip} {host_key(name)}\n" for name, ip, _ in workers]
    tmp = paths.known_hosts.with_suffix(".tmp")
    tmp.write_text("".join(lines))
    os.chmod(tmp, 0o600)
    os.replace(tmp, paths.known_hosts)


# -- the config the testbed hands to every task -----------------------------------------
def upstream_tree(paths: Paths) -> Path | None:
    """The upstream addon-FLOps tree ``up`` unpacked (None when there was no tarball)."""
    folder = paths.build / "upstream"
    roots = [p for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    return roots[0] if len(roots) == 1 else None


def testbed_config(
    paths: Paths,
    workers: list[tuple[str, str, str]],
    gateway: str,
    upstream: dict[str, str] | None = None,
) -> dict:
    """The config of the testbed. What could not be built from upstream's source
    (``upstream``: ``missing``) is left out on purpose: the manager in
    ``flops.stack.omit`` (with how to provide it), the learner role without a sidecar."""
    missing = {name for name, state in (upstream or {}).items() if state == "missing"}
    roles = {
        kind: [r for r in kind_roles if not (r == "learner" and "ml_data_server" in missing)]
        for kind, (_, _, kind_roles) in KINDS.items()
    }
    tree = upstream_tree(paths)
    config: dict = {
        "flops": {
            # FLOps' images from the unpacked upstream tree, offline (--build, dev-images)
            "addon": {"build": "offline", **({"path": str(tree)} if tree else {})},
            "inventory": {
                name.removeprefix(f"{PREFIX}-"): {
                    "host": ip,
                    "user": "root",
                    "port": 22,
                    "roles": roles[kind],
                }
                for name, ip, kind in workers
            },
            "ssh": {
                "user": "root",
                "key": str(paths.key),
                "known_hosts": str(paths.known_hosts),
                "host_keys": "strict",
            },
            "addresses": {var.lower(): gateway for var in ADDRESS_VARS},
            "stack": {
                "project": PROJECT,
                "overrides": [
                    str(PROJECT_ROOT / "testbed" / "testbed.compose.yml"),
                    LOOPBACK_OVERRIDE,
                    str(paths.labels),
                ],
                "env_file": str(paths.env_file),
                "network": NETWORK,
                # the stores' fixed credentials reach no network but the testbed's (and this
                # host, on the gateway address and the registry's loopback one)
                "bind_address": gateway,
            },
            "learner": {"image": f"{gateway}:{DEFAULTS['registry']['port']}/{SIDECAR_REPO}"},
        }
    }
    if MANAGER in missing:
        config["flops"]["stack"]["omit"] = {MANAGER: upstream_hint()}
    return config


# the registry also on 127.0.0.1:5073, where this host's dockerd pushes (push_sidecar)
LOOPBACK_OVERRIDE = str(PROJECT_ROOT / "testbed" / "testbed-loopback.compose.yml")


def labels_override(build: Path | None = None) -> dict:
    """A compose override that gives every service, image and volume of the stack this
    checkout's testbed label (written beside the config: the value is the checkout's), and
    the manager the build context ``up`` stages in ``build`` (the testbed's folder)."""
    from .stack.services import SERVICES, VOLUMES

    labels = mark()
    services: dict = {svc: {"labels": labels, "build": {"labels": labels}} for svc in SERVICES}
    if build is not None:
        services[MANAGER]["build"]["context"] = str(build / MANAGER)
    return {"services": services, "volumes": {vol: {"labels": labels} for vol in VOLUMES}}


def write_yaml(path: Path, data: dict, what: str) -> None:
    import yaml

    body = f"# Written by 'inv testbed.up': {what}.\n" + yaml.safe_dump(data, sort_keys=False)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(body)
    os.replace(tmp, path)


def write_config(paths: Paths, data: dict) -> None:
    write_yaml(paths.config, data, "points every task at the offline testbed")
    write_yaml(
        paths.labels,
        labels_override(paths.build),
        "this checkout's testbed label on the stack, the manager's build context",
    )
    for name, placement in PLACEMENTS.items():
        write_yaml(
            paths.placement_config(name),
            placement_config(data, placement),
            f"the testbed with the suite placed '{name}' ({placement})",
        )


# Placements of the suite on the testbed (worker w1's own dockerd, through Docker's SSH
# transport): the storage-heavy registry and artifact store on w1, or everything on w1.
PLACEMENT_HOST = "w1"
PLACEMENTS = {
    "split": {"flops_image_registry": PLACEMENT_HOST, "vsftpd_server": PLACEMENT_HOST},
    "remote": {"default": PLACEMENT_HOST},
}


def placement_config(data: dict, placement: dict[str, str]) -> dict:
    """The testbed config with ``placement``: the addresses of the components placed on w1
    are left to follow the placement (w1's address); the others stay the gateway."""
    import copy

    from .env import COMPONENT
    from .stack.services import SERVICES

    config = copy.deepcopy(data)
    flops = config["flops"]
    flops["stack"]["placement"] = dict(placement)
    # one bind address serves every engine, and w1's cannot bind this host's gateway: the
    # placed suite publishes on every address of its host (w1's are the testbed network's)
    flops["stack"]["bind_address"] = "0.0.0.0"
    flops["stack"]["overrides"].remove(LOOPBACK_OVERRIDE)  # 0.0.0.0 holds loopback already
    on_w1 = {
        svc
        for svc in SERVICES
        if placement.get(svc, placement.get("default", "local")) == PLACEMENT_HOST
    }
    for var, service in COMPONENT.items():
        if service in on_w1 and var != "SYSTEM_MANAGER_IP":  # the stand-in runs here
            flops["addresses"][var.lower()] = ""
    if "flops_image_registry" in on_w1:
        w1 = flops["inventory"][PLACEMENT_HOST]["host"]
        flops["learner"]["image"] = f"{w1}:{DEFAULTS['registry']['port']}/{SIDECAR_REPO}"
    return config


def _arg_value(values: dict[str, str], match: re.Match[str]) -> str:
    """A Dockerfile ``${ARG}``'s value (empty when it has none)."""
    return values.get(match[1], "")


def context_for(paths: Paths, dry: bool = False, runtime: Path | None = None) -> Any:
    """An Invoke context that sees exactly what ``inv -f <paths.config>`` sees (or
    ``-f runtime``): the file is read by the project's ``FlopsConfig``, as ``inv`` reads it."""
    import copy

    from invoke import Context

    from .invoke_config import FlopsConfig

    defaults = FlopsConfig.global_defaults()
    defaults["flops"] = copy.deepcopy(DEFAULTS)
    config = FlopsConfig(
        defaults=defaults,
        overrides={"run": {"in_stream": False, "dry": dry}},
        runtime_path=runtime or paths.config,
    )
    config.load_runtime()
    return Context(config=config)


# -- up / down ----------------------------------------------------------------------------
def wait_ssh_ready(c: Any, progress: Progress, timeout: float = 120) -> list:
    """Poll until every worker answers SSH (pinned key), containerd and ``docker info``
    (on the workers that have Docker)."""
    from . import commands
    from .config import settings
    from .outcome import ok
    from .ssh import RemoteFailure, fan_out

    s = settings(c)
    deadline = time.monotonic() + timeout
    pending = list(s.inventory)
    progress(f"waiting for SSH, containerd and Docker on {len(pending)} workers")
    ready = commands.all_of(
        commands.quiet(commands.cmd("ctr", "version")),
        commands.if_else(
            commands.has_command("dockerd") + " >/dev/null",
            commands.cmd("docker", "info", "--format", "docker {{.ServerVersion}}"),
            commands.cmd("echo", "containerd (no Docker)"),
        ),
    )
    while True:

        def probe(session: Any) -> list:
            res = session.probe(ready)
            if not res.ok:
                raise RemoteFailure("containerd or docker does not answer")
            return [ok(session.label, "ready", res.stdout.strip())]

        outcomes = fan_out(pending, probe, ssh=s.ssh, config=c.config, step="ready")
        bad = {o.host for o in outcomes if o.bad}
        pending = [t for t in pending if t.label in bad]
        if not pending:
            return outcomes
        if time.monotonic() > deadline:
            worst = next(o for o in outcomes if o.bad)
            raise FlopsError(f"worker {worst.host} not ready after {timeout:g}s: {worst.detail}")
        time.sleep(0.5)


def up(
    workers: int = 2,
    progress: Progress = lambda _: None,
    paths: Paths | None = None,
    mirror: str = MIRROR,
    kinds: list[str] | None = None,
    placement: str | None = None,
) -> dict:
    """Bring the testbed up (idempotent); returns a summary dict. ``placement`` (a name of
    ``PLACEMENTS``): the suite is started placed so, not on this host's engine."""
    if not 1 <= workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be 1-{MAX_WORKERS}, got {workers}")
    if placement is not None and placement not in PLACEMENTS:
        raise UsageError(
            f"--placement must be {' or '.join(PLACEMENTS)}, got {placement!r} "
            f"({'; '.join(f'{k}: {v}' for k, v in PLACEMENTS.items())})"
        )
    paths = paths or default_paths()
    from . import locks
    from .stack.project import Project

    started = time.monotonic()
    check_folder(paths.root)  # checks first: without an engine or a folder nothing changes
    docker = _docker()
    _check_engine(docker)
    make_folder(paths.root)
    with locks.held(paths.root / "testbed.lock", "the testbed"):
        for suite in ("bookworm", "trixie"):
            ensure_base_image(suite, progress, mirror)
        build_image(
            PROJECT_ROOT / "testbed" / "worker-containerd", CONTAINERD_WORKER_IMAGE, progress
        )
        build_image(PROJECT_ROOT / "testbed" / "worker", WORKER_IMAGE, progress)
        upstream = upstream_images(paths, progress)
        pubkey = ensure_key(paths)
        _, gateway = ensure_network()
        nodes = ensure_workers(workers, pubkey, progress, kinds)
        pin_host_keys(paths, nodes)
        write_config(paths, testbed_config(paths, nodes, gateway, upstream))
        c = context_for(paths)
        wait_ssh_ready(c, progress)
        from .config import settings
        from .stack.lifecycle import down as stack_down
        from .stack.services import SERVICES

        s = settings(c)
        wanted = tuple(svc for svc in SERVICES if svc not in s.stack.omit)
        project = Project(s, progress=progress, services=wanted)
        if placement is None:
            start_stack(project, upstream)
            if upstream["ml_data_server"] != "missing":
                push_sidecar(progress)
        else:
            stack_down(project)  # the suite runs placed, not (also) here
        ensure_system_manager(gateway, progress)
    summary = {
        "workers": [{"name": n, "ip": ip, "kind": kind} for n, ip, kind in nodes],
        "gateway": gateway,
        "config": str(paths.config),
        "upstream": upstream,
        "seconds": round(time.monotonic() - started, 1),
    }
    if "missing" in upstream.values():
        summary["upstream_hint"] = upstream_hint()
    if placement is not None:
        placed = up_placement(placement, progress, paths)
        summary.update(config=placed["config"], placement=placed["placement"])
        summary["seconds"] = round(time.monotonic() - started, 1)
    return summary


def _folder_problem(folder: Path, why: str) -> FlopsError:
    return FlopsError(
        f"cannot create the testbed's folder {folder} ({why}): make the state directory "
        "writable, or set flops.state_dir (or XDG_STATE_HOME) to a folder of yours"
    )


def check_folder(folder: Path) -> None:
    """The testbed's folder is one, or can be made (read-only: its nearest existing
    ancestor is a folder this user may write to)."""
    ancestor = folder
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise _folder_problem(folder, f"{ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK) and ancestor != folder:
        raise _folder_problem(folder, f"{ancestor} is not writable")


def make_folder(folder: Path) -> None:
    """The testbed's folder (mode 0700: it holds the workers' SSH key), or one line."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise _folder_problem(folder, exc.strerror or str(exc)) from None


def start_stack(project: Any, upstream: dict[str, str]) -> None:
    """Build the images of the services placed on the project's engine (the manager too
    when its context is staged) and start them."""
    from .stack.preflight import preflight

    has_manager = MANAGER in project.services
    others = [svc for svc in project.services if svc != MANAGER]
    preflight(project, build=True)
    project.build(services=None if upstream[MANAGER] == "build" or not has_manager else others)
    project.start(services=others if upstream[MANAGER] == "missing" and has_manager else None)


def up_placement(
    name: str, progress: Progress = lambda _: None, paths: Paths | None = None
) -> dict:
    """Start the suite of a running testbed with the placement ``name`` (``PLACEMENTS``):
    the base images the builds need are loaded into w1's engine (nothing can be pulled),
    each engine builds and starts its services (compose sends the builds over Docker's SSH
    transport), and a registry on w1 gets the learners' sidecar image."""
    from . import locks
    from .config import settings
    from .stack import placement
    from .stack.services import REGISTRY

    paths = paths or default_paths()
    config = paths.placement_config(name)
    if not config.is_file():
        from .paths import command

        raise FlopsError(f"{config} is missing: run '{command()} testbed.up' first")
    started = time.monotonic()
    s = settings(context_for(paths, runtime=config))
    projects = placement.projects(s, progress=progress)
    manager = (
        "build"
        if (paths.build / MANAGER).is_dir()
        else ("reused" if _call(lambda: _docker().image.exists(MANAGER_IMAGE)) else "missing")
    )
    with locks.held(paths.root / "testbed.lock", "the testbed"):
        placement.require(projects)
        for project in projects:
            if project.remote:
                write_env(project)  # compose reads it to resolve the build sections
                for image in sorted(base_images(project)):
                    copy_image(image, project, progress)
        for project in sorted(projects, key=lambda p: MANAGER in p.services):
            start_stack(project, {MANAGER: manager})
        registry = placement.project_for(projects, REGISTRY)
        if registry.remote and _call(lambda: _docker().image.exists(SIDECAR_IMAGE)):
            push_sidecar(progress, project=registry)
    return {
        "config": str(config),
        "placement": placement.placed_on(projects),
        "seconds": round(time.monotonic() - started, 1),
    }


def write_env(project: Any) -> None:
    """The project's env file, as its preflight writes it (here, where compose reads it)."""
    from . import env as envmod
    from .stack.preflight import network

    name, _ = network(project)
    envmod.ensure_env(project.s, extra={"FLOPS_NETWORK": name}, path=project.env_file)


def base_images(project: Any) -> set[str]:
    """The testbed's local images the builds of the project's services start FROM."""

    found: set[str] = set()
    services = project.compose_config().get("services") or {}
    for svc in project.services:
        build = (services.get(svc) or {}).get("build") or {}
        if not isinstance(build, dict) or not build.get("context"):
            continue
        args = {k: str(v) for k, v in (build.get("args") or {}).items()}
        dockerfile = Path(build["context"]) / build.get("dockerfile", "Dockerfile")
        stages: set[str] = set()
        text = dockerfile.read_text() if dockerfile.is_file() else ""
        values = {**dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M)), **args}
        for image, stage in re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I):
            image = re.sub(r"\$\{(\w+)\}", partial(_arg_value, values), image)
            if image not in stages and image.startswith(f"{PREFIX}/"):
                found.add(image)
            if stage:
                stages.add(stage)
    return found


def copy_image(image: str, project: Any, progress: Progress) -> bool:
    """``docker save IMAGE | docker -H ssh://... load`` once: True when it was copied."""
    if project.call(lambda: project.docker.image.exists(image)):
        return False
    progress(
        f"copying image {image} to {project.label} (docker save | docker load over "
        "Docker's SSH transport)"
    )
    local = _docker()
    project.call(lambda: project.docker.image.load(local.image.save(image), quiet=True))
    return True


def push_sidecar(progress: Progress, project: Any = None) -> None:
    """Serve upstream's ml_data_server from the FLOps registry (learners pull it); a
    registry on another engine (``project``) gets it from that engine, as its own
    127.0.0.1:5073 (the image is copied there first)."""
    docker = _docker() if project is None else project.docker
    call = _call if project is None else project.call
    if project is not None:
        copy_image(SIDECAR_IMAGE, project, progress)
    local = f"127.0.0.1:{DEFAULTS['registry']['port']}/{SIDECAR_REPO}"
    call(lambda: docker.image.tag(SIDECAR_IMAGE, local))
    where = f" on {project.label}" if project is not None else ""
    progress(f"pushing {SIDECAR_IMAGE} to the FLOps registry{where} as {SIDECAR_REPO}")
    call(lambda: docker.image.push(local, quiet=True))


# -- the Oakestra System Manager stand-in ----------------------------------------------------
SYSTEM_MANAGER = "system_manager"  # the FLOps manager dials system_manager:10000 by name
SYSTEM_MANAGER_IMAGE = "flops-testbed/system-manager-standin:1"
SYSTEM_MANAGER_PORT = 10000


def ensure_system_manager(gateway: str, progress: Progress, timeout: float = 30) -> str:
    """The System Manager stand-in (testbed/system_manager/) as container ``system_manager``
    on the testbed network, published on ``gateway:10000`` (SYSTEM_MANAGER_IP of the
    testbed config); recreated when its image changed. Returns its URL once it answers."""
    docker = _docker()
    build_image(PROJECT_ROOT / "testbed" / "system_manager", SYSTEM_MANAGER_IMAGE, progress)
    image_id = _call(lambda: docker.image.inspect(SYSTEM_MANAGER_IMAGE)).id
    if _call(lambda: docker.container.exists(SYSTEM_MANAGER)):
        current = _call(lambda: docker.container.inspect(SYSTEM_MANAGER))
        refuse_foreign(f"container {SYSTEM_MANAGER}", current.config.labels)
        bindings = (current.host_config.port_bindings or {}).get(f"{SYSTEM_MANAGER_PORT}/tcp")
        fine = (
            current.state.running
            and current.image == image_id
            and NETWORK in (current.network_settings.networks or {})
            and [b.host_ip for b in bindings or []] == [gateway]
        )
        if fine:
            return wait_system_manager(gateway, timeout)
        progress(
            f"replacing container {SYSTEM_MANAGER} (stand-in image, network or address "
            "changed, or it stopped)"
        )
        _call(lambda: docker.container.remove(SYSTEM_MANAGER, force=True))
    progress(
        f"starting the System Manager stand-in {SYSTEM_MANAGER} on {gateway}:{SYSTEM_MANAGER_PORT}"
    )
    _call(
        lambda: docker.run(
            SYSTEM_MANAGER_IMAGE,
            name=SYSTEM_MANAGER,
            hostname=SYSTEM_MANAGER,
            detach=True,
            networks=[NETWORK],
            labels=mark(**{ROLE_LABEL: "system_manager"}),
            publish=[(f"{gateway}:{SYSTEM_MANAGER_PORT}", SYSTEM_MANAGER_PORT)],
            restart="unless-stopped",
        )
    )
    return wait_system_manager(gateway, timeout)


def wait_system_manager(gateway: str, timeout: float = 30) -> str:
    """Poll the stand-in's state route until it answers as the stand-in."""
    import json
    import urllib.error
    import urllib.request

    url = f"http://{gateway}:{SYSTEM_MANAGER_PORT}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url + "/_standin/state", timeout=2) as resp:
                if json.load(resp).get("stand_in"):
                    return url
        except (urllib.error.URLError, OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise FlopsError(
                f"the System Manager stand-in does not answer at {url} after "
                f"{timeout:g}s: see 'docker logs {SYSTEM_MANAGER}'"
            )
        time.sleep(0.2)


def _check_engine(docker: Any) -> None:
    from python_on_whales import ClientNotFoundError
    from python_on_whales.exceptions import DockerException

    from .stack.project import NO_DOCKER

    try:
        docker.system.info()
    except (ClientNotFoundError, FileNotFoundError):
        raise FlopsError(NO_DOCKER) from None
    except DockerException:
        raise FlopsError(
            "the Docker engine does not answer: start dockerd (or run .ci/setup)"
        ) from None


def labelled() -> dict[str, list[str]]:
    """Every object carrying this checkout's testbed label, by kind."""
    docker = _docker()
    found: dict[str, list[str]] = {"containers": [], "volumes": [], "networks": [], "images": []}
    for value in (TESTBED_ID, LEGACY_ID):
        flt = [("label", f"{LABEL}={value}")]
        found["containers"] += [
            c.name for c in _call(partial(docker.container.list, all=True, filters=flt))
        ]
        found["volumes"] += [v.name for v in _call(partial(docker.volume.list, filters=flt))]
        found["networks"] += [n.name for n in _call(partial(docker.network.list, filters=flt))]
        found["images"] += [
            t
            for i in _call(partial(docker.image.list, filters=flt))
            for t in (i.repo_tags or [i.id[:19]])
        ]
    return {kind: sorted(set(names)) for kind, names in found.items()}


def down(
    keep_images: bool = False, progress: Progress = lambda _: None, paths: Paths | None = None
) -> dict[str, list[str]]:
    """Remove exactly what carries this checkout's testbed label (or the label of versions
    before it, ``LEGACY_ID``), and the testbed's folder."""
    paths = paths or default_paths()
    docker = _docker()
    _check_engine(docker)
    removed = labelled()
    if removed["containers"]:
        progress(f"removing {len(removed['containers'])} containers")
        _call(lambda: docker.container.remove(removed["containers"], force=True, volumes=True))
    if removed["volumes"]:
        progress(f"removing {len(removed['volumes'])} volumes")
        _call(lambda: docker.volume.remove(removed["volumes"]))
    if removed["networks"]:
        _call(lambda: docker.network.remove(removed["networks"]))
    if keep_images:
        removed["images"] = []
    else:
        images = [
            i
            for value in (TESTBED_ID, LEGACY_ID)
            for i in _call(partial(docker.image.list, filters=[("label", f"{LABEL}={value}")]))
        ]
        if images:
            progress(f"removing {len(images)} images")
            _call(lambda: docker.image.remove([i.id for i in images], force=True))
    if paths.root.exists():
        shutil.rmtree(paths.root)
    return removed
