"""Training data for learners.

Learner data follows upstream's ml_data_server (addon-FLOps
``ml_data_server_package/ml_data_server/flight_server/main.py``): an Arrow Flight server on
11027 over the folder mounted at ``/ml_data_server_volume`` (the docker volume
``ml_data_server_volume`` or the configured data dir). ``list_flights({"data_tags": [...]})``
yields a file when ``name.split(".")[0]`` is a requested tag and reads it as Parquet, so
a non-Parquet file, a directory or a link under a requested tag makes that listing fail.

- ``collect`` checks local files before anything is copied and names them
  ``<tag>.<stem>.parquet``, the name the sidecar serves for the tag;
- ``copy_data`` puts them where the host's sidecar serves them, skipping files already
  there with the same content, and verifies the checksums;
- ``read_mount`` lists what the sidecar will serve, per tag, and what breaks it.
"""

from __future__ import annotations

import glob
import hashlib
import os
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import commands as C
from .errors import UsageError
from .facts import WorkerFacts
from .outcome import Outcome, changed, failed, ok
from .ssh import HostSession, RemoteFailure

PARQUET_MAGIC = b"PAR1"
SUFFIX = ".parquet"
TEMP_PREFIX = ".flops-tmp."  # commands.install_file's temp names
MAX_NAME = 255  # bytes in one file name (Linux NAME_MAX)
# What learner-data accepts as a tag: a learner gets its tags as one comma-separated
# command-line argument (addon-FLOps flops_manager .../learners/main.py, fl_learner
# utils/arg_parsing.py) and the sidecar cuts names at the first dot, so no dot, comma,
# space or leading '-'; ASCII only, to stay safe in Oakestra's service command.
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}\Z")
TAG_RULE = (
    "letters, digits, '_' and '-' (not first), at most 64, no dots: e.g. mnist or cifar10_train"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


# -- tags and names ------------------------------------------------------------------------
def tag_of(name: str) -> str:
    """The tag the sidecar serves ``name`` under (upstream: ``name.split(".")[0]``)."""
    return name.split(".")[0]


def check_tag(tag: str | None, flag: str = "--tag") -> str:
    """``tag`` if learner-data may use it, else a one-line usage error."""
    if tag is None or not str(tag).strip():
        raise UsageError(f"{flag} is missing: name the data tag learners request ({TAG_RULE})")
    if not TAG.match(tag):
        why = (
            "holds a dot: the sidecar serves a file under the part of its name before the first dot"
            if "." in tag
            else f"use {TAG_RULE}"
        )
        raise UsageError(f"bad {flag} {tag!r}: {why}")
    return tag


def requestable(tag: str) -> bool:
    """Could a learner ever ask for ``tag``? Not when empty (a dot file), nor with a comma
    or white space (its tags are one comma-separated argument), nor starting with '-'."""
    return bool(tag) and not tag.startswith("-") and not re.search(r"[,\s]", tag)


def stored_name(tag: str, path: Path) -> str:
    """``<tag>.<stem>.parquet``: the name the sidecar serves for ``tag``."""
    stem = path.name[: -len(SUFFIX)] if path.name.lower().endswith(SUFFIX) else path.name
    return f"{tag}.{stem}{SUFFIX}"


def name_problem(path: Path, name: str) -> str | None:
    """Why the sidecar could never serve ``name`` (made from ``path``), or None."""
    stem = name[name.index(".") + 1 : -len(SUFFIX)]
    if not stem:
        return "has no name before .parquet"
    if _CONTROL.search(path.name):
        return "holds a control character (a line break, a tab...)"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "is not valid UTF-8: the sidecar cannot name it in a flight descriptor"
    if size > MAX_NAME:
        return f"would be stored as a name of {size} bytes, more than {MAX_NAME}"
    return None


def is_parquet(path: Path) -> bool:
    """PAR1 at both ends, as every Parquet file has (and the sidecar needs)."""
    size = path.stat().st_size
    if size < 8:
        return False
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(-4, os.SEEK_END)
        tail = fh.read(4)
    return head == PARQUET_MAGIC and tail == PARQUET_MAGIC


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@dataclass(frozen=True)
class DataFile:
    path: Path
    name: str  # the name in the mount: <tag>.<stem>.parquet
    size: int
    sha256: str


def _expand(src: str) -> list[Path]:
    if not src or not src.strip():
        raise UsageError("--src is empty: give parquet files, folders or globs")
    parts = [part.strip() for part in src.split(",")]
    if not all(parts):
        raise UsageError(f"bad --src {src!r}: empty entry in the list")
    paths: list[Path] = []
    for part in parts:
        matches = (
            sorted(glob.glob(os.path.expanduser(part)))
            if any(ch in part for ch in "*?[")
            else [os.path.expanduser(part)]
        )
        if not matches:
            raise UsageError(f"--src {part!r} matches no file")
        for m in matches:
            p = Path(m)
            if p.is_dir():
                paths.extend(sorted(p.glob("*" + SUFFIX)))
            elif p.is_file():
                paths.append(p)
            else:
                raise UsageError(f"--src {m!r}: no such file or folder")
    if not paths:
        raise UsageError(f"--src {src!r}: no parquet files found")
    return paths


def collect(src: str, tag: str) -> list[DataFile]:
    """Expand ``--src`` (comma-separated files, folders, globs) into checked files, each
    named as the sidecar serves it for ``tag``. Every check runs before any host is touched.
    """
    check_tag(tag)
    files: dict[str, DataFile] = {}
    for p in _expand(src):
        name = stored_name(tag, p)
        problem = name_problem(p, name)
        if problem:
            raise UsageError(f"--src {str(p)!r}: the file name {problem}: rename it")
        if not is_parquet(p):
            raise UsageError(
                f"{p} is not a parquet file (no PAR1 magic at both ends): the "
                "sidecar reads every file of a tag as Parquet"
            )
        if name in files:
            if files[name].path.resolve() == p.resolve():
                continue
            raise UsageError(
                f"{files[name].path} and {p} would both be stored as {name}: rename one"
            )
        files[name] = DataFile(p, name, p.stat().st_size, sha256_file(p))
    return list(files.values())


# -- where the sidecar reads ---------------------------------------------------------------
@dataclass(frozen=True)
class Mount:
    path: str  # the host folder the sidecar serves
    source: str  # "volume ml_data_server_volume" or "data dir /srv/flops"
    sidecar: str  # the container's state ("running", "exited", ...) or "missing"
    problem: str = ""  # the sidecar serves another folder than the configured one


def _sidecar_mount(info: dict) -> dict | None:
    for m in info.get("Mounts") or []:
        if m.get("Destination") == C.DATA_MOUNT:
            return m
    return None


def locate(session: HostSession, data_dir: str, strict: bool = True) -> Mount:
    """The host folder the sidecar serves, checked against the configured mount.

    With the sidecar there, its own mount is the truth: data copied elsewhere would never
    be served, so a mismatch fails (``strict``) or is reported in ``Mount.problem``.
    Without it, the configured mount (it is served once ``prepare-learner`` starts it).
    """
    host = session.label
    fix = f"run inv prepare-learner --host {host}"
    probes = [
        ("sidecar", C.container_inspect(C.SIDECAR)),
        ("volume", C.volume_mountpoint(C.DATA_VOLUME)),
    ]
    if data_dir:
        probes.append(("data_dir", C.cmd("test", "-d", data_dir)))
    facts = WorkerFacts(session.probes(probes))
    if data_dir:
        want = posixpath.normpath(data_dir)
        source = f"data dir {want}"
        present = facts.ok("data_dir")
    else:
        want = facts.out("volume").strip()
        source = f"volume {C.DATA_VOLUME}"
        present = facts.ok("volume") and bool(want)
    info = facts.sidecar
    if info is None:
        if not present:
            raise RemoteFailure(f"{source} missing: {fix} first")
        return Mount(want, source, "missing")
    state = str((info.get("State") or {}).get("Status") or "unknown")
    mount = _sidecar_mount(info)
    if mount is None:
        raise RemoteFailure(
            f"{C.SIDECAR} mounts nothing at {C.DATA_MOUNT}, so it serves no "
            f"data from this host: {fix}"
        )
    served = posixpath.normpath(str(mount.get("Source") or ""))
    same = (
        (mount.get("Name") == C.DATA_VOLUME)
        if not data_dir
        else (mount.get("Type") == "bind" and served == want)
    )
    if same:
        return Mount(served, source, state)
    problem = (
        f"{C.SIDECAR} serves {mount.get('Name') or served}, not the configured "
        f"{source}: {fix} (or set flops.learner.data_dir to match)"
    )
    if strict:
        raise RemoteFailure(problem)
    return Mount(served, f"{mount.get('Type')} {mount.get('Name') or served}", state, problem)


# -- what the sidecar will serve ---------------------------------------------------------
def shown(text: str) -> str:
    """A worker's file name for people: bytes that are not UTF-8 and control characters
    (line breaks, ESC) escaped as ``\\xNN``."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


KINDS = {"f": "file", "d": "directory", "l": "symbolic link", "o": "special file"}


@dataclass(frozen=True)
class Entry:
    """One entry of the mount, judged by upstream's list_flights/do_get."""

    raw: bytes  # the name's bytes
    kind: str  # f, d, l, o (see commands.list_mount)
    size: int = 0
    head: str = "-"
    tail: str = "-"

    @property
    def name(self) -> str:
        """The name for people and JSON (see ``shown``)."""
        return shown(self.raw.decode("utf-8", "surrogateescape"))

    @property
    def tag(self) -> str:
        return tag_of(self.raw.decode("utf-8", "surrogateescape"))

    def verdict(self) -> tuple[str | None, bool]:
        """(why the sidecar does not serve this entry cleanly or None, whether it makes
        list_flights fail for its tag)."""
        magic = PARQUET_MAGIC.hex()
        if self.raw.startswith(TEMP_PREFIX.encode()):
            return (
                "a temporary file of learner-data, left over unless a copy is running "
                "now: remove it",
                False,
            )
        if not requestable(self.tag):
            return (
                f"never served: no learner can ask for the tag '{shown(self.tag)}' (the name "
                "before its first dot); store it with inv learner-data --tag",
                False,
            )
        breaks = f"list_flights for tag '{shown(self.tag)}' fails while it is there: remove it"
        if self.kind == "l":
            return (
                f"a symbolic link, not followed here (learner-data never makes one): the "
                f"sidecar reads what it points to inside its container, and list_flights "
                f"for tag '{shown(self.tag)}' fails unless that is Parquet: replace it "
                "with the file",
                False,
            )
        if self.kind != "f":
            return f"a {KINDS.get(self.kind, self.kind)}, not a Parquet file: {breaks}", True
        if self.size < 8 or self.head != magic or self.tail != magic:
            return f"not Parquet (no PAR1 magic at both ends): {breaks}", True
        try:
            self.raw.decode("utf-8")
        except UnicodeDecodeError:
            return f"its name is not UTF-8, which the sidecar cannot encode: {breaks}", True
        return None, False

    @property
    def problem(self) -> str | None:
        return self.verdict()[0]

    @property
    def breaks(self) -> str | None:
        """The tag whose listing this entry makes fail, if any."""
        return self.tag if self.verdict()[1] else None

    def to_dict(self) -> dict:
        data: dict = {
            "name": self.name,
            "tag": shown(self.tag),
            "kind": KINDS.get(self.kind, self.kind),
            "size": self.size,
        }
        if self.problem:
            data["problem"] = self.problem
            data["breaks"] = shown(self.breaks) if self.breaks else None
        return data


def parse_listing(stdout: str) -> list[Entry]:
    """``commands.list_mount`` output as entries, sorted by name."""
    entries = []
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) != 5 or parts[0] not in KINDS or not parts[1].isdigit():
            continue
        try:
            raw = bytes.fromhex(parts[4])
        except ValueError:
            continue
        entries.append(Entry(raw, parts[0], int(parts[1]), parts[2], parts[3]))
    return sorted(entries, key=lambda e: e.raw)


