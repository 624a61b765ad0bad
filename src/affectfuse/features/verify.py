"""Check every entry of a feature store, and repair it: ``affectfuse store verify STORE [--repair]``.

:func:`verify_store` reads each row of the store's three tables (``features``, ``manifest``, ``extractors``;
see :mod:`affectfuse.features.store`) and reports, per kind of problem, the ``(video, key)`` pairs that are
wrong and why:

=================  ===========================================================================================
kind               what is wrong
=================  ===========================================================================================
``arrays``         a blob's length disagrees with ``n``, ``dim`` and ``dtype`` (values; times float64 ``(n,)``;
                   valid bool ``(n,)`` holding 0 / 1; boxes float32 ``(n, 4)``; indices int64 ``(n,)``; scores
                   float32 ``(n,)``), or ``dtype`` is not float32 / float16
``non-finite``     NaN or Inf in a valid row
``times``          times not finite, or decreasing (unless the manifest recorded "times are not sorted" for an
                   imported file)
``dim``            ``dim`` differs from the dimension registered for the key in ``extractors``
``manifest``       a features row without an ``ok`` manifest row (none, or ``failed``), or an ``ok`` manifest
                   row without features
``unregistered``   a features row whose key is not in ``extractors``
``json``           ``meta`` of an entry, the ``identity`` of a key or a manifest row's warnings / versions are
                   not readable JSON
``stale``          an entry written by an older affectfuse (no ``meta["decoding"]`` record) whose source file
                   today's decoding reads differently (:func:`affectfuse.io.video.stale_decoding`)
``database``       SQLite's own check (``PRAGMA quick_check``) finds damaged pages (not repairable here)
=================  ===========================================================================================

Notes, which are not damage: an old entry whose source is missing or unreadable (``source missing, not
checked``), or not looked at (``check_sources=False``); an old entry that is current (its ``decoding`` record is
written with ``repair=True``).

``repair=True`` deletes every damaged and stale entry (features row and manifest row in one transaction,
:meth:`FeatureStore.delete`; a key with an unreadable identity: the key, :meth:`FeatureStore.delete_key`), so
that ``affectfuse extract`` (``import-features`` for imported keys) computes them again.

Example:
    >>> report = verify_store("features/")
    >>> print(report.text())
    >>> report.exit_code()   # 0 clean, 1 problems found (and not repaired)
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from affectfuse.errors import MediaError
from affectfuse.features.store import FeatureStore
from affectfuse.io.video import decoding_record, probe, stale_decoding
from affectfuse.types import VideoInfo

__all__ = ["KINDS", "NOTE_KINDS", "Problem", "VerifyReport", "verify_store"]

#: the kinds of problems, in the order reports list them
KINDS = ("arrays", "non-finite", "times", "dim", "manifest", "unregistered", "json", "stale", "database")
#: the kinds of notes (not damage)
NOTE_KINDS = ("not-checked", "current")

_DTYPES = ("float32", "float16")
_UNSORTED = "times are not sorted"  # the warning importers record for an imported file's unsorted times


@dataclass(frozen=True)
class Problem:
    """One finding.

    Attributes:
        kind: one of :data:`KINDS` (a problem) or :data:`NOTE_KINDS` (a note).
        video_id: the entry's video, or None for a finding about a whole key or the database.
        key: the extractor key, or None for the database.
        message: what was wrong, naming the column or the source file.
    """

    kind: str
    video_id: str | None
    key: str | None
    message: str

    def __str__(self) -> str:
        if self.video_id is None and self.key is None:
            return self.message
        if self.video_id is None:
            return f"key {self.key}: {self.message}"
        return f"{self.video_id} [{self.key}]: {self.message}"


@dataclass
class VerifyReport:
    """What :func:`verify_store` found and did.

    Attributes:
        database: the store's database file.
        entries: features rows checked.
        manifest_rows: manifest rows checked.
        keys: extractor keys checked.
        problems: every problem found (before any repair), in :data:`KINDS` order.
        notes: findings that are not damage (sources not checked, old entries found current).
        repair: whether repairs were asked for.
        repaired: the problems whose entries (or keys) were deleted.
        stamped: ``(video_id, key)`` of old entries found current and given today's ``decoding`` record.
    """

    database: Path
    entries: int = 0
    manifest_rows: int = 0
    keys: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    repair: bool = False
    repaired: list[Problem] = field(default_factory=list)
    stamped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """No problem found."""
        return not self.problems

    @property
    def unrepaired(self) -> list[Problem]:
        """Problems still there: all of them without ``repair``, the database's own damage with it."""
        done = {id(p) for p in self.repaired}
        return [p for p in self.problems if id(p) not in done]

    @property
    def ok(self) -> bool:
        """Clean, or every problem repaired."""
        return not self.unrepaired

    def by_kind(self, notes: bool = False) -> dict[str, list[Problem]]:
        """``{kind: [problem, ...]}`` of the problems (``notes=True``: of the notes), kinds in report order."""
        found = self.notes if notes else self.problems
        order = NOTE_KINDS if notes else KINDS
        return {k: [p for p in found if p.kind == k] for k in order if any(p.kind == k for p in found)}

    def counts(self) -> dict[str, int]:
        """Number of problems per kind."""
        return {k: len(v) for k, v in self.by_kind().items()}

    def exit_code(self) -> int:
        """0 when clean or repaired, 1 when problems remain."""
        return 0 if self.ok else 1

    def text(self, limit: int = 50) -> str:
        """The report as lines: a header, problems per kind (at most ``limit`` lines each), repairs, notes."""
        lines = [f"{self.database}: {self.entries} entries, {self.manifest_rows} manifest rows, {self.keys} "
                 f"extractor key(s) checked"]

        def section(title: str, groups: dict[str, list[Problem]]) -> None:
            lines.append(f"{title} ({sum(len(v) for v in groups.values())}):")
            for kind, items in groups.items():
                lines.append(f"  {kind} ({len(items)}):")
                lines.extend(f"    {p}" for p in items[:limit])
                if len(items) > limit:
                    lines.append(f"    ... and {len(items) - limit} more")

        if self.problems:
            section("problems", self.by_kind())
        if self.repaired:
            entries = sum(1 for p in self.repaired if p.video_id is not None)
            keys = sum(1 for p in self.repaired if p.video_id is None and p.key is not None)
            lines.append(f"repaired: deleted {entries} entr{'y' if entries == 1 else 'ies'}"
                         + (f" and {keys} key(s)" if keys else "")
                         + "; run `affectfuse extract` (or `import-features` for imported keys) again to "
                           "recompute them")
        if self.stamped:
            lines.append(f"stamped: {len(self.stamped)} older entr{'y' if len(self.stamped) == 1 else 'ies'} checked "
                         f"against the source and marked current")
        if self.notes:
            section("notes", self.by_kind(notes=True))
        left = self.unrepaired
        if not self.problems:
            lines.append("clean: no problems found")
        elif not left:
            lines.append(f"repaired: all {len(self.problems)} problem(s)")
        elif self.repair:
            lines.append(f"{len(left)} problem(s) could not be repaired here: "
                         + "; ".join(sorted({p.message for p in left}))[:500])
        else:
            lines.append(f"{len(self.problems)} problem(s) found; `affectfuse store verify {self.database.parent} "
                         "--repair` deletes the damaged and stale entries so that a re-run recomputes them")
        return "\n".join(lines)


