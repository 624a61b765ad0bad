"""Preparing one video (runs in the engine's workers): sample → faces → crops, clips and fragments.

``Preparer(plan)(job)`` yields :class:`Prepared` parts — one at clip level, one per window at frame level —
and never raises: a file that cannot be used gives one part with ``error`` set (the message names the file),
ending the video. Face detection runs once per sampled frame; each crop size the extractors ask for is cut
from the same boxes (source-frame pixels, whatever size the frames were decoded at).
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from affectfuse.engines.base import Job
from affectfuse.errors import MediaError
from affectfuse.extraction.plan import Plan
from affectfuse.io.faces import FaceDetector, create_face_detector, crop_faces, detect_faces, letterbox
from affectfuse.io.sampling import sample
from affectfuse.io.video import decoding_record
from affectfuse.types import AudioFragments, Clip, FrameBatch, VideoInfo

__all__ = ["Prepared", "Preparer", "video_summary"]


def video_summary(info: VideoInfo) -> dict[str, Any]:
    """The facts about a file that results depend on, recorded with its features (``meta["video"]``)."""
    return {"duration": float(info.duration), "declared_duration": info.declared_duration, "width": int(info.width),
            "height": int(info.height), "rotation": int(info.rotation), "flip": bool(info.flip),
            "n_frames": int(info.n_frames), "nominal_fps": float(info.nominal_fps), "codec": info.codec,
            "has_audio": bool(info.has_audio), "notes": list(info.notes)}


@dataclass
class Prepared:
    """Inputs of one video (or one window of a frame-level video), ready for the extractors.

    Attributes:
        video_id: the video.
        source: its file.
        error: why the video cannot be used (ends it; nothing else is set), or None.
        rows: rows of this part.
        times: ``(N,)`` seconds; indices ``(N,)`` frame indices (-1 without video).
        boxes: ``(N, 4)`` face boxes in source-frame pixels (NaN = none), None when no face is needed.
        scores: ``(N,)`` detector confidence (NaN = none), None like ``boxes``.
        images: ``(kind, size)`` → (pixels ``(N, S, S, 3)``, valid ``(N,)``).
        clips: ``(size, clip_len, clip_stride, clip_anchor)`` → (clips ``(N, L, S, S, 3)``, valid ``(N,)``).
        audio: sample rate → fragments.
        video_missing / audio_missing: why a stream's rows are all invalid.
        warnings: remarks recorded with the features.
        video: :func:`video_summary` of the file.
        decoding: :func:`~affectfuse.io.video.decoding_record` of the file.
        window: index of this part; last: whether it ends the video.
        seconds: time this part took per stage in its worker: ``decode`` (decode and sample), ``faces``
            (detection), ``crops`` (crops, letterboxing, clips).
    """

    video_id: str
    source: str
    error: str | None = None
    rows: int = 0
    times: np.ndarray | None = None
    indices: np.ndarray | None = None
    boxes: np.ndarray | None = None
    scores: np.ndarray | None = None
    images: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    clips: dict[tuple[int, int, int, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    audio: dict[int, AudioFragments] = field(default_factory=dict)
    video_missing: str | None = None
    audio_missing: str | None = None
    warnings: list[str] = field(default_factory=list)
    video: dict[str, Any] = field(default_factory=dict)
    decoding: dict[str, Any] = field(default_factory=dict)
    window: int = 0
    last: bool = True
    seconds: dict[str, float] = field(default_factory=dict)


_DETECTORS: dict[str, FaceDetector] = {}  # one per process and name, loaded on first use


def _detector(name: str) -> FaceDetector:
    if name not in _DETECTORS:
        _DETECTORS[name] = create_face_detector(name)
    return _DETECTORS[name]


class Preparer:
    """``prepare(job)`` for an engine: picklable (it holds only the :class:`Plan`)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def warm(self) -> None:
        """Load what preparing needs (the face detector) before the first video."""
        if self.plan.needs_faces:
            _detector(self.plan.face_detector).load()

    def __call__(self, job: Job) -> Iterator[Prepared]:
        previous_box = None
        try:
            t0 = time.perf_counter()
            for clip in sample(job.video_id, job.path, self.plan.sampling):
                decode = time.perf_counter() - t0
                prep, previous_box = self._prepare(clip, previous_box)
                prep.seconds["decode"] = decode
                yield prep
                t0 = time.perf_counter()
        except MediaError as e:
            yield Prepared(job.video_id, str(job.path), error=str(e))
        except Exception as e:  # noqa: BLE001 - any failure is recorded against the file
            msg = f"{job.path}: {type(e).__name__}: {e}"
            if os.environ.get("AFFECTFUSE_DEBUG"):
                msg += "\n" + traceback.format_exc()
            yield Prepared(job.video_id, str(job.path), error=msg)

    def _prepare(self, clip: Clip, previous_box: np.ndarray | None) -> tuple[Prepared, np.ndarray | None]:
        plan = self.plan
        prep = Prepared(clip.video_id, str(clip.source), rows=len(clip), times=clip.times, indices=clip.indices,
                        audio=dict(clip.fragments), video_missing=clip.video_missing, audio_missing=clip.audio_missing,
                        warnings=list(clip.notes), video=video_summary(clip.info), decoding=decoding_record(clip.info),
                        window=clip.window, last=clip.last)
        if clip.frames is None:
            return prep, previous_box
        frames = clip.frames
        t0 = time.perf_counter()
        if plan.needs_faces:
            frames = detect_faces(frames, _detector(plan.face_detector), select=plan.face_select)
            prep.boxes, prep.scores = frames.boxes, frames.scores
            if plan.sampling.level == "clip" and np.isnan(frames.boxes[:, 0]).all():
                prep.warnings.append("no face found in any sampled frame")
        t1 = time.perf_counter()
        for kind, size in plan.image_requests:
            if kind.startswith("face"):
                fb = crop_faces(frames, size=size, margin=plan.face_margin, policy=plan.no_face,
                                previous_box=previous_box, align=kind == "face_aligned")
                prep.images[(kind, size)] = (fb.pixels, fb.valid.copy())
            else:
                prep.images[(kind, size)] = (_letterbox(frames.pixels, size), frames.valid.copy())
        for size, length, stride, anchor in plan.clip_requests:
            prep.clips[(size, length, stride, anchor)] = self._clip_crops(frames, clip.context[(length, stride, anchor)],
                                                                          size, length)
        prep.seconds.update(faces=t1 - t0, crops=time.perf_counter() - t1)
        if frames.boxes is not None:
            found = ~np.isnan(frames.boxes[:, 0])
            if found.any():
                previous_box = frames.boxes[np.nonzero(found)[0][-1]]
        return prep, previous_box

    def _clip_crops(self, frames: FrameBatch, context: FrameBatch, size: int, length: int
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Face crops of the frames around each row, cut at the row's box: ``(N, L, S, S, 3)`` and valid ``(N,)``."""
        boxes = np.repeat(frames.boxes, length, axis=0)
        scores = np.repeat(frames.scores, length, axis=0)
        fb = FrameBatch(context.pixels, context.times, context.indices, context.valid, boxes, scores,
                        source_size=context.source_size)
        crops = crop_faces(fb, size=size, margin=self.plan.face_margin, policy=self.plan.no_face)
        clips = crops.pixels.reshape(len(frames), length, size, size, 3)
        return clips, frames.valid & crops.valid.reshape(len(frames), length).any(axis=1)


def _letterbox(pixels: np.ndarray, size: int) -> np.ndarray:
    """Whole frames resized to (size, size), aspect kept, black bars. (N,H,W,3) → (N,size,size,3)."""
    return np.stack([letterbox(img, size) for img in pixels]) if len(pixels) else np.zeros((0, size, size, 3), np.uint8)

