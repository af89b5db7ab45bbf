#!/usr/bin/env python3
"""STAND-IN for Oakestra's System Manager (root orchestrator, port 10000). NOT Oakestra.

No Oakestra root orchestrator can run on the offline testbed (its images cannot be pulled),
so this server answers the routes flops-tasks and the FLOps manager call, with the routes,
status codes and payload shapes of oakestra/oakestra
root_orchestrator/system-manager-python (commit 0e879834). Applications and services live
in memory, seeded from a JSON file; nothing is scheduled or run.

Payload shapes that matter (all from upstream):
- errors raised with flask-smorest's ``abort`` are ``{"code": N, "status": "<reason>"}``:
  webargs' ``abort(code, exc=None, **kwargs)`` puts a positional dict into ``exc``, so the
  handler (flask_smorest/error_handler.py) adds no message;
- flask-jwt-extended answers a missing token with 401 ``{"msg": ...}``; the System
  Manager's own ``jwt_auth_required`` (roles/securityUtils.py) with 401 ``{"message": ...}``;
  ``require_role`` with 403 ``{"message": "You have not enough permissions!"}``;
- views under ``@blp.response`` that return ``json_util.dumps(...)`` are a JSON *string*
  holding the JSON (flask-smorest ``jsonify``s the string again), with ``_id`` as
  ``{"$oid": ...}``.

Stand-in control routes (not upstream; tests use them): ``GET /_standin/state`` (apps,
services and logs of deleted, refused and vanished apps), ``POST /_standin/seed`` (replace
the state with a seed), ``POST /_standin/vanish`` ``{"applicationID", "after_lists": N}`` or
``{"applicationID", "after_deletes": N}`` (the app disappears, as if someone else deleted it,
after N more application listings or N more application deletes).

Usage: system_manager_standin.py [--port 10000] [--bind 0.0.0.0] [--seed FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import secrets
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

log = logging.getLogger("system-manager-standin")

STAND_IN = "oakestra system manager"
ADMIN = "Admin"  # roles/securityUtils.py Role.ADMIN
NAME = re.compile(r"^[a-zA-Z0-9]{1,30}$")  # sla/schema.py application/microservice names
SLA_VERSIONS = ("v1.0", "v2.0")  # sla/sla_versions.py
REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
    501: "Not Implemented",
}


def smorest_abort(code: int) -> tuple[int, dict]:
    """flask-smorest's error body for ``abort(code, {...})`` (no message: see above)."""
    return code, {"code": code, "status": REASONS[code]}


def object_id() -> str:
    """24 hex digits like a MongoDB ObjectId (timestamp first)."""
    return f"{int(time.time()):08x}{secrets.token_hex(8)}"


