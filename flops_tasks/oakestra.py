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
- ``GET /api/service/<id>`` -> the job (a JSON string again), 404 when the logged-in user
  owns no app holding it (blueprints/services_blueprints.py ``ServiceController.get``).
- ``DELETE /api/service/<id>/instance/<n>`` -> 200 ``{"message": "ok"}`` whatever happened
  (blueprints/deployment_blueprints.py ``UndeployInstanceController``): only a second read
  tells whether the instance went.

Each route is called in the form its blueprint declares (``/api/applications/`` with the
slash, ``/api/application/<id>`` without), so Flask never needs to redirect; a redirect is not
followed (``httpclient``: no proxy, no redirects, bounded size and time). Ids go into URLs
only when they are Mongo ObjectIds (24 hex digits), and quoted. An answer of the wrong shape
(a list where an object belongs, ``"microservices": 5``) is one line, never a traceback.
The password goes into the login request body and nowhere else: not into errors, plans or
``repr``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from . import httpclient
from .errors import FlopsError

if TYPE_CHECKING:
    from .config import Settings

# Oakestra's default admin account (system-manager-python ext_requests/user_db.py
# ``create_admin``), the one FLOps' manager logs in with (flops_manager/api/utils/login.py).
DEFAULT_PASSWORD = "Admin"

# (status, body) for one request; tests pass their own to replay recorded answers
Transport = Callable[[str, str, dict[str, str], bytes | None, float], tuple[int, bytes]]
# Oakestra's ids are Mongo ObjectIds (resource-abstractor: ``ObjectId(app_id)``)
OBJECT_ID = re.compile(r"[0-9a-f]{24}\Z")
# what a bearer token may hold (RFC 6750 b64token); a JWT is base64url parts and dots
TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*\Z")


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
    numbers: tuple[int, ...] = ()  # the instance numbers (``instance_list``)
    app_id: str = ""

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


def http_transport(
    method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float
) -> tuple[int, bytes]:
    """No proxy, no redirects, at most ``httpclient.LIMIT`` bytes and ``timeout`` s in all."""
    answer = httpclient.request(method, url, headers=headers, body=body, timeout=timeout)
    return answer.status, answer.body


def valid_id(value: str) -> bool:
    """True for an id that may go into a URL: a Mongo ObjectId, 24 lower-case hex digits."""
    return bool(OBJECT_ID.match(value))


def password(password_env: str) -> tuple[str, str]:
    """(password, where it came from): the variable if set, else Oakestra's default."""
    value = os.environ.get(password_env, "")
    if value:
        return value, f"environment variable {password_env}"
    return DEFAULT_PASSWORD, f"Oakestra's default ({password_env} is not set)"


def decode(body: bytes) -> Any:
    """JSON, decoded a second time when the API wrapped it in a JSON string (``ValueError``
    for anything that is not JSON, nesting too deep for the decoder included)."""
    try:
        data = json.loads(body.decode("utf-8"))
        if isinstance(data, str):
            data = json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    return data


