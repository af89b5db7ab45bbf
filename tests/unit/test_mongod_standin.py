"""The flops_db stand-in (testbed/flops_db/mongod-standin.py), through pymongo.

It runs as a local process on a free port (no Docker). Each test does what one of its
clients does: the FLOps manager's data layer (upstream addon-FLOps
flops_manager/database/common.py and main.py), flops-tasks' redb, and the image's
healthcheck (mongo-ping). What it does not support must fail loudly, never answer wrongly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pymongo
import pytest
from bson.objectid import ObjectId
from pymongo.errors import OperationFailure

ROOT = Path(__file__).resolve().parents[2]
STANDIN = ROOT / "testbed" / "flops_db" / "mongod-standin.py"
PING = ROOT / "testbed" / "flops_db" / "mongo-ping"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, dbpath: Path) -> None:
        self.dbpath = dbpath
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        self.proc = subprocess.Popen(
            [sys.executable, str(STANDIN), "--port", str(self.port), "--dbpath", str(self.dbpath)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"stand-in did not start: {self.proc.stdout.read()}"
                    ) from None
                time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=10)
        self.proc.stdout.close()
        return code

    def client(self) -> pymongo.MongoClient:
        return pymongo.MongoClient(
            "127.0.0.1",
            self.port,
            directConnection=True,
            serverSelectionTimeoutMS=3000,
            connectTimeoutMS=3000,
        )


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path / "db").start()
    yield srv
    if srv.proc and srv.proc.poll() is None:
        srv.stop(signal.SIGKILL)


@pytest.fixture
def client(server):
    c = server.client()
    yield c
    c.close()


def test_handshake_reports_a_standalone_mongodb_3_6(client):
    assert client.admin.command("ping")["ok"] == 1.0
    hello = client.admin.command("ismaster")
    assert hello["ismaster"] is True and hello["maxWireVersion"] == 6
    assert client.topology_description.topology_type_name == "Single"


def test_the_managers_data_layer(client):
    # flops_manager/database/common.py, on the collection named after the model class
    coll = client["flops"]["FLOpsProject"]
    project = {
        "customer_id": "alice",
        "flops_project_id": "p1",
        "app_id": "a1",
        "training_rounds": 3,
        "nested": {"platform": "amd64"},
    }
    oid = coll.insert_one(dict(project)).inserted_id  # add_to_db
    assert isinstance(oid, ObjectId)
    coll.insert_one({"customer_id": "bob", "flops_project_id": "p2", "app_id": "a2"})
    coll.insert_one({"customer_id": "carol", "flops_project_id": "p1", "app_id": "a3"})

    found = coll.find_one({"customer_id": "alice"})  # retrieve_from_db_by_customer_id
    assert found == {"_id": oid, **project}
    assert coll.find_one({"app_id": "a2"})["customer_id"] == "bob"  # ..._by_app_id
    assert coll.find_one({"customer_id": "nobody"}) is None
    # retrieve_all_from_db_by_project_id
    assert sorted(d["app_id"] for d in coll.find({"flops_project_id": "p1"})) == ["a1", "a3"]
    assert coll.find_one({"nested.platform": "amd64"})["_id"] == oid

    res = coll.replace_one({"_id": oid}, {**project, "training_rounds": 5})  # replace_in_db
    assert (res.matched_count, res.modified_count) == (1, 1)
    assert coll.find_one({"_id": oid})["training_rounds"] == 5
    assert coll.replace_one({"_id": ObjectId()}, project).matched_count == 0

    coll.delete_one({"flops_project_id": "p1"})  # remove_from_db_by_project_id: one only
    assert sorted(d["app_id"] for d in coll.find({})) == ["a2", "a3"]


def test_equality_follows_mongodb(client):
    coll = client.t.eq
    coll.insert_many([{"k": 1}, {"k": 1.0}, {"k": "1"}, {"k": True}, {"other": 0}])
    assert len(list(coll.find({}))) == 5
    assert len(list(coll.find({"k": 1}))) == 2  # numbers compare by value
    assert [d["k"] for d in coll.find({"k": "1"})] == ["1"]
    assert [d["k"] for d in coll.find({"k": True})] == [True]
    assert [d["other"] for d in coll.find({"k": None})] == [0]  # missing equals null


def test_the_managers_reset_db_drops_only_the_flops_collections(client):
    # flops_manager/database/main.py FLOpsDB.drop_all_collections, and flops-tasks' redb
    client.flops.A.insert_one({"x": 1})
    client.flops.B.insert_one({"x": 2})
    client.other.keep.insert_one({"x": 3})
    assert set(client.list_database_names()) == {"flops", "other"}
    for name in client.list_database_names():
        if name == "flops":
            for coll in client[name].list_collection_names():
                client[name].drop_collection(coll)
    assert client.flops.list_collection_names() == []
    assert "flops" not in client.list_database_names()
    assert client.other.keep.find_one({"x": 3}) is not None
    client.flops.drop_collection("never-there")  # pymongo ignores NamespaceNotFound


def test_acknowledged_writes_survive_kill_and_restart(server):
    c = server.client()
    oid = c.flops.P.insert_one({"customer_id": "alice"}).inserted_id
    c.flops.P.replace_one({"_id": oid}, {"customer_id": "alice", "v": 2})
    c.flops.Q.insert_one({"gone": True})
    c.flops.drop_collection("Q")
    c.close()
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    server.start()
    c = server.client()
    assert c.flops.P.find_one({"customer_id": "alice"}) == {
        "_id": oid,
        "customer_id": "alice",
        "v": 2,
    }
    assert c.flops.list_collection_names() == ["P"]
    c.close()
    assert server.stop(signal.SIGTERM) == 0  # a clean stop on SIGTERM (docker stop)


@pytest.mark.parametrize(
    "action",
    [
        lambda c: c.t.x.find_one({"n": {"$gt": 1}}),
        lambda c: c.t.x.find_one({"$or": [{"n": 1}]}),
        lambda c: c.t.x.update_one({"n": 1}, {"$set": {"n": 2}}),
        lambda c: c.t.x.replace_one({"n": 1}, {"n": 2}, upsert=True),
        lambda c: list(c.t.x.find({}).sort("n")),
        lambda c: list(c.t.x.find({}, projection={"n": 1})),
        lambda c: c.t.x.count_documents({}),
    ],
)
def test_what_it_does_not_support_fails_loudly(client, action):
    client.t.x.insert_one({"n": 1})
    with pytest.raises(OperationFailure, match="stand-in"):
        action(client)
    assert client.t.x.find_one({"n": 1})["n"] == 1  # nothing changed


def test_mongo_ping_tells_up_from_down(server):
    ping = [sys.executable, str(PING), "--port", str(server.port), "--timeout-ms", "500"]
    up = subprocess.run(ping, capture_output=True, text=True, timeout=30)
    assert (up.returncode, up.stdout.strip()) == (0, "1")
    server.stop()
    down = subprocess.run(ping, capture_output=True, text=True, timeout=30)
    assert down.returncode == 1 and "mongo-ping:" in down.stderr


def test_data_files_are_bson_per_collection(server, client):
    client["flops"]["My Coll"].insert_one({"a": 1})
    path = server.dbpath / "flops" / "My%20Coll.bson"
    assert path.is_file() and not [p for p in os.listdir(path.parent) if p.startswith(".tmp")]
