import os
import shutil
from pathlib import Path

import pytest

from .sshd import running_as_root, start_sshd


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    if not shutil.which("sshd") and not shutil.which("/usr/sbin/sshd"):
        pytest.fail("OpenSSH server (sshd) is not installed: run .ci/setup")
    if not running_as_root():
        pytest.skip("the loopback sshd logs in as the current user only when run as root")
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


_state = {"workers_touched": False}


def _progress(line: str) -> None:
    print(f"[testbed] {line}", flush=True)


def _new_testbed(kinds: list[str] | None = None) -> dict:
    """Remove the testbed (built images kept) and bring up two new workers."""
    from flops_tasks import testbed as tb

    tb.down(keep_images=True)
    return tb.up(workers=2, kinds=kinds, progress=_progress)


@pytest.fixture(scope="session")
def testbed():
    """A fresh 2-worker testbed for this session (built images are reused).

    When the session ends, ``testbed.down`` removes it, images included, and that is checked:
    exactly this checkout's labelled objects go; an unlabelled volume and another checkout's
    testbed volume stay. FLOPS_KEEP_TESTBED=1 keeps everything for the next run instead.
    """
    summary = _new_testbed()
    _state["workers_touched"] = False
    yield summary
    if os.environ.get("FLOPS_KEEP_TESTBED") == "1":
        return
    _testbed_down_removes_exactly_its_own()


def _testbed_down_removes_exactly_its_own() -> None:
    from python_on_whales import docker

    from flops_tasks import testbed as tb

    from .helpers import inv

    keep = docker.volume.create(labels={"org.example.keep": "1"})
    other = docker.volume.create(labels={tb.LABEL: tb.checkout_id(Path("/elsewhere"))})
    try:
        res = inv("testbed.down", "--json", testbed=False)
        assert res.returncode == 0, res.stdout + res.stderr
        assert tb.labelled() == {"containers": [], "volumes": [], "networks": [], "images": []}
        assert not tb.default_paths().root.exists()
        assert docker.volume.exists(keep.name) and docker.volume.exists(other.name)
    finally:
        docker.volume.remove([keep, other])


@pytest.fixture(scope="module")
def fresh(testbed):
    """Workers as new for a module that changes them (recreated if an earlier module did)."""
    summary = _new_testbed() if _state["workers_touched"] else testbed
    _state["workers_touched"] = True
    return summary


@pytest.fixture(scope="module")
def fresh_mixed(testbed):
    """New workers of both kinds for a module: w1 Docker (builder and learner), w2 containerd
    only (builder). Afterwards w2 is a Docker worker again, as the session's testbed has it."""
    from flops_tasks import testbed as tb

    summary = _new_testbed(["docker", "containerd"])
    _state["workers_touched"] = True
    yield summary
    tb.up(workers=2, progress=_progress)


@pytest.fixture(scope="session")
def tb_ctx(testbed):
    """An Invoke context that sees what `inv -f <the testbed's invoke.yaml>` sees."""
    from flops_tasks import testbed as tb

    return tb.context_for(tb.default_paths())
