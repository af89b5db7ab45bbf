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


def test_the_listing_predicts_what_the_real_sidecar_does_for_every_tag(tmp_path, serve):
    """Every tag read_mount shows is served exactly so, and every tag it says breaks makes
    the real list_flights fail; entries it says are never served are never listed."""
    import pyarrow as pa

    mount = tmp_path / "mount"
    parquet(mount / "mnist.a.parquet", x=[1])
    parquet(mount / "mnist.b.parquet", x=[2])
    parquet(mount / "plain", x=[3])  # no dot: the tag is the whole name
    parquet(mount / "cifar.x.parquet", x=[4])
    (mount / "cifar.readme.txt").write_text("not parquet")
    parquet(mount / "dogs" / "inner.parquet", x=[5])  # a directory under the tag "dogs"
    parquet(mount / ".hidden.parquet", x=[6])
    parquet(mount / "a,b.x.parquet", x=[7])
    (mount / "tiny.x.parquet").write_bytes(b"PAR1")
    w = learner(tmp_path)
    listing = data.read_mount(w, "")
    predicted = {tag: [e.name for e in files] for tag, files in listing.tags().items()}
    breaking = {e.breaks for e in listing.problems() if e.breaks}
    assert breaking == {"cifar", "dogs", "tiny"}
    client = serve(mount)
    for tag, served in predicted.items():
        if tag in breaking:
            with pytest.raises(pa.ArrowException):
                list_flights(client, [tag])
        else:
            assert names(list_flights(client, [tag])) == sorted(served), tag
    assert names(list_flights(client, ["mnist"])) == ["mnist.a.parquet", "mnist.b.parquet"]
    never = [e for e in listing.problems() if e.problem and "never served" in e.problem]
    assert sorted(e.name for e in never) == [".hidden.parquet", "a,b.x.parquet"]
    # the one way to reach them would be a tag no learner can send (empty, or with a comma)
    assert names(list_flights(client, ["a"])) == []
