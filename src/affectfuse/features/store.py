"""The feature store: one feature set per (video, extractor key), a manifest, atomic writes.

Layout: a folder holding one SQLite database, ``features.sqlite`` (stdlib, transactional, one file).

* ``features``  — per (key, video_id): ``values (T, D)`` as raw float32/float16 bytes, ``times``, ``valid``,
  optional ``boxes`` (source-frame pixels), face-detector ``scores`` and frame ``indices``, free-form ``meta``;
* ``manifest``  — per (video_id, key): ``ok`` / ``failed``, the error message, the source file, warnings,
  library versions and the time of the write;
* ``extractors`` — per key: the extractor's identity (name, parameters, sampling, dimension, modality).

Why SQLite: a write is one transaction, so a killed run never leaves a half-written entry (the entry and its
manifest row land together or not at all); reading thousands of videos for training is one open file and
one query (:meth:`FeatureStore.load`), not one small file per sample per epoch; nothing to install.
Measured here: see ``benchmarks/store.py``.

Example:
    >>> store = FeatureStore("features/")
    >>> fs = store.get("video_001", store.keys()[0])
    >>> fs.values.shape, fs.valid.mean()
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from affectfuse._versions import versions
from affectfuse.errors import StoreError
from affectfuse.types import FeatureSet

__all__ = ["FeatureStore", "ManifestRecord"]

_VERSIONS_JSON: str | None = None


def _versions_json() -> str:
    global _VERSIONS_JSON
    if _VERSIONS_JSON is None:
        _VERSIONS_JSON = json.dumps(versions())
    return _VERSIONS_JSON


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS extractors (
    key TEXT PRIMARY KEY, name TEXT NOT NULL, modality TEXT, dim INTEGER, identity TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS features (
    key TEXT NOT NULL, video_id TEXT NOT NULL, n INTEGER NOT NULL, dim INTEGER NOT NULL, dtype TEXT NOT NULL,
    vals BLOB NOT NULL, times BLOB NOT NULL, valid BLOB NOT NULL, boxes BLOB, indices BLOB, meta TEXT,
    scores BLOB, PRIMARY KEY (key, video_id));
CREATE TABLE IF NOT EXISTS manifest (
    video_id TEXT NOT NULL, key TEXT NOT NULL, status TEXT NOT NULL, error TEXT, source TEXT,
    warnings TEXT, versions TEXT, updated REAL NOT NULL, PRIMARY KEY (video_id, key));
"""
FORMAT_VERSION = "1"
_TABLES = {"meta", "extractors", "features", "manifest"}

#: what a failed write or open of the database means and what to do: (SQLite error names, errno codes, words of
#: SQLite's message, reason, advice, whether the folder itself may be the cause)
_CAUSES = (
    (("SQLITE_FULL",), (errno.ENOSPC, errno.EDQUOT), ("disk is full",),
     "no space left on device", "free space and run again", False),
    (("SQLITE_READONLY",), (errno.EROFS,), ("readonly",),
     "the folder or its database is read-only", "make it writable or use another folder, then run again", True),
    (("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH"), (errno.EACCES, errno.EPERM), ("unable to open",),
     "the database cannot be opened for writing (no permission, or the folder is gone)",
     "check that the folder exists and may be written to, then run again", True),
    (("SQLITE_BUSY", "SQLITE_LOCKED"), (), ("locked",),
     "the database is locked by another process", "let the other process finish (or stop it) and run again",
     False),
    (("SQLITE_CORRUPT", "SQLITE_NOTADB"), (), ("malformed", "not a database"),
     "the database file is damaged", "restore it from a copy or extract into a new folder", False),
    (("SQLITE_IOERR",), (errno.EIO,), ("disk i/o error",),
     "the disk reported an I/O error", "check the disk (full? removed? network share gone?) and run again", False),
    ((), (errno.ENOTDIR, errno.EEXIST), (),
     "a part of the path is a file, not a folder", "give the path of a folder", False),
)

#: errors of a write or an open that are the disk's or the database file's, not the caller's (an IntegrityError
#: or a ProgrammingError is a bug and stays what it is)
_DISK_ERRORS = (sqlite3.OperationalError, OSError)


def _is_disk_error(exc: BaseException) -> bool:
    return isinstance(exc, _DISK_ERRORS) or type(exc) is sqlite3.DatabaseError  # "malformed", "not a database"


