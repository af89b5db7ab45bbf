#!/usr/bin/env python3
"""STAND-IN for Oakestra's System Manager (root orchestrator, port 10000). NOT Oakestra.

No Oakestra root orchestrator can run on the offline testbed (its images cannot be pulled),
so this server answers the routes that flops-tasks, the FLOps manager and oak-cli call, with
the routes, status codes and payload shapes of oakestra/oakestra
root_orchestrator/system-manager-python (commit 0e879834). Applications and services live
in memory, seeded from a JSON file; nothing is scheduled or run. Each route below names the
upstream file and view it follows (paths relative to system-manager-python/).

Routing follows Flask 2.1 on werkzeug 2.0.3 (upstream's requirements.txt), as oak-cli meets it:
- a rule declared with a trailing slash (``/api/applications/``) answers the path without
  it with a 308 redirect to the slash form, but only for a method the rule allows
  (werkzeug/routing.py ``Rule.match``: ``RequestSlash`` when ``method in self.methods``);
- a path some rule matches, with a method no matching rule allows, is 405; no rule, 404;
  both as flask-smorest's JSON error (``{"code": N, "status": "<reason>"}``,
  flask_smorest/error_handler.py: the ``Allow`` header is not kept); the redirect is
  werkzeug's HTML page (Flask lets routing redirects through unhandled);
- HEAD is GET without the body, OPTIONS is 200 with ``Allow`` (Flask adds both).

Payload shapes that matter (all from upstream):
- errors raised with flask-smorest's ``abort`` are ``{"code": N, "status": "<reason>"}``:
  webargs' ``abort(code, exc=None, **kwargs)`` puts a positional dict into ``exc``, so the
  handler (flask_smorest/error_handler.py) adds no message;
- flask-jwt-extended (``jwt_required``) answers a missing token with 401
  ``{"msg": "Missing Authorization Header"}``, an expired one with 401
  ``{"msg": "Token has expired"}`` and a forged one with 422; the System Manager's own
  ``jwt_auth_required`` (roles/securityUtils.py) answers any token problem with 401
  ``{"message": "Missing authentication token"}``; ``require_role`` with 403
  ``{"message": "You have not enough permissions!"}``;
- access tokens expire after 10 minutes (system_manager.py ``JWT_ACCESS_TOKEN_EXPIRES``;
  ``--token-ttl`` here); a token carries the roles of the organization it was made for
  (users/auth.py ``user_login``: ``organization_name``, else the organization ``root``);
- views under ``@blp.response`` that return ``json_util.dumps(...)`` are a JSON *string*
  holding the JSON (flask-smorest ``jsonify``s the string again), with ``_id`` as
  ``{"$oid": ...}``; plain MethodViews (clusters) return the JSON text itself.

Oakestra's own defect, reproduced: deleting an application (or a service) undeploys its
instances with services/instance_management.py ``request_scale_down_instance``, whose loop
(lines 102-106) removes items from the list it iterates, so every second instance is never
undeployed; then the job is deleted (services/service_management.py ``delete_service``).
The instance keeps running on its cluster, unknown to the System Manager. The stand-in has no
cluster; what a cluster would still run is listed under ``cluster_instances`` in its state.

Stand-in control routes (not upstream; tests use them): ``GET /_standin/state`` (apps,
services, the instances a cluster would run, every request, and logs of deleted, refused and
vanished apps), ``POST /_standin/seed`` (replace the state with a seed), ``POST
/_standin/vanish`` ``{"applicationID", "after_lists": N}`` or ``{"applicationID",
"after_deletes": N}`` (the app disappears, as if someone else deleted it, after N more
application listings or N more application deletes), ``POST /_standin/expire`` (every token
issued so far expires now), ``POST /_standin/stuck`` ``{"microserviceID",
"instance_number"}`` (the job store keeps that instance whatever is undeployed, as upstream
does when the resource abstractor refuses ``update_job_status_and_instances``: it only logs).

Usage: system_manager_standin.py [--port 10000] [--bind 0.0.0.0] [--seed FILE] [--token-ttl S]
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import re
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

log = logging.getLogger("system-manager-standin")

STAND_IN = "oakestra system manager"
ADMIN = "Admin"  # roles/securityUtils.py Role.ADMIN
ROOT_ORGANIZATION = "root"  # users/auth.py user_login, without organization_name
NAME = re.compile(r"^[a-zA-Z0-9]{1,30}$")  # sla/schema.py application/microservice names
SLA_VERSIONS = ("v1.0", "v2.0")  # sla/sla_versions.py
TOKEN_TTL = 600.0  # system_manager.py JWT_ACCESS_TOKEN_EXPIRES = timedelta(minutes=10)
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
NOT_MODELLED = "a route of Oakestra's System Manager that this stand-in does not model"

# (rule, methods, view, upstream file and view). ``view`` None: upstream has the route, the
# stand-in does not model it (501 with a message saying so).
ROUTES: tuple[tuple[str, frozenset[str], str | None, str], ...] = tuple(
    (rule, frozenset(methods.split()), view, upstream)
    for rule, methods, view, upstream in (
        (
            "/api/auth/login",
            "POST",
            "login",
            "blueprints/authentication_blueprints.py UserLoginController",
        ),
        ("/api/auth/register", "POST", None, "authentication_blueprints.py"),
        ("/api/auth/refresh", "POST", None, "authentication_blueprints.py"),
        (
            "/api/applications/",
            "GET",
            "list_applications",
            "blueprints/applications_blueprints.py MultipleApplicationController",
        ),
        (
            "/api/applications/<userid>",
            "GET",
            None,
            "applications_blueprints.py MultipleApplicationControllerUser",
        ),
        (
            "/api/application/",
            "POST",
            "create_application",
            "blueprints/applications_blueprints.py CreateApplicationController",
        ),
        (
            "/api/application/<appid>",
            "GET DELETE PUT",
            "application",
            "blueprints/applications_blueprints.py ApplicationController",
        ),
        (
            "/api/services/",
            "GET",
            "list_services",
            "blueprints/services_blueprints.py MultipleServicesController",
        ),
        (
            "/api/services/<appid>",
            "GET",
            "app_services",
            "blueprints/services_blueprints.py MultipleServicesControllerUser",
        ),
        (
            "/api/service/",
            "POST",
            "create_services",
            "blueprints/services_blueprints.py ServiceControllerPost",
        ),
        (
            "/api/service/<serviceid>",
            "GET DELETE PUT",
            "service",
            "blueprints/services_blueprints.py ServiceController",
        ),
        (
            "/api/service/<serviceid>/instance",
            "POST",
            "deploy_instance",
            "blueprints/deployment_blueprints.py DeployInstanceController",
        ),
        (
            "/api/service/<serviceid>/instance/<instance_number>",
            "DELETE",
            "undeploy_instance",
            "blueprints/deployment_blueprints.py UndeployInstanceController",
        ),
        ("/api/clusters/", "GET", "clusters", "blueprints/clusters_blueprints.py Clusters"),
        (
            "/api/clusters/active",
            "GET",
            "active_clusters",
            "blueprints/clusters_blueprints.py ActiveClustersController",
        ),
        ("/api/information/<clusterid>", "POST", None, "clusters_blueprints.py"),
        ("/api/permission/<username>", "GET", None, "authorization_blueprints.py"),
        ("/api/organization/", "GET POST", None, "organization_blueprints.py"),
        ("/api/organization/<organizationid>", "DELETE PUT", None, "organization_blueprints.py"),
        ("/api/result/deploy", "POST", None, "scheduling_blueprints.py"),
        ("/api/user/", "POST PUT", None, "users_blueprints.py"),
        ("/api/user/<username>", "GET DELETE PUT POST", None, "users_blueprints.py"),
        ("/api/users/", "GET", None, "users_blueprints.py"),
        ("/api/users/<organization_id>", "GET", None, "users_blueprints.py"),
    )
)


def allowed(methods: frozenset[str]) -> frozenset[str]:
    """The methods Flask serves for a view: its own, OPTIONS, and HEAD with GET."""
    return methods | {"OPTIONS"} | ({"HEAD"} if "GET" in methods else set())


def route(path: str, method: str) -> tuple:
    """werkzeug 2.0.3 ``MapAdapter.match`` for ROUTES: ("view", view, args),
    ("redirect", path), ("405", methods) or ("404",)."""
    slash = path.endswith("/") and path != "/"
    segments = (path[:-1] if slash else path).split("/")[1:]
    not_allowed: set[str] = set()
    for rule, methods, view, _ in ROUTES:
        leaf = not rule.endswith("/")
        parts = rule.strip("/").split("/")
        if len(parts) != len(segments) or (slash and leaf):
            continue
        args: dict[str, str] = {}
        for part, seg in zip(parts, segments, strict=True):
            if part.startswith("<"):
                if not seg:  # the default converter needs at least one character
                    break
                args[part[1:-1]] = seg
            elif part != seg:
                break
        else:
            methods_here = allowed(methods)
            if method not in methods_here:
                not_allowed |= methods_here
                continue
            if not leaf and not slash:
                return ("redirect", path + "/")
            return ("view", view, args)
    if not_allowed:
        return ("405", frozenset(not_allowed))
    return ("404",)


def smorest_abort(code: int) -> tuple[int, dict]:
    """flask-smorest's error body for ``abort(code, {...})`` (no message: see above)."""
    return code, {"code": code, "status": REASONS[code]}


