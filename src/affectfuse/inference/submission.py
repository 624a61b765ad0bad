"""Challenge submission files from a run's predictions: the formats the organisers ask for, checked before writing.

``write_submission(run, "abaw_va", "sub/")`` reads the run's ``predictions/<split>.csv`` (a run folder, a
multi-seed folder's ensemble, or a predictions CSV in :attr:`~affectfuse.types.Prediction.RUN` layout such as
``affectfuse predict --run`` writes), checks it against the format and writes the files, with a
``format.yaml`` that records the format, its sources, the run, its config fingerprint and the counts.

Formats (:data:`FORMATS`; ``affectfuse submit --list``):

* ``muse_reaction`` / ``abaw_eri`` — Hume-Reaction (MuSe 2022, ABAW5 ERI): ``predictions.csv``, one row per clip,
  ``File_ID`` (bracketed, ``[00012]``) then the seven intensities in [0, 1];
* ``abaw_va`` / ``abaw_expr`` — Aff-Wild2, ABAW 1st–4th editions: one ``<video>.txt`` per video, a header line
  (``valence,arousal`` / the eight class names), then one line per frame of the video from frame 1;
* ``abaw5_va`` / ``abaw5_expr`` — Aff-Wild2, ABAW 5th edition on: one ``predictions.txt``, header
  ``image_location,...``, one line per frame named ``VIDEO/00001.jpg`` (frame 1), in the order of the organisers'
  sample file when it is given (``frame_counts=`` / ``--frames``);
* ``emotiw_vgaf`` — EmotiW group emotion (VGAF): ``predictions.txt``, ``Vid_name Label``, label 1 / 2 / 3 =
  Positive / Neutral / Negative.

Checks (all run before anything is written; every problem found is listed, first ids and the count):
every expected id present exactly once (the ``expected_ids`` list, else the run's labelled split, else the
predicted ids; predicted ids outside the list are left out and counted), every frame of every video covered
(the video's frames from ``frame_counts``, else the frame counts the feature store recorded, else frames 0 to
the last predicted one), values finite and in the format's range (``clip=True`` clips instead of refusing,
counted), classes among the format's. ``fill="nearest"`` fills a frame without a prediction (no face, not
sampled) from the nearest predicted frame of the same video, counted; without it a missing frame is refused.

Frames: the package numbers frames from 0 (``frame`` of frame-level labels and predictions); the organisers
number images from 1, so frame ``i`` is line ``i + 2`` of a per-video file and ``VIDEO/{i+1:05d}.jpg``.

This module sits in ``inference/`` (not ``tasks/``) because it reads run folders and labels, which live above
``tasks/`` in the import order; it never imports :mod:`affectfuse.training`.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import yaml

from affectfuse.errors import AffectfuseError, writing
from affectfuse.inference.run_folder import RunFolder
from affectfuse.inference.submission_formats import (FORMATS, SubmissionError, SubmissionFormat, get_format,
                                                     list_formats)
from affectfuse.types import Prediction

__all__ = ["SubmissionFormat", "SubmissionError", "Submission", "FORMATS", "get_format", "list_formats",
           "write_submission", "load_predictions", "read_id_list", "read_frame_list", "FORMAT_FILE"]

FORMAT_FILE = "format.yaml"
_SHOW = 5  # ids / frames named in a message before "(+N more)"
_VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm")


@dataclass
class Submission:
    """What :func:`write_submission` wrote.

    Attributes:
        out: the folder.
        format: the format.
        files: the files written (``format.yaml`` last).
        record: the contents of ``format.yaml``.
    """

    out: Path
    format: SubmissionFormat
    files: list[Path]
    record: dict[str, Any] = field(default_factory=dict)


# -- reading the predictions ---------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_predictions(run: "str | Path | RunFolder | Prediction | Any", split: str = "test"
                     ) -> tuple[Prediction, dict[str, Any]]:
    """The predictions of one split and where they came from.

    Args:
        run: a run folder, a multi-seed folder (its ensemble ``predictions/<split>.csv``; where none is written,
            the mean of the seeds' predictions), a predictions CSV (RUN layout), a loaded
            :class:`~affectfuse.inference.run.Run`, or a :class:`Prediction`.
        split: the split.

    Returns:
        the prediction and a provenance dict (``kind``, ``run``, ``predictions``, ``predictions_sha256``,
        ``config_sha256``, and ``folders``: the run folders whose labels and store describe the videos).

    Raises:
        SubmissionError: no predictions for the split (names the splits there are).
    """
    if isinstance(run, Prediction):
        return run, {"kind": "prediction", "run": None, "folders": []}
    path = Path(getattr(run, "path", run))
    if path.is_file():
        return Prediction.read(path), {"kind": "predictions_file", "run": str(path.resolve()),
                                       "predictions": str(path.resolve()), "predictions_sha256": _sha256(path),
                                       "folders": []}
    if not path.is_dir():
        raise SubmissionError(f"{path}: no such run folder or predictions file")
    folder = RunFolder(path)
    seeds = sorted((p for p in path.glob("seed_*") if RunFolder(p).has(RunFolder.MODEL)), key=lambda p: p.name)
    if not folder.has(RunFolder.MODEL) and seeds:
        info: dict[str, Any] = {"kind": "seeds", "run": str(path.resolve()), "folders": seeds,
                                "config_sha256": {p.name: _sha256(p / RunFolder.CONFIG) for p in seeds
                                                  if RunFolder(p).has(RunFolder.CONFIG)}}
        if folder.predictions_file(split).exists():
            f = folder.predictions_file(split)
            return folder.read_predictions(split), {**info, "predictions": str(f.resolve()),
                                                    "predictions_sha256": _sha256(f),
                                                    "ensemble": "written by train_seeds"}
        have = [p for p in seeds if RunFolder(p).predictions_file(split).exists()]
        if not have:
            raise SubmissionError(f"{path}: no seed has predictions/{split}.csv (seeds: {[p.name for p in seeds]})")
        pred = Prediction.mean([RunFolder(p).read_predictions(split) for p in have])
        return pred, {**info, "predictions": [str(RunFolder(p).predictions_file(split).resolve()) for p in have],
                      "predictions_sha256": {p.name: _sha256(RunFolder(p).predictions_file(split)) for p in have},
                      "ensemble": f"mean of {len(have)} seeds' scores, computed here"}
    if not folder.is_run_folder():
        raise SubmissionError(f"{path}: not an affectfuse run folder (no {', '.join(RunFolder.MARKERS)})")
    f = folder.predictions_file(split)
    if not f.exists():
        raise SubmissionError(f"{path}: no predictions/{split}.csv; the run has predictions for "
                              f"{folder.prediction_splits() or 'no split'} (make them with `affectfuse evaluate RUN "
                              f"--split {split}` or `affectfuse predict --run RUN`, then submit the CSV)")
    info = {"kind": "run", "run": str(path.resolve()), "folders": [path], "predictions": str(f.resolve()),
            "predictions_sha256": _sha256(f),
            "config_sha256": _sha256(folder.file(RunFolder.CONFIG)) if folder.has(RunFolder.CONFIG) else None}
    return folder.read_predictions(split), info


def _norm_id(value: Any, strip_ext: bool = False) -> str:
    s = str(value).strip()
    if len(s) >= 2 and s[0] == "[" and s[-1] == "]":
        s = s[1:-1].strip()
    if strip_ext and s.lower().endswith(_VIDEO_EXTS):
        s = s[: s.rfind(".")]
    return s


def _few(items: Sequence[Any], n: int = _SHOW) -> str:
    items = list(items)
    shown = ", ".join(str(x) for x in items[:n])
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")


_ID_HEADERS = ("file_id", "video_id", "vid_name", "id", "video", "name")
_SPLIT_HEADERS = ("split", "partition")
_COUNT_HEADERS = ("n_frames", "frames", "frame_count", "num_frames", "nb_frames")


def _header(path: Path) -> tuple[list[str], str]:
    text = path.read_text()
    first = text.splitlines()[0] if text.strip() else ""
    return [t for t in re.split(r"[,;\s]+", first.strip()) if t], text


def read_id_list(path: str | Path, *, split: str | None = None, strip_ext: bool = False) -> list[str]:
    """The expected ids from a file: one id per line (the organisers' list of test videos), or a table with an id
    column (``File_ID``, ``video_id``, ``Vid_name``, ``id``; rows of other splits left out when it has a
    ``split`` / ``partition`` column and ``split`` is given). Brackets (``[00012]``) are removed.

    Raises:
        SubmissionError: an empty list, or an id listed twice.
    """
    import pandas as pd  # heavy: only when a list is read

    from affectfuse.data.labels import normalize_split

    path = Path(path)
    tokens, text = _header(path)
    low = [t.lower() for t in tokens]
    if any(t in _ID_HEADERS for t in low):
        df = pd.read_csv(path, sep=None, engine="python", dtype=str)
        cols = {str(c).strip().lower(): c for c in df.columns}
        idc = cols[next(t for t in _ID_HEADERS if t in cols)]
        spc = next((cols[t] for t in _SPLIT_HEADERS if t in cols), None)
        if spc is not None and split is not None:
            df = df[df[spc].map(normalize_split) == normalize_split(split)]
        ids = [_norm_id(v, strip_ext) for v in df[idc].dropna()]
    else:
        ids = [_norm_id(line.split()[0].rstrip(","), strip_ext) for line in text.splitlines() if line.strip()]
    if not ids:
        raise SubmissionError(f"{path}: no ids" + (f" of split {split!r}" if split else ""))
    dup = [v for v, c in Counter(ids).items() if c > 1]
    if dup:
        raise SubmissionError(f"{path}: {len(dup)} id(s) listed more than once: {_few(dup)}")
    return ids


#: per video: (0-based frames in file order, image names or None)
FrameList = dict[str, tuple[np.ndarray, list[str] | None]]


def read_frame_list(path: str | Path) -> FrameList:
    """The frames each video must have, from the organisers' sample file (``image_location`` column,
    ``VIDEO/00001.jpg`` rows: the frames, their order and names) or a table of frame counts (an id column and
    ``n_frames``: frames ``0 .. n-1``).

    Raises:
        SubmissionError: neither form, or an unreadable row (names the line).
    """
    import pandas as pd  # heavy: only when a list is read

    path = Path(path)
    tokens, text = _header(path)
    low = [t.lower() for t in tokens]
    if "image_location" in low:
        out: dict[str, tuple[list[int], list[str]]] = {}
        for lineno, line in enumerate(text.splitlines()[1:], start=2):
            loc = line.split(",")[0].strip()
            if not loc:
                continue
            m = re.fullmatch(r"(.+)/(\d+)\.\w+", loc)
            if m is None or int(m.group(2)) < 1:
                raise SubmissionError(f"{path} line {lineno}: image_location must be VIDEO/NNNNN.jpg (frames from 1), "
                                      f"got {loc!r}")
            frames, names = out.setdefault(m.group(1), ([], []))
            frames.append(int(m.group(2)) - 1)
            names.append(loc)
        return {v: (np.asarray(f, np.int64), n) for v, (f, n) in out.items()}
    if any(t in _ID_HEADERS for t in low) and any(t in _COUNT_HEADERS for t in low):
        df = pd.read_csv(path, sep=None, engine="python", dtype=str)
        cols = {str(c).strip().lower(): c for c in df.columns}
        idc = cols[next(t for t in _ID_HEADERS if t in cols)]
        nc = cols[next(t for t in _COUNT_HEADERS if t in cols)]
        res: FrameList = {}
        for i, (v, n) in enumerate(zip(df[idc], df[nc]), start=2):
            if not str(n).strip().isdigit():
                raise SubmissionError(f"{path} line {i}: frame count of {v!r} must be an integer >= 0, got {n!r}")
            res[_norm_id(v)] = (np.arange(int(n), dtype=np.int64), None)
        return res
    raise SubmissionError(f"{path}: expected the organisers' sample file (an image_location column) or a table with "
                          f"an id column and n_frames; the first line is {' '.join(tokens) or 'empty'!s}")


def _frames_from(spec: Any) -> FrameList:
    """``frame_counts`` as given: a file, {video: count} or {video: frames}."""
    if isinstance(spec, (str, Path)):
        return read_frame_list(spec)
    out: FrameList = {}
    for v, n in dict(spec).items():
        frames = np.arange(int(n), dtype=np.int64) if np.ndim(n) == 0 else np.asarray(n, np.int64)
        out[_norm_id(v)] = (frames, None)
    return out


# -- what the run says about its videos ------------------------------------------------------------------
def _label_ids(folders: Sequence[Path], split: str) -> tuple[list[str] | None, str]:
    """The ids of ``split`` in the labels the run was trained with (None + why when they cannot be read)."""
    if not folders:
        return None, "no run folder: ids checked for duplicates only"
    folder = RunFolder(folders[0])
    src = folder.read_data().get("labels")
    if not src or not Path(src).exists():
        return None, f"the run's labels ({src}) are not readable here: ids checked for duplicates only"
    from affectfuse.inference.run import labels_for  # heavy: torch

    try:
        lab = labels_for(folder.read_config(), src)
    except (AffectfuseError, ValueError, KeyError, OSError) as e:
        return None, f"the run's labels ({src}) could not be read ({e}): ids checked for duplicates only"
    if split not in lab.splits:
        return None, f"the run's labels ({src}) have no split {split!r}: ids checked for duplicates only"
    return [str(v) for v in lab.video_ids(split)], f"the {split} split of the run's labels ({src})"


def _store_counts(folders: Sequence[Path], videos: Sequence[str]) -> tuple[dict[str, int], str | None]:
    """Frame counts the feature store recorded when the run's features were extracted (``meta.video.n_frames``)."""
    if not folders:
        return {}, None
    folder = RunFolder(folders[0])
    store = folder.read_data().get("store")
    keys = [f.get("key") for f in folder.read_features().values() if f.get("key")]
    if not store or not keys or not Path(store).exists():
        return {}, None
    from affectfuse.features.store import FeatureStore

    try:
        st = FeatureStore(store, create=False)
    except (AffectfuseError, OSError):
        return {}, None
    counts: dict[str, int] = {}
    try:
        for v in videos:
            for k in keys:
                n = ((st.meta(v, k) or {}).get("video") or {}).get("n_frames")
                if n:
                    counts[v] = int(n)
                    break
    finally:
        st.close()
    return counts, f"frame counts recorded in the feature store {store}" if counts else None


# -- checks ----------------------------------------------------------------------------------------------
def _columns_of(pred: Prediction, fmt: SubmissionFormat) -> list[int]:
    """Regression: the prediction column of each format column. Classification: the format's position of each of
    the run's classes. Raises SubmissionError when the predictions are not of the kind the format takes."""
    kind = "frame level (one line per frame)" if fmt.resolution == "frame" else "clip level (one row per clip)"
    if (pred.frames is not None) != (fmt.resolution == "frame"):
        have = "frame level" if pred.frames is not None else "clip level (no frame column)"
        raise SubmissionError(f"format {fmt.name} is {kind}; the predictions are {have}")
    if pred.classification != fmt.classification:
        want = "a class per row (a classification task)" if fmt.classification else "values (a regression task)"
        have = "classes" if pred.classification else "regression values"
        raise SubmissionError(f"format {fmt.name} writes {want}; the predictions hold {have} of {pred.names}")
    if fmt.classification:
        pos = {c.casefold(): i for i, c in enumerate(fmt.columns)}
        bad = [n for n in pred.names if n.casefold() not in pos]
        if bad:
            raise SubmissionError(f"format {fmt.name} has the classes {list(fmt.columns)}; the run's class(es) {bad} "
                                  f"are not among them")
        return [pos[n.casefold()] for n in pred.names]
    have = {n.casefold(): j for j, n in enumerate(pred.names)}
    missing = [c for c in fmt.columns if c.casefold() not in have]
    if missing:
        raise SubmissionError(f"format {fmt.name} needs the targets {list(fmt.columns)}; the predictions have "
                              f"{pred.names} (missing {missing})")
    return [have[c.casefold()] for c in fmt.columns]


@dataclass
class _Rows:
    """Per prediction row: the values in format column order (regression) or the format class (-1: none), and
    whether the row holds a usable prediction."""

    values: np.ndarray  # (R, K) float, or (R,) int64 class positions
    ok: np.ndarray  # (R,) bool
    bad_class: list[str]  # "<where>: <label>" for labels outside the format's classes


def _rows(pred: Prediction, fmt: SubmissionFormat, cols: list[int], where: list[str]) -> _Rows:
    if not fmt.classification:
        v = np.asarray(pred.values, np.float64)[:, cols]
        return _Rows(v, np.isfinite(v).all(axis=1), [])
    pos = {n.casefold(): cols[j] for j, n in enumerate(pred.names)}
    pos.update({c.casefold(): i for i, c in enumerate(fmt.columns)})
    labels = pred.predicted_labels()
    cls = np.full(len(pred), -1, np.int64)
    bad = []
    for r, lab in enumerate(labels):
        if lab is None or str(lab) == "" or str(lab).lower() == "nan":
            continue
        p = pos.get(str(lab).strip().casefold())
        if p is None:
            bad.append(f"{where[r]}: {lab!r}")
        else:
            cls[r] = p
    return _Rows(cls, cls >= 0, bad)


def _range_check(fmt: SubmissionFormat, values: np.ndarray, where: list[str], clip: bool, problems: list[str]) -> int:
    """Values outside the format's range: clipped in place (returns how many) or listed in ``problems``."""
    if fmt.classification or fmt.value_range is None or not len(values):
        return 0
    lo, hi = fmt.value_range
    out = (values < lo) | (values > hi)
    n = int(out.sum())
    if n and clip:
        np.clip(values, lo, hi, out=values)
    elif n:
        r, c = np.nonzero(out)
        shown = [f"{where[i]} {fmt.columns[j]}={values[i, j]:.6g}" for i, j in zip(r[:_SHOW], c[:_SHOW])]
        problems.append(f"{n} value(s) outside [{lo:g}, {hi:g}]: {', '.join(shown)}"
                        + (f" (+{n - _SHOW} more)" if n > _SHOW else "") + "; clip=True (--clip) clips them into range")
    return n if clip else 0


def _expected(pred_ids: list[str], expected_ids: Any, frames: FrameList | None, info: dict[str, Any], split: str,
              strip_ext: bool) -> tuple[list[str], str]:
    if expected_ids is not None:
        if isinstance(expected_ids, (str, Path)):
            return read_id_list(expected_ids, split=split, strip_ext=strip_ext), f"the id list {expected_ids}"
        ids = [_norm_id(v, strip_ext) for v in expected_ids]
        dup = [v for v, c in Counter(ids).items() if c > 1]
        if dup:
            raise SubmissionError(f"expected ids: {len(dup)} id(s) listed more than once: {_few(dup)}")
        return ids, "the expected ids given"
    if frames is not None:
        return list(frames), "the videos of the frame list"
    ids, why = _label_ids(info.get("folders", []), split)
    if ids is not None:
        return [_norm_id(v, strip_ext) for v in ids], why
    return list(dict.fromkeys(pred_ids)), why


@dataclass
class _Table:
    """What the writer writes: per block (a clip, or a video) its id, values or classes, and frame names."""

    ids: list[str]
    values: list[np.ndarray]  # per id: (K,) / () for clips, (F, K) / (F,) for videos
    frames: list[np.ndarray | None]  # per id: 0-based frames (frame level)
    names: list[list[str] | None]  # per id: image names from the organisers' sample file, or None
    counts: dict[str, Any]
    record: dict[str, Any]


def _build(pred: Prediction, fmt: SubmissionFormat, info: dict[str, Any], *, split: str, expected_ids: Any,
           frame_counts: Any, clip: bool, fill: str) -> _Table:
    cols = _columns_of(pred, fmt)
    strip_ext = fmt.layout == "vgaf_txt"
    ids = [_norm_id(v, strip_ext) for v in pred.video_ids]
    frame_level = fmt.resolution == "frame"
    where = [f"{v} frame {int(f)}" for v, f in zip(ids, pred.frames)] if frame_level else ids
    rows = _rows(pred, fmt, cols, where)
    problems: list[str] = []
    if rows.bad_class:
        problems.append(f"{len(rows.bad_class)} row(s) with a class outside {list(fmt.columns)}: "
                        f"{_few(rows.bad_class)}")
    if frame_counts is not None and not frame_level:
        raise SubmissionError(f"format {fmt.name} is clip level: frame_counts (--frames) applies to frame-level "
                              f"formats only")
    listed = _frames_from(frame_counts) if frame_counts is not None else None
    expected, ids_source = _expected(ids, expected_ids, listed, info, split, strip_ext)
    exp_set = set(expected)
    unused = [v for v in dict.fromkeys(ids) if v not in exp_set]
    record: dict[str, Any] = {"ids_source": ids_source}
    counts: dict[str, Any] = {"ids": len(expected), "unused_ids": len(unused)}
    if unused:
        record["unused_ids_first"] = unused[:_SHOW * 4]
    if not frame_level:
        keys = ids
    else:
        keys = list(zip(ids, pred.frames.tolist()))
    dup = [k for k, c in Counter(keys).items() if c > 1]
    if dup:
        what = "id(s)" if not frame_level else "frame(s)"
        problems.append(f"{len(dup)} {what} predicted more than once: "
                        + _few([k if not frame_level else f"{k[0]} frame {k[1]}" for k in dup]))
    out_ids, out_vals, out_frames, out_names = [], [], [], []
    if not frame_level:
        index = {v: r for r, v in enumerate(ids)}
        missing = [v for v in expected if v not in index]
        empty = [v for v in expected if v in index and not rows.ok[index[v]]]
        if missing:
            problems.append(f"{len(missing)} of {len(expected)} expected id(s) have no prediction: {_few(missing)}")
        if empty:
            problems.append(f"{len(empty)} id(s) predicted without a value (NaN / no class): {_few(empty)}")
        take = [index[v] for v in expected if v in index]
        vals = rows.values[take].copy()
        counts["clipped_values"] = _range_check(fmt, vals, [ids[r] for r in take], clip, problems)
        out_ids = [ids[r] for r in take]
        out_vals = list(vals)
        out_frames = [None] * len(out_ids)
        out_names = [None] * len(out_ids)
        counts["rows"] = len(out_ids)
    else:
        fr_source, fr_list = _frame_source(listed, frame_counts, info, expected)
        record["frames_source"] = fr_source
        by_video: dict[str, list[int]] = {}
        for r, v in enumerate(ids):
            by_video.setdefault(v, []).append(r)
        missing_videos, missing_frames, beyond, unknown, not_listed = [], [], [], [], []
        filled: dict[str, int] = {}
        unused_rows = sum(len(by_video.get(v, [])) for v in unused)
        for v in expected:
            rws = np.asarray(by_video.get(v, []), np.int64)
            good = rws[rows.ok[rws]] if len(rws) else rws
            if v not in fr_list and listed is not None:
                not_listed.append(v)
                continue
            if not len(good):
                missing_videos.append(v)
                continue
            pf = pred.frames[good]
            if v in fr_list:
                need, names = fr_list[v]
                if names is None:
                    over = pf[pf >= len(need)]
                    if len(over):
                        beyond.append(f"{v} (frame {int(over.max())} of {len(need)} frames)")
            else:
                unknown.append(v)
                need, names = np.arange(int(pf.max()) + 1, dtype=np.int64), None
            at = {int(f): int(r) for f, r in zip(pf, good)}
            unused_rows += len(set(at) - set(need.tolist())) + int(len(rws) - len(good))
            src = np.asarray([at.get(int(f), -1) for f in need], np.int64)
            gap = src < 0
            if gap.any() and fill == "nearest":
                order = np.argsort(pf, kind="stable")
                src[gap] = good[order][_nearest(pf[order], need[gap])]
                filled[v] = int(gap.sum())
            elif gap.any():
                missing_frames.append((v, need[gap], len(need)))
            out_ids.append(v)
            out_vals.append(rows.values[np.maximum(src, 0)].copy())
            out_frames.append(need)
            out_names.append(names)
        if not_listed:
            problems.append(f"{len(not_listed)} expected video(s) missing from {fr_source}: {_few(not_listed)}")
        if missing_videos:
            problems.append(f"{len(missing_videos)} of {len(expected)} expected video(s) have no prediction: "
                            f"{_few(missing_videos)}")
        if missing_frames:
            total = sum(len(f) for _, f, _ in missing_frames)
            shown = [f"{v} ({len(f)} of {n}: frames {_few(f.tolist(), 3)})" for v, f, n in missing_frames[:_SHOW]]
            problems.append(f"{total} frame(s) of {len(missing_frames)} video(s) have no prediction: "
                            + "; ".join(shown) + (f" (+{len(missing_frames) - _SHOW} more videos)"
                                                 if len(missing_frames) > _SHOW else "")
                            + "; fill='nearest' (--fill nearest) fills them from the nearest predicted frame")
        if beyond:
            problems.append(f"{len(beyond)} video(s) predicted past their last frame (another frame numbering?): "
                            f"{_few(beyond)}")
        if unknown:
            record["frames_unknown"] = (f"{len(unknown)} video(s) without a known frame count: frames 0 .. the last "
                                        f"predicted one were checked, trailing frames could not be: {_few(unknown)}")
        if out_vals and not fmt.classification:
            allv = np.concatenate(out_vals)
            wh = [f"{v} frame {int(f)}" for v, fr in zip(out_ids, out_frames) for f in fr]
            counts["clipped_values"] = _range_check(fmt, allv, wh, clip, problems)
            splits = np.cumsum([len(x) for x in out_vals])[:-1]
            out_vals = np.split(allv, splits)
        counts.update({"rows": int(sum(len(x) for x in out_vals)), "filled_frames": int(sum(filled.values())),
                       "unused_rows": int(unused_rows)})
        if filled:
            record["filled_frames_per_video"] = filled
    if problems:
        raise SubmissionError(f"cannot write {fmt.name} from {info.get('predictions') or 'the predictions'}: "
                              + "; ".join(problems))
    return _Table(out_ids, out_vals, out_frames, out_names, counts, record)


def _nearest(sorted_frames: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Position in ``sorted_frames`` of the frame nearest each of ``frames`` (a tie: the earlier one)."""
    j = np.searchsorted(sorted_frames, frames)
    lo = np.clip(j - 1, 0, len(sorted_frames) - 1)
    hi = np.clip(j, 0, len(sorted_frames) - 1)
    return np.where(np.abs(frames - sorted_frames[lo]) <= np.abs(sorted_frames[hi] - frames), lo, hi)


def _frame_source(listed: FrameList | None, frame_counts: Any, info: dict[str, Any],
                  expected: list[str]) -> tuple[str, FrameList]:
    if listed is not None:
        named = any(n is not None for _, n in listed.values())
        what = "the frame list" if named else "the frame counts"
        return f"{what} {frame_counts}" if isinstance(frame_counts, (str, Path)) else f"{what} given", listed
    counts, why = _store_counts(info.get("folders", []), expected)
    if counts:
        return why, {v: (np.arange(n, dtype=np.int64), None) for v, n in counts.items()}
    return "unknown (frames 0 .. the last predicted frame of each video)", {}


# -- writing ---------------------------------------------------------------------------------------------
def _num(x: float) -> str:
    s = f"{float(x):.6f}"
    return "0.000000" if s == "-0.000000" else s


def _cells(fmt: SubmissionFormat, v: np.ndarray) -> str:
    if fmt.classification:
        return str(int(v) + fmt.class_base)
    return ",".join(_num(x) for x in np.atleast_1d(v))


def _render(fmt: SubmissionFormat, t: _Table) -> dict[str, str]:
    """File name → text (``\\n`` line ends, a final newline)."""
    if fmt.layout == "clip_csv":
        lines = [fmt.header] + [f"[{i}]," + _cells(fmt, v) if fmt.id_brackets else f"{i}," + _cells(fmt, v)
                                for i, v in zip(t.ids, t.values)]
        return {fmt.filename: "\n".join(lines) + "\n"}
    if fmt.layout == "vgaf_txt":
        return {fmt.filename: "\n".join([fmt.header] + [f"{i} {_cells(fmt, v)}" for i, v in zip(t.ids, t.values)])
                + "\n"}
    if fmt.layout == "per_video":
        bad = [v for v in t.ids if not re.fullmatch(r"[^/\\\x00]+", v) or v in (".", "..")]
        if bad:
            raise SubmissionError(f"format {fmt.name}: video id(s) that cannot be file names: {_few(bad)}")
        return {f"{v}.txt": "\n".join([fmt.header] + [_cells(fmt, row) for row in vals]) + "\n"
                for v, vals in zip(t.ids, t.values)}
    lines = [fmt.header]
    for v, vals, frames, names in zip(t.ids, t.values, t.frames, t.names):
        names = names or [f"{v}/{int(f) + 1:05d}.jpg" for f in frames]
        lines += [f"{n},{_cells(fmt, row)}" for n, row in zip(names, vals)]
    return {fmt.filename: "\n".join(lines) + "\n"}


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise SubmissionError(f"{out}: exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    old = out / FORMAT_FILE
    if not overwrite:
        raise SubmissionError(f"{out}: the folder is not empty; choose an empty folder, or overwrite=True (--force) "
                              f"to replace a previous submission there")
    if not old.exists():
        raise SubmissionError(f"{out}: not empty and without {FORMAT_FILE} (not a submission folder); "
                              f"not writing there")
    prev = yaml.safe_load(old.read_text()) or {}
    for name in prev.get("files", []):
        if isinstance(name, str) and Path(name).name == name:
            (out / name).unlink(missing_ok=True)
    old.unlink()


def write_submission(run: Any, format: "str | SubmissionFormat", out: str | Path, *, split: str = "test",
                     expected_ids: "str | Path | Sequence[str] | None" = None,
                     frame_counts: "str | Path | Mapping[str, int | Sequence[int]] | None" = None,
                     clip: bool = False, fill: Literal["none", "nearest"] = "none",
                     overwrite: bool = False) -> Submission:
    """Write a challenge's submission files from a run's predictions of ``split``, checked first.

    Args:
        run: a run folder, a multi-seed folder, a predictions CSV (RUN layout), a loaded run, or a
            :class:`Prediction` (see :func:`load_predictions`).
        format: a name of :data:`FORMATS` or a :class:`SubmissionFormat`.
        out: the folder to write (made; must be empty unless ``overwrite``).
        split: the split whose predictions are written.
        expected_ids: the ids the organisers expect (a list, or a file: see :func:`read_id_list`); default: the
            run's labelled ``split`` when its labels are readable, else (or for a CSV) the predicted ids.
        frame_counts: frame level: the frames each video must have: the organisers' sample file or a table of
            counts (see :func:`read_frame_list`), or ``{video: count}`` / ``{video: frames}``; default: the frame
            counts the feature store recorded, else frames 0 .. the last predicted one.
        clip: clip values into the format's range instead of refusing them (counted in ``format.yaml``).
        fill: ``"nearest"``: a frame without a prediction takes the nearest predicted frame's (counted);
            ``"none"``: refuse.
        overwrite: replace a previous submission in ``out`` (the files its ``format.yaml`` lists).

    Returns:
        the folder, the files written and the ``format.yaml`` record.

    Raises:
        SubmissionError: predictions of another kind than the format takes, or problems found by the checks
            (every one listed: missing / duplicate ids, missing frames, values out of range, bad classes).
        KeyError: an unknown format.
    """
    fmt = get_format(format)
    if fill not in ("none", "nearest"):
        raise ValueError(f"fill must be 'none' or 'nearest', got {fill!r}")
    pred, info = load_predictions(run, split)
    table = _build(pred, fmt, info, split=split, expected_ids=expected_ids, frame_counts=frame_counts, clip=clip,
                   fill=fill)
    texts = _render(fmt, table)
    out = Path(out)
    _prepare_out(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, text in texts.items():
        path = out / name
        with writing(path):
            path.write_bytes(text.encode())
        files.append(path)
    from affectfuse import __version__

    record: dict[str, Any] = {
        "format": fmt.name, "challenge": fmt.challenge, "layout": fmt.layout, "header": fmt.header,
        "sources": list(fmt.sources), "notes": list(fmt.notes),
        "run": info.get("run"), "run_kind": info["kind"], "split": split,
        "predictions": info.get("predictions"), "predictions_sha256": info.get("predictions_sha256"),
        "config_sha256": info.get("config_sha256"),
        **({"ensemble": info["ensemble"]} if "ensemble" in info else {}),
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "affectfuse_version": __version__,
        "options": {"clip": bool(clip), "fill": fill,
                    "expected_ids": None if expected_ids is None or not isinstance(expected_ids, (str, Path))
                    else str(expected_ids),
                    "frame_counts": None if frame_counts is None or not isinstance(frame_counts, (str, Path))
                    else str(frame_counts)},
        **table.record,
        "counts": {**table.counts, "files": len(files)},
        "files": [p.name for p in files],
    }
    fpath = out / FORMAT_FILE
    with writing(fpath):
        fpath.write_text(yaml.safe_dump(record, sort_keys=False, allow_unicode=True))
    return Submission(out, fmt, files + [fpath], record)