def _unwritable(folder: Path) -> str | None:
    """Why ``folder`` (or the nearest existing folder above it) cannot be written, or None when it can."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            return "the folder is on a read-only file system"
    except (OSError, AttributeError):  # statvfs: not on Windows
        pass
    if not os.access(probe, os.W_OK):
        return "no permission to write to the folder"
    return None


def _store_error(folder: Path, exc: BaseException, *, opening: bool = False) -> StoreError:
    """The :class:`StoreError` for a failed write (or open) of the store in ``folder``, caused by ``exc``."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    code = getattr(exc, "errno", None)
    text = str(exc).lower()
    reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
    advice = "run again"
    for names, codes, words, why, what, folder_may_be_it in _CAUSES:
        if any(name.startswith(n) for n in names) or code in codes or any(w in text for w in words):
            reason, advice = why, what
            why_folder = _unwritable(folder) if folder_may_be_it else None
            if why_folder:  # say which it is: a read-only disk, or permissions
                reason, advice = why_folder, "make it writable or use another folder, then run again"
            break
    if isinstance(exc, sqlite3.Error):
        detail = f"sqlite: {exc}"
    elif isinstance(exc, OSError) and exc.strerror:
        detail = f"{exc.filename}: {exc.strerror}" if exc.filename is not None else exc.strerror
    else:
        detail = str(exc)
    if opening:
        msg = f"{reason} while opening the feature store {folder}/ ({detail}): {advice}"
    else:
        msg = f"{reason} while writing to {folder}/ ({detail}): {advice}; entries already written are intact"
    return StoreError(msg, path=folder, reason=reason)


@dataclass(frozen=True)
class ManifestRecord:
    """One manifest row.

    Attributes:
        video_id: the video.
        key: the extractor key.
        status: ``"ok"`` or ``"failed"``.
        error: why it failed (names the file and the problem), or None.
        source: the media file it came from.
        warnings: remarks on a successful entry (e.g. "no audio track: all rows invalid").
        versions: library versions at write time.
        updated: Unix time of the write.
    """

    video_id: str
    key: str
    status: str
    error: str | None
    source: str | None
    warnings: list[str]
    versions: dict[str, str]
    updated: float


