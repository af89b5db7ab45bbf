"""Small HTTP servers that answer the way a hostile or broken peer would, and record what they
were sent: a proxy that should never be used, a redirect target that should never be reached,
a server that drips its answer, one that answers too much."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Answer = Callable[[BaseHTTPRequestHandler], None]


class Server:
    """A server on 127.0.0.1 whose ``answer`` writes each response; ``seen`` records every
    request as (method, path, headers, body)."""

    def __init__(self, answer: Answer) -> None:
        seen: list[tuple[str, str, dict[str, str], bytes]] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                return None

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen.append((self.command, self.path, dict(self.headers), body))
                try:
                    answer(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_DELETE = do_PUT = _any  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def reply(status: int, body: bytes, headers: dict[str, str] | None = None) -> Answer:
    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(body)

    return answer


def drip(seconds: float, every: float = 0.1) -> Answer:
    """Headers at once, then one byte of body every ``every`` s for ``seconds``."""

    def answer(h: BaseHTTPRequestHandler) -> None:
        count = int(seconds / every)
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(count))
        h.end_headers()
        for _ in range(count):
            h.wfile.write(b" ")
            h.wfile.flush()
            time.sleep(every)

    return answer


def flood(size: int) -> Answer:
    """A body of ``size`` bytes (spaces: valid around JSON, so only the size is wrong)."""

    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(size + 2))
        h.end_headers()
        block = b" " * 65536
        left = size
        while left > 0:
            h.wfile.write(block[: min(left, len(block))])
            left -= len(block)
        h.wfile.write(b"[]")

    return answer