# -- checks ---------------------------------------------------------------------------------------------


def _json(text: Any) -> tuple[Any, str | None]:
    """``(value, None)`` for readable JSON (None / empty: ``None``), ``(None, why)`` otherwise."""
    if text is None or text == "":
        return None, None
    if not isinstance(text, (str, bytes)):
        return None, f"holds a {type(text).__name__}, not JSON text"
    try:
        return json.loads(text), None
    except (ValueError, UnicodeDecodeError) as e:
        return None, f"is not readable JSON ({e})"


def _blob(name: str, blob: Any, n: int, itemsize: int, width: int, what: str, *, required: bool) -> str | None:
    """Why a blob column is not ``n × width`` items of ``itemsize`` bytes, or None."""
    if blob is None:
        return f"{name} is missing" if required else None
    if not isinstance(blob, bytes):
        return f"{name} holds a {type(blob).__name__}, expected bytes"
    want = n * width * itemsize
    if len(blob) != want:
        return f"{name} holds {len(blob)} bytes, expected {want} ({n} rows x {what})"
    return None


def _check_entry(row: tuple, registered_dim: Any, warnings: list[str]) -> list[tuple[str, str]]:
    """The ``(kind, message)`` problems of one features row (arrays, values, times, dim)."""
    key, vid, n, dim, dtype, vals, times, valid, boxes, indices, scores = row[:11]
    if not isinstance(n, int) or not isinstance(dim, int) or n < 0 or dim < 1:
        return [("arrays", f"n = {n!r} and dim = {dim!r} must be integers, n >= 0 and dim >= 1")]
    if dtype not in _DTYPES:
        return [("arrays", f"dtype is {dtype!r}, expected one of {list(_DTYPES)}")]
    itemsize = np.dtype(dtype).itemsize
    blobs = (
        _blob("vals", vals, n, itemsize, dim, f"{dim} x {dtype}", required=True),
        _blob("times", times, n, 8, 1, "float64", required=True),
        _blob("valid", valid, n, 1, 1, "bool", required=True),
        _blob("boxes", boxes, n, 4, 4, "4 x float32", required=False),
        _blob("indices", indices, n, 8, 1, "int64", required=False),
        _blob("scores", scores, n, 4, 1, "float32", required=False),
    )
    found = [("arrays", why) for why in blobs if why]
    if isinstance(registered_dim, int) and registered_dim != dim:
        found.append(("dim", f"dim is {dim}, but the key is registered with dim {registered_dim}"))
    if any(k == "arrays" for k, _ in found):
        return found
    raw_valid = np.frombuffer(valid, dtype=np.uint8)
    if raw_valid.size and raw_valid.max() > 1:
        found.append(("arrays", f"valid holds byte values other than 0 / 1 (e.g. {int(raw_valid.max())})"))
        return found
    mask = raw_valid.view(np.bool_)
    values = np.frombuffer(vals, dtype=dtype).reshape(n, dim)
    bad = ~np.isfinite(values[mask]).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(mask)[bad]
        found.append(("non-finite", f"{len(rows)} valid row(s) hold NaN / Inf values (first: row {int(rows[0])})"))
    t = np.frombuffer(times, dtype=np.float64)
    if not np.isfinite(t).all():
        found.append(("times", f"times hold NaN / Inf (first: row {int(np.flatnonzero(~np.isfinite(t))[0])})"))
    elif n > 1 and (np.diff(t) < 0).any() and _UNSORTED not in warnings:
        i = int(np.flatnonzero(np.diff(t) < 0)[0])
        found.append(("times", f"times decrease: row {i + 1} at {t[i + 1]:.6g} s after row {i} at {t[i]:.6g} s"))
    return found


