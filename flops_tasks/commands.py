"""Every remote command string of flops-tasks is built here, from argv lists, with quoting.

Builders are pure: they take values and return a shell string in which every value is
quoted by ``shlex``. Nothing else in the package writes a command line by hand.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence

PROBE_MARK = "@@flops-probe"


def q(value: object) -> str:
    """Quote one value for a POSIX shell."""
    return shlex.quote(str(value))


def cmd(*argv: object) -> str:
    """One command from its argv, every element quoted."""
    return shlex.join(str(a) for a in argv)


def all_of(*commands: str) -> str:
    """Run commands in order, stop at the first failure."""
    return " && ".join(f"{{ {c}; }}" for c in commands if c)


def any_of(*commands: str) -> str:
    return " || ".join(f"{{ {c}; }}" for c in commands if c)


def quiet(command: str) -> str:
    return f"{{ {command}; }} >/dev/null 2>&1"




def sudo(command: str, prompt: str | None) -> str:
    """Run a built command as root: ``sudo -n`` without a password, else ``sudo -S``."""
    if prompt is None:
        return cmd("sudo", "-n", "-H", "--", "sh", "-c", command)
    return cmd("sudo", "-S", "-p", prompt, "-H", "--", "sh", "-c", command)


def write_file(path: str, content: str, mode: str = "0644") -> str:
    """Write ``content`` to ``path`` atomically (temp file + rename), creating its folder."""
    tmp = f"{path}.flops-tmp"
    folder = (path.rsplit("/", 1)[0] or "/") if "/" in path else "."
    return all_of(
        cmd("mkdir", "-p", folder),
        f"printf '%s' {q(content)} > {q(tmp)}",
        cmd("chmod", mode, tmp),
        cmd("mv", "-f", tmp, path),
    )


def probe_batch(probes: Sequence[tuple[str, str]]) -> str:
    """Many read-only probes in one round trip.

    Each probe's output is framed by marker lines that carry its name and exit code, so
    ``parse_probe_batch`` can split them apart. Probes run in a subshell with stdin closed.
    """
    parts = []
    for name, command in probes:
        # printf, not echo: dash's echo reads backslash escapes in the name
        parts.append(
            f"printf '%s\\n' {q(PROBE_MARK + ' ' + name)}; ( {command} ) </dev/null 2>&1; "
            f"rc=$?; printf '\\n%s %s\\n' {q(PROBE_MARK + ' rc')} \"$rc\""
        )
    return "; ".join(parts)


def parse_probe_batch(stdout: str) -> dict[str, tuple[int, str]]:
    """Split ``probe_batch`` output into ``name -> (exit code, output)``."""
    results: dict[str, tuple[int, str]] = {}
    name: str | None = None
    lines: list[str] = []
    for line in stdout.splitlines():
        if line.startswith(PROBE_MARK + " "):
            rest = line[len(PROBE_MARK) + 1:]
            if name is not None and rest.startswith("rc "):
                code = rest[3:].strip()
                results[name] = (int(code) if code.lstrip("-").isdigit() else 255,
                                 "\n".join(lines).strip())
                name, lines = None, []
                continue
            name, lines = rest, []
            continue
        if name is not None:
            lines.append(line)
    return results


def echo_args(values: Iterable[str]) -> str:
    """Print each value on its own line (used to prove quoting end to end)."""
    return cmd("printf", "%s\\n", *values)


# -- worker probes and changes -----------------------------------------------------------
# Everything below is consumed by facts.py (read-only probes) and ops/ (changes).

DAEMON_JSON = "/etc/docker/daemon.json"
CONTAINERD_CONFIG = "/etc/containerd/config.toml"
CERTS_D = "/etc/containerd/certs.d"
BUILDKITD_TOML = "/etc/buildkit/flops-buildkitd.toml"
REGISTRIES_CONF_D = "/etc/containers/registries.conf.d"
BINFMT = "/proc/sys/fs/binfmt_misc"
SIDECAR = "ml_data_server"
SIDECAR_PORT = 11027
DATA_VOLUME = "ml_data_server_volume"
DATA_MOUNT = "/ml_data_server_volume"  # upstream's DATA_VOLUME path in the sidecar


def if_else(test: str, then: str, otherwise: str) -> str:
    return f"if {test}; then {then}; else {otherwise}; fi"


def has_command(name: str) -> str:
    return cmd("command", "-v", "--", name)


def mount_binfmt() -> str:
    return if_else(cmd("test", "-e", f"{BINFMT}/status"), "true",
                   cmd("mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT))


def apt_install(packages: Sequence[str]) -> str:
    """Non-interactive install; ``apt-get update`` first so a fresh node finds the packages."""
    env = "DEBIAN_FRONTEND=noninteractive"
    return all_of(
        f"{env} {cmd('apt-get', 'update', '-qq')}",
        f"{env} {cmd('apt-get', 'install', '-y', '-qq', '--no-install-recommends', *packages)}",
    )




def run_binary_b64(data_b64: str) -> str:
    """Write a small binary to a temp file, run it, remove it (used for the arm64 probe)."""
    return (
        'f=$(mktemp /tmp/flops-probe.XXXXXX) && '
        f"printf '%s' {q(data_b64)} | base64 -d > \"$f\" && chmod 700 \"$f\" && "
        '"$f"; rc=$?; rm -f "$f"; exit $rc'
    )


def docker_reload() -> str:
    """Apply reloadable daemon.json keys (insecure-registries) without stopping containers."""
    return if_else(cmd("test", "-d", "/run/systemd/system"),
                   cmd("systemctl", "reload", "docker"),
                   'kill -HUP "$(pidof dockerd)"')






def docker_info_json() -> str:
    return cmd("docker", "info", "--format", "{{json .}}")




def buildx_create_container(name: str, config: str, platforms: str) -> str:
    return cmd("docker", "buildx", "create", "--name", name, "--driver", "docker-container",
               "--platform", platforms, "--buildkitd-config", config, "--bootstrap")


def docker_context_create(name: str) -> str:
    return cmd("docker", "context", "create", name, "--description",
               "FLOps image builder (docker driver)", "--docker",
               "host=unix:///var/run/docker.sock")


def buildx_rm(name: str) -> str:
    return any_of(cmd("docker", "buildx", "rm", "-f", name), "true")


def buildx_push_probe(registry: str, ref: str, platforms: str, builder: str, driver: str,
                      amd64_b64: str, arm64_b64: str) -> str:
    """Build a two-platform image whose RUN step executes a tiny per-arch program, and push it.

    The arm64 RUN can only succeed through QEMU on an amd64 worker (and the other way round).
    """
    dockerfile = 'FROM scratch\nARG TARGETARCH\nCOPY uname-${TARGETARCH} /uname\nRUN ["/uname"]\n'
    if driver == "docker":
        build = cmd("docker", "--context", builder, "buildx", "build")
    else:
        build = cmd("docker", "buildx", "build", "--builder", builder)
    build += " " + cmd("--progress=plain", "--provenance=false", "--platform", platforms,
                       "--push", "-t", f"{registry}/{ref}")
    return (
        "d=$(mktemp -d /tmp/flops-push.XXXXXX) && "
        f"printf '%s' {q(dockerfile)} > \"$d/Dockerfile\" && "
        f"printf '%s' {q(amd64_b64)} | base64 -d > \"$d/uname-amd64\" && "
        f"printf '%s' {q(arm64_b64)} | base64 -d > \"$d/uname-arm64\" && "
        "chmod 755 \"$d\"/uname-* && "
        f"{build} \"$d\" 2>&1; rc=$?; rm -rf \"$d\"; exit $rc"
    )


def register_binfmt(machine: str) -> str:
    """Register the QEMU handler the installed packages describe (binfmt.d or binfmt-support)."""
    conf = f"/usr/lib/binfmt.d/qemu-{machine}.conf"
    return if_else(
        cmd("test", "-d", "/run/systemd/system"),
        cmd("systemctl", "restart", "systemd-binfmt"),
        if_else(has_command("update-binfmts") + " >/dev/null",
                cmd("update-binfmts", "--enable", f"qemu-{machine}"),
                # no init system and no binfmt-support: register the binfmt.d rule directly
                f"grep -v '^#' {q(conf)} | head -n 1 > {q(BINFMT + '/register')}"),
    )


def install_buildx() -> str:
    """docker-buildx-plugin where Docker's repository is configured, docker-buildx otherwise."""
    env = "DEBIAN_FRONTEND=noninteractive"
    install = f"{env} apt-get install -y -qq --no-install-recommends"
    return all_of(
        f"{env} {cmd('apt-get', 'update', '-qq')}",
        if_else("apt-cache show docker-buildx-plugin >/dev/null 2>&1",
                f"{install} docker-buildx-plugin", f"{install} docker-buildx"),
    )


