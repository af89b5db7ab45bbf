"""The controller's share of a no-change worker check: this tree against a baseline
commit, in one run.

    python -m bench.controller [--baseline REF] [--repeat N] [--hosts N] [--smoke]

Both trees run as ``inv`` processes from one virtual environment that holds the same
dependency versions as this one and no flops-tasks (each tree is imported from its own
folder), alternately, so both see the same machine. The hosts are the testbed's two workers,
prepared first, named as N inventory hosts in turn (n0 is w1, n1 is w2, n2 is w1, ...: one
connection and one check each). ``inv --dry prepare-builder prepare-learner`` checks every
host and changes nothing: on prepared workers that is the no-change run (a dry run reports
exactly what the real run does: tests/integration/test_prepare.py), without the host locks
that would keep two names of one worker from running at once. The controller's CPU is the
``inv`` process's own (``RUSAGE_CHILDREN``); the workers' is read from their cgroups.

Measured: a 1-host run (process start included), the CPU of the 1- and N-host runs, their
difference per host, the projection to 1,000 workers, and ``inv --list``. The projection is
that of ``bench scale``: controller CPU = base + N x per host; round trips = waves x one
host's work (the 1-host run less ``inv --list``, the process start); wall = the larger.
Results go to bench/results/controller-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
import venv
from pathlib import Path

from bench.__main__ import ROOT, WorkerCpu, _testbed, project, save, stats

TARGETS = {"one_host_s": 0.35, "cpu_per_host_s": 0.015, "projection_1000_s": 15.0, "list_s": 0.15}
PARALLEL = 16  # flops.ssh.parallel's default, in both trees


def bench_python() -> Path:
    """A virtual environment with this environment's packages at the same versions, without
    flops-tasks (cached by the list of versions)."""
    freeze = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pins = "".join(
        line + "\n"
        for line in freeze.splitlines()
        if line and not line.lower().startswith(("flops-tasks", "flops_tasks", "-e "))
    )
    key = hashlib.sha256(pins.encode()).hexdigest()[:12]
    folder = Path(os.path.expanduser("~/.cache/flops-tasks")) / f"bench-venv-{key}"
    python = folder / "bin" / "python"
    if not python.exists():
        print(f"  [bench] a virtual environment for both trees: {folder}", flush=True)
        venv.create(folder, with_pip=True)
        reqs = folder / "requirements.txt"
        reqs.write_text(pins)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-r", str(reqs)],
            check=True,
        )
    return python


def baseline_tree(ref: str) -> Path:
    """The baseline commit's files (``git archive``) in a temporary folder."""
    dest = Path(tempfile.mkdtemp(prefix="flops-bench-baseline-"))
    archive = dest.with_suffix(".tar")
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), ref], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    archive.unlink()
    return dest


def config(folder: Path, hosts: int) -> Path:
    """A config of ``hosts`` inventory names over the testbed's workers, in turn."""
    import yaml

    from flops_tasks import testbed as tb

    testbed = yaml.safe_load(tb.default_paths().config.read_text())["flops"]
    workers = sorted(testbed["inventory"].items())
    inventory = {
        f"n{i}": {**workers[i % len(workers)][1], "roles": ["builder", "learner"]}
        for i in range(hosts)
    }
    flops = {
        key: testbed[key] for key in ("ssh", "addresses", "registry", "learner") if key in testbed
    }
    flops["ssh"] = {**flops["ssh"], "parallel": PARALLEL}
    path = folder / f"hosts-{hosts}.yaml"
    path.write_text(yaml.safe_dump({"flops": {**flops, "inventory": inventory}}))
    return path