def _probe_cached(source: str, cache: dict[str, VideoInfo | str]) -> VideoInfo | str:
    """The :func:`probe` of a source file (cached), or why it could not be read."""
    if source not in cache:
        try:
            cache[source] = probe(source)
        except (MediaError, OSError) as e:
            cache[source] = str(e)
    return cache[source]


def verify_store(store: str | Path | FeatureStore, *, repair: bool = False, check_sources: bool = True,
                 log=None) -> VerifyReport:
    """Check every entry of a feature store; with ``repair``, delete the damaged and stale ones.

    Args:
        store: the store folder (or an open :class:`FeatureStore`).
        repair: delete every damaged and stale entry (features and manifest row, one transaction each) and write
            the ``decoding`` record of old entries found current.
        check_sources: probe the source files of entries written by an older affectfuse (no ``decoding``
            record) to find stale ones; False skips this (a note per unchecked entry).
        log: called with a line of progress now and then (None: quiet).

    Returns:
        the :class:`VerifyReport` (see the module docstring for the kinds of problems).

    Raises:
        FileNotFoundError: no store at ``store``.
        StoreError: the database cannot be opened, or a repair cannot be written (disk full, read-only).
    """
    st = store if isinstance(store, FeatureStore) else FeatureStore(store, create=False)
    conn = st._conn
    report = VerifyReport(database=st.path / st.FILENAME, repair=repair)
    found = _Findings()
    problems = found.items
    try:
        damage = [r[0] for r in conn.execute("PRAGMA quick_check(20)")]
        if damage != ["ok"]:
            lines = [ln.strip() for d in damage for ln in str(d).splitlines() if ln.strip() and "***" not in ln]
            raise sqlite3.DatabaseError("; ".join(lines)[:300])
        current = _scan(conn, report, found, check_sources=check_sources, repair=repair, log=log)
    except sqlite3.DatabaseError as e:  # damaged pages: nothing here can be trusted, nothing is deleted
        found.add("database", None, None, f"{report.database}: SQLite finds damaged pages ({e}); restore the file from "
                                    "a copy or extract into a new folder", how="")
        current = []

    order = {k: i for i, k in enumerate(KINDS)}
    problems.sort(key=lambda ph: order[ph[0].kind])
    report.problems = [p for p, _ in problems]
    if not repair or any(p.kind == "database" for p in report.problems):
        return report

    deleted_keys = {p.key for p, how in problems if how == "key"}
    for key in sorted(deleted_keys):
        st.delete_key(key)
    done_entries: set[tuple[str, str]] = set()
    for p, how in problems:
        if how == "key":
            report.repaired.append(p)
        elif how == "entry":
            if p.key in deleted_keys:
                report.repaired.append(p)
                continue
            pair = (p.video_id, p.key)
            if pair not in done_entries:
                st.delete(p.video_id, p.key)
                done_entries.add(pair)
            report.repaired.append(p)
    for vid, key, meta, info in current:
        st.update_meta(vid, key, {**meta, "decoding": decoding_record(info)})
        report.stamped.append((vid, key))
    return report


