"""Worker preparations: check, act, verify.

Every step is a ``Step``: ``check(facts, ctx)`` says whether the host is already as wanted
(and how it looks), ``act(session, facts, ctx)`` changes only that. ``prepare_host`` gathers
the facts in one round trip, checks every step, acts on the steps that differ, gathers again
and verifies each changed step with the same check. A second run finds nothing to do and
says so.

A check that finds the host's own files or state forbidding a change (a broken daemon.json,
registry mirrors containerd would refuse next to config_path) raises ``Refusal``. Every check
runs before any act, so such a host is reported in one line and left exactly as it was.
A step that cannot apply for a reason outside flops-tasks' reach (NodeEngine not installed)
is reported as a warning, never skipped silently.
"""

from __future__ import annotations

import json
import time
import urllib.error
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from . import commands as C
from . import trust
from .facts import (
    WorkerFacts,
    base_probes,
    builder_probes,
    former_registry_probes,
    gather,
    handler_probe,
    learner_probes,
    quick_probes,
    registry_probes,
)
from .outcome import Outcome, Status, changed, failed, ok, skipped, unreachable, warning
from .probe_binaries import MACHINES, UNAME_AMD64_B64, UNAME_ARM64_B64
from .ssh import HostSession, HostUnreachable, RemoteFailure
from .trust import Refusal

PLATFORMS = ("linux/amd64", "linux/arm64")
BUILDER, LEARNER = "builder", "learner"
PROBE_REPO = "flops-tasks/builder-probe"
# what the push check installs to build the way FLOps' image builder does (buildah needs
# netavark, a Recommends, or every command fails)
CHECK_TOOLS = ("buildah", "netavark")
# oakestra/oakestra scripts/README.md, "Install Worker and Node Engine"
NODEENGINE_INSTALL = (
    "curl -sfL https://raw.githubusercontent.com/oakestra/oakestra/develop/"
    "scripts/InstallOakestraWorker.sh | sh -"
)
NODEENGINE_MISSING = "NodeEngine not found: add-on not enabled"

__all__ = [
    "Refusal",
    "PrepContext",
    "Step",
    "STEPS",
    "prepare_host",
    "doctor_host",
    "preflight",
    "push_checks",
    "remove_check_tools",
]


@dataclass(frozen=True)
class PrepContext:
    registry: str  # host:port of the FLOps registry as workers address it (IPv6 in brackets)
    builder_name: str = "flops-builder"
    builder_driver: str = "auto"
    learner_image: str = ""
    data_dir: str = ""
    push_check: bool = False
    publish_address: str = ""  # where the sidecar's port is published; "" = docker0's address
    # registries workers were told to trust before the registry moved: trust is dropped
    forget: tuple[str, ...] = ()


Check = Callable[[WorkerFacts, PrepContext], tuple[bool, str]]
Act = Callable[[HostSession, WorkerFacts, PrepContext], str]
Applies = Callable[[WorkerFacts, PrepContext], bool]


def _always(f: WorkerFacts, ctx: PrepContext) -> bool:
    return True


def _no_warning(f: WorkerFacts, ctx: PrepContext) -> str | None:
    return None


@dataclass(frozen=True)
class Step:
    name: str
    roles: frozenset[str]
    check: Check
    act: Act
    applies: Applies = _always
    # why the step cannot be done on this host (reported as a warning), or None
    unavailable: Callable[[WorkerFacts, PrepContext], str | None] = _no_warning
    # the packages its act installs: every step's are installed in one apt transaction
    packages: Callable[[WorkerFacts, PrepContext], list[str]] = lambda f, ctx: []
    # something the operator must know about a host where the step is in place (a warning
    # row named "<step>-caveat"), or None
    caveat: Callable[[WorkerFacts, PrepContext], str | None] = _no_warning
    # the command that mends what ``unavailable`` names
    unavailable_fix: str = ""


def _docker(f: WorkerFacts, ctx: PrepContext) -> bool:
    return f.docker_running


# -- QEMU user emulation ----------------------------------------------------------------
def check_qemu(f: WorkerFacts, ctx: PrepContext) -> tuple[bool, str]:
    foreign = f.foreign
    enabled, flags = f.handler(foreign)
    problems = []
    if not f.installed("qemu-user-static"):
        problems.append("qemu-user-static not installed")
    if not enabled:
        problems.append(
            f"qemu-{foreign} handler " + ("without the F flag" if flags else "not registered")
        )
    ran = f.runs(foreign)
    if ran is False:
        problems.append(f"a {foreign} binary does not run")
    if problems:
        return False, "; ".join(problems)
    persist = "persistent" if f.out("binfmt_persist").strip() else "NOT persistent across reboots"
    return True, (
        f"qemu-user-static installed; qemu-{foreign} flags {flags} ({persist}); "
        + (
            f"{foreign} binary prints {foreign}"
            if ran
            else f"handler enabled (quick read: no {foreign} binary run)"
        )
    )


def qemu_packages(f: WorkerFacts, ctx: PrepContext) -> list[str]:
    return [] if f.installed("qemu-user-static") else ["qemu-user-static"]


