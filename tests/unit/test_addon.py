import subprocess

import pytest

from flops_tasks.addon import ensure_checkout
from flops_tasks.config import settings
from flops_tasks.errors import FlopsError
from flops_tasks.outcome import Status
from flops_tasks.stack.project import Project


def git(*args, cwd):
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def upstream(tmp_path):
    repo = tmp_path / "upstream"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    (repo / "flops_manager_package").mkdir()
    (repo / "flops_manager_package" / "pyproject.toml").write_text("[tool.poetry]\n")
    git("add", ".", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one", cwd=repo)
    first = git("rev-parse", "HEAD", cwd=repo)
    (repo / "later.txt").write_text("later\n")
    git("add", ".", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "two", cwd=repo)
    return repo, first


def test_clones_at_the_pinned_ref_once(upstream, tmp_path, ctx_factory):
    repo, first = upstream
    path = tmp_path / "checkout"
    s = settings(ctx_factory({"addon": {"url": str(repo), "ref": first, "path": str(path)}}))
    dry = Project(s, dry=True)
    assert ensure_checkout(dry).status is Status.CHANGED
    assert not path.exists() and dry.changes.entries()[0].summary.startswith("git clone")
    assert ensure_checkout(Project(s)).status is Status.CHANGED
    assert git("rev-parse", "HEAD", cwd=path) == first
    assert not (path / "later.txt").exists()
    again = ensure_checkout(Project(s))
    assert again.status is Status.OK and first[:12] in again.detail


def test_unreachable_url_is_one_line(tmp_path, ctx_factory):
    s = settings(
        ctx_factory({"addon": {"url": str(tmp_path / "nope"), "path": str(tmp_path / "co")}})
    )
    with pytest.raises(FlopsError) as err:
        ensure_checkout(Project(s))
    assert "cannot clone" in err.value.message and "\n" not in err.value.message


def test_a_folder_that_is_not_a_checkout_is_refused(tmp_path, ctx_factory):
    (tmp_path / "co").mkdir()
    (tmp_path / "co" / "file").write_text("x")
    s = settings(ctx_factory({"addon": {"path": str(tmp_path / "co")}}))
    with pytest.raises(FlopsError, match="not a git checkout"):
        ensure_checkout(Project(s))
