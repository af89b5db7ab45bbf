"""The testbed's System Manager stand-in (testbed/system_manager/), run in this process.

Unit tests start it on an ephemeral port: the same code the testbed's ``system_manager``
container runs, without Docker.
"""

from __future__ import annotations

import importlib.util
import json
import threading
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STANDIN = ROOT / "testbed" / "system_manager" / "system_manager_standin.py"
SEED = ROOT / "testbed" / "system_manager" / "seed.json"

_spec = importlib.util.spec_from_file_location("system_manager_standin", STANDIN)
standin = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(standin)

ADMIN_ROLES = ["Admin", "Organization_Admin", "Application_Provider", "Infrastructure_Provider"]
USERS = [
    {"name": "Admin", "password": "Admin", "roles": ADMIN_ROLES},
    {"name": "alice", "password": "alice", "roles": ["Application_Provider"]},
]


def app(
    app_id: str,
    name: str,
    namespace: str,
    owner: str = "Admin",
    services: tuple[tuple[str, str, str], ...] = (),
) -> dict:
    """A seed application; services are (name, namespace, image), one instance each."""
    return {
        "applicationID": app_id,
        "application_name": name,
        "application_namespace": namespace,
        "userId": owner,
        "microservices": [
            {"microservice_name": n, "microservice_namespace": ns, "code": image, "instances": 1}
            for n, ns, image in services
        ],
    }


class Running:
    def __init__(self, seed: dict, bind: str = "127.0.0.1") -> None:
        handler = type("Handler", (standin.Handler,), {"state": standin.State(seed)})
        self.state = handler.state
        self.server = ThreadingHTTPServer((bind, 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{bind}:{self.port}"
        # a short poll: stop() waits for serve_forever to notice (0.5 s by default)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def control(self, route: str, payload: dict | None = None) -> dict:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(
            self.url + "/_standin/" + route,
            data=data,
            headers={"Content-Type": "application/json"},
            method="POST" if data is not None else "GET",
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.load(resp)

    def app_ids(self) -> set[str]:
        return {a["applicationID"] for a in self.control("state")["applications"]}

    def deleted_ids(self) -> list[str]:
        return [a["applicationID"] for a in self.control("state")["deleted"]]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
