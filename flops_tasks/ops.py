"""Worker preparations: check, act, verify.

Every step is a ``Step``: ``check(facts, ctx)`` says whether the host is already as wanted
(and how it looks), ``act(session, facts, ctx)`` changes only that. ``prepare_host`` gathers
the facts in one round trip, acts on the steps that differ, gathers again and verifies each
changed step with the same check. A second run finds nothing to do and says so.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from . import commands as C
from .facts import (
    WorkerFacts,
    base_probes,
    builder_probes,
    foreign_machine,
    gather,
    handler_probe,
    learner_probes,
    registry_probes,
)
from .outcome import Outcome, changed, failed, ok, unreachable
from .probe_binaries import MACHINES, UNAME_AMD64_B64, UNAME_ARM64_B64
from .ssh import HostSession, HostUnreachable, RemoteFailure

PLATFORMS = ("linux/amd64", "linux/arm64")
BUILDER, LEARNER = "builder", "learner"
PROBE_REPO = "flops-tasks/builder-probe"


def same(text: str | None, expected: str) -> bool:
    """File contents equal, ignoring trailing white space (probe output is stripped)."""
    return text is not None and text.strip() == expected.strip()


@dataclass(frozen=True)
class PrepContext:
    registry: str  # IP:PORT of the FLOps registry as workers address it
    builder_name: str = "flops-builder"
    builder_driver: str = "auto"
    learner_image: str = ""
    data_dir: str = ""
    push_check: bool = False
    publish_address: str = ""  # where the sidecar's port is published; "" = docker0's address


Check = Callable[[WorkerFacts, PrepContext], tuple[bool, str]]
Act = Callable[[HostSession, WorkerFacts, PrepContext], str]


@dataclass(frozen=True)
class Step:
    name: str
    roles: frozenset[str]
    check: Check
    act: Act
    applies: Callable[[WorkerFacts, PrepContext], bool] = lambda f, c: True


# -- QEMU user emulation ----------------------------------------------------------------
def check_qemu(f: WorkerFacts, ctx: PrepContext) -> tuple[bool, str]:
    foreign = foreign_machine(f.machine)
    enabled, flags = f.handler(foreign)
    problems = []
    if not f.installed("qemu_pkg"):
        problems.append("qemu-user-static not installed")
    if not enabled:
        problems.append(f"qemu-{foreign} handler " + ("without the F flag" if flags
                                                     else "not registered"))
    if not f.runs(foreign):
        problems.append(f"a {foreign} binary does not run")
    if problems:
        return False, "; ".join(problems)
    persist = "persistent" if f.out("binfmt_persist").strip() else "NOT persistent across reboots"
    return True, (f"qemu-user-static installed; qemu-{foreign} flags {flags} ({persist}); "
                  f"{foreign} binary prints {foreign}")


def act_qemu(s: HostSession, f: WorkerFacts, ctx: PrepContext) -> str:
    foreign = foreign_machine(f.machine)
    done = []
    if not f.installed("qemu_pkg"):
        if f.installed("qemu_binfmt_pkg") and not s.dry:
            sim = s.probe(C.cmd("apt-get", "install", "-s", "--no-install-recommends",
                                "qemu-user-static"))
            if "qemu-user-binfmt" in sim.stdout and "REMOVED" in sim.stdout:
                raise RemoteFailure("qemu-user-binfmt is installed and conflicts with "
                                    "qemu-user-static here: remove it yourself "
                                    "(apt-get remove qemu-user-binfmt), then re-run")
        s.change(C.apt_install(["qemu-user-static"]), "apt-get install qemu-user-static")
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


# -- buildx and the named builder ---------------------------------------------------------
def check_buildx(f: WorkerFacts, ctx: PrepContext) -> tuple[bool, str]:
    if not f.ok("buildx"):
        return False, "docker buildx is not installed"
    return True, f.out("buildx").strip().splitlines()[0]


def act_buildx(s: HostSession, f: WorkerFacts, ctx: PrepContext) -> str:
    s.change(C.install_buildx(), "apt-get install docker-buildx-plugin (or docker-buildx)")
    return "installed docker buildx"


def builder_driver(f: WorkerFacts, ctx: PrepContext) -> str:
    if ctx.builder_driver != "auto":
        return ctx.builder_driver
    return "docker" if f.containerd_store else "docker-container"


def buildkitd_toml(registry: str) -> str:
    return f'[registry."{registry}"]\n  http = true\n  insecure = true\n'


def check_builder(f: WorkerFacts, ctx: PrepContext) -> tuple[bool, str]:
    driver = builder_driver(f, ctx)
    if driver == "docker" and not f.containerd_store:
        return False, ("the docker driver builds multi-platform images only on the containerd "
                       "image store; use builder.driver docker-container")
    platforms = f.builder_platforms(driver)
    missing = [p for p in PLATFORMS if p not in platforms]
    if driver == "docker-container" and not same(f.file("buildkitd"), buildkitd_toml(ctx.registry)):
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
            raise RemoteFailure("the image store is not containerd: flops-tasks never switches "
                                "it (that hides existing images); set flops.builder.driver to "
                                "docker-container")
        if not f.ok("context"):
            s.change(C.docker_context_create(ctx.builder_name),
                     f"docker context create {ctx.builder_name}")
        return f"docker context {ctx.builder_name} (docker driver, containerd store)"
    s.change(C.write_file(C.BUILDKITD_TOML, buildkitd_toml(ctx.registry)),
             f"write {C.BUILDKITD_TOML} (http for {ctx.registry})")
    s.change(C.all_of(C.buildx_rm(ctx.builder_name),
                      C.buildx_create_container(ctx.builder_name, C.BUILDKITD_TOML,
                                                ",".join(PLATFORMS))),
             f"docker buildx create --name {ctx.builder_name} --driver docker-container",
             timeout=600)
    return f"builder {ctx.builder_name} (docker-container driver)"


# -- registry trust ---------------------------------------------------------------------
def check_trust_docker(f: WorkerFacts, ctx: PrepContext) -> tuple[bool, str]:
    """Trusted now (docker info) and after a restart (daemon.json)."""
    try:
        current = f.file("daemon_json")
        in_file = current is not None and json.loads(
            merged_daemon_json(current, ctx.registry)) == json.loads(current)
    except RemoteFailure as exc:
        return False, str(exc)
    live = f.docker_trusts(ctx.registry)
    if in_file and live:
        return True, f"docker trusts {ctx.registry} (plain HTTP; in {C.DAEMON_JSON})"
    if not in_file:
        return False, f"{C.DAEMON_JSON} does not list {ctx.registry} in insecure-registries"
    return False, f"dockerd has not loaded {ctx.registry} from {C.DAEMON_JSON}"


def merged_daemon_json(text: str | None, registry: str) -> str:
    """daemon.json with ``registry`` in insecure-registries; every other key kept."""
    try:
        data = json.loads(text) if text and text.strip() else {}
    except ValueError as exc:
        raise RemoteFailure(f"{C.DAEMON_JSON} is not valid JSON ({exc}): fix it by hand; "
                            "nothing was changed") from None
    if not isinstance(data, dict):
        raise RemoteFailure(f"{C.DAEMON_JSON} is not a JSON object: fix it by hand")
    registries = data.get("insecure-registries") or []
    if registry not in registries:
        data["insecure-registries"] = [*registries, registry]
    return json.dumps(data, indent=2) + "\n"


def act_trust_docker(s: HostSession, f: WorkerFacts, ctx: PrepContext) -> str:
    current = f.file("daemon_json")
    wanted = merged_daemon_json(current, ctx.registry)
    did = []
    if current is None or json.loads(wanted) != json.loads(current or "{}"):
        s.change(C.write_file(C.DAEMON_JSON, wanted), f"add {ctx.registry} to {C.DAEMON_JSON} "
                                                      "insecure-registries")
        did.append(f"{C.DAEMON_JSON} merged")
    s.change(C.all_of(C.docker_reload(), C.wait_docker_trusts(ctx.registry)),
             "reload dockerd (SIGHUP: running containers keep running)")
    return ", ".join([*did, "dockerd reloaded"])


def hosts_toml(registry: str) -> str:
    return (f'server = "http://{registry}"\n\n[host."http://{registry}"]\n'
            '  capabilities = ["pull", "resolve", "push"]\n')


CRI_REGISTRY = '[plugins."io.containerd.grpc.v1.cri".registry]'


def containerd_config_with_path(text: str) -> str | None:
    """The config with config_path set for the CRI registry, or None when already set."""
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RemoteFailure(f"{C.CONTAINERD_CONFIG} is not valid TOML ({exc})") from None
    cri = data.get("plugins", {}).get("io.containerd.grpc.v1.cri", {})
    if cri.get("registry", {}).get("config_path"):
        return None
    line = f'  config_path = "{C.CERTS_D}"'
    if CRI_REGISTRY in text:
        new = text.replace(CRI_REGISTRY, f"{CRI_REGISTRY}\n{line}", 1)
    else:
        new = text.rstrip("\n") + f"\n\n{CRI_REGISTRY}\n{line}\n"
    tomllib.loads(new)
    return new


def containerd_present(f: WorkerFacts, ctx: PrepContext) -> bool:
    return f.file("containerd_config") is not None


def check_trust_containerd(f: WorkerFacts, ctx: PrepContext) -> tuple[bool, str]:
    if not same(f.file("containerd_hosts"), hosts_toml(ctx.registry)):
        return False, f"{C.CERTS_D}/{ctx.registry}/hosts.toml missing or different"
    config = f.file("containerd_config") or ""
    if containerd_config_with_path(config) is not None:
        return False, f"{C.CONTAINERD_CONFIG} has no config_path for {C.CERTS_D}"
    return True, f"containerd hosts.toml for {ctx.registry}; config_path set"


def act_trust_containerd(s: HostSession, f: WorkerFacts, ctx: PrepContext) -> str:
    path = f"{C.CERTS_D}/{ctx.registry}/hosts.toml"
    if not same(f.file("containerd_hosts"), hosts_toml(ctx.registry)):
        s.change(C.write_file(path, hosts_toml(ctx.registry)), f"write {path}")
    new = containerd_config_with_path(f.file("containerd_config") or "")
    if new is None:
        return f"wrote {path}"
    s.change(C.write_file(C.CONTAINERD_CONFIG, new), f"set config_path in {C.CONTAINERD_CONFIG}")
    if f.systemd:
        s.change(C.cmd("systemctl", "restart", "containerd"), "systemctl restart containerd")
        return f"wrote {path}; config_path set; containerd restarted"
    return f"wrote {path}; config_path set (applies when containerd restarts)"


def registries_conf(registry: str) -> str:
    return f'[[registry]]\nlocation = "{registry}"\ninsecure = true\n'


def check_trust_buildah(f: WorkerFacts, ctx: PrepContext) -> tuple[bool, str]:
    if not same(f.file("registries_conf"), registries_conf(ctx.registry)):
        return False, "buildah does not trust the registry"
    return True, f"buildah trusts {ctx.registry}"


def act_trust_buildah(s: HostSession, f: WorkerFacts, ctx: PrepContext) -> str:
    path = f"{C.REGISTRIES_CONF_D}/50-flops-registry.conf"
    s.change(C.write_file(path, registries_conf(ctx.registry)), f"write {path}")
    return f"wrote {path}"


# -- NodeEngine -------------------------------------------------------------------------
def _nodeengine_step(addon: str, listed: str, role: str) -> Step:
    def check(f: WorkerFacts, ctx: PrepContext) -> tuple[bool, str]:
        text = (f.nodeengine or "").lower()
        active = any(listed in ln and "active" in ln and "inactive" not in ln
                     for ln in text.splitlines())
        return active, (f"NodeEngine addon {addon} active" if active
                        else f"NodeEngine addon {addon} not active")

    def act(s: HostSession, f: WorkerFacts, ctx: PrepContext) -> str:
        s.change(C.nodeengine_addon(addon, "on"), f"NodeEngine config addon {addon} on")
        if f.systemd:
            s.change(C.cmd("systemctl", "restart", "nodeengine.service"),
                     "systemctl restart nodeengine.service")
            return f"addon {addon} on; NodeEngine restarted"
        return f"addon {addon} on (restart NodeEngine to apply)"

    return Step(f"nodeengine-{addon}", frozenset({role}), check, act,
                applies=lambda f, c: f.nodeengine is not None)


# -- learner ------------------------------------------------------------------------------
def check_data(f: WorkerFacts, ctx: PrepContext) -> tuple[bool, str]:
    if ctx.data_dir:
        return (f.ok("data_dir"), f"data dir {ctx.data_dir} " +
                ("present" if f.ok("data_dir") else "missing"))
    return (f.ok("volume"), f"docker volume {C.DATA_VOLUME} " +
            ("present" if f.ok("volume") else "missing"))


def act_data(s: HostSession, f: WorkerFacts, ctx: PrepContext) -> str:
    if ctx.data_dir:
        s.change(C.cmd("mkdir", "-p", ctx.data_dir), f"mkdir -p {ctx.data_dir}")
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
        problems.append(f"{C.SIDECAR} runs {(info.get('Config') or {}).get('Image')}, "
                        f"not {ctx.learner_image}")
    host = info.get("HostConfig") or {}
    if (host.get("RestartPolicy") or {}).get("Name") != "unless-stopped":
        problems.append("restart policy is not unless-stopped")
    binds = (host.get("PortBindings") or {}).get(f"{C.SIDECAR_PORT}/tcp") or []
    on = sorted({b.get("HostIp") or "0.0.0.0" for b in binds
                 if b.get("HostPort") == str(C.SIDECAR_PORT)})
    wanted = ctx.publish_address or f.docker0
    if not on:
        problems.append(f"port {C.SIDECAR_PORT} not published")
    elif on != [wanted]:
        problems.append(f"port {C.SIDECAR_PORT} published on {', '.join(on)}, not only on "
                        f"{wanted or 'docker0'} (flops.learner.publish_address)")
    source = ctx.data_dir or C.DATA_VOLUME
    mounts = info.get("Mounts") or []
    if not any(m.get("Destination") == C.DATA_MOUNT and source in (m.get("Name"), m.get("Source"))
               for m in mounts):
        problems.append(f"{source} not mounted at {C.DATA_MOUNT}")
    return problems


def check_sidecar(f: WorkerFacts, ctx: PrepContext) -> tuple[bool, str]:
    problems = sidecar_problems(f, ctx)
    if not problems and not f.ok("sidecar_tcp"):
        problems.append(f"TCP {C.SIDECAR_PORT} does not answer on docker0 "
                        f"({f.docker0 or 'no docker0'})")
    if problems:
        return False, "; ".join(problems)
    detail = f"{C.SIDECAR} running, TCP {C.SIDECAR_PORT} answers on docker0 {f.docker0}"
    if f.docker0 != "172.17.0.1":
        detail += f" (warning: learners dial 172.17.0.1, docker0 is {f.docker0})"
    return True, detail


def act_sidecar(s: HostSession, f: WorkerFacts, ctx: PrepContext) -> str:
    source = ctx.data_dir or C.DATA_VOLUME
    verb = "replaced" if f.sidecar is not None else "started"
    address = ctx.publish_address or f.docker0
    if not address:
        raise RemoteFailure("docker0 has no IPv4 address to publish the sidecar on: set "
                            "flops.learner.publish_address")
    s.change(C.all_of(C.sidecar_run(ctx.learner_image, source, address),
                      C.wait_tcp_docker0(C.SIDECAR_PORT, seconds=30)),
             f"docker run -d --name {C.SIDECAR} -p {C.publish_spec(address, C.SIDECAR_PORT)} "
             f"--restart unless-stopped -v {source}:{C.DATA_MOUNT} {ctx.learner_image}",
             timeout=900)
    return f"{verb} {C.SIDECAR} ({ctx.learner_image})"


STEPS: tuple[Step, ...] = (
    Step("qemu", frozenset({BUILDER}), check_qemu, act_qemu),
    Step("buildx", frozenset({BUILDER}), check_buildx, act_buildx),
    Step("trust-docker", frozenset({BUILDER, LEARNER}), check_trust_docker, act_trust_docker),
    Step("builder", frozenset({BUILDER}), check_builder, act_builder),
    Step("trust-containerd", frozenset({BUILDER, LEARNER}), check_trust_containerd,
         act_trust_containerd, applies=containerd_present),
    Step("trust-buildah", frozenset({BUILDER, LEARNER}), check_trust_buildah, act_trust_buildah,
         applies=lambda f, c: f.ok("buildah")),
    _nodeengine_step("imageBuilder", "image-builder", BUILDER),
    Step("data", frozenset({LEARNER}), check_data, act_data),
    Step("sidecar", frozenset({LEARNER}), check_sidecar, act_sidecar),
    _nodeengine_step("FLOps", "flops", LEARNER),
)


def probes_for(roles: set[str], ctx: PrepContext) -> list[tuple[str, str]]:
    probes = base_probes() + registry_probes(ctx.registry)
    if BUILDER in roles:
        probes += builder_probes(ctx.builder_name)
    if LEARNER in roles:
        probes += learner_probes()
        if ctx.data_dir:
            probes.append(("data_dir", C.cmd("test", "-d", ctx.data_dir)))
    return probes


def preflight(f: WorkerFacts, roles: set[str]) -> str | None:
    """Why this host cannot be prepared, or None."""
    if f.machine not in MACHINES:
        return f"unsupported architecture {f.machine or '?'}: amd64 and arm64 are supported"
    if not f.has_apt:
        return (f"unsupported package manager on {f.os or 'this OS'}: only apt "
                "(Debian, Ubuntu) is supported")
    if not f.docker_running:
        return f"the Docker engine is not running ({f.docker_error}): start it, e.g. " \
               "systemctl start docker"
    return None


def prepare_host(session: HostSession, roles: set[str], ctx: PrepContext) -> list[Outcome]:
    """Converge one host to the wanted state of ``roles``; one Outcome per step.

    A failure or a lost connection part-way keeps the outcomes reported so far.
    """
    outcomes: list[Outcome] = []
    current = ["preflight"]
    try:
        _converge(session, roles, ctx, outcomes, current)
    except RemoteFailure as exc:
        outcomes.append(failed(session.label, current[0], str(exc)))
    except HostUnreachable as exc:
        outcomes.append(unreachable(session.label, current[0], str(exc)))
    outcomes.sort(key=lambda o: _order(o.step))
    return outcomes


def _converge(session: HostSession, roles: set[str], ctx: PrepContext, outcomes: list[Outcome],
              current: list[str]) -> None:
    host = session.label
    probes = probes_for(roles, ctx)
    facts = gather(session, probes)
    problem = preflight(facts, roles)
    if problem:
        outcomes.append(failed(host, "preflight", problem))
        return
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[facts.machine]
    outcomes.append(ok(host, "preflight", f"{facts.os} {arch}, docker "
                                          f"{facts.docker_info.get('ServerVersion')}"
                                          + (", root" if session.is_root() else ", sudo")))
    steps = [st for st in STEPS if st.roles & roles and st.applies(facts, ctx)]
    acted: list[tuple[Step, str]] = []
    for step in steps:
        current[0] = step.name
        in_place, detail = step.check(facts, ctx)
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
            in_place, detail = step.check(facts, ctx)
            outcomes.append(changed(host, step.name, f"{did}; verified: {detail}") if in_place
                            else failed(host, step.name, f"{did}, but still not right: {detail}"))
    if ctx.push_check and BUILDER in roles and not session.dry and not any(o.bad for o in outcomes):
        current[0] = "push"
        outcomes.append(push_check(session, facts, ctx))


def doctor_host(session: HostSession, roles: set[str], ctx: PrepContext) -> list[Outcome]:
    """Read-only: every check of ``roles`` on one host, each failure with the task that fixes it."""
    host = session.label
    facts = gather(session, probes_for(roles, ctx))
    outcomes = [ok(host, "ssh", "reachable; host key pinned")]
    problem = preflight(facts, roles)
    if problem:
        return [*outcomes, failed(host, "preflight", problem)]
    outcomes.append(ok(host, "arch", facts.machine))
    target = session.target.spec if not session.target.name else session.target.name
    for step in STEPS:
        if not step.roles & roles or not step.applies(facts, ctx):
            continue
        in_place, detail = step.check(facts, ctx)
        if in_place:
            outcomes.append(ok(host, step.name, detail))
        else:
            task = "prepare-builder" if BUILDER in step.roles & roles else "prepare-learner"
            outcomes.append(failed(host, step.name, f"{detail}; fix: inv {task} --host {target}"))
    return outcomes


def _order(step: str) -> int:
    names = ["preflight", *[s.name for s in STEPS], "push"]
    return names.index(step) if step in names else len(names)


def push_check(session: HostSession, f: WorkerFacts, ctx: PrepContext) -> Outcome:
    """Build a two-platform image on the worker (arm64 code runs under QEMU) and push it."""
    host = session.label
    tag = f"{int(time.time())}"
    repo = f"{PROBE_REPO}-{_repo_safe(host)}"
    started = time.monotonic()
    res = session.probe(C.buildx_push_probe(
        ctx.registry, f"{repo}:{tag}", ",".join(PLATFORMS), ctx.builder_name,
        builder_driver(f, ctx), UNAME_AMD64_B64, UNAME_ARM64_B64), timeout=900)
    if not res.ok:
        tail = (res.stdout + res.stderr).strip().splitlines()[-1:] or [f"exit {res.exited}"]
        return failed(host, "push", f"multi-platform push to {ctx.registry} failed: {tail[0]}")
    try:
        platforms = manifest_platforms(ctx.registry, repo, tag)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return failed(host, "push", f"pushed, but the registry's manifest could not be read: {exc}")
    missing = [p for p in PLATFORMS if p not in platforms]
    if missing:
        return failed(host, "push", f"pushed index lacks {', '.join(missing)} ({platforms})")
    seconds = time.monotonic() - started
    return ok(host, "push", f"built (arm64 step ran under QEMU) and pushed {repo}:{tag} in "
                            f"{seconds:.1f}s; index lists {', '.join(PLATFORMS)}")


def _repo_safe(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


def manifest_platforms(registry: str, repo: str, tag: str) -> list[str]:
    req = urllib.request.Request(
        f"http://{registry}/v2/{repo}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.index.v1+json,"
                           "application/vnd.docker.distribution.manifest.list.v2+json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        index = json.load(resp)
    return sorted(f"{m['platform']['os']}/{m['platform']['architecture']}"
                  for m in index.get("manifests", [])
                  if m.get("platform", {}).get("os") not in (None, "unknown"))
