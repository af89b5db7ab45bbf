#!/usr/bin/env python3
"""STAND-IN for MongoDB 3.6 (the FLOps database, flops_db). NOT MongoDB.

MongoDB is not packaged by Debian and no registry can be reached on the
offline testbed, so this small server speaks just enough of the MongoDB wire
protocol for pymongo (3.11 to 4.10) and the FLOps manager:

- handshake: OP_QUERY isMaster/hello answered with OP_REPLY, then OP_MSG;
  it reports wire versions 0..6 (MongoDB 3.6) and a standalone server;
- commands: isMaster/hello, ping, buildInfo, whatsmyuri, endSessions,
  listDatabases, listCollections, listIndexes, create, createIndexes (no-op),
  insert, find, count, aggregate ($match, $skip, $limit, $group with $sum),
  update ($set, $unset, $inc, $setOnInsert, replacement), delete, drop,
  dropDatabase, getMore/killCursors (every cursor is returned whole, id 0);
- filters: equality (also on array members and dotted paths), $eq, $ne, $gt,
  $gte, $lt, $lte, $in, $nin, $exists, $regex, $and, $or, $nor;
- any other command is answered with ok: 0 and an errmsg, like an unknown
  command on a real server.

Data lives in --dbpath (default /data/db): one directory per database, one
file of concatenated BSON documents per collection, each rewritten atomically
(temporary file, fsync, rename) on every change, so stopping, killing or
recreating the container keeps every acknowledged write.
"""

import argparse
import datetime
import logging
import os
import re
import signal
import socket
import socketserver
import struct
import sys
import tempfile
import threading
import time
import urllib.parse

import bson
from bson.int64 import Int64
from bson.objectid import ObjectId
from bson.regex import Regex

OP_REPLY = 1
OP_QUERY = 2004
OP_MSG = 2013

MSG_CHECKSUM_PRESENT = 1 << 0
MSG_MORE_TO_COME = 1 << 1
REPLY_QUERY_FAILURE = 1 << 1

MAX_BSON_OBJECT_SIZE = 16 * 1024 * 1024
MAX_MESSAGE_SIZE = 48_000_000
MAX_WRITE_BATCH_SIZE = 100_000
MIN_WIRE_VERSION = 0
MAX_WIRE_VERSION = 6  # MongoDB 3.6
VERSION = "3.6.23"

COLLECTION_SUFFIX = ".bson"
MARKER_FILE = "FLOPS_DB_STAND_IN"

log = logging.getLogger("mongod-standin")


class _Missing:
    def __repr__(self):
        return "<missing>"


MISSING = _Missing()


class CommandError(Exception):
    def __init__(self, code, code_name, errmsg):
        super().__init__(errmsg)
        self.code = code
        self.code_name = code_name
        self.errmsg = errmsg

    def reply(self):
        return {"ok": 0.0, "errmsg": self.errmsg, "code": self.code, "codeName": self.code_name}


def bad_value(msg):
    return CommandError(2, "BadValue", msg)


# --------------------------------------------------------------------------
# Query language (the small subset described above)


