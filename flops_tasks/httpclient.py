"""The one way flops-tasks speaks HTTP: to the stack (redb, registry checks) and to Oakestra's
System Manager.

- No proxy: ``http.client`` connects to the URL's host itself and never reads ``http_proxy``,
  ``HTTP_PROXY`` or ``no_proxy`` (urllib's default opener sends everything, passwords and
  bearer tokens included, to whatever proxy the environment names).
- No redirects: a 3xx is returned as it is, so a header (``Authorization``) never travels to
  another place than the one asked; callers treat it as the error it is.
- Bounded: an answer larger than ``limit`` bytes, or one that is not complete ``timeout``
  seconds after the call started (a server that drips one byte at a time would otherwise
  hold the call as long as it likes: a socket timeout applies to each read), is a failure.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

LIMIT = 8 * 1024 * 1024  # bytes; the largest answer flops-tasks reads is an app listing
_CHUNK = 64 * 1024


class HttpFailure(OSError):
    """No complete answer: refused, unreachable, too slow, too large or not HTTP."""


class OutOfBounds(HttpFailure):
    """An answer came, but too slowly or too large to be read."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def redirect(self) -> bool:
        return 300 <= self.status < 400

    @property
    def location(self) -> str:
        return self.headers.get("location", "")


def request(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
    limit: int = LIMIT,
) -> Answer:
    """One HTTP request, answered within ``timeout`` seconds in all (connect, headers, body)
    and at most ``limit`` bytes of body; raises ``HttpFailure`` otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpFailure(f"not an http URL: {url!r}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    conn_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    deadline = time.monotonic() + timeout
    conn = conn_class(parts.hostname, parts.port, timeout=timeout)
    expired = threading.Event()

    def cut() -> None:  # the whole call's deadline: end any read that is still waiting
        expired.set()
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    watchdog = threading.Timer(timeout, cut)
    watchdog.daemon = True
    watchdog.start()
    answered = False  # a status line came: from then on, slowness is the answer's fault
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        answered = True
        chunks: list[bytes] = []
        size = 0
        while True:
            chunk = resp.read1(_CHUNK) if hasattr(resp, "read1") else resp.read(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise OutOfBounds(f"answer larger than {limit} bytes")
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise OutOfBounds(f"no complete answer within {timeout:g} s")
        if expired.is_set():
            raise OutOfBounds(f"no complete answer within {timeout:g} s")
        found = {k.lower(): v for k, v in resp.getheaders()}
        return Answer(resp.status, b"".join(chunks), found)
    except HttpFailure:
        raise
    except ValueError:  # http.client refuses a header value with a line break: never echo it
        raise HttpFailure(
            "the request was not sent: a header holds a line break or another forbidden character"
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set() and answered:
            raise OutOfBounds(f"no complete answer within {timeout:g} s") from None
        if isinstance(exc, TimeoutError | socket.timeout) or expired.is_set():
            raise HttpFailure(f"no answer within {timeout:g} s") from None
        if isinstance(exc, http.client.RemoteDisconnected):
            raise HttpFailure("the server closed the connection without an answer") from None
        if isinstance(exc, http.client.BadStatusLine | http.client.LineTooLong):
            raise HttpFailure("the answer is not HTTP") from None
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise HttpFailure(reason) from None
    finally:
        watchdog.cancel()
        conn.close()