def _refuse_conflicts(s: HostSession, f: WorkerFacts, packages: list[str]) -> None:
    """Ubuntu's qemu-user-binfmt conflicts with qemu-user-static: never remove it for us."""
    if "qemu-user-static" in packages and f.installed("qemu-user-binfmt") and not s.dry:
        sim = s.probe(
            C.cmd("apt-get", "install", "-s", "--no-install-recommends", "qemu-user-static")
        )
        if "qemu-user-binfmt" in sim.stdout and "REMOVED" in sim.stdout:
            raise RemoteFailure(
                "qemu-user-binfmt is installed and conflicts with "
                "qemu-user-static here: remove it yourself "
                "(apt-get remove qemu-user-binfmt), then re-run"
            )


def install_packages(
    s: HostSession, f: WorkerFacts, packages: list[str], steps: Sequence[str] = ()
) -> None:
    """Every package the steps need, in one apt transaction (one ``apt-get update`` at most);
    ``f`` then counts them as installed. The change is recorded for each of ``steps`` (the
    steps whose packages it installs; default: the session's current step)."""
    if not packages:
        return
    _refuse_conflicts(s, f, packages)
    s.change(
        C.apt_install(packages),
        f"apt-get install {' '.join(packages)}",
        timeout=900,
        also=tuple(steps),
    )
    f.fresh_installs.update(packages)  # under --dry: planned once, not again by each step


def act_qemu(s: HostSession, f: WorkerFacts, ctx: PrepContext) -> str:
    foreign = f.foreign
    done = []
    if "qemu-user-static" in f.fresh_installs:
        done.append("installed qemu-user-static")
    elif not f.installed("qemu-user-static"):
        install_packages(s, f, ["qemu-user-static"])
        done.append("installed qemu-user-static")
    if not f.ok("binfmt_mounted"):
        s.change(C.mount_binfmt(), f"mount binfmt_misc at {C.BINFMT}")
        done.append("mounted binfmt_misc")
    if not s.dry:
        again = gather(s, [handler_probe(foreign)])
        enabled, _ = again.handler(foreign)
    else:
        enabled = f.handler(foreign)[0]
    if not enabled:
        s.change(C.register_binfmt(foreign), f"register the qemu-{foreign} binfmt handler")
        done.append(f"registered qemu-{foreign}")
    return ", ".join(done) or "nothing to do"


# -- buildx and the named builder (where Docker runs) ---------------------------------------
def check_buildx(f: WorkerFacts, ctx: PrepContext) -> tuple[bool, str]:
    if not f.has("buildx"):  # quick reads: the plugin file (see facts.quick_probes)
        if not f.ok("buildx_plugin"):
            return False, "docker buildx is not installed"
        package = f.buildx_package
        version = f.version(package)
        return True, (
            f"docker buildx plugin {f.out('buildx_plugin').strip()}"
            + (f" ({package} {version})" if version else "")
        )
    if not f.ok("buildx"):
        return False, "docker buildx is not installed"
    return True, f.out("buildx").strip().splitlines()[0]


def buildx_packages(f: WorkerFacts, ctx: PrepContext) -> list[str]:
    return [f.buildx_package]


def act_buildx(s: HostSession, f: WorkerFacts, ctx: PrepContext) -> str:
    package = f.buildx_package
    if package not in f.fresh_installs:
        s.change(C.apt_install([package]), f"apt-get install {package}")
    return f"installed {package}"


def builder_driver(f: WorkerFacts, ctx: PrepContext) -> str:
    if ctx.builder_driver != "auto":
        return ctx.builder_driver
    return "docker" if f.containerd_store else "docker-container"


def check_builder(f: WorkerFacts, ctx: PrepContext) -> tuple[bool, str]:
    driver = builder_driver(f, ctx)
    if driver == "docker" and not f.containerd_store:
        return False, (
            "the docker driver builds multi-platform images only on the containerd "
            "image store; use builder.driver docker-container"
        )
    platforms = f.builder_platforms(driver)
    missing = [p for p in PLATFORMS if p not in platforms]
    if (
        driver == "docker-container"
        and trust.buildkitd_toml(f.file("buildkitd"), ctx.registry, ctx.forget) is not None
    ):
        return False, f"BuildKit config {C.BUILDKITD_TOML} lacks http for {ctx.registry}"
    if not platforms:
        return False, f"builder {ctx.builder_name} ({driver} driver) does not exist"
    if missing:
        return False, f"builder {ctx.builder_name} lacks {', '.join(missing)}"
    return True, f"builder {ctx.builder_name} ({driver} driver): {', '.join(PLATFORMS)}"


def act_builder(s: HostSession, f: WorkerFacts, ctx: PrepContext) -> str:
    driver = builder_driver(f, ctx)
    if driver == "docker":
        if not f.containerd_store:
            raise RemoteFailure(
                "the image store is not containerd: flops-tasks never switches "
                "it (that hides existing images); set flops.builder.driver to "
                "docker-container"
            )
        if not f.context_host:
            s.change(
                C.docker_context_create(ctx.builder_name),
                f"docker context create {ctx.builder_name}",
            )
        return f"docker context {ctx.builder_name} (docker driver, containerd store)"
    config = trust.buildkitd_toml(f.file("buildkitd"), ctx.registry, ctx.forget)
    if config is not None:
        s.write(
            C.BUILDKITD_TOML,
            f.file("buildkitd"),
            config,
            f"write {C.BUILDKITD_TOML} (http for {ctx.registry})",
        )
    s.change(
        C.all_of(
            C.buildx_rm(ctx.builder_name),
            C.buildx_create_container(ctx.builder_name, C.BUILDKITD_TOML, ",".join(PLATFORMS)),
        ),
        f"docker buildx create --name {ctx.builder_name} --driver docker-container",
        timeout=600,
    )
    return f"builder {ctx.builder_name} (docker-container driver)"


