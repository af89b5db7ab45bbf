"""Training data for learners.

Learner data follows upstream's ml_data_server (addon-FLOps
``ml_data_server_package/ml_data_server/flight_server/main.py``): an Arrow Flight server on
11027 over the folder mounted at ``/ml_data_server_volume`` (the docker volume
``ml_data_server_volume`` or the configured data dir). ``list_flights({"data_tags": [...]})``
yields every entry whose ``name.split(".")[0]`` is a requested tag, after reading its Parquet
footer (``parquet.read_schema``, ``read_metadata``; a symbolic link is followed), so one
entry of a tag that is not Parquet makes the whole listing of that tag fail. The learner
(``fl_learner/data_loading.py``) then merges every file of the tags it requested into one
dataset (``pyarrow.concat_tables``): files of one tag with different schemas break training.

Footers are read with pyarrow, the server's own library (``parquet_footer``): in the
learner's running sidecar (``docker exec``), else on this machine when pyarrow is installed
here (the worker sends each footer), else not at all (then only the PAR1 magic is checked,
and the report says so).

- ``collect`` checks local files before anything is copied and names them
  ``<tag>.<stem>.parquet``, the name the sidecar serves for the tag;
- ``copy_data`` puts them where the host's sidecar serves them, skipping files already
  there with the same content, and verifies the checksums;
- ``read_mount`` lists what the sidecar will serve, per tag, and what breaks it.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import commands as C
from . import parquet_footer as PF
from .errors import UsageError
from .facts import WorkerFacts
from .outcome import Outcome, changed, failed, ok, warning
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
    """Could a learner ever ask for ``tag``? Not with a comma or white space: the manager
    joins a project's tags with commas into one word of the learner's command line
    (flops_manager ``.../learners/main.py``), and the learner splits that word at the commas
    (``fl_learner/utils/arg_parsing.py``). The empty tag (a name that starts with a dot)
    and tags that start with '-' can be asked for: see ``tag_note``."""
    return not re.search(r"[,\s]", tag)


def tag_note(tag: str) -> str:
    """What a learner must do to get ``tag`` served, when that is out of the ordinary."""
    if not tag:
        return (
            "its tag is empty (the name starts with a dot): served to a learner whose data "
            "tags hold an empty entry (such as 'mnist,')"
        )
    if tag.startswith("-"):
        return (
            "a learner must not list this tag first: its tags are one argument, and "
            "argparse reads a leading '-' as an option"
        )
    return ""


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


# -- Parquet footers, read with pyarrow as upstream's server reads them ---------------------
def local_pyarrow() -> str | None:
    """pyarrow's version on this machine, or None when it is not installed here."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return None
    return str(pyarrow.__version__)


@dataclass(frozen=True)
class Footer:
    """What upstream's server makes of one entry (``parquet_footer.judge``)."""

    ok: bool
    error: str = ""  # pyarrow's error when not ok
    rows: int = 0
    schema: str = ""  # the Arrow schema as text, without metadata
    schema_sha: str = ""

    @classmethod
    def of(cls, record: dict) -> Footer:
        return cls(
            ok=record.get("ok") is True,
            error=str(record.get("error") or ""),
            rows=int(record.get("rows") or 0),
            schema=str(record.get("schema") or ""),
            schema_sha=str(record.get("schema_sha") or ""),
        )


@dataclass(frozen=True)
class Reader:
    """Who read a host's footers: ``sidecar``, ``controller`` or nobody (``where`` empty)."""

    where: str = ""
    pyarrow: str = ""
    why: str = ""  # why nobody did

    def describe(self) -> str:
        if self.where == "sidecar":
            return f"footers read by pyarrow {self.pyarrow} in {C.SIDECAR}"
        if self.where == "controller":
            return f"footers read by pyarrow {self.pyarrow} on this machine"
        return f"footers not read ({self.why}): only the PAR1 magic was checked"

    def to_dict(self) -> dict:
        return {
            "read_by": self.where or None,
            "pyarrow": self.pyarrow or None,
            **({"why_not": self.why} if not self.where else {}),
        }


NO_READER = "no pyarrow on this machine and the sidecar is not running: pip install pyarrow"