class FeatureStore:
    """Keyed, atomic storage of :class:`~affectfuse.types.FeatureSet` objects.

    Args:
        path: the store folder; an existing store unless ``create=True``.
        dtype: ``"float32"`` or ``"float16"``; values are stored in this type (float16 halves the size;
            values come back as stored).
        create: create the folder and database when missing (what writers ask for: ``extract``,
            ``import-features``); False (the default) refuses a folder that holds no store, so a misspelt path
            is an error, not a new empty store.

    The connection is opened lazily per process, so a store object can be handed to DataLoader workers.

    Raises:
        StoreError: (any write, and opening) the disk or the database refuses: full, read-only, no permission,
            locked, damaged. The message names the folder and what to do; the failed write is rolled back, so
            every entry written before it is intact. ``affectfuse store verify STORE`` checks a store entry by entry.
    """

    FILENAME = "features.sqlite"

    def __init__(self, path: str | Path, *, dtype: str = "float32", create: bool = False) -> None:
        if dtype not in ("float32", "float16"):
            raise ValueError(f"FeatureStore dtype must be 'float32' or 'float16', got {dtype!r}")
        self.path = Path(path)
        self.dtype = dtype
        db = self.path / self.FILENAME
        if not db.exists():
            if self.path.exists() and not self.path.is_dir():
                raise NotADirectoryError(f"{self.path}: a feature store is a folder, this is a file")
            if not create:
                raise FileNotFoundError(f"{self.path}: no feature store here (missing {self.FILENAME}); check the "
                                        f"path, or make one with `affectfuse extract ... --out {self.path}` "
                                        f"(FeatureStore(path, create=True))")
        self._conn_pid: int | None = None
        self._conn_obj: sqlite3.Connection | None = None
        try:
            if not db.exists():
                self.path.mkdir(parents=True, exist_ok=True)
            tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            fmt = self._format_version() if "meta" in tables else None
            if fmt is None or not _TABLES <= tables:  # a new or older store: create what is missing (idempotent)
                self._conn.executescript(_SCHEMA)  # executescript commits by itself
                with self._tx(opening=True) as c:
                    c.execute("INSERT OR IGNORE INTO meta VALUES ('format_version', ?)", (FORMAT_VERSION,))
                fmt = self._format_version()
            cols = {r[1] for r in self._conn.execute("PRAGMA table_info(features)")}
            if "scores" not in cols:  # a store written before face scores were kept: add the (nullable) column
                self._conn.execute("ALTER TABLE features ADD COLUMN scores BLOB")
        except StoreError:
            self.close()
            raise
        except Exception as e:
            self.close()
            if _is_disk_error(e):
                raise _store_error(self.path, e, opening=True) from e
            raise
        if fmt != FORMAT_VERSION:
            raise RuntimeError(f"{db}: store format {fmt}, this affectfuse reads format {FORMAT_VERSION}")

    def _format_version(self) -> str | None:
        """The store's format version, or None where the ``meta`` table has no such row yet.

        Reading first (and writing only what is missing) lets a store on a read-only disk be read.
        """
        row = self._conn.execute("SELECT v FROM meta WHERE k='format_version'").fetchone()
        return None if row is None else row[0]

    # -- connection --------------------------------------------------------------------------
    @property
    def _conn(self) -> sqlite3.Connection:
        if self._conn_obj is None or self._conn_pid != os.getpid():
            try:
                conn = sqlite3.connect(self.path / self.FILENAME, timeout=60.0, isolation_level=None)
            except Exception as e:
                if _is_disk_error(e):
                    raise _store_error(self.path, e, opening=True) from e
                raise
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.OperationalError as e:
                # a read-only database (or disk) cannot switch to WAL; reading still works. Anything else
                # (full, no permission, damaged) is the open's failure.
                if "readonly" not in str(e).lower():
                    conn.close()
                    raise _store_error(self.path, e, opening=True) from e
            self._conn_obj, self._conn_pid = conn, os.getpid()
        return self._conn_obj

    def _tx(self, *, opening: bool = False):
        """A write transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``; ``ROLLBACK`` on any error).

        A write the disk or the database refuses (full, read-only, no permission, locked, damaged) raises
        :class:`~affectfuse.errors.StoreError`, after the rollback: what was committed before stays intact.
        """
        store = self

        class _Tx:
            def __enter__(self_inner):
                try:
                    store._conn.execute("BEGIN IMMEDIATE")
                except Exception as e:
                    if _is_disk_error(e):
                        raise _store_error(store.path, e, opening=opening) from e
                    raise
                return store._conn

            def __exit__(self_inner, et, ev, tb):
                conn = store._conn
                if et is None:
                    try:
                        conn.execute("COMMIT")
                        return False
                    except Exception as e:  # e.g. the disk filled up while the WAL was written
                        ev = e
                # SQLite rolls a transaction back by itself on some errors (SQLITE_FULL): roll back what is left
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                if ev is not None and _is_disk_error(ev):
                    raise _store_error(store.path, ev, opening=opening) from ev
                if et is None:
                    raise ev
                return False

        return _Tx()

    def close(self) -> None:
        if self._conn_obj is not None and self._conn_pid == os.getpid():
            self._conn_obj.close()
        self._conn_obj = None

    def __getstate__(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["_conn_obj"], d["_conn_pid"] = None, None
        return d

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, keys={len(self.keys())})"

    # -- writing -----------------------------------------------------------------------------
    def register(self, key: str, identity: dict[str, Any]) -> None:
        """Record an extractor's identity under its key (idempotent)."""
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO extractors VALUES (?, ?, ?, ?, ?)",
                (key, identity.get("name", key), identity.get("modality"), identity.get("dim"),
                 json.dumps(identity, sort_keys=True, default=str)),
            )

    def put(self, fs: FeatureSet, *, source: str | Path | None = None, warnings: Iterable[str] = (),
            identity: dict[str, Any] | None = None) -> None:
        """Write a feature set and mark it ``ok`` in the manifest, atomically (replaces an older entry)."""
        key = fs.key
        vals = np.ascontiguousarray(fs.values, dtype=np.float16 if self.dtype == "float16" else np.float32)
        if not np.isfinite(vals[fs.valid]).all():
            raise ValueError(f"{fs.video_id} / {key}: valid rows hold non-finite values")
        row = (
            key, fs.video_id, int(vals.shape[0]), int(vals.shape[1]), vals.dtype.name, vals.tobytes(),
            np.ascontiguousarray(fs.times, dtype=np.float64).tobytes(),
            np.ascontiguousarray(fs.valid, dtype=np.bool_).tobytes(),
            None if fs.boxes is None else np.ascontiguousarray(fs.boxes, dtype=np.float32).tobytes(),
            None if fs.indices is None else np.ascontiguousarray(fs.indices, dtype=np.int64).tobytes(),
            json.dumps(fs.meta, default=str),
            None if fs.scores is None else np.ascontiguousarray(fs.scores, dtype=np.float32).tobytes(),
        )
        ident = identity or {"name": fs.extractor, "params": fs.params, "dim": fs.dim}
        with self._tx() as c:
            c.execute(
                "INSERT OR IGNORE INTO extractors VALUES (?, ?, ?, ?, ?)",
                (key, fs.extractor, ident.get("modality"), fs.dim, json.dumps(ident, sort_keys=True, default=str)),
            )
            c.execute("INSERT OR REPLACE INTO features (key, video_id, n, dim, dtype, vals, times, valid, boxes, "
                      "indices, meta, scores) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", row)
            c.execute(
                "INSERT OR REPLACE INTO manifest VALUES (?,?,?,?,?,?,?,?)",
                (fs.video_id, key, "ok", None, None if source is None else str(source),
                 json.dumps(list(warnings)), _versions_json(), time.time()),
            )

    def put_failure(self, video_id: str, key: str, error: str, *, source: str | Path | None = None) -> None:
        """Record that ``key`` could not be computed for ``video_id`` (drops any older entry)."""
        with self._tx() as c:
            c.execute("DELETE FROM features WHERE key=? AND video_id=?", (key, video_id))
            c.execute(
                "INSERT OR REPLACE INTO manifest VALUES (?,?,?,?,?,?,?,?)",
                (video_id, key, "failed", error, None if source is None else str(source), "[]",
                 _versions_json(), time.time()),
            )

    def delete(self, video_id: str, key: str) -> None:
        """Remove one entry: its features row and its manifest row, in one transaction."""
        with self._tx() as c:
            c.execute("DELETE FROM features WHERE key=? AND video_id=?", (key, video_id))
            c.execute("DELETE FROM manifest WHERE key=? AND video_id=?", (key, video_id))

    def delete_key(self, key: str) -> None:
        """Remove an extractor key: every entry and manifest row under it and its identity, in one transaction.

        The next extraction with that extractor registers it again and recomputes its entries.
        """
        with self._tx() as c:
            c.execute("DELETE FROM features WHERE key=?", (key,))
            c.execute("DELETE FROM manifest WHERE key=?", (key,))
            c.execute("DELETE FROM extractors WHERE key=?", (key,))

    # -- reading -----------------------------------------------------------------------------
    @staticmethod
    def _decode(key: str, row: tuple) -> FeatureSet:
        video_id, n, dim, dtype, vals, times, valid, boxes, indices, meta, scores, name, identity = row
        ident = json.loads(identity) if identity else {}
        return FeatureSet(
            values=np.frombuffer(vals, dtype=dtype).reshape(n, dim),
            times=np.frombuffer(times, dtype=np.float64),
            valid=np.frombuffer(valid, dtype=np.bool_),
            extractor=name or key.rsplit("-", 1)[0],
            params=ident.get("params", {}),
            video_id=video_id,
            boxes=None if boxes is None else np.frombuffer(boxes, dtype=np.float32).reshape(n, 4),
            indices=None if indices is None else np.frombuffer(indices, dtype=np.int64),
            meta=json.loads(meta) if meta else {},
            scores=None if scores is None else np.frombuffer(scores, dtype=np.float32),
        )

    _SELECT = (
        "SELECT f.video_id, f.n, f.dim, f.dtype, f.vals, f.times, f.valid, f.boxes, f.indices, f.meta, f.scores, "
        "e.name, e.identity FROM features f LEFT JOIN extractors e ON e.key = f.key WHERE f.key = ?"
    )

    def get(self, video_id: str, key: str) -> FeatureSet:
        """The feature set of one video for one extractor key.

        Raises:
            KeyError: no such entry; the message says whether the key is unknown, the video failed (and why)
                or was never extracted.
        """
        row = self._conn.execute(self._SELECT + " AND f.video_id = ?", (key, video_id)).fetchone()
        if row is not None:
            return self._decode(key, row)
        if key not in self.keys():
            raise KeyError(f"{self.path}: no extractor key {key!r}; keys in this store: {self.keys()}")
        rec = self._conn.execute(
            "SELECT status, error FROM manifest WHERE video_id=? AND key=?", (video_id, key)).fetchone()
        if rec is not None and rec[0] == "failed":
            raise KeyError(f"{self.path}: {video_id!r} / {key}: extraction failed: {rec[1]}")
        raise KeyError(f"{self.path}: no features for video {video_id!r} under key {key!r}")

    def meta(self, video_id: str, key: str) -> dict[str, Any] | None:
        """The ``meta`` of an entry without reading its arrays, or None when there is no entry."""
        row = self._conn.execute("SELECT meta FROM features WHERE key=? AND video_id=?", (key, video_id)).fetchone()
        return None if row is None else (json.loads(row[0]) if row[0] else {})

    def update_meta(self, video_id: str, key: str, meta: dict[str, Any]) -> None:
        """Replace an entry's ``meta`` (its arrays are left as they are)."""
        with self._tx() as c:
            c.execute("UPDATE features SET meta=? WHERE key=? AND video_id=?", (json.dumps(meta, default=str), key,
                                                                             video_id))

    def has(self, video_id: str, key: str) -> bool:
        return self._conn.execute(
            "SELECT 1 FROM features WHERE key=? AND video_id=?", (key, video_id)).fetchone() is not None

    def load(self, key: str, video_ids: Iterable[str] | None = None) -> dict[str, FeatureSet]:
        """Every feature set of a key (or of the given videos) in one query: the fast path for training."""
        if video_ids is None:
            rows = self._conn.execute(self._SELECT, (key,))
            return {r[0]: self._decode(key, r) for r in rows}
        wanted = list(video_ids)
        out: dict[str, FeatureSet] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            q = self._SELECT + f" AND f.video_id IN ({','.join('?' * len(chunk))})"
            for r in self._conn.execute(q, (key, *chunk)):
                out[r[0]] = self._decode(key, r)
        return out

    def iter(self, key: str) -> Iterator[FeatureSet]:
        for r in self._conn.execute(self._SELECT, (key,)):
            yield self._decode(key, r)

    def keys(self) -> list[str]:
        """Extractor keys that have at least one stored feature set or manifest row."""
        rows = self._conn.execute(
            "SELECT key FROM extractors UNION SELECT DISTINCT key FROM manifest ORDER BY key").fetchall()
        return [r[0] for r in rows]

    def keys_for(self, name: str) -> list[str]:
        """Keys whose extractor name is ``name``."""
        return [r[0] for r in self._conn.execute("SELECT key FROM extractors WHERE name=? ORDER BY key", (name,))]

    def identity(self, key: str) -> dict[str, Any]:
        row = self._conn.execute("SELECT identity FROM extractors WHERE key=?", (key,)).fetchone()
        if row is None:
            raise KeyError(f"{self.path}: no extractor key {key!r}; keys in this store: {self.keys()}")
        return json.loads(row[0])

    def video_ids(self, key: str | None = None) -> list[str]:
        """Videos with stored features for ``key`` (any key when None), sorted."""
        if key is None:
            rows = self._conn.execute("SELECT DISTINCT video_id FROM features ORDER BY video_id")
        else:
            rows = self._conn.execute("SELECT video_id FROM features WHERE key=? ORDER BY video_id", (key,))
        return [r[0] for r in rows]

    def _records(self, where: str = "", args: tuple = ()) -> list[ManifestRecord]:
        q = "SELECT video_id, key, status, error, source, warnings, versions, updated FROM manifest"
        rows = self._conn.execute(q + (f" WHERE {where}" if where else "") + " ORDER BY video_id, key", args)
        return [ManifestRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5] or "[]"), json.loads(r[6] or "{}"), r[7])
                for r in rows]

    def manifest(self, key: str | None = None) -> list[ManifestRecord]:
        return self._records("key=?", (key,)) if key else self._records()

    def status(self, video_id: str, key: str) -> str | None:
        row = self._conn.execute("SELECT status FROM manifest WHERE video_id=? AND key=?", (video_id, key)).fetchone()
        return None if row is None else row[0]

    def failures(self, key: str | None = None) -> list[ManifestRecord]:
        """Manifest rows of failed extractions (each with its error message)."""
        if key:
            return self._records("status='failed' AND key=?", (key,))
        return self._records("status='failed'")

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per key: extractor name, dim, ok / failed counts."""
        out: dict[str, dict[str, Any]] = {}
        for key in self.keys():
            row = self._conn.execute("SELECT name, dim, modality FROM extractors WHERE key=?", (key,)).fetchone()
            counts = dict(self._conn.execute(
                "SELECT status, COUNT(*) FROM manifest WHERE key=? GROUP BY status", (key,)).fetchall())
            out[key] = {"name": row[0] if row else None, "dim": row[1] if row else None,
                        "modality": row[2] if row else None,
                        "ok": counts.get("ok", 0), "failed": counts.get("failed", 0)}
        return out
