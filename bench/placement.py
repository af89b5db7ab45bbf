"""`up` and no-change `doctor` with the suite on the local engine vs placed on a worker.

    python -m bench.placement [--repeat N] [--smoke]

The testbed's three configs: ``local`` (everything on this engine), ``split`` (registry and
FTP store on worker w1's dockerd) and ``remote`` (everything on w1), reached through
Docker's SSH transport. ``up`` is timed from a stopped suite (``inv down`` before each run,
not timed) until every service is healthy; ``doctor`` on the running suite, changing
nothing. Results go to bench/results/placement-<UTC time>.json like every measurement.
"""

from __future__ import annotations

import argparse
import subprocess

from bench.__main__ import INV, run, save, table, timed


def _progress(line: str) -> None:
    print(f"  [testbed] {line}", flush=True)


def inv(config: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(INV, "-f", config, *args, check=check)


def bench_placement(repeat: int, names: tuple[str, ...] = ("local", "split", "remote")) -> None:
    from flops_tasks import testbed as tb

    tb.up(workers=2, progress=_progress)
    paths = tb.default_paths()
    configs = {
        "local": str(paths.config),
        **{name: str(paths.placement_config(name)) for name in tb.PLACEMENTS},
    }
    data: dict[str, dict] = {}
    for name in names:
        if name != "local":
            tb.up_placement(name, progress=_progress)  # images on w1, built once
        config = configs[name]
        inv(config, "up")

        def up(config: str = config, name: str = name) -> None:
            inv(config, "down")
            res = inv(config, "up", check=False)
            if res.returncode != 0:
                raise SystemExit(f"inv up ({name}) failed: {res.stderr.strip()}")

        data[f"{name}_up"] = timed(up, repeat, warmup=0)
        data[f"{name}_doctor"] = timed(
            lambda config=config: inv(config, "doctor", check=False), repeat
        )
        print(
            f"  {name}: up {data[f'{name}_up']['median']:.1f} s, doctor "
            f"{data[f'{name}_doctor']['median']:.2f} s",
            flush=True,
        )
    inv(configs["local"], "up")  # everything back on the local engine
    tb.push_sidecar(lambda _: None)
    rows = []
    for task in ("up", "doctor"):
        base = data[f"local_{task}"]["median"]
        for name in names:
            st = data[f"{name}_{task}"]
            where = {
                "local": "all on the local engine",
                "split": "registry + FTP store on w1",
                "remote": "all on w1",
            }[name]
            rows.append(
                (f"`inv {task}`, {name} ({where})", st, f"{st['median'] / base:.2f}x local")
            )
    text = table(
        "The suite placed on other hosts: `up` from a stopped suite and no-change "
        "`doctor` (worker w1 reached through Docker's SSH transport)",
        rows,
    )
    save("placement", data, text)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.placement",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="once each")
    parser.add_argument(
        "--only",
        choices=["split", "remote"],
        action="append",
        help="these placements (besides local, the comparison)",
    )
    args = parser.parse_args()
    bench_placement(
        1 if args.smoke else args.repeat, ("local", *(args.only or ("split", "remote")))
    )


if __name__ == "__main__":
    main()