def local_footer(path: Path, name: str) -> Footer:
    """A local file's footer, read with pyarrow here (installed: see ``local_pyarrow``)."""
    return Footer.of(PF.judge(path, name))


def tail_spec(path: Path, name: str) -> str:
    """A ``parquet_footer`` TAIL argument for a local file: its size and last bytes."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        keep = size
        if size >= 12:
            fh.seek(-8, os.SEEK_END)
            length = int.from_bytes(fh.read(4), "little")
            keep = length + 8 if length + 8 <= size else 8
        fh.seek(size - keep)
        tail = fh.read(keep)
    return json.dumps(
        {"name": name.encode().hex(), "size": size, "tail": base64.b64encode(tail).decode()}
    )


def merge_problem(files: list[Entry] | list[tuple[str, Footer]]) -> str | None:
    """Why the learner cannot merge these files of one tag (their schemas differ), or None.

    Upstream's learner (``fl_learner/data_loading.py``) downloads every file of the tags it
    requested and merges them into one dataset with ``pyarrow.concat_tables``, which needs
    one schema."""
    groups: dict[str, list[tuple[str, Footer]]] = {}
    for item in files:
        name, footer = (item.name, item.footer) if isinstance(item, Entry) else item
        if footer is not None and footer.ok:
            groups.setdefault(footer.schema_sha, []).append((name, footer))
    if len(groups) < 2:
        return None
    parts = []
    for members in groups.values():
        names = ", ".join(n for n, _ in members[:3]) + (" ..." if len(members) > 3 else "")
        fields = ", ".join(members[0][1].schema.splitlines())
        parts.append(f"{names} ({fields[:160] + '...' if len(fields) > 160 else fields})")
    return (
        "schemas differ, and a learner merges every file of the tags it requests into one "
        "dataset (pyarrow.concat_tables in fl_learner/data_loading.py), which fails: "
        + "; ".join(parts)
    )


@dataclass(frozen=True)
class DataFile:
    path: Path
    name: str  # the name in the mount: <tag>.<stem>.parquet
    size: int
    sha256: str
    footer: Footer | None = None  # read here, when pyarrow is installed here


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
    version = local_pyarrow()
    if version is None:
        return list(files.values())  # each learner's sidecar reads the footers (copy_data)
    judged = []
    for f in files.values():
        footer = local_footer(f.path, f.name)
        if not footer.ok:
            raise UsageError(
                f"{f.path}: its Parquet footer does not parse (pyarrow {version}: "
                f"{footer.error}), so the sidecar could not list tag '{tag}': nothing copied"
            )
        judged.append(replace(f, footer=footer))
    problem = merge_problem([(str(f.path), f.footer) for f in judged if f.footer])
    if problem:
        raise UsageError(f"--src files for tag '{tag}': {problem}: nothing copied")
    return judged


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
        probes.append(("data_dir", C.data_dir_facts(data_dir)))
    facts = WorkerFacts(session.probes(probes))
    if data_dir:
        want = posixpath.normpath(data_dir)
        source = f"data dir {want}"
        found = facts.data_dir(data_dir)
        problem = found.problem()
        if problem:  # resolved on the worker: a link may lead somewhere refused
            raise RemoteFailure(
                f"data dir {data_dir}: {problem}" + (": nothing copied" if strict else "")
            )
        present = found.present
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
class Verdict:
    problem: str | None = None  # why the sidecar does not serve the entry cleanly
    breaks: bool = False  # the entry makes list_flights fail for its tag
    warn: bool = False  # a doubt, not a fault (a link whose target was not read)


@dataclass(frozen=True)
class Entry:
    """One entry of the mount, judged by upstream's list_flights/do_get."""

    raw: bytes  # the name's bytes
    kind: str  # f, d, l, o (see commands.list_mount)
    size: int = 0
    head: str = "-"
    tail: str = "-"
    footer: Footer | None = None  # None: not read
    unread: str = ""  # why this entry's footer was not read, when the others were

    @property
    def name(self) -> str:
        """The name for people and JSON (see ``shown``)."""
        return shown(self.raw.decode("utf-8", "surrogateescape"))

    @property
    def tag(self) -> str:
        return tag_of(self.raw.decode("utf-8", "surrogateescape"))

    def verdict(self) -> Verdict:
        """How upstream's server treats this entry: with its footer read (``footer``), what
        pyarrow said; without, what the listing shows (kind, PAR1 magic, name)."""
        magic = PARQUET_MAGIC.hex()
        tag = shown(self.tag)
        if self.raw.startswith(TEMP_PREFIX.encode()):
            return Verdict(
                "a temporary file of learner-data, left over unless a copy is running "
                "now: remove it"
            )
        if not requestable(self.tag):
            return Verdict(
                f"never served: no learner can ask for the tag '{tag}' (the name before its "
                "first dot holds a comma or white space); store it with inv learner-data --tag"
            )
        if not self.tag:
            return Verdict(f"{tag_note(self.tag)}; store it with inv learner-data --tag")
        breaks = f"list_flights for tag '{tag}' fails while it is there: remove it"
        try:
            self.raw.decode("utf-8")
        except UnicodeDecodeError:
            return Verdict(
                f"its name is not UTF-8, which the sidecar cannot encode: {breaks}", True
            )
        if self.footer is not None:
            if self.footer.ok:
                return Verdict()
            what = {
                "l": "a symbolic link, which the sidecar follows, to something pyarrow cannot "
                "read as Parquet",
                "f": "not Parquet: pyarrow cannot read its footer",
            }.get(self.kind, f"a {KINDS.get(self.kind, self.kind)}, not a Parquet file")
            return Verdict(f"{what} ({self.footer.error}): {breaks}", breaks=True)
        if self.kind == "l":
            return Verdict(
                f"a symbolic link: the sidecar reads what it points to inside its container "
                f"({self.unread or 'footer not read'}), and list_flights for tag '{tag}' "
                "fails unless that is Parquet: replace it with the file",
                warn=True,
            )
        if self.kind != "f":
            return Verdict(
                f"a {KINDS.get(self.kind, self.kind)}, not a Parquet file: {breaks}", True
            )
        if self.size < 8 or self.head != magic or self.tail != magic:
            return Verdict(f"not Parquet (no PAR1 magic at both ends): {breaks}", True)
        if self.unread:
            return Verdict(f"footer not read ({self.unread})", warn=True)
        return Verdict()

    @property
    def problem(self) -> str | None:
        return self.verdict().problem

    @property
    def breaks(self) -> str | None:
        """The tag whose listing this entry makes fail, if any."""
        return self.tag if self.verdict().breaks else None

    def to_dict(self) -> dict:
        data: dict = {
            "name": self.name,
            "tag": shown(self.tag),
            "kind": KINDS.get(self.kind, self.kind),
            "size": self.size,
        }
        verdict = self.verdict()
        if verdict.problem:
            data["problem"] = verdict.problem
            data["breaks"] = shown(self.breaks) if self.breaks else None
            data["severity"] = "warning" if verdict.warn else "failed"
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
    reader: Reader = field(default_factory=Reader)

    def tags(self) -> dict[str, list[Entry]]:
        """tag -> the files the sidecar serves for it (a tag with a breaking entry too)."""
        found: dict[str, list[Entry]] = {}
        for e in self.entries:
            verdict = e.verdict()
            if verdict.problem is None or verdict.breaks or (verdict.warn and e.kind != "l"):
                found.setdefault(e.tag, [])
            if verdict.problem is None or (verdict.warn and e.kind != "l"):
                found[e.tag].append(e)
        return dict(sorted(found.items()))

    def merge_problems(self) -> dict[str, str]:
        """tag -> why the learner cannot merge its files (their schemas differ)."""
        found = {}
        for tag, files in self.tags().items():
            problem = merge_problem(files)
            if problem:
                found[tag] = problem
        return found

    def problems(self) -> list[Entry]:
        return [e for e in self.entries if e.problem]

    def only(self, tag: str | None) -> HostData:
        if tag is None:
            return self
        return HostData(self.mount, [e for e in self.entries if e.tag == tag], self.reader)

    def to_dict(self) -> dict:
        return {
            "mount": self.mount.path,
            "source": self.mount.source,
            "sidecar": self.mount.sidecar,
            **({"mount_problem": self.mount.problem} if self.mount.problem else {}),
            "footers": self.reader.to_dict(),
            "tags": {
                shown(t): [
                    {
                        "name": e.name,
                        "size": e.size,
                        **({"rows": e.footer.rows} if e.footer and e.footer.ok else {}),
                    }
                    for e in files
                ]
                for t, files in self.tags().items()
            },
            "merge_problems": {shown(t): p for t, p in self.merge_problems().items()},
            "problems": [e.to_dict() for e in self.problems()],
        }


