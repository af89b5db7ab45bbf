"""A client for Oakestra's System Manager REST API: log in, list, delete.

Routes, status codes and payloads follow oakestra/oakestra
``root_orchestrator/system-manager-python/blueprints`` (commit 0e879834), the same API the
FLOps manager uses (addon-FLOps ``flops_manager/api``):

- ``POST /api/auth/login`` ``{"username", "password"}`` -> ``{"token", "refresh_token"}``;
  wrong credentials: 401 (authentication_blueprints.py, users/auth.py).
- ``GET /api/applications/`` (role Admin) -> every application; ``GET /api/services/``
  (role Admin) -> every service. Both bodies are a JSON *string* holding the JSON list
  (``json_util.dumps`` under flask-smorest's ``jsonify``), which FLOps' own client decodes
  twice too (request_management/custom_requests.py).
- ``DELETE /api/application/<id>`` -> 200; it undeploys and deletes each of the app's
  services first (services/application_management.py ``delete_app``). An id the System
  Manager does not know *for the logged-in user* is answered with 501, not 404.

Only the standard library (urllib): the API is four calls of plain JSON. The password goes
into the login request body and nowhere else: not into errors, plans or ``repr``.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import FlopsError

if TYPE_CHECKING:
    from .config import Settings

# Oakestra's default admin account (system-manager-python ext_requests/user_db.py
# ``create_admin``), the one FLOps' manager logs in with (flops_manager/api/utils/login.py).
DEFAULT_PASSWORD = "Admin"

# (status, body) for one request; tests pass their own to replay recorded answers
Transport = Callable[[str, str, dict[str, str], bytes | None, float], tuple[int, bytes]]


class ApiError(FlopsError):
    """The System Manager answered with an error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Service:
    id: str
    name: str
    namespace: str
    image: str
    instances: int

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "namespace": self.namespace,
            "image": self.image,
            "instances": self.instances,
        }


@dataclass(frozen=True)
class Application:
    id: str
    name: str
    namespace: str
    owner: str
    service_ids: tuple[str, ...]
    services: tuple[Service, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.name} (namespace {self.namespace}, id {self.id})"

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "namespace": self.namespace,
            "owner": self.owner,
            "services": [s.to_dict() for s in self.services],
        }


