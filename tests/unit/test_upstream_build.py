"""Images from upstream's code: the wheelhouse, the staged build contexts, the missing tarball.

No network and no Docker: pip is replaced by a small script that writes wheel files, the
addon-FLOps tree by a few directories, the Docker engine by a fake that knows which images
exist.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

from flops_tasks import build_context as bc
from flops_tasks import env as envmod
from flops_tasks import testbed as tb
from flops_tasks import wheelhouse as wh
from flops_tasks.config import PROJECT_ROOT, settings
from flops_tasks.errors import FlopsError
from flops_tasks.outcome import Status

# A stand-in for `pip download`: one wheel per pinned line of -r FILE into -d DIR; the
# arguments are recorded next to the requirements file.
FAKE_PIP = r"""
import json, re, sys
args = sys.argv[1:]
req, dest = args[args.index("-r") + 1], args[args.index("-d") + 1]
open(req + ".calls", "a").write(json.dumps(args) + "\n")
for line in open(req):
    m = re.match(r"\s*([A-Za-z0-9._-]+)==([^\s#]+)", line)
    if m:
        open(f"{dest}/{m.group(1)}-{m.group(2)}-py3-none-any.whl", "w").write("wheel")
"""


def fake_pip(tmp_path: Path) -> list[str]:
    script = tmp_path / "fake_pip.py"
    script.write_text(FAKE_PIP)
    return [sys.executable, str(script)]


def calls(requirements: Path) -> list[list[str]]:
    path = Path(str(requirements) + ".calls")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def reqs(tmp_path):
    path = tmp_path / "img" / "requirements.txt"
    path.parent.mkdir()
    path.write_text("# pins\nflask==3.0.3   # upstream ^3.0.2\nPyMySQL==1.1.1\n")
    return path


# -- wheelhouse --------------------------------------------------------------------------
def test_fills_once_then_reuses(tmp_path, reqs):
    cache = tmp_path / "cache"
    dest, filled = wh.ensure(reqs, cache=cache, pip=fake_pip(tmp_path))
    assert filled and sorted(p.name for p in dest.glob("*.whl")) == [
        "PyMySQL-1.1.1-py3-none-any.whl",
        "flask-3.0.3-py3-none-any.whl",
    ]
    args = calls(reqs)[0]
    assert args[:2] == ["download", "--quiet"] and "--only-binary=:all:" in args
    assert args[args.index("--python-version") + 1] == "3.11"
    assert "manylinux_2_17_x86_64" in args or "manylinux_2_17_aarch64" in args
    again, filled = wh.ensure(reqs, cache=cache, pip=fake_pip(tmp_path))
    assert (again, filled) == (dest, False) and len(calls(reqs)) == 1  # pip not run again
    (dest / "flask-3.0.3-py3-none-any.whl").unlink()  # a damaged wheelhouse is refilled
    assert wh.ensure(reqs, cache=cache, pip=fake_pip(tmp_path)) == (dest, True)
    reqs.write_text("flask==3.0.2\n")  # other pins: another wheelhouse
    assert wh.ensure(reqs, cache=cache, pip=fake_pip(tmp_path))[0] != dest


def test_a_wheelhouse_that_cannot_be_filled_is_one_line_and_leaves_nothing(tmp_path, reqs):
    failing = [
        sys.executable,
        "-c",
        "import sys; print('WARNING: x\\nERROR: Could not find a "
        "version that satisfies the requirement flask==3.0.3\\nERROR: No matching "
        "distribution found for flask==3.0.3', file=sys.stderr); sys.exit(1)",
    ]
    cache = tmp_path / "cache"
    with pytest.raises(FlopsError) as err:
        wh.ensure(reqs, cache=cache, pip=failing)
    msg = err.value.message
    assert "\n" not in msg and msg.startswith("cannot fill the wheelhouse for")
    assert "No matching distribution found for flask==3.0.3" in msg and "package index" in msg
    assert err.value.code != 0
    assert list(cache.iterdir()) == []  # no half-filled wheelhouse
    with pytest.raises(FlopsError, match="not pinned"):
        reqs.write_text("flask>=3\n")
        wh.ensure(reqs, cache=cache, pip=fake_pip(tmp_path))


def test_a_wheel_missing_after_download_is_caught(tmp_path, reqs):
    lazy = [sys.executable, "-c", "pass"]  # exits 0 and downloads nothing
    with pytest.raises(FlopsError, match="lacks flask==3.0.3"):
        wh.ensure(reqs, cache=tmp_path / "cache", pip=lazy)


@pytest.mark.parametrize("recipe", [bc.MANAGER, bc.SIDECAR], ids=lambda r: r.name)
def test_every_image_requirement_is_pinned(recipe):
    pins = wh.pins(recipe.requirements.read_text())
    assert "flops_utils" not in pins  # built from the same ref's utils_library
    assert pins["paho_mqtt"] == "2.0.0"  # flops-utils 0.6.1 requires exactly 2.0
    assert "poetry_core" in pins  # utils_library's build backend, installed offline


def test_manager_pins_a_pymongo_that_speaks_to_mongodb_3_6():
    pins = wh.pins(bc.MANAGER.requirements.read_text())
    major, minor = (int(x) for x in pins["pymongo"].split(".")[:2])
    assert (major, minor) < (4, 11)
    assert wh.pins(bc.SIDECAR.requirements.read_text())["pyarrow"].startswith("15.")


def test_platform_tags_cover_bookworm():
    tags = wh.platforms("x86_64")
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux_2_5_x86_64" in tags
    assert "manylinux2014_x86_64" in tags and "manylinux1_x86_64" in tags
    assert "manylinux1_aarch64" not in wh.platforms("aarch64")


# -- build contexts ----------------------------------------------------------------------
@pytest.fixture
def addon(tmp_path):
    root = tmp_path / "addon-FLOps"
    for rel, text in {
        "flops_manager_package/flops_manager/main.py": "print('manager')\n",
        "flops_manager_package/flops_manager/database/common.py": "x = 1\n",
        "ml_data_server_package/ml_data_server/main.py": "print('sidecar')\n",
        "utils_library/pyproject.toml": "[tool.poetry]\n",
        "utils_library/flops_utils/logging.py": "y = 2\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "flops_manager_package/flops_manager/__pycache__").mkdir()
    (root / "flops_manager_package/flops_manager/__pycache__/main.cpython-311.pyc").write_text("")
    return root


def rel_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_stage_copies_what_differs_and_removes_the_rest(tmp_path, addon):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "flask-3.0.3-py3-none-any.whl").write_text("w")
    dest = tmp_path / "ctx"
    assert bc.stage(bc.MANAGER, addon, dest, wheels) is True
    files = rel_files(dest)
    assert {
        "Dockerfile",
        "requirements.txt",
        "run-manager.py",
        "flops_manager/main.py",
        "flops_manager/database/common.py",
        "utils_library/flops_utils/logging.py",
        "wheels/flask-3.0.3-py3-none-any.whl",
    } <= files
    assert not any("__pycache__" in f for f in files)
    assert bc.stage(bc.MANAGER, addon, dest, wheels) is False  # second run: nothing to do
    (addon / "flops_manager_package/flops_manager/main.py").write_text("print('changed')\n")
    (dest / "stale.txt").write_text("left over")
    assert bc.stage(bc.MANAGER, addon, dest) is True  # online: no wheels
    assert (dest / "flops_manager/main.py").read_text() == "print('changed')\n"
    assert not (dest / "stale.txt").exists() and list((dest / "wheels").iterdir()) == []


def _link_in_source(addon: Path, host: Path) -> Path:
    link = addon / "flops_manager_package/flops_manager/settings.py"
    link.symlink_to(host)
    return link


def _link_as_package(addon: Path, host: Path) -> Path:
    lib = addon / "utils_library"
    (host.parent / "lib").mkdir()
    (host.parent / "lib" / "pyproject.toml").write_text(host.read_text())
    import shutil

    shutil.rmtree(lib)
    lib.symlink_to(host.parent / "lib")
    return lib


def _link_in_dest(addon: Path, host: Path) -> Path:
    dest = addon.parent / "ctx"
    link = dest / "flops_manager" / "main.py"
    link.parent.mkdir(parents=True)
    link.symlink_to(host)
    return link


def _link_as_wheel(addon: Path, host: Path) -> Path:
    link = addon.parent / "wheels" / "flask-3.0.3-py3-none-any.whl"
    link.symlink_to(host)
    return link


@pytest.mark.parametrize(
    "plant", [_link_in_source, _link_as_package, _link_in_dest, _link_as_wheel]
)
def test_stage_refuses_links_and_never_follows_them(tmp_path, addon, plant):
    """A link in what is staged would put a host file into the image (a link in the context
    itself would be written through): refused in one line that names the link."""
    host = tmp_path / "host" / "secret"
    host.parent.mkdir()
    host.write_text("host secret\n")
    (tmp_path / "wheels").mkdir()
    link = plant(addon, host)
    dest = tmp_path / "ctx"
    with pytest.raises(FlopsError) as err:
        bc.stage(bc.MANAGER, addon, dest, tmp_path / "wheels")
    assert f"{link} is a symbolic link" in err.value.message and "\n" not in err.value.message
    assert host.read_text() == "host secret\n"  # never written through
    copied = (
        [p for p in dest.rglob("*") if p.is_file() and not p.is_symlink()] if dest.exists() else []
    )
    assert all("host secret" not in p.read_text(errors="replace") for p in copied)


def test_stage_refuses_a_tree_that_is_not_addon_flops(tmp_path):
    (tmp_path / "other").mkdir()
    with pytest.raises(FlopsError, match="flops_manager_package/flops_manager/"):
        bc.stage(bc.MANAGER, tmp_path / "other", tmp_path / "ctx")
    assert not (tmp_path / "ctx").exists()


@pytest.mark.parametrize("recipe", [bc.MANAGER, bc.SIDECAR], ids=lambda r: r.name)
def test_every_copy_in_the_dockerfile_finds_its_source_in_the_staged_context(
    tmp_path, addon, recipe
):
    dest = tmp_path / "ctx"
    bc.stage(recipe, addon, dest)
    text = (dest / "Dockerfile").read_text()
    sources = [
        line.split()[1]
        for line in text.splitlines()
        if line.startswith("COPY ") and not line.startswith("COPY --from=")
    ]
    assert sources and all((dest / src).exists() for src in sources), sources


def test_the_compose_files_name_the_contexts_that_are_staged(tmp_path, ctx_factory):
    compose_dir = PROJECT_ROOT / "compose"
    prod = yaml.safe_load((compose_dir / "flops.compose.yml").read_text())
    s = settings(ctx_factory({}))
    context = prod["services"]["flops_manager"]["build"]["context"]
    assert context == "${FLOPS_MANAGER_CONTEXT:-.build/flops_manager}"
    values = envmod.env_values(s, envmod.resolve_addresses(s))
    assert values["FLOPS_MANAGER_CONTEXT"] == str(bc.manager_context_dir(s))
    assert bc.manager_context_dir(s) == Path(s.state_dir) / "build" / "flops_manager"
    over = yaml.safe_load((PROJECT_ROOT / "testbed" / "testbed.compose.yml").read_text())
    build = over["services"]["flops_manager"]["build"]
    paths = tb.default_paths()
    labels = tb.labels_override(paths.build)  # the third file: it names the context
    assert labels["services"]["flops_manager"]["build"]["context"] == str(
        paths.build / "flops_manager"
    )
    assert "context" not in build
    assert build["args"] == {
        "BASE_IMAGE": "flops-testbed/base:bookworm",
        "PIP_SOURCE": "wheelhouse",
    }
    assert over["services"]["flops_manager"]["image"] == tb.MANAGER_IMAGE
    dockerfile = (bc.MANAGER.ours / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-bookworm$", dockerfile, re.M)
    assert re.search(r"^ARG PIP_SOURCE=index$", dockerfile, re.M)


def test_ensure_manager_context_stages_from_the_checkout(tmp_path, addon, ctx_factory):
    compose = tmp_path / "compose" / "flops.compose.yml"
    compose.parent.mkdir()
    compose.write_text("services: {}\n")
    s = settings(
        ctx_factory(
            {
                "addon": {"path": str(addon)},
                "stack": {"compose_file": str(compose)},
                "state_dir": str(tmp_path / "state"),
            }
        )
    )
    from flops_tasks.stack.project import Project

    planned = Project(s, dry=True)
    dry = bc.ensure_manager_context(planned)
    # a dry run reports the staging it plans as a change, as the real run does
    assert dry.status is Status.CHANGED and planned.changes.entries()
    assert not bc.manager_context_dir(s).exists()
    first = bc.ensure_manager_context(Project(s))
    assert first.status is Status.CHANGED
    assert (tmp_path / "state/build/flops_manager/flops_manager/main.py").is_file()
    assert bc.ensure_manager_context(Project(s, dry=True)).status is Status.OK
    assert bc.ensure_manager_context(Project(s)).status is Status.OK


# -- the testbed without the upstream tarball --------------------------------------------
class FakeImage:
    def __init__(self, owner: str) -> None:
        self.config = type("Config", (), {"labels": {tb.LABEL: owner}})()


class FakeImages:
    def __init__(self, present: dict[str, str]) -> None:
        self.present = present  # tag -> the testbed id it carries

    def exists(self, tag: str) -> bool:
        return tag in self.present

    def inspect(self, tag: str) -> FakeImage:
        return FakeImage(self.present[tag])


class FakeDocker:
    def __init__(self, present: dict[str, str]) -> None:
        self.image = FakeImages(present)


def git(*args: str, cwd: Path) -> str:
    import subprocess

    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org"}
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.org")
    res = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


@pytest.fixture
def no_source(tmp_path, monkeypatch):
    """No tarball, and an addon URL that cannot be cloned (as without a route to GitHub)."""
    monkeypatch.setenv(tb.UPSTREAM_VAR, str(tmp_path / "nowhere" / "addon-FLOps.tar.gz"))
    addon = {**tb.DEFAULTS["addon"], "url": str(tmp_path / "no-such-repo")}
    monkeypatch.setitem(tb.DEFAULTS, "addon", addon)
    monkeypatch.setattr(tb, "upstream_clone_dir", lambda: tmp_path / "clone")


OTHER = "0123456789ab"  # another checkout's testbed


@pytest.mark.parametrize(
    "present, expected, says",
    [
        (
            {},
            {"flops_manager": "missing", "ml_data_server": "missing"},
            "running without flops_manager and ml_data_server",
        ),
        (
            {tb.MANAGER_IMAGE: tb.TESTBED_ID, tb.SIDECAR_IMAGE: tb.TESTBED_ID},
            {"flops_manager": "reused", "ml_data_server": "reused"},
            "reusing the built flops_manager, ml_data_server",
        ),
        (
            {tb.SIDECAR_IMAGE: tb.TESTBED_ID},
            {"flops_manager": "missing", "ml_data_server": "reused"},
            "reusing the built ml_data_server; running without flops_manager",
        ),
        (  # images of another checkout's testbed are not this testbed's to reuse
            {tb.MANAGER_IMAGE: OTHER, tb.SIDECAR_IMAGE: OTHER},
            {"flops_manager": "missing", "ml_data_server": "missing"},
            "running without flops_manager and ml_data_server",
        ),
    ],
)
def test_without_the_source_the_testbed_says_so(
    tmp_path, monkeypatch, no_source, present, expected, says
):
    monkeypatch.setattr(tb, "_docker", lambda: FakeDocker(present))
    lines: list[str] = []
    states = tb.upstream_images(tb.Paths(tmp_path / "tb"), lines.append)
    assert states == expected
    assert all("\n" not in line for line in lines)
    assert str(tmp_path / "nowhere" / "addon-FLOps.tar.gz") in lines[0]
    assert any(line.startswith("cannot fetch upstream addon-FLOps: ") for line in lines)
    assert lines[-1] == says
    assert not (tmp_path / "clone").exists() and not (tmp_path / "clone.partial").exists()


def test_the_hint_says_how_to_provide_the_source(no_source):
    hint = tb.upstream_hint()
    assert tb.UPSTREAM_VAR in hint and "addon-FLOps.tar.gz" in hint
    assert tb.DEFAULTS["addon"]["url"] in hint and "testbed.up" in hint


def test_without_the_source_the_testbed_config_leaves_out_the_manager_and_learners(tmp_path):
    missing = {"flops_manager": "missing", "ml_data_server": "missing"}
    nodes = [("flops-testbed-w1", "10.0.0.2", "docker")]
    config = tb.testbed_config(tb.Paths(tmp_path), nodes, "10.0.0.1", missing)["flops"]
    assert config["stack"]["omit"] == {"flops_manager": tb.upstream_hint()}
    assert config["inventory"]["w1"]["roles"] == ["builder"]
    full = tb.testbed_config(tb.Paths(tmp_path), nodes, "10.0.0.1", {"flops_manager": "build"})
    assert "omit" not in full["flops"]["stack"]
    assert full["flops"]["inventory"]["w1"]["roles"] == ["builder", "learner"]


@pytest.fixture
def upstream_repo(tmp_path, monkeypatch):
    """A git repository standing in for addon-FLOps; the pinned ref is its second commit."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    (repo / "a.txt").write_text("one")
    git("add", ".", cwd=repo)
    git("commit", "-qm", "one", cwd=repo)
    (repo / "a.txt").write_text("two")
    git("commit", "-qam", "two", cwd=repo)
    pinned = git("rev-parse", "HEAD", cwd=repo)
    (repo / "a.txt").write_text("three")
    git("commit", "-qam", "three", cwd=repo)
    monkeypatch.setitem(tb.DEFAULTS, "addon", {**tb.DEFAULTS["addon"], "url": str(repo)})
    monkeypatch.setitem(tb.DEFAULTS["addon"], "ref", pinned)
    return repo, pinned


