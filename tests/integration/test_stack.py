"""Data safety of the management stack, one test per row of the table in README.md ("Data safety").

Real data is written to each store (registry image, FLOps DB record, MLflow MySQL row, FTP
artifact, retained MQTT message) and read back after each action.
"""

from __future__ import annotations

import ftplib
import io
import json
import subprocess
import urllib.request
import uuid

import pytest

from flops_tasks import testbed as tb
from flops_tasks.env import read_env_file

from .helpers import inv

pytestmark = pytest.mark.integration
REGISTRY = "127.0.0.1:5073"
PROJECT = tb.PROJECT


def sh(*args: str, input: str | None = None) -> str:
    res = subprocess.run(args, capture_output=True, text=True, input=input, timeout=300)
    assert res.returncode == 0, f"{args}: {res.stdout}{res.stderr}"
    return res.stdout


def secrets() -> dict[str, str]:
    return read_env_file(tb.default_paths().env_file)


def exec_in(service: str, *args: str, env: dict | None = None) -> str:
    envs = [f"-e{k}={v}" for k, v in (env or {}).items()]
    return sh("docker", "exec", *envs, f"{PROJECT}-{service}-1", *args)


class Stores:
    """Write one marker into every store; say which stores still hold it."""

    def __init__(self, tmp_path) -> None:
        self.mark = uuid.uuid4().hex[:12]
        self.tmp = tmp_path
        self.image = f"{REGISTRY}/safety/img-{self.mark}:1"

    def write_all(self) -> None:
        self.push_image(self.image)
        self.mongo().flops.safety.insert_one({"mark": self.mark})
        self.mysql(f"CREATE DATABASE IF NOT EXISTS safety; CREATE TABLE IF NOT EXISTS safety.t "
                   f"(v VARCHAR(64)); INSERT INTO safety.t VALUES ('{self.mark}');")
        with self.ftp() as ftp:
            ftp.storbinary(f"STOR {self.mark}.txt", io.BytesIO(self.mark.encode()))
        exec_in("flops_mqtt", "mosquitto_pub", "-p", "9027", "-r", "-t", "safety/mark",
                "-m", self.mark)

    def push_image(self, ref: str) -> None:
        ctx = self.tmp / ref.replace("/", "_").replace(":", "_")
        ctx.mkdir(exist_ok=True)
        (ctx / "mark.txt").write_text(ref)
        (ctx / "Dockerfile").write_text("FROM scratch\nCOPY mark.txt /mark.txt\n")
        sh("docker", "build", "-q", "-t", ref, str(ctx))
        sh("docker", "push", "-q", ref)

    def mongo(self):
        import pymongo

        return pymongo.MongoClient("127.0.0.1", 10027, directConnection=True,
                                   serverSelectionTimeoutMS=5000)

    def mysql(self, sql: str) -> str:
        return exec_in("mlflow_backend_store", "mysql", "-uroot", "-N", "-e", sql,
                       env={"MYSQL_PWD": secrets()["MYSQL_ROOT_PASSWORD"]})

    def ftp(self) -> ftplib.FTP:
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", 21, timeout=10)
        ftp.login("flops", secrets()["FTP_PASSWORD"])
        return ftp

    def held(self) -> dict[str, bool]:
        repo = self.image.split("/", 1)[1].split(":")[0]
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/_catalog", timeout=10) as resp:
            registry = repo in json.load(resp)["repositories"]
        mongo = self.mongo()
        flops_db = mongo.flops.safety.find_one({"mark": self.mark}) is not None
        mysql = self.mark in self.mysql(f"SELECT v FROM safety.t WHERE v = '{self.mark}';")
        with self.ftp() as ftp:
            buf = io.BytesIO()
            try:
                ftp.retrbinary(f"RETR {self.mark}.txt", buf.write)
                artifacts = buf.getvalue() == self.mark.encode()
            except ftplib.error_perm:
                artifacts = False
        mqtt = exec_in("flops_mqtt", "mosquitto_sub", "-p", "9027", "-t", "safety/mark",
                       "-C", "1", "-W", "5").strip() == self.mark
        return {"registry": registry, "flops_db": flops_db, "mlflow_db": mysql,
                "artifacts": artifacts, "mqtt": mqtt}


ALL = {"registry": True, "flops_db": True, "mlflow_db": True, "artifacts": True, "mqtt": True}


