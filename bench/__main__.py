"""flops-tasks benchmarks: repeated runs, medians, side-by-side ratios in one run.

    python -m bench startup|rerun|scale|first|reset|all [--repeat N] [--smoke]

Each measurement prints a table (median, min, max, ratio against its comparison measured in
the same run) and writes bench/results/<name>-<UTC time>.json with the machine facts. The
testbed measurements bring up (or reuse) the offline testbed; ``--smoke`` runs each once
with the smallest sizes, to check the harness itself.

Worker CPU is read from each worker container's cgroup (``cpu.stat`` ``usage_usec``, or
cgroup v1 ``cpuacct.usage``) before and after a run: everything the worker's sshd, shells,
probes and daemons did for it, nothing of the controller's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
INV = str(Path(sys.executable).parent / "inv")


def _testbed_config() -> str:
    """The testbed's config (its folder of the state directory)."""
    from flops_tasks import testbed as tb

    return str(tb.default_paths().config)


def machine() -> dict:
    mem = 0
    try:
        with open("/proc/meminfo") as fh:
            mem = int(fh.readline().split()[1]) // 1024
    except OSError:
        pass
    docker = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "mem_mib": mem,
        "docker": docker,
        "machine": platform.machine(),
    }


def stats(samples: list[float]) -> dict:
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "n": len(samples),
        "samples": samples,
    }


def machine_cpu_seconds() -> float:
    """CPU time used by the whole machine so far (all cores, /proc/stat, busy states)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # minus idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def timed(fn: Callable[[], object], repeat: int, warmup: int = 1) -> dict:
    """Wall time of ``fn`` (median etc.), plus the machine's and this process's CPU time."""
    import resource

    for _ in range(warmup):
        fn()
    samples, machine_cpu, own_cpu = [], [], []
    for _ in range(repeat):
        cpu0 = machine_cpu_seconds()
        own0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
        own1 = resource.getrusage(resource.RUSAGE_SELF)
        machine_cpu.append(machine_cpu_seconds() - cpu0)
        own_cpu.append(own1.ru_utime - own0.ru_utime + own1.ru_stime - own0.ru_stime)
    return {
        **stats(samples),
        "machine_cpu_s_median": statistics.median(machine_cpu),
        "controller_cpu_s_median": statistics.median(own_cpu),
    }


# -- the workers' own CPU (their cgroups) ---------------------------------------------------
def worker_cgroup(container: str) -> Path:
    """The CPU accounting file of a worker container's cgroup, found from its main process."""
    pid = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", container],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    v1 = None
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
                stat = Path(root + path) / "cpu.stat"
                if stat.is_file():
                    return stat
        if "cpuacct" in controllers.split(","):
            v1 = Path("/sys/fs/cgroup/cpuacct" + path) / "cpuacct.usage"
    if v1 is not None and v1.is_file():
        return v1
    raise SystemExit(f"no CPU accounting found for {container}")


def cgroup_cpu_seconds(path: Path) -> float:
    text = path.read_text()
    if path.name == "cpuacct.usage":
        return int(text) / 1e9
    return next(int(ln.split()[1]) for ln in text.splitlines() if ln.startswith("usage_usec")) / 1e6


class WorkerCpu:
    """CPU seconds each named worker used between ``start()`` and ``stop()``."""

    def __init__(self, hosts: int) -> None:
        from flops_tasks import testbed as tb

        self.paths = {f"w{i}": worker_cgroup(tb.worker_name(i)) for i in range(1, hosts + 1)}
        self.before: dict[str, float] = {}

    def start(self) -> None:
        self.before = {h: cgroup_cpu_seconds(p) for h, p in self.paths.items()}

    def stop(self) -> dict[str, float]:
        return {h: cgroup_cpu_seconds(p) - self.before[h] for h, p in self.paths.items()}