def urllib_transport(
    method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 (http only)
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def password(password_env: str) -> tuple[str, str]:
    """(password, where it came from): the variable if set, else Oakestra's default."""
    value = os.environ.get(password_env, "")
    if value:
        return value, f"environment variable {password_env}"
    return DEFAULT_PASSWORD, f"Oakestra's default ({password_env} is not set)"


def decode(body: bytes) -> Any:
    """JSON, decoded a second time when the API wrapped it in a JSON string."""
    data = json.loads(body.decode("utf-8"))
    if isinstance(data, str):
        data = json.loads(data)
    return data


def _oid(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("$oid", ""))
    return str(value or "")


def _message(body: bytes) -> str:
    """The error text of an error body (flask-smorest, flask-jwt-extended or the handlers)."""
    try:
        data = decode(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    if isinstance(data, dict):
        for key in ("message", "msg", "status"):
            if isinstance(data.get(key), str):
                return data[key]
    return ""


@dataclass
class SystemManager:
    """One logged-in session with the System Manager at ``address:port``."""

    address: str
    port: int
    user: str
    password: str = field(repr=False)
    password_source: str = ""
    timeout: float = 15.0
    transport: Transport = field(default=urllib_transport, repr=False)
    _token: str = field(default="", repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"

    def _call(
        self, method: str, path: str, payload: Any = None, auth: bool = True
    ) -> tuple[int, bytes]:
        headers = {"Accept": "application/json"}
        body = None
        if payload is not None:
            body = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            return self.transport(method, self.url + path, headers, body, self.timeout)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise FlopsError(
                f"the Oakestra System Manager at {self.url} does not answer ({reason}): check "
                "SYSTEM_MANAGER_IP (flops.addresses.system_manager_ip) and "
                "flops.oakestra.port, and that the root orchestrator runs; nothing was "
                "deleted"
            ) from None

    def _json(self, status: int, body: bytes, what: str) -> Any:
        try:
            return decode(body)
        except (ValueError, UnicodeDecodeError):
            raise FlopsError(
                f"{self.url} answered {what} with HTTP {status} and no JSON: is it "
                "Oakestra's System Manager? check SYSTEM_MANAGER_IP and "
                "flops.oakestra.port; nothing was deleted"
            ) from None

    def login(self) -> None:
        status, body = self._call(
            "POST",
            "/api/auth/login",
            {"username": self.user, "password": self.password},
            auth=False,
        )
        if status in (401, 403, 404):
            raise ApiError(
                f"the System Manager at {self.url} refused the login of user {self.user!r} "
                f"(HTTP {status}; password from {self.password_source}): set "
                "flops.oakestra.user and the password variable named by "
                "flops.oakestra.password_env; nothing was deleted",
                status,
            )
        if status != 200:
            raise ApiError(
                f"login at {self.url} failed with HTTP {status} "
                f"{_message(body)}: see the System Manager's logs; nothing was "
                "deleted",
                status,
            )
        data = self._json(status, body, "the login")
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise FlopsError(
                f"{self.url} answered the login without a token: is it Oakestra's "
                "System Manager? nothing was deleted"
            )
        self._token = token

    def _authorised(self, method: str, path: str) -> tuple[int, bytes]:
        """A call with the token; log in (again) when there is none or it expired."""
        if not self._token:
            self.login()
        status, body = self._call(method, path)
        if status in (401, 422):  # flask-jwt-extended: missing/expired (401), invalid (422)
            self.login()
            status, body = self._call(method, path)
        return status, body

    def _list(self, path: str, what: str) -> list[dict]:
        status, body = self._authorised("GET", path)
        if status == 403:
            raise ApiError(
                f"user {self.user!r} may not {what} on {self.url} (HTTP 403, "
                f"{_message(body) or 'forbidden'}): the System Manager lists every "
                "app only for the role Admin; set flops.oakestra.user to an admin "
                "(FLOps' manager uses Admin); nothing was deleted",
                403,
            )
        if status != 200:
            raise ApiError(
                f"{what} on {self.url} failed: HTTP {status} {_message(body)}; nothing was deleted",
                status,
            )
        data = self._json(status, body, what)
        if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
            raise FlopsError(
                f"{self.url} answered {what} with something that is not a list of "
                "objects: is it Oakestra's System Manager? nothing was deleted"
            )
        return data

    def applications(self) -> list[Application]:
        """Every application with its services (two calls)."""
        apps = self._list("/api/applications/", "list applications")
        jobs = self._list("/api/services/", "list services")
        by_id: dict[str, Service] = {}
        for job in jobs:
            sid = str(job.get("microserviceID") or _oid(job.get("_id")))
            by_id[sid] = Service(
                id=sid,
                name=str(job.get("microservice_name") or job.get("service_name") or ""),
                namespace=str(job.get("microservice_namespace") or job.get("service_ns") or ""),
                image=str(job.get("image") or job.get("code") or ""),
                instances=len(job.get("instance_list") or []),
            )
        result = []
        for app in apps:
            ids = tuple(str(s) for s in (app.get("microservices") or []))
            result.append(
                Application(
                    id=str(app.get("applicationID") or _oid(app.get("_id"))),
                    name=str(app.get("application_name") or ""),
                    namespace=str(app.get("application_namespace") or ""),
                    owner=str(app.get("userId") or ""),
                    service_ids=ids,
                    services=tuple(by_id[s] for s in ids if s in by_id),
                )
            )
        return result

    def delete_application(self, app_id: str) -> str:
        """Undeploy and delete one application; returns the System Manager's message.

        Raises ``ApiError`` with the status (501 for an id unknown to this user).
        """
        status, body = self._authorised("DELETE", f"/api/application/{app_id}")
        if status != 200:
            raise ApiError(f"HTTP {status} {_message(body)}".strip(), status)
        return _message(body) or "deleted"


def system_manager(s: Settings, address: str, transport: Transport | None = None) -> SystemManager:
    """A client for the configured user, password source, port and timeout."""
    secret, source = password(s.oakestra_password_env)
    return SystemManager(
        address=address,
        port=s.oakestra_port,
        user=s.oakestra_user,
        password=secret,
        password_source=source,
        timeout=s.oakestra_timeout,
        transport=transport or urllib_transport,
    )
