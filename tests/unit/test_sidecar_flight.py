"""learner-data's layout, served by upstream's REAL ml_data_server.

The server is ``FlightServer`` from addon-FLOps ``ml_data_server_package/ml_data_server/
flight_server/main.py`` at the pinned ref, taken from the upstream tarball (test data, see
``../shared/upstream/README.md``; never copied into the project) and run in process with
pyarrow 15, the version upstream pins. Its folder is laid out by ``data.copy_data`` with
the real ``install_file`` (through the FakeLearner of learner_fakes.py). The client calls are
those of upstream's learner (fl_learner/data_loading.py): ``list_flights`` with
``{"data_tags": [...]}``, then ``do_get`` of each flight's first endpoint ticket.

Without the tarball these tests skip and say so; set FLOPS_UPSTREAM_TARBALL to point at it.
"""

from __future__ import annotations

import importlib
import json
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from flops_tasks import data
from flops_tasks.config import DEFAULTS
from flops_tasks.testbed import upstream_tarball

from .learner_fakes import learner

ROOT = Path(__file__).resolve().parents[2]
TARBALL = f"addon-FLOps-{DEFAULTS['addon']['ref'][:7]}.tar.gz"
SERVER = "addon-FLOps/ml_data_server_package/ml_data_server/flight_server/main.py"


def find_tarball() -> Path | None:
    """FLOPS_UPSTREAM_TARBALL, else shared/upstream/ beside the checkout or above it."""
    tarball = upstream_tarball()  # the testbed builds its images from the same file
    return tarball if tarball.is_file() else None


@pytest.fixture(scope="module")
def FlightServer(tmp_path_factory):  # noqa: N802 (it is the class)
    tarball = find_tarball()
    if tarball is None or not tarball.is_file():
        pytest.skip(
            f"upstream tarball {TARBALL} not found (looked for shared/upstream/ above "
            f"{ROOT}, or FLOPS_UPSTREAM_TARBALL): the real ml_data_server was NOT "
            "tested"
        )
    try:
        import pyarrow.flight  # noqa: F401
    except ImportError as exc:
        pytest.fail(
            f"pyarrow is missing ({exc}): it is in the test extra, pip install -e '.[test]'"
        )
    where = tmp_path_factory.mktemp("upstream")
    package = "addon-FLOps/ml_data_server_package/ml_data_server"
    with tarfile.open(tarball) as tar:
        members = [
            m
            for m in tar.getmembers()
            if m.isfile() and m.name.startswith(package + "/") and m.name.endswith(".py")
        ]
        assert SERVER in [m.name for m in members], f"{SERVER} is not in {tarball}"
        tar.extractall(where, members=members, filter="data")
    sys.path.insert(0, str(where / "addon-FLOps" / "ml_data_server_package"))
    try:
        module = importlib.import_module("ml_data_server.flight_server.main")
    finally:
        sys.path.pop(0)
    assert Path(module.__file__).is_relative_to(where)
    return module.FlightServer


@pytest.fixture
def serve(FlightServer):
    """Start upstream's server over a folder; yield a client like upstream's learner's."""
    import pyarrow.flight as flight

    started = []

    def start(folder: Path):
        server = FlightServer(location="grpc://127.0.0.1:0", repo=folder)
        thread = threading.Thread(target=server.serve, daemon=True)
        thread.start()
        started.append((server, thread))
        return flight.connect(f"grpc://127.0.0.1:{server.port}")

    yield start
    for server, thread in started:
        server.shutdown()
        thread.join(timeout=10)


def list_flights(client, tags: list[str]) -> list:
    return list(client.list_flights(criteria=json.dumps({"data_tags": tags}).encode("utf-8")))


def names(flights: list) -> list[str]:
    return sorted(f.descriptor.path[0].decode("utf-8") for f in flights)


def parquet(path: Path, **columns):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return table


def test_the_sidecar_lists_and_streams_what_learner_data_stored_for_the_tag(tmp_path, serve):
    mnist = parquet(
        tmp_path / "src" / "train.parquet",
        x=list(range(1000)),
        label=[f"l{i % 10}" for i in range(1000)],
    )
    parquet(tmp_path / "other" / "cats.parquet", y=[1.5, 2.5])
    w = learner(tmp_path)
    data.copy_data(w, data.collect(str(tmp_path / "src" / "train.parquet"), "mnist"), "")
    data.copy_data(w, data.collect(str(tmp_path / "other"), "cifar"), "")
    mount = tmp_path / "mount"
    assert sorted(p.name for p in mount.iterdir()) == ["cifar.cats.parquet", "mnist.train.parquet"]

    client = serve(mount)
    flights = list_flights(client, ["mnist"])
    assert names(flights) == ["mnist.train.parquet"]
    assert flights[0].total_records == 1000
    table = client.do_get(flights[0].endpoints[0].ticket).read_all()
    assert table.equals(mnist)
    assert names(list_flights(client, ["cifar"])) == ["cifar.cats.parquet"]
    assert names(list_flights(client, ["dogs"])) == []
    assert names(list_flights(client, ["mnist", "cifar"])) == [
        "cifar.cats.parquet",
        "mnist.train.parquet",
    ]


def corrupt_footer(path: Path) -> None:
    """A Parquet file whose footer is garbage, PAR1 still at both ends."""
    import struct

    raw = path.read_bytes()
    (length,) = struct.unpack("<I", raw[-8:-4])
    path.write_bytes(raw[: -(length + 8)] + b"\xff" * length + raw[-8:])


