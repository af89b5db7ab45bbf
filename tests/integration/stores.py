"""Real data in every store of the testbed's stack, and which stores still hold it.

One marker goes into each store (registry image, FLOps DB record, MLflow MySQL row, FTP
artifact, retained MQTT message) with upstream's fixed credentials, and is read back after
an action: the data-safety table of README.md is checked this way.

Each store is reached on the engine and at the address where the placement runs it
(``Where``): by default everything is on the local engine; test_stack_split.py runs the
data-safety tests with the registry and the artifact store on worker w1.
"""

from __future__ import annotations

import ftplib
import io
import json
import subprocess
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

from flops_tasks import testbed as tb

from . import helpers

REGISTRY = "127.0.0.1:5073"  # the registry as its own engine reaches it
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


@dataclass
class Where:
    """Where the placement of a config runs each service: its engine (a ``Project``, so a
    docker command goes to that engine, over Docker's SSH transport when remote) and the
    address this machine reaches its ports at."""

    config: Path
    projects: list

    @classmethod
    def of(cls, config: Path) -> Where:
        from flops_tasks.config import settings
        from flops_tasks.stack import placement

        s = settings(tb.context_for(tb.default_paths(), runtime=config))
        return cls(config, placement.projects(s))

    def project(self, service: str):
        from flops_tasks.stack import placement

        return placement.project_for(self.projects, service)

    def docker(self, service: str, *args: str) -> str:
        return self.project(service).cli(*args)

    def exec(self, service: str, *args: str, env: dict | None = None) -> str:
        envs = [f"-e{k}={v}" for k, v in (env or {}).items()]
        return self.docker(service, "exec", *envs, service, *args)  # upstream's names

    def address(self, service: str) -> str:
        return self.project(service).address()

    def container_ids(self) -> dict[tuple[str, str], str]:
        return {(p.label, c.name): c.id for p in self.projects for c in p.snapshot()}

    def push_sidecar(self) -> None:
        registry = self.project("flops_image_registry")
        tb.push_sidecar(lambda _: None, project=registry if registry.remote else None)


