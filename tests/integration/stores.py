"""Real data in every store of the testbed's stack, and which stores still hold it.

One marker goes into each store (registry image, FLOps DB record, MLflow MySQL row, FTP
artifact, retained MQTT message) with upstream's fixed credentials, and is read back after
an action: the data-safety table of README.md is checked this way.
"""

from __future__ import annotations

import ftplib
import io
import json
import subprocess
import urllib.request
import uuid

REGISTRY = "127.0.0.1:5073"
# Upstream's fixed credentials, which the manager hard-codes (addon-FLOps
# flops_manager/mlflow/storages/backend_store.py and artifact_store.py).
MYSQL_ROOT_PASSWORD = "oakestra"
FTP_USER, FTP_PASSWORD = "flops", "flops"


def sh(*args: str, input: str | None = None) -> str:
    res = subprocess.run(args, capture_output=True, text=True, input=input, timeout=300)
    assert res.returncode == 0, f"{args}: {res.stdout}{res.stderr}"
    return res.stdout


def exec_in(service: str, *args: str, env: dict | None = None) -> str:
    envs = [f"-e{k}={v}" for k, v in (env or {}).items()]
    return sh("docker", "exec", *envs, service, *args)  # upstream's container names


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
                       env={"MYSQL_PWD": MYSQL_ROOT_PASSWORD})

    def ftp(self) -> ftplib.FTP:
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", 21, timeout=10)
        ftp.login(FTP_USER, FTP_PASSWORD)
        return ftp

    def retained(self) -> str:
        """The broker's retained message on safety/mark; "" when it holds none (mosquitto_sub
        times out with exit 27: the broker answered, nothing was retained)."""
        res = subprocess.run(["docker", "exec", "flops_mqtt", "mosquitto_sub", "-p", "9027",
                              "-t", "safety/mark", "-C", "1", "-W", "3"],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode in (0, 27), f"mosquitto_sub: {res.stdout}{res.stderr}"
        return res.stdout.strip() if res.returncode == 0 else ""

    def held(self) -> dict[str, bool]:
        repo = self.image.split("/", 1)[1].split(":")[0]
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/_catalog", timeout=10) as resp:
            registry = repo in json.load(resp)["repositories"]
        mongo = self.mongo()
        flops_db = mongo.flops.safety.find_one({"mark": self.mark}) is not None
        # a login and a query either way: an emptied backend store has no table safety.t
        mysql = self.mysql("SELECT COUNT(*) FROM information_schema.tables WHERE "
                           "table_schema = 'safety' AND table_name = 't';").strip() == "1" \
            and self.mark in self.mysql(f"SELECT v FROM safety.t WHERE v = '{self.mark}';")
        with self.ftp() as ftp:
            buf = io.BytesIO()
            try:
                ftp.retrbinary(f"RETR {self.mark}.txt", buf.write)
                artifacts = buf.getvalue() == self.mark.encode()
            except ftplib.error_perm:
                artifacts = False
        mqtt = self.retained() == self.mark
        return {"registry": registry, "flops_db": flops_db, "mlflow_db": mysql,
                "artifacts": artifacts, "mqtt": mqtt}


ALL = {"registry": True, "flops_db": True, "mlflow_db": True, "artifacts": True, "mqtt": True}
