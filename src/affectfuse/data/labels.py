"""Label readers: every dataset layout becomes one :class:`Labels` table.

``Labels.table`` is a pandas DataFrame with ``video_id`` (str), ``split`` (``train`` / ``dev`` / ``test``),
for frame-level tasks ``frame`` (0-based frame index in the video's display order), then the targets: one
float column per target for regression tasks (named as ``task.targets``), one int64 column ``label``
(class index ``0..K-1``) for classification tasks. Frame-level tables hold one row per *labelled* frame:
frames whose every target is the task's ``ignore_value`` (Aff-Wild2 VA ``-5``, EXPR ``-1``) are left out
(counted in ``Labels.unlabelled``); a frame with only some targets at the ignore value keeps it, and losses
/ metrics mask those entries.

Readers (``load_labels(path)`` picks one from what ``path`` is):

* :func:`read_viper_csv` — Hume-Reaction as ViPER reads it (``data_info.csv``: ``Split``, ``File_ID``
  like ``[00001]``, 7 emotions);
* :func:`read_muse_reaction` — MuSe 2022 layout (``labels.csv`` + ``partition.csv``; ``devel`` → ``dev``);
* :func:`read_affwild2` — ABAW annotation folders ``Train_Set/`` / ``Validation_Set/`` of ``<video>.txt``;
* :func:`read_vgaf` — VGAF ``Train_labels.txt`` / ``Val_labels.txt`` (``Vid_name``, ``Label`` 1..3);
* :func:`read_labels_csv` — a generic CSV (``id`` or ``video_id``, ``split``, targets, optional ``frame``).

Bad rows — missing id, missing target of a clip task, a value outside the task's range, an unknown split, a
duplicate id (or duplicate frame) — raise :class:`~affectfuse.errors.LabelError` naming the file, the line
(1-based, as an editor shows it) and the problem, e.g. ``labels.csv, line 18: target 'Fear' must be in
[0.0, 1.0], got 3.2``. With ``on_error="drop"`` they are dropped instead and listed in ``Labels.report``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from affectfuse.errors import LabelError
from affectfuse.tasks.spec import TASKS, TaskSpec, get_task

__all__ = [
    "Labels",
    "SPLITS",
    "normalize_split",
    "read_viper_csv",
    "read_muse_reaction",
    "read_affwild2",
    "read_vgaf",
    "read_labels_csv",
    "load_labels",
]

SPLITS = ("train", "dev", "test")
_SPLIT_ALIASES = {
    "train": "train", "training": "train", "train_set": "train", "trn": "train",
    "dev": "dev", "devel": "dev", "development": "dev", "val": "dev", "valid": "dev", "validation": "dev",
    "validation_set": "dev", "val_set": "dev",
    "test": "test", "testing": "test", "test_set": "test", "tst": "test",
}
_VIDEO_EXT = re.compile(r"\.(mp4|avi|mkv|mov|webm|m4v|wav)$", re.IGNORECASE)


def normalize_split(value: object) -> str | None:
    """``"Train"`` / ``"devel"`` / ``"Val"`` / ... → ``"train"`` / ``"dev"`` / ``"test"``; None if unknown."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return _SPLIT_ALIASES.get(str(value).strip().lower())


