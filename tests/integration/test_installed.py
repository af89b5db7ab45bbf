"""The package installed outside the checkout: a wheel built from the project (and one
from its git URL), installed into a fresh virtual environment, run as ``flops`` from an
empty folder: ``--version``, ``--list``, ``env``, then ``testbed.up --workers 1``,
``bootstrap`` and ``doctor`` against that testbed, and ``testbed.down``.

Its state directory is a temporary one (``XDG_STATE_HOME``), so its testbed belongs to
that directory (``paths.installation_id``), not to this checkout: this checkout's testbed,
when up, is taken down first (container names are fixed: one testbed per engine) and
brought up again afterwards. Built images are reused through Docker's build cache and the
base images' tags; upstream's source is the tarball the checkout's testbed uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from flops_tasks import testbed as tb

from .helpers import ROOT

pytestmark = pytest.mark.integration


def _progress(line: str) -> None:
    print(f"[installed] {line}", flush=True)


def run(*args: str, cwd: Path, env: dict | None = None, timeout: float = 900):
    """``args`` in ``cwd`` with ``env`` (the whole environment; default: this one)."""
    started = time.monotonic()
    res = subprocess.run(
        args,
        cwd=cwd,
        env={**(os.environ if env is None else env), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )
    _progress(
        f"{' '.join(Path(a).name if '/' in a else a for a in args[:3])}: "
        f"exit {res.returncode} in {time.monotonic() - started:.1f} s"
    )
    return res


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    res = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "-q",
        "-w",
        str(out),
        str(ROOT),
        cwd=out,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    (found,) = out.glob("flops_tasks-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict:
    """A fresh virtual environment with the wheel, an empty folder to run in, a state
    directory of its own."""
    root = tmp_path_factory.mktemp("installed")
    venv = root / "venv"
    res = run(sys.executable, "-m", "venv", str(venv), cwd=root)
    assert res.returncode == 0, res.stderr
    res = run(str(venv / "bin" / "pip"), "install", "-q", str(wheel), cwd=root, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    folder = root / "empty"
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INVOKE_", "XDG_STATE"))}
    env.update(
        PATH=f"{venv / 'bin'}:{os.environ['PATH']}",
        XDG_STATE_HOME=str(root / "state"),
        VIRTUAL_ENV=str(venv),
    )
    tarball = tb.upstream_tarball()
    if tarball.is_file():
        env[tb.UPSTREAM_VAR] = str(tarball)
    return {"flops": str(venv / "bin" / "flops"), "folder": folder, "env": env, "root": root}


def flops(installed: dict, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return run(
        installed["flops"], *args, cwd=installed["folder"], env=installed["env"], timeout=timeout
    )


def test_the_wheel_holds_the_compose_and_testbed_files(wheel):
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "compose", "testbed"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in tracked if f"flops_tasks/data/{f}" not in names]
    assert not missing, missing
    assert "flops_tasks/collection.py" in names
    assert not [n for n in names if "/.build/" in n or n.endswith(".env")]


def test_a_wheel_from_the_git_url_holds_the_same_files(wheel, tmp_path):
    res = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "-q",
        "-w",
        str(tmp_path),
        f"git+file://{ROOT}",
        cwd=tmp_path,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    (from_git,) = tmp_path.glob("flops_tasks-*.whl")
    files = {n for n in zipfile.ZipFile(from_git).namelist() if ".dist-info/" not in n}
    here = {n for n in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in n}
    assert {n for n in files if "/data/" in n} == {n for n in here if "/data/" in n}
    assert "flops_tasks/program.py" in files


def test_flops_lists_its_tasks_and_says_its_version_from_an_empty_folder(installed):
    res = flops(installed, "--version")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("flops 0.") and tb.DEFAULTS["addon"]["ref"] in res.stdout
    res = flops(installed, "--list")
    assert res.returncode == 0, res.stderr
    for name in ("bootstrap", "doctor", "env", "testbed.up", "testbed.down", "demo"):
        assert name in res.stdout
    res = flops(installed, "env")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SYSTEM_MANAGER_IP" in res.stdout and "flops up' writes these values" in res.stdout
    assert list(installed["folder"].iterdir()) == []  # nothing written where it runs


@pytest.fixture(scope="module")
def engine_to_ourselves():
    """This checkout's testbed down for the module (fixed container names), and up again
    after it when it was up before."""
    was_up = bool(tb.labelled()["containers"])
    if was_up:
        tb.down(keep_images=True, progress=_progress)
    yield
    if was_up:
        tb.up(workers=2, progress=_progress)


def test_the_installed_package_runs_the_testbed_bootstrap_and_doctor(
    installed, engine_to_ourselves
):
    started = time.monotonic()
    try:
        res = flops(installed, "testbed.up", "--workers", "1", "--json", timeout=1800)
        assert res.returncode == 0, res.stdout + res.stderr
        summary = json.loads(res.stdout)
        config = Path(summary["config"])
        state = installed["root"] / "state" / "flops-tasks"
        assert config.is_file() and config.is_relative_to(state / "testbed")
        res = flops(installed, "-f", str(config), "bootstrap", timeout=1800)
        assert res.returncode == 0, res.stdout + res.stderr
        res = flops(installed, "-f", str(config), "doctor", "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        hosts = json.loads(res.stdout)["hosts"]
        assert hosts["w1"]["status"] == "ok" and hosts["stack"]["status"] == "ok", hosts
        assert list(installed["folder"].iterdir()) == []
    finally:
        res = flops(installed, "testbed.down", "--json")
        _progress(f"installed testbed: {time.monotonic() - started:.0f} s in all")
    assert res.returncode == 0, res.stdout + res.stderr
    owner = run(
        str(Path(installed["flops"]).with_name("python")),
        "-c",
        "from flops_tasks.paths import installation_id; print(installation_id())",
        cwd=installed["folder"],
        env=installed["env"],
    ).stdout.strip()
    assert owner and owner != tb.TESTBED_ID  # its own testbed, not this checkout's
    from python_on_whales import docker

    flt = [("label", f"{tb.LABEL}={owner}")]
    left = [
        *docker.container.list(all=True, filters=flt),
        *docker.volume.list(filters=flt),
        *docker.network.list(filters=flt),
        *docker.image.list(filters=flt),
    ]
    assert not left, left