@dataclass
class HostData:
    """What one learner's sidecar will serve."""

    mount: Mount
    entries: list[Entry] = field(default_factory=list)

    def tags(self) -> dict[str, list[Entry]]:
        """tag -> the files the sidecar serves for it (a tag with a breaking entry too)."""
        found: dict[str, list[Entry]] = {}
        for e in self.entries:
            if e.problem is None or e.breaks:
                found.setdefault(e.tag, [])
            if e.problem is None:
                found[e.tag].append(e)
        return dict(sorted(found.items()))

    def problems(self) -> list[Entry]:
        return [e for e in self.entries if e.problem]

    def only(self, tag: str | None) -> HostData:
        if tag is None:
            return self
        return HostData(self.mount, [e for e in self.entries if e.tag == tag])

    def to_dict(self) -> dict:
        return {
            "mount": self.mount.path,
            "source": self.mount.source,
            "sidecar": self.mount.sidecar,
            **({"mount_problem": self.mount.problem} if self.mount.problem else {}),
            "tags": {
                shown(t): [{"name": e.name, "size": e.size} for e in files]
                for t, files in self.tags().items()
            },
            "problems": [e.to_dict() for e in self.problems()],
        }


def _listing(
    session: HostSession, folder: str, extra: list[tuple[str, str]] | None = None
) -> tuple[list[Entry], dict[str, tuple[int, str]]]:
    found = session.probes([("list", C.list_mount(folder)), *(extra or [])])
    for rc, out in found.values():
        if rc != 0:
            tail = out.strip().splitlines()[-1:] or [f"exit {rc}"]
            raise RemoteFailure(f"reading {folder} failed: {tail[0]}")
    return parse_listing(found["list"][1]), found