def _clean_id(value: object) -> str:
    """Video id as a string: surrounding whitespace and ``[...]`` brackets (Hume-Reaction) removed."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    s = str(value).strip()
    if len(s) >= 2 and s[0] == "[" and s[-1] == "]":
        s = s[1:-1].strip()
    return s


@dataclass
class Labels:
    """Labels of one dataset for one task.

    Attributes:
        task: what is predicted.
        table: ``video_id``, ``split``, [``frame``], target columns (see the module docstring).
        report: one line per dropped row or group of rows (``on_error="drop"``) and other remarks.
        source: the file or folder read.
        unlabelled: frame-level only: frames skipped because every target was the ignore value.
    """

    task: TaskSpec
    table: pd.DataFrame
    report: list[str] = field(default_factory=list)
    source: str | None = None
    unlabelled: int = 0

    @property
    def frame_level(self) -> bool:
        return self.task.resolution == "frame"

    @property
    def target_columns(self) -> list[str]:
        return ["label"] if self.task.is_classification else list(self.task.targets)

    @property
    def splits(self) -> list[str]:
        return [s for s in SPLITS if (self.table["split"] == s).any()]

    def video_ids(self, split: str | Sequence[str] | None = None) -> list[str]:
        """Unique video ids (in table order), optionally of one split or several."""
        t = self.table if split is None else self.table[self.table["split"].isin(_as_splits(split))]
        return list(pd.unique(t["video_id"]))

    def for_split(self, split: str | Sequence[str]) -> "Labels":
        """The rows of one split (or several), as a new :class:`Labels`."""
        t = self.table[self.table["split"].isin(_as_splits(split))].reset_index(drop=True)
        return replace(self, table=t)

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        counts = self.table.groupby("split")["video_id"].nunique().to_dict()
        return (f"Labels(task={self.task.name!r}, rows={len(self.table)}, videos per split={counts}, "
                f"dropped={len(self.report)})")


def _as_splits(split: str | Sequence[str]) -> list[str]:
    names = [split] if isinstance(split, str) else list(split)
    out = []
    for s in names:
        n = normalize_split(s)
        if n is None:
            raise ValueError(f"unknown split {s!r}; splits are {SPLITS} (aliases: {sorted(_SPLIT_ALIASES)})")
        out.append(n)
    return out


# -- validation ---------------------------------------------------------------------------------------
class _Problems:
    """Collects (file, line, message) per bad row; raises or drops at the end."""

    def __init__(self, on_error: str) -> None:
        if on_error not in ("raise", "drop"):
            raise ValueError(f"on_error must be 'raise' or 'drop', got {on_error!r}")
        self.on_error = on_error
        self.items: list[tuple[str, int, str]] = []

    def add(self, file: str, line: int, message: str) -> None:
        self.items.append((file, int(line), message))

    def add_rows(self, df: pd.DataFrame, bad: np.ndarray, message_fn) -> None:
        for i in np.flatnonzero(bad):
            row = df.iloc[i]
            self.add(row["_file"], row["_line"], message_fn(row))

    def finish(self) -> list[str]:
        if not self.items:
            return []
        lines = [f"{f}, line {ln}: {m}" for f, ln, m in sorted(self.items, key=lambda x: (x[0], x[1]))]
        if self.on_error == "raise":
            more = f" (and {len(lines) - 1} more bad row(s); on_error='drop' drops them)" if len(lines) > 1 else ""
            raise LabelError(lines[0] + more)
        return [f"dropped: {ln}" for ln in lines]


def _fmt(v: object) -> str:
    """A raw cell for a message: numbers as written, other text quoted, empty as 'nothing'."""
    if v is None or (isinstance(v, float) and np.isnan(v)) or (isinstance(v, str) and not v.strip()):
        return "nothing"
    if isinstance(v, str):
        try:
            float(v)
            return v.strip()
        except ValueError:
            return repr(v)
    return f"{v}"


def _validate(task: TaskSpec, df: pd.DataFrame, on_error: str, report: list[str],
              source: str) -> tuple[pd.DataFrame, int]:
    """Check a raw table (``video_id``, ``split``, [``frame``], targets, ``_file``, ``_line``).

    Returns the clean table in the documented layout and the number of skipped unlabelled frames.
    """
    probs = _Problems(on_error)
    frame_level = task.resolution == "frame"
    n = len(df)
    bad = np.zeros(n, dtype=bool)

    ids = df["video_id"].map(_clean_id)
    df = df.assign(video_id=ids)
    b = (ids == "").to_numpy()
    probs.add_rows(df, b, lambda r: "missing video id")
    bad |= b

    split = df["split"].map(normalize_split)
    b = split.isna().to_numpy() & ~bad
    probs.add_rows(df, b, lambda r: f"unknown split {_fmt(r['split'])}; expected one of train / dev / test "
                                    f"(or an alias: Train, Val, devel, validation, ...)")
    bad |= b
    df = df.assign(split=split)

    if frame_level:
        fr = pd.to_numeric(df["frame"], errors="coerce")
        b = (fr.isna() | (fr < 0) | (fr != np.floor(fr))).to_numpy() & ~bad
        probs.add_rows(df, b, lambda r: f"frame must be an integer >= 0, got {_fmt(r['frame'])}")
        bad |= b
        df = df.assign(frame=fr)

    unlabelled = np.zeros(n, dtype=bool)
    if task.is_classification:
        raw = df["label"]
        val = _class_indices(raw, task)
        ign = None if task.ignore_value is None else int(task.ignore_value)
        ok = val.notna() & (((val >= 0) & (val < task.num_outputs)) | (val == ign if ign is not None else False))
        b = ~ok.to_numpy() & ~bad
        probs.add_rows(df, b, lambda r: f"label must be a class of {list(task.targets)} (name or index 0.."
                                        f"{task.num_outputs - 1}{'' if ign is None else f', {ign} = unlabelled'}), "
                                        f"got {_fmt(r['label'])}")
        bad |= b
        if ign is not None:
            unlabelled = (val == ign).to_numpy() & ~bad
        df = df.assign(label=val)
    else:
        ign = task.ignore_value
        all_ign = np.ones(n, dtype=bool)
        for col in task.targets:
            raw = df[col]
            v = pd.to_numeric(raw, errors="coerce")
            nan = v.isna().to_numpy()
            is_ign = (v == ign).to_numpy() if ign is not None else np.zeros(n, dtype=bool)
            all_ign &= is_ign
            b = nan & ~bad
            probs.add_rows(df, b, lambda r, c=col: f"target {c!r} is missing or not a number, got {_fmt(r[c])}")
            bad |= b
            if task.value_range is not None:
                lo, hi = task.value_range
                b = ((v < lo) | (v > hi)).to_numpy() & ~is_ign & ~bad
                extra = "" if ign is None else f" (or {ign} = unlabelled)"
                probs.add_rows(df, b, lambda r, c=col: f"target {c!r} must be in [{lo}, {hi}]{extra}, got {_fmt(r[c])}")
                bad |= b
            df = df.assign(**{col: v})
        if frame_level and ign is not None:
            unlabelled = all_ign & ~bad

    keys = ["video_id", "frame"] if frame_level else ["video_id"]
    keep = ~bad
    dup = np.zeros(n, dtype=bool)
    dup[keep] = df.loc[keep].duplicated(subset=keys, keep="first").to_numpy()
    if dup.any():
        first_line = df.loc[keep].drop_duplicates(subset=keys, keep="first").set_index(keys)["_line"]

        def msg(r):
            if frame_level:
                k = (r["video_id"], r["frame"])
                return (f"duplicate frame {int(r['frame'])} of video {r['video_id']!r} "
                        f"(first at line {first_line.loc[k]})")
            return f"duplicate id {r['video_id']!r} (first at line {first_line.loc[r['video_id']]})"

        probs.add_rows(df, dup, msg)
        bad |= dup

    report.extend(probs.finish())
    keep = ~bad & ~unlabelled
    out = df.loc[keep]
    cols = ["video_id", "split"] + (["frame"] if frame_level else []) + (
        ["label"] if task.is_classification else list(task.targets))
    out = out[cols].reset_index(drop=True)
    out["video_id"] = out["video_id"].astype(str)
    if frame_level:
        out["frame"] = out["frame"].astype(np.int64)
        out = out.sort_values(["video_id", "frame"], kind="stable").reset_index(drop=True)
    if task.is_classification:
        out["label"] = out["label"].astype(np.int64)
    else:
        out[list(task.targets)] = out[list(task.targets)].astype(np.float64)
    if out.empty:
        raise LabelError(f"{source}: no usable labelled rows for task {task.name!r}")
    return out, int(unlabelled.sum())


def _class_indices(raw: pd.Series, task: TaskSpec) -> pd.Series:
    """Class names (case-insensitive) or integer indices → float indices (NaN where neither)."""
    names = {c.lower(): i for i, c in enumerate(task.targets)}

    def one(v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return np.nan
        s = str(v).strip()
        if s.lower() in names:
            return float(names[s.lower()])
        try:
            f = float(s)
        except ValueError:
            return np.nan
        return f if f == int(f) else np.nan

    return raw.map(one).astype(np.float64)


def _read_table(path: Path, *, sep: str | None = ",", dtype=str) -> pd.DataFrame:
    if not path.is_file():
        raise LabelError(f"{path}: label file not found")
    try:
        if sep is None:
            df = pd.read_csv(path, sep=r"[,\s]+", engine="python", dtype=dtype, keep_default_na=False,
                             na_values=[""])
        else:
            df = pd.read_csv(path, sep=sep, dtype=dtype, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise LabelError(f"{path}: cannot be read as a table: {e}") from None
    df.columns = [str(c).strip() for c in df.columns]
    df["_file"] = str(path)
    df["_line"] = np.arange(len(df)) + 2  # line 1 is the header
    return df


def _column(df: pd.DataFrame, path: Path, candidates: Sequence[str], what: str) -> str:
    lower = {c.lower(): c for c in df.columns}
    for c in candidates:
        if c.lower() in lower:
            return lower[c.lower()]
    cols = [c for c in df.columns if not c.startswith("_")]
    raise LabelError(f"{path}: no {what} column; expected one of {list(candidates)}, found columns {cols}")


def _require(df: pd.DataFrame, path: Path, names: Iterable[str]) -> pd.DataFrame:
    lower = {c.lower(): c for c in df.columns}
    missing = [n for n in names if n.lower() not in lower]
    if missing:
        cols = [c for c in df.columns if not c.startswith("_")]
        raise LabelError(f"{path}: missing target column(s) {missing}; found columns {cols}")
    return df.rename(columns={lower[n.lower()]: n for n in names})


# -- Hume-Reaction -------------------------------------------------------------------------------------
def read_viper_csv(path: str | Path, *, on_error: str = "raise") -> Labels:
    """Hume-Reaction as ViPER reads it: ``data_info.csv`` with ``Split``, ``File_ID``, the 7 emotions.

    ``File_ID`` is bracketed (``[00001]``); brackets are stripped so ids match the video file stems.
    ``Split`` ``Train`` / ``Val`` / ``Test`` become ``train`` / ``dev`` / ``test``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "data_info.csv"
    task = TASKS["reaction"]
    df = _read_table(path)
    idc = _column(df, path, ["File_ID", "id", "video_id"], "id")
    spc = _column(df, path, ["Split", "Partition"], "split")
    df = _require(df, path, task.targets)
    df = df.rename(columns={idc: "video_id", spc: "split"})
    report: list[str] = []
    table, _ = _validate(task, df, on_error, report, str(path))
    return Labels(task=task, table=table, report=report, source=str(path))


