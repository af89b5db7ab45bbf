"""learner-data in process: local checks, where the sidecar reads, copying and listing.

A ``FakeLearner`` (learner_fakes.py) answers Docker's questions from recordings made on a
testbed worker and runs every file command for real on a temp dir, so each test sees the
Outcomes data.py returns and the commands it planned or ran.
"""

from __future__ import annotations

import hashlib
import io
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


def parquet_bytes(body: bytes = b"rows", column: str = "body") -> bytes:
    """A real Parquet file of one binary column holding ``body`` (pyarrow reads its footer
    as the sidecar does; the Flight tests serve such files for real)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.table({column: [body]}), sink)
    return sink.getvalue()


def magic_only(body: bytes = b"rows") -> bytes:
    """PAR1 at both ends and no footer: passes the magic check, not pyarrow."""
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
    total = sum(f.size for f in files)
    [first] = data.copy_data(w, files, "", progress=lambda host, n: sent.append(n))
    assert first.status is Status.CHANGED
    assert f"copied 2 files ({total} bytes)" in first.detail
    assert "checksums verified" in first.detail
    assert sorted(p.name for p in mount.iterdir()) == ["mnist.test.parquet", "mnist.train.parquet"]
    for f in files:
        assert (mount / f.name).read_bytes() == f.path.read_bytes()
        assert (mount / f.name).stat().st_mode & 0o777 == 0o644
    assert sum(sent) == total
    uploads = sorted(str(p) for p in (tmp_path / "uploads").iterdir())
    assert uploads == []  # every upload was moved away
    assert [c for c in w.changes] == [
        C.install_file(
            str(tmp_path / "uploads" / f"flops-upload.{i}"), f"{mount}/{f.name}", f.sha256, w.user
        )
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


def test_an_upload_changed_on_the_way_is_never_installed(tmp_path, src):
    w = learner(tmp_path)
    old = write(tmp_path / "mount", "mnist.test.parquet", parquet_bytes(b"old rows"))

    def tamper(command: str) -> None:  # the upload arrives changed
        for p in (tmp_path / "uploads").iterdir():
            p.write_bytes(parquet_bytes(b"changed on the way"))

    w.on_change = tamper
    with pytest.raises(RemoteFailure, match="checksum mismatch: the copy of .* left as it was"):
        data.copy_data(w, data.collect(str(src), "mnist"), "")
    assert old.read_bytes() == parquet_bytes(b"old rows")
    assert sorted(p.name for p in (tmp_path / "mount").iterdir()) == ["mnist.test.parquet"]


def test_a_checksum_mismatch_after_the_copy_removes_the_file(tmp_path, src):
    """Before: the file that failed the final check stayed where the sidecar serves it."""
    w = learner(tmp_path)
    files = data.collect(str(src), "mnist")
    first = tmp_path / "mount" / files[0].name

    def tamper(command: str) -> None:  # the first copy changes once installed
        if first.exists() and files[1].name in command:
            first.write_bytes(parquet_bytes(b"changed in place"))

    w.on_change = tamper
    with pytest.raises(RemoteFailure, match="checksum mismatch after copy: .* removed from"):
        data.copy_data(w, files, "")
    assert not first.exists()
    assert (tmp_path / "mount" / files[1].name).read_bytes() == files[1].path.read_bytes()


def test_copy_into_a_stopped_sidecars_mount_says_when_it_is_served(tmp_path, src):
    w = learner(tmp_path, kind="bind")  # recorded as "created", not running
    [out] = data.copy_data(w, data.collect(str(src), "m"), str(tmp_path / "mount"))
    assert out.status is Status.CHANGED and "ml_data_server is created" in out.detail


# -- Parquet footers, read with pyarrow as the sidecar reads them -----------------------------
def broken_footer(body: bytes = b"rows") -> bytes:
    """A real Parquet file whose footer is garbage: PAR1 still at both ends."""
    import struct

    raw = parquet_bytes(body)
    (length,) = struct.unpack("<I", raw[-8:-4])
    return raw[: -(length + 8)] + b"\xff" * length + raw[-8:]


@pytest.fixture
def no_local_pyarrow(monkeypatch):
    """This machine without pyarrow: footers are read in the sidecar, or not at all."""
    monkeypatch.setattr(data, "local_pyarrow", lambda: None)


def test_a_file_whose_footer_does_not_parse_is_refused_before_anything_is_copied(tmp_path, src):
    """Before: PAR1 at both ends was enough, and list_flights then failed for the tag."""
    write(src, "zz.parquet", broken_footer())
    with pytest.raises(FlopsError) as err:
        data.collect(str(src), "mnist")
    assert err.value.code == 2 and "\n" not in err.value.message
    assert "zz.parquet: its Parquet footer does not parse (pyarrow 15." in err.value.message
    assert "the sidecar could not list tag 'mnist': nothing copied" in err.value.message


def test_files_of_one_tag_with_different_schemas_are_refused(tmp_path, src):
    write(src, "other.parquet", parquet_bytes(b"x", column="label"))
    with pytest.raises(FlopsError) as err:
        data.collect(str(src), "mnist")
    assert err.value.code == 2
    assert "schemas differ, and a learner merges every file" in err.value.message
    assert "body: binary" in err.value.message and "label: binary" in err.value.message


def test_without_pyarrow_here_the_sidecar_refuses_a_broken_footer_before_any_copy(
    tmp_path, src, no_local_pyarrow
):
    write(src, "zz.parquet", broken_footer())
    files = data.collect(str(src), "mnist")  # nothing here can read footers
    assert all(f.footer is None for f in files)
    w = learner(tmp_path)
    with pytest.raises(RemoteFailure) as err:
        data.copy_data(w, files, "")
    assert "zz.parquet: its Parquet footer does not parse (pyarrow 15." in str(err.value)
    assert "in ml_data_server" in str(err.value) and "nothing copied" in str(err.value)
    assert w.changes == [] and list((tmp_path / "mount").iterdir()) == []


@pytest.mark.parametrize("here", [True, False], ids=["pyarrow-here", "pyarrow-in-sidecar"])
def test_a_copy_that_would_mix_schemas_in_a_tag_is_refused(tmp_path, src, monkeypatch, here):
    if not here:
        monkeypatch.setattr(data, "local_pyarrow", lambda: None)
    w = learner(tmp_path)
    stored = write(tmp_path / "mount", "mnist.old.parquet", parquet_bytes(column="label"))
    write(tmp_path / "mount", "cifar.old.parquet", parquet_bytes(column="other"))
    with pytest.raises(RemoteFailure) as err:
        data.copy_data(w, data.collect(str(src), "mnist"), "")
    assert "tag 'mnist' in" in str(err.value) and "schemas differ" in str(err.value)
    assert "mnist.old.parquet (label: binary)" in str(err.value)
    assert str(err.value).endswith("nothing copied")
    assert w.changes == []
    stored.unlink()  # the same schema is welcome, other tags do not matter
    [out] = data.copy_data(w, data.collect(str(src), "mnist"), "")
    assert out.status is Status.CHANGED


def test_with_no_footer_reader_the_copy_warns(tmp_path, src, no_local_pyarrow):
    (tmp_path / "vol").mkdir()
    w = FakeLearner(tmp_path, sidecar=None, volume=tmp_path / "vol")
    out = data.copy_data(w, data.collect(str(src), "m"), "")
    assert [o.status for o in out] == [Status.CHANGED, Status.WARNING]
    assert out[1].step == "footers" and "only the PAR1 magic was checked" in out[1].detail


@pytest.mark.parametrize("here", [True, False])
def test_a_sidecar_without_pyarrow_leaves_the_footers_to_this_machine(tmp_path, monkeypatch, here):
    if not here:
        monkeypatch.setattr(data, "local_pyarrow", lambda: None)
    w = learner(tmp_path, sidecar_python=False)
    write(tmp_path / "mount", "mnist.a.parquet", parquet_bytes())
    write(tmp_path / "mount", "mnist.b.parquet", broken_footer())
    got = data.read_mount(w, "")
    if here:
        assert got.reader.where == "controller"
        assert [e.breaks for e in got.problems()] == ["mnist"]
    else:
        assert got.reader.where == "" and "ml_data_server has no Python with pyarrow" in (
            got.reader.why
        )
        assert got.problems() == []  # the magic check cannot see it: and says so
        rows = data.listing_outcomes("w1", got)
        assert [(o.step, o.status) for o in rows if o.status is Status.WARNING] == [
            ("footers", Status.WARNING)
        ]
        assert got.to_dict()["footers"]["read_by"] is None


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
        "cats": [],
        "cifar": ["cifar.x.parquet"],
        "dogs": [],
        "mnist": ["mnist.a.parquet", "mnist.b.parquet"],
        "plain": ["plain"],
    }
    assert got.reader == data.Reader("sidecar", data.local_pyarrow() or "")
    problems = {e.name: (e.breaks, e.problem) for e in got.problems()}
    assert problems["cifar.readme"][0] == "cifar"
    assert "not Parquet" in problems["cifar.readme"][1]
    assert problems["dogs"][0] == "dogs" and "a directory, not a Parquet" in problems["dogs"][1]
    # the sidecar follows a link (here to /etc/passwd, not Parquet): the tag breaks
    assert problems["cats.link"][0] == "cats" and "symbolic link" in problems["cats.link"][1]
    assert problems[".hidden.parquet"][0] is None
    assert "tag is empty" in problems[".hidden.parquet"][1]
    assert "never served" in problems["a,b.x.parquet"][1]
    assert "left over" in problems[".flops-tmp.AbCdEf1234"][1]
    assert "not UTF-8" in problems["bad\\xff.x.parquet"][1]
    assert "new\\x0aline.parquet" in problems  # control characters are shown escaped
    assert "mnist.a.parquet" not in problems and "plain" not in problems


def test_listing_json_shape(tmp_path):
    w = learner(tmp_path)
    lay_out(tmp_path / "mount")
    got = data.read_mount(w, "").only("cifar").to_dict()
    size = (tmp_path / "mount" / "cifar.x.parquet").stat().st_size
    problem = got["problems"][0].pop("problem")
    assert problem.startswith("not Parquet: pyarrow cannot read its footer (")
    assert problem.endswith("): list_flights for tag 'cifar' fails while it is there: remove it")
    assert got == {
        "mount": str(tmp_path / "mount"),
        "source": "volume ml_data_server_volume",
        "sidecar": "running",
        "footers": {"read_by": "sidecar", "pyarrow": data.local_pyarrow()},
        "tags": {"cifar": [{"name": "cifar.x.parquet", "size": size, "rows": 1}]},
        "merge_problems": {},
        "problems": [
            {
                "name": "cifar.readme",
                "tag": "cifar",
                "kind": "file",
                "size": 11,
                "breaks": "cifar",
                "severity": "failed",
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
    size = (tmp_path / "mount" / "mnist.a.parquet").stat().st_size
    assert rows[2].detail == f"1 file, {size} bytes: mnist.a.parquet"
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
    size = len(parquet_bytes())
    assert result["hosts"]["w1"]["tags"] == {
        "mnist": [{"name": "mnist.a.parquet", "size": size, "rows": 1}]
    }
    assert result["hosts"]["w2"]["tags"] == {
        "cifar": [{"name": "cifar.a.parquet", "size": size, "rows": 1}]
    }
    assert result["hosts"]["w1"]["footers"]["read_by"] == "sidecar"
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


NEW = b"PAR1 new PAR1"


def upload(tmp_path: Path, body: bytes = NEW) -> Path:
    return write(tmp_path / "tmp", "flops-upload.x", body)


def install(src: Path, dest: Path, body: bytes = NEW, owner: str | None = None) -> str:
    """install_file of an upload whose sent bytes were ``body``, made by ``owner``."""
    import getpass

    sha = hashlib.sha256(body).hexdigest()
    return C.install_file(str(src), str(dest), sha, owner or getpass.getuser())


def test_install_file_never_writes_through_a_planted_temp_link(tmp_path, victim):
    """Before: cp to the predictable '<dest>.flops-tmp' followed a planted link, and chmod
    0644 made the target world-readable."""
    mount = tmp_path / "mount"
    mount.mkdir()
    dest = mount / "mnist.a.parquet"
    (mount / "mnist.a.parquet.flops-tmp").symlink_to(victim)
    rc, out = run_sh(install(upload(tmp_path), dest))
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
    rc, out = run_sh(install(src, mount / "mnist.a.parquet"), path_first=stubs)
    assert rc != 0 and "File exists" in out
    assert untouched(victim) and not (mount / "mnist.a.parquet").exists()
    assert not src.exists()  # the upload is removed in every case


def test_install_file_refuses_a_destination_that_is_a_link(tmp_path, victim):
    mount = tmp_path / "mount"
    mount.mkdir()
    dest = mount / "mnist.a.parquet"
    dest.symlink_to(victim)
    rc, out = run_sh(install(upload(tmp_path), dest))
    assert rc != 0 and "symbolic link" in out
    assert untouched(victim) and dest.is_symlink()
    assert [p.name for p in mount.iterdir()] == ["mnist.a.parquet"]  # no temp left behind


def test_install_file_never_reads_an_upload_swapped_for_a_link(tmp_path, victim):
    """Before: root's dd followed a link the login user put in place of the upload, and
    copied a root-only file where the sidecar serves it to anyone."""
    mount = tmp_path / "mount"
    mount.mkdir()
    src = tmp_path / "tmp" / "flops-upload.x"
    src.parent.mkdir()
    src.symlink_to(victim)
    rc, out = run_sh(install(src, mount / "mnist.a.parquet", body=victim.read_bytes()))
    assert rc != 0 and "not a regular file" in out
    assert list(mount.iterdir()) == [] and untouched(victim)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_install_file_refuses_an_upload_the_login_did_not_make(tmp_path):
    mount = tmp_path / "mount"
    mount.mkdir()
    src = upload(tmp_path)
    os.chown(src, 65534, 65534)  # nobody's
    rc, out = run_sh(install(src, mount / "mnist.a.parquet"))
    assert rc != 0 and "not owned by" in out and "the SSH login" in out
    assert list(mount.iterdir()) == []


def test_install_file_opens_the_upload_without_following_links(tmp_path):
    """The check and the read are apart: dd itself refuses a link (iflag=nofollow)."""
    script = install(upload(tmp_path), tmp_path / "mount" / "x.parquet")
    assert "iflag=nofollow" in script and "oflag=nofollow" in script


def test_install_file_replaces_a_file_atomically_with_mode_0644(tmp_path):
    mount = tmp_path / "mount"
    dest = write(mount, "mnist.a.parquet", b"old")
    dest.chmod(0o600)
    before = dest.stat().st_ino
    rc, out = run_sh(install(upload(tmp_path), dest))
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