# -- registry trust ---------------------------------------------------------------------
def check_trust_docker(f: WorkerFacts, ctx: PrepContext) -> tuple[bool, str]:
    """Trusted now (docker info) and after a restart (daemon.json)."""
    in_file = trust.daemon_json(f.file("daemon_json"), ctx.registry, ctx.forget) is None
    live = f.docker_trusts(ctx.registry)
    if in_file and live:
        return True, f"docker trusts {ctx.registry} (plain HTTP; in {C.DAEMON_JSON})"
    if trust.daemon_json(f.file("daemon_json"), ctx.registry) is None and not in_file:
        return False, f"{C.DAEMON_JSON} still trusts a former registry ({_former(ctx)})"
    if not in_file:
        return False, f"{C.DAEMON_JSON} does not list {ctx.registry} in insecure-registries"
    return False, f"dockerd has not loaded {ctx.registry} from {C.DAEMON_JSON}"


def act_trust_docker(s: HostSession, f: WorkerFacts, ctx: PrepContext) -> str:
    wanted = trust.daemon_json(f.file("daemon_json"), ctx.registry, ctx.forget)
    did = []
    if wanted is not None:
        drop = f", drop former {_former(ctx)}" if ctx.forget else ""
        s.write(
            C.DAEMON_JSON,
            f.file("daemon_json"),
            wanted,
            f"add {ctx.registry} to {C.DAEMON_JSON} insecure-registries{drop}",
        )
        did.append(f"{C.DAEMON_JSON} merged")
    s.change(
        C.all_of(C.docker_reload(), C.wait_docker_trusts(ctx.registry)),
        "reload dockerd (SIGHUP: running containers keep running)",
    )
    return ", ".join([*did, "dockerd reloaded"])


def _former(ctx: PrepContext) -> str:
    return ", ".join(ctx.forget)


def _former_hosts(f: WorkerFacts, ctx: PrepContext) -> list[str]:
    """Former registries whose containerd hosts file is flops-tasks' trust, still there."""
    return [r for r in ctx.forget if trust.forgets_hosts_toml(f.file(f"containerd_hosts {r}"), r)]


def containerd_present(f: WorkerFacts, ctx: PrepContext) -> bool:
    return f.containerd_running


def check_trust_containerd(f: WorkerFacts, ctx: PrepContext) -> tuple[bool, str]:
    path = C.hosts_toml_path(ctx.registry)
    config = trust.containerd_config(f.file("containerd_config"))  # may refuse
    hosts = trust.hosts_toml(f.file("containerd_hosts"), ctx.registry)
    if hosts is not None:
        return False, f"{path} missing or without plain HTTP for {ctx.registry}"
    if _former_hosts(f, ctx):
        return False, f"containerd still trusts a former registry ({_former(ctx)})"
    if config is not None:
        return False, f"{C.CONTAINERD_CONFIG} has no config_path naming {C.CERTS_D}"
    return True, f"containerd: {path} (plain HTTP); config_path names {C.CERTS_D}"


def act_trust_containerd(s: HostSession, f: WorkerFacts, ctx: PrepContext) -> str:
    path = C.hosts_toml_path(ctx.registry)
    did = []
    hosts = trust.hosts_toml(f.file("containerd_hosts"), ctx.registry)
    if hosts is not None:
        s.write(path, f.file("containerd_hosts"), hosts, f"write {path}")
        did.append(f"wrote {path}")
    for former in _former_hosts(f, ctx):
        s.change(
            C.remove_registry_hosts(former),
            f"remove {C.hosts_toml_path(former)} (a former registry)",
            file=(C.hosts_toml_path(former), f.file(f"containerd_hosts {former}"), None),
        )
        did.append(f"removed {C.hosts_toml_path(former)}")
    config = trust.containerd_config(f.file("containerd_config"))
    if config is not None:
        how = (
            "systemctl restart containerd"
            if f.systemd
            else "restart containerd (SIGTERM, start it again with its own command line)"
        )
        res = s.change(
            C.apply_containerd_config(config),
            f"set config_path in {C.CONTAINERD_CONFIG}; {how}; running containers keep running",
            timeout=180,
            file=(C.CONTAINERD_CONFIG, f.file("containerd_config"), config),
        )
        kept = next(
            (
                ln.rsplit(":", 1)[1].strip()
                for ln in res.stdout.splitlines()
                if ln.startswith("containers running before and after:")
            ),
            "?",
        )
        did.append(
            f"config_path set; containerd restarted ({kept} running containers kept running)"
        )
    return "; ".join(did)


def check_trust_buildah(f: WorkerFacts, ctx: PrepContext) -> tuple[bool, str]:
    if trust.registries_conf(f.file("registries_conf"), ctx.registry) is not None:
        return False, f"{C.REGISTRIES_CONF} does not mark {ctx.registry} insecure"
    if trust.registries_conf(f.file("registries_conf"), ctx.registry, ctx.forget) is not None:
        return False, f"{C.REGISTRIES_CONF} still trusts a former registry ({_former(ctx)})"
    return True, f"buildah/podman trust {ctx.registry} ({C.REGISTRIES_CONF})"