def read_muse_reaction(folder: str | Path, *, on_error: str = "raise") -> Labels:
    """MuSe 2022 Reaction layout: ``labels.csv`` (``File_ID`` + 7 emotions) and ``partition.csv``.

    ``partition.csv`` has an id column (``File_ID`` or ``Id``) and ``Split`` or ``Partition``
    (``train`` / ``devel`` / ``test``; ``devel`` → ``dev``). Videos of the partition without labels (the
    test split) are not in the table; the report says how many.
    """
    folder = Path(folder)
    task = TASKS["reaction"]
    lab_path, part_path = folder / "labels.csv", folder / "partition.csv"
    lab = _read_table(lab_path)
    part = _read_table(part_path)
    lab = _require(lab, lab_path, task.targets)
    lab = lab.rename(columns={_column(lab, lab_path, ["File_ID", "Id", "id", "video_id"], "id"): "video_id"})
    part = part.rename(columns={_column(part, part_path, ["File_ID", "Id", "id", "video_id"], "id"): "video_id",
                                _column(part, part_path, ["Split", "Partition", "split"], "split"): "split"})
    part_ids = part["video_id"].map(_clean_id)
    if part_ids.duplicated().any():
        d = part.loc[part_ids.duplicated(), ["_line"]].iloc[0]
        raise LabelError(f"{part_path}, line {d['_line']}: duplicate id {part_ids[part_ids.duplicated()].iloc[0]!r}")
    split_of = dict(zip(part_ids, part["split"]))
    ids = lab["video_id"].map(_clean_id)
    lab["split"] = [split_of.get(i, "<not in partition.csv>") for i in ids]
    report: list[str] = []
    table, _ = _validate(task, lab, on_error, report, str(lab_path))
    n_unlab = len(set(part_ids) - set(ids))
    if n_unlab:
        report.append(f"note: {n_unlab} video(s) of {part_path} have no row in {lab_path.name} (e.g. the test "
                      f"split); they are not in the table")
    return Labels(task=task, table=table, report=report, source=str(folder))