@pytest.fixture
def stores(testbed, tmp_path):
    s = Stores(tmp_path)
    s.write_all()
    assert s.held() == ALL
    yield s
    tb.push_sidecar(lambda _: None)  # learners pull the sidecar from the registry


def ok(res: subprocess.CompletedProcess) -> None:
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr


def test_down_then_up_keeps_everything(stores):
    ok(inv("down"))
    ok(inv("up"))
    assert stores.held() == ALL


def test_reset_keeps_everything(stores):
    ok(inv("reset"))
    assert stores.held() == ALL
    ok(inv("reset", "--recreate"))
    assert stores.held() == ALL


def test_redb_empties_only_the_flops_db(stores):
    stores.mongo().other_db.keep.insert_one({"mark": stores.mark})
    ok(inv("redb", "--yes"))
    assert stores.held() == {**ALL, "flops_db": False}
    assert stores.mongo().other_db.keep.find_one({"mark": stores.mark}) is not None


def test_reset_db_empties_only_the_flops_db(stores):
    ok(inv("reset", "--db", "--yes"))
    assert stores.held() == {**ALL, "flops_db": False}


def fetch_every_blob(ref: str) -> int:
    """GET the manifest and every blob it names; returns how many blobs were fetched."""
    name, tag = ref.split("/", 1)[1].rsplit(":", 1)
    accept = ("application/vnd.docker.distribution.manifest.v2+json,"
              "application/vnd.oci.image.manifest.v1+json")
    req = urllib.request.Request(f"http://{REGISTRY}/v2/{name}/manifests/{tag}",
                                 headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=10) as resp:
        manifest = json.load(resp)
    digests = [manifest["config"]["digest"], *[layer["digest"] for layer in manifest["layers"]]]
    for digest in digests:
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/{name}/blobs/{digest}",
                                    timeout=10) as resp:
            assert resp.status == 200 and resp.read()
    return len(digests)


def test_clear_registry_empties_it_and_it_still_accepts_pushes(stores):
    ok(inv("clear-registry", "--yes"))
    assert stores.held() == {**ALL, "registry": False}
    # the same layers again: an in-memory blob cache would answer "already exists" and the
    # blobs would be missing; ours was restarted, so every blob must be fetchable
    stores.push_image(stores.image)
    assert fetch_every_blob(stores.image) == 2
    assert stores.held() == ALL


def test_reset_registry_flag(stores):
    ok(inv("reset", "--registry", "--yes"))
    assert stores.held() == {**ALL, "registry": False}
    stores.push_image(stores.image)
    assert fetch_every_blob(stores.image) == 2


def test_destructive_tasks_refuse_without_a_tty_and_change_nothing(stores):
    for args in (("clear-registry",), ("redb",), ("reset", "--registry"), ("reset", "--db")):
        res = inv(*args)
        assert res.returncode == 3, res.stdout + res.stderr
        assert "This will delete:" in res.stderr
        assert "nothing deleted" in res.stderr
    assert stores.held() == ALL


def test_dry_reset_prints_a_plan_and_touches_nothing(stores):
    from python_on_whales import docker

    before = {c.name: c.id for c in docker.container.list(filters=[("label", tb.LABEL)])}
    res = inv("--dry", "reset", "--registry", "--db", "--yes")
    ok(res)
    assert "plan: docker compose" in res.stdout and " restart " in res.stdout
    assert "docker volume rm flops_testbed_registry_data" in res.stdout
    assert "DELETE" in res.stdout
    assert secrets()["MYSQL_ROOT_PASSWORD"] not in res.stdout + res.stderr
    after = {c.name: c.id for c in docker.container.list(filters=[("label", tb.LABEL)])}
    assert before == after
    assert stores.held() == ALL


def test_status_and_logs(testbed):
    res = inv("status", "--json")
    ok(res)
    rows = {r["service"]: r for r in json.loads(res.stdout)["services"]}
    assert {r["health"] for r in rows.values()} == {"healthy"}
    assert rows["flops_image_registry"]["ports"] == ["0.0.0.0:5073"]
    res = inv("logs", "--service", "flops_db", "--tail", "5")
    ok(res)
    res = inv("logs", "--service", "nope")
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0
    assert "unknown service 'nope'" in res.stderr