class Tree:
    def __init__(
        self, name: str, folder: Path, python: Path, state: Path, workers: WorkerCpu
    ) -> None:
        self.name, self.folder, self.python, self.workers = name, folder, python, workers
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
        self.env.update(PYTHONPATH=str(folder), XDG_STATE_HOME=str(state / name))
        self.last_output: str | None = None

    def inv(self, *args: str) -> tuple[float, float, float]:
        """Wall, CPU and the workers' CPU seconds of one ``inv`` process run in this tree."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.workers.start()
        start = time.perf_counter()
        res = subprocess.run(
            [str(self.python), "-m", "invoke", "-r", str(self.folder), *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - start
        machine = sum(self.workers.stop().values())
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if res.returncode not in (0, 1):  # 1: the plan holds changes or a failed check
            raise SystemExit(
                f"{self.name}: inv {' '.join(args)} exited {res.returncode}: "
                f"{(res.stderr or res.stdout).strip()[-600:]}"
            )
        self.last_output = res.stdout
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        return wall, cpu, machine


def check_args(hosts_config: Path) -> list[str]:
    return ["-f", str(hosts_config), "--dry", "prepare-builder", "prepare-learner", "--json"]


def _count_status(node: object, status: str) -> int:
    if isinstance(node, dict):
        own = 1 if node.get("status") == status else 0
        return own + sum(_count_status(v, status) for v in node.values())
    if isinstance(node, list):
        return sum(_count_status(v, status) for v in node)
    return 0


def ssh_counts(output: str) -> dict[str, float | None]:
    """Handshakes and round trips per host and run, and the hosts not reached, from the
    run's JSON (one document per run, or one per task in older trees)."""
    import json

    decoder, docs, at = json.JSONDecoder(), [], 0
    while True:
        start = output.find("{", at)
        if start < 0:
            break
        doc, at = decoder.raw_decode(output, start)
        docs.append(doc)
    per_host: dict[str, dict[str, int]] = {}
    unreachable = 0
    for doc in docs:
        for host, n in (doc.get("ssh") or {}).items():
            mine = per_host.setdefault(host, {"handshakes": 0, "round_trips": 0})
            mine["handshakes"] += n.get("handshakes", 0)
            mine["round_trips"] += n.get("round_trips", 0)
        unreachable += _count_status(doc, "unreachable")
    hosts = max(1, len(per_host))
    if not per_host:  # a tree whose JSON does not count them
        return {"handshakes_per_host": None, "round_trips_per_host": None, "unreachable_rows": 0}
    return {
        "handshakes_per_host": sum(n["handshakes"] for n in per_host.values()) / hosts,
        "round_trips_per_host": sum(n["round_trips"] for n in per_host.values()) / hosts,
        "unreachable_rows": unreachable,
    }


