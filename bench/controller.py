"""The controller's share of a worker check: this tree against a baseline commit, in one run.

    python -m bench.controller [--baseline REF] [--repeat N] [--hosts N] [--smoke]

Both trees run as ``inv`` processes from one virtual environment that holds the same
dependency versions as this one and no flops-tasks (each tree is imported from its own
folder), alternately, so both see the same machine. The workers are one real OpenSSH server
on loopback, named as N inventory hosts (127.0.0.1 and 127.0.0.2 in turn, one connection
each): ``inv --dry prepare-builder prepare-learner`` connects to every host, runs the real
probes on this machine as root and changes nothing. The controller's CPU is the ``inv``
process's own (``RUSAGE_CHILDREN``): sshd and the probes are other processes.

Measured: a 1-host run (process start included), the CPU of the 1- and N-host runs, their
difference per host, the projection to 1,000 workers (the formula of ``bench scale``:
controller CPU = base + N x per host, wall = max(waves x one host's wall, that CPU)) and
``inv --list``. Results go to bench/results/controller-<UTC time>.json.
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

from bench.__main__ import ROOT, save, stats

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


def config(folder: Path, sshd, hosts: int) -> Path:
    kind, key = sshd.host_pub.read_text().split()[:2]
    known_hosts = folder / "known_hosts"
    known_hosts.write_text("".join(f"[127.0.0.{i}]:{sshd.port} {kind} {key}\n" for i in (1, 2)))
    inventory = "".join(
        f"    n{i}: {{host: 127.0.0.{1 + i % 2}, user: root, port: {sshd.port}, "
        "roles: [builder, learner]}\n"
        for i in range(hosts)
    )
    path = folder / f"hosts-{hosts}.yaml"
    path.write_text(
        "flops:\n"
        f"  ssh: {{key: {sshd.client_key}, known_hosts: {known_hosts}, host_keys: strict, "
        f"parallel: {PARALLEL}}}\n"
        f"  inventory:\n{inventory}"
    )
    return path


class Tree:
    def __init__(self, name: str, folder: Path, python: Path, state: Path) -> None:
        self.name, self.folder, self.python = name, folder, python
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKE_")}
        self.env.update(PYTHONPATH=str(folder), XDG_STATE_HOME=str(state / name))
        self.last_output: str | None = None

    def inv(self, *args: str) -> tuple[float, float]:
        """Wall and CPU seconds of one ``inv`` process run in this tree."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
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
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if res.returncode not in (0, 1):  # 1: the plan holds changes or a failed check
            raise SystemExit(
                f"{self.name}: inv {' '.join(args)} exited {res.returncode}: "
                f"{(res.stderr or res.stdout).strip()[-600:]}"
            )
        if self.last_output is None:
            self.last_output = res.stdout
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        return wall, cpu


def check_args(hosts_config: Path) -> list[str]:
    return ["-f", str(hosts_config), "--dry", "prepare-builder", "prepare-learner"]


def measure(trees: list[Tree], args: list[str], repeat: int) -> dict[str, dict]:
    """``args`` in every tree, ``repeat`` times, alternating trees (one warm-up each)."""
    walls: dict[str, list[float]] = {t.name: [] for t in trees}
    cpus: dict[str, list[float]] = {t.name: [] for t in trees}
    for t in trees:
        t.inv(*args)
    for _ in range(repeat):
        for t in trees:
            wall, cpu = t.inv(*args)
            walls[t.name].append(wall)
            cpus[t.name].append(cpu)
    return {t.name: {"wall": stats(walls[t.name]), "cpu": stats(cpus[t.name])} for t in trees}


def projection(one_host_s: float, base_cpu: float, per_host: float, n: int = 1000) -> dict:
    waves = -(-n // PARALLEL)
    cpu = base_cpu + n * per_host
    return {
        "workers": n,
        "waves": waves,
        "controller_cpu_s": cpu,
        "wall_s": max(waves * one_host_s, cpu),
        "bound": "controller CPU" if cpu > waves * one_host_s else "round trips",
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
    sys.path.insert(0, str(ROOT))
    from tests.integration.sshd import start_sshd

    work = Path(tempfile.mkdtemp(prefix="flops-bench-controller-"))
    python = bench_python()
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    trees = [
        Tree(f"baseline {args.baseline}", baseline_tree(args.baseline), python, work),
        Tree(f"this tree ({sha or 'HEAD'})", ROOT, python, work),
    ]
    sshd = start_sshd(work / "sshd", extra="ListenAddress 127.0.0.2\nMaxStartups 200\n")
    try:
        one = measure(trees, check_args(config(work, sshd, 1)), repeat)
        many = measure(trees, check_args(config(work, sshd, hosts)), max(2, repeat // 3))
    finally:
        sshd.stop()
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
            "projection_1000": projection(o["wall"]["median"], base, per_host),
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
            "projected wall, 1,000 workers",
            "projection_1000_s",
            lambda d: d["projection_1000"]["wall_s"],
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
        goal = TARGETS.get(target) if target else None
        lines.append(
            f"| {title} | {a:.3f} {unit} | {b:.3f} {unit} | {b / a:.2f}x | "
            f"{'<= ' + format(goal, 'g') + ' ' + unit if goal else '-'} | "
            f"{('yes' if b <= goal else 'no') if goal else '-'} |"
        )
    save("controller", data, "\n".join(lines))


if __name__ == "__main__":
    main()
