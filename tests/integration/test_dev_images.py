"""dev-images on the testbed: FLOps' own images from a developer's checkout, run by workers.

The upstream tarball, unpacked, is the developer's checkout; each component's ``main.py``
gets a marker line (printed once its imports succeeded). The testbed config builds offline
(``flops.addon.build: offline``): the recipes in compose/dev/ on debootstrap bases with a
wheelhouse. Workers: w1 with Docker (prepared as a learner: its Docker trusts the registry),
w2 with containerd only. Each image is built once per run; the arm64 variant only for
ml-data-server. Runs follow each other in this module (module-scoped state).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from .helpers import TESTBED_CONFIG, in_worker, inv, worker

pytestmark = pytest.mark.integration

GH = "ghcr.io/oakestra/addon-flops/"
MDS, MDP = "ml-data-server", "mock-data-provider"
BOTH = f"{MDP},{MDS}"
TIMES: dict[str, float] = {}


def marked(path: Path, line: str) -> None:
    """Insert ``line`` before the ``if __name__ == "__main__":`` block of ``path``."""
    text = path.read_text()
    head, sep, tail = text.partition('if __name__ == "__main__":')
    assert sep, f"{path} has no __main__ block"
    path.write_text(f"{head}{line}\n\n\n{sep}{tail}")


@pytest.fixture(scope="module")
def dev(fresh_mixed, tmp_path_factory):
    from flops_tasks import testbed as tb

    started = time.monotonic()
    root = tb.unpack_upstream(tb.upstream_tarball(), tmp_path_factory.mktemp("dev") / "co")
    token = uuid.uuid4().hex[:10]
    marks = {MDP: f"flops-dev-marker {MDP} {token}", MDS: f"flops-dev-marker {MDS} {token}"}
    marked(
        root / "mock_data_provider_package" / "mock_data_provider" / "main.py",
        f"print({marks[MDP]!r}, flush=True)",
    )
    marked(
        root / "ml_data_server_package" / "ml_data_server" / "main.py",
        f"print({marks[MDS]!r}, flush=True)",
    )
    res = inv("prepare-learner", "--host", "w1", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    TIMES["setup: unpack, prepare-learner w1"] = time.monotonic() - started
    yield {
        "root": root,
        "marks": marks,
        "registry": f"{fresh_mixed['gateway']}:5073",
        "kinds": {w["name"]: w["kind"] for w in fresh_mixed["workers"]},
    }
    print("\n[dev-images] times: " + ", ".join(f"{k} {v:.0f}s" for k, v in TIMES.items()))
    _forget_checkout(root)


def _forget_checkout(root: Path) -> None:
    """Drop this temporary checkout from the state file dev-images keeps in the project."""
    from flops_tasks import devimages
    from flops_tasks.config import settings
    from flops_tasks.testbed import context_for, default_paths

    path = devimages.state_path(settings(context_for(default_paths())))
    data = devimages.read_state(path)
    for entry in data.values():
        entry.pop(str(root.resolve()), None)
    if data:
        path.write_text(json.dumps({k: v for k, v in data.items() if v}, indent=1))


def dev_images(label: str, *args: str, dry: bool = False) -> tuple[int, dict]:
    started = time.monotonic()
    res = inv(*(["--dry"] if dry else []), "dev-images", *args, "--json", timeout=3600)
    TIMES[label] = time.monotonic() - started
    assert "Traceback" not in res.stderr, res.stderr
    try:
        return res.returncode, json.loads(res.stdout)
    except ValueError:
        raise AssertionError(f"no JSON: {res.stdout}{res.stderr}") from None


def rows(report: dict) -> list[tuple[str, str, str]]:
    return [
        (host, step["step"], step["status"])
        for host, data in report["hosts"].items()
        for step in data["steps"]
    ]


def details(report: dict, host: str, step: str) -> str:
    return next(s["detail"] for s in report["hosts"][host]["steps"] if s["step"] == step)


def ctr_images(name: str) -> dict[str, str]:
    """FLOps' public names in w's containerd namespace oakestra -> target digest."""
    out = in_worker(name, "ctr -n oakestra images ls").stdout
    return {
        line.split()[0]: line.split()[2] for line in out.splitlines()[1:] if line.startswith(GH)
    }


def index(registry: str, component: str, tag: str) -> tuple[str, list[str]]:
    from flops_tasks import oci

    found = oci.read_index(oci.Registry(registry), f"flops-dev/{component}", tag)
    assert found is not None, f"no flops-dev/{component}:{tag} in {registry}"
    return found[0], sorted(e.name for e in found[1])


def tag_of(report: dict, component: str) -> str:
    match = re.search(r":(dev-[0-9a-f]{16})", details(report, "local", component))
    assert match, details(report, "local", component)
    return match.group(1)


STATE: dict[str, dict] = {}


def test_a_dry_run_plans_what_the_run_then_does(dev):
    """ml-data-server for both workers (and arm64): the dry run's rows are the run's rows."""
    args = ("--addon", str(dev["root"]), "--component", MDS, "--platform", "linux/arm64")
    code, planned = dev_images("dry run (ml-data-server)", *args, dry=True)
    assert code == 0, planned
    expected = [
        ("local", MDS, "changed"),
        ("w1", MDS, "changed"),
        ("w2", MDS, "changed"),
    ]
    assert rows(planned) == expected
    assert ctr_images(worker(1)) == {} and ctr_images(worker(2)) == {}  # nothing imported
    with urllib.request.urlopen(f"http://{dev['registry']}/v2/_catalog", timeout=10) as resp:
        assert not [r for r in json.load(resp)["repositories"] if r.startswith("flops-dev/")]

    code, done = dev_images("build + push + import ml-data-server (amd64, arm64)", *args)
    assert code == 0, done
    assert rows(done) == expected
    STATE["mds"] = done
    tag = tag_of(done, MDS)
    digest, platforms = index(dev["registry"], MDS, tag)
    assert platforms == ["linux/amd64", "linux/arm64"]
    assert f"= {digest}" in details(done, "local", MDS)
    assert "into containerd oakestra and Docker" in details(done, "w1", MDS)
    assert "into containerd oakestra;" in details(done, "w2", MDS)  # no Docker there
    for w in (1, 2):
        assert ctr_images(worker(w))[f"{GH}{MDS}:latest"] == digest


def test_mock_data_provider_goes_to_both_workers(dev):
    code, done = dev_images(
        "build + push + import mock-data-provider (amd64)",
        "--addon",
        str(dev["root"]),
        "--component",
        MDP,
    )
    assert code == 0, done
    assert rows(done) == [("local", MDP, "changed"), ("w1", MDP, "changed"), ("w2", MDP, "changed")]
    digest, platforms = index(dev["registry"], MDP, tag_of(done, MDP))
    assert platforms == ["linux/amd64"]
    STATE["mdp"] = done
    for w in (1, 2):
        assert ctr_images(worker(w))[f"{GH}{MDP}:latest"] == digest


@pytest.mark.parametrize("w", [1, 2])
def test_ctr_runs_the_developers_code_on_each_worker(dev, w):
    """NodeEngine's way: containerd namespace oakestra, the public name, FLOps' own command."""
    run_id = f"devtest-{uuid.uuid4().hex[:6]}"
    # the manager starts mock-data-provider with "poetry run python main.py DATASET N TAG"
    res = in_worker(
        worker(w),
        f"ctr -n oakestra run --rm {GH}{MDP}:latest {run_id} poetry run python main.py 2>&1",
        check=False,
    )
    assert dev["marks"][MDP] in res.stdout, res.stdout + res.stderr
    assert "the following arguments are required: dataset_name" in res.stdout  # its argparse
    res = in_worker(
        worker(w),
        f"ctr -n oakestra run --rm {GH}{MDS}:latest {run_id}b python -c 'import main' 2>&1",
    )
    assert dev["marks"][MDS] in res.stdout, res.stdout


def test_docker_runs_the_developers_sidecar_on_the_docker_worker(dev):
    res = in_worker(
        worker(1),
        f"docker run --rm {GH}{MDS}:latest python -c 'import main' 2>&1; "
        f"docker image inspect --format '{{{{json .Config.Labels}}}}' {GH}{MDS}:latest",
    )
    assert dev["marks"][MDS] in res.stdout, res.stdout
    tag = tag_of(STATE["mds"], MDS)
    assert f'"org.flops-tasks.dev-source":"{tag[4:]}"' in res.stdout


def test_the_arm64_variant_is_in_the_index_and_runs_under_qemu(dev):
    digest, platforms = index(dev["registry"], MDS, tag_of(STATE["mds"], MDS))
    assert "linux/arm64" in platforms
    ref = f"127.0.0.1:5073/flops-dev/{MDS}@{digest}"  # the registry as this host reaches it
    try:
        res = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--platform",
                "linux/arm64",
                ref,
                "python",
                "-c",
                "import platform, main; print(platform.machine())",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        assert dev["marks"][MDS] in res.stdout and res.stdout.split()[-1] == "aarch64"
    finally:
        subprocess.run(["docker", "image", "rm", ref], capture_output=True)


def test_a_second_run_with_unchanged_sources_does_nothing_and_says_so(dev):
    before = {w: ctr_images(worker(w)) for w in (1, 2)}
    code, again = dev_images(
        "second run, unchanged (both)", "--addon", str(dev["root"]), "--component", BOTH
    )
    assert code == 0, again
    assert {status for _, _, status in rows(again)} == {"ok"}, rows(again)
    for component in (MDP, MDS):
        assert "nothing built or pushed" in details(again, "local", component)
        for host in ("w1", "w2"):
            assert "nothing imported" in details(again, host, component)
    assert {w: ctr_images(worker(w)) for w in (1, 2)} == before
    # without --component: only what changed since the last run, i.e. nothing
    code, default = dev_images("default run, nothing changed", "--addon", str(dev["root"]))
    assert code == 0 and rows(default) == [("local", "changes", "ok")], default
    assert "no component changed since the last run" in details(default, "local", "changes")


def test_doctor_warns_for_each_side_loaded_image(dev):
    res = inv("doctor", "--json")
    report = json.loads(res.stdout)
    for host in ("w1", "w2"):
        warned = [s for s in report["hosts"][host]["steps"] if s["step"] == "side-loaded"]
        assert sorted(s["detail"].split(":")[0] for s in warned) == sorted([MDP, MDS]), warned
        assert all(s["status"] == "warning" for s in warned)
        source = tag_of(STATE["mds"], MDS)[4:]
        assert any(f"source {source}" in s["detail"] for s in warned)


def test_restore_goes_back_to_the_public_images(dev):
    code, planned = dev_images("restore --dry", "--restore", dry=True)
    assert code == 0, planned
    code, restored = dev_images("restore", "--restore")
    assert code == 0, restored
    assert rows(restored) == rows(planned)
    changed = {(h, s) for h, s, status in rows(restored) if status == "changed"}
    assert changed == {(h, c) for h in ("w1", "w2") for c in (MDP, MDS)}
    assert ctr_images(worker(1)) == {} and ctr_images(worker(2)) == {}
    left = in_worker(worker(1), f"docker image ls -q {GH}{MDS}").stdout.strip()
    assert left == ""
    report = json.loads(inv("doctor", "--json").stdout)
    for host in ("w1", "w2"):
        assert not [s for s in report["hosts"][host]["steps"] if s["step"] == "side-loaded"]
    code, again = dev_images("restore again", "--restore")
    assert code == 0 and {s for _, _, s in rows(again)} == {"ok"}, again


def test_the_manager_is_rebuilt_from_the_checkout_with_data_kept(dev, tmp_path):
    """flops.addon.path at the developer's checkout: reset --service flops_manager --build
    rebuilds and restarts only the manager, from that checkout, and every store keeps its
    data."""
    from .stores import ALL, Stores

    marker = f"flops-dev-manager-{uuid.uuid4().hex[:8]}"
    init = dev["root"] / "flops_manager_package" / "flops_manager" / "__init__.py"
    init.write_text(init.read_text() + f"\nDEV_MARKER = {marker!r}\n")
    config = yaml.safe_load(TESTBED_CONFIG.read_text())
    config["flops"]["addon"]["path"] = str(dev["root"])
    mine = tmp_path / "dev.yaml"
    mine.write_text(yaml.safe_dump(config))
    stores = Stores(tmp_path)
    stores.write_all()
    before = stores.where.container_ids()
    started = time.monotonic()
    res = inv(
        "-f", str(mine), "reset", "--service", "flops_manager", "--build", "--json", testbed=False
    )
    TIMES["reset --service flops_manager --build"] = time.monotonic() - started
    assert res.returncode == 0, res.stdout + res.stderr
    after = stores.where.container_ids()
    assert {k for k in before if before[k] != after.get(k)} == {("local", "flops_manager")}
    got = subprocess.run(
        [
            "docker",
            "exec",
            "flops_manager",
            "python",
            "-c",
            "import flops_manager; print(flops_manager.DEV_MARKER)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert got.stdout.strip() == marker, got.stdout + got.stderr
    assert stores.held() == ALL
