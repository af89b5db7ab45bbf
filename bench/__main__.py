"""flops-tasks benchmarks: repeated runs, medians, side-by-side ratios in one run.

    python -m bench startup|rerun|first|reset|memory|all [--repeat N] [--smoke]

Each measurement prints a table (median, min, max, ratio against its comparison measured in
the same run) and writes bench/results/<name>-<UTC time>.json with the machine facts. The
testbed measurements bring up (or reuse) the offline testbed; ``--smoke`` runs each once
with the smallest sizes, to check the harness itself.
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


def machine() -> dict:
    mem = 0
    try:
        with open("/proc/meminfo") as fh:
            mem = int(fh.readline().split()[1]) // 1024
    except OSError:
        pass
    docker = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                            capture_output=True, text=True).stdout.strip()
    return {"python": platform.python_version(), "kernel": platform.release(),
            "cpus": os.cpu_count(), "mem_mib": mem, "docker": docker,
            "machine": platform.machine()}


def stats(samples: list[float]) -> dict:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples),
            "n": len(samples), "samples": samples}


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
    return {**stats(samples), "machine_cpu_s_median": statistics.median(machine_cpu),
            "controller_cpu_s_median": statistics.median(own_cpu)}


def run(*args: str, cwd: Path = ROOT, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True,
                         stdin=subprocess.DEVNULL)
    if check and res.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({res.returncode}): "
                         f"{(res.stderr or res.stdout).strip()[-400:]}")
    return res


def table(title: str, rows: list[tuple[str, dict, str]]) -> str:
    lines = [f"### {title}", "", "| measurement | median | min | max | n | vs. comparison |",
             "|---|---|---|---|---|---|"]
    for name, st, ratio in rows:
        lines.append(f"| {name} | {st['median']:.3f} s | {st['min']:.3f} s | {st['max']:.3f} s "
                     f"| {st['n']} | {ratio} |")
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
    (bare / "tasks.py").write_text("from invoke import task\n\n\n@task\ndef hello(c):\n"
                                   "    pass\n")
    ours = timed(lambda: run(INV, "--list"), repeat)
    base = timed(lambda: run(INV, "--list", cwd=bare), repeat)
    ratio = ours["median"] / base["median"]
    text = table("`inv --list` start-up (bar: 0.3 s median)", [
        ("flops-tasks `inv --list`", ours, f"{ratio:.2f}x bare Invoke"),
        ("bare Invoke `inv --list`", base, "1.00x"),
    ])
    save("startup", {"ours": ours, "bare_invoke": base, "bar_s": 0.3,
                     "bar_met": ours["median"] <= 0.3}, text)


def _testbed(workers: int, prepared: bool) -> object:
    """Bring the testbed to ``workers`` workers; prepare them when asked. -> context."""
    from flops_tasks import cli
    from flops_tasks import testbed as tb

    tb.up(workers=workers, progress=lambda line: print(f"  [testbed] {line}", flush=True))
    ctx = tb.context_for(tb.default_paths())
    if prepared:
        report = cli.prepare(ctx, roles=None, render=False)
        if not report.ok:
            raise SystemExit("preparing the testbed failed: " + "; ".join(
                f"{o.host} {o.step}: {o.detail}" for o in report.outcomes if o.bad))
    return ctx


def _rerun(ctx: object, hosts: int) -> tuple[dict, dict]:
    """One no-change prepare of both roles on the first ``hosts`` workers, in-process."""
    from flops_tasks import cli
    from flops_tasks.ssh import HostSession

    names = ",".join(f"w{i}" for i in range(1, hosts + 1))
    counters: dict[str, int] = {}
    original = HostSession.close

    def counting_close(self: HostSession) -> None:
        counters[self.label] = self.round_trips
        original(self)

    HostSession.close = counting_close
    try:
        report = cli.prepare(ctx, roles={"builder", "learner"}, host=names, render=False)
    finally:
        HostSession.close = original
    if not report.ok or report.changed:
        raise SystemExit(f"re-run on {hosts} hosts was not a clean no-change run")
    return report.to_dict(), counters


def bench_rerun(repeat: int, sizes: list[int]) -> None:
    """No-change re-run of prepare-builder + prepare-learner on 1, 4, 8 prepared workers."""
    ctx = _testbed(max(sizes), prepared=True)
    rows, data = [], {}
    base = None
    for n in sizes:
        counts: dict = {}

        def once(n: int = n, counts: dict = counts) -> None:
            counts.update(_rerun(ctx, n)[1])

        st = timed(once, repeat)
        base = base or st
        ratio = st["median"] / base["median"]
        trips = sorted(set(counts.values()))
        rows.append((f"{n} host(s), in-process, one connection per host", st,
                     f"{ratio:.2f}x 1 host; CPU used: machine {st['machine_cpu_s_median']:.2f} s, "
                     f"controller {st['controller_cpu_s_median']:.2f} s"))
        data[f"hosts_{n}"] = {**st, "ssh_connections_per_host": 1,
                              "round_trips_per_host": trips}
    cli_b = timed(lambda: run(INV, "-f", str(ROOT / ".testbed/invoke.yaml"), "prepare-builder",
                              "--host", "w1"), repeat)
    cli_l = timed(lambda: run(INV, "-f", str(ROOT / ".testbed/invoke.yaml"), "prepare-learner",
                              "--host", "w1"), repeat)
    rows.append(("CLI `inv prepare-builder --host w1` (process start included)", cli_b, ""))
    rows.append(("CLI `inv prepare-learner --host w1` (process start included)", cli_l, ""))
    one = data[f"hosts_{sizes[0]}"]["median"]
    eight = data.get("hosts_8", {}).get("median")
    text = table("No-change re-run, both roles (bars: 1 host <= 1.0 s; 8 hosts <= 1.5x 1 host)",
                 rows) + "\n\nSSH: one connection per host; round trips per host: " + ", ".join(
        f"{k}: {v['round_trips_per_host']}" for k, v in data.items()) + (
        f"\n\nThe machine has {os.cpu_count()} cores and the testbed workers run on them too: "
        "the machine CPU column is the work of the controller and every worker together, so "
        "on this machine a run cannot take less than that divided by the core count.")
    save("rerun", {"sizes": data, "cli_builder_1": cli_b, "cli_learner_1": cli_l,
                   "bar_one_host_met": one <= 1.0,
                   "bar_eight_hosts_met": None if eight is None else eight <= 1.5 * one}, text)


def bench_first(sizes: list[int]) -> None:
    """First-time preparation of fresh workers: total, and the part spent in package installs."""
    from flops_tasks import cli
    from flops_tasks import testbed as tb
    from flops_tasks.ssh import HostSession

    rows, data = [], {}
    for n in sizes:
        tb.down(keep_images=True)
        ctx = _testbed(n, prepared=False)
        installs: dict[str, float] = {}
        original = HostSession.change

        def timed_change(self, command, summary, timeout=None, _orig=original,
                         installs=installs):
            start = time.perf_counter()
            try:
                return _orig(self, command, summary, timeout)
            finally:
                if "apt-get install" in summary:
                    installs[self.label] = installs.get(self.label, 0.0) + \
                        time.perf_counter() - start

        HostSession.change = timed_change
        try:
            start = time.perf_counter()
            report = cli.prepare(ctx, roles=None, render=False)
            total = time.perf_counter() - start
        finally:
            HostSession.change = original
        if not report.ok:
            raise SystemExit("first-time preparation failed")
        slowest_install = max(installs.values(), default=0.0)
        beyond = total - slowest_install
        st = stats([total])
        rows.append((f"{n} fresh worker(s), both roles", st,
                     f"package installs {slowest_install:.1f} s (slowest host); "
                     f"beyond them {beyond:.1f} s"))
        data[f"workers_{n}"] = {"total_s": total, "install_s_per_host": installs,
                                "beyond_installs_s": beyond}
    save("first", data, table("First-time preparation (one run each: it installs packages)",
                              rows))


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

    ours = timed(lambda: run(INV, "-f", str(ROOT / ".testbed/invoke.yaml"), "reset"), repeat)
    base = timed(baseline, repeat)
    tb.push_sidecar(lambda _: None)
    ratio = ours["median"] / base["median"]
    text = table("Reset of a healthy stack until every service is healthy (bar: <= 0.5x)", [
        ("`inv reset`", ours, f"{ratio:.2f}x baseline"),
        ("`docker compose down && up --build -d`, then healthy", base, "1.00x"),
    ])
    save("reset", {"ours": ours, "baseline": base, "ratio": ratio, "bar_met": ratio <= 0.5},
         text)


def bench_memory(hosts: int) -> None:
    """Peak RSS of the `inv` process re-running both preparations on ``hosts`` workers."""
    _testbed(hosts, prepared=True)
    names = ",".join(f"w{i}" for i in range(1, hosts + 1))
    peaks = {}
    for task in ("prepare-builder", "prepare-learner"):
        res = run("/usr/bin/time", "-f", "%M", INV, "-f", str(ROOT / ".testbed/invoke.yaml"),
                  task, "--host", names)
        peaks[task] = int(res.stderr.strip().splitlines()[-1])
    base = run("/usr/bin/time", "-f", "%M", INV, "--list")
    peaks["inv --list"] = int(base.stderr.strip().splitlines()[-1])
    lines = [f"### Peak memory of the `inv` process ({hosts} hosts)", "",
             "| run | peak RSS |", "|---|---|"]
    lines += [f"| `{k}` | {v / 1024:.1f} MiB |" for k, v in peaks.items()]
    save("memory", {"hosts": hosts, "peak_rss_kib": peaks}, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", default="all",
                        choices=["startup", "rerun", "first", "reset", "memory", "all"])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="once each, smallest sizes")
    args = parser.parse_args()
    repeat = 1 if args.smoke else args.repeat
    sizes = [1] if args.smoke else [1, 4, 8]
    todo = ["startup", "rerun", "reset", "memory", "first"] if args.what == "all" \
        else [args.what]
    for what in todo:
        if what == "startup":
            bench_startup(max(repeat, 3) if not args.smoke else 1)
        elif what == "rerun":
            bench_rerun(repeat, sizes)
        elif what == "first":
            bench_first([1] if args.smoke else [1, 4])
        elif what == "reset":
            bench_reset(max(1, repeat // 2) if not args.smoke else 1)
        elif what == "memory":
            bench_memory(1 if args.smoke else 8)


if __name__ == "__main__":
    main()