def get_path(doc, path):
    cur = doc
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return MISSING
    return cur


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def same_value(a, b):
    if _is_number(a) and _is_number(b):
        return a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a.keys()) == list(b.keys()) and all(same_value(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _values(actual):
    """The value itself and, for an array, its members (MongoDB's array rule)."""
    if actual is MISSING:
        return []
    if isinstance(actual, list):
        return [actual] + list(actual)
    return [actual]


def matches_eq(actual, expected):
    if isinstance(expected, (re.Pattern, Regex)):
        return matches_regex(actual, expected)
    if expected is None and actual is MISSING:
        return True
    return any(same_value(v, expected) for v in _values(actual))


def matches_regex(actual, pattern, options=""):
    if isinstance(pattern, Regex):
        pattern = pattern.try_compile()
    if isinstance(pattern, str):
        flags = 0
        for ch in options or "":
            flags |= {"i": re.I, "m": re.M, "s": re.S, "x": re.X}.get(ch, 0)
        pattern = re.compile(pattern, flags)
    return any(isinstance(v, str) and pattern.search(v) for v in _values(actual))


_TYPE_ORDER = [
    (type(None), 1),
    ((int, float), 2),
    (str, 3),
    (dict, 4),
    (list, 5),
    (bytes, 6),
    (ObjectId, 7),
    (bool, 8),
    (datetime.datetime, 9),
]


def type_rank(v):
    if v is MISSING or v is None:
        return 1
    if isinstance(v, bool):
        return 8
    for types, rank in _TYPE_ORDER:
        if isinstance(v, types):
            return rank
    return 100


def _comparable(a, b):
    return type_rank(a) == type_rank(b) and type_rank(a) in (2, 3, 6, 7, 8, 9)


def _cmp(op, actual, bound):
    for v in _values(actual):
        if not _comparable(v, bound):
            continue
        try:
            if op == "$gt" and v > bound:
                return True
            if op == "$gte" and v >= bound:
                return True
            if op == "$lt" and v < bound:
                return True
            if op == "$lte" and v <= bound:
                return True
        except TypeError:
            continue
    return False


def is_operator_doc(value):
    return isinstance(value, dict) and value and all(str(k).startswith("$") for k in value)


def matches_operators(actual, ops):
    for op, arg in ops.items():
        if op == "$eq":
            ok = matches_eq(actual, arg)
        elif op == "$ne":
            ok = not matches_eq(actual, arg)
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            ok = _cmp(op, actual, arg)
        elif op in ("$in", "$nin"):
            if not isinstance(arg, list):
                raise bad_value(f"{op} needs an array")
            found = any(matches_eq(actual, x) for x in arg)
            ok = found if op == "$in" else not found
        elif op == "$exists":
            ok = (actual is not MISSING) == bool(arg)
        elif op == "$regex":
            ok = matches_regex(actual, arg, ops.get("$options", ""))
        elif op == "$options":
            ok = True
        else:
            raise bad_value(f"unknown operator: {op}")
        if not ok:
            return False
    return True


def matches(doc, flt):
    if not flt:
        return True
    if not isinstance(flt, dict):
        raise bad_value("filter must be an object")
    for key, expected in flt.items():
        if key in ("$and", "$or", "$nor"):
            if not isinstance(expected, list) or not expected:
                raise bad_value(f"{key} must be a nonempty array")
            results = [matches(doc, sub) for sub in expected]
            ok = all(results) if key == "$and" else any(results)
            if key == "$nor":
                ok = not any(results)
            if not ok:
                return False
        elif key == "$comment":
            continue
        elif key.startswith("$"):
            raise bad_value(f"unknown top level operator: {key}")
        else:
            actual = get_path(doc, key)
            if is_operator_doc(expected):
                if not matches_operators(actual, expected):
                    return False
            elif not matches_eq(actual, expected):
                return False
    return True


def project(doc, projection):
    if not projection:
        return doc
    spec = {k: v for k, v in projection.items() if k != "_id"}
    include_id = bool(projection.get("_id", 1))
    if spec and all(bool(v) for v in spec.values()):
        out = {}
        if include_id and "_id" in doc:
            out["_id"] = doc["_id"]
        for k in doc:
            if k in spec:
                out[k] = doc[k]
        return out
    if spec and any(bool(v) for v in spec.values()):
        raise bad_value("projection cannot mix inclusion and exclusion")
    return {k: v for k, v in doc.items() if k not in spec and (include_id or k != "_id")}


def sort_docs(docs, sort):
    if not sort:
        return docs
    items = list(sort.items()) if isinstance(sort, dict) else list(sort)
    out = list(docs)
    for key, direction in reversed(items):
        def sort_key(d, key=key):
            v = get_path(d, key)
            rank = type_rank(v)
            if rank in (2, 3, 6, 7, 8, 9):
                return (rank, v)
            return (rank, 0)

        try:
            out.sort(key=sort_key, reverse=(direction == -1))
        except TypeError:
            out.sort(key=lambda d, key=key: type_rank(get_path(d, key)), reverse=(direction == -1))
    return out


def set_path(doc, path, value):
    parts = path.split(".")
    cur = doc
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = value


def unset_path(doc, path):
    parts = path.split(".")
    cur = doc
    for part in parts[:-1]:
        cur = cur.get(part)
        if not isinstance(cur, dict):
            return
    cur.pop(parts[-1], None)


def deep_copy(value):
    if isinstance(value, dict):
        return {k: deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep_copy(v) for v in value]
    return value


def apply_update(doc, spec, inserting):
    new = deep_copy(doc)
    for op, fields in spec.items():
        if not isinstance(fields, dict):
            raise CommandError(9, "FailedToParse", f"Modifiers operate on fields but we found {op}")
        for path, value in fields.items():
            if path == "_id" or path.startswith("_id."):
                if op != "$setOnInsert" or not inserting:
                    if not (op == "$set" and same_value(get_path(new, "_id"), value)):
                        raise CommandError(66, "ImmutableField", "Performing an update on the path '_id' would modify the immutable field '_id'")
            if op == "$set":
                set_path(new, path, deep_copy(value))
            elif op == "$setOnInsert":
                if inserting:
                    set_path(new, path, deep_copy(value))
            elif op == "$unset":
                unset_path(new, path)
            elif op == "$inc":
                current = get_path(new, path)
                if current is MISSING:
                    current = 0
                if not (_is_number(current) and _is_number(value)):
                    raise CommandError(14, "TypeMismatch", f"Cannot apply $inc to a value of non-numeric type at '{path}'")
                set_path(new, path, current + value)
            else:
                raise CommandError(9, "FailedToParse", f"Unknown modifier: {op}")
    return new


def equality_fields(flt):
    """The plain equality parts of a filter, the seed of an upserted document."""
    seed = {}
    for key, value in (flt or {}).items():
        if key.startswith("$"):
            if key == "$and" and isinstance(value, list):
                for sub in value:
                    seed.update(equality_fields(sub))
            continue
        if is_operator_doc(value):
            if "$eq" in value:
                set_path(seed, key, deep_copy(value["$eq"]))
            continue
        set_path(seed, key, deep_copy(value))
    return seed


# --------------------------------------------------------------------------
# Storage


def encode_name(name):
    enc = urllib.parse.quote(name, safe="")
    if enc.startswith("."):
        enc = "%2E" + enc[1:]
    return enc


def validate_db_name(name):
    if not isinstance(name, str) or not name or len(name) >= 64 or any(c in name for c in '/\\. "$\0'):
        raise CommandError(73, "InvalidNamespace", f"Invalid database name: '{name}'")


def validate_coll_name(db, name):
    if not isinstance(name, str) or not name or "$" in name or "\0" in name or name.startswith("."):
        raise CommandError(73, "InvalidNamespace", f"Invalid collection name: '{db}.{name}'")


class Store:
    def __init__(self, root):
        self.root = root
        self.lock = threading.RLock()
        self.dbs = {}  # db name -> {collection name -> [documents]}
        self._load()

    def _load(self):
        os.makedirs(self.root, exist_ok=True)
        entries = os.listdir(self.root)
        real = [e for e in entries if e.startswith("WiredTiger") or e in ("mongod.lock", "storage.bson")]
        if real:
            sys.exit(f"mongod-standin: {self.root} holds files of a real MongoDB ({', '.join(sorted(real))}); refusing to use it")
        marker = os.path.join(self.root, MARKER_FILE)
        if not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write("Data of the flops_db stand-in (not MongoDB): one directory per database,\n"
                        "one file of concatenated BSON documents per collection.\n")
        for entry in sorted(entries):
            path = os.path.join(self.root, entry)
            if not os.path.isdir(path) or entry.startswith("."):
                continue
            db = urllib.parse.unquote(entry)
            colls = {}
            for fname in sorted(os.listdir(path)):
                fpath = os.path.join(path, fname)
                if fname.startswith(".tmp-"):
                    os.unlink(fpath)  # an interrupted write; the old file is intact
                    continue
                if not fname.endswith(COLLECTION_SUFFIX):
                    continue
                with open(fpath, "rb") as f:
                    colls[urllib.parse.unquote(fname[: -len(COLLECTION_SUFFIX)])] = bson.decode_all(f.read())
            if colls:
                self.dbs[db] = colls
        total = sum(len(docs) for colls in self.dbs.values() for docs in colls.values())
        log.info("loaded %d databases, %d documents from %s", len(self.dbs), total, self.root)

    def _db_dir(self, db):
        return os.path.join(self.root, encode_name(db))

    def _coll_file(self, db, coll):
        return os.path.join(self._db_dir(db), encode_name(coll) + COLLECTION_SUFFIX)

    @staticmethod
    def _fsync_dir(path):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def persist(self, db, coll):
        dirpath = self._db_dir(db)
        os.makedirs(dirpath, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dirpath)
        try:
            with os.fdopen(fd, "wb") as f:
                for doc in self.dbs[db][coll]:
                    f.write(bson.encode(doc))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._coll_file(db, coll))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self._fsync_dir(dirpath)

    def collection(self, db, coll, create=False):
        colls = self.dbs.get(db)
        if colls is None:
            if not create:
                return None
            validate_db_name(db)
            colls = self.dbs[db] = {}
        docs = colls.get(coll)
        if docs is None and create:
            validate_coll_name(db, coll)
            docs = colls[coll] = []
            self.persist(db, coll)
        return docs

    def drop_collection(self, db, coll):
        colls = self.dbs.get(db)
        if colls is None or coll not in colls:
            return False
        del colls[coll]
        os.unlink(self._coll_file(db, coll))
        if not colls:
            del self.dbs[db]
            self._remove_db_dir(db)
        else:
            self._fsync_dir(self._db_dir(db))
        return True

    def _remove_db_dir(self, db):
        dirpath = self._db_dir(db)
        if os.path.isdir(dirpath):
            for fname in os.listdir(dirpath):
                os.unlink(os.path.join(dirpath, fname))
            os.rmdir(dirpath)
            self._fsync_dir(self.root)

    def drop_database(self, db):
        existed = db in self.dbs
        self.dbs.pop(db, None)
        self._remove_db_dir(db)
        return existed

    def size_on_disk(self, db):
        dirpath = self._db_dir(db)
        try:
            return float(sum(os.path.getsize(os.path.join(dirpath, f)) for f in os.listdir(dirpath)))
        except OSError:
            return 0.0


# --------------------------------------------------------------------------
# Commands


def cursor_reply(ns, docs):
    return {"cursor": {"firstBatch": docs, "id": Int64(0), "ns": ns}, "ok": 1.0}


class Commands:
    def __init__(self, store, port):
        self.store = store
        self.port = port
        self.started = time.time()
        self.connection_ids = 0
        self.table = {
            "isMaster": self.is_master,
            "ismaster": self.is_master,
            "hello": self.hello,
            "ping": self.ok,
            "endSessions": self.ok,
            "buildInfo": self.build_info,
            "buildinfo": self.build_info,
            "whatsmyuri": self.whatsmyuri,
            "listDatabases": self.list_databases,
            "listCollections": self.list_collections,
            "listIndexes": self.list_indexes,
            "create": self.create,
            "createIndexes": self.create_indexes,
            "insert": self.insert,
            "find": self.find,
            "count": self.count,
            "aggregate": self.aggregate,
            "update": self.update,
            "delete": self.delete,
            "drop": self.drop,
            "dropDatabase": self.drop_database,
            "getMore": self.get_more,
            "killCursors": self.kill_cursors,
        }

    def run(self, db, cmd, sections, peer):
        if not cmd:
            return CommandError(59, "CommandNotFound", "no command given").reply()
        name = next(iter(cmd))
        handler = self.table.get(name)
        if handler is None:
            return CommandError(59, "CommandNotFound", f"no such command: '{name}'").reply()
        try:
            with self.store.lock:
                return handler(db, cmd, sections, peer)
        except CommandError as e:
            return e.reply()
        except Exception as e:  # keep serving; tell the client what broke
            log.exception("command %s failed", name)
            return {"ok": 0.0, "errmsg": f"{type(e).__name__}: {e}", "code": 1, "codeName": "InternalError"}

    # -- handshake and server info

    def _hello_fields(self):
        return {
            "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
            "maxMessageSizeBytes": MAX_MESSAGE_SIZE,
            "maxWriteBatchSize": MAX_WRITE_BATCH_SIZE,
            "localTime": datetime.datetime.now(datetime.timezone.utc),
            "logicalSessionTimeoutMinutes": 30,
            "minWireVersion": MIN_WIRE_VERSION,
            "maxWireVersion": MAX_WIRE_VERSION,
            "readOnly": False,
            "ok": 1.0,
        }

    def is_master(self, db, cmd, sections, peer):
        return {"ismaster": True, **self._hello_fields()}

    def hello(self, db, cmd, sections, peer):
        return {"isWritablePrimary": True, "ismaster": True, **self._hello_fields()}

    def ok(self, db, cmd, sections, peer):
        return {"ok": 1.0}

    def build_info(self, db, cmd, sections, peer):
        return {
            "version": VERSION,
            "gitVersion": "flops-db-stand-in",
            "versionArray": [3, 6, 23, 0],
            "bits": 64,
            "debug": False,
            "maxBsonObjectSize": MAX_BSON_OBJECT_SIZE,
            "storageEngines": ["flops-db-stand-in"],
            "ok": 1.0,
        }

    def whatsmyuri(self, db, cmd, sections, peer):
        return {"you": f"{peer[0]}:{peer[1]}", "ok": 1.0}

    # -- namespaces

    def list_databases(self, db, cmd, sections, peer):
        out = []
        for name in sorted(self.store.dbs):
            size = self.store.size_on_disk(name)
            info = {"name": name, "sizeOnDisk": size, "empty": size == 0}
            if matches(info, cmd.get("filter")):
                out.append({"name": name} if cmd.get("nameOnly") else info)
        reply = {"databases": out, "ok": 1.0}
        if not cmd.get("nameOnly"):
            reply["totalSize"] = float(sum(d["sizeOnDisk"] for d in out))
        return {k: reply[k] for k in ("databases", "totalSize", "ok") if k in reply}

    def list_collections(self, db, cmd, sections, peer):
        out = []
        for name in sorted(self.store.dbs.get(db, {})):
            info = {
                "name": name,
                "type": "collection",
                "options": {},
                "info": {"readOnly": False},
                "idIndex": {"v": 2, "key": {"_id": 1}, "name": "_id_", "ns": f"{db}.{name}"},
            }
            if matches(info, cmd.get("filter")):
                out.append({"name": name, "type": "collection"} if cmd.get("nameOnly") else info)
        return cursor_reply(f"{db}.$cmd.listCollections", out)

    def list_indexes(self, db, cmd, sections, peer):
        coll = cmd["listIndexes"]
        if self.store.collection(db, coll) is None:
            raise CommandError(26, "NamespaceNotFound", f"ns does not exist: {db}.{coll}")
        return cursor_reply(f"{db}.$cmd.listIndexes.{coll}", [{"v": 2, "key": {"_id": 1}, "name": "_id_", "ns": f"{db}.{coll}"}])

    def create(self, db, cmd, sections, peer):
        coll = cmd["create"]
        if self.store.collection(db, coll) is not None:
            raise CommandError(48, "NamespaceExists", "collection already exists")
        self.store.collection(db, coll, create=True)
        return {"ok": 1.0}

    def create_indexes(self, db, cmd, sections, peer):
        coll = cmd["createIndexes"]
        created = self.store.collection(db, coll) is None
        self.store.collection(db, coll, create=True)
        return {
            "createdCollectionAutomatically": created,
            "numIndexesBefore": 1,
            "numIndexesAfter": 1,
            "note": "the flops_db stand-in does not maintain secondary indexes",
            "ok": 1.0,
        }

    def drop(self, db, cmd, sections, peer):
        coll = cmd["drop"]
        if not self.store.drop_collection(db, coll):
            raise CommandError(26, "NamespaceNotFound", "ns not found")
        return {"ns": f"{db}.{coll}", "nIndexesWas": 1, "ok": 1.0}

    def drop_database(self, db, cmd, sections, peer):
        if self.store.drop_database(db):
            return {"dropped": db, "ok": 1.0}
        return {"ok": 1.0}

    # -- reads

    def _select(self, db, coll, flt):
        docs = self.store.collection(db, coll) or []
        return [d for d in docs if matches(d, flt)]

    def find(self, db, cmd, sections, peer):
        coll = cmd["find"]
        docs = sort_docs(self._select(db, coll, cmd.get("filter")), cmd.get("sort"))
        skip = int(cmd.get("skip", 0) or 0)
        limit = abs(int(cmd.get("limit", 0) or 0))
        docs = docs[skip:]
        if limit:
            docs = docs[:limit]
        docs = [project(d, cmd.get("projection")) for d in docs]
        return cursor_reply(f"{db}.{coll}", docs)

    def count(self, db, cmd, sections, peer):
        docs = self._select(db, cmd["count"], cmd.get("query"))
        skip = int(cmd.get("skip", 0) or 0)
        limit = abs(int(cmd.get("limit", 0) or 0))
        n = max(len(docs) - skip, 0)
        if limit:
            n = min(n, limit)
        return {"n": n, "ok": 1.0}

    def aggregate(self, db, cmd, sections, peer):
        coll = cmd["aggregate"]
        if not isinstance(coll, str):
            raise bad_value("aggregate on a database is not supported by the flops_db stand-in")
        docs = list(self.store.collection(db, coll) or [])
        for stage in cmd.get("pipeline", []):
            (op, arg), = stage.items()
            if op == "$match":
                docs = [d for d in docs if matches(d, arg)]
            elif op == "$skip":
                docs = docs[int(arg):]
            elif op == "$limit":
                docs = docs[: int(arg)]
            elif op == "$group":
                docs = self._group(docs, arg)
            elif op == "$sort":
                docs = sort_docs(docs, arg)
            elif op == "$project":
                docs = [project(d, arg) for d in docs]
            else:
                raise CommandError(40324, "Location40324", f"Unrecognized pipeline stage name: '{op}' (flops_db stand-in)")
        return cursor_reply(f"{db}.{coll}", docs)

    @staticmethod
    def _group(docs, spec):
        key = spec.get("_id")
        if isinstance(key, str) and key.startswith("$"):
            raise bad_value("$group by field is not supported by the flops_db stand-in")
        if not docs:
            return []
        out = {"_id": key}
        for field, acc in spec.items():
            if field == "_id":
                continue
            if not (isinstance(acc, dict) and list(acc) == ["$sum"]):
                raise bad_value("only {$sum: N} accumulators are supported by the flops_db stand-in")
            arg = acc["$sum"]
            if isinstance(arg, str) and arg.startswith("$"):
                out[field] = sum(v for v in (get_path(d, arg[1:]) for d in docs) if _is_number(v))
            else:
                out[field] = arg * len(docs)
        return [out]

    def get_more(self, db, cmd, sections, peer):
        raise CommandError(43, "CursorNotFound", f"cursor id {cmd['getMore']} not found")

    def kill_cursors(self, db, cmd, sections, peer):
        ids = cmd.get("cursors", [])
        return {"cursorsKilled": [], "cursorsNotFound": ids, "cursorsAlive": [], "cursorsUnknown": [], "ok": 1.0}

    # -- writes

    @staticmethod
    def _batch(cmd, sections, field):
        return list(cmd.get(field, [])) + list(sections.get(field, []))

    def insert(self, db, cmd, sections, peer):
        coll = cmd["insert"]
        documents = self._batch(cmd, sections, "documents")
        ordered = cmd.get("ordered", True)
        docs = self.store.collection(db, coll, create=True)
        ids = {repr(d.get("_id")) for d in docs}
        n = 0
        errors = []
        for index, doc in enumerate(documents):
            if "_id" not in doc:
                doc = {"_id": ObjectId(), **doc}
            key = repr(doc["_id"])
            if key in ids and any(same_value(d.get("_id"), doc["_id"]) for d in docs):
                errors.append({
                    "index": index,
                    "code": 11000,
                    "errmsg": f"E11000 duplicate key error collection: {db}.{coll} index: _id_ dup key: {{ : {doc['_id']!r} }}",
                })
                if ordered:
                    break
                continue
            docs.append(doc)
            ids.add(key)
            n += 1
        if n:
            self.store.persist(db, coll)
        reply = {"n": n, "ok": 1.0}
        if errors:
            reply["writeErrors"] = errors
        return reply

    def update(self, db, cmd, sections, peer):
        coll = cmd["update"]
        updates = self._batch(cmd, sections, "updates")
        docs = self.store.collection(db, coll, create=True)
        n = modified = 0
        upserted = []
        errors = []
        changed = False
        for index, u in enumerate(updates):
            try:
                q, spec = u.get("q", {}), u.get("u", {})
                if isinstance(spec, list):
                    raise bad_value("pipeline updates are not supported by the flops_db stand-in")
                operator = bool(spec) and all(k.startswith("$") for k in spec)
                if not operator and u.get("multi"):
                    raise CommandError(9, "FailedToParse", "multi update only works with $ operators")
                hits = [i for i, d in enumerate(docs) if matches(d, q)]
                if not u.get("multi"):
                    hits = hits[:1]
                for i in hits:
                    old = docs[i]
                    if operator:
                        new = apply_update(old, spec, inserting=False)
                    else:
                        if "_id" in spec and not same_value(spec["_id"], old["_id"]):
                            raise CommandError(66, "ImmutableField", "the (immutable) field '_id' was found to have been altered")
                        new = {"_id": old["_id"], **{k: v for k, v in spec.items() if k != "_id"}}
                    n += 1
                    if not same_value(new, old):
                        docs[i] = new
                        modified += 1
                        changed = True
                if not hits and u.get("upsert"):
                    if operator:
                        new = apply_update(equality_fields(q), spec, inserting=True)
                    else:
                        new = deep_copy(spec)
                        seed_id = equality_fields(q).get("_id", MISSING)
                        if "_id" not in new and seed_id is not MISSING:
                            new["_id"] = seed_id
                    if "_id" not in new:
                        new = {"_id": ObjectId(), **new}
                    docs.append(new)
                    changed = True
                    n += 1
                    upserted.append({"index": index, "_id": new["_id"]})
            except CommandError as e:
                errors.append({"index": index, "code": e.code, "errmsg": e.errmsg})
                if cmd.get("ordered", True):
                    break
        if changed:
            self.store.persist(db, coll)
        reply = {"n": n, "nModified": modified, "ok": 1.0}
        if upserted:
            reply["upserted"] = upserted
        if errors:
            reply["writeErrors"] = errors
        return reply

    def delete(self, db, cmd, sections, peer):
        coll = cmd["delete"]
        deletes = self._batch(cmd, sections, "deletes")
        docs = self.store.collection(db, coll)
        n = 0
        if docs:
            for d in deletes:
                hits = [i for i, doc in enumerate(docs) if matches(doc, d.get("q", {}))]
                if d.get("limit", 0):
                    hits = hits[:1]
                for i in reversed(hits):
                    del docs[i]
                n += len(hits)
            if n:
                self.store.persist(db, coll)
        return {"n": n, "ok": 1.0}


# --------------------------------------------------------------------------
# Wire protocol


def read_cstring(data, pos):
    end = data.index(b"\0", pos)
    return data[pos:end].decode("utf-8"), end + 1


def parse_op_msg(body):
    flags, = struct.unpack_from("<I", body, 0)
    end = len(body) - (4 if flags & MSG_CHECKSUM_PRESENT else 0)
    pos = 4
    cmd = None
    sections = {}
    while pos < end:
        kind = body[pos]
        pos += 1
        if kind == 0:
            size, = struct.unpack_from("<i", body, pos)
            cmd = bson.decode(body[pos:pos + size])
            pos += size
        elif kind == 1:
            size, = struct.unpack_from("<i", body, pos)
            section_end = pos + size
            ident, p = read_cstring(body, pos + 4)
            sections[ident] = bson.decode_all(body[p:section_end])
            pos = section_end
        else:
            raise ValueError(f"unknown OP_MSG section kind {kind}")
    if cmd is None:
        raise ValueError("OP_MSG without a body section")
    return flags, cmd, sections


def parse_op_query(body):
    pos = 4  # flags
    full_name, pos = read_cstring(body, pos)
    pos += 8  # numberToSkip, numberToReturn
    size, = struct.unpack_from("<i", body, pos)
    query = bson.decode(body[pos:pos + size])
    return full_name, query


class Handler(socketserver.BaseRequestHandler):
    def setup(self):
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.request_ids += 1

    def _recv_exact(self, n):
        chunks = []
        while n:
            chunk = self.request.recv(min(n, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _send(self, op_code, response_to, payload):
        self.server.request_ids += 1
        header = struct.pack("<iiii", 16 + len(payload), self.server.request_ids & 0x7FFFFFFF, response_to, op_code)
        self.request.sendall(header + payload)

    def handle(self):
        commands = self.server.commands
        peer = self.client_address
        while True:
            header = self._recv_exact(16)
            if header is None:
                return
            length, request_id, _, op_code = struct.unpack("<iiii", header)
            if length < 16 or length > MAX_MESSAGE_SIZE:
                log.warning("%s: bad message length %d, closing", peer, length)
                return
            body = self._recv_exact(length - 16)
            if body is None:
                return
            if op_code == OP_MSG:
                flags, cmd, sections = parse_op_msg(body)
                db = cmd.pop("$db", "admin")
                for key in ("lsid", "$readPreference", "$clusterTime", "txnNumber", "autocommit", "startTransaction"):
                    cmd.pop(key, None)
                reply = commands.run(db, cmd, sections, peer)
                log.debug("%s %s.%s -> ok=%s", peer, db, next(iter(cmd), "?"), reply.get("ok"))
                if flags & MSG_MORE_TO_COME:
                    continue  # unacknowledged write (w: 0): no answer
                self._send(OP_MSG, request_id, struct.pack("<I", 0) + b"\0" + bson.encode(reply))
            elif op_code == OP_QUERY:
                full_name, query = parse_op_query(body)
                if full_name.endswith(".$cmd"):
                    if "$query" in query:
                        query = query["$query"]
                    elif "query" in query and len(query) > 1 and all(k == "query" or k.startswith("$") for k in query):
                        query = query["query"]
                    reply, flags = commands.run(full_name[:-5], dict(query), {}, peer), 0
                else:
                    reply = {"$err": "legacy OP_QUERY reads are not supported by the flops_db stand-in", "code": 5739101}
                    flags = REPLY_QUERY_FAILURE
                doc = bson.encode(reply)
                self._send(OP_REPLY, request_id, struct.pack("<iqii", flags, 0, 0, 1) + doc)
            else:
                log.warning("%s: unsupported opcode %d, closing", peer, op_code)
                return


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_ids = 0

    def handle_error(self, request, client_address):
        log.warning("%s: connection error: %s", client_address, sys.exc_info()[1])


def main(argv=None):
    parser = argparse.ArgumentParser(description="flops_db stand-in (a tiny subset of MongoDB 3.6)")
    parser.add_argument("--port", type=int, default=27017)
    parser.add_argument("--bind_ip", default="127.0.0.1")
    parser.add_argument("--bind_ip_all", action="store_true", help="listen on 0.0.0.0")
    parser.add_argument("--dbpath", default="/data/db")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stdout,
    )
    store = Store(args.dbpath)
    address = "0.0.0.0" if args.bind_ip_all else args.bind_ip
    server = Server((address, args.port), Handler)
    server.commands = Commands(store, args.port)

    def stop(signum, frame):
        log.info("signal %d: shutting down", signum)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("flops_db STAND-IN (not MongoDB), wire versions %d-%d, listening on %s:%d, data in %s",
             MIN_WIRE_VERSION, MAX_WIRE_VERSION, address, args.port, args.dbpath)
    try:
        server.serve_forever()
    finally:
        # The store lock is held while a command writes: wait for it, so a
        # stop never cuts a rename short (files are replaced atomically anyway).
        with store.lock:
            server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