class State:
    """Users, applications and services (jobs), guarded by one lock."""

    def __init__(self, seed: dict) -> None:
        self.lock = threading.Lock()
        self.load(seed)

    def load(self, seed: dict) -> None:
        self.users = {
            u["name"]: {"password": u["password"], "roles": list(u.get("roles", []))}
            for u in seed.get("users", [])
        }
        self.clusters = list(seed.get("clusters", []))
        self.apps: dict[str, dict] = {}
        self.jobs: dict[str, dict] = {}
        self.tokens: dict[str, str] = {}
        self.deleted: list[dict] = []
        self.refused: list[dict] = []
        self.vanished: list[dict] = []
        self.vanish_after: dict[str, tuple[str, int]] = {}  # app id -> (event, count)
        for app in seed.get("applications", []):
            app_id = app.get("applicationID") or object_id()
            self.apps[app_id] = {
                "applicationID": app_id,
                "application_name": app["application_name"],
                "application_namespace": app["application_namespace"],
                "application_desc": app.get("application_desc", ""),
                "userId": app.get("userId", ADMIN),
                "microservices": [],
            }
            for svc in app.get("microservices", []):
                job_id = self.add_job(self.apps[app_id], dict(svc))
                for _ in range(int(svc.get("instances", 0))):
                    self.scale_up(job_id)

    # services/service_management.py generate_db_structure + insert_job
    def add_job(self, app: dict, svc: dict) -> str:
        job_id = svc.pop("microserviceID", "") or object_id()
        svc.pop("instances", None)
        job = {
            **svc,
            "applicationID": app["applicationID"],
            "app_name": app["application_name"],
            "app_ns": app["application_namespace"],
            "service_name": svc["microservice_name"],
            "service_ns": svc["microservice_namespace"],
            "image": svc.get("code", ""),
            "next_instance_progressive_number": 0,
            "instance_list": [],
            "virtualization": "docker"
            if svc.get("virtualization", "container") == "container"
            else svc["virtualization"],
            "microserviceID": job_id,
        }
        job["job_name"] = (
            f"{app['application_name']}.{app['application_namespace']}."
            f"{svc['microservice_name']}.{svc['microservice_namespace']}"
        )
        self.jobs[job_id] = job
        app["microservices"].append(job_id)
        return job_id

    def scale_up(self, job_id: str) -> None:
        job = self.jobs[job_id]
        number = job["next_instance_progressive_number"]
        job["instance_list"].append({"instance_number": number, "status": "RUNNING"})
        job["next_instance_progressive_number"] = number + 1

    def user_apps(self, user: str) -> list[dict]:
        return [a for a in self.apps.values() if a["userId"] == user]

    # services/service_management.py delete_service: scale down, unlink, delete the job
    def delete_service(self, user: str, service_id: str) -> bool:
        for app in self.user_apps(user):
            if service_id in app["microservices"]:
                app["microservices"].remove(service_id)
                self.jobs.pop(service_id, None)
                return True
        return False

    def tick(self, event: str) -> None:
        """An application listing or delete happened: apps scheduled to vanish may go now."""
        for app_id, (when, count) in list(self.vanish_after.items()):
            if when != event:
                continue
            self.vanish_after[app_id] = (when, count - 1)
            if count - 1 <= 0:
                del self.vanish_after[app_id]
                app = self.apps.pop(app_id, None)
                if app:
                    for job_id in app["microservices"]:
                        self.jobs.pop(job_id, None)
                    self.vanished.append(dict(app))


def with_oid(doc: dict, key: str) -> dict:
    return {"_id": {"$oid": doc[key]}, **doc}


def json_util_string(docs: list[dict], key: str) -> str:
    """``json_util.dumps`` of documents whose ``_id`` became ``{"$oid": ...}``."""
    return json.dumps([with_oid(d, key) for d in docs])