def read_mount(session: HostSession, data_dir: str) -> HostData:
    """List the folder the host's sidecar serves (one probe for the place, one to list)."""
    mount = locate(session, data_dir, strict=False)
    entries, _ = _listing(session, mount.path)
    return HostData(mount, entries)


def _sidecar_note(mount: Mount) -> str:
    if mount.sidecar == "running":
        return ""
    if mount.sidecar == "missing":
        return f"; {C.SIDECAR} is not there yet: served once inv prepare-learner starts it"
    return f"; {C.SIDECAR} is {mount.sidecar}: served once it runs (inv prepare-learner)"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def listing_outcomes(host: str, data: HostData) -> list[Outcome]:
    """The table view of one host's listing: the mount, one row per tag, one per problem."""
    m = data.mount
    rows = [
        failed(host, "mount", m.problem)
        if m.problem
        else ok(host, "mount", f"{m.path} ({m.source}){_sidecar_note(m)}")
    ]
    tags = data.tags()
    for tag, files in tags.items():
        size = sum(e.size for e in files)
        names = ", ".join(e.name for e in files) or "no Parquet file"
        broken = [e.name for e in data.problems() if e.breaks == tag]
        detail = f"{_count(len(files), 'file')}, {size} bytes: {names}"
        step = f"tag {shown(tag)}"
        rows.append(
            failed(host, step, f"{detail}; list_flights fails because of {', '.join(broken)}")
            if broken
            else ok(host, step, detail)
        )
    for e in data.problems():
        rows.append(failed(host, e.name, e.problem or ""))
    if not tags and not data.problems():
        rows.append(ok(host, "data", "no files"))
    return rows