def _listing(
    session: HostSession, folder: str, extra: list[tuple[str, str]] | None = None
) -> tuple[list[Entry], dict[str, tuple[int, str]]]:
    """The entries of ``folder`` and the output of ``extra`` probes, in one round trip; a
    failed listing (or ``sums``) fails the host, the others are the caller's to judge."""
    found = session.probes([("list", C.list_mount(folder)), *(extra or [])])
    for name, (rc, out) in found.items():
        if rc != 0 and name in ("list", "sums"):
            tail = out.strip().splitlines()[-1:] or [f"exit {rc}"]
            raise RemoteFailure(f"reading {folder} failed: {tail[0]}")
    return parse_listing(found["list"][1]), found


def sidecar_footers_probe(*tails: str) -> tuple[str, str]:
    """The probe that reads every footer of the mount inside the running sidecar (and the
    ``tails`` of local files), with its own Python and pyarrow."""
    return ("footers", C.sidecar_python(PF.source(), C.DATA_MOUNT, *tails))


def parse_sidecar_footers(
    rc: int, out: str
) -> tuple[dict[bytes, Footer], dict[bytes, Footer], Reader]:
    """``sidecar_footers_probe`` output: (the mount's footers by name, the local tails'
    footers by name, the reader); the reader's ``where`` is empty when it did not run."""
    lines = [
        line[len(PF.MARK) + 1 :] for line in out.splitlines() if line.startswith(PF.MARK + " ")
    ]
    if rc != 0 or not lines:
        why = out.strip().splitlines()[-1:] or [f"exit {rc}"]
        no_python = rc == PF.NO_PYARROW
        return (
            {},
            {},
            Reader(
                why=(
                    f"{C.SIDECAR} has no Python with pyarrow"
                    if no_python
                    else f"reading them in {C.SIDECAR} failed: {shown(why[0])[:200]}"
                )
            ),
        )
    mount: dict[bytes, Footer] = {}
    local: dict[bytes, Footer] = {}
    version = ""
    for text in lines:
        try:
            record = json.loads(text)
            if "pyarrow" in record:
                version = str(record["pyarrow"])
                continue
            name = bytes.fromhex(str(record["name"]))
        except (ValueError, KeyError, TypeError):
            continue
        (local if record.get("tail") else mount)[name] = Footer.of(record)
    return mount, local, Reader("sidecar", version)