def test_the_source_is_cloned_at_the_pinned_commit(tmp_path, upstream_repo):
    repo, pinned = upstream_repo
    dest = tmp_path / "clone"
    lines: list[str] = []
    assert tb.fetch_upstream(dest, lines.append) == dest
    assert git("rev-parse", "HEAD", cwd=dest) == pinned
    assert (dest / "a.txt").read_text() == "two"
    lines.clear()
    assert tb.fetch_upstream(dest, lines.append) == dest and lines == []  # kept as it is


def test_a_clone_at_another_commit_is_never_used(tmp_path, upstream_repo, monkeypatch):
    repo, pinned = upstream_repo
    monkeypatch.setitem(tb.DEFAULTS["addon"], "ref", "f" * 40)  # a commit the repo lacks
    lines: list[str] = []
    assert tb.fetch_upstream(tmp_path / "clone", lines.append) is None
    assert lines[-1].startswith("cannot fetch upstream addon-FLOps: ")
    assert not (tmp_path / "clone").exists()


def test_the_tarball_is_looked_for_in_shared_upstream_above_the_project(monkeypatch, tmp_path):
    monkeypatch.delenv(tb.UPSTREAM_VAR, raising=False)
    found = tb.upstream_tarball()
    assert found.name == "addon-FLOps-2fa0ab9.tar.gz"
    assert found.parent.parts[-2:] == ("shared", "upstream")
    assert PROJECT_ROOT.is_relative_to(found.parent.parent.parent)