def run(*args: str, cwd: Path = ROOT, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(
        list(args), cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if check and res.returncode != 0:
        raise SystemExit(
            f"{' '.join(args)} failed ({res.returncode}): "
            f"{(res.stderr or res.stdout).strip()[-400:]}"
        )
    return res


def table(title: str, rows: list[tuple[str, dict, str]]) -> str:
    lines = [
        f"### {title}",
        "",
        "| measurement | median | min | max | n | vs. comparison |",
        "|---|---|---|---|---|---|",
    ]
    for name, st, ratio in rows:
        lines.append(
            f"| {name} | {st['median']:.3f} s | {st['min']:.3f} s | {st['max']:.3f} s "
            f"| {st['n']} | {ratio} |"
        )
    return "\n".join(lines)


def save(name: str, data: dict, text: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    payload = {"name": name, "when": stamp, "machine": machine(), **data, "table": text}
    (RESULTS / f"{name}-{stamp}.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(text, flush=True)
    print(flush=True)


# -- measurements ---------------------------------------------------------------------------
def bench_startup(repeat: int) -> None:
    """`inv --list` against a bare Invoke collection (Invoke's own start-up)."""
    import tempfile

    bare = Path(tempfile.mkdtemp(prefix="flops-bench-bare-"))
    (bare / "tasks.py").write_text("from invoke import task\n\n\n@task\ndef hello(c):\n    pass\n")
    ours = timed(lambda: run(INV, "--list"), repeat)
    base = timed(lambda: run(INV, "--list", cwd=bare), repeat)
    ratio = ours["median"] / base["median"]
    text = table(
        "`inv --list` start-up (bar: 0.3 s median)",
        [
            ("flops-tasks `inv --list`", ours, f"{ratio:.2f}x bare Invoke"),
            ("bare Invoke `inv --list`", base, "1.00x"),
        ],
    )
    save(
        "startup",
        {"ours": ours, "bare_invoke": base, "bar_s": 0.3, "bar_met": ours["median"] <= 0.3},
        text,
    )


def _prepare(ctx: object, roles: set[str] | None, host: str | None = None) -> object:
    """One in-process preparation run (as ``inv prepare-builder prepare-learner`` does)."""
    from flops_tasks.run import Run
    from flops_tasks.workflows import workers

    run = Run.of(ctx)  # type: ignore[arg-type]
    workers.prepare(run, roles=roles, host=host)
    return run.report


def _testbed(workers: int, prepared: bool, fresh: bool = False) -> object:
    """Bring the testbed to ``workers`` workers (``fresh``: new ones; workers made with
    another testbed's SSH key are replaced too); prepare them when asked, new workers with
    the package lists and .debs of a prepared w1 (``seed_apt_caches``). -> context."""
    from flops_tasks import testbed as tb

    say = lambda line: print(f"  [testbed] {line}", flush=True)  # noqa: E731
    if fresh or not _own_workers():
        tb.down(keep_images=True, progress=say)
    tb.up(workers=workers, progress=say)
    ctx = tb.context_for(tb.default_paths())
    if prepared:
        seed_apt_caches(workers)
        report = _prepare(ctx, roles=None)
        if not report.ok:
            raise SystemExit(
                "preparing the testbed failed: "
                + "; ".join(f"{o.host} {o.step}: {o.detail}" for o in report.outcomes if o.bad)
            )
    return ctx


def _own_workers() -> bool:
    """The running testbed workers accept this checkout's testbed key."""
    from flops_tasks import testbed as tb

    pub = Path(str(tb.default_paths().key) + ".pub")
    if not pub.is_file():
        return False
    names = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label={tb.ROLE_LABEL}=worker"],
        capture_output=True,
        text=True,
    ).stdout.split()
    if not names:
        return True
    envs = subprocess.run(
        ["docker", "inspect", "-f", "{{json .Config.Env}}", *names], capture_output=True, text=True
    ).stdout.splitlines()
    want = f"SSH_AUTHORIZED_KEYS={pub.read_text().strip()}"
    return all(want in json.loads(line) for line in envs if line.strip())


def _hosts(n: int) -> str:
    return ",".join(f"w{i}" for i in range(1, n + 1))


class Peak:
    """The most threads this process ran at once while it was entered (sampled)."""

    def __init__(self) -> None:
        import threading

        self.threads = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import threading

        while not self._stop.is_set():
            self.threads = max(self.threads, threading.active_count() - 1)  # not the sampler
            self._stop.wait(0.005)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _rerun(ctx: object, hosts: int) -> dict:
    """One no-change prepare of both roles on the first ``hosts`` workers, in-process."""
    report = _prepare(ctx, roles={"builder", "learner"}, host=_hosts(hosts))
    if not report.ok or report.changed:
        raise SystemExit(
            f"re-run on {hosts} hosts was not a clean no-change run: "
            + json.dumps(report.to_dict())[:2000]
        )
    return report.ssh


def measure_rerun(ctx: object, hosts: int, repeat: int) -> dict:
    """Wall time, machine/controller CPU, worker CPU per host, SSH counts, peak threads."""
    cpu = WorkerCpu(hosts)
    per_host: list[float] = []
    ssh: dict = {}
    threads = 0

    def once() -> None:
        nonlocal threads
        cpu.start()
        with Peak() as peak:
            ssh.update(_rerun(ctx, hosts))
        used = cpu.stop()
        per_host.append(statistics.median(used.values()))
        threads = max(threads, peak.threads)

    st = timed(once, repeat)
    per_host = per_host[1:]  # the warm-up run is not measured
    return {
        **st,
        "worker_cpu_s_per_host_median": statistics.median(per_host),
        "worker_cpu_s_per_host_max": max(per_host),
        "handshakes_per_host": sorted({v["handshakes"] for v in ssh.values()}),
        "round_trips_per_host": sorted({v["round_trips"] for v in ssh.values()}),
        "peak_threads": threads,
    }


def measure_cli(hosts: int, repeat: int) -> dict:
    """`inv prepare-builder prepare-learner` (two tasks, one run) as a process: wall, peak
    RSS, controller CPU, worker CPU per host, handshakes and round trips per host."""
    names = _hosts(hosts)
    cpu = WorkerCpu(hosts)
    walls, rss, ctl, workers, handshakes, trips = [], [], [], [], set(), set()
    args = [
        "/usr/bin/time",
        "-f",
        "@@time %e %U %S %M",
        INV,
        "-f",
        _testbed_config(),
        "prepare-builder",
        "--host",
        names,
        "--json",
        "prepare-learner",
        "--host",
        names,
        "--json",
    ]
    run(*args)  # warm-up
    for _ in range(repeat):
        cpu.start()
        res = run(*args)
        used = cpu.stop()
        wall, user, sys_, maxrss = res.stderr.strip().splitlines()[-1].split()[1:]
        walls.append(float(wall))
        ctl.append(float(user) + float(sys_))
        rss.append(int(maxrss) / 1024)
        workers.append(statistics.median(used.values()))
        decoder, at, runs = json.JSONDecoder(), 0, []
        while res.stdout[at:].strip():
            at += len(res.stdout[at:]) - len(res.stdout[at:].lstrip())
            doc, at = decoder.raw_decode(res.stdout, at)
            runs.append(doc)
        if any(doc["changed"] or not doc["ok"] for doc in runs):
            raise SystemExit(f"CLI re-run on {hosts} hosts changed or failed")
        for host in runs[0]["ssh"]:
            handshakes.add(sum(doc["ssh"].get(host, {}).get("handshakes", 0) for doc in runs))
            trips.add(sum(doc["ssh"].get(host, {}).get("round_trips", 0) for doc in runs))
    return {
        **stats(walls),
        "controller_cpu_s_median": statistics.median(ctl),
        "peak_rss_mib_median": statistics.median(rss),
        "worker_cpu_s_per_host_median": statistics.median(workers),
        "handshakes_per_host_per_run": sorted(handshakes),
        "round_trips_per_host_per_run": sorted(trips),
    }


def _rerun_row(name: str, st: dict, base: dict | None) -> tuple[str, dict, str]:
    ratio = f"{st['median'] / base['median']:.2f}x 1 host; " if base else ""
    return (
        name,
        st,
        ratio + f"worker CPU/host {st['worker_cpu_s_per_host_median']:.3f} s; "
        f"machine CPU {st['machine_cpu_s_median']:.2f} s; controller CPU "
        f"{st['controller_cpu_s_median']:.2f} s; SSH/host: "
        f"{st['handshakes_per_host']} handshake, {st['round_trips_per_host']} round trip",
    )


def bench_rerun(repeat: int, sizes: list[int]) -> dict:
    """No-change re-run of both roles on 1 and 8 prepared workers, in-process and as `inv`."""
    ctx = _testbed(max(sizes), prepared=True)
    rows, data = [], {}
    for n in sizes:
        data[f"hosts_{n}"] = measure_rerun(ctx, n, repeat)
        rows.append(
            _rerun_row(
                f"{n} host(s), both roles, in-process",
                data[f"hosts_{n}"],
                data[f"hosts_{sizes[0]}"],
            )
        )
    data["cli_1"] = cli = measure_cli(1, repeat)
    rows.append(
        (
            "`inv prepare-builder --host w1 prepare-learner --host w1` (one run, process "
            "start included)",
            cli,
            f"worker CPU {cli['worker_cpu_s_per_host_median']:.3f} s; controller CPU "
            f"{cli['controller_cpu_s_median']:.2f} s; peak RSS "
            f"{cli['peak_rss_mib_median']:.1f} MiB; SSH per run: "
            f"{cli['handshakes_per_host_per_run']} handshake, "
            f"{cli['round_trips_per_host_per_run']} round trips",
        )
    )
    one = data[f"hosts_{sizes[0]}"]
    eight = data.get("hosts_8")
    text = table(
        "No-change re-run, both roles (bars: 1 host <= 1.0 s; worker CPU <= 0.15 s; "
        "8 hosts <= 1.5x 1 host; one SSH connection per host per run)",
        rows,
    )
    data.update(
        {
            "bar_one_host_met": one["median"] <= 1.0,
            "bar_worker_cpu_met": max(
                data[k]["worker_cpu_s_per_host_median"]
                for k in data
                if k.startswith(("hosts_", "cli_"))
            )
            <= 0.15,
            "bar_eight_hosts_met": None
            if eight is None
            else eight["median"] <= 1.5 * one["median"],
            "bar_one_handshake_met": cli["handshakes_per_host_per_run"] == [1],
        }
    )
    save("rerun", data, text)
    return data


def _worker_memory_mib(i: int) -> float:
    """The memory a worker container's processes hold now (its cgroup's anonymous memory:
    rss in cgroup v1, anon in v2; the page cache of its files is not counted)."""
    from flops_tasks import testbed as tb

    cpu = worker_cgroup(tb.worker_name(i))
    rel = str(cpu.parent).split("/sys/fs/cgroup/", 1)[1].split("/", 1)[1]
    for path, key in (
        (Path("/sys/fs/cgroup/memory") / rel / "memory.stat", "total_rss"),
        (cpu.parent / "memory.stat", "anon"),
    ):
        if path.is_file():
            for line in path.read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value) / 2**20
    return float("nan")


def project(n: int, parallel: int, one_host_s: float, base_cpu: float, cpu_per_host: float) -> dict:
    """The wall time of a run on ``n`` workers: the larger of waves x one host's work
    (waves = ceil(n / parallel); each real node has its own CPU, so hosts in flight overlap)
    and the controller's CPU, base + n x per host (one Python process: it does not overlap)."""
    waves = -(-n // parallel)
    latency = waves * one_host_s
    cpu = base_cpu + n * cpu_per_host
    return {
        "workers": n,
        "parallel": parallel,
        "waves": waves,
        "latency_bound_s": latency,
        "controller_cpu_s": cpu,
        "wall_s": max(latency, cpu),
        "bound": "controller CPU" if cpu > latency else "round trips (waves x 1 host)",
    }


def bench_scale(repeat: int, sizes: list[int]) -> dict:
    """1, 8 and 32 prepared workers: the cost per host, and a projection to 200 and 1,000.

    Projection: wall = max(waves x one host's wall, controller CPU), waves = ceil(N /
    ssh.parallel) (each real node has its own CPU, so hosts in flight overlap), controller
    CPU = base + N x per host (one Python process: its CPU work does not overlap); memory =
    base + N x per host; threads = base + N (one per open connection) + in flight x k."""
    from flops_tasks import testbed as tb
    from flops_tasks.config import DEFAULTS

    biggest = max(sizes)
    before = min(8, biggest)
    _testbed(before, prepared=True)
    started = time.perf_counter()
    tb.up(workers=biggest, progress=lambda line: print(f"  [testbed] {line}", flush=True))
    start_s = time.perf_counter() - started  # new workers started and answering SSH
    ctx = _testbed(biggest, prepared=True)
    mem = [_worker_memory_mib(i) for i in range(1, biggest + 1)]
    rows, data = (
        [],
        {
            "testbed_up_s": start_s,
            "workers_started": biggest - before,
            "worker_memory_mib_median": statistics.median(mem),
        },
    )
    for n in sizes:
        st = measure_rerun(ctx, n, repeat)
        st["cli"] = measure_cli(n, max(3, repeat // 3))
        data[f"hosts_{n}"] = st
        rows.append(_rerun_row(f"{n} host(s), in-process", st, data[f"hosts_{sizes[0]}"]))
        c = st["cli"]
        rows.append(
            (
                f"{n} host(s), `inv` both tasks in one run",
                c,
                f"controller CPU {c['controller_cpu_s_median']:.2f} s; peak RSS "
                f"{c['peak_rss_mib_median']:.1f} MiB; handshakes/host "
                f"{c['handshakes_per_host_per_run']}; peak threads in-process "
                f"{st['peak_threads']}",
            )
        )
    first, last = data[f"hosts_{sizes[0]}"], data[f"hosts_{biggest}"]
    span = biggest - sizes[0]
    per_host = {
        "controller_cpu_s": (
            last["cli"]["controller_cpu_s_median"] - first["cli"]["controller_cpu_s_median"]
        )
        / span,
        "rss_mib": (last["cli"]["peak_rss_mib_median"] - first["cli"]["peak_rss_mib_median"])
        / span,
    }
    # threads: one per open connection (paramiko's transport; connections stay open until
    # the run ends) and k per host in flight (pool thread, Invoke's I/O threads), from the
    # 1- and 8-host runs (8 <= ssh.parallel: all in flight)
    t1, t8 = (
        first["peak_threads"],
        data["hosts_8"]["peak_threads"] if "hosts_8" in data else last["peak_threads"],
    )
    k = max(0.0, (t8 - t1 - 7) / 7)
    per_host["threads_in_flight"] = k
    thread_base = t1 - 1 - k
    base = {
        "rss_mib": first["cli"]["peak_rss_mib_median"] - per_host["rss_mib"] * sizes[0],
        "controller_cpu_s": first["cli"]["controller_cpu_s_median"]
        - per_host["controller_cpu_s"] * sizes[0],
    }
    one_host = first["median"]
    projection = [
        {
            **project(
                n, parallel, one_host, base["controller_cpu_s"], per_host["controller_cpu_s"]
            ),
            "rss_mib": base["rss_mib"] + n * per_host["rss_mib"],
            "threads": round(thread_base + n + min(n, parallel) * k),
            "open_connections": n,
        }
        for n in (200, 1000)
        for parallel in (DEFAULTS["ssh"]["parallel"], 64)
    ]
    data.update({"per_host": per_host, "base": base, "projection": projection})
    text = table(
        f"Scale: prepared workers, no-change, both roles (testbed of {biggest}: "
        f"{biggest - before} more workers up in {start_s:.0f} s, "
        f"{data['worker_memory_mib_median']:.0f} MiB of process memory per prepared "
        "worker)",
        rows,
    )
    save("scale", data, text)
    return data


def seed_apt_caches(workers: int) -> None:
    """Give unprepared workers the package lists and .debs of a prepared w1 (as a local
    mirror or proxy would): preparing many workers then downloads nothing twice. The
    bench's own shortcut; the first-time measurement (``bench_first``) uses none."""
    from flops_tasks import testbed as tb

    def has(i: int, path: str) -> bool:
        return (
            subprocess.run(
                ["docker", "exec", tb.worker_name(i), "test", "-e", path], capture_output=True
            ).returncode
            == 0
        )

    static = "/usr/bin/qemu-aarch64-static"
    bare = [i for i in range(2, workers + 1) if not has(i, static)]
    if not bare or not has(1, static):
        return
    tar = subprocess.run(
        [
            "docker",
            "exec",
            tb.worker_name(1),
            "tar",
            "-C",
            "/",
            "-cf",
            "-",
            "var/lib/apt/lists",
            "var/cache/apt/archives",
        ],
        capture_output=True,
        check=True,
    ).stdout
    print(f"  [bench] seeding the apt caches of {len(bare)} workers from w1", flush=True)
    for i in bare:
        subprocess.run(
            ["docker", "exec", "-i", tb.worker_name(i), "tar", "-C", "/", "-xf", "-"],
            input=tar,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["docker", "exec", tb.worker_name(i), "sh", "-c", "touch /var/lib/apt/lists/*Release"],
            check=True,
        )


def bench_first() -> dict:
    """First-time preparation of one fresh worker: where the time goes, change by change."""
    from flops_tasks.ssh import HostSession

    ctx = _testbed(1, prepared=False, fresh=True)
    spent: list[tuple[str, float]] = []
    original = HostSession.change

    def timed_change(self, command, summary, timeout=None, _orig=original, **kw):
        start = time.perf_counter()
        try:
            return _orig(self, command, summary, timeout, **kw)
        finally:
            spent.append((summary, time.perf_counter() - start))

    HostSession.change = timed_change
    try:
        start = time.perf_counter()
        report = _prepare(ctx, roles=None)
        total = time.perf_counter() - start
    finally:
        HostSession.change = original
    if not report.ok:
        raise SystemExit("first-time preparation failed: " + json.dumps(report.to_dict()))
    installs = sum(t for summary, t in spent if summary.startswith("apt-get install"))
    changes = sum(t for _, t in spent)
    lines = [
        "### First-time preparation of one fresh worker, both roles (one run: it installs "
        "packages)",
        "",
        "| part | seconds |",
        "|---|---|",
        f"| total | {total:.1f} |",
        f"| package installs (one apt transaction, `apt-get update` included) | {installs:.1f} |",
    ]
    lines += [
        f"| {summary.split(';')[0][:90]} | {t:.1f} |"
        for summary, t in spent
        if not summary.startswith("apt-get install")
    ]
    lines.append(f"| probes, verify, SSH (the rest) | {total - changes:.1f} |")
    data = {
        "total_s": total,
        "install_s": installs,
        "changes": spent,
        "rest_s": total - changes,
        "ssh": report.ssh,
    }
    save("first", data, "\n".join(lines))
    return data


def bench_reset(repeat: int) -> None:
    """`inv reset` of a healthy stack vs `docker compose down && up --build -d` + healthy."""
    from flops_tasks import testbed as tb
    from flops_tasks.config import settings
    from flops_tasks.stack.project import Project

    ctx = _testbed(1, prepared=False)
    s = settings(ctx)
    stack = Project(s)
    compose = ["docker", "compose", "-p", s.stack.project, "--env-file", s.stack.env_file]
    for f in s.stack.compose_files:
        compose += ["-f", f]

    def baseline() -> None:
        run(*compose, "down")
        run(*compose, "up", "--build", "-d")
        stack.wait_healthy()

    ours = timed(lambda: run(INV, "-f", _testbed_config(), "reset"), repeat)
    base = timed(baseline, repeat)
    tb.push_sidecar(lambda _: None)
    ratio = ours["median"] / base["median"]
    text = table(
        "Reset of a healthy stack until every service is healthy (bar: <= 0.5x)",
        [
            ("`inv reset`", ours, f"{ratio:.2f}x baseline"),
            ("`docker compose down && up --build -d`, then healthy", base, "1.00x"),
        ],
    )
    save("reset", {"ours": ours, "baseline": base, "ratio": ratio, "bar_met": ratio <= 0.5}, text)


def bench_memory(hosts: int) -> None:
    """Peak RSS of the `inv` process re-running both preparations on ``hosts`` workers."""
    _testbed(hosts, prepared=True)
    names = ",".join(f"w{i}" for i in range(1, hosts + 1))
    peaks = {}
    for task in ("prepare-builder", "prepare-learner"):
        res = run(
            "/usr/bin/time",
            "-f",
            "%M",
            INV,
            "-f",
            _testbed_config(),
            task,
            "--host",
            names,
        )
        peaks[task] = int(res.stderr.strip().splitlines()[-1])
    base = run("/usr/bin/time", "-f", "%M", INV, "--list")
    peaks["inv --list"] = int(base.stderr.strip().splitlines()[-1])
    lines = [
        f"### Peak memory of the `inv` process ({hosts} hosts)",
        "",
        "| run | peak RSS |",
        "|---|---|",
    ]
    lines += [f"| `{k}` | {v / 1024:.1f} MiB |" for k, v in peaks.items()]
    save("memory", {"hosts": hosts, "peak_rss_kib": peaks}, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "what",
        nargs="?",
        default="all",
        choices=["startup", "rerun", "scale", "first", "reset", "all"],
    )
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--workers", type=int, default=32, help="the scale run's largest size")
    parser.add_argument("--smoke", action="store_true", help="once each, smallest sizes")
    args = parser.parse_args()
    repeat = 1 if args.smoke else args.repeat
    todo = ["first", "rerun", "scale", "startup", "reset"] if args.what == "all" else [args.what]
    for what in todo:
        if what == "startup":
            bench_startup(max(repeat, 3) if not args.smoke else 1)
        elif what == "rerun":
            bench_rerun(repeat, [1] if args.smoke else [1, 8])
        elif what == "scale":
            bench_scale(repeat, [1, 2] if args.smoke else [1, 8, args.workers])
        elif what == "first":
            bench_first()
        elif what == "reset":
            bench_reset(max(1, repeat // 2) if not args.smoke else 1)


if __name__ == "__main__":
    main()