# -- Aff-Wild2 ------------------------------------------------------------------------------------------
_AFFWILD_SETS = {"Train_Set": "train", "Validation_Set": "dev", "Test_Set": "test"}


def _affwild_root(folder: Path, task: str) -> Path:
    if any((folder / s).is_dir() for s in _AFFWILD_SETS):
        return folder
    prefix = {"va": "VA", "expr": "EXPR"}[task]
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.upper().startswith(prefix)) \
        if folder.is_dir() else []
    for s in subs:
        if any((s / x).is_dir() for x in _AFFWILD_SETS):
            return s
    found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else "no folder"
    raise LabelError(f"{folder}: expected Aff-Wild2 annotation folders {list(_AFFWILD_SETS)} (or a "
                     f"'{prefix}_*' folder holding them), found {found}")


def read_affwild2(folder: str | Path, task: str = "va", *, on_error: str = "raise") -> Labels:
    """ABAW Aff-Wild2 annotations: ``Train_Set/`` and ``Validation_Set/`` (optional ``Test_Set/``).

    One ``<video>.txt`` per video. VA: first line ``valence,arousal``, then one ``v,a`` line per frame,
    ``-5`` = unlabelled. EXPR: first line the class list (``Neutral,Anger,...,Other``), then one integer per
    frame, ``-1`` = unlabelled. Line ``i + 2`` of a file is frame index ``i`` (0-based) of the video.
    ``folder`` may also be the ``Annotations`` folder holding ``VA_Estimation_Challenge`` /
    ``EXPR_Classification_Challenge``.
    """
    if task not in ("va", "expr"):
        raise ValueError(f"read_affwild2: task must be 'va' or 'expr', got {task!r}")
    spec = TASKS[task]
    root = _affwild_root(Path(folder), task)
    frames: list[pd.DataFrame] = []
    report: list[str] = []
    for set_name, split in _AFFWILD_SETS.items():
        d = root / set_name
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.txt")):
            df = _read_affwild_file(f, spec, on_error, report)
            if df is not None:
                df["video_id"], df["split"] = f.stem, split
                frames.append(df)
    if not frames:
        raise LabelError(f"{root}: no <video>.txt annotation files in {[s for s in _AFFWILD_SETS]}")
    raw = pd.concat(frames, ignore_index=True)
    table, unl = _validate(spec, raw, on_error, report, str(root))
    return Labels(task=spec, table=table, report=report, source=str(root), unlabelled=unl)


