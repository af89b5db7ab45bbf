"""The testbed's Oakestra side for integration tests: the System Manager stand-in seeded
through its /_standin/ routes, and the FLOps DB written the way upstream's manager writes it
(one collection per pydantic class, ``model_dump()`` field names: database/common.py)."""

from __future__ import annotations

import json
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pymongo
import pytest
import yaml

from flops_tasks import testbed as tb

from ..unit.sm_standin import app
from .helpers import ROOT, TESTBED_CONFIG

ADMIN = {
    "name": "Admin",
    "password": "Admin",
    "roles": ["Admin", "Organization_Admin", "Application_Provider", "Infrastructure_Provider"],
}
ALICE = {"name": "alice", "password": "alice", "roles": ["Application_Provider"]}
GH = "ghcr.io/oakestra/addon-flops/"
OBS_ID, HELPER_ID, PROJ_ID = (
    "6650a1b2c3d4e5f601020301",
    "6650a1b2c3d4e5f601020302",
    "6650a1b2c3d4e5f601020303",
)
RENAMED_ID = "6650a1b2c3d4e5f601020304"  # a FLOps project whose name is not FLOps' pattern
SHOP_ID, MYPROJ_ID, ALICE_ID = (
    "6650a1b2c3d4e5f601020310",
    "6650a1b2c3d4e5f601020311",
    "6650a1b2c3d4e5f601020312",
)


SEED = {
    "users": [ADMIN, ALICE],
    "applications": [
        app(
            OBS_ID,
            "observatory",
            "observatory",
            services=(
                ("trackinge3afed0047b0", "tracking", GH + "tracking-server:latest"),
                ("observb98c287ecf1e", "observ", GH + "project-observer:latest"),
            ),
        ),
        app(
            HELPER_ID,
            "helper",
            "helper",
            services=(("mockdpe4c834343b6b", "mockdp", GH + "mock-data-provider:latest"),),
        ),
        app(
            PROJ_ID,
            "projdd1d95927a2b",
            "proj",
            services=(("builderb98c287ecf1e", "builder", GH + "image-builder:latest"),),
        ),
        app(RENAMED_ID, "flopsrun7", "experiments"),
        app(SHOP_ID, "webshop", "shop", services=(("frontend", "shop", "nginx:1.27"),)),
        app(MYPROJ_ID, "myproj", "proj"),
        app(ALICE_ID, "observatory", "observatory", owner="alice"),
    ],
}
FLOPS = {OBS_ID, HELPER_ID, PROJ_ID, RENAMED_ID}
KEPT = {SHOP_ID, MYPROJ_ID, ALICE_ID}


# -- the stand-in and the FLOps DB ---------------------------------------------------------
def gateway() -> str:
    """SYSTEM_MANAGER_IP of the current testbed config (an earlier module may have made a
    new testbed, on a new network, since the session's fixture started)."""
    config = yaml.safe_load(TESTBED_CONFIG.read_text())
    return config["flops"]["addresses"]["system_manager_ip"]


def sm_url(_testbed=None) -> str:
    return f"http://{gateway()}:{tb.SYSTEM_MANAGER_PORT}"