def act_trust_buildah(s: HostSession, f: WorkerFacts, ctx: PrepContext) -> str:
    conf = trust.registries_conf(f.file("registries_conf"), ctx.registry, ctx.forget)
    if conf is not None:
        s.write(C.REGISTRIES_CONF, f.file("registries_conf"), conf, f"write {C.REGISTRIES_CONF}")
    return f"wrote {C.REGISTRIES_CONF}"


# -- NodeEngine -------------------------------------------------------------------------
def _nodeengine_missing(f: WorkerFacts, ctx: PrepContext) -> str | None:
    if f.nodeengine is not None:
        return None
    return f"{NODEENGINE_MISSING} (install NodeEngine, then re-run)"


def _nodeengine_step(addon: str, role: str) -> Step:
    def check(f: WorkerFacts, ctx: PrepContext) -> tuple[bool, str]:
        active = f.addon_active(addon)
        if active is None:
            lines = [ln.strip() for ln in (f.nodeengine or "").splitlines() if ln.strip()]
            text = " / ".join(lines[:2]) or f"exit {f.rc('nodeengine')}"
            raise Refusal(
                f"NodeEngine is installed, but 'NodeEngine config addon' lists no "
                f"add-ons ({text}): update NodeEngine ({NODEENGINE_INSTALL})"
            )
        return active, (
            f"NodeEngine add-on {addon} active"
            if active
            else f"NodeEngine add-on {addon} not active"
        )

    def act(s: HostSession, f: WorkerFacts, ctx: PrepContext) -> str:
        s.change(C.nodeengine_addon(addon, "on"), f"NodeEngine config addon {addon} on")
        s.change(
            C.restart_nodeengine(),
            "restart NodeEngine where it runs, so it loads the add-on",
            timeout=120,
        )
        return f"add-on {addon} on; NodeEngine restarted where it ran"

    return Step(
        f"nodeengine-{addon}",
        frozenset({role}),
        check,
        act,
        applies=lambda f, c: f.nodeengine is not None,
        unavailable=_nodeengine_missing,
        unavailable_fix=NODEENGINE_INSTALL,
    )


# -- learner ------------------------------------------------------------------------------
def check_data(f: WorkerFacts, ctx: PrepContext) -> tuple[bool, str]:
    if ctx.data_dir:
        found = f.data_dir(ctx.data_dir)
        problem = found.problem()
        if problem:  # the path resolved on the worker (a link may lead elsewhere)
            raise Refusal(f"data dir {ctx.data_dir}: {problem}")
        return (
            found.present,
            f"data dir {ctx.data_dir} " + ("present" if found.present else "missing"),
        )
    return (
        f.ok("volume"),
        f"docker volume {C.DATA_VOLUME} " + ("present" if f.ok("volume") else "missing"),
    )


def act_data(s: HostSession, f: WorkerFacts, ctx: PrepContext) -> str:
    if ctx.data_dir:
        s.change(C.make_data_dir(ctx.data_dir), f"mkdir -p {ctx.data_dir}")
        return f"created {ctx.data_dir}"
    s.change(C.docker_volume_create(C.DATA_VOLUME), f"docker volume create {C.DATA_VOLUME}")
    return f"created volume {C.DATA_VOLUME}"


def sidecar_problems(f: WorkerFacts, ctx: PrepContext) -> list[str]:
    info = f.sidecar
    if info is None:
        return [f"container {C.SIDECAR} missing"]
    problems = []
    state = info.get("State") or {}
    if not state.get("Running"):
        problems.append(f"{C.SIDECAR} is {state.get('Status', 'not running')}")
    if (info.get("Config") or {}).get("Image") != ctx.learner_image:
        problems.append(
            f"{C.SIDECAR} runs {(info.get('Config') or {}).get('Image')}, not {ctx.learner_image}"
        )
    host = info.get("HostConfig") or {}
    if (host.get("RestartPolicy") or {}).get("Name") != "unless-stopped":
        problems.append("restart policy is not unless-stopped")
    binds = (host.get("PortBindings") or {}).get(f"{C.SIDECAR_PORT}/tcp") or []
    on = sorted(
        {b.get("HostIp") or "0.0.0.0" for b in binds if b.get("HostPort") == str(C.SIDECAR_PORT)}
    )
    wanted = ctx.publish_address or f.docker0
    if not on:
        problems.append(f"port {C.SIDECAR_PORT} not published")
    elif on != [wanted]:
        problems.append(
            f"port {C.SIDECAR_PORT} published on {', '.join(on)}, not only on "
            f"{wanted or 'docker0'} (flops.learner.publish_address)"
        )
    source = ctx.data_dir or C.DATA_VOLUME
    mounts = info.get("Mounts") or []
    if not any(
        m.get("Destination") == C.DATA_MOUNT and source in (m.get("Name"), m.get("Source"))
        for m in mounts
    ):
        problems.append(f"{source} not mounted at {C.DATA_MOUNT}")
    return problems