def wait_docker_trusts(registry: str, seconds: int = 15) -> str:
    """Reload is asynchronous: wait until docker info lists the registry."""
    probe = cmd("docker", "info", "--format", "{{json .RegistryConfig.IndexConfigs}}")
    needle = q(f'"{registry}"')
    return (f"i=0; until {probe} | grep -qF {needle}; do i=$((i+1)); "
            f"[ $i -ge {int(seconds) * 5} ] && exit 1; sleep 0.2; done")


def _tcp_open(port: int) -> str:
    """``bash -c`` that opens TCP ``port`` on the address in ``$a`` (passed as ``$1``, so
    whatever docker0's address holds is never read as shell code)."""
    return cmd("bash", "-c", f'exec 3<>"/dev/tcp/$1/{int(port)}"', "tcp") + ' "$a"'


def wait_tcp_docker0(port: int, seconds: int = 30) -> str:
    """Poll until TCP ``port`` answers on docker0's address (a freshly started server)."""
    return (f"a=$({docker0_address()}) && test -n \"$a\" && i=0 && "
            f"until timeout 1 {_tcp_open(port)} 2>/dev/null; do "
            f"i=$((i+1)); [ $i -ge {int(seconds) * 5} ] && exit 1; sleep 0.2; done")




def nodeengine_addon(name: str, state: str) -> str:
    return cmd("NodeEngine", "config", "addon", name, state)


