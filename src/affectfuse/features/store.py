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

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from affectfuse._versions import versions

_VERSIONS_JSON: str | None = None


def _versions_json() -> str:
    global _VERSIONS_JSON
    if _VERSIONS_JSON is None:
        _VERSIONS_JSON = json.dumps(versions())
    return _VERSIONS_JSON
from affectfuse.types import FeatureSet

__all__ = ["FeatureStore", "ManifestRecord"]

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
        path: the store folder (created if missing, unless ``create=False``).
        dtype: ``"float32"`` or ``"float16"``; values are stored in this type (float16 halves the size;
            values come back as stored).
        create: create the folder and database when missing (False: raise FileNotFoundError).

    The connection is opened lazily per process, so a store object can be handed to DataLoader workers.
    """

    FILENAME = "features.sqlite"

    def __init__(self, path: str | Path, *, dtype: str = "float32", create: bool = True) -> None:
        if dtype not in ("float32", "float16"):
            raise ValueError(f"FeatureStore dtype must be 'float32' or 'float16', got {dtype!r}")
        self.path = Path(path)
        self.dtype = dtype
        db = self.path / self.FILENAME
        if not db.exists():
            if not create:
                raise FileNotFoundError(f"{self.path}: no feature store here (missing {self.FILENAME})")
            if self.path.exists() and not self.path.is_dir():
                raise NotADirectoryError(f"{self.path}: a feature store is a folder, this is a file")
            self.path.mkdir(parents=True, exist_ok=True)
        self._conn_pid: int | None = None
        self._conn_obj: sqlite3.Connection | None = None
        self._conn.executescript(_SCHEMA)  # DDL is idempotent; executescript commits by itself
        cols = {r[1] for r in self._conn.execute("PRAGMA table_info(features)")}
        if "scores" not in cols:  # a store written before face scores were kept: add the (nullable) column
            self._conn.execute("ALTER TABLE features ADD COLUMN scores BLOB")
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO meta VALUES ('format_version', ?)", (FORMAT_VERSION,))
        fmt = self._conn.execute("SELECT v FROM meta WHERE k='format_version'").fetchone()[0]
        if fmt != FORMAT_VERSION:
            raise RuntimeError(f"{db}: store format {fmt}, this affectfuse reads format {FORMAT_VERSION}")

    # -- connection --------------------------------------------------------------------------
    @property
    def _conn(self) -> sqlite3.Connection:
        if self._conn_obj is None or self._conn_pid != os.getpid():
            conn = sqlite3.connect(self.path / self.FILENAME, timeout=60.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._conn_obj, self._conn_pid = conn, os.getpid()
        return self._conn_obj

    def _tx(self):
        store = self

        class _Tx:
            def __enter__(self_inner):
                store._conn.execute("BEGIN IMMEDIATE")
                return store._conn

            def __exit__(self_inner, et, ev, tb):
                store._conn.execute("ROLLBACK" if et else "COMMIT")
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
        with self._tx() as c:
            c.execute("DELETE FROM features WHERE key=? AND video_id=?", (key, video_id))
            c.execute("DELETE FROM manifest WHERE key=? AND video_id=?", (key, video_id))

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
