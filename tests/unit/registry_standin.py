"""STAND-IN: the part of the distribution registry API (``/v2/``) that dev-images uses, in
this process, for unit tests (no Docker there). Integration tests push to the real registry
(Debian's docker-registry, distribution 2.8) of the testbed.

Blob uploads are monolithic (POST, then PUT with ``?digest=``), digests are checked, and
manifests are kept by tag and by digest with their media type, as distribution does.
``read_only`` answers uploads as distribution's read-only maintenance mode does (405,
``UNSUPPORTED``).
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class State:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.uploads: set[str] = set()
        self.read_only = False
        self.requests: list[tuple[str, str]] = []


class Handler(BaseHTTPRequestHandler):
    state: State

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, code: int, err: str, message: str) -> None:
        body = json.dumps({"errors": [{"code": err, "message": message}]}).encode()
        self._send(code, body, {"Content-Type": "application/json"})

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _route(self) -> tuple[str, str, str]:
        path = urlsplit(self.path).path
        self.state.requests.append((self.command, path))
        if path == "/v2/":
            return "root", "", ""
        for kind in ("/blobs/uploads/", "/blobs/", "/manifests/"):
            if kind in path:
                name, _, rest = path[len("/v2/") :].partition(kind)
                return kind.strip("/"), name, rest
        return "", "", ""

    def do_GET(self) -> None:
        kind, name, ref = self._route()
        if kind == "root":
            return self._send(200, b"{}", {"Content-Type": "application/json"})
        if kind == "manifests" and (name, ref) in self.state.manifests:
            media, body = self.state.manifests[(name, ref)]
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            return self._send(200, body, {"Content-Type": media, "Docker-Content-Digest": digest})
        self._error(404, "MANIFEST_UNKNOWN", "manifest unknown")

    def do_HEAD(self) -> None:
        kind, _, digest = self._route()
        if kind == "blobs" and digest in self.state.blobs:
            return self._send(200, b"", {"Content-Length": str(len(self.state.blobs[digest]))})
        self._send(404)

    def do_POST(self) -> None:
        kind, name, _ = self._route()
        if kind != "blobs/uploads":
            return self._error(404, "NOT_FOUND", "not found")
        if self.state.read_only:
            return self._error(405, "UNSUPPORTED", "The operation is unsupported.")
        upload = uuid.uuid4().hex
        self.state.uploads.add(upload)
        self._send(202, b"", {"Location": f"/v2/{name}/blobs/uploads/{upload}?_state=x"})

    def do_PUT(self) -> None:
        kind, name, rest = self._route()
        body = self._body()
        if self.state.read_only:
            return self._error(405, "UNSUPPORTED", "The operation is unsupported.")
        if kind == "blobs/uploads":
            digest = parse_qs(urlsplit(self.path).query).get("digest", [""])[0]
            if rest not in self.state.uploads:
                return self._error(404, "BLOB_UPLOAD_UNKNOWN", "blob upload unknown")
            if digest != "sha256:" + hashlib.sha256(body).hexdigest():
                return self._error(400, "DIGEST_INVALID", "provided digest did not match")
            self.state.uploads.discard(rest)
            self.state.blobs[digest] = body
            return self._send(201, b"", {"Docker-Content-Digest": digest})
        if kind == "manifests":
            media = self.headers.get("Content-Type", "")
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            refs = json.loads(body)
            wanted = [refs.get("config", {}).get("digest")] + [
                layer["digest"] for layer in refs.get("layers", [])
            ]
            missing = [d for d in wanted if d and d not in self.state.blobs]
            if missing:
                return self._error(400, "MANIFEST_BLOB_UNKNOWN", f"blob unknown {missing[0]}")
            for m in refs.get("manifests", []):
                if (name, m["digest"]) not in self.state.manifests:
                    return self._error(400, "MANIFEST_UNKNOWN", m["digest"])
            self.state.manifests[(name, rest)] = (media, body)
            self.state.manifests[(name, digest)] = (media, body)
            return self._send(201, b"", {"Docker-Content-Digest": digest})
        self._error(404, "NOT_FOUND", "not found")

    def do_DELETE(self) -> None:
        kind, _, rest = self._route()
        if kind == "blobs/uploads":
            self.state.uploads.discard(rest.split("?")[0])
            return self._send(204)
        self._error(405, "UNSUPPORTED", "unsupported")


class Running:
    def __init__(self) -> None:
        self.state = State()
        handler = type("H", (Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