def _read_affwild_file(f: Path, spec: TaskSpec, on_error: str, report: list[str]) -> pd.DataFrame | None:
    with open(f, encoding="utf-8-sig") as fh:
        header = fh.readline().strip()
        body = fh.read()
    expected = ["valence", "arousal"] if spec.name == "va" else [c.lower() for c in spec.targets]
    got = [h.strip().lower() for h in header.split(",")]
    if got != expected:
        msg = (f"{f}, line 1: expected the header {','.join(expected if spec.name == 'va' else spec.targets)}, "
               f"got {header!r}")
        if on_error == "raise":
            raise LabelError(msg)
        report.append(f"dropped file: {msg}")
        return None
    lines = body.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if spec.name == "va":
        parts = [ln.split(",") for ln in lines]
        val = [p[0] if len(p) == 2 else "" for p in parts]
        aro = [p[1] if len(p) == 2 else "" for p in parts]
        df = pd.DataFrame({"valence": val, "arousal": aro})
    else:
        df = pd.DataFrame({"label": [ln.strip() for ln in lines]})
    df["frame"] = np.arange(len(df))
    df["_file"], df["_line"] = str(f), np.arange(len(df)) + 2
    return df


# -- VGAF ------------------------------------------------------------------------------------------------
def read_vgaf(folder_or_files: str | Path | Sequence[str | Path], *, on_error: str = "raise") -> Labels:
    """VGAF group emotion: ``Train_labels.txt`` / ``Val_labels.txt`` (``Vid_name``, ``Label``).

    Whitespace- or comma-separated with a header. ``Label`` 1 / 2 / 3 → Positive / Neutral / Negative =
    class index 0 / 1 / 2. The split comes from the file name (``Train`` / ``Val`` / ``Test``); a video
    extension in ``Vid_name`` (``.mp4``) is removed so ids match the file stems.
    """
    if isinstance(folder_or_files, (str, Path)) and Path(folder_or_files).is_dir():
        d = Path(folder_or_files)
        files = sorted(p for p in d.iterdir() if p.is_file() and re.search(r"(train|val|test)\w*_labels\.txt$",
                                                                             p.name, re.IGNORECASE))
        if not files:
            raise LabelError(f"{d}: expected Train_labels.txt / Val_labels.txt, found "
                             f"{sorted(p.name for p in d.iterdir())}")
    elif isinstance(folder_or_files, (str, Path)):
        files = [Path(folder_or_files)]
    else:
        files = [Path(p) for p in folder_or_files]
    task = TASKS["group"]
    parts = []
    for f in files:
        m = re.match(r"(train|val|validation|test)", f.name, re.IGNORECASE)
        if m is None:
            raise LabelError(f"{f}: cannot tell the split from the file name; expected Train_labels.txt, "
                             f"Val_labels.txt or Test_labels.txt")
        df = _read_table(f, sep=None)
        vid = _column(df, f, ["Vid_name", "video_id", "id"], "video name")
        lab = _column(df, f, ["Label"], "label")
        num = pd.to_numeric(df[lab], errors="coerce")
        # 1..3 → 0..2; anything else stays out of range and is reported with the original value
        df = df.rename(columns={vid: "video_id"})
        ok = num.isin([1, 2, 3])
        df["label"] = pd.Series([float(x) - 1 if g else f"Label {v} (expected 1, 2 or 3)"
                                 for x, g, v in zip(num, ok, df[lab])], index=df.index, dtype=object)
        df["video_id"] = df["video_id"].map(lambda s: _VIDEO_EXT.sub("", _clean_id(s)))
        df["split"] = m.group(1)
        parts.append(df)
    raw = pd.concat(parts, ignore_index=True)
    report: list[str] = []
    table, _ = _validate(task, raw, on_error, report, ", ".join(map(str, files)))
    return Labels(task=task, table=table, report=report, source=", ".join(map(str, files)))


