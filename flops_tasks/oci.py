"""Images into the FLOps registry over its own HTTP API (distribution's ``/v2/``).

``dev-images`` builds on the local engine and pushes from here, not with ``docker push``:
the FLOps registry is plain HTTP at the address workers use, which the local engine need not
trust (and must not be changed to trust). The pieces:

- ``Registry``: blobs and manifests over plain HTTP, no proxy, no redirects across hosts;
  ``accepts_push`` opens an upload and cancels it (nothing is stored), so a registry that
  refuses pushes is found before anything is built.
- ``saved_image``: one image of the local engine as the registry needs it, read from
  ``docker save``: its config and its layers, each layer gzip-compressed once and kept in a
  cache by its diff id (``BlobCache``); a layer seen before is never read again.
- ``push_image`` / ``push_index``: upload what the registry lacks (a HEAD per blob), then the
  image manifest, then one index over the platforms under the tag.

Media types are Docker's schema 2 (manifest list, manifest, config, gzip layer), which
containerd, Docker and distribution 2.x all read.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .errors import FlopsError

INDEX = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ", ".join((INDEX, OCI_INDEX, MANIFEST, OCI_MANIFEST))
GZIP_LEVEL = 1  # fast: the layers travel a local network once; the cache keeps them
CHUNK = 1 << 20

Progress = Callable[[str], None]


class RegistryError(FlopsError):
    """The registry did not do what was asked (one line: what, and the registry's answer)."""


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(document: dict[str, Any]) -> bytes:
    """JSON bytes of a manifest as pushed (and hashed): compact, keys in a fixed order."""
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is an answer of its own (3xx), never followed


def _opener() -> urllib.request.OpenerDirector:
    # no ProxyHandler: the FLOps registry is on the cluster's network, and an http_proxy
    # from the environment must not see (or break) pushes to it
    return urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def _errors(body: bytes) -> str:
    """distribution's ``{"errors": [{"code", "message"}]}`` as one short text."""
    try:
        errors = json.loads(body or b"{}").get("errors") or []
        text = "; ".join(f"{e.get('code', '?')}: {e.get('message', '')}".strip() for e in errors)
    except (ValueError, AttributeError):
        text = ""
    return text or body.decode("utf-8", "replace").strip()[:200]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Registry:
    """The FLOps registry at ``address`` (``host:port``), plain HTTP."""

    address: str
    timeout: float = 30.0

    @property
    def base(self) -> str:
        return f"http://{self.address}/v2/"

    def _call(
        self,
        method: str,
        url: str,
        data: bytes | IO[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        if not url.startswith("http"):
            url = urllib.parse.urljoin(self.base, url)
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            with _opener().open(req, timeout=self.timeout) as resp:
                return Response(resp.status, dict(resp.headers.items()), resp.read())
        except urllib.error.HTTPError as exc:
            body = exc.read() if exc.fp is not None else b""
            return Response(exc.code, dict(exc.headers.items()) if exc.headers else {}, body)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistryError(
                f"the FLOps registry {self.address} does not answer ({reason}): check "
                "that the stack runs (inv status) and this host reaches it"
            ) from None

    def _refused(self, what: str, resp: Response) -> RegistryError:
        return RegistryError(
            f"the FLOps registry {self.address} refused {what} (HTTP {resp.status}"
            f"{': ' + _errors(resp.body) if resp.body else ''}): nothing was imported; "
            "check the registry (read-only or authenticated registries cannot take "
            "dev images)"
        )

    def check(self) -> None:
        """The registry answers as a distribution registry without authentication."""
        resp = self._call("GET", "")
        if resp.status != 200:
            raise self._refused("the API check GET /v2/", resp)

    def accepts_push(self, repo: str) -> None:
        """Open an upload session in ``repo`` and cancel it: raises when pushes are refused."""
        resp = self._call("POST", f"{repo}/blobs/uploads/")
        if resp.status != 202 or "Location" not in resp.headers:
            raise self._refused(f"a push to {repo}", resp)
        self._call("DELETE", resp.headers["Location"])

    def has_blob(self, repo: str, digest: str) -> bool:
        return self._call("HEAD", f"{repo}/blobs/{digest}").status == 200

    def put_blob(self, repo: str, digest: str, source: Path | bytes) -> None:
        """One monolithic upload (POST, then PUT with the digest)."""
        resp = self._call("POST", f"{repo}/blobs/uploads/")
        if resp.status != 202 or "Location" not in resp.headers:
            raise self._refused(f"a push to {repo}", resp)
        location = resp.headers["Location"]
        sep = "&" if "?" in location else "?"
        url = f"{location}{sep}digest={urllib.parse.quote(digest)}"
        size = len(source) if isinstance(source, bytes) else source.stat().st_size
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        if isinstance(source, bytes):
            resp = self._call("PUT", url, source, headers)
        else:
            with open(source, "rb") as fh:
                resp = self._call("PUT", url, fh, headers)
        if resp.status != 201:
            raise self._refused(f"blob {digest[:19]} in {repo}", resp)

    def get_manifest(self, repo: str, ref: str) -> tuple[str, bytes, str] | None:
        """(media type, body, digest) of ``repo:ref``; None when the registry has none."""
        resp = self._call("GET", f"{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise self._refused(f"a read of {repo}:{ref}", resp)
        media = resp.headers.get("Content-Type", "").split(";")[0].strip()
        return media, resp.body, sha256_bytes(resp.body)

    def put_manifest(self, repo: str, ref: str, body: bytes, media: str) -> str:
        resp = self._call("PUT", f"{repo}/manifests/{ref}", body, {"Content-Type": media})
        if resp.status != 201:
            raise self._refused(f"manifest {repo}:{ref}", resp)
        return sha256_bytes(body)


# -- the local engine's images --------------------------------------------------------------
def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "flops-tasks" / "blobs"


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    path: Path


class BlobCache:
    """Compressed layers by diff id: ``sha256/<digest>`` files and ``layers.json``
    (diff id -> compressed digest and size; ``docker save`` member -> diff id)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_cache()
        self.index_path = self.root / "layers.json"
        try:
            data = json.loads(self.index_path.read_text())
        except (OSError, ValueError):
            data = {}
        self.layers: dict[str, dict[str, Any]] = dict(data.get("layers") or {})
        self.members: dict[str, str] = dict(data.get("members") or {})

    def blob_path(self, digest: str) -> Path:
        return self.root / "sha256" / digest.split(":", 1)[1]

    def layer(self, diff_id: str) -> Blob | None:
        entry = self.layers.get(diff_id)
        if not entry:
            return None
        path = self.blob_path(entry["digest"])
        if not path.is_file() or path.stat().st_size != entry["size"]:
            return None
        return Blob(entry["digest"], entry["size"], path)

    def add_layer(self, diff_id: str, uncompressed: Path) -> Blob:
        """Compress ``uncompressed`` (a layer tar) into the cache."""
        (self.root / "sha256").mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(prefix=".layer-", dir=self.root)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as raw, open(uncompressed, "rb") as src:
                with gzip.GzipFile(
                    filename="",
                    mode="wb",
                    fileobj=_Hashing(raw, digest),
                    compresslevel=GZIP_LEVEL,
                    mtime=0,
                ) as gz:
                    shutil.copyfileobj(src, gz, CHUNK)
            blob_digest, size = "sha256:" + digest.hexdigest(), tmp.stat().st_size
            os.replace(tmp, self.blob_path(blob_digest))
        finally:
            tmp.unlink(missing_ok=True)
        self.layers[diff_id] = {"digest": blob_digest, "size": size}
        return Blob(blob_digest, size, self.blob_path(blob_digest))

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"layers": self.layers, "members": self.members}, indent=1))
        os.replace(tmp, self.index_path)


class _Hashing:
    """A write-only file that hashes what passes through it."""

    def __init__(self, fh: IO[bytes], digest: Any) -> None:
        self.fh, self.digest = fh, digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


@dataclass(frozen=True)
class SavedImage:
    """One platform's image, ready to push: its config and compressed layers, in order."""

    config: bytes
    layers: tuple[Blob, ...]
    diff_ids: tuple[str, ...]

    @property
    def config_digest(self) -> str:
        return sha256_bytes(self.config)

    @property
    def platform(self) -> dict[str, str]:
        cfg = json.loads(self.config)
        out = {"architecture": cfg.get("architecture", ""), "os": cfg.get("os", "")}
        if cfg.get("variant"):
            out["variant"] = cfg["variant"]
        return out

    @property
    def platform_name(self) -> str:
        p = self.platform
        return "/".join(x for x in (p["os"], p["architecture"], p.get("variant", "")) if x)

    def manifest(self) -> bytes:
        return canonical(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST,
                "config": {
                    "mediaType": CONFIG,
                    "size": len(self.config),
                    "digest": self.config_digest,
                },
                "layers": [
                    {"mediaType": LAYER, "size": b.size, "digest": b.digest} for b in self.layers
                ],
            }
        )


def _docker(*args: str) -> list[str]:
    return ["docker", *args]


def saved_image(image: str, cache: BlobCache, progress: Progress = lambda _: None) -> SavedImage:
    """Read ``image`` of the local engine (``docker save``) into the cache; a layer the
    cache holds is skipped unread when its ``docker save`` member was seen before."""
    inspect = subprocess.run(
        _docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", image),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if inspect.returncode != 0:
        raise FlopsError(f"image {image} is not on the local engine: {inspect.stderr.strip()}")
    diff_ids = tuple(json.loads(inspect.stdout) or [])
    members: dict[str, str] = {}  # member name -> diff id (read now or known)
    small: dict[str, bytes] = {}
    proc = subprocess.Popen(_docker("save", image), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                known = cache.members.get(_member_key(image, member))
                if known and known in diff_ids and cache.layer(known):
                    members[member.name] = known
                    continue
                fh = tar.extractfile(member)
                if fh is None:
                    continue
                diff_id = _read_member(fh, member, cache, diff_ids, small, progress)
                if diff_id:
                    members[member.name] = diff_id
                    cache.members[_member_key(image, member)] = diff_id
    except tarfile.TarError as exc:
        proc.kill()
        raise FlopsError(f"docker save {image} gave no readable archive ({exc})") from None
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        code = proc.wait()
    if code != 0:
        raise FlopsError(f"docker save {image} failed: {err.strip()[-200:]}")
    manifest = json.loads(small.get("manifest.json", b"[]") or b"[]")
    if not manifest:
        raise FlopsError(f"docker save {image} holds no manifest.json")
    config = small.get(manifest[0]["Config"])
    if config is None:
        raise FlopsError(f"docker save {image} holds no image config")
    blobs = []
    for diff_id in diff_ids:
        blob = cache.layer(diff_id)
        if blob is None:
            raise FlopsError(f"layer {diff_id[:19]} of {image} was not in docker save's archive")
        blobs.append(blob)
    cache.save()
    return SavedImage(config, tuple(blobs), diff_ids)


def _member_key(image: str, member: tarfile.TarInfo) -> str:
    # docker save names a layer by a stable id (legacy ``<id>/layer.tar``, or OCI
    # ``blobs/sha256/<diff id>``); the size guards against a name reused for other bytes
    return f"{member.name}:{member.size}"


def _read_member(
    fh: IO[bytes],
    member: tarfile.TarInfo,
    cache: BlobCache,
    diff_ids: tuple[str, ...],
    small: dict[str, bytes],
    progress: Progress,
) -> str | None:
    """Hash a member while copying it to a temp file (small ones are also kept in
    ``small``: the config and manifest.json); compress it into the cache when it is a layer
    of the image the cache lacks. Returns its diff id, or None (not a layer)."""
    digest = hashlib.sha256()
    cache.root.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".spool-", dir=cache.root)
    tmp = Path(tmp_name)
    keep = member.size < CHUNK
    head = bytearray()
    try:
        with os.fdopen(fd, "wb") as out:
            while True:
                chunk = fh.read(CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                out.write(chunk)
                if keep:
                    head += chunk
        if keep:
            small[member.name] = bytes(head)
        diff_id = "sha256:" + digest.hexdigest()
        if diff_id not in diff_ids:
            return None
        if cache.layer(diff_id) is None:
            progress(f"compressing layer {diff_id[7:19]} ({tmp.stat().st_size >> 20} MiB)")
            cache.add_layer(diff_id, tmp)
        return diff_id
    finally:
        tmp.unlink(missing_ok=True)


# -- pushing --------------------------------------------------------------------------------
def push_image(registry: Registry, repo: str, image: SavedImage) -> tuple[str, int, int]:
    """Upload the blobs the registry lacks and the manifest (by digest).

    Returns (manifest digest, blobs uploaded, bytes uploaded)."""
    uploaded = sent = 0
    if not registry.has_blob(repo, image.config_digest):
        registry.put_blob(repo, image.config_digest, image.config)
        uploaded, sent = 1, len(image.config)
    for blob in image.layers:
        if registry.has_blob(repo, blob.digest):
            continue
        registry.put_blob(repo, blob.digest, blob.path)
        uploaded, sent = uploaded + 1, sent + blob.size
    body = image.manifest()
    digest = registry.put_manifest(repo, sha256_bytes(body), body, MANIFEST)
    return digest, uploaded, sent


@dataclass(frozen=True)
class Entry:
    """One platform's manifest in an index."""

    digest: str
    size: int
    platform: dict[str, str]

    @property
    def name(self) -> str:
        p = self.platform
        return "/".join(
            x for x in (p.get("os", ""), p.get("architecture", ""), p.get("variant", "")) if x
        )


def index_body(entries: list[Entry]) -> bytes:
    return canonical(
        {
            "schemaVersion": 2,
            "mediaType": INDEX,
            "manifests": [
                {
                    "mediaType": MANIFEST,
                    "size": e.size,
                    "digest": e.digest,
                    "platform": dict(e.platform),
                }
                for e in sorted(entries, key=lambda e: e.name)
            ],
        }
    )


def read_index(registry: Registry, repo: str, tag: str) -> tuple[str, list[Entry]] | None:
    """The index under ``repo:tag``: (its digest, its platform entries); None if absent."""
    found = registry.get_manifest(repo, tag)
    if found is None:
        return None
    media, body, digest = found
    if media not in (INDEX, OCI_INDEX):
        return None  # a single-platform manifest: pushed again as an index
    doc = json.loads(body)
    entries = [
        Entry(m["digest"], int(m.get("size", 0)), dict(m.get("platform") or {}))
        for m in doc.get("manifests") or []
        if (m.get("platform") or {}).get("os") not in (None, "unknown")
    ]
    return digest, entries


def push_index(registry: Registry, repo: str, tag: str, entries: list[Entry]) -> str:
    return registry.put_manifest(repo, tag, index_body(entries), INDEX)