def controller_footers(out: str) -> tuple[dict[bytes, Footer], dict[bytes, str]]:
    """``commands.parquet_tails`` output read with pyarrow here: (footers by name, why
    not read by name)."""
    footers: dict[bytes, Footer] = {}
    unread: dict[bytes, str] = {}
    for name, (size, tail) in C.parse_parquet_tails(out).items():
        if tail == "notfile":
            footers[name] = Footer(False, "not a file: a directory, or a link to nothing")
        elif tail == "outside":
            unread[name] = "it points out of the data folder: not read here"
        elif tail == "big":
            unread[name] = f"a footer of more than {C.FOOTER_TAIL_MAX} bytes: not read here"
        elif isinstance(tail, bytes):
            text = name.decode("utf-8", "surrogateescape")
            footers[name] = Footer.of(PF.judge(PF.TailFile(size, tail), text))
    return footers, unread


def _with_footers(
    entries: list[Entry], footers: dict[bytes, Footer], unread: dict[bytes, str]
) -> list[Entry]:
    return [replace(e, footer=footers.get(e.raw), unread=unread.get(e.raw, "")) for e in entries]


def _read_here(
    session: HostSession, folder: str, tags: list[str] | None
) -> tuple[dict[bytes, Footer], dict[bytes, str], Reader]:
    """One more round trip: the worker sends the footers, pyarrow here reads them."""
    version = local_pyarrow()
    if version is None:
        return {}, {}, Reader(why=NO_READER)
    found = session.probes([("tails", C.parquet_tails(folder, tags))])
    rc, out = found["tails"]
    if rc != 0:
        return {}, {}, Reader(why=f"the worker could not send them: {shown(out.strip())[:200]}")
    footers, unread = controller_footers(out)
    return footers, unread, Reader("controller", version)