class _Findings:
    """The problems found so far, each with how ``repair`` fixes it: ``"entry"`` (delete the entry), ``"key"``
    (delete the key) or ``""`` (not here)."""

    def __init__(self) -> None:
        self.items: list[tuple[Problem, str]] = []
        self.pairs: set[tuple[str | None, str | None]] = set()

    def add(self, kind: str, vid: str | None, key: str | None, msg: str, how: str = "entry") -> None:
        self.items.append((Problem(kind, vid, key, msg), how))
        self.pairs.add((vid, key))


def _scan(conn: sqlite3.Connection, report: VerifyReport, found: _Findings, *, check_sources: bool, repair: bool,
          log) -> list[tuple[str, str, dict[str, Any], VideoInfo]]:
    """Read the three tables, record every problem in ``found`` and every note in ``report``.

    Returns:
        the old entries (no ``decoding`` record) found current for their source: ``(video, key, meta, info)``.
    """
    add = found.add
    # extractors: the registered dims and identities
    registered: dict[str, Any] = {}
    imported: set[str] = set()
    bad_identity: set[str] = set()
    for key, dim, identity in conn.execute("SELECT key, dim, identity FROM extractors ORDER BY key"):
        registered[key] = dim
        ident, why = _json(identity)
        if why is not None or not isinstance(ident, dict):
            bad_identity.add(key)
            add("json", None, key, f"identity {why or 'is not a JSON object'}; its entries cannot be read",
                how="key")
        elif ident.get("imported"):
            imported.add(key)
    report.keys = len(registered)

    # manifest rows
    manifest: dict[tuple[str, str], tuple[str, str | None, list[str]]] = {}
    for vid, key, status, source, warnings, versions in conn.execute(
            "SELECT video_id, key, status, source, warnings, versions FROM manifest ORDER BY video_id, key"):
        report.manifest_rows += 1
        warn, why_w = _json(warnings)
        _, why_v = _json(versions)
        if (why_w or why_v) and key not in bad_identity:
            add("json", vid, key, f"manifest {'warnings' if why_w else 'versions'} {why_w or why_v}")
        manifest[(vid, key)] = (status, source, [str(w) for w in warn] if isinstance(warn, list) else [])

    # features rows, one at a time (their arrays are read, never all at once)
    stored: set[tuple[str, str]] = set()
    old: list[tuple[str, str, dict[str, Any]]] = []  # entries without a decoding record, to check against sources
    rows = conn.execute("SELECT key, video_id, n, dim, dtype, vals, times, valid, boxes, indices, scores, meta "
                        "FROM features ORDER BY key, video_id")
    for row in rows:
        key, vid, meta_text = row[0], row[1], row[11]
        report.entries += 1
        stored.add((vid, key))
        if log is not None and report.entries % 1000 == 0:
            log(f"verify: {report.entries} entries checked")
        if key in bad_identity:
            continue  # the whole key is reported and repaired as one
        status, source, warnings = manifest.get((vid, key), (None, None, []))
        for kind, msg in _check_entry(row, registered.get(key), warnings):
            add(kind, vid, key, msg)
        if key not in registered:
            add("unregistered", vid, key, "the key is not registered in the extractors table (no identity, no dim)")
        if status is None:
            add("manifest", vid, key, "features stored without a manifest row")
        elif status != "ok":
            add("manifest", vid, key, f"features stored, but the manifest says {status!r}")
        meta, why = _json(meta_text)
        if why is not None or (meta is not None and not isinstance(meta, dict)):
            add("json", vid, key, f"meta {why or 'is not a JSON object'}")
        elif key not in imported and not isinstance((meta or {}).get("decoding"), dict):
            old.append((vid, key, meta or {}))
    for (vid, key), (status, _, _) in manifest.items():
        if status == "ok" and (vid, key) not in stored and key not in bad_identity:
            add("manifest", vid, key, "the manifest says ok, but no features are stored")

    # entries written before the decoding record: are they stale for their source file?
    damaged = found.pairs
    current: list[tuple[str, str, dict[str, Any], VideoInfo]] = []
    cache: dict[str, VideoInfo | str] = {}
    for vid, key, meta in old:
        if (vid, key) in damaged:
            continue
        source = manifest.get((vid, key), (None, None, []))[1]
        if not check_sources:
            report.notes.append(Problem("not-checked", vid, key, "written by an older affectfuse; sources not "
                                                                 "checked (--no-sources)"))
        elif source is None:
            report.notes.append(Problem("not-checked", vid, key, "written by an older affectfuse; no source file "
                                                                 "recorded, not checked"))
        elif not Path(source).exists():
            report.notes.append(Problem("not-checked", vid, key, f"source missing, not checked: {source}"))
        else:
            info = _probe_cached(source, cache)
            if isinstance(info, str):
                report.notes.append(Problem("not-checked", vid, key, f"source unreadable, not checked: {info}"))
                continue
            reason = stale_decoding(meta, info)
            if reason:
                add("stale", vid, key, reason)
            else:
                current.append((vid, key, meta, info))
                if not repair:
                    report.notes.append(Problem("current", vid, key, f"written by an older affectfuse, current for "
                                                                     f"{source}; --repair records that"))

    return current