def check_sidecar(f: WorkerFacts, ctx: PrepContext) -> tuple[bool, str]:
    problems = sidecar_problems(f, ctx)
    if not problems and not f.ok("sidecar_tcp"):
        problems.append(
            f"TCP {C.SIDECAR_PORT} does not answer on docker0 ({f.docker0 or 'no docker0'})"
        )
    if problems:
        return False, "; ".join(problems)
    return True, f"{C.SIDECAR} running, TCP {C.SIDECAR_PORT} answers on docker0 {f.docker0}"


LEARNERS_DIAL = "172.17.0.1"  # FLOps' learners: grpc://172.17.0.1:11027


def sidecar_caveat(f: WorkerFacts, ctx: PrepContext) -> str | None:
    """docker0 is not where FLOps' learners dial the sidecar (a warning: not ours to fix)."""
    if f.docker0 and f.docker0 != LEARNERS_DIAL:
        return (
            f"learners dial {LEARNERS_DIAL}:{C.SIDECAR_PORT}, but docker0 is {f.docker0} "
            "on this host: FLOps' learners will not reach the sidecar (Docker's bip "
            "setting moved docker0)"
        )
    return None


def act_sidecar(s: HostSession, f: WorkerFacts, ctx: PrepContext) -> str:
    source = ctx.data_dir or C.DATA_VOLUME
    verb = "replaced" if f.sidecar is not None else "started"
    address = ctx.publish_address or f.docker0
    if not address:
        raise RemoteFailure(
            "docker0 has no IPv4 address to publish the sidecar on: set "
            "flops.learner.publish_address"
        )
    s.change(
        C.all_of(
            C.sidecar_run(ctx.learner_image, source, address),
            C.wait_tcp_docker0(C.SIDECAR_PORT, seconds=30),
        ),
        f"docker run -d --name {C.SIDECAR} -p {C.publish_spec(address, C.SIDECAR_PORT)} "
        f"--restart unless-stopped -v {source}:{C.DATA_MOUNT} {ctx.learner_image}",
        timeout=900,
    )
    return f"{verb} {C.SIDECAR} ({ctx.learner_image})"


STEPS: tuple[Step, ...] = (
    Step("qemu", frozenset({BUILDER}), check_qemu, act_qemu, packages=qemu_packages),
    Step(
        "buildx",
        frozenset({BUILDER}),
        check_buildx,
        act_buildx,
        applies=_docker,
        packages=buildx_packages,
    ),
    Step(
        "trust-docker",
        frozenset({BUILDER, LEARNER}),
        check_trust_docker,
        act_trust_docker,
        applies=_docker,
    ),
    Step("builder", frozenset({BUILDER}), check_builder, act_builder, applies=_docker),
    Step(
        "trust-containerd",
        frozenset({BUILDER, LEARNER}),
        check_trust_containerd,
        act_trust_containerd,
        applies=containerd_present,
    ),
    # FLOps' image builder is buildah: a builder trusts the registry for it whether or not
    # buildah is installed on the node itself
    Step("trust-buildah", frozenset({BUILDER}), check_trust_buildah, act_trust_buildah),
    _nodeengine_step("imageBuilder", BUILDER),
    Step("data", frozenset({LEARNER}), check_data, act_data),
    Step("sidecar", frozenset({LEARNER}), check_sidecar, act_sidecar, caveat=sidecar_caveat),
    _nodeengine_step("FLOps", LEARNER),
)
# buildah on a learner (FLOps does not need it there): trusted where it is installed
LEARNER_BUILDAH = Step(
    "trust-buildah",
    frozenset({LEARNER}),
    check_trust_buildah,
    act_trust_buildah,
    applies=lambda f, c: f.ok("buildah"),
)


def steps_for(roles: set[str]) -> list[Step]:
    steps = [st for st in STEPS if st.roles & roles]
    if BUILDER not in roles and LEARNER in roles:
        steps.insert(
            next(i for i, st in enumerate(steps) if st.name == "trust-containerd") + 1,
            LEARNER_BUILDAH,
        )
    return steps


def probes_for(roles: set[str], ctx: PrepContext, quick: bool = False) -> list[tuple[str, str]]:
    """The full probes of ``roles``; ``quick``: the cheaper reads a re-run starts with. Both
    read the containerd hosts files of former registries (a move drops their trust)."""
    former = former_registry_probes(ctx.forget)
    if quick:
        return quick_probes(roles, ctx.registry, ctx.builder_name, ctx.data_dir) + former
    probes = base_probes() + registry_probes(ctx.registry) + former
    if BUILDER in roles:
        probes += builder_probes(ctx.builder_name)
    if LEARNER in roles:
        probes += learner_probes()
        if ctx.data_dir:
            probes.append(("data_dir", C.data_dir_facts(ctx.data_dir)))
    return probes