# -- generic ---------------------------------------------------------------------------------------------
def read_labels_csv(path: str | Path, task: "str | TaskSpec | None" = None, targets: Sequence[str] | None = None,
                    *, id_column: str | None = None, split_column: str = "split", frame_column: str = "frame",
                    on_error: str = "raise", name: str | None = None) -> Labels:
    """A generic label CSV: an id (``id`` or ``video_id``), ``split``, targets, optional ``frame``.

    Args:
        task: a built-in name or a spec; None builds one: classification when ``targets`` (or the only
            remaining column) is one non-numeric column (classes = its sorted distinct values), else
            regression over the target columns; frame level when a ``frame`` column exists.
        targets: target column names; default: the task's targets (regression), a ``label`` / ``class``
            column (classification), or every column besides id / split / frame.
        id_column: the id column (default ``id`` or ``video_id``).
        split_column: the split column (values train / dev / test or aliases: Train, Val, devel, ...).
        frame_column: the frame-index column of frame-level labels.
        name: name of a generated task (default: the file stem).
    """
    path = Path(path)
    df = _read_table(path)
    idc = id_column if id_column else _column(df, path, ["id", "video_id", "File_ID"], "id")
    if idc not in df.columns:
        found = [c for c in df.columns if not c.startswith("_")]
        raise LabelError(f"{path}: no id column {idc!r}; found columns {found}")
    spc = _column(df, path, [split_column], "split")
    has_frame = frame_column in df.columns
    reserved = {idc, spc, "_file", "_line"} | ({frame_column} if has_frame else set())
    rest = [c for c in df.columns if c not in reserved]

    if task is not None:
        spec = get_task(task)
        if spec.is_classification:
            col = targets[0] if targets else next((c for c in rest if c.lower() in ("label", "class", spec.name)), None)
            if col is None or col not in df.columns:
                raise LabelError(f"{path}: task {spec.name!r} needs a label column (label / class, or pass "
                                 f"targets=[name]); found columns {rest}")
            df = df.rename(columns={col: "label"})
        else:
            cols = list(targets) if targets else list(spec.targets)
            if len(cols) != spec.num_outputs:
                raise ValueError(f"task {spec.name!r} has {spec.num_outputs} targets, got columns {cols}")
            df = _require(df, path, cols)
            df = df.rename(columns=dict(zip(cols, spec.targets)))
    else:
        cols = list(targets) if targets else rest
        if not cols:
            raise LabelError(f"{path}: no target columns besides {sorted(reserved - {'_file', '_line'})}")
        df = _require(df, path, cols)
        numeric = all(pd.to_numeric(df[c], errors="coerce").notna().sum() >= df[c].notna().sum() * 0.5
                      for c in cols)
        resolution = "frame" if has_frame else "clip"
        if len(cols) == 1 and not numeric:
            classes = tuple(sorted(str(v).strip() for v in df[cols[0]].dropna().unique()))
            spec = TaskSpec(name=name or path.stem, problem="multiclass", resolution=resolution, targets=classes,
                            loss="cross_entropy", metrics=("macro_f1", "accuracy", "uar")).validate()
            df = df.rename(columns={cols[0]: "label"})
        else:
            spec = TaskSpec(name=name or path.stem, problem="regression", resolution=resolution,
                            targets=tuple(cols), loss="mse",
                            metrics=("mean_ccc", "mean_pearson", "mse") if has_frame else
                            ("mean_pearson", "mean_ccc", "mse")).validate()
    if spec.resolution == "frame" and not has_frame:
        raise LabelError(f"{path}: task {spec.name!r} is frame level and needs a {frame_column!r} column")
    df = df.rename(columns={idc: "video_id", spc: "split", **({frame_column: "frame"} if has_frame else {})})
    if spec.resolution == "clip" and has_frame:
        raise LabelError(f"{path}: task {spec.name!r} is clip level but the file has a {frame_column!r} column")
    report: list[str] = []
    table, unl = _validate(spec, df, on_error, report, str(path))
    return Labels(task=spec, table=table, report=report, source=str(path), unlabelled=unl)