def read_mount(session: HostSession, data_dir: str) -> HostData:
    """List the folder the host's sidecar serves, each footer read with pyarrow: in the
    running sidecar (one probe for the place, one to list and read), else here."""
    mount = locate(session, data_dir, strict=False)
    probes = [sidecar_footers_probe()] if mount.sidecar == "running" else []
    entries, found = _listing(session, mount.path, probes)
    reader = Reader(why=f"{C.SIDECAR} is {mount.sidecar}")
    footers: dict[bytes, Footer] = {}
    unread: dict[bytes, str] = {}
    if "footers" in found:
        footers, _, reader = parse_sidecar_footers(*found["footers"])
    if not reader.where:
        footers, unread, here = _read_here(session, mount.path, None)
        reader = here if here.where else Reader(why=f"{reader.why}; {here.why}")
    return HostData(mount, _with_footers(entries, footers, unread), reader)


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
        else ok(host, "mount", f"{m.path} ({m.source}){_sidecar_note(m)}; {data.reader.describe()}")
    ]
    if not data.reader.where and data.entries:
        rows.append(warning(host, "footers", data.reader.describe()))
    tags = data.tags()
    merge = data.merge_problems()
    for tag, files in tags.items():
        size = sum(e.size for e in files)
        names = ", ".join(e.name for e in files) or "no Parquet file"
        broken = [e.name for e in data.problems() if e.breaks == tag]
        detail = f"{_count(len(files), 'file')}, {size} bytes: {names}"
        note = tag_note(tag)
        step = f"tag {shown(tag)}"
        if broken:
            rows.append(
                failed(host, step, f"{detail}; list_flights fails because of {', '.join(broken)}")
            )
        elif tag in merge:
            rows.append(failed(host, step, f"{detail}; {merge[tag]}"))
        else:
            rows.append(ok(host, step, f"{detail}; {note}" if note else detail))
    for e in data.problems():
        verdict = e.verdict()
        rows.append((warning if verdict.warn else failed)(host, e.name, verdict.problem or ""))
    if not tags and not data.problems():
        rows.append(ok(host, "data", "no files"))
    return rows


# -- copying -------------------------------------------------------------------------------
TAILS_TO_SIDECAR_MAX = 64 * 1024  # bytes of local footers sent on one command line


def _check_footers(
    session: HostSession,
    files: list[DataFile],
    dest: str,
    mount: Mount,
    entries: list[Entry],
    found: dict[str, tuple[int, str]],
) -> tuple[list[Entry], list[Outcome]]:
    """Judge the footers before anything is copied: the local files' (read here by
    ``collect``, else by the sidecar) and those of the files already stored under the same
    tags. A file the sidecar could not read, or a tag whose schemas would differ, stops the
    host (``RemoteFailure``: nothing copied). Returns the entries with their footers and a
    warning when no footer could be read."""
    host = session.label
    names = {f.name.encode() for f in files}
    tags = sorted({tag_of(f.name) for f in files})
    local = {f.name.encode(): f.footer for f in files if f.footer is not None}
    footers: dict[bytes, Footer] = {}
    unread: dict[bytes, str] = {}
    reader = Reader()
    if "tails" in found:
        footers, unread = controller_footers(found["tails"][1])
        reader = Reader("controller", local_pyarrow() or "")
    elif "footers" in found:
        footers, sent, reader = parse_sidecar_footers(*found["footers"])
        for f in files:
            footer = sent.get(f.name.encode())
            if footer is not None and not footer.ok:
                raise RemoteFailure(
                    f"{f.path}: its Parquet footer does not parse (pyarrow {reader.pyarrow} "
                    f"in {C.SIDECAR}: {footer.error}), so the sidecar could not list tag "
                    f"'{tag_of(f.name)}': nothing copied"
                )
            if footer is not None:
                local[f.name.encode()] = footer
    entries = _with_footers(entries, footers, unread)
    for tag in tags:
        kept = [(e.name, e.footer) for e in entries if e.tag == tag and e.raw not in names]
        ours = [(f.name, local.get(f.name.encode())) for f in files if tag_of(f.name) == tag]
        problem = merge_problem([(n, ft) for n, ft in kept + ours if ft is not None])
        if problem:
            raise RemoteFailure(f"tag '{tag}' in {dest}: {problem}: nothing copied")
    notes = []
    if len(local) < len(files) or (not reader.where and any(e.tag in tags for e in entries)):
        if reader.why:
            why = reader.why
        elif mount.sidecar != "running":
            why = f"{C.SIDECAR} is {mount.sidecar}"
        else:
            why = f"the files' footers are more than {TAILS_TO_SIDECAR_MAX} bytes to send it"
        notes.append(
            warning(
                host,
                "footers",
                f"not read (no pyarrow on this machine; {why}): only the PAR1 magic was "
                "checked, and schemas were not compared",
            )
        )
    return entries, notes


