"""learner-data in process: local checks, where the sidecar reads, copying and listing.

A ``FakeLearner`` (learner_fakes.py) answers Docker's questions from recordings made on a
testbed worker and runs every file command for real on a temp dir, so each test sees the
Outcomes data.py returns and the commands it planned or ran.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from flops_tasks import commands as C
from flops_tasks import data
from flops_tasks.errors import FlopsError
from flops_tasks.outcome import Status
from flops_tasks.run import Run
from flops_tasks.ssh import RemoteFailure
from flops_tasks.workflows import learner_data as flow

from .learner_fakes import FakeLearner, learner, recorded_inspect

PAR = b"PAR1"


def parquet_bytes(body: bytes = b"rows") -> bytes:
    """Enough of a Parquet file for the magic check (the Flight tests use real ones)."""
    return PAR + body + PAR


def write(folder: Path, name: str | bytes, content: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = Path(os.fsdecode(os.path.join(os.fsencode(folder), os.fsencode(name))))
    path.write_bytes(content)
    return path


@pytest.fixture
def src(tmp_path):
    folder = tmp_path / "src"
    write(folder, "train.parquet", parquet_bytes(b"x" * 100))
    write(folder, "test.parquet", parquet_bytes(b"y" * 50))
    return folder


# -- local checks: tags, names, content ------------------------------------------------------
@pytest.mark.parametrize("tag", ["mnist", "cifar10_train", "A-b_9", "_x", "9", "x" * 64])
def test_good_tags(tag):
    assert data.check_tag(tag) == tag


@pytest.mark.parametrize(
    "tag, needle",
    [
        ("a.b", "first dot"),
        ("-x", "--tag"),
        ("", "missing"),
        (" ", "missing"),
        (None, "missing"),
        ("a b", "letters"),
        ("a,b", "letters"),
        ("a/b", "letters"),
        ("ü", "letters"),
        ("x" * 65, "at most 64"),
        ("a\nb", "letters"),
        ("$(id)", "letters"),
    ],
)
def test_bad_tags_are_one_line_usage_errors(tag, needle):
    with pytest.raises(FlopsError) as err:
        data.check_tag(tag)
    assert err.value.code == 2
    assert "\n" not in err.value.message and needle in err.value.message


def test_files_are_stored_under_the_name_the_sidecar_serves_for_the_tag(src):
    files = data.collect(str(src), "mnist")
    assert sorted(f.name for f in files) == ["mnist.test.parquet", "mnist.train.parquet"]
    for f in files:
        assert data.tag_of(f.name) == "mnist"  # upstream: name.split(".")[0]
        assert f.sha256 == hashlib.sha256(f.path.read_bytes()).hexdigest()
        assert f.size == f.path.stat().st_size


@pytest.mark.parametrize(
    "source, stored",
    [
        ("a.parquet", "t.a.parquet"),
        ("a.PARQUET", "t.a.parquet"),
        ("mnist.part1.parquet", "t.mnist.part1.parquet"),
        ("data", "t.data.parquet"),
        ("-x.parquet", "t.-x.parquet"),
        ("a b.parquet", "t.a b.parquet"),
    ],
)
def test_stored_names(tmp_path, source, stored):
    path = write(tmp_path, source, parquet_bytes())
    assert [f.name for f in data.collect(str(path), "t")] == [stored]


def test_globs_and_lists_and_duplicates(tmp_path, src):
    files = data.collect(f"{src}/t*.parquet,{src}/train.parquet", "m")
    assert sorted(f.name for f in files) == ["m.test.parquet", "m.train.parquet"]


@pytest.mark.parametrize(
    "name, content, needle",
    [
        ("notes.parquet", b"plain text, not parquet", "not a parquet file"),
        ("head.parquet", PAR + b"x" * 10, "PAR1 magic at both ends"),
        ("tail.parquet", b"x" * 10 + PAR, "PAR1 magic at both ends"),
        ("tiny.parquet", PAR + PAR[:3], "not a parquet file"),
        (".parquet", parquet_bytes(), "no name before .parquet"),
        ("a\nb.parquet", parquet_bytes(), "control character"),
        ("a\tb.parquet", parquet_bytes(), "control character"),
        (b"caf\xe9.parquet", parquet_bytes(), "not valid UTF-8"),
        ("x" * 245 + ".parquet", parquet_bytes(), "more than 255"),
    ],
)
def test_files_the_sidecar_cannot_serve_are_refused(tmp_path, name, content, needle):
    path = write(tmp_path / "in", name, content)
    with pytest.raises(FlopsError) as err:
        data.collect(str(path), "mnist")
    assert err.value.code == 2 and needle in err.value.message


def test_one_bad_file_refuses_the_whole_list(tmp_path, src):
    write(src, "zz.parquet", b"no magic")
    with pytest.raises(FlopsError, match="zz.parquet is not a parquet file"):
        data.collect(str(src), "mnist")


def test_two_files_stored_under_one_name_are_refused(tmp_path):
    a = write(tmp_path / "a", "x.parquet", parquet_bytes())
    b = write(tmp_path / "b", "x.PARQUET", parquet_bytes(b"other"))
    with pytest.raises(FlopsError, match="would both be stored as m.x.parquet"):
        data.collect(f"{a},{b}", "m")


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("", "--src is empty"),
        ("a,,b", "empty entry"),
        ("/no/such/*.parquet", "matches no file"),
        ("/no/such/file", "no such file"),
    ],
)
def test_bad_src(spec, needle):
    with pytest.raises(FlopsError, match=needle):
        data.collect(spec, "m")


def test_folder_without_parquet(tmp_path):
    write(tmp_path / "d", "x.csv", b"a,b")
    with pytest.raises(FlopsError, match="no parquet files"):
        data.collect(str(tmp_path / "d"), "m")


def test_hashing_does_not_read_the_file_into_memory(tmp_path, monkeypatch):
    path = write(tmp_path, "big.parquet", parquet_bytes(b"z" * 300_000))
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read whole file"))
    [f] = data.collect(str(path), "m")
    with open(path, "rb") as fh:
        assert f.sha256 == hashlib.file_digest(fh, "sha256").hexdigest()


# -- where the sidecar reads ------------------------------------------------------------------
def test_locate_the_volume_the_running_sidecar_serves(tmp_path):
    w = learner(tmp_path)
    mount = data.locate(w, "")
    assert mount == data.Mount(str(tmp_path / "mount"), "volume ml_data_server_volume", "running")


def test_locate_a_bind_mounted_data_dir(tmp_path):
    w = learner(tmp_path, kind="bind")
    mount = data.locate(w, str(tmp_path / "mount") + "/")
    assert mount.path == str(tmp_path / "mount") and mount.sidecar == "created"
    assert mount.source == f"data dir {tmp_path / 'mount'}"


def test_a_sidecar_serving_another_folder_is_refused_for_copies(tmp_path):
    w = learner(tmp_path)  # the sidecar serves the volume
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(RemoteFailure) as err:
        data.locate(w, str(tmp_path / "elsewhere"))
    assert "serves ml_data_server_volume, not the configured data dir" in str(err.value)
    assert "inv prepare-learner --host w1" in str(err.value)
    listing = data.locate(w, str(tmp_path / "elsewhere"), strict=False)
    assert listing.path == str(tmp_path / "mount") and "not the configured" in listing.problem


def test_a_bind_mounted_sidecar_with_the_volume_configured_is_refused(tmp_path):
    w = learner(tmp_path, kind="bind")
    w.volume = tmp_path / "vol"
    with pytest.raises(RemoteFailure, match="serves .*/mount, not the configured volume"):
        data.locate(w, "")


def test_without_a_sidecar_the_configured_mount_is_used_and_said(tmp_path):
    (tmp_path / "vol").mkdir()
    w = FakeLearner(tmp_path, sidecar=None, volume=tmp_path / "vol")
    assert data.locate(w, "") == data.Mount(
        str(tmp_path / "vol"), "volume ml_data_server_volume", "missing"
    )


@pytest.mark.parametrize("data_dir", ["", "/no/such/dir"])
def test_nothing_prepared_says_run_prepare_learner(tmp_path, data_dir):
    w = FakeLearner(tmp_path, sidecar=None, volume=None)
    with pytest.raises(RemoteFailure, match="missing: run inv prepare-learner --host w1 first"):
        data.locate(w, data_dir)


def test_a_sidecar_without_the_data_mount_serves_nothing(tmp_path):
    w = learner(tmp_path)
    w.sidecar["Mounts"] = []
    with pytest.raises(RemoteFailure, match="mounts nothing at /ml_data_server_volume"):
        data.locate(w, "")


# -- copying ----------------------------------------------------------------------------------
def test_copy_then_copy_again_changes_nothing(tmp_path, src):
    w = learner(tmp_path)
    files = data.collect(str(src), "mnist")
    mount = tmp_path / "mount"
    sent: list[int] = []
    [first] = data.copy_data(w, files, "", progress=lambda host, n: sent.append(n))
    assert first.status is Status.CHANGED
    assert "copied 2 files (166 bytes)" in first.detail and "checksums verified" in first.detail
    assert sorted(p.name for p in mount.iterdir()) == ["mnist.test.parquet", "mnist.train.parquet"]
    for f in files:
        assert (mount / f.name).read_bytes() == f.path.read_bytes()
        assert (mount / f.name).stat().st_mode & 0o777 == 0o644
    assert sum(sent) == 166
    uploads = sorted(str(p) for p in (tmp_path / "uploads").iterdir())
    assert uploads == []  # every upload was moved away
    assert [c for c in w.changes] == [
        C.install_file(str(tmp_path / "uploads" / f"flops-upload.{i}"), f"{mount}/{f.name}")
        for i, f in enumerate(files)
    ]
    w.changes.clear()
    [second] = data.copy_data(w, files, "")
    assert second.status is Status.OK and "all 2 files already in" in second.detail
    assert w.changes == []


def test_only_what_differs_is_copied(tmp_path, src):
    w = learner(tmp_path)
    data.copy_data(w, data.collect(str(src), "mnist"), "")
    write(src, "test.parquet", parquet_bytes(b"new rows"))
    w.changes.clear()
    [out] = data.copy_data(w, data.collect(str(src), "mnist"), "")
    assert out.status is Status.CHANGED
    assert "copied 1 file " in out.detail and "1 unchanged skipped" in out.detail
    assert len(w.changes) == 1 and "mnist.test.parquet" in w.changes[0]
    assert (tmp_path / "mount" / "mnist.test.parquet").read_bytes() == parquet_bytes(b"new rows")


def test_dry_run_plans_and_writes_nothing(tmp_path, src):
    w = learner(tmp_path, dry=True)
    files = data.collect(str(src), "mnist")
    [out] = data.copy_data(w, files, "")
    assert out.status is Status.CHANGED and "would copy 2 files" in out.detail
    mount = tmp_path / "mount"
    assert w.plan == [f"copy {f.path} to {mount}/{f.name}" for f in files]
    assert list(mount.iterdir()) == [] and w.changes == []


def test_a_file_that_breaks_the_tag_is_reported_with_the_copy(tmp_path, src):
    w = learner(tmp_path)
    write(tmp_path / "mount", "mnist.readme.txt", b"hello")
    write(tmp_path / "mount", "cifar.notes", b"other tag: not ours to judge here")
    outcomes = data.copy_data(w, data.collect(str(src), "mnist"), "")
    assert [o.status for o in outcomes] == [Status.CHANGED, Status.FAILED]
    assert outcomes[1].step == "mnist.readme.txt"
    assert "list_flights for tag 'mnist' fails" in outcomes[1].detail


def test_a_non_file_at_a_target_name_stops_the_host_before_any_copy(tmp_path, src):
    w = learner(tmp_path)
    (tmp_path / "mount" / "mnist.train.parquet").mkdir()
    with pytest.raises(RemoteFailure, match="mnist.train.parquet is a directory: nothing copied"):
        data.copy_data(w, data.collect(str(src), "mnist"), "")
    assert w.changes == []


def test_a_symlink_at_a_target_name_is_never_written_through(tmp_path, src):
    w = learner(tmp_path)
    victim = write(tmp_path / "host-etc", "shadow", b"secret")
    victim.chmod(0o600)
    (tmp_path / "mount" / "mnist.train.parquet").symlink_to(victim)
    with pytest.raises(RemoteFailure, match="is a symbolic link: nothing copied"):
        data.copy_data(w, data.collect(str(src), "mnist"), "")
    assert victim.read_bytes() == b"secret" and victim.stat().st_mode & 0o777 == 0o600
    assert w.changes == []


def test_a_checksum_mismatch_after_the_copy_fails(tmp_path, src):
    w = learner(tmp_path)

    def tamper(command: str) -> None:  # the upload arrives changed
        for p in (tmp_path / "uploads").iterdir():
            p.write_bytes(b"PAR1 changed on the way PAR1")

    w.on_change = tamper
    with pytest.raises(RemoteFailure, match="checksum mismatch after copy"):
        data.copy_data(w, data.collect(str(src), "mnist"), "")


def test_copy_into_a_stopped_sidecars_mount_says_when_it_is_served(tmp_path, src):
    w = learner(tmp_path, kind="bind")  # recorded as "created", not running
    [out] = data.copy_data(w, data.collect(str(src), "m"), str(tmp_path / "mount"))
    assert out.status is Status.CHANGED and "ml_data_server is created" in out.detail


# -- listing ----------------------------------------------------------------------------------
def lay_out(mount: Path) -> None:
    write(mount, "mnist.a.parquet", parquet_bytes(b"a" * 10))
    write(mount, "mnist.b.parquet", parquet_bytes(b"b" * 20))
    write(mount, "cifar.x.parquet", parquet_bytes(b"c"))
    write(mount, "cifar.readme", b"not parquet")
    write(mount, "plain", parquet_bytes())  # no dot: served for the tag "plain"
    write(mount, ".hidden.parquet", parquet_bytes())
    write(mount, "a,b.x.parquet", parquet_bytes())
    write(mount, ".flops-tmp.AbCdEf1234", b"PAR1 half")
    write(mount, "new\nline.parquet", parquet_bytes())
    write(mount, b"bad\xff.x.parquet", parquet_bytes())
    (mount / "dogs").mkdir()
    (mount / "cats.link").symlink_to("/etc/passwd")


def test_listing_judges_every_entry_as_the_sidecar_would(tmp_path):
    w = learner(tmp_path)
    lay_out(tmp_path / "mount")
    got = data.read_mount(w, "")
    tags = {t: [e.name for e in files] for t, files in got.tags().items()}
    # a directory, a link or an unreadable name still makes its tag exist (and fail)
    assert tags == {
        "bad\udcff": [],
        "cifar": ["cifar.x.parquet"],
        "dogs": [],
        "mnist": ["mnist.a.parquet", "mnist.b.parquet"],
        "plain": ["plain"],
    }
    problems = {e.name: (e.breaks, e.problem) for e in got.problems()}
    assert problems["cifar.readme"][0] == "cifar"
    assert "not Parquet" in problems["cifar.readme"][1]
    assert problems["dogs"][0] == "dogs" and "a directory" in problems["dogs"][1]
    assert problems["cats.link"][0] is None and "symbolic link" in problems["cats.link"][1]
    assert problems[".hidden.parquet"][0] is None
    assert "never served" in problems[".hidden.parquet"][1]
    assert "never served" in problems["a,b.x.parquet"][1]
    assert "left over" in problems[".flops-tmp.AbCdEf1234"][1]
    assert "not UTF-8" in problems["bad\\xff.x.parquet"][1]
    assert "new\\x0aline.parquet" in problems  # control characters are shown escaped
    assert "mnist.a.parquet" not in problems and "plain" not in problems


def test_listing_json_shape(tmp_path):
    w = learner(tmp_path)
    lay_out(tmp_path / "mount")
    got = data.read_mount(w, "").only("cifar").to_dict()
    assert got == {
        "mount": str(tmp_path / "mount"),
        "source": "volume ml_data_server_volume",
        "sidecar": "running",
        "tags": {"cifar": [{"name": "cifar.x.parquet", "size": 9}]},
        "problems": [
            {
                "name": "cifar.readme",
                "tag": "cifar",
                "kind": "file",
                "size": 11,
                "problem": "not Parquet (no PAR1 magic at both ends): list_flights "
                "for tag 'cifar' fails while it is there: remove it",
                "breaks": "cifar",
            }
        ],
    }
    json.dumps(data.read_mount(w, "").to_dict())  # every name is JSON-safe


def test_listing_outcomes(tmp_path):
    w = learner(tmp_path)
    write(tmp_path / "mount", "mnist.a.parquet", parquet_bytes())
    write(tmp_path / "mount", "cifar.x.parquet", parquet_bytes())
    write(tmp_path / "mount", "cifar.notes", b"text")
    rows = data.listing_outcomes("w1", data.read_mount(w, ""))
    assert [(o.step, o.status) for o in rows] == [
        ("mount", Status.OK),
        ("tag cifar", Status.FAILED),
        ("tag mnist", Status.OK),
        ("cifar.notes", Status.FAILED),
    ]
    assert rows[2].detail == "1 file, 12 bytes: mnist.a.parquet"
    assert "fails because of cifar.notes" in rows[1].detail
    empty = data.listing_outcomes("w1", data.read_mount(learner(tmp_path / "e"), ""))
    assert [(o.step, o.detail) for o in empty][1:] == [("data", "no files")]


def test_listing_a_mount_the_sidecar_does_not_use_flags_it(tmp_path):
    w = learner(tmp_path)
    (tmp_path / "dd").mkdir()
    got = data.read_mount(w, str(tmp_path / "dd"))
    rows = data.listing_outcomes("w1", got)
    assert rows[0].status is Status.FAILED and "not the configured data dir" in rows[0].detail


def test_parsers_ignore_noise():
    assert data.parse_listing("garbage\nf x - - 61\nq 1 - - 61\nf 1 - - zz\n") == []
    assert C.parse_sha256_of("0 abc\n9 " + "a" * 64 + "\nx y\n", ["n"]) == {}
    assert C.parse_sha256_of("0 " + "b" * 64 + "\n", ["n"]) == {"n": "b" * 64}


# -- the task ----------------------------------------------------------------------------------
@pytest.fixture
def two_learners(tmp_path, monkeypatch, ctx_factory):
    """The listing task over two fake learners (fan_out replaced, nothing else)."""
    from flops_tasks import ssh

    fakes = {"w1": learner(tmp_path / "w1"), "w2": learner(tmp_path / "w2")}
    fakes["w2"].label = "w2"

    def fan_out(targets, work, **kw):
        return [o for t in targets for o in work(fakes[t.label])]

    monkeypatch.setattr(ssh, "fan_out", fan_out)
    inventory = {
        name: {"host": f"10.0.0.{i}", "roles": ["learner"]} for i, name in enumerate(fakes, start=1)
    }
    return fakes, ctx_factory({"inventory": inventory})


def test_list_task_reports_per_learner(tmp_path, two_learners):
    fakes, c = two_learners
    write(tmp_path / "w1" / "mount", "mnist.a.parquet", parquet_bytes())
    write(tmp_path / "w2" / "mount", "cifar.a.parquet", parquet_bytes())
    result = flow.listing(Run.of(c))
    assert result["ok"] is True and result["tag"] is None
    assert result["hosts"]["w1"]["tags"] == {"mnist": [{"name": "mnist.a.parquet", "size": 12}]}
    assert result["hosts"]["w2"]["tags"] == {"cifar": [{"name": "cifar.a.parquet", "size": 12}]}
    only = flow.listing(Run.of(c), tag="mnist")
    assert only["hosts"]["w1"]["tags"] and only["hosts"]["w2"]["tags"] == {}


def test_list_task_unknown_tag_names_the_tags_that_exist(tmp_path, two_learners):
    fakes, c = two_learners
    write(tmp_path / "w1" / "mount", "mnist.a.parquet", parquet_bytes())
    write(tmp_path / "w2" / "mount", "cifar.a.parquet", parquet_bytes())
    with pytest.raises(FlopsError) as err:
        flow.listing(Run.of(c), tag="dogs")
    assert err.value.code == 2
    assert err.value.message == "unknown tag 'dogs': the learners hold the tags cifar, mnist"


def test_list_task_fails_when_a_file_breaks_the_sidecar(tmp_path, two_learners, capsys):
    fakes, c = two_learners
    write(tmp_path / "w2" / "mount", "cifar.txt", b"text")
    with pytest.raises(FlopsError) as err:
        flow.listing(Run.of(c), as_json=True)
    assert err.value.code == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["hosts"]["w2"]["status"] == "failed"
    assert out["hosts"]["w2"]["problems"][0]["breaks"] == "cifar"


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"listing": True, "src": "x"}, "use one of them"),
        ({"src": "x"}, "--tag is missing"),
        ({"tag": "m"}, "--src is missing"),
        ({"tag": "a.b", "src": "x"}, "first dot"),
        ({"listing": True, "tag": "a.b"}, "first dot"),
    ],
)
def test_task_usage_errors(two_learners, kw, needle):
    from flops_tasks import collection as tasks

    fakes, c = two_learners
    with pytest.raises(FlopsError, match=needle):
        tasks.learner_data(c, **{("list_" if k == "listing" else k): v for k, v in kw.items()})
    assert all(f.commands == [] for f in fakes.values())


def test_copy_task_over_two_learners(tmp_path, two_learners, src):
    fakes, c = two_learners
    run = Run.of(c)
    flow.copy(run, src=str(src), tag="mnist")
    report = run.report
    assert report.ok and [o.status for o in report.outcomes] == [Status.CHANGED] * 2
    for name in ("w1", "w2"):
        assert sorted(p.name for p in (tmp_path / name / "mount").iterdir()) == [
            "mnist.test.parquet",
            "mnist.train.parquet",
        ]


def test_recordings_are_what_docker_said():
    info = recorded_inspect("volume", Path("/x"))
    assert info["Name"] == "/ml_data_server" and info["State"]["Running"] is True


# -- install_file as root in a folder the sidecar can write to (symlink attacks) --------------
def run_sh(script: str, path_first: Path | None = None) -> tuple[int, str]:
    import subprocess

    env = {"PATH": (f"{path_first}:" if path_first else "") + os.environ["PATH"], "LC_ALL": "C"}
    proc = subprocess.run(
        ["/bin/sh", "-c", script], capture_output=True, text=True, env=env, timeout=30
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture
def victim(tmp_path):
    """A host file the attacker wants overwritten and made world-readable."""
    path = write(tmp_path / "etc", "shadow", b"root:secret")
    path.chmod(0o600)
    return path


def untouched(victim: Path) -> bool:
    return victim.read_bytes() == b"root:secret" and victim.stat().st_mode & 0o777 == 0o600


def upload(tmp_path: Path, body: bytes = b"PAR1 new PAR1") -> Path:
    return write(tmp_path / "tmp", "flops-upload.x", body)


def test_install_file_never_writes_through_a_planted_temp_link(tmp_path, victim):
    """Before: cp to the predictable '<dest>.flops-tmp' followed a planted link, and chmod
    0644 made the target world-readable."""
    mount = tmp_path / "mount"
    mount.mkdir()
    dest = mount / "mnist.a.parquet"
    (mount / "mnist.a.parquet.flops-tmp").symlink_to(victim)
    rc, out = run_sh(C.install_file(str(upload(tmp_path)), str(dest)))
    assert untouched(victim), out
    assert rc == 0 and dest.read_bytes() == b"PAR1 new PAR1" and not dest.is_symlink()


def test_install_file_refuses_a_temp_name_taken_even_when_predicted(tmp_path, victim):
    """An attacker who wins the race to the random name (mktemp made to answer a name they
    planted a link at) gets a refusal, not a write through the link."""
    mount = tmp_path / "mount"
    mount.mkdir()
    planted = mount / ".flops-tmp.PREDICTED"
    planted.symlink_to(victim)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "mktemp").write_text(f"#!/bin/sh\necho {planted}\n")
    (stubs / "mktemp").chmod(0o755)
    src = upload(tmp_path)
    rc, out = run_sh(C.install_file(str(src), str(mount / "mnist.a.parquet")), path_first=stubs)
    assert rc != 0 and "File exists" in out
    assert untouched(victim) and not (mount / "mnist.a.parquet").exists()
    assert not src.exists()  # the upload is removed in every case


def test_install_file_refuses_a_destination_that_is_a_link(tmp_path, victim):
    mount = tmp_path / "mount"
    mount.mkdir()
    dest = mount / "mnist.a.parquet"
    dest.symlink_to(victim)
    rc, out = run_sh(C.install_file(str(upload(tmp_path)), str(dest)))
    assert rc != 0 and "symbolic link" in out
    assert untouched(victim) and dest.is_symlink()
    assert [p.name for p in mount.iterdir()] == ["mnist.a.parquet"]  # no temp left behind


def test_install_file_replaces_a_file_atomically_with_mode_0644(tmp_path):
    mount = tmp_path / "mount"
    dest = write(mount, "mnist.a.parquet", b"old")
    dest.chmod(0o600)
    before = dest.stat().st_ino
    rc, out = run_sh(C.install_file(str(upload(tmp_path)), str(dest)))
    assert rc == 0, out
    assert dest.read_bytes() == b"PAR1 new PAR1" and dest.stat().st_mode & 0o777 == 0o644
    assert dest.stat().st_ino != before  # a new inode renamed over the old name
    assert [p.name for p in mount.iterdir()] == ["mnist.a.parquet"]


def test_a_mount_that_cannot_be_read_fails_the_host(tmp_path):
    w = learner(tmp_path)
    (tmp_path / "mount").rmdir()  # the volume vanished between the two probes
    with pytest.raises(RemoteFailure, match=r"reading .*/mount failed: .*"):
        data.read_mount(w, "")


def test_copy_before_the_sidecar_exists_says_when_it_is_served(tmp_path, src):
    (tmp_path / "vol").mkdir()
    w = FakeLearner(tmp_path, sidecar=None, volume=tmp_path / "vol")
    [out] = data.copy_data(w, data.collect(str(src), "m"), "")
    assert out.status is Status.CHANGED
    assert (
        "ml_data_server is not there yet: served once inv prepare-learner starts it" in out.detail
    )
    assert sorted(p.name for p in (tmp_path / "vol").iterdir()) == [
        "m.test.parquet",
        "m.train.parquet",
    ]