def preflight(f: WorkerFacts, roles: set[str]) -> str | None:
    """Why this host cannot be prepared for ``roles`` (one line, each missing piece named with
    what installs it or why flops-tasks will not), or None."""
    if f.machine not in MACHINES:
        return f"unsupported architecture {f.machine or '?'}: amd64 and arm64 are supported"
    problems = []
    if BUILDER in roles:
        if not f.binfmt_supported:
            problems.append(
                "the kernel has no binfmt_misc support, so QEMU user emulation "
                "cannot run foreign binaries: flops-tasks does not change kernels; "
                "use one built with CONFIG_BINFMT_MISC"
            )
        if not f.has_apt:
            problems.append(
                f"no apt-get on {f.os or 'this OS'}: a builder needs "
                "qemu-user-static (and buildah for --push-check), which flops-tasks "
                "installs with apt only (Debian, Ubuntu); install them yourself is "
                "not supported"
            )
        if not f.docker_running and not f.containerd_running:
            problems.append(
                "neither containerd nor the Docker engine runs: NodeEngine runs "
                "FLOps' image builder on containerd; flops-tasks does not install "
                "container runtimes: install containerd (apt-get install containerd) "
                "or Docker and start it"
            )
    if LEARNER in roles and not f.docker_running:
        problems.append(
            f"the Docker engine is not running ({f.docker_error}): a learner needs "
            "Docker, NodeEngine starts the ml_data_server sidecar with docker run; "
            "install Docker (apt-get install docker.io) and start it "
            "(systemctl start docker)"
        )
    return "; ".join(problems) or None


def _describe(f: WorkerFacts, session: HostSession) -> str:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[f.machine]
    runtimes = []
    if f.docker_running:
        runtimes.append(f"docker {f.docker_info.get('ServerVersion')}")
    if f.containerd_running:
        runtimes.append("containerd")
    return f"{f.os} {arch}, {' + '.join(runtimes)}" + (", root" if session.is_root() else ", sudo")


def _check_all(
    host: str, f: WorkerFacts, ctx: PrepContext, steps: list[Step]
) -> tuple[list[tuple[Step, bool, str]], list[Outcome], list[Outcome]]:
    """(step, in place, detail) per applicable step, warnings, refusals."""
    results, warnings, refused = [], [], []
    for step in steps:
        if not step.applies(f, ctx):
            why = step.unavailable(f, ctx)
            if why:
                warnings.append(warning(host, step.name, why, fix=step.unavailable_fix))
            continue
        try:
            in_place, detail = step.check(f, ctx)
        except Refusal as exc:
            refused.append(failed(host, step.name, str(exc)))
            continue
        results.append((step, in_place, detail))
        caveat = step.caveat(f, ctx)
        if caveat:
            warnings.append(warning(host, f"{step.name}-caveat", caveat))
    return results, warnings, refused


def prepare_host(session: HostSession, roles: set[str], ctx: PrepContext) -> list[Outcome]:
    """Converge one host to the wanted state of ``roles``; one Outcome per step.

    A failure or a lost connection part-way keeps the outcomes reported so far.
    """
    outcomes: list[Outcome] = []
    current = ["preflight"]
    try:
        _converge(session, roles, ctx, outcomes, current)
    except Refusal as exc:
        outcomes.append(failed(session.label, current[0], str(exc)))
    except RemoteFailure as exc:
        outcomes.append(failed(session.label, current[0], str(exc)))
    except HostUnreachable as exc:
        outcomes.append(unreachable(session.label, current[0], exc.text, fix=exc.fix))
    outcomes.sort(key=lambda o: _order(o.step))
    return outcomes


def all_in_place(f: WorkerFacts, roles: set[str], ctx: PrepContext) -> bool:
    """Every step of ``roles`` applicable and already as wanted on these facts (a refusal,
    a failed preflight, one step that differs, or quick reads without the engine's answer
    (its read did not run, so Docker's steps could not be judged): False)."""
    if f.quick and "/info" not in f.api:
        return False
    if preflight(f, roles) is not None:
        return False
    try:
        return all(step.check(f, ctx)[0] for step in steps_for(roles) if step.applies(f, ctx))
    except Refusal:
        return False


def _converge(
    session: HostSession,
    roles: set[str],
    ctx: PrepContext,
    outcomes: list[Outcome],
    current: list[str],
) -> None:
    host = session.label
    probes = probes_for(roles, ctx)
    # a re-run reads cheaply first; only a host the quick reads do not confirm gets the
    # full probes, and they alone decide what to change (facts.quick_probes)
    try:
        facts = gather(session, probes_for(roles, ctx, quick=True), grouped=True)
    except RemoteFailure:  # a node whose shell could not run them: the full probes decide
        facts = None
    if facts is None or not all_in_place(facts, roles, ctx):
        facts = gather(session, probes)
    problem = preflight(facts, roles)
    if problem:
        outcomes.append(failed(host, "preflight", problem))
        return
    outcomes.append(ok(host, "preflight", _describe(facts, session)))
    steps = steps_for(roles)
    results, warnings, refused = _check_all(host, facts, ctx, steps)
    outcomes.extend(warnings)
    if refused:
        outcomes.extend(
            failed(host, o.step, f"{o.detail}; nothing was changed on this host") for o in refused
        )
        return
    acted: list[tuple[Step, str]] = []
    current[0] = next((step.name for step, in_place, _ in results if not in_place), "preflight")
    session.step = current[0]
    wanted = {step.name: step.packages(facts, ctx) for step, in_place, _ in results if not in_place}
    install_packages(
        session,
        facts,
        list(dict.fromkeys(p for packages in wanted.values() for p in packages)),
        steps=[name for name, packages in wanted.items() if packages],
    )
    for step, in_place, detail in results:
        current[0] = session.step = step.name
        if in_place:
            outcomes.append(ok(host, step.name, detail))
            continue
        did = step.act(session, facts, ctx)
        if session.dry:
            outcomes.append(changed(host, step.name, f"would change: {detail}"))
        else:
            acted.append((step, did))
    if acted:
        current[0] = acted[0][0].name
        facts = gather(session, probes)
        for step, did in acted:
            current[0] = step.name
            in_place, detail = step.check(facts, ctx)
            outcomes.append(
                changed(host, step.name, f"{did}; verified: {detail}")
                if in_place
                else failed(host, step.name, f"{did}, but still not right: {detail}")
            )
    if ctx.push_check and BUILDER in roles and not any(o.bad for o in outcomes):
        current[0] = session.step = "push"
        outcomes.extend(push_checks(session, facts, ctx))