def load_labels(path: str | Path, task: "str | TaskSpec | None" = None, **kwargs) -> Labels:
    """Read labels, choosing the reader from what ``path`` is.

    * a folder with ``Train_Set`` / ``Validation_Set`` (or ``VA_*`` / ``EXPR_*`` folders) → Aff-Wild2
      (``task`` "va" or "expr"; guessed from the folder names or the first file's header when None);
    * a folder with ``labels.csv`` and ``partition.csv`` → MuSe 2022 Reaction;
    * a folder with ``*_labels.txt`` or such a file → VGAF;
    * ``data_info.csv`` (or a folder holding it), or a CSV with ``File_ID`` and ``Split`` → ViPER's Hume-Reaction;
    * any other CSV → :func:`read_labels_csv`.
    """
    p = Path(path)
    tname = task.name if isinstance(task, TaskSpec) else task
    if p.is_dir():
        names = {c.name for c in p.iterdir()}
        lowered = {n.lower() for n in names}
        if names & set(_AFFWILD_SETS) or any(n.upper().startswith(("VA_", "EXPR_")) for n in names):
            return read_affwild2(p, tname or _guess_affwild_task(p), **kwargs)
        if {"labels.csv", "partition.csv"} <= lowered:
            return read_muse_reaction(p, **kwargs)
        if any(n.endswith("_labels.txt") for n in lowered):
            return read_vgaf(p, **kwargs)
        if "data_info.csv" in lowered:
            return read_viper_csv(p / "data_info.csv", **kwargs)
        raise LabelError(f"{p}: not a known label layout (Aff-Wild2 Train_Set/Validation_Set, MuSe labels.csv + "
                         f"partition.csv, VGAF *_labels.txt, data_info.csv); found {sorted(names)}")
    if not p.is_file():
        raise LabelError(f"{p}: label file or folder not found")
    if p.name.lower().endswith("_labels.txt"):
        return read_vgaf(p, **kwargs)
    with open(p, encoding="utf-8-sig") as fh:
        header = [h.strip().lower() for h in fh.readline().split(",")]
    if p.name.lower() == "data_info.csv" or ({"file_id", "split"} <= set(header) and tname in (None, "reaction")):
        return read_viper_csv(p, **kwargs)
    return read_labels_csv(p, task, **kwargs)


def _guess_affwild_task(p: Path) -> str:
    up = p.name.upper()
    if up.startswith("VA"):
        return "va"
    if up.startswith("EXPR"):
        return "expr"
    root = _affwild_root(p, "va") if any(c.name.upper().startswith("VA_") for c in p.iterdir()) else p
    for s in _AFFWILD_SETS:
        for f in sorted((root / s).glob("*.txt"))[:1] if (root / s).is_dir() else []:
            with open(f, encoding="utf-8-sig") as fh:
                return "va" if fh.readline().strip().lower().replace(" ", "") == "valence,arousal" else "expr"
    raise LabelError(f"{p}: cannot tell whether these Aff-Wild2 annotations are VA or EXPR; pass task='va' or 'expr'")