def measure(trees: list[Tree], args: list[str], repeat: int) -> dict[str, dict]:
    """``args`` in every tree, ``repeat`` times, alternating trees (one warm-up each)."""
    walls: dict[str, list[float]] = {t.name: [] for t in trees}
    cpus: dict[str, list[float]] = {t.name: [] for t in trees}
    others: dict[str, list[float]] = {t.name: [] for t in trees}
    for t in trees:
        t.inv(*args)
    for _ in range(repeat):
        for t in trees:
            wall, cpu, machine = t.inv(*args)
            walls[t.name].append(wall)
            cpus[t.name].append(cpu)
            others[t.name].append(machine)
    counts = {t.name: ssh_counts(t.last_output or "") for t in trees}
    for name, c in counts.items():
        if c["unreachable_rows"]:
            raise SystemExit(f"{name}: {c['unreachable_rows']} host(s) unreachable: no measure")
    return {
        t.name: {
            "wall": stats(walls[t.name]),
            "cpu": stats(cpus[t.name]),
            # the workers' cgroups: sshd, shells, probes and daemons, for all hosts
            "worker_cpu": stats(others[t.name]),
            "ssh": counts[t.name],
        }
        for t in trees
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.controller",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--baseline", default="57813f6", help="the commit to compare with")
    parser.add_argument("--repeat", type=int, default=10, help="runs of the 1-host check")
    parser.add_argument("--hosts", type=int, default=32, help="the large run's hosts")
    parser.add_argument("--smoke", action="store_true", help="2 runs, 4 hosts")
    args = parser.parse_args()
    repeat, hosts = (2, 4) if args.smoke else (args.repeat, args.hosts)
    work = Path(tempfile.mkdtemp(prefix="flops-bench-controller-"))
    python = bench_python()
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    _testbed(2, prepared=True)  # both workers prepared: the checks change nothing
    workers = WorkerCpu(2)
    trees = [
        Tree(f"baseline {args.baseline}", baseline_tree(args.baseline), python, work, workers),
        Tree(f"this tree ({sha or 'HEAD'})", ROOT, python, work, workers),
    ]
    one = measure(trees, check_args(config(work, 1)), repeat)
    many = measure(trees, check_args(config(work, hosts)), max(2, repeat // 3))
    listing = measure(trees, ["--list"], repeat)

    data: dict = {"baseline": args.baseline, "hosts": hosts, "targets": TARGETS, "trees": {}}
    for t in trees:
        o, m, ls = one[t.name], many[t.name], listing[t.name]
        per_host = (m["cpu"]["median"] - o["cpu"]["median"]) / (hosts - 1)
        base = o["cpu"]["median"] - per_host
        data["trees"][t.name] = {
            "one_host": o,
            f"hosts_{hosts}": m,
            "list": ls,
            "cpu_per_host_s": per_host,
            "base_cpu_s": base,
            # one host's work: the 1-host run less the process start (inv --list)
            "projection_1000": project(
                1000, PARALLEL, o["wall"]["median"] - ls["wall"]["median"], base, per_host
            ),
        }
    names = [t.name for t in trees]
    rows = [
        (
            "`inv` no-change check, 1 host, wall (process start included)",
            "one_host_s",
            lambda d: d["one_host"]["wall"]["median"],
            "s",
        ),
        ("controller CPU, 1 host", None, lambda d: d["one_host"]["cpu"]["median"], "s"),
        (
            f"controller CPU, {hosts} hosts",
            None,
            lambda d: d[f"hosts_{hosts}"]["cpu"]["median"],
            "s",
        ),
        ("controller CPU per host", "cpu_per_host_s", lambda d: d["cpu_per_host_s"], "s"),
        (
            "projected controller CPU, 1,000 workers",
            None,
            lambda d: d["projection_1000"]["controller_cpu_s"],
            "s",
        ),
        (
            "projected wall, 1,000 workers",
            "projection_1000_s",
            lambda d: d["projection_1000"]["wall_s"],
            "s",
        ),
        (
            f"worker CPU per host ({hosts}-host run, the workers' cgroups)",
            None,
            lambda d: d[f"hosts_{hosts}"]["worker_cpu"]["median"] / hosts,
            "s",
        ),
        (
            "SSH handshakes per host and run",
            None,
            lambda d: d[f"hosts_{hosts}"]["ssh"]["handshakes_per_host"],
            "",
        ),
        (
            f"wall, {hosts} hosts",
            None,
            lambda d: d[f"hosts_{hosts}"]["wall"]["median"],
            "s",
        ),
        ("`inv --list`, wall", "list_s", lambda d: d["list"]["wall"]["median"], "s"),
    ]
    lines = [
        f"### The controller's share: {names[1]} vs {names[0]} (medians; 1 host x {repeat}, "
        f"{hosts} hosts x {max(2, repeat // 3)}, alternating)",
        "",
        f"| measurement | {names[0]} | {names[1]} | ratio | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for title, target, get, unit in rows:
        a, b = (get(data["trees"][n]) for n in names)
        if a is None or b is None:
            shown = ["-" if v is None else f"{v:.3f} {unit}" for v in (a, b)]
            lines.append(f"| {title} | {shown[0]} | {shown[1]} | - | - | - |")
            continue
        goal = TARGETS.get(target) if target else None
        lines.append(
            f"| {title} | {a:.3f} {unit} | {b:.3f} {unit} | {f'{b / a:.2f}x' if a else '-'} | "
            f"{'<= ' + format(goal, 'g') + ' ' + unit if goal else '-'} | "
            f"{('yes' if b <= goal else 'no') if goal else '-'} |"
        )
    save("controller", data, "\n".join(lines))


if __name__ == "__main__":
    main()