# -- copying -------------------------------------------------------------------------------
def copy_data(
    session: HostSession,
    files: list[DataFile],
    data_dir: str,
    progress: Callable[[str, int], None] | None = None,
) -> list[Outcome]:
    """Copy what differs to where the sidecar serves it; ``progress(host, bytes)`` is
    called as bytes go out. Entries that would break the files' tag are reported."""
    host = session.label
    mount = locate(session, data_dir)
    dest = mount.path
    names = [f.name for f in files]
    entries, found = _listing(session, dest, [("sums", C.sha256_of(dest, names))])
    by_name = {e.raw: e for e in entries}
    for f in files:
        held = by_name.get(f.name.encode())
        if held is not None and held.kind != "f":
            raise RemoteFailure(
                f"{dest}/{f.name} is a {KINDS[held.kind]}: nothing copied; "
                "remove it and run learner-data again"
            )
    remote = C.parse_sha256_of(found["sums"][1], names)
    todo = [f for f in files if remote.get(f.name) != f.sha256]
    skipped = len(files) - len(todo)
    tags = sorted({tag_of(f.name) for f in files})
    ours = {f.name.encode() for f in files}
    broken = [e for e in entries if e.breaks in tags and e.raw not in ours]
    extra = [failed(host, e.name, e.problem or "") for e in broken]
    note = _sidecar_note(mount)
    if not todo:
        return [ok(host, "learner-data", f"all {len(files)} files already in {dest}{note}"), *extra]
    sent = 0
    for f in todo:
        summary = f"copy {f.path} to {dest}/{f.name}"
        if session.dry:  # recorded as planned, nothing is uploaded
            session.change(C.install_file("<upload>", f"{dest}/{f.name}"), summary)
            continue
        last = [0]

        def cb(done: int, total: int, last: list[int] = last) -> None:
            if progress:
                progress(host, done - last[0])
            last[0] = done

        tmp = session.upload(str(f.path), cb)
        session.change(C.install_file(tmp, f"{dest}/{f.name}"), summary)
        sent += f.size
    if session.dry:
        return [
            changed(
                host,
                "learner-data",
                f"would copy {_count(len(todo), 'file')} to {dest}, skip {skipped} unchanged",
            ),
            *extra,
        ]
    check = session.probe(C.sha256_of(dest, [f.name for f in todo]))
    got = C.parse_sha256_of(check.stdout, [f.name for f in todo])
    bad = [f.name for f in todo if got.get(f.name) != f.sha256]
    if bad:
        raise RemoteFailure(f"checksum mismatch after copy: {', '.join(bad)}")
    return [
        changed(
            host,
            "learner-data",
            f"copied {_count(len(todo), 'file')} ({sent} bytes) to {dest} as "
            f"{', '.join(f.name for f in todo)}; {skipped} unchanged skipped; checksums "
            f"verified{note}",
        ),
        *extra,
    ]