def http(url: str, method: str = "GET", payload=None, token: str | None = None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def seed(testbed, data=SEED) -> None:
    status, _ = http(sm_url(testbed) + "/_standin/seed", "POST", data)
    assert status == 200


def state(testbed) -> dict:
    return http(sm_url(testbed) + "/_standin/state")[1]


def listed(testbed) -> set[str]:
    return {a["applicationID"] for a in state(testbed)["applications"]}


def flops_db():
    client = pymongo.MongoClient(  # the stack is bound to the gateway (FLOPS_MANAGER_IP)
        gateway(), 10027, serverSelectionTimeoutMS=5000, directConnection=True
    )
    return client, client["flops"]


def write_flops_db(docs: dict[str, list[dict]]) -> None:
    client, db = flops_db()
    try:
        for name in db.list_collection_names():
            db.drop_collection(name)
        for collection, items in docs.items():
            db[collection].insert_many(items)
    finally:
        client.close()


# documents as upstream's classes dump them (classes/apps/*.py, classes/services/**)
FLOPS_DOCS = {
    "FLOpsProject": [
        {
            "customer_id": "Admin",
            "ml_repo_url": "https://github.com/x/y",
            "flops_project_id": PROJ_ID,
            "app_id": PROJ_ID,
            "app_name": "projdd1d95927a2b",
        },
        {
            "customer_id": "Admin",
            "ml_repo_url": "https://github.com/x/z",
            "flops_project_id": RENAMED_ID,
            "app_id": RENAMED_ID,
            "app_name": "flopsrun7",
        },
    ],
    "FLOpsObservatory": [{"customer_id": "Admin", "app_id": OBS_ID, "app_name": "observatory"}],
    "FLOpsHelperApp": [{"customer_id": "Admin", "app_id": HELPER_ID, "app_name": "helper"}],
}


def login(testbed) -> str:
    status, body = http(
        sm_url(testbed) + "/api/auth/login", "POST", {"username": "Admin", "password": "Admin"}
    )
    assert status == 200
    return body["token"]


def upstream_sla_generator(tmp_path: Path):
    """upstream's generate_sla (addon-FLOps at the pinned ref), from the shared tarball."""
    candidates = [ROOT.parent / "shared" / "upstream", ROOT.parent.parent / "shared" / "upstream"]
    tarballs = [p / "addon-FLOps-2fa0ab9.tar.gz" for p in candidates]
    tarball = next((t for t in tarballs if t.is_file()), None)
    if tarball is None:
        pytest.fail(
            "upstream addon-FLOps test data is missing (looked for "
            f"{', '.join(map(str, tarballs))}): this test builds the FLOps manager's "
            "observatory SLA with upstream's own generate_sla"
        )
    prefix = "addon-FLOps/flops_manager_package/"
    wanted = [
        prefix + p
        for p in (
            "flops_manager/__init__.py",
            "flops_manager/utils/__init__.py",
            "flops_manager/utils/types.py",
            "flops_manager/utils/sla/components.py",
            "flops_manager/utils/sla/generator.py",
        )
    ]
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp_path, members=[tar.getmember(m) for m in wanted], filter="data")
    sys.path.insert(0, str(tmp_path / prefix))
    try:
        from flops_manager.utils.sla import components, generator
    finally:
        sys.path.pop(0)
    return components, generator


def observatory_sla(tmp_path: Path) -> dict:
    """The SLA FLOpsObservatory sends to create its app (classes/apps/customer_facing_base.py:
    app name = namespace = 'observatory', customerID = the customer)."""
    components, generator = upstream_sla_generator(tmp_path)
    return generator.generate_sla(
        components.SlaComponentsWrapper(
            core=components.SlaCore(
                customerID="Admin",
                names=components.SlaNames(app_name="observatory", app_namespace="observatory"),
            )
        )
    )


def managers_create_app(testbed, sla: dict) -> tuple[int, object]:
    """What api/app_management.create_app does: POST /api/application/ with the token."""
    return http(sm_url(testbed) + "/api/application/", "POST", sla, token=login(testbed))


# -- oak-cli, Oakestra's own client --------------------------------------------------------
CLUSTERS = [  # candidates as the resource abstractor stores them (clusters_blueprints.py maps them)
    {
        "candidate_name": "edge1",
        "candidate_location": "lab",
        "active": True,
        "active_nodes": 2,
        "virtualization": ["docker"],
    },
    {
        "candidate_name": "edge2",
        "candidate_location": "roof",
        "active": False,
        "active_nodes": 0,
        "virtualization": ["docker"],
    },
]


def oak_home(tmp_path: Path, system_manager_ip: str) -> Path:
    """A HOME for oak-cli 0.5.5: its config (configuration/common.py, section OAK_CLI,
    version 1) makes this machine a root orchestrator whose System Manager is at
    ``system_manager_ip`` (oak-cli always dials port 10000: utils/api/common.py)."""
    folder = tmp_path / "oak_cli"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".oak_cli_config").write_text(
        "[OAK_CLI]\n"
        "config_version = 1\n"
        'local_machine_purpose = ["root_orchestrator"]\n'
        f"system_manager_ip = {system_manager_ip}\n"
    )
    (folder / ".init_flag").touch()  # no welcome logo
    return tmp_path


def oak(home: Path, *args: str):
    """Run oak-cli (installed with the test extra) as a user would."""
    import os
    import subprocess

    exe = Path(sys.executable).parent / "oak"
    if not exe.exists():
        pytest.fail("oak-cli is not installed: pip install -e '.[test]' (oak-cli==0.5.5)")
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and k != "HOME"}
    env.update(HOME=str(home), COLUMNS="250", NO_COLOR="1", TERM="dumb")
    return subprocess.run(
        [str(exe), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