def test_a_broken_tarball_is_one_line(tmp_path, monkeypatch):
    bad = tmp_path / "addon-FLOps-2fa0ab9.tar.gz"
    bad.write_bytes(b"not a tarball")
    _pin(monkeypatch, bad)
    with pytest.raises(FlopsError) as err:
        tb.unpack_upstream(bad, tmp_path / "out")
    assert "\n" not in err.value.message and "cannot unpack" in err.value.message
    assert not os.path.exists(tmp_path / "out")  # nothing was unpacked


# -- the tarball: pinned, and checked member by member -----------------------------------
def _add(tar, name: str, kind: bytes = b"0", link: str = "", data: bytes = b"") -> None:
    import io
    import tarfile

    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def _tarball(path: Path, members: list[tuple]) -> Path:
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "addon-FLOps/", tarfile.DIRTYPE)
        for member in members:
            _add(tar, *member)
    return path


def _pin(monkeypatch, tarball: Path) -> None:
    """Pin ``tarball``'s own sha256, so the member checks are what is tested."""
    import hashlib

    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    monkeypatch.setattr(tb, "ADDON_TARBALL_SHA256", digest, raising=False)


def test_a_tarball_that_escapes_through_links_writes_nothing_outside(tmp_path, monkeypatch):
    """CVE-2025-4517's shape: symlinks whose expansion passes PATH_MAX are not resolved by
    tarfile's ``data`` filter on Python before 3.11.13, so a member written through
    ``escape/`` lands outside the destination."""
    import tarfile

    root = tmp_path / "r"
    root.mkdir()
    dest = root / "out"
    steps = "abcdefghijklmnop"
    comp = "d" * ((os.pathconf(root, "PC_PATH_MAX") - len(str(dest)) - 1) // (len(steps) + 1))
    members: list[tuple] = []
    path = ""
    for step in steps:
        members.append((os.path.join(path, comp), tarfile.DIRTYPE))
        members.append((os.path.join(path, step), tarfile.SYMTYPE, comp))
        path = os.path.join(path, comp)
    linkpath = os.path.join(*steps, "l" * 254)
    members.append((linkpath, tarfile.SYMTYPE, os.path.join(*[".."] * len(steps))))
    members.append(("escape", tarfile.SYMTYPE, os.path.join(linkpath, "..")))
    members.append(("escape/outside", tarfile.REGTYPE, "", b"written outside\n"))
    evil = _tarball(tmp_path / "addon-FLOps-2fa0ab9.tar.gz", members)
    _pin(monkeypatch, evil)
    with pytest.raises(FlopsError) as err:
        tb.unpack_upstream(evil, dest)
    assert not (root / "outside").exists()
    assert sorted(p.name for p in root.iterdir()) == []  # nothing written, dest not made
    assert "\n" not in err.value.message
    assert "member 'a' is a symbolic link" in err.value.message and str(evil) in err.value.message


@pytest.mark.parametrize(
    "member, says",
    [
        (("addon-FLOps/link", b"2", "/etc/passwd"), "'addon-FLOps/link' is a symbolic link"),
        (("addon-FLOps/hard", b"1", "addon-FLOps"), "'addon-FLOps/hard' is a hard link"),
        (("/tmp/abs", b"0"), "'/tmp/abs' is not a relative name"),
        (("addon-FLOps/../up", b"0"), "'addon-FLOps/../up' is not a relative name"),
        (("addon-FLOps/./x", b"0"), "'addon-FLOps/./x' is not a relative name"),
        (("addon-FLOps//x", b"0"), "'addon-FLOps//x' is not a relative name"),
        (("addon-FLOps/fifo", b"6"), "'addon-FLOps/fifo' is a FIFO"),
        (("addon-FLOps/null", b"3"), "'addon-FLOps/null' is a device"),
    ],
    ids=["symlink", "hardlink", "absolute", "dotdot", "dot", "empty-part", "fifo", "device"],
)
def test_members_other_than_plain_files_and_folders_are_refused(
    tmp_path, monkeypatch, member, says
):
    tarball = _tarball(tmp_path / "t.tar.gz", [("addon-FLOps/ok", b"0", "", b"fine\n"), member])
    _pin(monkeypatch, tarball)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "earlier").write_text("kept")
    with pytest.raises(FlopsError) as err:
        tb.unpack_upstream(tarball, dest)
    assert says in err.value.message and "\n" not in err.value.message
    assert [p.name for p in dest.iterdir()] == ["earlier"]  # checked before anything changes


