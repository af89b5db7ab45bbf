#!/usr/bin/env python3
"""STAND-IN for MongoDB 3.6 (the FLOps database, flops_db). NOT MongoDB.

MongoDB is not packaged by Debian and cannot be installed offline, so the testbed runs this
small server instead. It speaks only the part of the MongoDB wire protocol that its three
clients use, and refuses everything else with an error (``ok: 0``), never a wrong answer:

- pymongo 4.x (< 4.11, the drivers of the manager and flops-tasks): the ``ismaster``
  handshake over OP_QUERY, then OP_MSG; a standalone server of wire version 6 (MongoDB 3.6);
  ``endSessions`` when a client closes.
- the FLOps manager (upstream addon-FLOps flops_manager/database/main.py and common.py):
  ``insert_one``, ``find_one``/``find`` by field equality, ``replace_one`` by ``_id``,
  ``delete_one``, ``list_database_names``, ``list_collection_names``, ``drop_collection``.
- flops-tasks (redb, doctor, tests): ``ping``, ``list_collection_names``, ``drop_collection``,
  ``insert_one``, ``find_one``.

Filters are field equality only (dotted paths allowed); find takes a filter and a limit.
Data lives in --dbpath (default /data/db): one directory per database, one file of
concatenated BSON documents per collection, rewritten atomically (temporary file, fsync,
rename) on every change, so stopping, killing or recreating the container keeps every
acknowledged write. Tests: tests/unit/test_mongod_standin.py (through pymongo).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import signal
import socketserver
import struct
import sys
import tempfile
import threading
import urllib.parse

import bson
from bson.int64 import Int64
from bson.objectid import ObjectId

OP_REPLY = 1
OP_QUERY = 2004
OP_MSG = 2013
MSG_CHECKSUM_PRESENT = 1 << 0
MSG_MORE_TO_COME = 1 << 1

MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024
MAX_MESSAGE_SIZE = 48_000_000
MAX_WRITE_BATCH_SIZE = 100_000
MAX_WIRE_VERSION = 6  # MongoDB 3.6
SUFFIX = ".bson"
# Fields drivers add to every command; none changes what a standalone server does.
ENVELOPE = (
    "$db",
    "lsid",
    "$readPreference",
    "$clusterTime",
    "writeConcern",
    "ordered",
    "bypassDocumentValidation",
    "comment",
    "cursor",
    "batchSize",
    "singleBatch",
    "nameOnly",
    "authorizedCollections",
)

log = logging.getLogger("mongod-standin")
MISSING = object()


class CommandError(Exception):
    def __init__(self, code: int, code_name: str, errmsg: str) -> None:
        super().__init__(errmsg)
        self.reply = {"ok": 0.0, "errmsg": errmsg, "code": code, "codeName": code_name}


def unsupported(what: str) -> CommandError:
    return CommandError(
        115,
        "CommandNotSupported",
        f"{what} is not supported by the flops_db stand-in (not MongoDB)",
    )


# -- documents --------------------------------------------------------------------------
def get_path(doc: dict, path: str) -> object:
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return MISSING
        doc = doc[part]
    return doc


def same(a: object, b: object) -> bool:
    """MongoDB equality for the values the clients store: numbers by value, else by type."""
    number = (int, float)
    if (
        isinstance(a, number)
        and isinstance(b, number)
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def matches(doc: dict, flt: dict | None) -> bool:
    """Field equality; a missing field equals null, as in MongoDB."""
    for key, want in (flt or {}).items():
        if key.startswith("$") or (isinstance(want, dict) and any(k.startswith("$") for k in want)):
            raise unsupported(f"query operator in {{{key!r}: ...}}")
        have = get_path(doc, key)
        if not (same(have, want) or (want is None and have is MISSING)):
            return False
    return True


# -- storage ----------------------------------------------------------------------------
def _enc(name: str) -> str:
    return urllib.parse.quote(name, safe="").replace(".", "%2E")


class Store:
    """Every database in memory; each changed collection rewritten to disk atomically."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.dbs: dict[str, dict[str, list[dict]]] = {}
        os.makedirs(root, exist_ok=True)
        for db_dir in sorted(os.listdir(root)):
            path = os.path.join(root, db_dir)
            if not os.path.isdir(path):
                continue
            colls = {}
            for name in sorted(os.listdir(path)):
                if name.startswith(".tmp-"):
                    os.unlink(os.path.join(path, name))  # an interrupted write; old file intact
                elif name.endswith(SUFFIX):
                    with open(os.path.join(path, name), "rb") as fh:
                        colls[urllib.parse.unquote(name[: -len(SUFFIX)])] = bson.decode_all(
                            fh.read()
                        )
            if colls:
                self.dbs[urllib.parse.unquote(db_dir)] = colls
        log.info("loaded %d databases from %s", len(self.dbs), root)

    def _dir(self, db: str) -> str:
        return os.path.join(self.root, _enc(db))

    def collection(self, db: str, coll: str, create: bool = False) -> list[dict] | None:
        docs = self.dbs.get(db, {}).get(coll)
        if docs is None and create:
            if (
                not db
                or any(c in db for c in '/\\. "$\0')
                or not coll
                or "$" in coll
                or "\0" in coll
            ):
                raise CommandError(73, "InvalidNamespace", f"invalid namespace {db}.{coll}")
            docs = self.dbs.setdefault(db, {})[coll] = []
        return docs

    def persist(self, db: str, coll: str) -> None:
        path = self._dir(db)
        os.makedirs(path, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(b"".join(bson.encode(d) for d in self.dbs[db][coll]))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, os.path.join(path, _enc(coll) + SUFFIX))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        _fsync_dir(path)

    def drop(self, db: str, coll: str) -> bool:
        colls = self.dbs.get(db, {})
        if coll not in colls:
            return False
        del colls[coll]
        os.unlink(os.path.join(self._dir(db), _enc(coll) + SUFFIX))
        if not colls:
            del self.dbs[db]
            os.rmdir(self._dir(db))
            _fsync_dir(self.root)
        return True

    def size(self, db: str) -> float:
        path = self._dir(db)
        return float(sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- commands ---------------------------------------------------------------------------
def cursor(ns: str, docs: list[dict]) -> dict:
    return {"cursor": {"firstBatch": docs, "id": Int64(0), "ns": ns}, "ok": 1.0}


class Commands:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.lock = threading.Lock()
        self.table = {
            "ismaster": self.is_master,
            "isMaster": self.is_master,
            "ping": self.ok,
            "endSessions": self.ok,
            "listDatabases": self.list_databases,
            "listCollections": self.list_collections,
            "insert": self.insert,
            "find": self.find,
            "update": self.update,
            "delete": self.delete,
            "drop": self.drop,
        }

    def run(self, db: str, cmd: dict, docs: dict[str, list]) -> dict:
        name = next(iter(cmd), "")
        handler = self.table.get(name)
        try:
            if handler is None:
                raise CommandError(
                    59, "CommandNotFound", f"no such command: '{name}' (flops_db stand-in)"
                )
            args = {k: v for k, v in cmd.items() if k not in ENVELOPE}
            with self.lock:
                return handler(db, args, docs)
        except CommandError as exc:
            return exc.reply
        except Exception as exc:  # a malformed command: answer it, keep serving
            log.exception("command %s failed", name)
            return {
                "ok": 0.0,
                "errmsg": f"{type(exc).__name__}: {exc}",
                "code": 1,
                "codeName": "InternalError",
            }

    @staticmethod
    def _only(args: dict, *known: str) -> None:
        extra = [k for k in args if k not in known]
        if extra:
            raise unsupported(f"option {extra[0]!r} of {next(iter(args))}")

    def is_master(self, db: str, args: dict, docs: dict) -> dict:
        return {
            "ismaster": True,
            "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
            "maxMessageSizeBytes": MAX_MESSAGE_SIZE,
            "maxWriteBatchSize": MAX_WRITE_BATCH_SIZE,
            "localTime": datetime.datetime.now(datetime.UTC),
            "logicalSessionTimeoutMinutes": 30,
            "minWireVersion": 0,
            "maxWireVersion": MAX_WIRE_VERSION,
            "readOnly": False,
            "ok": 1.0,
        }

    def ok(self, db: str, args: dict, docs: dict) -> dict:
        return {"ok": 1.0}

    def list_databases(self, db: str, args: dict, docs: dict) -> dict:
        self._only(args, "listDatabases")
        found = [
            {"name": n, "sizeOnDisk": self.store.size(n), "empty": False}
            for n in sorted(self.store.dbs)
        ]
        return {"databases": found, "totalSize": sum(d["sizeOnDisk"] for d in found), "ok": 1.0}

    def list_collections(self, db: str, args: dict, docs: dict) -> dict:
        self._only(args, "listCollections", "filter")
        infos = [
            {"name": n, "type": "collection", "options": {}, "info": {"readOnly": False}}
            for n in sorted(self.store.dbs.get(db, {}))
        ]
        return cursor(
            f"{db}.$cmd.listCollections", [i for i in infos if matches(i, args.get("filter"))]
        )

    def find(self, db: str, args: dict, docs: dict) -> dict:
        self._only(args, "find", "filter", "limit")
        coll = args["find"]
        found = [d for d in self.store.collection(db, coll) or [] if matches(d, args.get("filter"))]
        limit = abs(int(args.get("limit") or 0))
        return cursor(f"{db}.{coll}", found[:limit] if limit else found)

    def insert(self, db: str, args: dict, docs: dict) -> dict:
        self._only(args, "insert", "documents")
        coll = args["insert"]
        new = [
            d if "_id" in d else {"_id": ObjectId(), **d}
            for d in [*args.get("documents", []), *docs.get("documents", [])]
        ]
        self.store.collection(db, coll, create=True).extend(new)
        self.store.persist(db, coll)
        return {"n": len(new), "ok": 1.0}

    def update(self, db: str, args: dict, docs: dict) -> dict:
        """Replacements of one document (``replace_one``); no operators, upserts or multi."""
        self._only(args, "update", "updates")
        coll = args["update"]
        stored = self.store.collection(db, coll) or []
        matched = modified = 0
        for u in [*args.get("updates", []), *docs.get("updates", [])]:
            new = u.get("u") or {}
            if (
                u.get("upsert")
                or u.get("multi")
                or isinstance(new, list)
                or any(k.startswith("$") for k in new)
            ):
                raise unsupported("an update other than a replacement of one document")
            hit = next((i for i, d in enumerate(stored) if matches(d, u.get("q"))), None)
            if hit is None:
                continue
            matched += 1
            replaced = {"_id": stored[hit]["_id"], **{k: v for k, v in new.items() if k != "_id"}}
            if not same(replaced, stored[hit]):
                stored[hit] = replaced
                modified += 1
        if modified:
            self.store.persist(db, coll)
        return {"n": matched, "nModified": modified, "ok": 1.0}

    def delete(self, db: str, args: dict, docs: dict) -> dict:
        self._only(args, "delete", "deletes")
        coll = args["delete"]
        stored = self.store.collection(db, coll) or []
        removed = 0
        for d in [*args.get("deletes", []), *docs.get("deletes", [])]:
            hits = [i for i, doc in enumerate(stored) if matches(doc, d.get("q"))]
            for i in reversed(hits[:1] if d.get("limit") else hits):
                del stored[i]
                removed += 1
        if removed:
            self.store.persist(db, coll)
        return {"n": removed, "ok": 1.0}

    def drop(self, db: str, args: dict, docs: dict) -> dict:
        self._only(args, "drop")
        if not self.store.drop(db, args["drop"]):
            raise CommandError(26, "NamespaceNotFound", "ns not found")
        return {"ns": f"{db}.{args['drop']}", "ok": 1.0}


# -- wire protocol ----------------------------------------------------------------------
def parse_op_msg(body: bytes) -> tuple[int, dict, dict[str, list]]:
    (flags,) = struct.unpack_from("<I", body)
    end = len(body) - (4 if flags & MSG_CHECKSUM_PRESENT else 0)
    pos, cmd, docs = 4, None, {}
    while pos < end:
        kind = body[pos]
        (size,) = struct.unpack_from("<i", body, pos + 1)
        if kind == 0:
            cmd = bson.decode(body[pos + 1 : pos + 1 + size])
        elif kind == 1:
            name_end = body.index(b"\0", pos + 5)
            ident = body[pos + 5 : name_end].decode()
            docs[ident] = bson.decode_all(body[name_end + 1 : pos + 1 + size])
        else:
            raise ValueError(f"unknown OP_MSG section kind {kind}")
        pos += 1 + size
    if cmd is None:
        raise ValueError("OP_MSG without a body section")
    return flags, cmd, docs


def parse_op_query(body: bytes) -> tuple[str, dict]:
    name_end = body.index(b"\0", 4)
    pos = name_end + 1 + 8  # numberToSkip, numberToReturn
    (size,) = struct.unpack_from("<i", body, pos)
    query = bson.decode(body[pos : pos + size])
    return body[4:name_end].decode(), query.get("$query", query)


class Handler(socketserver.BaseRequestHandler):
    def recv(self, n: int) -> bytes | None:
        chunks = []
        while n:
            chunk = self.request.recv(min(n, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def send(self, op: int, response_to: int, payload: bytes) -> None:
        header = struct.pack("<iiii", 16 + len(payload), 0, response_to, op)
        self.request.sendall(header + payload)

    def handle(self) -> None:
        commands: Commands = self.server.commands  # type: ignore[attr-defined]
        while (header := self.recv(16)) is not None:
            length, request_id, _, op = struct.unpack("<iiii", header)
            body = self.recv(length - 16) if 16 <= length <= MAX_MESSAGE_SIZE else None
            if body is None:
                return
            if op == OP_MSG:
                flags, cmd, docs = parse_op_msg(body)
                if flags & MSG_MORE_TO_COME:
                    log.warning(
                        "%s: unacknowledged writes are not supported; closing", self.client_address
                    )
                    return
                reply = commands.run(cmd.get("$db", "admin"), cmd, docs)
                self.send(OP_MSG, request_id, struct.pack("<IB", 0, 0) + bson.encode(reply))
            elif op == OP_QUERY:  # the handshake; every command after it comes as OP_MSG
                ns, query = parse_op_query(body)
                if ns.endswith(".$cmd"):
                    reply = commands.run(ns[: -len(".$cmd")], query, {})
                else:
                    reply = unsupported("a legacy OP_QUERY read").reply
                self.send(
                    OP_REPLY, request_id, struct.pack("<iqii", 0, 0, 0, 1) + bson.encode(reply)
                )
            else:
                log.warning("%s: opcode %d is not supported; closing", self.client_address, op)
                return


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        log.warning("%s: connection error: %s", client_address, sys.exc_info()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="flops_db stand-in (not MongoDB)")
    parser.add_argument("--port", type=int, default=27017)
    parser.add_argument("--bind_ip", default="127.0.0.1")
    parser.add_argument("--bind_ip_all", action="store_true", help="listen on 0.0.0.0")
    parser.add_argument("--dbpath", default="/data/db")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    commands = Commands(Store(args.dbpath))
    address = "0.0.0.0" if args.bind_ip_all else args.bind_ip
    server = Server((address, args.port), Handler)
    server.commands = commands  # type: ignore[attr-defined]

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "flops_db STAND-IN (not MongoDB), wire version %d, listening on %s:%d, data in %s",
        MAX_WIRE_VERSION,
        address,
        args.port,
        args.dbpath,
    )
    try:
        server.serve_forever()
    finally:
        with commands.lock:  # a write in progress finishes its rename first
            server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