def object_id() -> str:
    """24 hex digits like a MongoDB ObjectId (timestamp first)."""
    return f"{int(time.time()):08x}{secrets.token_hex(8)}"


class State:
    """Users, organizations, applications and services (jobs), guarded by one lock."""

    def __init__(self, seed: dict, token_ttl: float = TOKEN_TTL) -> None:
        self.lock = threading.Lock()
        self.token_ttl = token_ttl
        self.load(seed)

    def load(self, seed: dict) -> None:
        self.users = {
            u["name"]: {"password": u["password"], "roles": list(u.get("roles", []))}
            for u in seed.get("users", [])
        }
        # organization -> user -> roles (ext_requests/organization_db.py: "member" entries);
        # the organization "root" holds every user with the roles the seed gives them
        self.organizations: dict[str, dict[str, list[str]]] = {
            ROOT_ORGANIZATION: {name: list(u["roles"]) for name, u in self.users.items()}
        }
        for org in seed.get("organizations", []):
            self.organizations[org["name"]] = {
                m["user"]: list(m.get("roles", [])) for m in org.get("member", [])
            }
        self.clusters = list(seed.get("clusters", []))
        self.apps: dict[str, dict] = {}
        self.jobs: dict[str, dict] = {}
        self.tokens: dict[str, dict] = {}  # token -> {user, roles, organization, expires}
        self.deleted: list[dict] = []
        self.refused: list[dict] = []
        self.vanished: list[dict] = []
        self.requests: list[dict] = []
        self.cluster_instances: set[tuple[str, int]] = set()  # what a cluster would run
        self.stuck: set[tuple[str, int]] = set()
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
        addresses = svc.get("addresses")
        if isinstance(addresses, dict):  # compatibility with older netmanager versions
            job["RR_ip"] = addresses.get("rr_ip")
            job["RR_ip_v6"] = addresses.get("rr_ip_v6")
        job["job_name"] = (
            f"{app['application_name']}.{app['application_namespace']}."
            f"{svc['microservice_name']}.{svc['microservice_namespace']}"
        )
        self.jobs[job_id] = job
        app["microservices"].append(job_id)
        return job_id

    def scale_up(self, job_id: str) -> None:
        """services/instance_management.py request_scale_up_instance, then
        instance_scale_up_scheduled_handler, then the cluster's report that it runs
        (ClusterController.post -> update_job_status): job and instance are RUNNING."""
        job = self.jobs[job_id]
        number = job["next_instance_progressive_number"]
        job["instance_list"].append(
            {
                "instance_number": number,
                "cluster_id": "standin-cluster",
                "cluster_location": "location-unknown",
                "status": "RUNNING",
                "publicip": "",
            }
        )
        job["next_instance_progressive_number"] = number + 1
        job["status"] = "RUNNING"
        self.cluster_instances.add((job_id, number))

    def scale_down(self, job_id: str, user: str, which_one: int = -1) -> None:
        """services/instance_management.py request_scale_down_instance, defect included:
        ``instances.remove(instance)`` inside ``for instance in instances`` (lines 102-106)
        skips the item after each removal, so with ``which_one == -1`` every second
        instance is never undeployed."""
        job = self.jobs.get(job_id)
        if job is None:
            return  # "Service ... not found", logged; the route still answers 200
        app = self.apps.get(job["applicationID"])
        if app is None or app["userId"] != user:
            return  # get_app_by_id filters by userId
        if job_id not in app["microservices"]:
            return
        instances = job["instance_list"]
        before = list(instances)
        if len(instances) > 0:
            for instance in instances:
                if which_one == instance["instance_number"] or which_one == -1:
                    # net_inform_instance_undeploy, cluster_request_to_delete_job
                    if (job_id, instance["instance_number"]) not in self.stuck:
                        self.cluster_instances.discard((job_id, instance["instance_number"]))
                    instances.remove(instance)
            # update_job_status_and_instances; a stuck instance stays listed and running
            job["instance_list"] = [
                i for i in before if i in instances or (job_id, i["instance_number"]) in self.stuck
            ]

    def user_apps(self, user: str) -> list[dict]:
        return [a for a in self.apps.values() if a["userId"] == user]

    # services/service_management.py delete_service: scale down, unlink, delete the job
    def delete_service(self, user: str, service_id: str) -> bool:
        for app in self.user_apps(user):
            if service_id in app["microservices"]:
                self.scale_down(service_id, user)
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


