"""The FLOps developer's loop: a one-line change until both workers hold the new image.

    python -m bench.dev_images [--repeat N] [--smoke]

On the 2-worker testbed (both with Docker and containerd), the upstream tarball unpacked as
the developer's checkout. Each timed run appends one line to ml_data_server's main.py, then
runs ``inv -f .testbed/invoke.yaml dev-images --component ml-data-server`` until it has built
the image, pushed it to the FLOps registry and imported it on w1 and w2 (containerd namespace
oakestra and Docker: the sidecar's component): the whole loop, as a developer runs it.

- **warm**: after an earlier run (untimed), so the build cache, the compressed-layer cache
  and the workers hold everything but the changed code;
- **cold**: the same with ``--no-cache`` (every layer built again), the compressed-layer cache
  emptied, and the side-loaded images removed from the workers first (``--restore``,
  untimed). The Python bases and the wheelhouse stay: they are made once per machine.

Results go to bench/results/dev-images-<UTC time>.json like every measurement.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bench.__main__ import INV, run, save, table, timed

COMPONENT = "ml-data-server"
MAIN = Path("ml_data_server_package") / "ml_data_server" / "main.py"


def _progress(line: str) -> None:
    print(f"  [testbed] {line}", flush=True)


def bench_dev_images(repeat: int) -> None:
    from flops_tasks import oci
    from flops_tasks import testbed as tb

    tb.up(workers=2, progress=_progress)
    config = str(tb.default_paths().config)
    run(INV, "-f", config, "prepare-learner")  # the learners' Docker trusts the registry
    with tempfile.TemporaryDirectory(prefix="flops-bench-dev-") as tmp:
        root = tb.unpack_upstream(tb.upstream_tarball(), Path(tmp) / "co")
        main = root / MAIN
        count = [0]

        def one_line_change() -> None:
            count[0] += 1
            main.write_text(main.read_text() + f"\n# bench change {count[0]}\n")

        def loop(*flags: str) -> None:
            one_line_change()
            res = run(
                INV,
                "-f",
                config,
                "dev-images",
                "--addon",
                str(root),
                "--component",
                COMPONENT,
                *flags,
                check=False,
            )
            if res.returncode != 0:
                raise SystemExit(f"dev-images failed: {res.stdout[-500:]}{res.stderr[-500:]}")

        def cold() -> None:
            run(INV, "-f", config, "dev-images", "--restore", "--component", COMPONENT)
            shutil.rmtree(oci.default_cache(), ignore_errors=True)
            loop("--no-cache")

        data = {
            "warm": timed(loop, repeat, warmup=1),
            "cold": timed(cold, repeat, warmup=0),
        }
        run(INV, "-f", config, "dev-images", "--restore")
    base = data["cold"]["median"]
    rows = [
        (
            "one-line change -> built, pushed, on 2 workers, warm caches",
            data["warm"],
            f"{data['warm']['median'] / base:.2f}x cold",
        ),
        (
            "the same, cold (--no-cache, empty layer cache, workers without it)",
            data["cold"],
            "1.00x",
        ),
    ]
    text = table(
        f"dev-images loop, {COMPONENT} to 2 workers (containerd + Docker each); bar: warm <= 30 s",
        rows,
    )
    save("dev-images", data, text)


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dev_images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="once each")
    args = parser.parse_args()
    bench_dev_images(1 if args.smoke else args.repeat)


if __name__ == "__main__":
    main()