def docker_volume_exists(name: str) -> str:
    return cmd("docker", "volume", "inspect", "--format", "{{.Name}}", name)


def docker_volume_create(name: str) -> str:
    return cmd("docker", "volume", "create", name)


def container_inspect(name: str) -> str:
    return cmd("docker", "container", "inspect", "--format", "{{json .}}", name)


def publish_spec(address: str, port: int) -> str:
    """``docker run -p`` for ``port`` on the host address ``address`` only."""
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port}:{port}"


def sidecar_run(image: str, mount_source: str, address: str, port: int = SIDECAR_PORT) -> str:
    return all_of(
        any_of(quiet(cmd("docker", "rm", "-f", SIDECAR)), "true"),
        cmd("docker", "run", "-d", "--name", SIDECAR, "--restart", "unless-stopped",
            "-p", publish_spec(address, port), "-v", f"{mount_source}:{DATA_MOUNT}", image),
    )


def docker0_address() -> str:
    return "ip -4 -o addr show docker0 | awk '{print $4}' | cut -d/ -f1"


def tcp_check_docker0(port: int, seconds: int = 3) -> str:
    return (f"a=$({docker0_address()}) && test -n \"$a\" && echo \"$a\" && "
            f"timeout {int(seconds)} {_tcp_open(port)}")


def volume_mountpoint(name: str) -> str:
    return cmd("docker", "volume", "inspect", "--format", "{{.Mountpoint}}", name)


def sha256_of(folder: str, names: Sequence[str]) -> str:
    """``sha256sum`` of the files that exist among ``names`` in ``folder``."""
    if not names:
        return "true"
    # "./$f": a file named "-" is a file, not stdin; sed drops the "./" again
    return f"cd {q(folder)} && for f in {' '.join(q(n) for n in names)}; do " \
           '[ -f "$f" ] && sha256sum -- "./$f" | sed "s#  \\./#  #"; done; true'


def install_file(src: str, dest: str) -> str:
    """Move an uploaded temp file into place (atomic rename within the destination folder)."""
    tmp = f"{dest}.flops-tmp"
    return all_of(cmd("cp", "--", src, tmp), cmd("chmod", "0644", tmp),
                  cmd("mv", "-f", "--", tmp, dest), cmd("rm", "-f", "--", src))


def list_images_docker() -> str:
    return cmd("docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}")


def list_images_ctr(namespace: str) -> str:
    return if_else(has_command("ctr") + " >/dev/null",
                   cmd("ctr", "-n", namespace, "images", "ls", "-q"), "true")


def remove_images_docker(refs: Sequence[str]) -> str:
    return cmd("docker", "image", "rm", "-f", *refs)


def remove_images_ctr(namespace: str, refs: Sequence[str]) -> str:
    return cmd("ctr", "-n", namespace, "images", "rm", *refs)


def cat_or_mark(path: str, mark: str) -> str:
    """The file's contents, or ``mark`` when it does not exist."""
    return if_else(cmd("test", "-f", path), cmd("cat", path), cmd("echo", mark))
