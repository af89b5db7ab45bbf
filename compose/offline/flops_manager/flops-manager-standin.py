#!/usr/bin/env python3
"""STAND-IN for the FLOps manager (flops_manager). NOT the FLOps manager.

Upstream's image cannot be pulled or built offline, so this small HTTP server
on port 5072 implements only what flops-tasks relies on, with upstream's
behaviour (flops_manager/api/main.py, api/blueprints/database.py,
database/main.py):

- GET /                      -> 200 {"message": "ok"} (the health route);
- DELETE /api/flops/database -> 308 to /api/flops/database/ (Flask's
                                strict-slash redirect);
- DELETE /api/flops/database/ with JSON {"customerID": "Admin"}
                             -> drops every collection of the Mongo database
                                `flops` (nothing else) and answers
                                200 {"message": "Successfully reset the database."};
  another customerID         -> 403 {"message": "Only Admins are allowed to reset the database!"};
  no JSON body, bad JSON or no customerID
                             -> 500 {"message": "Unexpected exception occurred:..."},
                                as upstream's catch-all answers.

The database is reached at FLOPS_DB_HOST:FLOPS_DB_PORT (default flops_db:10027).
"""

import json
import logging
import os
import signal
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pymongo

PORT = int(os.environ.get("FLOPS_MANAGER_PORT", "5072"))
DB_HOST = os.environ.get("FLOPS_DB_HOST", "flops_db")
DB_PORT = int(os.environ.get("FLOPS_DB_PORT", "10027"))
DB_NAME = "flops"
RESET_PATH = "/api/flops/database/"

log = logging.getLogger("flops-manager-standin")

_client = None
_client_lock = threading.Lock()


def mongo_client():
    global _client
    with _client_lock:
        if _client is None:
            _client = pymongo.MongoClient(DB_HOST, DB_PORT, serverSelectionTimeoutMS=5000)
        return _client


def drop_all_collections():
    """Upstream's FLOpsDB.drop_all_collections: only the database `flops`."""
    client = mongo_client()
    dropped = []
    for db_name in client.list_database_names():
        if db_name == DB_NAME:
            for collection_name in client[db_name].list_collection_names():
                client[db_name].drop_collection(collection_name)
                dropped.append(collection_name)
    return dropped


class Handler(BaseHTTPRequestHandler):
    server_version = "flops-manager-stand-in/1"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        # The healthcheck polls GET / every few seconds: keep it out of the log.
        if self.command == "GET" and urlsplit(self.path).path == "/" and self.client_address[0] == "127.0.0.1":
            return
        log.info("%s %s", self.address_string(), fmt % args)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status, payload, content_type="application/json", headers=()):
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _redirect_to_slash(self):
        parts = urlsplit(self.path)
        host = self.headers.get("Host") or f"localhost:{PORT}"
        location = f"http://{host}{parts.path}/" + (f"?{parts.query}" if parts.query else "")
        page = (
            "<!doctype html>\n<html lang=en>\n<title>Redirecting...</title>\n<h1>Redirecting...</h1>\n"
            f'<p>You should be redirected automatically to the target URL: <a href="{location}">{location}</a>. '
            "If not, click the link.\n"
        ).encode()
        self._send(HTTPStatus.PERMANENT_REDIRECT, page, "text/html; charset=utf-8", [("Location", location)])

    def _not_found(self):
        self._send(HTTPStatus.NOT_FOUND, {"message": "Not Found"})

    def _method_not_allowed(self, allowed):
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, {"message": "Method Not Allowed"}, headers=[("Allow", allowed)])

    def _route(self):
        path = urlsplit(self.path).path
        self._body()  # drain, so keep-alive connections stay in sync
        if path == "/":
            if self.command in ("GET", "HEAD"):
                return self._send(HTTPStatus.OK, {"message": "ok"})
            return self._method_not_allowed("GET, HEAD, OPTIONS")
        if path == RESET_PATH.rstrip("/"):
            if self.command in ("DELETE",):
                return self._redirect_to_slash()
            return self._method_not_allowed("DELETE, OPTIONS")
        if path == RESET_PATH:
            return self._method_not_allowed("DELETE, OPTIONS")
        return self._not_found()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _route

    def do_DELETE(self):
        path = urlsplit(self.path).path
        if path != RESET_PATH:
            return self._route()
        raw = self._body()
        try:
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if not (content_type == "application/json"
                    or (content_type.startswith("application/") and content_type.endswith("+json"))):
                raise ValueError(
                    "415 Unsupported Media Type: Did not attempt to load JSON data because the "
                    "request Content-Type was not 'application/json'.")
            try:
                data = json.loads(raw.decode("utf-8"))
            except ValueError as exc:
                raise ValueError(f"400 Bad Request: Failed to decode JSON object: {exc}") from None
            customer_id = data["customerID"]
            if customer_id != "Admin":
                return self._send(HTTPStatus.FORBIDDEN, {"message": "Only Admins are allowed to reset the database!"})
            dropped = drop_all_collections()
            log.info("reset the database %r: dropped %s", DB_NAME, dropped or "nothing")
        except Exception as exc:
            log.exception("Unexpected exception occurred")
            return self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"message": f"Unexpected exception occurred:{exc}"})
        return self._send(HTTPStatus.OK, {"message": "Successfully reset the database."})


def main():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stdout)
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.daemon_threads = True

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("flops_manager STAND-IN (not the FLOps manager) on 0.0.0.0:%d, database %s:%d/%s",
             PORT, DB_HOST, DB_PORT, DB_NAME)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