def copy_data(
    session: HostSession,
    files: list[DataFile],
    data_dir: str,
    progress: Callable[[str, int], None] | None = None,
) -> list[Outcome]:
    """Copy what differs to where the sidecar serves it; ``progress(host, bytes)`` is
    called as bytes go out. Entries that would break the files' tag are reported.

    Before anything is copied, the footers are judged (``_check_footers``): in one round
    trip with the listing, read here when pyarrow is installed here, else in the running
    sidecar."""
    host = session.label
    mount = locate(session, data_dir)
    dest = mount.path
    names = [f.name for f in files]
    tags = sorted({tag_of(f.name) for f in files})
    probes = [("sums", C.sha256_of(dest, names))]
    if local_pyarrow() is not None:
        probes.append(("tails", C.parquet_tails(dest, tags)))
    elif mount.sidecar == "running":
        tails = [tail_spec(f.path, f.name) for f in files]
        if sum(len(t) for t in tails) > TAILS_TO_SIDECAR_MAX:
            tails = []
        probes.append(sidecar_footers_probe(*tails))
    entries, found = _listing(session, dest, probes)
    by_name = {e.raw: e for e in entries}
    for f in files:
        held = by_name.get(f.name.encode())
        if held is not None and held.kind != "f":
            raise RemoteFailure(
                f"{dest}/{f.name} is a {KINDS[held.kind]}: nothing copied; "
                "remove it and run learner-data again"
            )
    entries, extra = _check_footers(session, files, dest, mount, entries, found)
    remote = C.parse_sha256_of(found["sums"][1], names)
    todo = [f for f in files if remote.get(f.name) != f.sha256]
    skipped = len(files) - len(todo)
    ours = {f.name.encode() for f in files}
    broken = [e for e in entries if e.breaks in tags and e.raw not in ours]
    extra += [failed(host, e.name, e.problem or "") for e in broken]
    note = _sidecar_note(mount)
    if not todo:
        return [ok(host, "learner-data", f"all {len(files)} files already in {dest}{note}"), *extra]
    sent = 0
    for f in todo:
        summary = f"copy {f.path} to {dest}/{f.name}"
        if session.dry:  # recorded as planned, nothing is uploaded
            session.change(
                C.install_file("<upload>", f"{dest}/{f.name}", f.sha256, session.user), summary
            )
            continue
        last = [0]

        def cb(done: int, total: int, last: list[int] = last) -> None:
            if progress:
                progress(host, done - last[0])
            last[0] = done

        tmp = session.upload(str(f.path), cb)
        session.change(C.install_file(tmp, f"{dest}/{f.name}", f.sha256, session.user), summary)
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
        session.change(C.remove_files(dest, bad), f"remove {', '.join(bad)} from {dest}")
        raise RemoteFailure(
            f"checksum mismatch after copy: {', '.join(bad)} removed from {dest} (the sidecar "
            "never serves a file other than the one sent)"
        )
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