class Handler(BaseHTTPRequestHandler):
    server_version = "system-manager-standin"
    state: State  # set on the class by serve()

    def log_message(self, fmt: str, *args: object) -> None:
        log.info("%s %s", self.address_string(), fmt % args)

    # -- plumbing -------------------------------------------------------------------------
    def _body(self) -> tuple[bool, object]:
        """(is JSON, value): like Flask 2.1's ``get_json`` (None for non-JSON)."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if "json" not in (self.headers.get("Content-Type") or ""):
            return False, None
        try:
            return True, json.loads(raw or b"null")
        except ValueError:
            return False, None

    def _send(self, status: int, payload: object, raw: bool = False) -> None:
        body = (payload if raw else json.dumps(payload) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8" if raw else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _token_user(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            return None
        return self.state.tokens.get(auth[len("Bearer ") :].strip())

    def _jwt_required(self) -> tuple[str | None, tuple[int, dict] | None]:
        """flask_jwt_extended.jwt_required: 401 without a token, 422 for a bad one."""
        if not (self.headers.get("Authorization") or "").startswith("Bearer "):
            return None, (401, {"msg": "Missing Authorization Header"})
        user = self._token_user()
        if user is None:
            return None, (422, {"msg": "Signature verification failed"})
        return user, None

    def _jwt_auth_required(self) -> tuple[str | None, tuple[int, dict] | None]:
        """roles/securityUtils.py jwt_auth_required: any token problem is one 401."""
        user = self._token_user()
        if user is None:
            return None, (401, {"message": "Missing authentication token"})
        return user, None

    def _is_admin(self, user: str) -> bool:
        return ADMIN in self.state.users.get(user, {}).get("roles", [])

    def _route(self, method: str) -> None:
        path = urlsplit(self.path).path
        parts = [p for p in path.split("/") if p]
        trailing = path.endswith("/")
        status, payload, raw = 404, {"code": 404, "status": "Not Found"}, False
        with self.state.lock:
            result = self._dispatch(method, parts, trailing)
        if result is not None:
            status, payload = result[0], result[1]
            raw = len(result) > 2 and result[2]
        self._send(status, payload, raw)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")

    # -- routes -----------------------------------------------------------------------------
    def _dispatch(self, method: str, parts: list[str], trailing: bool) -> tuple | None:
        s = self.state
        if parts[:1] == ["_standin"]:
            return self._control(method, parts[1:])
        if parts[:1] != ["api"]:
            return None
        route = parts[1:]
        # blueprints/authentication_blueprints.py UserLoginController.post, users/auth.py
        if route == ["auth", "login"] and method == "POST":
            is_json, content = self._body()
            if not is_json or content is None:
                return smorest_abort(403)
            if (
                not isinstance(content, dict)
                or "username" not in content
                or "password" not in content
            ):
                return smorest_abort(500)  # user_login: content["username"] -> KeyError
            user = s.users.get(content["username"])
            if (
                not content["username"]
                or not content["password"]
                or user is None
                or user["password"] != content["password"]
            ):
                return smorest_abort(401)
            token = ".".join(secrets.token_urlsafe(18) for _ in range(3))
            s.tokens[token] = content["username"]
            return 200, {"token": token, "refresh_token": secrets.token_urlsafe(32)}
        # blueprints/applications_blueprints.py MultipleApplicationController.get (Admin)
        if route == ["applications"] and trailing and method == "GET":
            user, err = self._jwt_required()
            if err:
                return err
            if not self._is_admin(user):
                return 403, {"message": "You have not enough permissions!"}
            s.tick("lists")
            return 200, json_util_string(list(s.apps.values()), "applicationID")
        # CreateApplicationController.post, services/application_management.py register_app
        if route == ["application"] and trailing and method == "POST":
            user, err = self._jwt_required()
            if err:
                return err
            return self._register_app(user)
        # ApplicationController.delete, application_management.delete_app
        if len(route) == 2 and route[0] == "application" and method == "DELETE":
            user, err = self._jwt_required()
            if err:
                return err
            app = s.apps.get(route[1])
            if app is None or app["userId"] != user:  # get_app_by_id filters by userId
                return smorest_abort(501)
            services = [s.jobs[j]["microservice_name"] for j in app["microservices"] if j in s.jobs]
            for job_id in list(app["microservices"]):
                s.delete_service(user, job_id)
            del s.apps[route[1]]
            s.deleted.append({**app, "microservices": services, "by": user, "at": time.time()})
            s.tick("deletes")
            return 200, {"message": "Application Deleted"}
        # blueprints/services_blueprints.py MultipleServicesController.get (Admin)
        if route == ["services"] and trailing and method == "GET":
            user, err = self._jwt_auth_required()
            if err:
                return err
            if not self._is_admin(user):
                return 403, {"message": "You have not enough permissions!"}
            return 200, json_util_string(list(s.jobs.values()), "microserviceID")
        # MultipleServicesControllerUser.get
        if len(route) == 2 and route[0] == "services" and method == "GET":
            user, err = self._jwt_auth_required()
            if err:
                return err
            app = s.apps.get(route[1])
            if app is None or app["userId"] != user:
                return smorest_abort(404)
            jobs = [s.jobs[j] for j in app["microservices"] if j in s.jobs]
            return 200, json_util_string(jobs, "microserviceID")
        # ServiceControllerPost.post, service_management.create_services_of_app
        if route == ["service"] and trailing and method == "POST":
            user, err = self._jwt_auth_required()
            if err:
                return err
            return self._create_services(user)
        # ServiceController.delete
        if len(route) == 2 and route[0] == "service" and method == "DELETE":
            user, err = self._jwt_auth_required()
            if err:
                return err
            if s.delete_service(user, route[1]):
                return 200, {"message": "Job deleted"}
            return smorest_abort(500)
        # blueprints/deployment_blueprints.py DeployInstanceController.post
        if (
            len(route) == 3
            and route[0] == "service"
            and route[2] == "instance"
            and method == "POST"
        ):
            user, err = self._jwt_auth_required()
            if err:
                return err
            if route[1] in s.jobs:
                s.scale_up(route[1])
            return 200, {"message": "ok"}
        # blueprints/clusters_blueprints.py ActiveClustersController.get: json_util.dumps
        # returned from a plain MethodView, i.e. the JSON text as the body
        if route == ["clusters", "active"] and method == "GET":
            return 200, json.dumps(s.clusters), True
        return None

    def _register_app(self, user: str) -> tuple:
        s = self.state
        is_json, data = self._body()
        if (
            not is_json
            or not isinstance(data, dict)
            or data.get("sla_version") not in SLA_VERSIONS
            or not isinstance(data.get("applications"), list)
        ):
            return smorest_abort(500)  # parse_sla_json: KeyError / TypeError escape
        for application in data["applications"]:
            if not isinstance(application, dict) or not all(
                isinstance(application.get(k), str) and NAME.match(application[k])
                for k in ("application_name", "application_namespace")
            ):
                return smorest_abort(422)  # SLAFormatError -> 422
        for application in data["applications"]:
            name, namespace = application["application_name"], application["application_namespace"]
            if any(
                a["application_name"] == name and a["application_namespace"] == namespace
                for a in s.user_apps(user)
            ):
                s.refused.append(
                    {
                        "status": 409,
                        "application_name": name,
                        "application_namespace": namespace,
                        "userId": user,
                        "at": time.time(),
                    }
                )
                return smorest_abort(409)
            app_id = object_id()
            app = {
                "applicationID": app_id,
                "application_name": name,
                "application_namespace": namespace,
                "application_desc": application.get("application_desc", ""),
                "userId": user,
                "microservices": [],
            }
            s.apps[app_id] = app
            for svc in application.get("microservices") or []:
                s.add_job(app, dict(svc))
        return 200, json_util_string(s.user_apps(user), "applicationID")

    def _create_services(self, user: str) -> tuple:
        s = self.state
        is_json, data = self._body()
        try:
            application = data["applications"][0]
            app = s.apps.get(application["applicationID"])
            if app is None or app["userId"] != user:
                raise LookupError("application not found")
            for svc in application["microservices"]:
                if not NAME.match(svc["microservice_name"]) or not NAME.match(
                    svc["microservice_namespace"]
                ):
                    raise ValueError("SLA")
            job_id = ""
            deployed = []
            for svc in application["microservices"]:
                job_id = s.add_job(app, dict(svc))
                deployed.append({"service_name": svc["microservice_name"], "status": 200})
        except (LookupError, TypeError, ValueError, KeyError):
            # every failure inside the view's try ends in abort(400, {...})
            return smorest_abort(400)
        return 200, {"job_id": job_id, "deployed_services": deployed, "failed_services": []}

    def _control(self, method: str, route: list[str]) -> tuple | None:
        s = self.state
        if route == ["state"] and method == "GET":
            return 200, {
                "stand_in": STAND_IN,
                "applications": list(s.apps.values()),
                "services": list(s.jobs.values()),
                "deleted": s.deleted,
                "refused": s.refused,
                "vanished": s.vanished,
            }
        if route == ["seed"] and method == "POST":
            is_json, seed = self._body()
            if not is_json or not isinstance(seed, dict):
                return 400, {"message": 'POST a seed: {"users": [...], "applications": [...]}'}
            try:
                s.load(seed)
            except (KeyError, TypeError, ValueError) as exc:
                return 400, {"message": f"bad seed: {exc!r}"}
            return 200, {"applications": list(s.apps)}
        if route == ["vanish"] and method == "POST":
            is_json, order = self._body()
            if (
                not is_json
                or not isinstance(order, dict)
                or order.get("applicationID") not in s.apps
            ):
                return 404, {"message": "no such applicationID"}
            event = "deletes" if "after_deletes" in order else "lists"
            count = int(order.get(f"after_{event}", 1))
            s.vanish_after[order["applicationID"]] = (event, count)
            return 200, {"message": "scheduled"}
        return None


def serve(port: int, bind: str, seed: dict) -> None:
    Handler.state = State(seed)
    server = ThreadingHTTPServer((bind, port), Handler)
    server.daemon_threads = True

    def stop(*_: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "STAND-IN Oakestra System Manager on %s:%d: %d applications, %d users",
        bind,
        port,
        len(Handler.state.apps),
        len(Handler.state.users),
    )
    server.serve_forever()
    server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=10000)
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--seed", help="JSON seed file (users, clusters, applications)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    seed: dict = {"users": [{"name": ADMIN, "password": ADMIN, "roles": [ADMIN]}]}
    if args.seed:
        with open(args.seed, encoding="utf-8") as fh:
            seed = json.load(fh)
    serve(args.port, args.bind, seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
