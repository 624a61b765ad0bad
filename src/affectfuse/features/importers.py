"""Import pre-computed features (a folder of per-video ``.npy`` / ``.csv`` files) into a feature store.

Challenges distribute features as one file per video: MuSe 2022 ships
``c2_muse_reaction/feats/<feature>/<id>.csv`` whose first two columns are meta data (a timestamp in
milliseconds and a segment id; the baseline reads values from ``feature_idx=2`` on), others ship ``(T, D)``
NumPy arrays. :func:`import_features` turns such a folder into **one key** of a
:class:`~affectfuse.features.store.FeatureStore`, so imported features train exactly like extracted ones.

Rules (each documented here once; the :class:`ImportReport` says what was applied):

* **video id** = the file stem (``00001.csv`` → ``00001``); files other than ``.npy`` / ``.csv`` are ignored
  (counted in the report); two files with the same stem are a failure of that video.
* **values**: a ``.npy`` file is the ``(T, D)`` values (numeric dtype, no pickles). A ``.csv`` file's values
  are every column except the *meta columns* and the *time column*.
* **meta columns** (CSV only): ``meta_columns=K`` excludes the first K columns (MuSe: 2). ``None`` (auto)
  excludes the leading columns whose header is a known meta name (``timestamp``, ``time``, ``segment_id``,
  ``segment``, ``frame``, ``file_id``, ``id``, ``video_id``, ``subject_id``, ``name``, ``filename``,
  ``Unnamed: 0`` / empty: a pandas index). A CSV without a header row (every cell of line 1 is a number) has
  no meta columns unless ``meta_columns`` says so.
* **times** (seconds): from the time column when there is one, else ``row / rate`` (``rate`` rows per
  second), else the row index. ``time_column="auto"`` picks the first column named ``timestamp``, ``time``,
  ``times``, ``time_s``, ``time_ms``, ``timestamp_s``, ``timestamp_ms`` or ``pts`` (case-insensitive);
  ``None`` uses no time column; a name requires that column. **Unit** (``time_unit="auto"``): a name ending in
  ``ms`` (``time_ms``) means milliseconds, one ending in ``_s`` / ``sec`` / ``seconds`` means seconds;
  otherwise the median step between consecutive times decides: a step >= 5 means milliseconds (5 ms = a
  200 Hz series, while features 5 s apart are implausible), a smaller one seconds. The unit is decided once,
  on the first file with two or more distinct times, and used for the whole folder (``time_unit="ms"`` /
  ``"s"`` forces it). MuSe ``timestamp`` columns (0, 500, 1000, ... ms) are therefore read as milliseconds.
* **valid**: every row is valid except rows with a missing / non-finite value; those rows become zeros and
  invalid (the store never keeps NaN as data), and the entry gets a warning with their count.
* **width**: every file must have the same number of feature columns D, the most common width in the folder
  (ties: the first file's). A file of another width is a failure naming the file and both widths.
* **failures** (corrupt file, non-numeric feature column, no rows, wrong width, missing time column) are
  recorded in the store's manifest (``store.failures(key)``) with a message naming the file; the other files
  are imported. ``on_error="raise"`` raises :class:`ValueError` on the first one instead.
* **re-runs** skip videos already stored under the key unless ``overwrite=True``; failed ones are retried.

The key is ``feature_key(f"imported_{name or modality}", params)`` with ``params`` = the folder's *name*
(not its path, so a moved folder keeps its key), D and the import options; the store identity records the
absolute path. Example::

    >>> rep = import_features("c2_muse_reaction/feats/FAU", modality="fau", store=FeatureStore("feats/", create=True),
    ...                       meta_columns=2)
    >>> rep.key, rep.dim, len(rep.imported), rep.failed
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from affectfuse.features.store import FeatureStore
from affectfuse.types import FeatureSet, feature_key

__all__ = ["import_features", "ImportReport", "META_NAMES", "TIME_NAMES"]

META_NAMES = frozenset({"timestamp", "time", "times", "time_s", "time_ms", "timestamp_s", "timestamp_ms", "pts",
                        "segment_id", "segment", "frame", "frame_idx", "frame_index", "file_id", "id", "video_id",
                        "subject_id", "name", "filename", "file", "unnamed: 0", ""})
TIME_NAMES = ("timestamp", "time", "times", "time_s", "time_ms", "timestamp_s", "timestamp_ms", "pts")
_EXTS = (".npy", ".csv")
MS_STEP_THRESHOLD = 5.0


@dataclass
class ImportReport:
    """What :func:`import_features` did.

    Attributes:
        key: the store key written.
        folder: the source folder (absolute).
        modality: the modality name recorded in the identity.
        dim: the feature width D of the folder (None when no file could be read).
        imported: video ids written in this call.
        skipped: video ids already in the store (not re-imported; ``overwrite=True`` re-imports).
        failed: video id → error message (names the file).
        warnings: video id → remarks on an imported entry (e.g. invalid NaN rows).
        ignored: files that are neither ``.npy`` nor ``.csv``.
        time_unit: ``"s"``, ``"ms"`` or ``"index"`` (row index / rate) as applied, None if nothing was read.
    """

    key: str
    folder: str
    modality: str
    dim: int | None
    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    time_unit: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        lines = [f"{self.folder} -> key {self.key} (modality {self.modality}, dim {self.dim}): "
                 f"{len(self.imported)} imported, {len(self.skipped)} already stored, {len(self.failed)} failed"
                 + (f", {len(self.ignored)} other files ignored" if self.ignored else "")
                 + (f"; times in {self.time_unit}" if self.time_unit else "")]
        n_warn = sum(len(w) for w in self.warnings.values())
        if n_warn:
            first = next(iter(self.warnings.items()))
            lines.append(f"{n_warn} warning(s), e.g. {first[0]}: {first[1][0]}")
        for vid, err in list(self.failed.items())[:20]:
            lines.append(f"FAILED {vid}: {err}")
        if len(self.failed) > 20:
            lines.append(f"... and {len(self.failed) - 20} more failures (affectfuse store STORE lists them)")
        return "\n".join(lines)


class _Bad(Exception):
    """A per-file problem (message names the file)."""


@dataclass
class _Layout:
    """What the header of a file says: width and which columns are meta / time."""

    path: Path
    width: int
    has_header: bool = False
    columns: list[str] = field(default_factory=list)
    meta: int = 0
    time_col: int | None = None
    value_cols: list[int] = field(default_factory=list)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _layout(path: Path, meta_columns: int | None, time_column: str | None) -> _Layout:
    """Read only the header (CSV) or the array header (.npy) of a file."""
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - any reader error means a corrupt file
            raise _Bad(f"{path}: cannot be read as a .npy array ({type(e).__name__}: {e})") from None
        if arr.ndim != 2:
            raise _Bad(f"{path}: expected a (T, D) array, got shape {tuple(arr.shape)}")
        if arr.dtype.kind not in "fiub":
            raise _Bad(f"{path}: expected a numeric array, got dtype {arr.dtype}")
        return _Layout(path, int(arr.shape[1]))
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            first = next(csv.reader(fh), None)
    except (UnicodeDecodeError, csv.Error, OSError) as e:
        raise _Bad(f"{path}: cannot be read as CSV text ({type(e).__name__}: {e})") from None
    if not first:
        raise _Bad(f"{path}: empty file (expected a CSV with one row per time step)")
    cells = [c.strip() for c in first]
    has_header = not all(_is_number(c) for c in cells)
    names = cells if has_header else [str(i) for i in range(len(cells))]
    lower = [c.lower() for c in names]
    if meta_columns is not None:
        if meta_columns < 0 or meta_columns >= len(names):
            raise _Bad(f"{path}: meta_columns={meta_columns} but the file has {len(names)} column(s)")
        meta = meta_columns
    elif has_header:
        meta = 0
        while meta < len(lower) and lower[meta] in META_NAMES:
            meta += 1
    else:
        meta = 0
    tcol: int | None = None
    if time_column == "auto":
        if has_header:
            tcol = next((i for i, c in enumerate(lower) if c in TIME_NAMES), None)
    elif time_column is not None:
        if time_column.lower() not in lower:
            raise _Bad(f"{path}: no time column {time_column!r}; columns are {names[:12]}"
                       + (" ..." if len(names) > 12 else ""))
        tcol = lower.index(time_column.lower())
    values = [i for i in range(meta, len(names)) if i != tcol]
    if not values:
        raise _Bad(f"{path}: no feature columns left after {meta} meta column(s) {names[:meta]}")
    return _Layout(path, len(values), has_header, names, meta, tcol, values)


def _unit_from_name(name: str) -> str | None:
    n = name.lower()
    if n.endswith("ms") or n.endswith("msec"):
        return "ms"
    if n.endswith(("_s", "sec", "seconds", "secs")):
        return "s"
    return None


def _unit_from_steps(t: np.ndarray) -> str | None:
    steps = np.diff(np.unique(t[np.isfinite(t)]))
    if len(steps) == 0:
        return None
    return "ms" if float(np.median(steps)) >= MS_STEP_THRESHOLD else "s"


def _read_csv(lay: _Layout) -> tuple[np.ndarray, np.ndarray | None]:
    """Values ``(T, D)`` float64 (NaN where missing) and the raw time column (or None)."""
    import pandas as pd

    try:
        df = pd.read_csv(lay.path, header=0 if lay.has_header else None, low_memory=False, encoding="utf-8-sig",
                         skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise _Bad(f"{lay.path}: cannot be read as CSV ({type(e).__name__}: {str(e).strip()})") from None
    if df.shape[1] != len(lay.columns):
        raise _Bad(f"{lay.path}: rows have {df.shape[1]} columns but the header has {len(lay.columns)}")
    if len(df) == 0:
        raise _Bad(f"{lay.path}: no rows (expected one row per time step)")

    def numeric(j: int) -> np.ndarray:
        col = df.iloc[:, j]
        if col.dtype.kind in "fiub":
            return col.to_numpy(dtype=np.float64)
        num = pd.to_numeric(col, errors="coerce")
        bad = num.isna() & col.notna() & (col.astype(str).str.strip() != "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            line = i + (2 if lay.has_header else 1)
            raise _Bad(f"{lay.path}: column {lay.columns[j]!r} (column {j + 1}) is not numeric: line {line} holds "
                       f"{col.iloc[i]!r}; expected numbers (use meta_columns / --meta-columns to skip leading "
                       f"non-feature columns)")
        return num.to_numpy(dtype=np.float64)

    values = np.stack([numeric(j) for j in lay.value_cols], axis=1)  # (T, D)
    times = numeric(lay.time_col) if lay.time_col is not None else None
    return values, times


def _read_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001
        raise _Bad(f"{path}: cannot be read as a .npy array ({type(e).__name__}: {e})") from None
    if len(arr) == 0:
        raise _Bad(f"{path}: no rows (expected a (T, D) array with T >= 1)")
    return np.asarray(arr, dtype=np.float64)  # (T, D)


def import_features(src: str | Path, *, modality: str, store: FeatureStore | str | Path, name: str | None = None,
                    time_column: str | None = "auto", meta_columns: int | None = None, time_unit: str = "auto",
                    rate: float | None = None, overwrite: bool = False, on_error: str = "record",
                    progress: Callable[[str], Any] | None = None) -> ImportReport:
    """Import a folder of per-video ``.npy`` / ``.csv`` feature files as one store key (rules: module docstring).

    Args:
        src: the folder (files directly inside it; video id = file stem).
        modality: the modality name recorded in the identity (e.g. ``"fau"``, ``"audio"``).
        store: a :class:`FeatureStore` or its folder (created if missing).
        name: the feature name; the extractor name becomes ``imported_<name or modality>``.
        time_column: ``"auto"``, a column name, or None (no time column: times from ``rate`` / row index).
        meta_columns: leading CSV columns that are not features (MuSe: 2); None = detect by name.
        time_unit: ``"auto"``, ``"s"`` or ``"ms"`` (unit of the time column).
        rate: rows per second, used for times when there is no time column (None: times = row index).
        overwrite: re-import videos already stored under the key.
        on_error: ``"record"`` (failure in the manifest, continue) or ``"raise"``.
        progress: called with each video id before it is imported (e.g. a progress bar's update).

    Returns:
        an :class:`ImportReport`.

    Raises:
        FileNotFoundError: ``src`` is not a folder or holds no ``.npy`` / ``.csv`` file.
        ValueError: bad arguments; with ``on_error="raise"``, the first bad file.

    Shape:
        each file: ``(T, D)`` (CSV: ``(T, meta + D [+ time])``) → a FeatureSet with values ``(T, D)`` float32,
        times ``(T,)`` float64 seconds, valid ``(T,)`` bool.
    """
    if on_error not in ("record", "raise"):
        raise ValueError(f"on_error must be 'record' or 'raise', got {on_error!r}")
    if time_unit not in ("auto", "s", "ms"):
        raise ValueError(f"time_unit must be 'auto', 's' or 'ms', got {time_unit!r}")
    if meta_columns is not None and meta_columns < 0:
        raise ValueError(f"meta_columns must be >= 0 or None, got {meta_columns}")
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be > 0 rows per second, got {rate}")
    folder = Path(src).resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"{src}: not a folder of per-video .npy / .csv feature files")
    st = store if isinstance(store, FeatureStore) else FeatureStore(store, create=True)
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    feats = [p for p in files if p.suffix.lower() in _EXTS]
    if not feats:
        raise FileNotFoundError(f"{folder}: no .npy or .csv files; found {[p.name for p in files[:10]]}")
    extractor = f"imported_{name or modality}"

    # -- pass 1: headers only, to find the folder's width ----------------------------------------------
    by_stem: dict[str, list[Path]] = {}
    for p in feats:
        by_stem.setdefault(p.stem, []).append(p)
    layouts: dict[str, _Layout] = {}
    early: dict[str, str] = {}
    for vid, paths in by_stem.items():
        if len(paths) > 1:
            early[vid] = f"{folder}: several files for video {vid!r}: {[p.name for p in paths]}; keep one"
            continue
        try:
            layouts[vid] = _layout(paths[0], meta_columns, time_column)
        except _Bad as e:
            early[vid] = str(e)
    widths = Counter(lay.width for lay in layouts.values())
    dim: int | None = None
    if widths:
        top = max(widths.values())
        dim = next(lay.width for lay in layouts.values() if widths[lay.width] == top)  # ties: first file
    params = {"source": folder.name, "dim": dim, "meta_columns": meta_columns, "time_column": time_column,
              "time_unit": time_unit, "rate": rate}
    key = feature_key(extractor, params)
    identity: dict[str, Any] = {"name": extractor, "modality": modality, "dim": dim, "imported": True,
                                "source": str(folder), "params": params}
    st.register(key, identity)
    report = ImportReport(key=key, folder=str(folder), modality=modality, dim=dim,
                          ignored=[p.name for p in files if p.suffix.lower() not in _EXTS])

    def fail(vid: str, msg: str, path: Path | None) -> None:
        st.put_failure(vid, key, msg, source=path)
        report.failed[vid] = msg
        if on_error == "raise":
            raise ValueError(msg)

    unit = None if time_unit == "auto" else time_unit
    for vid, paths in by_stem.items():
        if vid in early:
            fail(vid, early[vid], paths[0])
            continue
        lay = layouts[vid]
        if not overwrite and st.has(vid, key):
            report.skipped.append(vid)
            continue
        if progress is not None:
            progress(vid)
        if lay.width != dim:
            fail(vid, f"{lay.path}: {lay.width} feature columns, expected {dim} (the width of the other files in "
                      f"{folder.name}/)", lay.path)
            continue
        try:
            if lay.path.suffix.lower() == ".npy":
                values, raw_t = _read_npy(lay.path), None
            else:
                values, raw_t = _read_csv(lay)
        except _Bad as e:
            fail(vid, str(e), lay.path)
            continue
        n = len(values)
        warn: list[str] = []
        if raw_t is not None:
            if not np.isfinite(raw_t).all():
                bad = int(np.flatnonzero(~np.isfinite(raw_t))[0])
                fail(vid, f"{lay.path}: time column {lay.columns[lay.time_col]!r} has a missing value at row "
                          f"{bad + 1}", lay.path)
                continue
            if unit is None:
                unit = _unit_from_name(lay.columns[lay.time_col]) or _unit_from_steps(raw_t)
            u = unit or "s"
            times = raw_t / 1000.0 if u == "ms" else raw_t.astype(np.float64)
            report.time_unit = unit or report.time_unit or u
            if n > 1 and np.any(np.diff(times) < 0):
                warn.append("times are not sorted")
        else:
            times = np.arange(n, dtype=np.float64) / (rate or 1.0)
            report.time_unit = report.time_unit or ("s" if rate else "index")
        valid = np.isfinite(values).all(axis=1)  # (T,)
        if not valid.all():
            values = np.where(valid[:, None], values, 0.0)
            warn.append(f"{int((~valid).sum())} of {n} rows hold missing / non-finite values: marked invalid")
        fs = FeatureSet(values=values.astype(np.float32), times=times, valid=valid, extractor=extractor,
                        params=params, video_id=vid,
                        meta={"file": lay.path.name, "meta_columns": lay.columns[:lay.meta],
                              "time_column": None if lay.time_col is None else lay.columns[lay.time_col],
                              "time_unit": report.time_unit})
        st.put(fs, source=lay.path, warnings=warn, identity=identity)
        report.imported.append(vid)
        if warn:
            report.warnings[vid] = warn
    if report.time_unit is not None:
        st.register(key, {**identity, "time_unit": report.time_unit})
    return report