def doctor_host(session: HostSession, roles: set[str], ctx: PrepContext) -> list[Outcome]:
    """Read-only: every check of ``roles`` on one host, each failure with the task that fixes it."""
    from . import sideload

    host = session.label
    facts = gather(session, probes_for(roles, ctx) + sideload.doctor_probes())
    outcomes = [ok(host, "ssh", "reachable; host key pinned")]
    problem = preflight(facts, roles)
    if problem:
        return [*outcomes, failed(host, "preflight", problem)]
    outcomes.append(ok(host, "arch", facts.machine))
    target = session.target.spec if not session.target.name else session.target.name
    results, warnings, refused = _check_all(host, facts, ctx, steps_for(roles))
    for step, in_place, detail in results:
        if in_place:
            outcomes.append(ok(host, step.name, detail))
        else:
            task = "prepare-builder" if BUILDER in step.roles & roles else "prepare-learner"
            outcomes.append(failed(host, step.name, detail, fix=f"inv {task} --host {target}"))
    outcomes.extend(refused)
    outcomes.extend(warnings)
    outcomes.extend(sideload.doctor_rows(host, facts.raw))  # developers' builds (dev-images)
    outcomes.sort(key=lambda o: _order(o.step))
    return outcomes


def _order(step: str) -> int:
    """Rows in the order of the steps (a step's caveat right after it)."""
    names = ["ssh", "preflight", "arch", *[s.name for s in STEPS], "push", "push-buildx"]
    base = step.removesuffix("-caveat")
    at = names.index(base) if base in names else len(names)
    return 2 * at + (base != step)


# -- the push checks -------------------------------------------------------------------------
def push_checks(session: HostSession, f: WorkerFacts, ctx: PrepContext) -> list[Outcome]:
    """FLOps' own path (buildah) on every builder; buildx too where Docker runs."""
    outcomes = [push_buildah(session, f, ctx)]
    if f.docker_running:
        outcomes.append(push_buildx(session, f, ctx))
    return outcomes


def _probe_ref(session: HostSession, ctx: PrepContext, kind: str) -> tuple[str, str]:
    repo = f"{PROBE_REPO}-{_repo_safe(session.label)}-{kind}"
    return repo, f"{int(time.time())}"


def _run_steps(output: str) -> str:
    """Each RUN step of the probe's build with the line after it, bounded: what ran."""
    lines = output.splitlines()
    seen = [
        f"{line.strip()} -> {after.strip() or '(nothing)'}"
        for line, after in zip(lines, [*lines[1:], ""], strict=True)
        if "RUN" in line
    ]
    text = "; ".join(seen) or "no RUN step in the output"
    return text if len(text) <= 400 else text[:399] + "…"


def _ran_both(output: str) -> list[str]:
    """Which of the two probe programs did not print its machine (the RUN step's output).

    buildah builds the platforms at once and its two streams share one output: a program's
    line can land inside a line of the other build (``--> 3f2a`` then ``aarch64``), so the
    machine is looked for anywhere. Nothing else in a build of ``FROM scratch`` names it."""
    return [m for m in MACHINES if m not in output]


def _verify_index(
    host: str, step: str, ctx: PrepContext, repo: str, tag: str, started: float, how: str
) -> Outcome:
    try:
        platforms = manifest_platforms(ctx.registry, repo, tag)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return failed(host, step, f"pushed, but the registry's manifest could not be read: {exc}")
    missing = [p for p in PLATFORMS if p not in platforms]
    if missing:
        return failed(host, step, f"pushed index lacks {', '.join(missing)} ({platforms})")
    seconds = time.monotonic() - started
    return ok(
        host,
        step,
        f"{how}: built (the foreign RUN step ran under QEMU) and pushed "
        f"{repo}:{tag} to {ctx.registry} in {seconds:.1f}s; the registry's "
        f"index lists {', '.join(PLATFORMS)}",
    )


def _tail(res: object) -> str:
    text = (getattr(res, "stdout", "") + getattr(res, "stderr", "")).strip().splitlines()
    return text[-1] if text else f"exit {getattr(res, 'exited', '?')}"


