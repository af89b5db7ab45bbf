"""Parquet footers, read the way upstream's ml_data_server reads them.

Upstream's sidecar (addon-FLOps ``ml_data_server_package/ml_data_server/flight_server/
main.py``) answers ``list_flights`` by calling, for every entry of its folder whose name up to
the first dot is a requested tag, ``_make_flight_info``: ``parquet.read_schema(path)``,
``parquet.read_metadata(path)`` and ``name.encode("utf-8")``. One entry that fails any of the
three makes the whole listing of its tag fail. ``judge`` makes exactly those calls, with
pyarrow, the server's own library.

This file is also a script (``python -c SOURCE ...``), sent by ``commands.sidecar_footers`` into
the learner's sidecar container, where it runs with the sidecar's own Python and pyarrow. It
imports nothing but the standard library until it runs, so it loads anywhere. Arguments:

- ``ROOT`` (or ``-`` for none): every entry of ROOT, as the server iterates it
  (``pathlib.Path.iterdir``, symbolic links followed when read, as ``open`` follows them);
- then any number of ``TAIL`` arguments, JSON ``{"name": HEX, "size": N, "tail": BASE64}``:
  the last bytes of a file of N bytes, judged as that file (``TailFile``).

Output: a line ``MARK {"pyarrow": VERSION}``, then one line ``MARK {JSON}`` per entry or tail
(see ``judge``). Exit ``NO_PYARROW`` when this Python has no pyarrow.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import sys
from typing import Any

MARK = "@@flops-footer"
NO_PYARROW = 3  # the exit code that says: try another Python
MAX_ERROR = 300  # characters of a pyarrow error kept
MAX_SCHEMA = 1500  # characters of a schema's text kept (its digest covers all of it)


class TailFile(io.RawIOBase):
    """A read-only file of ``size`` bytes whose last bytes are ``tail`` and the rest zeros:
    enough for pyarrow to read a Parquet footer exactly as from the whole file (it reads the
    last 8 bytes, then the footer they point to, and checks the lengths against ``size``)."""

    def __init__(self, size: int, tail: bytes) -> None:
        super().__init__()
        self._size, self._tail, self._pos = size, tail[-size:] if size else b"", 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        end = min(self._size, self._pos + len(view))
        if end <= self._pos:
            return 0
        start_tail = self._size - len(self._tail)
        n = end - self._pos
        zeros = max(0, min(end, start_tail) - self._pos)
        view[:zeros] = bytes(zeros)
        if n > zeros:
            lo = self._pos + zeros - start_tail
            view[zeros:n] = self._tail[lo : lo + n - zeros]
        self._pos = end
        return n


def _one_line(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def judge(source: object, name: str) -> dict:
    """What upstream's ``_make_flight_info`` does with one entry: ``{"ok": True, "rows",
    "schema", "schema_sha"}`` (the schema as text without metadata; files of one tag with
    another digest cannot be merged by the learner), or ``{"ok": False, "error"}``."""
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(source)
        meta = pq.read_metadata(source)
        name.encode("utf-8")
    except Exception as exc:  # anything here makes the server's list_flights fail
        return {"ok": False, "error": _one_line(f"{type(exc).__name__}: {exc}", MAX_ERROR)}
    text = schema.remove_metadata().to_string(show_field_metadata=False, show_schema_metadata=False)
    return {
        "ok": True,
        "rows": int(meta.num_rows),
        "schema": text[:MAX_SCHEMA],
        "schema_sha": hashlib.sha256(text.encode("utf-8")).hexdigest()[:16],
    }


def kind_of(path: str) -> str:
    """f file, d directory, l symbolic link, o anything else (the entry itself, not followed)."""
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        return "l"
    if stat.S_ISDIR(mode):
        return "d"
    return "f" if stat.S_ISREG(mode) else "o"


def scan(root: str) -> list[dict]:
    """Every entry of ``root`` (names as hex), judged as the server judges it."""
    import pathlib

    found = []
    for entry in sorted(pathlib.Path(root).iterdir()):
        record = {"name": os.fsencode(entry.name).hex(), "kind": kind_of(str(entry))}
        record.update(judge(entry, entry.name))
        found.append(record)
    return found


def judge_tail(spec: str) -> dict:
    """A ``TAIL`` argument (see the module's doc) judged as the file it was cut from."""
    data = json.loads(spec)
    name = bytes.fromhex(data["name"]).decode("utf-8", "surrogateescape")
    source = TailFile(int(data["size"]), base64.b64decode(data["tail"]))
    return {"name": data["name"], "tail": True, **judge(source, name)}


def main(argv: list[str]) -> int:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        return NO_PYARROW
    print(MARK, json.dumps({"pyarrow": pyarrow.__version__}), flush=True)
    root, tails = (argv[0] if argv else "-"), argv[1:]
    records = scan(root) if root != "-" else []
    records += [judge_tail(spec) for spec in tails]
    for record in records:
        print(MARK, json.dumps(record))
    return 0


def source() -> str:
    """This file's text, to run elsewhere with ``python -c``."""
    with open(__file__, encoding="utf-8") as fh:
        return fh.read()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