def readers(tmp_path: Path, mount: Path):
    """The same folder seen through each footer reader: the running sidecar, and pyarrow
    here while the sidecar is stopped (recorded as a created container over a bind mount)."""
    return {
        "sidecar": (learner(tmp_path / "a"), ""),
        "controller": (learner(tmp_path / "b", kind="bind"), str(tmp_path / "b" / "mount")),
    }


@pytest.mark.parametrize("reader", ["sidecar", "controller"])
def test_the_listing_predicts_what_the_real_sidecar_does_for_every_tag(tmp_path, serve, reader):
    """Every tag read_mount shows is served exactly so, and every tag it says breaks makes
    the real list_flights fail; entries it says are never served are never listed. The
    footers are read with pyarrow in the sidecar, or here: the verdicts are the same."""
    import pyarrow as pa

    w, data_dir = readers(tmp_path, tmp_path)[reader]
    mount = w.root / "mount"
    parquet(mount / "mnist.a.parquet", x=[1])
    parquet(mount / "mnist.b.parquet", x=[2])
    parquet(mount / "plain", x=[3])  # no dot: the tag is the whole name
    parquet(mount / "cifar.x.parquet", x=[4])
    (mount / "cifar.readme.txt").write_text("not parquet")
    parquet(mount / "dogs" / "inner.parquet", x=[5])  # a directory under the tag "dogs"
    parquet(mount / ".hidden.parquet", x=[6])
    parquet(mount / "a,b.x.parquet", x=[7])
    (mount / "tiny.x.parquet").write_bytes(b"PAR1")
    parquet(mount / "bad.x.parquet", x=[8])
    corrupt_footer(mount / "bad.x.parquet")  # PAR1 at both ends: the magic check passed it
    parquet(mount / "-dash.x.parquet", x=[9])
    (mount / "linked.x.parquet").symlink_to("mnist.a.parquet")  # the server follows it
    (mount / "dangling.x.parquet").symlink_to("nowhere.parquet")
    listing = data.read_mount(w, data_dir)
    assert listing.reader.where == reader
    predicted = {tag: [e.name for e in files] for tag, files in listing.tags().items()}
    breaking = {e.breaks for e in listing.problems() if e.breaks}
    assert breaking == {"cifar", "dogs", "tiny", "bad", "dangling"}
    assert predicted["-dash"] == ["-dash.x.parquet"] and predicted["linked"] == ["linked.x.parquet"]
    client = serve(mount)
    for tag, served in predicted.items():
        if tag in breaking:
            with pytest.raises(pa.ArrowException):
                list_flights(client, [tag])
        else:
            assert names(list_flights(client, [tag])) == sorted(served), tag
    assert names(list_flights(client, ["mnist"])) == ["mnist.a.parquet", "mnist.b.parquet"]
    # a link is served with the rows of what it points to
    [linked] = list_flights(client, ["linked"])
    assert client.do_get(linked.endpoints[0].ticket).read_all().to_pydict() == {"x": [1]}
    never = [e for e in listing.problems() if e.problem and "never served" in e.problem]
    assert [e.name for e in never] == ["a,b.x.parquet"]
    # the one way to reach it would be a tag no learner can send (with a comma)
    assert names(list_flights(client, ["a"])) == []
    # a dot file is served to a learner whose tags hold an empty entry ('mnist,'): said so
    hidden = next(e for e in listing.problems() if e.name == ".hidden.parquet")
    assert "tag is empty" in (hidden.problem or "") and hidden.breaks is None
    assert names(list_flights(client, ["mnist", ""])) == [
        ".hidden.parquet",
        "mnist.a.parquet",
        "mnist.b.parquet",
    ]
    rows = {o.step: o for o in data.listing_outcomes("w1", listing)}
    assert "must not list this tag first" in rows["tag -dash"].detail
    assert rows["tag -dash"].status.value == "ok"


@pytest.mark.parametrize("reader", ["sidecar", "controller"])
def test_files_of_one_tag_with_different_schemas_are_flagged_as_the_learner_fails_on_them(
    tmp_path, serve, reader
):
    """The sidecar serves both files; upstream's learner then merges every file of its
    tags into one dataset (pyarrow.concat_tables, fl_learner/data_loading.py) and fails."""
    import pyarrow as pa

    w, data_dir = readers(tmp_path, tmp_path)[reader]
    mount = w.root / "mount"
    parquet(mount / "mnist.a.parquet", x=[1], label=["a"])
    parquet(mount / "mnist.b.parquet", x=["one"], label=["b"])
    parquet(mount / "cifar.a.parquet", y=[1.5])
    listing = data.read_mount(w, data_dir)
    problems = listing.merge_problems()
    assert list(problems) == ["mnist"]
    assert (
        "a learner merges every file of the tags it requests into one dataset"
        in (problems["mnist"])
    )
    assert "x: int64" in problems["mnist"] and "x: string" in problems["mnist"]
    rows = {o.step: o for o in data.listing_outcomes("w1", listing)}
    assert rows["tag mnist"].status.value == "failed" and rows["tag cifar"].status.value == "ok"
    # what upstream's learner does with the tag (data_loading.py, without the temp files)
    client = serve(mount)
    tables = [
        client.do_get(f.endpoints[0].ticket).read_all() for f in list_flights(client, ["mnist"])
    ]
    assert len(tables) == 2  # both are served
    with pytest.raises(pa.ArrowInvalid, match="chema"):
        pa.concat_tables(tables)
