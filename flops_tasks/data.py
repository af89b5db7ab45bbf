"""Training data for learners.

``copy_data`` puts parquet files into a learner's data mount (the docker volume
``ml_data_server_volume`` or the configured data dir), skipping files already there with
the same content.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import commands as C
from .errors import FlopsError
from .outcome import Outcome, changed, ok
from .ssh import HostSession, RemoteFailure

PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class DataFile:
    path: Path
    name: str
    size: int
    sha256: str


def is_parquet(path: Path) -> bool:
    size = path.stat().st_size
    if size < 8:
        return False
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(-4, os.SEEK_END)
        tail = fh.read(4)
    return head == PARQUET_MAGIC and tail == PARQUET_MAGIC


def collect(src: str, force: bool = False) -> list[DataFile]:
    """Expand ``--src`` (comma-separated files, folders, globs) into checked files."""
    if not src or not src.strip():
        raise FlopsError("--src is empty: give parquet files, folders or globs", code=2)
    paths: list[Path] = []
    for part in src.split(","):
        part = part.strip()
        if not part:
            raise FlopsError(f"bad --src {src!r}: empty entry in the list", code=2)
        matches = sorted(glob.glob(os.path.expanduser(part))) if any(
            ch in part for ch in "*?[") else [os.path.expanduser(part)]
        if not matches:
            raise FlopsError(f"--src {part!r} matches no file", code=2)
        for m in matches:
            p = Path(m)
            if p.is_dir():
                paths.extend(sorted(p.glob("*.parquet")))
            elif p.is_file():
                paths.append(p)
            else:
                raise FlopsError(f"--src {m!r}: no such file or folder", code=2)
    if not paths:
        raise FlopsError(f"--src {src!r}: no parquet files found", code=2)
    files: dict[str, DataFile] = {}
    for p in paths:
        name = p.name
        if any(ch in name for ch in "\n\r\0") or name.startswith("-"):
            raise FlopsError(f"--src {str(p)!r}: file names may not start with '-' or hold "
                             "line breaks", code=2)
        if not force and not is_parquet(p):
            raise FlopsError(f"{p} is not a parquet file (no PAR1 magic): pass --force to copy "
                             "it anyway", code=2)
        if name in files and files[name].path != p:
            raise FlopsError(f"two files named {name!r} in --src: rename one", code=2)
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        files[name] = DataFile(p, name, p.stat().st_size, digest)
    return list(files.values())


def destination(session: HostSession, data_dir: str) -> str:
    if data_dir:
        res = session.probe(C.cmd("test", "-d", data_dir))
        if not res.ok:
            raise RemoteFailure(f"data dir {data_dir} missing: run inv prepare-learner first")
        return data_dir
    res = session.probe(C.volume_mountpoint(C.DATA_VOLUME))
    if not res.ok or not res.stdout.strip():
        raise RemoteFailure(f"docker volume {C.DATA_VOLUME} missing: run inv prepare-learner "
                            "first")
    return res.stdout.strip()


def copy_data(session: HostSession, files: list[DataFile], data_dir: str,
              progress: Callable[[str, int], None] | None = None) -> list[Outcome]:
    """Copy what differs; ``progress(host, bytes)`` is called as bytes go out."""
    host = session.label
    dest = destination(session, data_dir)
    res = session.probe(C.sha256_of(dest, [f.name for f in files]))
    remote = {}
    for line in res.stdout.splitlines():
        digest, _, name = line.partition("  ")
        remote[name.strip()] = digest.strip()
    todo = [f for f in files if remote.get(f.name) != f.sha256]
    skipped = len(files) - len(todo)
    if not todo:
        return [ok(host, "learner-data", f"all {len(files)} files already in {dest}")]
    sent = 0
    for f in todo:
        if session.dry:
            session.plan.append(f"copy {f.path} to {dest}/{f.name}")
            continue
        last = [0]

        def cb(done: int, total: int, last: list[int] = last) -> None:
            if progress:
                progress(host, done - last[0])
            last[0] = done

        tmp = session.upload(str(f.path), cb)
        session.change(C.install_file(tmp, f"{dest}/{f.name}"), f"install {f.name} in {dest}")
        sent += f.size
    if session.dry:
        return [changed(host, "learner-data", f"would copy {len(todo)} files to {dest}, skip "
                                              f"{skipped} unchanged")]
    check = session.probe(C.sha256_of(dest, [f.name for f in todo]))
    got = {ln.split("  ", 1)[1].strip(): ln.split("  ", 1)[0] for ln in check.stdout.splitlines()
           if "  " in ln}
    bad = [f.name for f in todo if got.get(f.name) != f.sha256]
    if bad:
        raise RemoteFailure(f"checksum mismatch after copy: {', '.join(bad)}")
    return [changed(host, "learner-data", f"copied {len(todo)} files ({sent} bytes) to {dest}, "
                                          f"{skipped} unchanged skipped; checksums verified")]