def map_cluster_attributes(candidate: dict) -> dict:
    """clusters_blueprints.py map_cluster_attributes: a candidate under the cluster names
    external tools (oak-cli) read."""
    x = dict(candidate)
    x["cluster_name"] = x.get("candidate_name", "Unknown Cluster")
    x["cluster_location"] = x.get("candidate_location", "Unknown Location")
    x["aggregated_cpu_percent"] = x.get("cpu_percent", 0)
    x["memory_in_mb"] = x.get("memory", 0)
    x["total_cpu_cores"] = x.get("vcpus", 0)
    x["total_gpu_cores"] = x.get("vgpus", 0)
    return x


def redirect_page(location: str) -> str:
    """werkzeug.utils.redirect's body."""
    url = html.escape(location)
    return (
        '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n'
        "<title>Redirecting...</title>\n"
        "<h1>Redirecting...</h1>\n"
        "<p>You should be redirected automatically to target URL: "
        f'<a href="{url}">{url}</a>. If not click the link.'
    )


class Handler(BaseHTTPRequestHandler):
    server_version = "system-manager-standin"
    protocol_version = "HTTP/1.1"  # keep-alive, as werkzeug/gunicorn answer requests' clients
    state: State  # set on the class by serve()

    def log_message(self, fmt: str, *args: object) -> None:
        log.info("%s %s", self.address_string(), fmt % args)

    # -- plumbing -------------------------------------------------------------------------
    def _raw_body(self) -> bytes:
        if not hasattr(self, "_raw"):
            length = int(self.headers.get("Content-Length") or 0)
            self._raw = self.rfile.read(length) if length else b""
        return self._raw

    def _body(self) -> tuple[bool, object]:
        """(is JSON, value): like Flask 2.1's ``get_json`` (None for non-JSON)."""
        raw = self._raw_body()
        if "json" not in (self.headers.get("Content-Type") or ""):
            return False, None
        try:
            return True, json.loads(raw or b"null")
        except ValueError:
            return False, None

    def _send(
        self,
        status: int,
        payload: object,
        raw: bool = False,
        headers: dict[str, str] | None = None,
        head: bool = False,
    ) -> None:
        body = (payload if raw else json.dumps(payload) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8" if raw else "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _token(self) -> tuple[str, dict | None]:
        """(problem, claims): problem is "missing", "invalid", "expired" or ""."""
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            return "missing", None
        claims = self.state.tokens.get(auth[len("Bearer ") :].strip())
        if claims is None:
            return "invalid", None
        if time.time() >= claims["expires"]:
            return "expired", None
        return "", claims

    def _jwt_required(self) -> tuple[dict | None, tuple[int, dict] | None]:
        """flask_jwt_extended.jwt_required: 401 without a token or with an expired one,
        422 for a forged one."""
        problem, claims = self._token()
        if problem == "missing":
            return None, (401, {"msg": "Missing Authorization Header"})
        if problem == "expired":
            return None, (401, {"msg": "Token has expired"})
        if problem:
            return None, (422, {"msg": "Signature verification failed"})
        return claims, None

    def _jwt_auth_required(self) -> tuple[dict | None, tuple[int, dict] | None]:
        """roles/securityUtils.py jwt_auth_required: any token problem is one 401."""
        problem, claims = self._token()
        if problem:
            return None, (401, {"message": "Missing authentication token"})
        return claims, None

    def _require_admin(self, claims: dict) -> tuple[int, dict] | None:
        """roles/securityUtils.py require_role(Role.ADMIN): the token's roles decide."""
        if ADMIN in claims["roles"]:
            return None
        return 403, {"message": "You have not enough permissions!"}

    def _handle(self, method: str) -> None:
        path = urlsplit(self.path).path
        self._raw_body()  # read it whatever the route: the connection is kept alive
        head = method == "HEAD"
        with self.state.lock:
            found = route(path, method)
            result = self._answer(found, method)
            self.state.requests.append({"method": method, "path": path, "status": result[0]})
        status, payload = result[0], result[1]
        raw = len(result) > 2 and bool(result[2])
        headers = result[3] if len(result) > 3 else None
        self._send(status, payload, raw, headers, head=head)

    def _answer(self, found: tuple, method: str) -> tuple:
        kind = found[0]
        if kind == "404" and self.path.startswith("/_standin/"):
            control = self._control(method, urlsplit(self.path).path.split("/")[2:])
            if control is not None:
                return control
        if kind == "404":
            return smorest_abort(404)
        if kind == "405":
            return smorest_abort(405)
        if kind == "redirect":
            host = self.headers.get("Host") or f"{self.server.server_address[0]}"
            query = urlsplit(self.path).query
            location = f"http://{host}{found[1]}" + (f"?{query}" if query else "")
            return 308, redirect_page(location), True, {"Location": location}
        view, args = found[1], found[2]
        if method == "OPTIONS":
            methods = next(allowed(m) for r, m, v, _ in ROUTES if v == view)
            return 200, "", True, {"Allow": ", ".join(sorted(methods))}
        if view is None:
            return 501, {"code": 501, "status": REASONS[501], "message": NOT_MODELLED}
        handler: Callable[..., tuple] = getattr(self, f"view_{view}")
        return handler("GET" if method == "HEAD" else method, **args)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._handle("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._handle("OPTIONS")

    # -- views --------------------------------------------------------------------------------
    def view_login(self, method: str) -> tuple:
        """blueprints/authentication_blueprints.py UserLoginController.post, users/auth.py
        user_login."""
        s = self.state
        is_json, content = self._body()
        if not is_json or content is None:
            return smorest_abort(403)
        if not isinstance(content, dict) or "username" not in content or "password" not in content:
            return smorest_abort(500)  # user_login: content["username"] -> KeyError
        organization = content.get("organization_name", ROOT_ORGANIZATION)
        if organization not in s.organizations:
            # flask.abort(404, {...}): a werkzeug NotFound, no ``data`` for flask-smorest
            return smorest_abort(404)
        username, password = content["username"], content["password"]
        user = s.users.get(username) if isinstance(username, str) else None
        if not username or not password or user is None or user["password"] != password:
            return smorest_abort(401)
        # get_user_roles_from_organization: the roles of that organization's membership
        roles = list(s.organizations[organization].get(username, []))
        token = ".".join(secrets.token_urlsafe(18) for _ in range(3))
        s.tokens[token] = {
            "user": username,
            "roles": roles,
            "organization": organization,
            "expires": time.time() + s.token_ttl,
        }
        return 200, {"token": token, "refresh_token": secrets.token_urlsafe(32)}

    def view_list_applications(self, method: str) -> tuple:
        """applications_blueprints.py MultipleApplicationController.get (role Admin)."""
        claims, err = self._jwt_required()
        if err:
            return err
        denied = self._require_admin(claims)
        if denied:
            return denied
        self.state.tick("lists")
        return 200, json_util_string(list(self.state.apps.values()), "applicationID")

    def view_create_application(self, method: str) -> tuple:
        """CreateApplicationController.post, services/application_management.py
        register_app."""
        claims, err = self._jwt_required()
        if err:
            return err
        return self._register_app(claims["user"])

    def view_application(self, method: str, appid: str) -> tuple:
        """applications_blueprints.py ApplicationController.get/.delete/.put."""
        s = self.state
        claims, err = self._jwt_required()
        if err:
            return err
        user = claims["user"]
        app = s.apps.get(appid)
        mine = app is not None and app["userId"] == user  # get_app_by_id filters by userId
        if method == "GET":
            if not mine:
                return smorest_abort(404)  # abort(code, result) inside the try -> 404
            # the view's ``return`` sits under ``if code != 200`` after ``abort``: a found
            # app falls through to None, which flask-smorest answers as JSON null
            return 200, None
        if method == "PUT":  # services/application_management.py update_app: no owner check
            is_json, fields = self._body()
            if not is_json or not isinstance(fields, dict):
                return smorest_abort(500)  # request.get_json() None -> fields.get fails
            if app is not None:
                app.update(
                    {
                        "application_name": fields.get("application_name"),
                        "application_namespace": fields.get("application_namespace"),
                        "application_desc": fields.get("application_desc", ""),
                        "microservices": fields.get("microservices"),
                        "userId": user,
                    }
                )
            return 200, {"message": "Application is updated"}
        # DELETE: application_management.delete_app
        if not mine:
            return smorest_abort(501)
        assert app is not None
        services = [s.jobs[j]["microservice_name"] for j in app["microservices"] if j in s.jobs]
        for job_id in list(app["microservices"]):
            s.delete_service(user, job_id)
        del s.apps[appid]
        s.deleted.append({**app, "microservices": services, "by": user, "at": time.time()})
        s.tick("deletes")
        return 200, {"message": "Application Deleted"}

    def view_list_services(self, method: str) -> tuple:
        """services_blueprints.py MultipleServicesController.get (role Admin)."""
        claims, err = self._jwt_auth_required()
        if err:
            return err
        denied = self._require_admin(claims)
        if denied:
            return denied
        return 200, json_util_string(list(self.state.jobs.values()), "microserviceID")

    def view_app_services(self, method: str, appid: str) -> tuple:
        """services_blueprints.py MultipleServicesControllerUser.get."""
        s = self.state
        claims, err = self._jwt_auth_required()
        if err:
            return err
        app = s.apps.get(appid)
        if app is None or app["userId"] != claims["user"]:
            return smorest_abort(404)
        jobs = [j for j in s.jobs.values() if j["applicationID"] == appid]
        return 200, json_util_string(jobs, "microserviceID")

    def view_create_services(self, method: str) -> tuple:
        """services_blueprints.py ServiceControllerPost.post,
        service_management.create_services_of_app."""
        claims, err = self._jwt_auth_required()
        if err:
            return err
        return self._create_services(claims["user"])

    def view_service(self, method: str, serviceid: str) -> tuple:
        """services_blueprints.py ServiceController.get/.delete/.put."""
        s = self.state
        claims, err = self._jwt_auth_required()
        if err:
            return err
        user = claims["user"]
        if method == "GET":  # service_management.get_service: via the user's apps
            mine = any(serviceid in a["microservices"] for a in s.user_apps(user))
            job = s.jobs.get(serviceid) if mine else None
            if job is None:
                return smorest_abort(404)  # abort(404, "not found")
            return 200, json.dumps(with_oid(job, "microserviceID"))
        if method == "PUT":  # service_management.update_service: commented out upstream
            is_json, data = self._body()
            try:
                data["applications"][0]["microservices"][0]  # type: ignore[index]
            except (TypeError, KeyError, IndexError):
                return smorest_abort(500)
            return smorest_abort(501)
        if s.delete_service(user, serviceid):
            return 200, {"message": "Job deleted"}
        return smorest_abort(500)

    def view_deploy_instance(self, method: str, serviceid: str) -> tuple:
        """deployment_blueprints.py DeployInstanceController.post,
        instance_management.request_scale_up_instance."""
        s = self.state
        claims, err = self._jwt_auth_required()
        if err:
            return err
        job = s.jobs.get(serviceid)
        app = s.apps.get(job["applicationID"]) if job else None
        if job and app and app["userId"] == claims["user"] and serviceid in app["microservices"]:
            s.scale_up(serviceid)
        return 200, {"message": "ok"}

    def view_undeploy_instance(self, method: str, serviceid: str, instance_number: str) -> tuple:
        """deployment_blueprints.py UndeployInstanceController.delete: 200 whatever happened
        (instance_management.request_scale_down_instance only logs what it skips)."""
        claims, err = self._jwt_auth_required()
        if err:
            return err
        try:
            which_one = int(instance_number)
        except ValueError:
            return smorest_abort(500)  # int() raises inside the view
        self.state.scale_down(serviceid, claims["user"], which_one=which_one)
        return 200, {"message": "ok"}

    def view_clusters(self, method: str) -> tuple:
        """clusters_blueprints.py ClustersController.get: every candidate (cluster) through
        ``map_cluster_attributes``, json_util.dumps from a plain MethodView, i.e. the JSON
        text as the body; no token needed."""
        return 200, json.dumps([map_cluster_attributes(c) for c in self.state.clusters]), True

    def view_active_clusters(self, method: str) -> tuple:
        """clusters_blueprints.py ActiveClustersController.get: the active candidates."""
        active = [map_cluster_attributes(c) for c in self.state.clusters if c.get("active")]
        return 200, json.dumps(active), True

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
        if not data:
            return smorest_abort(404)  # "/api/deploy request without a yaml file"
        try:
            application = data["applications"][0]  # type: ignore[index]
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

    # -- stand-in control (not upstream) -----------------------------------------------------
    def _control(self, method: str, route_: list[str]) -> tuple | None:
        s = self.state
        if route_ == ["state"] and method == "GET":
            return 200, {
                "stand_in": STAND_IN,
                "applications": list(s.apps.values()),
                "services": list(s.jobs.values()),
                "cluster_instances": [
                    {"microserviceID": j, "instance_number": n}
                    for j, n in sorted(s.cluster_instances)
                ],
                "requests": s.requests,
                "deleted": s.deleted,
                "refused": s.refused,
                "vanished": s.vanished,
            }
        if route_ == ["seed"] and method == "POST":
            is_json, seed = self._body()
            if not is_json or not isinstance(seed, dict):
                return 400, {"message": 'POST a seed: {"users": [...], "applications": [...]}'}
            try:
                s.load(seed)
            except (KeyError, TypeError, ValueError) as exc:
                return 400, {"message": f"bad seed: {exc!r}"}
            return 200, {"applications": list(s.apps)}
        if route_ == ["vanish"] and method == "POST":
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
        if route_ == ["expire"] and method == "POST":
            for claims in s.tokens.values():
                claims["expires"] = 0.0
            return 200, {"expired": len(s.tokens)}
        if route_ == ["stuck"] and method == "POST":
            is_json, order = self._body()
            if (
                not is_json
                or not isinstance(order, dict)
                or order.get("microserviceID") not in s.jobs
            ):
                return 404, {"message": "no such microserviceID"}
            s.stuck.add((order["microserviceID"], int(order.get("instance_number", 0))))
            return 200, {"message": "stuck"}
        return None


def serve(port: int, bind: str, seed: dict, token_ttl: float = TOKEN_TTL) -> None:
    Handler.state = State(seed, token_ttl)
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
    parser.add_argument("--seed", help="JSON seed file (users, organizations, clusters, apps)")
    parser.add_argument("--token-ttl", type=float, default=TOKEN_TTL, help="seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    seed: dict = {"users": [{"name": ADMIN, "password": ADMIN, "roles": [ADMIN]}]}
    if args.seed:
        with open(args.seed, encoding="utf-8") as fh:
            seed = json.load(fh)
    serve(args.port, args.bind, seed, args.token_ttl)
    return 0


if __name__ == "__main__":
    sys.exit(main())
