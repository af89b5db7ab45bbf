"""The FLOps registry's contract: FLOps' own port, and no deletes through its API.

FLOps' manager names every image ``FLOPS_IMAGE_REGISTRY_IP:5073/...`` (upstream addon-FLOps
flops_manager/utils/env_vars.py and image_management); the registry has no authentication,
so whoever reaches 5073 could delete images if its API allowed it.
"""

from __future__ import annotations

import yaml

from flops_tasks.config import PROJECT_ROOT
from flops_tasks.stack.services import PORTS, REGISTRY

REGISTRY_PORT = PORTS[REGISTRY][0]

COMPOSE = PROJECT_ROOT / "compose" / "flops.compose.yml"


def registry_config() -> dict:
    compose = yaml.safe_load(COMPOSE.read_text())
    return yaml.safe_load(compose["configs"]["flops_image_registry"]["content"])


def test_the_registry_api_cannot_delete():
    storage = registry_config()["storage"]
    assert "delete" not in storage, storage
    assert storage["cache"] == {"blobdescriptor": "inmemory"}  # why clear-registry restarts it


def test_the_registry_serves_and_is_published_on_flops_own_port():
    compose = yaml.safe_load(COMPOSE.read_text())
    assert REGISTRY_PORT == 5073
    assert registry_config()["http"]["addr"] == f"0.0.0.0:{REGISTRY_PORT}"
    assert compose["services"][REGISTRY]["ports"] == [
        f"${{FLOPS_BIND_ADDRESS:-0.0.0.0}}:{REGISTRY_PORT}:{REGISTRY_PORT}"
    ]