def push_buildah(session: HostSession, f: WorkerFacts, ctx: PrepContext) -> Outcome:
    """Build linux/amd64 + linux/arm64 with buildah as FLOps' image builder does, push it to
    the FLOps registry with FLOps' flags, read the index back from the registry."""
    host = session.label
    installed: list[str] = []
    missing = [p for p in CHECK_TOOLS if not f.installed(p)]
    if missing:
        res = session.change(
            C.install_check_tools(missing),
            f"apt-get install {' '.join(missing)} (for the push check; "
            f"recorded in {C.CHECK_TOOLS_LIST})",
            timeout=900,
            step="push",
        )
        installed = C.parse_installed(res.stdout) if not res.dry else []
    repo, tag = _probe_ref(session, ctx, "buildah")
    ref = f"{ctx.registry}/{repo}:{tag}"
    started = time.monotonic()
    checked = session.verify(
        C.buildah_push_probe(ref, PLATFORMS, UNAME_AMD64_B64, UNAME_ARM64_B64),
        f"buildah build {' '.join('--platform ' + p for p in PLATFORMS)} --manifest "
        f"{ref}-manifest, then buildah manifest push --tls-verify=false --all to {ctx.registry} "
        "(a temporary buildah storage, removed afterwards)",
        timeout=900,
    )
    again = (
        "inv prepare-builder --remove-check-tools --host "
        f"{session.target.name or session.target.spec}"
    )
    if checked is None:
        if missing:  # a change the real run makes too
            return changed(
                host,
                "push",
                f"would install {', '.join(missing)} for the check; the check itself "
                f"(build with buildah and push {ref}) is not run in a dry run",
            )
        return skipped(
            host, "push", f"not run in a dry run: it would build with buildah and push {ref}"
        )
    tools = (
        f"; installed for the check: {', '.join(installed)} (remove: {again})" if installed else ""
    )
    not_ran = _ran_both(checked.stdout)
    if not_ran:
        return failed(
            host,
            "push",
            f"buildah build printed no {', '.join(not_ran)} line: the "
            f"RUN step did not run for every platform ({_run_steps(checked.stdout)}; "
            f"last: {_tail(checked)})",
        )
    driver = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in checked.stdout.splitlines()
            if ln.startswith("storage-driver:")
        ),
        "?",
    )
    outcome = _verify_index(
        host,
        "push",
        ctx,
        repo,
        tag,
        started,
        f"buildah (FLOps' image builder path; storage {driver})",
    )
    if installed and not outcome.bad:  # the check's tools are a change of the host
        outcome = replace(outcome, status=Status.CHANGED)
    return replace(outcome, detail=outcome.detail + tools)


def push_buildx(session: HostSession, f: WorkerFacts, ctx: PrepContext) -> Outcome:
    """The same two-platform image with docker buildx and the named builder."""
    host = session.label
    repo, tag = _probe_ref(session, ctx, "buildx")
    started = time.monotonic()
    res = session.verify(
        C.buildx_push_probe(
            ctx.registry,
            f"{repo}:{tag}",
            ",".join(PLATFORMS),
            ctx.builder_name,
            builder_driver(f, ctx),
            UNAME_AMD64_B64,
            UNAME_ARM64_B64,
        ),
        f"docker buildx build --platform {','.join(PLATFORMS)} --push "
        f"{ctx.registry}/{repo}:{tag} (builder {ctx.builder_name})",
        timeout=900,
    )
    if res is None:
        return skipped(
            host,
            "push-buildx",
            f"not run in a dry run: it would build with buildx and push "
            f"{ctx.registry}/{repo}:{tag}",
        )
    not_ran = _ran_both(res.stdout)
    if not_ran:
        return failed(
            host,
            "push-buildx",
            f"buildx printed no {', '.join(not_ran)} line: the "
            f"RUN step did not run for every platform "
            f"({_tail(res)})",
        )
    return _verify_index(
        host, "push-buildx", ctx, repo, tag, started, f"buildx ({builder_driver(f, ctx)} driver)"
    )


def _repo_safe(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


def manifest_platforms(registry: str, repo: str, tag: str) -> list[str]:
    from . import httpclient  # no proxy, no redirect: the registry at that address answers

    answer = httpclient.request(
        "GET",
        f"http://{registry}/v2/{repo}/manifests/{tag}",
        headers={
            "Accept": "application/vnd.oci.image.index.v1+json,"
            "application/vnd.docker.distribution.manifest.list.v2+json"
        },
        timeout=10,
    )
    if answer.status != 200:
        raise httpclient.HttpFailure(f"the registry answered HTTP {answer.status}")
    index = json.loads(answer.body)
    return sorted(
        f"{m['platform']['os']}/{m['platform']['architecture']}"
        for m in index.get("manifests", [])
        if m.get("platform", {}).get("os") not in (None, "unknown")
    )


# -- removing what the push check installed ------------------------------------------------
def remove_check_tools(session: HostSession) -> list[Outcome]:
    """Purge the packages the push check recorded, when that removes nothing else."""
    host = session.label
    session.step = "check-tools"
    res = session.probe(C.check_tools_plan())
    listed = [ln.split()[1] for ln in res.stdout.splitlines() if ln.startswith("listed ")]
    purged = [ln.split()[1] for ln in res.stdout.splitlines() if ln.startswith("Purg ")]
    if not listed:
        return [ok(host, "check-tools", "nothing the push check installed is left")]
    others = [p for p in purged if p not in listed]
    if others:
        return [
            failed(
                host,
                "check-tools",
                f"purging {', '.join(listed)} would also remove "
                f"{', '.join(others)}, which depend on them: "
                "nothing was removed",
            )
        ]
    session.change(C.remove_check_tools(listed), f"apt-get purge {' '.join(listed)}", timeout=600)
    verb = "would remove" if session.dry else "removed"
    return [changed(host, "check-tools", f"{verb} {', '.join(listed)}")]
