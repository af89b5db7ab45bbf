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


def probe_batch(probes: Sequence[tuple[str, str]], grouped: bool = False) -> str:
    """Many read-only probes in one round trip.

    Each probe's output is framed by marker lines that carry its name and exit code, so
    ``parse_probe_batch`` can split them apart. Probes run in a subshell with stdin closed;
    ``grouped``: in the batch's own shell (no fork per probe), for probes that never
    ``exit`` and set no variable another probe reads.
    """
    parts = []
    for name, command in probes:
        body = f"{{ {command}; }}" if grouped else f"( {command} )"
        # printf, not echo: dash's echo reads backslash escapes in the name
        parts.append(
            f"printf '%s\\n' {q(PROBE_MARK + ' ' + name)}; {body} </dev/null 2>&1; "
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
            rest = line[len(PROBE_MARK) + 1 :]
            if name is not None and rest.startswith("rc "):
                code = rest[3:].strip()
                results[name] = (
                    int(code) if code.lstrip("-").isdigit() else 255,
                    "\n".join(lines).strip(),
                )
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
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
CERTS_D = "/etc/containerd/certs.d"
BUILDKITD_TOML = "/etc/buildkit/flops-buildkitd.toml"
REGISTRIES_CONF_D = "/etc/containers/registries.conf.d"
REGISTRIES_CONF = f"{REGISTRIES_CONF_D}/50-flops-registry.conf"
STATE_DIR = "/var/lib/flops-tasks"
# packages the push check installed (one per line), so they can be removed again
CHECK_TOOLS_LIST = f"{STATE_DIR}/check-tools.list"
BINFMT = "/proc/sys/fs/binfmt_misc"
SIDECAR = "ml_data_server"
SIDECAR_PORT = 11027
DATA_VOLUME = "ml_data_server_volume"
DATA_MOUNT = "/ml_data_server_volume"  # upstream's DATA_VOLUME path in the sidecar


def if_else(test: str, then: str, otherwise: str) -> str:
    return f"if {test}; then {then}; else {otherwise}; fi"


def has_command(name: str) -> str:
    return cmd("command", "-v", "--", name)


def hosts_toml_path(registry: str) -> str:
    """containerd's hosts file of ``registry`` (``host:port``, IPv6 hosts in brackets)."""
    return f"{CERTS_D}/{registry}/hosts.toml"


def remove_registry_hosts(registry: str) -> str:
    """Remove containerd's hosts file of a former registry, and its folder when empty."""
    path = hosts_toml_path(registry)
    return all_of(
        cmd("rm", "-f", "--", path),
        cmd("rmdir", "--ignore-fail-on-non-empty", "--", path.rsplit("/", 1)[0]),
    )


def binfmt_supported() -> str:
    """Exit 0 when the kernel can do binfmt_misc: mounted, built in, or a loadable module."""
    return any_of(
        cmd("test", "-e", f"{BINFMT}/status"),
        cmd("grep", "-qw", "binfmt_misc", "/proc/filesystems"),
        cmd("modprobe", "-nq", "binfmt_misc") + " 2>/dev/null",
    )


def dpkg_status(packages: Sequence[str]) -> str:
    """``PACKAGE WANT OK STATUS [VERSION]`` per line for the packages dpkg knows (the others:
    nothing)."""
    return (
        cmd("dpkg-query", "-W", "-f", "${Package} ${Status} ${Version}\n", "--", *packages)
        + " 2>/dev/null"
    )


def mount_binfmt() -> str:
    return if_else(
        cmd("test", "-e", f"{BINFMT}/status"),
        "true",
        cmd("mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT),
    )


APT_LISTS = "/var/lib/apt/lists"
APT_FRESH_MINUTES = 60


def apt_install(packages: Sequence[str]) -> str:
    """Non-interactive install in one transaction. ``apt-get update`` first, unless the
    package lists were updated in the last ``APT_FRESH_MINUTES`` (then only when the install
    fails with them, say a package they do not know)."""
    env = "DEBIAN_FRONTEND=noninteractive"
    update = f"{env} {cmd('apt-get', 'update', '-qq')}"
    install = f"{env} " + cmd(
        "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages
    )
    fresh = (
        f"find {q(APT_LISTS)} -maxdepth 1 -name '*Release' -mmin -{APT_FRESH_MINUTES} "
        "2>/dev/null | grep -q ."
    )
    return if_else(fresh, any_of(install, all_of(update, install)), all_of(update, install))


def run_binary_b64(data_b64: str) -> str:
    """Write a small binary to a temp file, run it, remove it (used for the arm64 probe)."""
    return (
        "f=$(mktemp /tmp/flops-probe.XXXXXX) && "
        f'printf \'%s\' {q(data_b64)} | base64 -d > "$f" && chmod 700 "$f" && '
        '"$f"; rc=$?; rm -f "$f"; exit $rc'
    )


def docker_reload() -> str:
    """Apply reloadable daemon.json keys (insecure-registries) without stopping containers."""
    return if_else(
        cmd("test", "-d", "/run/systemd/system"),
        cmd("systemctl", "reload", "docker"),
        'kill -HUP "$(pidof dockerd)"',
    )


def docker_info_json() -> str:
    return cmd("docker", "info", "--format", "{{json .}}")


# -- cheap reads for the no-change check (facts.quick_probes says what each still proves) --
DOCKER_SOCKET = "/var/run/docker.sock"
API_MARK = "@@flops-api"
# the docker CLI's config folder, as the CLI finds it (a shell expression, not quoted)
DOCKER_CONFIG_DIR = '"${DOCKER_CONFIG:-$HOME/.docker}"'
# where the docker CLI looks for plugins besides DOCKER_CONFIG_DIR/cli-plugins
# (docker/cli cli-plugins/manager/manager_unix.go, defaultSystemPluginDirs)
CLI_PLUGIN_DIRS = (
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
)

# GET each path (argv after the socket) over the engine's unix socket, HTTP/1.0, one process:
# per path a line "API_MARK STATUS PATH", then the body; STATUS 0 when nothing answered. An
# argument "tcp:ADDRESS:PORT" instead opens that TCP port (STATUS 200: it answered).
# Plain perl (perl-base is Essential on Debian and Ubuntu), no module: loading Socket costs
# more than the reads. Linux's values: AF_UNIX 1, AF_INET 2, SOCK_STREAM 1 (amd64, arm64).
_ENGINE_GET_PERL = r"""my $m = '@@flops-api'; my $s = shift;
$SIG{ALRM} = sub { print "\n$m 0 timeout\n"; exit 1 }; alarm 10;
for my $p (@ARGV) {
  my $c;
  if ($p =~ /^tcp:([0-9.]+):(\d+)$/) {
    my $ok = socket($c, 2, 1, 0) && eval {
      local $SIG{ALRM} = sub { die "timeout\n" }; alarm 2;
      my $r = connect($c, pack("S n C4 x8", 2, $2, split(/\./, $1))); alarm 10; $r };
    print "$m ", ($ok ? 200 : 0), " $p\n", ($ok ? "" : "$!"), "\n"; close($c) if $c; next }
  unless (socket($c, 1, 1, 0) && connect($c, pack("S Z108", 1, $s))) {
    print "$m 0 $p\nCannot connect to the Docker daemon at unix://$s: $!\n"; next }
  syswrite($c, "GET $p HTTP/1.0\r\nHost: docker\r\n\r\n");
  my $r = do { local $/; <$c> }; close($c); $r = "" unless defined $r;
  my ($h, $b) = split(/\r\n\r\n/, $r, 2);
  my ($code) = $h =~ m{^HTTP/\S+ (\d{3})};
  print "$m ", (defined $code ? $code : 0), " $p\n", (defined $b ? $b : ""), "\n";
}"""


def volume_path(name: str) -> str:
    from urllib.parse import quote

    return f"/volumes/{quote(name, safe='')}"


def container_path(name: str) -> str:
    from urllib.parse import quote

    return f"/containers/{quote(name, safe='')}/json"


def engine_reads(
    volumes: Sequence[str] = (), containers: Sequence[str] = (), tcp_port: int | None = None
) -> str:
    """The engine's ``/info``, then each volume and container, in one process; with
    ``tcp_port``: docker0's address (section ``docker0``) and whether that port answers on
    it (section ``tcp:ADDRESS:PORT``, as ``tcp_check_docker0``).

    Over the engine's socket (``/var/run/docker.sock``) with perl where the docker CLI would
    talk to that socket too: no ``DOCKER_HOST``/``DOCKER_CONTEXT`` and no ``currentContext``
    in the CLI's config. Otherwise (or without perl) the docker CLI answers, one call per
    read, in the same format (``parse_engine_reads``). The bodies are the engine's JSON, as
    ``docker info``/``inspect --format '{{json .}}'`` print it.
    """
    paths = ["/info", *(volume_path(v) for v in volumes), *(container_path(c) for c in containers)]
    fallback = [(paths[0], docker_info_json(), "0")]
    fallback += [
        (p, cmd("docker", "volume", "inspect", "--format", "{{json .}}", v), "404")
        for p, v in zip(paths[1:], volumes, strict=False)
    ]
    fallback += [
        (p, cmd("docker", "container", "inspect", "--format", "{{json .}}", c), "404")
        for p, c in zip(paths[1 + len(volumes) :], containers, strict=True)
    ]
    cli = "; ".join(
        f"o=$({command} 2>&1) && s=200 || s={missing}; "
        f'printf \'%s %s %s\\n%s\\n\' {q(API_MARK)} "$s" {q(path)} "$o"'
        for path, command, missing in fallback
    )
    tcp = extra = address = ""
    if tcp_port is not None:
        # docker0's address with one `ip` call and shell builtins
        address = (
            'a=""; p=""; for w in $(ip -4 -o addr show docker0 2>/dev/null); do '
            '[ -z "$a" ] && [ "$p" = inet ] && a=${w%/*}; p=$w; done; '
            f"printf '%s 200 docker0\\n%s\\n' {q(API_MARK)} \"$a\"; "
        )
        extra = f' ${{a:+"tcp:$a:{int(tcp_port)}"}}'
        tcp = (
            f'; if [ -n "$a" ] && timeout 2 {_tcp_open(int(tcp_port))} 2>/dev/null; '
            f"then s=200; else s=0; fi; "
            f'printf \'%s %s %s\\n\\n\' {q(API_MARK)} "$s" "tcp:$a:{int(tcp_port)}"'
        )
    config = f"{DOCKER_CONFIG_DIR}/config.json"
    same_engine = (
        f'[ -z "${{DOCKER_HOST:-}}${{DOCKER_CONTEXT:-}}" ] && '
        f"{{ [ ! -e {config} ] || ! grep -q '\"currentContext\"' {config}; }} && "
        f"{has_command('perl')} >/dev/null"
    )
    return address + if_else(
        same_engine, cmd("perl", "-e", _ENGINE_GET_PERL, DOCKER_SOCKET, *paths) + extra, cli + tcp
    )


def parse_engine_reads(stdout: str) -> dict[str, tuple[int, str]]:
    """``engine_reads`` output as ``path -> (HTTP status, body)``; 0: nothing answered."""
    found: dict[str, tuple[int, str]] = {}
    path: str | None = None
    status, lines = 0, list[str]()
    for line in stdout.splitlines() + [f"{API_MARK} 0 "]:
        if line.startswith(API_MARK + " "):
            if path is not None:
                found[path] = (status, "\n".join(lines).strip())
            code, _, rest = line[len(API_MARK) + 1 :].partition(" ")
            path, status, lines = (rest or None), int(code) if code.isdigit() else 0, []
            continue
        if path is not None:
            lines.append(line)
    return found


def docker_config_file(*parts: str) -> str:
    """A file under the docker CLI's config folder, as a shell word (the folder expanded)."""
    return DOCKER_CONFIG_DIR + "/" + "/".join(q(p) for p in parts)


def cat_docker_config(*parts: str, mark: str) -> str:
    path = docker_config_file(*parts)
    return if_else(f"test -f {path}", f"cat {path}", cmd("echo", mark))


def find_cli_plugin(name: str) -> str:
    """The path of the docker CLI plugin ``name`` where the CLI would find it; status 1 if
    none (no ``exit``: it may run in the batch's own shell)."""
    dirs = " ".join([f"{DOCKER_CONFIG_DIR}/cli-plugins", *(q(d) for d in CLI_PLUGIN_DIRS)])
    return (
        f'x=""; for d in {dirs}; do if [ -z "$x" ] && [ -x "$d"/{q(name)} ] && '
        f'[ -f "$d"/{q(name)} ]; then x="$d"/{q(name)}; fi; done; '
        '[ -n "$x" ] && echo "$x"'
    )


def binfmt_rules() -> str:
    """The rules that register QEMU's handlers again at boot (systemd-binfmt's binfmt.d,
    binfmt-support's binfmts), one path a line; no program started."""
    return (
        "for f in /usr/lib/binfmt.d/qemu-*.conf /usr/share/binfmts/qemu-*; do "
        'if [ -e "$f" ]; then echo "$f"; fi; done; true'
    )


def buildx_create_container(name: str, config: str, platforms: str) -> str:
    return cmd(
        "docker",
        "buildx",
        "create",
        "--name",
        name,
        "--driver",
        "docker-container",
        "--platform",
        platforms,
        "--buildkitd-config",
        config,
        "--bootstrap",
    )


def docker_context_create(name: str) -> str:
    return cmd(
        "docker",
        "context",
        "create",
        name,
        "--description",
        "FLOps image builder (docker driver)",
        "--docker",
        "host=unix:///var/run/docker.sock",
    )


def buildx_rm(name: str) -> str:
    return any_of(cmd("docker", "buildx", "rm", "-f", name), "true")


# a two-platform image whose RUN step executes a tiny per-arch program (probe_binaries)
PROBE_DOCKERFILE = 'FROM scratch\nARG TARGETARCH\nCOPY uname-${TARGETARCH} /uname\nRUN ["/uname"]\n'


def buildx_push_probe(
    registry: str,
    ref: str,
    platforms: str,
    builder: str,
    driver: str,
    amd64_b64: str,
    arm64_b64: str,
) -> str:
    """Build a two-platform image whose RUN step executes a tiny per-arch program, and push it.

    The arm64 RUN can only succeed through QEMU on an amd64 worker (and the other way round).
    """
    dockerfile = PROBE_DOCKERFILE
    if driver == "docker":
        build = cmd("docker", "--context", builder, "buildx", "build")
    else:
        build = cmd("docker", "buildx", "build", "--builder", builder)
    # --no-cache: a cached RUN step prints nothing, and proves nothing about QEMU today
    build += " " + cmd(
        "--progress=plain",
        "--provenance=false",
        "--no-cache",
        "--platform",
        platforms,
        "--push",
        "-t",
        f"{registry}/{ref}",
    )
    # the docker driver also keeps the image in the engine's store: remove it again
    drop = (
        quiet(cmd("docker", "image", "rm", "-f", f"{registry}/{ref}")) + "; "
        if driver == "docker"
        else ""
    )
    return (
        "d=$(mktemp -d /tmp/flops-push.XXXXXX) && "
        f"printf '%s' {q(dockerfile)} > \"$d/Dockerfile\" && "
        f"printf '%s' {q(amd64_b64)} | base64 -d > \"$d/uname-amd64\" && "
        f"printf '%s' {q(arm64_b64)} | base64 -d > \"$d/uname-arm64\" && "
        'chmod 755 "$d"/uname-* && '
        f'{build} "$d" 2>&1; rc=$?; {drop}rm -rf "$d"; exit $rc'
    )


def register_binfmt(machine: str) -> str:
    """Register the QEMU handler the installed packages describe (binfmt.d or binfmt-support)."""
    conf = f"/usr/lib/binfmt.d/qemu-{machine}.conf"
    return if_else(
        cmd("test", "-d", "/run/systemd/system"),
        cmd("systemctl", "restart", "systemd-binfmt"),
        if_else(
            has_command("update-binfmts") + " >/dev/null",
            cmd("update-binfmts", "--enable", f"qemu-{machine}"),
            # no init system and no binfmt-support: register the binfmt.d rule directly
            f"grep -v '^#' {q(conf)} | head -n 1 > {q(BINFMT + '/register')}",
        ),
    )


def wait_docker_trusts(registry: str, seconds: int = 15) -> str:
    """Reload is asynchronous: wait until docker info lists the registry."""
    probe = cmd("docker", "info", "--format", "{{json .RegistryConfig.IndexConfigs}}")
    needle = q(f'"{registry}"')
    return (
        f"i=0; until {probe} | grep -qF {needle}; do i=$((i+1)); "
        f"[ $i -ge {int(seconds) * 5} ] && exit 1; sleep 0.2; done"
    )


def _tcp_open(port: int) -> str:
    """``bash -c`` that opens TCP ``port`` on the address in ``$a`` (passed as ``$1``, so
    whatever docker0's address holds is never read as shell code)."""
    return cmd("bash", "-c", f'exec 3<>"/dev/tcp/$1/{int(port)}"', "tcp") + ' "$a"'


def wait_tcp_docker0(port: int, seconds: int = 30) -> str:
    """Poll until TCP ``port`` answers on docker0's address (a freshly started server)."""
    return (
        f'a=$({docker0_address()}) && test -n "$a" && i=0 && '
        f"until timeout 1 {_tcp_open(port)} 2>/dev/null; do "
        f"i=$((i+1)); [ $i -ge {int(seconds) * 5} ] && exit 1; sleep 0.2; done"
    )


def nodeengine_addon(name: str, state: str) -> str:
    return cmd("NodeEngine", "config", "addon", name, state)


def nodeengine_addon_list() -> str:
    return cmd("NodeEngine", "config", "addon")


def _wait(test: str, seconds: int) -> str:
    """Poll ``test`` every 0.1 s; exit 1 after ``seconds``."""
    return (
        f"i=0; until {test}; do i=$((i+1)); [ $i -ge {int(seconds) * 10} ] && exit 1; "
        "sleep 0.1; done"
    )


def relaunch(process: str, ready: str, seconds: int = 30) -> str:
    """Restart a daemon that no init system manages: SIGTERM, wait until it is gone, start it
    again with its own argv (from /proc) and the same log file, wait until ``ready`` answers.

    For containerd this keeps containers running: their shims are separate processes.
    """
    return (
        f"p=$(pidof -s {q(process)}) || {{ echo {q(process + ' is not running')} >&2; exit 1; }}; "
        "a=$(mktemp) && tr '\\0' '\\n' < \"/proc/$p/cmdline\" > \"$a\" && set -- && "
        'while IFS= read -r x; do set -- "$@" "$x"; done < "$a"; rm -f "$a"; '
        'o=$(readlink "/proc/$p/fd/1"); [ -f "$o" ] || o=/dev/null; '
        # gone, or exited and not yet reaped by its parent (a zombie)
        'kill -TERM "$p"; '
        + _wait(
            '{ ! kill -0 "$p" 2>/dev/null || grep -q '
            '"^State:[[:space:]]*Z" "/proc/$p/status" 2>/dev/null; }',
            seconds,
        )
        + "; "
        'setsid nohup "$@" </dev/null >>"$o" 2>&1 & '
        + _wait(f"{{ {ready}; }} >/dev/null 2>&1", seconds)
    )


def restart_containerd(seconds: int = 30) -> str:
    """Restart containerd so that running containers keep running, then wait until it (and
    dockerd, which reconnects by itself) answers.

    systemd: ``systemctl restart containerd`` (the unit has ``KillMode=process``: the shims
    survive). Elsewhere: ``relaunch``.
    """
    ready = cmd("ctr", "version")
    docker_back = if_else(
        has_command("dockerd") + " >/dev/null", _wait(quiet(cmd("docker", "info")), 60), "true"
    )
    return all_of(
        if_else(
            cmd("test", "-d", "/run/systemd/system"),
            cmd("systemctl", "restart", "containerd"),
            f"( {relaunch('containerd', ready, seconds)} )",
        ),
        f"( {_wait(quiet(ready), seconds)} )",
        f"( {docker_back} )",
    )


def running_tasks() -> str:
    """``namespace/task`` of every running containerd task, sorted, one per line."""
    return (
        'for n in $(ctr namespaces ls -q); do ctr -n "$n" tasks ls 2>/dev/null | '
        'awk -v n="$n" \'NR > 1 && $3 == "RUNNING" {print n "/" $1}\'; done | sort'
    )


def apply_containerd_config(content: str) -> str:
    """Write containerd's config and restart it, proving that every task that ran before
    still runs after. If containerd does not come back, put the old file back and restart
    again (exit 1): a node never stays on a config containerd refused."""
    cfg = CONTAINERD_CONFIG
    bak = f"{cfg}.flops-bak"
    restore = if_else(cmd("test", "-e", bak), cmd("mv", "-f", bak, cfg), cmd("rm", "-f", cfg))
    return (
        f't=$(mktemp) && {{ {running_tasks()}; }} > "$t" && '
        f"{{ if [ -e {q(cfg)} ]; then cp -p {q(cfg)} {q(bak)}; else rm -f {q(bak)}; fi; }} && "
        f"{{ {write_file(cfg, content)}; }} && "
        f"if {{ {restart_containerd()}; }}; then rm -f {q(bak)}; else "
        f'{restore}; {{ {restart_containerd()}; }} >/dev/null 2>&1; rm -f "$t"; '
        f"echo {q('containerd did not come back with the new config: old config restored')} >&2; "
        "exit 1; fi; "
        f'gone=$({{ {running_tasks()}; }} | comm -23 "$t" -); '
        'echo "containers running before and after: $(wc -l < "$t")"; rm -f "$t"; '
        '[ -z "$gone" ] || { echo "stopped by the restart: $gone" >&2; exit 1; }'
    )


def restart_nodeengine() -> str:
    """Apply NodeEngine's config: restart it where it runs (a stopped one reads it at start)."""
    return if_else(
        cmd("test", "-d", "/run/systemd/system"),
        cmd("systemctl", "try-restart", "nodeengine.service"),
        if_else(
            cmd("pidof", "NodeEngine") + " >/dev/null",
            f"( {relaunch('NodeEngine', cmd('pidof', 'NodeEngine'))} )",
            "true",
        ),
    )


def install_check_tools(packages: Sequence[str]) -> str:
    """Install ``packages`` with apt and append every package this added (dependencies
    included) to CHECK_TOOLS_LIST; print each as an ``installed PKG`` line. The list comes
    from dpkg's state before and after; apt's own output goes to stderr."""
    listing = "dpkg-query -W -f '${Package}\\n' | sort"
    return all_of(
        cmd("mkdir", "-p", STATE_DIR),
        f'b=$(mktemp) && {listing} > "$b"',
        f"{{ {apt_install(packages)}; }} >&2",
        f'{listing} | comm -13 "$b" - > "$b.new"',
        f'cat "$b.new" >> {q(CHECK_TOOLS_LIST)} && sort -u -o {q(CHECK_TOOLS_LIST)} '
        f'{q(CHECK_TOOLS_LIST)} && sed "s/^/installed /" "$b.new" && rm -f "$b" "$b.new"',
    )


def parse_installed(stdout: str) -> list[str]:
    """The packages ``install_check_tools`` reports as newly installed (its ``installed PKG``
    lines; anything else in the output is ignored)."""
    return [
        line.split()[1]
        for line in stdout.splitlines()
        if line.startswith("installed ") and len(line.split()) == 2
    ]


def check_tools_plan() -> str:
    """The recorded check tools that are still installed, and what purging them would remove
    (``apt-get -s``: nothing changes): lines ``listed P`` and ``Purg P ...``."""
    return (
        f"[ -s {q(CHECK_TOOLS_LIST)} ] || exit 0; "
        f"l=$(dpkg-query -W -f '${{Package}} ${{Status}}\\n' $(cat {q(CHECK_TOOLS_LIST)}) "
        "2>/dev/null | awk '$4 == \"installed\" {print $1}'); "
        'for p in $l; do echo "listed $p"; done; [ -n "$l" ] || exit 0; '
        "DEBIAN_FRONTEND=noninteractive apt-get -s purge $l | grep '^Purg '"
    )


def remove_check_tools(packages: Sequence[str]) -> str:
    return all_of(
        f"DEBIAN_FRONTEND=noninteractive {cmd('apt-get', 'purge', '-y', '-qq', '--', *packages)}",
        cmd("rm", "-f", CHECK_TOOLS_LIST),
    )


def buildah_push_probe(ref: str, platforms: Sequence[str], amd64_b64: str, arm64_b64: str) -> str:
    """Build and push a two-platform image the way FLOps' image builder does.

    addon-FLOps image_builder_package/fl_image_builder/image_management.py runs
    ``buildah build --platform P1 --platform P2 --isolation=chroot --tls-verify=false
    --manifest NAME-manifest -t NAME`` and ``buildah manifest push --tls-verify=false --all
    NAME-manifest docker://NAME``. Here buildah gets a storage of its own in a temp dir that
    is removed afterwards (no image stays on the worker), with the vfs driver where that dir
    is on overlayfs (overlay over overlayfs fails: a node that is itself a container), and
    with the current hard ulimits where the node may not raise them (no CAP_SYS_RESOURCE:
    buildah's chroot isolation raises nofile/nproc to 1048576 otherwise).
    The RUN step executes a tiny per-arch program: the foreign one only runs through QEMU.
    """
    plat = " ".join(cmd("--platform", p) for p in platforms)
    return (
        'd=$(mktemp -d /var/tmp/flops-push.XXXXXX) && mkdir "$d/ctx" && '
        f"printf '%s' {q(PROBE_DOCKERFILE)} > \"$d/ctx/Dockerfile\" && "
        f"printf '%s' {q(amd64_b64)} | base64 -d > \"$d/ctx/uname-amd64\" && "
        f"printf '%s' {q(arm64_b64)} | base64 -d > \"$d/ctx/uname-arm64\" && "
        'chmod 755 "$d"/ctx/uname-* || exit 1; '
        'sd=overlay; [ "$(stat -f -c %T "$d")" = overlayfs ] && sd=vfs; '
        "lim=\"\"; c=$(awk '/^CapEff/ {print $2}' /proc/self/status); "
        "[ $(( 0x$c >> 24 & 1 )) = 1 ] || lim=$(awk '/^Max open files/ {n=$5} "
        '/^Max processes/ {p=$4} END {printf "--ulimit nofile=%s:%s --ulimit nproc=%s:%s", '
        "n, n, p, p}' /proc/self/limits); "
        'echo "storage-driver: $sd${lim:+; ulimits: kept at the hard limits}"; '
        'b() { buildah --root "$d/root" --runroot "$d/run" --storage-driver "$sd" "$@"; }; '
        f'(cd "$d/ctx" && b build $lim {plat} --isolation=chroot --tls-verify=false '
        f"--manifest {q(ref + '-manifest')} -t {q(ref)} .) 2>&1 && "
        f"b manifest push --tls-verify=false --all {q(ref + '-manifest')} {q('docker://' + ref)} "
        '2>&1; rc=$?; b rmi -a -f >/dev/null 2>&1; rm -rf "$d"; exit $rc'
    )


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
        cmd(
            "docker",
            "run",
            "-d",
            "--name",
            SIDECAR,
            "--restart",
            "unless-stopped",
            "-p",
            publish_spec(address, port),
            "-v",
            f"{mount_source}:{DATA_MOUNT}",
            image,
        ),
    )


def docker0_address() -> str:
    return "ip -4 -o addr show docker0 | awk '{print $4}' | cut -d/ -f1"


def tcp_check_docker0(port: int, seconds: int = 3) -> str:
    return (
        f'a=$({docker0_address()}) && test -n "$a" && echo "$a" && '
        f"timeout {int(seconds)} {_tcp_open(port)}"
    )


DATA_DIRS_LIST = f"{STATE_DIR}/data-dirs"  # the folders under /var/lib flops-tasks made


def data_dir_facts(path: str) -> str:
    """What the data dir policy needs from the worker (``facts.parse_data_dir``): the path
    resolved there (``readlink -m``: every link followed, missing parts kept), as ``real
    HEX``; under /var/lib, ``varlib EXISTS OURS`` for its folder there (it exists; it is
    listed in ``DATA_DIRS_LIST``); each user's home, ``home PATH``. Exit 0 when the resolved
    path is a directory. No ``exit``, variables ``dd_*`` only: runs in a grouped batch."""
    return (
        f"dd_r=$(readlink -m -- {q(path)}); "
        "printf 'real %s\\n' \"$(printf %s \"$dd_r\" | od -An -tx1 | tr -d ' \\n')\"; "
        'case "$dd_r" in /var/lib/?*) dd_x=${dd_r#/var/lib/}; dd_t=/var/lib/${dd_x%%/*}; '
        'dd_e=0; { [ -e "$dd_t" ] || [ -L "$dd_t" ]; } && dd_e=1; dd_o=0; '
        f'grep -qxF -- "$dd_t" {q(DATA_DIRS_LIST)} 2>/dev/null && dd_o=1; '
        'printf \'varlib %s %s\\n\' "$dd_e" "$dd_o" ;; esac; '
        "cut -d: -f6 /etc/passwd 2>/dev/null | sed 's/^/home /'; "
        '[ -d "$dd_r" ]'
    )


def make_data_dir(path: str) -> str:
    """``mkdir -p`` the data dir; a folder it creates directly under /var/lib is recorded in
    ``DATA_DIRS_LIST`` (so the policy knows flops-tasks made it)."""
    return (
        f'dd_r=$(readlink -m -- {q(path)}) && dd_n="" && '
        'case "$dd_r" in /var/lib/?*) dd_x=${dd_r#/var/lib/}; dd_t=/var/lib/${dd_x%%/*}; '
        '{ [ -e "$dd_t" ] || [ -L "$dd_t" ]; } || dd_n=$dd_t ;; esac && '
        f"{cmd('mkdir', '-p', '--', path)} && "
        f'{{ [ -z "$dd_n" ] || {{ mkdir -p {q(STATE_DIR)} && '
        f"printf '%s\\n' \"$dd_n\" >> {q(DATA_DIRS_LIST)}; }}; }}"
    )


def volume_mountpoint(name: str) -> str:
    return cmd("docker", "volume", "inspect", "--format", "{{.Mountpoint}}", name)


def sha256_of(folder: str, names: Sequence[str]) -> str:
    """SHA-256 of each of ``names`` that is a regular file in ``folder`` (a symbolic link is
    skipped, never followed): one ``INDEX HASH`` line per file, INDEX its place in ``names``.

    Names never reach the output, so any name parses back (``sha256sum`` would escape
    names holding a backslash or a line break). Read it with ``parse_sha256_of``.
    """
    if not names:
        return "true"
    return (
        f"cd {q(folder)} && {{ i=0; for f in {' '.join(q(n) for n in names)}; do "
        'if [ -f "$f" ] && [ ! -L "$f" ]; then h=$(sha256sum < "$f") && '
        'printf \'%s %s\\n\' "$i" "${h%% *}"; fi; i=$((i+1)); done; true; }'
    )


def parse_sha256_of(stdout: str, names: Sequence[str]) -> dict[str, str]:
    """``sha256_of`` output as ``name -> hex digest`` (files that were not there are absent)."""
    found: dict[str, str] = {}
    for line in stdout.splitlines():
        index, _, digest = line.strip().partition(" ")
        if index.isdigit() and int(index) < len(names) and len(digest) == 64:
            found[names[int(index)]] = digest
    return found


def install_file(src: str, dest: str, sha256: str, owner: str) -> str:
    """Move an uploaded file to ``dest`` (runs as root in a folder others may write to).

    The upload (made by the SSH login ``owner`` in /tmp, where anyone can plant a name) is
    read only when it is a regular file owned by ``owner``, and opened with O_NOFOLLOW
    (``dd iflag=nofollow``): root never reads a file it was pointed at through a link.
    The bytes go to a fresh random name beside ``dest``, created with O_CREAT|O_EXCL and
    O_NOFOLLOW (``dd conv=excl oflag=nofollow``): anything planted there, a symbolic link
    included, makes the copy fail instead of being written through. The mode comes from the
    umask (0644), so nothing is ever chmod-ed through a link. The copy must hash to
    ``sha256`` (else it is removed, and ``dest`` is left as it was); then ``mv -T`` renames
    it over ``dest`` atomically (rename(2) replaces a directory entry and never follows it).
    A ``dest`` that is a symbolic link, or not a regular file, is refused. The uploaded file
    is removed in every case.
    """
    folder = (dest.rsplit("/", 1)[0] or "/") if "/" in dest else "."
    return (
        f"umask 022; s={q(src)}; d={q(folder)}; f={q(dest)}; h={q(sha256)}; o={q(owner)}; rc=1; "
        'u=$(id -u -- "$o") || u=none; '
        'if [ ! -d "$d" ]; then echo "$d is not a directory" >&2; '
        'elif [ -L "$s" ] || [ ! -f "$s" ]; then '
        'echo "refusing the upload $s: not a regular file" >&2; '
        'elif [ "$(stat -c %u -- "$s")" != "$u" ]; then '
        'echo "refusing the upload $s: not owned by $o, the SSH login" >&2; '
        'elif [ -L "$f" ]; then echo "refusing to replace the symbolic link $f" >&2; '
        'elif [ -e "$f" ] && [ ! -f "$f" ]; then echo "$f exists and is not a file" >&2; '
        'elif t=$(mktemp -u "$d/.flops-tmp.XXXXXXXXXX"); then '
        'if dd if="$s" of="$t" bs=1M iflag=nofollow conv=excl,fsync oflag=nofollow '
        'status=none; then g=$(sha256sum < "$t"); '
        'if [ "${g%% *}" = "$h" ]; then mv -f -T -- "$t" "$f" && rc=0; '
        'else echo "checksum mismatch: the copy of $s is not what was uploaded, '
        '$f left as it was" >&2; fi; fi; '
        '[ "$rc" -eq 0 ] || rm -f -- "$t"; '
        'fi; rm -f -- "$s"; [ "$rc" -eq 0 ]'
    )


def remove_files(folder: str, names: Sequence[str]) -> str:
    """Remove ``names`` from ``folder`` (entries only: ``rm`` never follows a link)."""
    return cmd("rm", "-f", "--", *(f"{folder.rstrip('/')}/{n}" for n in names))


FOOTER_TAIL_MAX = 1 << 20  # bytes of a footer read on the worker for the controller's pyarrow
TAIL_MARK = "@@flops-tail"


def parquet_tails(folder: str, tags: Sequence[str] | None = None) -> str:
    """The footer of every entry of ``folder`` (or of the entries of ``tags``: a name that is
    the tag or starts with ``TAG.``), for pyarrow on the controller to read
    (``parquet_footer.TailFile``). Nothing is run in the sidecar.

    One line per entry: ``TAIL_MARK NAME SIZE BASE64`` with the last bytes of the file (its
    footer and the 8 bytes after it; only the last 8 when the length they give is more than
    the file), or ``TAIL_MARK NAME SIZE -WHY`` when not sent: ``-notfile`` (a directory, a
    link to nothing), ``-outside`` (a link out of ``folder``: the sidecar resolves it inside
    its container), ``-big`` (more than ``FOOTER_TAIL_MAX``). NAME in hex. A symbolic link
    that stays in ``folder`` is read through, as the sidecar reads it. Assumes a
    little-endian worker (amd64, arm64: Parquet's own byte order).
    """
    words = "* .[!.]* ..?*" if tags is None else " ".join(f"{q(t)} {q(t)}.*" for t in tags)
    return (
        f"cd {q(folder)} && p=$(pwd -P) && for e in {words}; do "
        '{ [ -e "$e" ] || [ -L "$e" ]; } || continue; '
        'n=$(printf "%s" "$e" | od -An -tx1 | tr -d " \\n"); t=$e; '
        'if [ -L "$e" ]; then r=$(readlink -f -- "$e") || r=""; case "$r" in '
        f'"$p"/*) t=$r ;; *) printf "%s %s 0 -outside\\n" {q(TAIL_MARK)} "$n"; continue ;; '
        "esac; fi; "
        f'if [ ! -f "$t" ]; then printf "%s %s 0 -notfile\\n" {q(TAIL_MARK)} "$n"; continue; fi; '
        's=$(wc -c < "$t" | tr -d " "); k=$s; '
        'if [ "$s" -ge 12 ]; then '
        'm=$(tail -c 8 < "$t" | head -c 4 | od -An -tu4 | tr -d " \\n"); k=$((m + 8)); '
        '[ "$k" -gt "$s" ] && k=8; fi; '
        f'if [ "$k" -gt {FOOTER_TAIL_MAX} ]; then '
        f'printf "%s %s %s -big\\n" {q(TAIL_MARK)} "$n" "$s"; continue; fi; '
        f'printf "%s %s %s " {q(TAIL_MARK)} "$n" "$s"; '
        'tail -c "$k" < "$t" | base64 -w0; echo; done; true'
    )


def parse_parquet_tails(stdout: str) -> dict[bytes, tuple[int, bytes | str]]:
    """``parquet_tails`` output as ``name -> (size, tail bytes or why not sent)``."""
    import base64
    import binascii

    found: dict[bytes, tuple[int, bytes | str]] = {}
    for line in stdout.splitlines():
        parts = line.split(" ")
        if len(parts) not in (3, 4) or parts[0] != TAIL_MARK or not parts[2].isdigit():
            continue
        try:
            name = bytes.fromhex(parts[1])
            payload = parts[3] if len(parts) == 4 else ""
            tail: bytes | str = (
                payload[1:] if payload.startswith("-") else base64.b64decode(payload, validate=True)
            )
        except (ValueError, binascii.Error):
            continue
        found[name] = (int(parts[2]), tail)
    return found


# Run a Python script in the sidecar with the Python that has pyarrow: the one its main
# process runs (/proc/1/cmdline: upstream's image runs poetry's environment, the testbed's a
# venv on PATH), else python3, python, or `poetry run python` from the app's folder. The
# script exits 3 (parquet_footer.NO_PYARROW) where pyarrow is missing: the next is tried.
# Isolated (-I): neither the working folder nor PYTHON* variables reach the import path.
_SIDECAR_PYTHON = (
    'p1=$(tr "\\000" "\\n" < /proc/1/cmdline 2>/dev/null | head -n 1); '
    'for p in "$p1" python3 python; do case "$p" in *python*) '
    '"$p" -I -c "$0" "$@"; rc=$?; case "$rc" in 3|126|127) ;; *) exit "$rc" ;; esac ;; esac; done; '
    "if command -v poetry >/dev/null 2>&1; then cd /ml_data_server 2>/dev/null; "
    'poetry run python -I -c "$0" "$@"; rc=$?; [ "$rc" -eq 3 ] || exit "$rc"; fi; '
    'echo "no Python with pyarrow in this container" >&2; exit 3'
)


def sidecar_python(script: str, *args: str, container: str = SIDECAR) -> str:
    """Run ``script`` (Python source) with ``args`` inside the running ``container`` with
    the Python that has pyarrow (exit 3 when none has it)."""
    return cmd("docker", "exec", container, "sh", "-c", _SIDECAR_PYTHON, script, *args)


def list_mount(folder: str) -> str:
    """Every entry of ``folder``, dot files included, one line each, nothing followed:

    ``KIND SIZE HEAD TAIL NAME``: KIND ``f`` regular file, ``l`` symbolic link, ``d``
    directory, ``o`` anything else; SIZE in bytes (files only, else 0); HEAD and TAIL the
    first and last four bytes of a file of at least 4 bytes, in hex (``-`` otherwise); NAME
    in hex, so any name parses back. Read it with ``data.parse_listing``.
    """
    return (
        f"cd {q(folder)} && for f in * .[!.]* ..?*; do "
        'if [ -L "$f" ]; then k=l; elif [ -d "$f" ]; then k=d; elif [ -f "$f" ]; then k=f; '
        'elif [ -e "$f" ]; then k=o; else continue; fi; s=0; h=-; e=-; '
        'if [ "$k" = f ]; then s=$(wc -c < "$f" | tr -d " "); '
        'if [ "$s" -ge 4 ]; then h=$(od -An -tx1 -N4 < "$f" | tr -d " \\n"); '
        'e=$(tail -c 4 < "$f" | od -An -tx1 | tr -d " \\n"); fi; fi; '
        'n=$(printf "%s" "$f" | od -An -tx1 | tr -d " \\n"); '
        'printf "%s %s %s %s %s\\n" "$k" "$s" "$h" "$e" "$n"; done'
    )


MISSING_MARK = "@@flops-missing"
SECTION_MARK = "@@flops-section"
CTR_CONNECT_TIMEOUT = "3s"  # ctr waits 10 s for a containerd that is not running


def docker_images_state() -> str:
    """Docker's images (``ref id``), then the running containers (``/name ref id``).

    Prints ``MISSING_MARK docker`` where the docker CLI is not installed.
    """
    images = cmd(
        "docker", "image", "ls", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"
    )
    running = (
        cmd("docker", "ps", "-q", "--no-trunc")
        + " | "
        + cmd(
            "xargs",
            "-r",
            "docker",
            "container",
            "inspect",
            "--format",
            "{{.Name}} {{.Config.Image}} {{.Image}}",
        )
    )
    return if_else(
        has_command("docker") + " >/dev/null",
        f"{images} && {cmd('echo', SECTION_MARK)} && {running}",
        cmd("echo", MISSING_MARK, "docker"),
    )


def ctr_images_state(namespace: str) -> str:
    """One containerd namespace: image refs, then ``containers ls``, then ``tasks ls``.

    Prints ``MISSING_MARK ctr`` where ctr is not installed; fails within
    ``CTR_CONNECT_TIMEOUT`` when containerd does not answer.
    """

    def ctr(*args: str) -> str:
        return cmd("ctr", "--connect-timeout", CTR_CONNECT_TIMEOUT, "-n", namespace, *args)

    return if_else(
        has_command("ctr") + " >/dev/null",
        all_of(
            ctr("images", "ls", "-q"),
            cmd("echo", SECTION_MARK),
            ctr("containers", "ls"),
            cmd("echo", SECTION_MARK),
            ctr("tasks", "ls"),
        ),
        cmd("echo", MISSING_MARK, "ctr"),
    )


def remove_images_docker(refs: Sequence[str]) -> str:
    return cmd("docker", "image", "rm", "-f", *refs)


def remove_images_ctr(namespace: str, refs: Sequence[str]) -> str:
    return cmd("ctr", "-n", namespace, "images", "rm", *refs)


def cat_or_mark(path: str, mark: str) -> str:
    """The file's contents, or ``mark`` when it does not exist."""
    return if_else(cmd("test", "-f", path), cmd("cat", path), cmd("echo", mark))


# -- dev-images: FLOps' own images side-loaded from a developer's checkout ----------------
DEV_SOURCE_LABEL = "org.flops-tasks.dev-source"  # the component's source hash
DEV_DIGEST_LABEL = "org.flops-tasks.dev-digest"  # the registry index it came from
DEV_COMPONENT_LABEL = "org.flops-tasks.dev-component"
OAKESTRA_NAMESPACE = "oakestra"  # where NodeEngine keeps its services' images


def _ctr(namespace: str, *args: str) -> str:
    return cmd("ctr", "--connect-timeout", CTR_CONNECT_TIMEOUT, "-n", namespace, *args)


def ctr_image_list(namespace: str = OAKESTRA_NAMESPACE) -> str:
    """``ctr images ls`` of one namespace (REF TYPE DIGEST SIZE PLATFORMS LABELS); prints
    ``MISSING_MARK ctr`` where ctr is not installed."""
    return if_else(
        has_command("ctr") + " >/dev/null",
        _ctr(namespace, "images", "ls"),
        cmd("echo", MISSING_MARK, "ctr"),
    )


def docker_image_labels(refs: Sequence[str]) -> str:
    """Per ref one line ``REF ID LABELS-JSON`` (``REF -`` when Docker lacks it); prints
    ``MISSING_MARK docker`` where the docker CLI is not installed."""
    inspect = "{{.Id}} {{json .Config.Labels}}"
    lines = "; ".join(
        f"o=$({cmd('docker', 'image', 'inspect', '--format', inspect, ref)} 2>/dev/null); "
        f'if [ -n "$o" ]; then printf \'%s %s\\n\' {q(ref)} "$o"; '
        f"else printf '%s -\\n' {q(ref)}; fi"
        for ref in refs
    )
    return if_else(
        has_command("docker") + " >/dev/null", lines or "true", cmd("echo", MISSING_MARK, "docker")
    )


def sidecar_image() -> str:
    """The sidecar container's image name and id (``NAME ID``), or nothing."""
    return (
        cmd(
            "docker",
            "container",
            "inspect",
            "--format",
            "{{.Config.Image}} {{.Image}}",
            SIDECAR,
        )
        + " 2>/dev/null; true"
    )


def docker_info_or_missing() -> str:
    return if_else(
        has_command("docker") + " >/dev/null",
        docker_info_json(),
        cmd("echo", MISSING_MARK, "docker"),
    )


def ctr_sideload(source: str, public: str, platform: str, labels: dict[str, str]) -> str:
    """Pull ``source`` (``REGISTRY/repo@sha256:...``, plain HTTP: the FLOps registry) for
    ``platform`` into namespace oakestra, name it ``public`` (replacing what had that name),
    label it, and drop the pulled name (the content stays: ``public`` holds it)."""
    ns = OAKESTRA_NAMESPACE
    return all_of(
        _ctr(ns, "images", "pull", "--plain-http", "--platform", platform, source) + " >/dev/null",
        _ctr(ns, "images", "tag", "--force", source, public) + " >/dev/null",
        _ctr(ns, "images", "label", public, *(f"{k}={v}" for k, v in sorted(labels.items())))
        + " >/dev/null",
        _ctr(ns, "images", "rm", source) + " >/dev/null",
    )


def docker_sideload(source: str, public: str) -> str:
    """Pull ``source`` into Docker (it must trust the FLOps registry), name it ``public``, and
    drop the pulled name."""
    return all_of(
        cmd("docker", "pull", "-q", source) + " >/dev/null",
        cmd("docker", "tag", source, public),
        cmd("docker", "image", "rm", source) + " >/dev/null",
    )


def ctr_unload(refs: Sequence[str]) -> str:
    return _ctr(OAKESTRA_NAMESPACE, "images", "rm", *refs) + " >/dev/null"


def docker_unload(refs: Sequence[str]) -> str:
    """Untag (``-f``: also when a container runs it; the container keeps running)."""
    return cmd("docker", "image", "rm", "-f", *refs) + " >/dev/null"