class Stores:
    """Write one marker into every store; say which stores still hold it."""

    def __init__(self, tmp_path, where: Where | None = None) -> None:
        self.mark = uuid.uuid4().hex[:12]
        self.tmp = tmp_path
        self.where = where or Where.of(helpers.TESTBED_CONFIG)
        self.image = f"{REGISTRY}/safety/img-{self.mark}:1"  # pushed on the registry's engine
        self.registry = f"{self.where.address('flops_image_registry')}:5073"  # read from here

    def write_all(self) -> None:
        self.push_image(self.image)
        self.mongo().flops.safety.insert_one({"mark": self.mark})
        self.mysql(
            f"CREATE DATABASE IF NOT EXISTS safety; CREATE TABLE IF NOT EXISTS safety.t "
            f"(v VARCHAR(64)); INSERT INTO safety.t VALUES ('{self.mark}');"
        )
        with self.ftp() as ftp:
            ftp.storbinary(f"STOR {self.mark}.txt", io.BytesIO(self.mark.encode()))
        self.where.exec(
            "flops_mqtt", "mosquitto_pub", "-p", "9027", "-r", "-t", "safety/mark", "-m", self.mark
        )

    def push_image(self, ref: str) -> None:
        """Build and push on the registry's own engine (the build context is sent there)."""
        ctx = self.tmp / ref.replace("/", "_").replace(":", "_")
        ctx.mkdir(exist_ok=True)
        (ctx / "mark.txt").write_text(ref)
        (ctx / "Dockerfile").write_text("FROM scratch\nCOPY mark.txt /mark.txt\n")
        self.where.docker("flops_image_registry", "build", "-q", "-t", ref, str(ctx))
        self.where.docker("flops_image_registry", "push", "-q", ref)

    def mongo(self):
        import pymongo

        return pymongo.MongoClient(
            self.where.address("flops_db"),
            10027,
            directConnection=True,
            serverSelectionTimeoutMS=5000,
        )

    def mysql(self, sql: str) -> str:
        return self.where.exec(
            "mlflow_backend_store",
            "mysql",
            "-uroot",
            "-N",
            "-e",
            sql,
            env={"MYSQL_PWD": MYSQL_ROOT_PASSWORD},
        )

    def ftp(self) -> ftplib.FTP:
        ftp = ftplib.FTP()
        ftp.connect(self.where.address("vsftpd_server"), 21, timeout=10)
        ftp.login(FTP_USER, FTP_PASSWORD)
        return ftp

    def retained(self) -> str:
        """The broker's retained message on safety/mark; "" when it holds none (mosquitto_sub
        times out with exit 27: the broker answered, nothing was retained)."""
        mqtt = self.where.project("flops_mqtt")
        docker = [*mqtt.docker.client_config.docker_cmd]  # that engine's docker CLI
        res = subprocess.run(
            [
                *docker,
                "exec",
                "flops_mqtt",
                "mosquitto_sub",
                "-p",
                "9027",
                "-t",
                "safety/mark",
                "-C",
                "1",
                "-W",
                "3",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode in (0, 27), f"mosquitto_sub: {res.stdout}{res.stderr}"
        return res.stdout.strip() if res.returncode == 0 else ""

    def fetch_every_blob(self) -> int:
        """GET the manifest and every blob the image names; returns how many were fetched."""
        return fetch_every_blob(self.image, self.registry)

    def held(self) -> dict[str, bool]:
        repo = self.image.split("/", 1)[1].split(":")[0]
        with urllib.request.urlopen(f"http://{self.registry}/v2/_catalog", timeout=10) as resp:
            registry = repo in json.load(resp)["repositories"]
        mongo = self.mongo()
        flops_db = mongo.flops.safety.find_one({"mark": self.mark}) is not None
        # a login and a query either way: an emptied backend store has no table safety.t
        mysql = self.mysql(
            "SELECT COUNT(*) FROM information_schema.tables WHERE "
            "table_schema = 'safety' AND table_name = 't';"
        ).strip() == "1" and self.mark in self.mysql(
            f"SELECT v FROM safety.t WHERE v = '{self.mark}';"
        )
        with self.ftp() as ftp:
            buf = io.BytesIO()
            try:
                ftp.retrbinary(f"RETR {self.mark}.txt", buf.write)
                artifacts = buf.getvalue() == self.mark.encode()
            except ftplib.error_perm:
                artifacts = False
        mqtt = self.retained() == self.mark
        return {
            "registry": registry,
            "flops_db": flops_db,
            "mlflow_db": mysql,
            "artifacts": artifacts,
            "mqtt": mqtt,
        }


ALL = {"registry": True, "flops_db": True, "mlflow_db": True, "artifacts": True, "mqtt": True}


INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)


def _manifest(registry: str, name: str, reference: str) -> dict:
    req = urllib.request.Request(
        f"http://{registry}/v2/{name}/manifests/{reference}",
        headers={"Accept": ",".join(MANIFEST_TYPES + INDEX_TYPES)},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def fetch_every_blob(ref: str, registry: str = REGISTRY) -> int:
    """GET the manifest and every blob it names (from ``registry``); returns how many blobs
    were fetched. An engine with the containerd image store pushes an index: the image's
    own manifest in it (not an attestation's) is the one fetched."""
    name, tag = ref.split("/", 1)[1].rsplit(":", 1)
    manifest = _manifest(registry, name, tag)
    if manifest.get("mediaType") in INDEX_TYPES:
        [image] = [
            m for m in manifest["manifests"] if (m.get("platform") or {}).get("os") != "unknown"
        ]
        manifest = _manifest(registry, name, image["digest"])
    digests = [manifest["config"]["digest"], *[layer["digest"] for layer in manifest["layers"]]]
    for digest in digests:
        with urllib.request.urlopen(
            f"http://{registry}/v2/{name}/blobs/{digest}", timeout=10
        ) as resp:
            assert resp.status == 200 and resp.read()
    return len(digests)
