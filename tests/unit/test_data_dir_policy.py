"""The learner data dir is a folder of its own, checked as configured and as the worker
resolves it.

The folder is mounted read-write behind upstream's sidecar, which takes unauthenticated
``do_put`` and ``drop_dataset`` from anything on docker0 (SECURITY.md). Before, ``/home/ubuntu``,
``/root/.ssh``, ``~/.ssh``, ``/var/spool/cron/crontabs``, ``/var/lib/dpkg`` and
``/var/lib/mysql`` were accepted, and a link was never resolved. The worker's side runs
``commands.data_dir_facts`` for real under ``/bin/sh`` here (links made in a temp dir), and a
preparation runs on a recorded learner (fake_worker.py) with that output.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from flops_tasks import commands as C
from flops_tasks import data, ops
from flops_tasks.config import ConfigError, data_dir_problem, settings
from flops_tasks.facts import parse_data_dir
from flops_tasks.ssh import RemoteFailure

from .fake_worker import REGISTRY, FakeSession, recorded
from .learner_fakes import FakeLearner


@pytest.mark.parametrize(
    "path",
    [
        "/home/ubuntu",
        "/home/ubuntu/",
        "/root/.ssh",
        "/root/data",
        "/home/ubuntu/.ssh",
        "/home/ubuntu/.config/flops",
        "/srv/.hidden/data",
        "/var/spool/cron/crontabs",
        "/var/spool/flops",
        "/var/lib/dpkg",
        "/var/lib/mysql",
        "/var/lib/mysql/flops",
        "/var/lib/apt/lists",
        "/var/lib/flops-tasks",
    ],
)
def test_places_that_are_not_a_folder_of_their_own_are_refused(ctx_factory, path):
    problem = data_dir_problem(path)
    assert problem and "\n" not in problem
    with pytest.raises(ConfigError, match="flops.learner.data_dir") as err:
        settings(ctx_factory({"learner": {"data_dir": path}}))
    assert err.value.code == 2


@pytest.mark.parametrize(
    "path", ["/home/ubuntu/flops-data", "/var/lib/flops-data", "/srv/flops-data", "/data/x.y"]
)
def test_dedicated_folders_are_accepted(path):
    assert data_dir_problem(path) is None


def test_what_only_the_worker_knows():
    assert "home folder on this host" in (data_dir_problem("/srv/ftp", homes=["/srv/ftp"]) or "")
    assert "holds the home folder /data/alice" in (
        data_dir_problem("/data", homes=["/data/alice"]) or ""
    )
    assert "belongs to something else" in (
        data_dir_problem("/var/lib/flops-data", var_lib_taken=True) or ""
    )
    assert data_dir_problem("/data/flops", homes=["/home/alice", "/"]) is None


def run_facts(path: str) -> tuple[int, str]:
    proc = subprocess.run(
        ["/bin/sh", "-c", C.data_dir_facts(path)], capture_output=True, text=True, timeout=30
    )
    return proc.returncode, proc.stdout


def test_the_worker_resolves_links_and_the_result_is_checked(tmp_path):
    (tmp_path / "to-root").symlink_to("/root")
    (tmp_path / "to-etc").symlink_to("/etc")
    (tmp_path / "fine").mkdir()
    (tmp_path / "to-fine").symlink_to(tmp_path / "fine")
    for link, where in (("to-root", "/root"), ("to-etc", "/etc")):
        path = str(tmp_path / link / "flops")
        assert data_dir_problem(path) is None  # as configured it looks harmless
        found = parse_data_dir(path, *run_facts(path))
        assert found.real == f"{where}/flops"
        problem = found.problem() or ""
        assert f"it leads to {where}/flops on this host (a symbolic link)" in problem
    fine = parse_data_dir(str(tmp_path / "to-fine"), *run_facts(str(tmp_path / "to-fine")))
    assert fine.real == str(tmp_path / "fine") and fine.present and fine.problem() is None
    assert "/root" in fine.homes  # read from /etc/passwd


def test_under_var_lib_only_a_new_folder_is_accepted():
    taken = parse_data_dir("/var/lib/dpkg/flops", *run_facts("/var/lib/dpkg/flops"))
    assert taken.var_lib_taken and "belongs to something else" in (taken.problem() or "")
    new = f"/var/lib/flops-test-{uuid.uuid4().hex[:8]}"
    assert not Path(new).exists()
    fresh = parse_data_dir(new, *run_facts(new))
    assert not fresh.var_lib_taken and not fresh.present and fresh.problem() is None
    # once flops-tasks made it (recorded in commands.DATA_DIRS_LIST), it stays accepted
    ours = parse_data_dir(new, 0, f"real {new.encode().hex()}\nvarlib 1 1\n")
    assert ours.problem() is None
    other = parse_data_dir(new, 0, f"real {new.encode().hex()}\nvarlib 1 0\n")
    assert "belongs to something else" in (other.problem() or "")


def test_make_data_dir_records_a_new_var_lib_folder(tmp_path, monkeypatch):
    """Run against a stand-in /var/lib (the builder's paths rewritten into tmp_path)."""
    root = tmp_path / "root"
    (root / "var/lib/dpkg").mkdir(parents=True)
    script = C.make_data_dir("/var/lib/flops-data/x") + "; " + C.make_data_dir("/var/lib/dpkg/y")
    script = script.replace("/var/lib/", f"{root}/var/lib/")
    # readlink -m of the rewritten path keeps the prefix; the case pattern is rewritten too
    subprocess.run(["/bin/sh", "-c", script], check=True, timeout=30)
    listed = (root / "var/lib/flops-tasks/data-dirs").read_text().splitlines()
    assert listed == [f"{root}/var/lib/flops-data"]


def learner_facts(path: str, tmp_path: Path) -> dict:
    rc, out = run_facts(path)
    return recorded("fresh-docker-both", data_dir=(rc, out))


def test_prepare_learner_refuses_a_link_into_a_refused_place_and_changes_nothing(tmp_path):
    (tmp_path / "data").symlink_to("/root")
    path = str(tmp_path / "data")
    ctx = ops.PrepContext(
        registry=REGISTRY, learner_image=f"{REGISTRY}/flops/ml-data-server:offline", data_dir=path
    )
    s = FakeSession(learner_facts(path, tmp_path))
    out = ops.prepare_host(s, {"learner"}, ctx)
    bad = [o for o in out if o.bad]
    assert [o.step for o in bad] == ["data"]
    assert "it leads to /root on this host" in bad[0].detail
    assert bad[0].detail.endswith("; nothing was changed on this host")
    assert s.changes == []


def test_learner_data_refuses_it_too(tmp_path):
    (tmp_path / "data").symlink_to("/root")
    w = FakeLearner(tmp_path, sidecar=None, volume=None)
    with pytest.raises(RemoteFailure, match="it leads to /root on this host"):
        data.locate(w, str(tmp_path / "data"))
    assert w.changes == []