def test_a_tarball_of_another_hash_is_one_line_and_changes_nothing(tmp_path):
    tarball = _tarball(tmp_path / "addon-FLOps-2fa0ab9.tar.gz", [("addon-FLOps/a", b"0")])
    dest = tmp_path / "out"
    with pytest.raises(FlopsError) as err:
        tb.unpack_upstream(tarball, dest)
    message = err.value.message
    assert "\n" not in message and str(tarball) in message
    assert tb.ADDON_TARBALL_SHA256 in message and "sha256" in message
    assert not dest.exists()


def test_a_tarball_of_plain_files_and_folders_unpacks(tmp_path, monkeypatch):
    tarball = _tarball(
        tmp_path / "t.tar.gz",
        [("addon-FLOps/pkg", b"5"), ("addon-FLOps/pkg/mod.py", b"0", "", b"x = 1\n")],
    )
    _pin(monkeypatch, tarball)
    root = tb.unpack_upstream(tarball, tmp_path / "out")
    assert root == tmp_path / "out" / "addon-FLOps"
    assert (root / "pkg" / "mod.py").read_text() == "x = 1\n"


def test_the_pinned_hash_is_the_shared_tarballs():
    import hashlib

    tarball = tb.upstream_tarball()
    if not tarball.is_file():
        pytest.skip(f"{tarball} is not here")
    assert hashlib.sha256(tarball.read_bytes()).hexdigest() == tb.ADDON_TARBALL_SHA256
    assert tarball.name == f"addon-FLOps-{tb.DEFAULTS['addon']['ref'][:7]}.tar.gz"