def _oid(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("$oid", "")
    return value if isinstance(value, str) else ""


class Shape(FlopsError):
    """An answer of the wrong shape: one line naming the field."""


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
    transport: Transport = field(default=http_transport, repr=False)
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
            status, answer = self.transport(method, self.url + path, headers, body, self.timeout)
        except httpclient.OutOfBounds as exc:
            raise FlopsError(
                f"the Oakestra System Manager at {self.url} gave no usable answer to "
                f"{method} {path} ({exc}): is it Oakestra's System Manager? nothing more "
                "was deleted"
            ) from None
        except OSError as exc:
            reason = getattr(exc, "reason", None) or exc
            raise FlopsError(
                f"the Oakestra System Manager at {self.url} does not answer ({reason}): check "
                "SYSTEM_MANAGER_IP (flops.addresses.system_manager_ip) and "
                "flops.oakestra.port, and that the root orchestrator runs; nothing was "
                "deleted"
            ) from None
        if 300 <= status < 400:
            raise ApiError(
                f"{self.url} answered {method} {path} with a redirect (HTTP {status}), which "
                "is not followed (a redirect could carry the token elsewhere): is it "
                "Oakestra's System Manager? check SYSTEM_MANAGER_IP and flops.oakestra.port; "
                "nothing more was deleted",
                status,
            )
        return status, answer

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
        if len(token) > 16384 or not TOKEN.match(token):  # never printed: it is a secret
            raise FlopsError(
                f"{self.url} answered the login with a token that is not a bearer token "
                "(characters a token may not hold, such as a line break): is it Oakestra's "
                "System Manager? nothing was deleted"
            )
        self._token = token

    def _shape(self, what: str, problem: str) -> Shape:
        return Shape(
            f"{self.url} answered {what} with {problem}: is it Oakestra's System Manager? "
            "nothing more was deleted"
        )

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

    def _job(self, job: dict, what: str) -> Service:
        """One job of a listing as a ``Service`` (a wrong type is one line)."""
        sid = job.get("microserviceID") or _oid(job.get("_id"))
        if not isinstance(sid, str) or not sid:
            raise self._shape(what, "a service without an id")
        texts = {}
        for key, *alternatives in (
            ("microservice_name", "service_name"),
            ("microservice_namespace", "service_ns"),
            ("image", "code"),
            ("applicationID",),
        ):
            value = job.get(key) or next((job.get(a) for a in alternatives if job.get(a)), "")
            if not isinstance(value, str):
                raise self._shape(what, f"service {sid[:40]!r} whose {key} is not a string")
            texts[key] = value
        instances = job.get("instance_list")
        if instances is None:
            instances = []
        if not isinstance(instances, list) or not all(
            isinstance(i, dict)
            and isinstance(i.get("instance_number"), int)
            and not isinstance(i.get("instance_number"), bool)
            for i in instances
        ):
            raise self._shape(
                what, f"service {sid[:40]!r} whose instance_list is not a list of instances"
            )
        return Service(
            id=sid,
            name=texts["microservice_name"],
            namespace=texts["microservice_namespace"],
            image=texts["image"],
            instances=len(instances),
            numbers=tuple(i["instance_number"] for i in instances),
            app_id=texts["applicationID"],
        )

    def services(self) -> dict[str, Service]:
        """Every service (job) by id (role Admin)."""
        what = "list services"
        return {
            svc.id: svc
            for svc in (self._job(job, what) for job in self._list("/api/services/", what))
        }

    def applications(self) -> list[Application]:
        """Every application with its services (two calls)."""
        what = "list applications"
        apps = self._list("/api/applications/", what)
        by_id = self.services()
        result = []
        for app in apps:
            app_id = app.get("applicationID") or _oid(app.get("_id"))
            if not isinstance(app_id, str) or not app_id:
                raise self._shape(what, "an application without an id")
            services = app.get("microservices")
            if services is None:
                services = []
            if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
                raise self._shape(
                    what, f"application {app_id[:40]!r} whose microservices is not a list of ids"
                )
            texts = {}
            for key in ("application_name", "application_namespace", "userId"):
                value = app.get(key) or ""
                if not isinstance(value, str):
                    raise self._shape(what, f"application {app_id[:40]!r} whose {key} is not text")
                texts[key] = value
            result.append(
                Application(
                    id=app_id,
                    name=texts["application_name"],
                    namespace=texts["application_namespace"],
                    owner=texts["userId"],
                    service_ids=tuple(services),
                    services=tuple(by_id[s] for s in services if s in by_id),
                )
            )
        return result

    def _path(self, kind: str, value: str) -> str:
        """An id for a URL: only an ObjectId, quoted all the same."""
        if not valid_id(value):
            raise FlopsError(
                f"refusing to send the {kind} id {value[:40]!r} to {self.url}: Oakestra's ids "
                "are 24 hex digits (a Mongo ObjectId), and any other text in a URL could name "
                "another route; nothing more was deleted"
            )
        return quote(value, safe="")

    def service(self, service_id: str) -> Service | None:
        """One service as the System Manager holds it now; None when it is gone (404)."""
        path = f"/api/service/{self._path('service', service_id)}"
        status, body = self._authorised("GET", path)
        if status == 404:
            return None
        if status != 200:
            raise ApiError(f"HTTP {status} {_message(body)}".strip(), status)
        job = self._json(status, body, f"GET {path}")
        if not isinstance(job, dict):
            raise self._shape(f"GET {path}", "something that is not a service")
        return self._job(job, f"GET {path}")

    def undeploy_instance(self, service_id: str, number: int) -> None:
        """Ask for one instance to go (the answer is 200 whatever happened: read again)."""
        path = f"/api/service/{self._path('service', service_id)}/instance/{int(number)}"
        status, body = self._authorised("DELETE", path)
        if status != 200:
            raise ApiError(f"HTTP {status} {_message(body)}".strip(), status)

    def delete_application(self, app_id: str) -> str:
        """Undeploy and delete one application; returns the System Manager's message.

        Raises ``ApiError`` with the status (501 for an id unknown to this user).
        """
        path = f"/api/application/{self._path('application', app_id)}"
        status, body = self._authorised("DELETE", path)
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
        transport=transport or http_transport,
    )
