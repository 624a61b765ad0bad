"""Extraction: from raw media files to a feature store.

``extract(inputs, store, config)`` runs, per video::

    probe → sample (clip: N frames evenly spaced; frame: every frame / fixed rate, in windows)
          → faces (detect once, crop at each extractor's size) → audio fragments centred on the frames
          → every extractor, batched across videos → FeatureStore.put

Decoding, face detection and cropping run in ``workers`` processes while the backbones run in the main
process on batches that mix rows of several videos. Bad input never stops the run: a video that cannot be
read is recorded as failed (with a message naming the file and the problem) and the run goes on; a missing
stream (no audio, no video) or a video without any face gives features whose rows are all invalid, with a
warning. Finished (video, extractor) pairs are skipped on a re-run unless ``overwrite``; every write is
atomic, so an interrupted run resumes where it stopped.

A feature set's key is the extractor's name plus a hash of its parameters *and* of the sampling that
produced its input (frames, level, face detector, margin, no-face policy, fragment rule), so features made
differently never share a key.
"""

from __future__ import annotations

import csv
import os
import sys
import time
import traceback
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

import numpy as np

from affectfuse._config import make_config
from affectfuse.errors import MediaError, NoAudioError
from affectfuse.extractors.base import Extractor, ExtractorInput, create_extractor
from affectfuse.features.store import FeatureStore
from affectfuse.types import AudioFragments, FeatureSet, FrameBatch, VideoInfo

__all__ = ["ExtractConfig", "ExtractReport", "extract", "list_inputs", "expand_extractors", "DEFAULT_EXTRACTORS",
           "EXTRACTOR_SETS", "VIDEO_EXTENSIONS"]

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts"}
AUDIO_EXTENSIONS = {".wav", ".mp3", ".m4a", ".flac", ".ogg", ".aac", ".opus"}
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | AUDIO_EXTENSIONS

#: The offline default set: every one ships its weights in a registry package (see README).
DEFAULT_EXTRACTORS: tuple[str, ...] = ("mobilenetv2_imagenet", "faceapi_expression", "resemblyzer_ge2e")

#: Named sets of extractors usable wherever an extractor name is: name → [(extractor, params, modality)].
#: ``viper-offline`` is ViPER's four streams made only of weights that registry packages ship: the face crop's
#: face-api expression probabilities + 256-d face feature (visual), face-mesh geometry standing in for action units
#: (fau), the caption chosen from the expression probabilities and encoded with all-MiniLM-L6-v2 (text), and a GE2E
#: voice embedding of the audio fragment centred on each frame (audio).
EXTRACTOR_SETS: dict[str, list[tuple[str, dict[str, Any], str]]] = {
    "viper-offline": [
        ("faceapi_expression", {"output": "both"}, "visual"),
        ("facemesh_geometry", {}, "fau"),
        ("caption_offline", {}, "text"),
        ("resemblyzer_ge2e", {}, "audio"),
    ],
}


def expand_extractors(names: Iterable[str], params: dict[str, dict[str, Any]] | None = None
                      ) -> list[tuple[str, dict[str, Any], str | None]]:
    """Extractor names (and set names) → [(extractor name, creation parameters, modality or None)].

    Parameters given for an extractor by name override a set's defaults.

    Raises:
        ValueError: an extractor appears twice.
    """
    params = params or {}
    out: list[tuple[str, dict[str, Any], str | None]] = []
    for n in names:
        members = EXTRACTOR_SETS.get(n, [(n, {}, None)])
        for name, p, modality in members:
            if any(name == o[0] for o in out):
                raise ValueError(f"extractor {name!r} is named twice (directly or through a set such as {n!r})")
            out.append((name, {**p, **params.get(name, {})}, modality))
    return out


@dataclass(frozen=True, kw_only=True)
class ExtractConfig:
    """How videos are turned into features.

    Attributes:
        extractors: registered extractor names.
        extractor_params: per extractor name, keyword parameters (e.g. ``{"vit_cls": {"model": "dir/"}}``).
        level: ``"clip"`` (``frames`` rows per video, ViPER) or ``"frame"`` (every ``frame_step``-th frame, or
            ``frame_fps`` frames per second; Aff-Wild2 style).
        frames: rows per video at clip level.
        frame_step: frame-level step in frames.
        frame_fps: frame-level fixed rate (overrides ``frame_step``).
        window: frames per processing window at frame level (memory stays flat).
        audio_window: seconds of audio centred on each frame at frame level.
        sample_rate: audio sample rate for fragments (extractors may ask for another one).
        face_detector: registered face detector name.
        face_select: ``"largest"`` or ``"score"``.
        face_margin: crop margin, fraction of the box side.
        no_face: ``"mask"`` (row invalid), ``"full_frame"`` (ViPER's code) or ``"previous"`` (last crop).
        max_side: frames are decoded downscaled so that their longer side is at most this.
        float16: store values as float16.
        workers: decoding / face processes; 0 decodes in the main process.
        batch_rows: rows (frames / fragments) per backbone call, across videos.
        overwrite: recompute entries that already exist.
    """

    extractors: tuple[str, ...] = DEFAULT_EXTRACTORS
    extractor_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    level: Literal["clip", "frame"] = "clip"
    frames: int = 32
    frame_step: int = 1
    frame_fps: float | None = None
    window: int = 64
    audio_window: float = 1.0
    sample_rate: int = 16000
    face_detector: str = "default"
    face_select: Literal["largest", "score"] = "largest"
    face_margin: float = 0.25
    no_face: Literal["mask", "full_frame", "previous"] = "mask"
    max_side: int = 1280
    float16: bool = False
    workers: int = 1
    batch_rows: int = 64
    overwrite: bool = False

    def validate(self) -> "ExtractConfig":
        if not self.extractors:
            raise ValueError("ExtractConfig.extractors: name at least one extractor")
        if self.level not in ("clip", "frame"):
            raise ValueError(f"ExtractConfig.level must be 'clip' or 'frame', got {self.level!r}")
        if self.frames < 1:
            raise ValueError(f"ExtractConfig.frames must be >= 1, got {self.frames}")
        if self.frame_step < 1 or (self.frame_fps is not None and self.frame_fps <= 0):
            raise ValueError(f"ExtractConfig: frame_step >= 1 and frame_fps > 0 expected, got {self.frame_step}, {self.frame_fps}")
        if self.no_face not in ("mask", "full_frame", "previous"):
            raise ValueError(f"ExtractConfig.no_face must be mask / full_frame / previous, got {self.no_face!r}")
        if self.face_select not in ("largest", "score"):
            raise ValueError(f"ExtractConfig.face_select must be 'largest' or 'score', got {self.face_select!r}")
        if self.workers < 0 or self.batch_rows < 1 or self.window < 1 or self.max_side < 32:
            raise ValueError("ExtractConfig: workers >= 0, batch_rows >= 1, window >= 1, max_side >= 32 expected")
        unknown = set(self.extractor_params) - {n for n, _, _ in expand_extractors(self.extractors)}
        if unknown:
            raise ValueError(f"ExtractConfig.extractor_params names extractors not in extractors: {sorted(unknown)}")
        return self


@dataclass
class ExtractReport:
    """What a run did.

    Attributes:
        done: (video_id, key) pairs written.
        skipped: pairs already in the store.
        failed: (video_id, key, message) for pairs that could not be computed.
        warnings: (video_id, message) remarks on written entries.
        keys: extractor name → store key.
        seconds: wall time.
        interrupted: the run was stopped before the end.
    """

    done: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def failed_videos(self) -> list[str]:
        return sorted({v for v, _, _ in self.failed})

    def text(self) -> str:
        vids_done = {v for v, _ in self.done}
        lines = [
            f"extracted {len(self.done)} feature sets for {len(vids_done)} videos in {self.seconds:.1f} s; "
            f"skipped {len(self.skipped)} already done; {len(self.failed)} failed"
            + (" (interrupted: run again to resume)" if self.interrupted else ""),
        ]
        for name, key in self.keys.items():
            lines.append(f"  {name:24s} -> key {key}")
        if self.warnings:
            lines.append(f"warnings ({len(self.warnings)}):")
            lines += [f"  {v}: {m}" for v, m in self.warnings[:50]]
        if self.failed:
            lines.append(f"failures ({len(self.failed)}):")
            seen = set()
            for v, k, m in self.failed:
                if (v, m) in seen:
                    continue
                seen.add((v, m))
                lines.append(f"  {v} [{k}]: {m}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def list_inputs(inputs: Iterable[str | Path]) -> list[tuple[str, Path]]:
    """Expand files, folders (recursively, media extensions) and CSV / text lists into (video_id, path).

    A CSV list has a ``path`` column and optionally ``video_id``; a ``.txt`` list has one path per line
    (relative paths are relative to the list's folder). Ids are file stems for files given directly and
    paths relative to the folder (without extension) for folder contents.

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: two inputs map to the same video id, or a list file is malformed.
    """
    pairs: list[tuple[str, Path]] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in MEDIA_EXTENSIONS:
                    pairs.append((f.relative_to(p).with_suffix("").as_posix(), f))
        elif p.suffix.lower() == ".csv":
            with open(p, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if not reader.fieldnames or "path" not in reader.fieldnames:
                    raise ValueError(f"{p}: a CSV input list needs a 'path' column, got columns {reader.fieldnames}")
                for i, row in enumerate(reader, start=2):
                    if not (row.get("path") or "").strip():
                        raise ValueError(f"{p} row {i}: empty 'path'")
                    f = Path(row["path"].strip())
                    f = f if f.is_absolute() else p.parent / f
                    pairs.append(((row.get("video_id") or "").strip() or f.stem, f))
        elif p.suffix.lower() == ".txt":
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
                line = line.strip()
                if line and not line.startswith("#"):
                    f = Path(line)
                    pairs.append((f.stem, f if f.is_absolute() else p.parent / f))
        else:
            pairs.append((p.stem, p))
    seen: dict[str, Path] = {}
    for vid, f in pairs:
        if vid in seen and seen[vid] != f:
            raise ValueError(f"video id {vid!r} is used by two inputs: {seen[vid]} and {f}; give ids in a CSV list")
        seen[vid] = f
    return list(seen.items())


# ---------------------------------------------------------------------------------------------
# The plan: which prepared inputs the extractors need, and each extractor's sampling identity
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    level: str
    frames: int
    frame_step: int
    frame_fps: float | None
    window: int
    audio_window: float
    face_detector: str
    face_select: str
    face_margin: float
    no_face: str
    max_side: int
    image_requests: tuple[tuple[str, int], ...]  # (kind, size), kind in face / frame
    clip_requests: tuple[tuple[int, int, int], ...]  # (size, clip_len, clip_stride)
    sample_rates: tuple[int, ...]

    @property
    def needs_faces(self) -> bool:
        return any(k == "face" for k, _ in self.image_requests) or bool(self.clip_requests)

    @property
    def needs_video(self) -> bool:
        return bool(self.image_requests or self.clip_requests)


def _detector_config(name: str) -> dict[str, Any]:
    """The resolved configuration of a face detector (real name + parameters), without loading its model:
    features made with "default" get a new key if the default ever changes."""
    from affectfuse.io.faces import create_face_detector

    return dict(create_face_detector(name).config)


def _sampling_identity(ex: Extractor, cfg: ExtractConfig) -> dict[str, Any]:
    c = ex.contract
    s: dict[str, Any] = {"level": cfg.level}
    if cfg.level == "clip":
        s["frames"] = cfg.frames
    else:
        s["frame_fps" if cfg.frame_fps else "frame_step"] = cfg.frame_fps or cfg.frame_step
    if c.kind in ("face", "clip"):
        s["faces"] = {"detector": cfg.face_detector, "detector_config": _detector_config(cfg.face_detector),
                      "select": cfg.face_select, "margin": cfg.face_margin, "no_face": cfg.no_face,
                      "max_side": cfg.max_side}
    elif c.kind == "frame":
        s["max_side"] = cfg.max_side
    if c.kind == "audio_fragment":
        s["audio"] = "viper_centred_fragments" if cfg.level == "clip" else {"centred_window_s": cfg.audio_window}
    return s


def _plan(extractors: list[Extractor], cfg: ExtractConfig) -> _Plan:
    images, clips, rates = set(), set(), set()
    for ex in extractors:
        c = ex.contract
        if c.kind in ("face", "frame"):
            images.add((c.kind, c.image_size))
        elif c.kind == "clip":
            clips.add((c.image_size, c.clip_len, c.clip_stride))
        elif c.kind == "audio_fragment":
            rates.add(c.sample_rate)
        else:
            raise ValueError(f"extractor {ex.name!r}: unknown input kind {c.kind!r}")
    return _Plan(cfg.level, cfg.frames, cfg.frame_step, cfg.frame_fps, cfg.window, cfg.audio_window,
                 cfg.face_detector, cfg.face_select, cfg.face_margin, cfg.no_face, cfg.max_side,
                 tuple(sorted(images)), tuple(sorted(clips)), tuple(sorted(rates)))


# ---------------------------------------------------------------------------------------------
# Preparing one video (runs in worker processes)
# ---------------------------------------------------------------------------------------------
@dataclass
class _Prepared:
    """Inputs of one video (or one window of a frame-level video), ready for the extractors."""

    video_id: str
    source: str
    error: str | None = None
    times: np.ndarray | None = None  # (N,)
    indices: np.ndarray | None = None  # (N,)
    boxes: np.ndarray | None = None  # (N, 4)
    images: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    clips: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    audio: dict[int, AudioFragments] = field(default_factory=dict)
    video_missing: str | None = None  # reason visual rows are all invalid
    audio_missing: str | None = None  # reason audio rows are all invalid
    warnings: list[str] = field(default_factory=list)
    rows: int = 0


_DETECTORS: dict[str, Any] = {}


def _detector(name: str):
    if name not in _DETECTORS:
        from affectfuse.io.faces import create_face_detector

        _DETECTORS[name] = create_face_detector(name)
    return _DETECTORS[name]


def _letterbox(pixels: np.ndarray, size: int) -> np.ndarray:
    """Whole frames resized to (size, size), aspect kept, black bars. (N,H,W,3) → (N,size,size,3)."""
    from affectfuse.io.faces import letterbox

    return np.stack([letterbox(img, size) for img in pixels]) if len(pixels) else np.zeros((0, size, size, 3), np.uint8)


def _prepare_frames(prep: _Prepared, frames: FrameBatch, plan: _Plan, path: Path, info: VideoInfo,
                    previous_box: np.ndarray | None = None) -> np.ndarray | None:
    """Faces, crops and clips for sampled frames; returns the last face box (for the next window)."""
    from affectfuse.io.faces import crop_faces, detect_faces

    prep.times, prep.indices, prep.rows = frames.times, frames.indices, len(frames)
    prep.warnings += frames.notes
    if plan.needs_faces:
        frames = detect_faces(frames, _detector(plan.face_detector), select=plan.face_select)
        prep.boxes = frames.boxes
    for kind, size in plan.image_requests:
        if kind == "face":
            fb = crop_faces(frames, size=size, margin=plan.face_margin, policy=plan.no_face, previous_box=previous_box)
            prep.images[(kind, size)] = (fb.pixels, fb.valid.copy())
        else:
            prep.images[(kind, size)] = (_letterbox(frames.pixels, size), frames.valid.copy())
    if plan.clip_requests:
        from affectfuse.io.video import read_frames

        for size, length, stride in plan.clip_requests:
            offs = (np.arange(length) - length // 2) * stride  # (L,)
            idx = np.clip(frames.indices[:, None] + offs[None, :], 0, info.n_frames - 1)  # (N, L)
            fb = read_frames(path, idx.reshape(-1), info=info, max_side=plan.max_side)
            boxes = None if frames.boxes is None else np.repeat(frames.boxes, length, axis=0)
            scores = None if frames.scores is None else np.repeat(frames.scores, length, axis=0)
            fb = FrameBatch(fb.pixels, fb.times, fb.indices, fb.valid, boxes, scores)
            crops = crop_faces(fb, size=size, margin=plan.face_margin, policy=plan.no_face)
            clips = crops.pixels.reshape(len(frames), length, size, size, 3)
            valid = frames.valid & crops.valid.reshape(len(frames), length).any(axis=1)
            prep.clips[(size, length, stride)] = (clips, valid)
    if frames.boxes is not None:
        found = ~np.isnan(frames.boxes[:, 0])
        if found.any():
            return frames.boxes[np.nonzero(found)[0][-1]]
    return previous_box


def _prepare_audio(prep: _Prepared, plan: _Plan, path: Path, info: VideoInfo, times: np.ndarray,
                   audio_cache: dict[int, tuple[np.ndarray, float]]) -> None:
    from affectfuse.io.sampling import audio_fragments, centred_windows
    from affectfuse.io.video import read_audio

    for sr in plan.sample_rates:
        if sr not in audio_cache:
            audio_cache[sr] = read_audio(path, sample_rate=sr, info=info)
        wave, start = audio_cache[sr]
        if plan.level == "clip":
            prep.audio[sr] = audio_fragments(wave, sr, times, audio_start=start)
        else:
            prep.audio[sr] = centred_windows(wave, sr, times, length=plan.audio_window, audio_start=start)


def _clip_times_without_video(info: VideoInfo, n: int) -> np.ndarray:
    return np.linspace(0.0, max(info.duration, 0.0), n)


def _prepare_clip(video_id: str, path: str, plan: _Plan) -> _Prepared:
    """Clip level: everything one video needs, or an error message. Never raises."""
    from affectfuse.io.sampling import clip_indices
    from affectfuse.io.video import probe, read_frames

    prep = _Prepared(video_id, path)
    p = Path(path)
    try:
        info = probe(p)
        if info.has_video:
            idx, ok = clip_indices(info.n_frames, plan.frames)
            if plan.needs_video:
                frames = read_frames(p, idx, info=info, max_side=plan.max_side)
                frames.valid &= ok
                if not ok.all():
                    frames.notes.append(f"video has {info.n_frames} frames, {plan.frames} requested: "
                                        f"{int((~ok).sum())} rows repeat frames and are invalid")
                _prepare_frames(prep, frames, plan, p, info)
                if plan.needs_faces and prep.boxes is not None and np.isnan(prep.boxes[:, 0]).all():
                    prep.warnings.append("no face found in any sampled frame")
            else:
                prep.times, prep.indices, prep.rows = info.frame_times[idx], idx, len(idx)
        else:
            prep.video_missing = "no video stream (audio-only file): visual rows invalid"
            prep.times = _clip_times_without_video(info, plan.frames)
            prep.indices = np.full(plan.frames, -1, np.int64)
            prep.rows = plan.frames
        if plan.sample_rates:
            try:
                _prepare_audio(prep, plan, p, info, prep.times, {})
            except NoAudioError as e:
                prep.audio_missing = f"no audio: {e.reason}; audio rows invalid"
    except MediaError as e:
        prep.error = str(e)
    except Exception as e:  # noqa: BLE001 - any failure is recorded against the file
        prep.error = f"{path}: {type(e).__name__}: {e}"
        if os.environ.get("AFFECTFUSE_DEBUG"):
            prep.error += "\n" + traceback.format_exc()
    return prep


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import cv2

        cv2.setNumThreads(1)
    except Exception:  # noqa: BLE001
        pass
    import torch

    torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------------
# Running extractors on prepared videos
# ---------------------------------------------------------------------------------------------
def _input_for(ex: Extractor, prep: _Prepared) -> tuple[ExtractorInput | None, np.ndarray, str | None]:
    """The extractor's rows for one prepared video, the per-row valid mask, and a missing-stream reason."""
    c = ex.contract
    n = prep.rows
    if c.kind in ("face", "frame", "clip") and prep.video_missing:
        return None, np.zeros(n, bool), prep.video_missing
    if c.kind == "audio_fragment":
        frag = prep.audio.get(c.sample_rate)
        if frag is None:
            return None, np.zeros(n, bool), prep.audio_missing or "no audio"
        valid = frag.valid.copy()
        return ExtractorInput(audio=frag.samples, audio_lengths=frag.lengths, valid=valid), valid, None
    if c.kind == "clip":
        clips, valid = prep.clips[(c.image_size, c.clip_len, c.clip_stride)]
        return ExtractorInput(clips=clips, valid=valid), valid.copy(), None
    images, valid = prep.images[(c.kind, c.image_size)]
    return ExtractorInput(images=images, valid=valid), valid.copy(), None


def _take(inp: ExtractorInput, rows: np.ndarray) -> ExtractorInput:
    def t(a):
        return None if a is None else a[rows]

    return ExtractorInput(images=t(inp.images), clips=t(inp.clips), audio=t(inp.audio),
                          audio_lengths=t(inp.audio_lengths), valid=t(inp.valid))


def _concat(parts: list[ExtractorInput]) -> ExtractorInput:
    def cat(name):
        arrs = [getattr(p, name) for p in parts]
        if arrs[0] is None:
            return None
        if name == "audio":  # fragments of different videos have different padded lengths
            width = max(a.shape[1] for a in arrs)
            arrs = [np.pad(a, ((0, 0), (0, width - a.shape[1]))) for a in arrs]
        return np.concatenate(arrs)

    return ExtractorInput(images=cat("images"), clips=cat("clips"), audio=cat("audio"),
                          audio_lengths=cat("audio_lengths"), valid=cat("valid"))


def _run_extractor(ex: Extractor, preps: list[_Prepared]) -> dict[str, tuple[np.ndarray, np.ndarray, str | None]]:
    """Values (N, D) and valid (N,) per video for one extractor over several prepared videos.

    Only valid rows are computed; invalid rows are zeros. Returns video_id → (values, valid, missing-reason).
    """
    parts, owners, out = [], [], {}
    for prep in preps:
        inp, valid, missing = _input_for(ex, prep)
        values = np.zeros((prep.rows, ex.dim), np.float32)
        out[prep.video_id] = (values, valid, missing)
        if inp is not None and valid.any():
            rows = np.nonzero(valid)[0]
            parts.append(_take(inp, rows))
            owners.append((prep.video_id, rows))
    if parts:
        res = ex(_concat(parts))  # (sum rows, D)
        extra_valid = getattr(ex, "last_valid", None)
        o = 0
        for vid, rows in owners:
            values, valid, missing = out[vid]
            values[rows] = res[o : o + len(rows)]
            if extra_valid is not None and len(extra_valid) == len(res):
                valid[rows] &= np.asarray(extra_valid[o : o + len(rows)], bool)
            o += len(rows)
    return out


class _Runner:
    """Holds the extractors, the store and the report; writes what the extractors return."""

    def __init__(self, extractors: list[Extractor], store: FeatureStore, cfg: ExtractConfig, report: ExtractReport):
        self.extractors, self.store, self.cfg, self.report = extractors, store, cfg, report
        self.params = {ex.name: {**ex.params, "sampling": _sampling_identity(ex, cfg)} for ex in extractors}
        self.keys = {ex.name: FeatureSet(np.zeros((0, 1)), np.zeros(0), np.zeros(0, bool), ex.name,
                                         self.params[ex.name], "").key for ex in extractors}
        for ex in extractors:
            ident = {**ex.identity(), "params": self.params[ex.name], "key": self.keys[ex.name],
                     "create_kwargs": getattr(ex, "create_kwargs", cfg.extractor_params.get(ex.name, {})),
                     "sampling": self.params[ex.name]["sampling"]}
            store.register(self.keys[ex.name], ident)
        report.keys = dict(self.keys)

    def pending(self, video_id: str) -> list[Extractor]:
        if self.cfg.overwrite:
            return list(self.extractors)
        return [ex for ex in self.extractors if not self.store.has(video_id, self.keys[ex.name])]

    def fail(self, prep: _Prepared, exs: list[Extractor], message: str) -> None:
        for ex in exs:
            self.store.put_failure(prep.video_id, self.keys[ex.name], message, source=prep.source)
            self.report.failed.append((prep.video_id, self.keys[ex.name], message))

    def write(self, batch: list[tuple[_Prepared, list[Extractor]]]) -> None:
        """Run every extractor over a batch of prepared clips and store the results."""
        good = [(p, exs) for p, exs in batch if p.error is None]
        for p, exs in batch:
            if p.error is not None:
                self.fail(p, exs, p.error)
        for ex in self.extractors:
            preps = [p for p, exs in good if ex in exs]
            if not preps:
                continue
            try:
                results = _run_extractor(ex, preps)
            except Exception:  # noqa: BLE001 - isolate the video that broke the batch
                results = {}
                for p in preps:
                    try:
                        results.update(_run_extractor(ex, [p]))
                    except Exception as e:  # noqa: BLE001
                        self.fail(p, [ex], f"{p.source}: extractor {ex.name} failed: {type(e).__name__}: {e}")
            for p in preps:
                if p.video_id not in results:
                    continue
                values, valid, missing = results[p.video_id]
                self._put(p, ex, values, valid, missing)

    def _put(self, p: _Prepared, ex: Extractor, values: np.ndarray, valid: np.ndarray, missing: str | None,
             times: np.ndarray | None = None, indices: np.ndarray | None = None, boxes: np.ndarray | None = None,
             warnings: list[str] | None = None) -> None:
        warns = list(p.warnings if warnings is None else warnings)
        if missing:
            warns.append(missing)
        elif not valid.any():
            warns.append(f"{ex.name}: no valid row")
        kind = ex.contract.kind
        fs = FeatureSet(
            values=values, times=np.asarray(p.times if times is None else times, np.float64), valid=valid,
            extractor=ex.name, params=self.params[ex.name], video_id=p.video_id,
            boxes=(p.boxes if boxes is None else boxes) if kind in ("face", "clip") else None,
            indices=p.indices if indices is None else indices,
            meta={"source": p.source, "notes": warns},
        )
        self.store.put(fs, source=p.source, warnings=warns)
        self.report.done.append((p.video_id, fs.key))
        for w in warns:
            self.report.warnings.append((p.video_id, f"[{ex.name}] {w}"))


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="video", dynamic_ncols=True, disable=None, file=sys.stderr)


def _extract_frame_level(video_id: str, path: Path, runner: _Runner, exs: list[Extractor], plan: _Plan,
                         bar) -> None:
    """Frame level: stream windows of frames through faces and extractors, constant memory."""
    import queue
    import threading

    from affectfuse.io.sampling import frame_level_indices
    from affectfuse.io.video import iter_frame_windows, probe

    prep0 = _Prepared(video_id, str(path))
    try:
        info = probe(path)
    except MediaError as e:
        runner.fail(prep0, exs, str(e))
        return
    except Exception as e:  # noqa: BLE001
        runner.fail(prep0, exs, f"{path}: {type(e).__name__}: {e}")
        return
    if not info.has_video:
        runner.fail(prep0, exs, f"{path}: no video stream: frame-level extraction needs video frames")
        return
    idx = frame_level_indices(info.frame_times, fps=plan.frame_fps, step=plan.frame_step)
    acc: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {ex.name: [] for ex in exs}
    times_acc, idx_acc, box_acc, warns = [], [], [], []
    audio_cache: dict[int, tuple[np.ndarray, float]] = {}
    audio_missing = None
    q: queue.Queue = queue.Queue(maxsize=2)

    def produce():
        try:
            for fb in iter_frame_windows(path, idx, window=plan.window, info=info, max_side=plan.max_side):
                q.put(fb)
            q.put(None)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put(e)

    threading.Thread(target=produce, daemon=True).start()
    prev_box = None
    try:
        while True:
            fb = q.get()
            if fb is None:
                break
            if isinstance(fb, BaseException):
                raise fb
            prep = _Prepared(video_id, str(path))
            prev_box = _prepare_frames(prep, fb, plan, path, info, previous_box=prev_box)
            if plan.sample_rates and audio_missing is None:
                try:
                    _prepare_audio(prep, plan, path, info, prep.times, audio_cache)
                except NoAudioError as e:
                    audio_missing = f"no audio: {e.reason}; audio rows invalid"
            prep.audio_missing = audio_missing
            for ex in exs:
                values, valid, missing = _run_extractor(ex, [prep])[video_id]
                acc[ex.name].append((values, valid))
            times_acc.append(prep.times)
            idx_acc.append(prep.indices)
            box_acc.append(prep.boxes if prep.boxes is not None else np.full((prep.rows, 4), np.nan, np.float32))
            warns += prep.warnings
            bar.set_postfix_str(f"{video_id}: frame {int(prep.indices[-1]) + 1}/{info.n_frames}", refresh=False)
    except MediaError as e:
        runner.fail(prep0, exs, str(e))
        return
    except Exception as e:  # noqa: BLE001
        msg = f"{path}: {type(e).__name__}: {e}"
        if os.environ.get("AFFECTFUSE_DEBUG"):
            msg += "\n" + traceback.format_exc()
        runner.fail(prep0, exs, msg)
        return
    times, indices, boxes = np.concatenate(times_acc), np.concatenate(idx_acc), np.concatenate(box_acc)
    for ex in exs:
        values = np.concatenate([v for v, _ in acc[ex.name]])
        valid = np.concatenate([m for _, m in acc[ex.name]])
        missing = audio_missing if ex.contract.kind == "audio_fragment" else None
        runner._put(prep0, ex, values, valid, missing, times=times, indices=indices, boxes=boxes,
                    warnings=sorted(set(warns)))


def extract(
    inputs: Iterable[str | Path] | list[tuple[str, Path]],
    store: FeatureStore | str | Path,
    config: ExtractConfig | None = None,
    *,
    progress: bool = True,
    extractors: list[Extractor] | None = None,
    on_video: Callable[[str], None] | None = None,
    **overrides: Any,
) -> ExtractReport:
    """Extract features of many media files into a store.

    Args:
        inputs: files, folders, CSV/text lists (see :func:`list_inputs`), or (video_id, path) pairs.
        store: a :class:`FeatureStore` or its folder.
        config: an :class:`ExtractConfig`; keyword ``overrides`` change single fields.
        progress: show a progress bar.
        extractors: ready extractor objects (instead of creating ``config.extractors`` by name).
        on_video: called with each video id when it is finished (for tests and UIs).

    Returns:
        an :class:`ExtractReport`; failures are in the report and the store's manifest, never raised.
    """
    cfg = make_config(ExtractConfig, overrides, base=config) if (config is None or overrides) else config.validate()
    items = list(inputs)
    pairs = items if items and isinstance(items[0], tuple) else list_inputs(items)  # type: ignore[arg-type]
    if not isinstance(store, FeatureStore):
        store = FeatureStore(store, dtype="float16" if cfg.float16 else "float32")
    if extractors is None:
        extractors = []
        for name, params, modality in expand_extractors(cfg.extractors, cfg.extractor_params):
            ex = create_extractor(name, **params)
            ex.create_kwargs = params
            if modality:
                ex.modality = modality  # the stream this extractor feeds in a named set
            extractors.append(ex)
    for ex in extractors:  # a model that cannot load is a set-up error: stop before touching any video
        if not getattr(ex, "_loaded", True):
            try:
                ex.load()
            except Exception as e:  # noqa: BLE001
                raise RuntimeError(f"extractor {ex.name!r} could not be loaded: {type(e).__name__}: {e}") from e
            ex._loaded = True
    plan = _plan(extractors, cfg)
    report = ExtractReport()
    runner = _Runner(extractors, store, cfg, report)
    t0 = time.time()

    todo: list[tuple[str, Path, list[Extractor]]] = []
    for vid, path in pairs:
        exs = runner.pending(vid)
        if len(exs) < len(extractors):
            report.skipped += [(vid, runner.keys[e.name]) for e in extractors if e not in exs]
        if exs:
            todo.append((vid, Path(path), exs))

    bar = _progress(len(todo), "extract") if progress else _NullBar()
    try:
        if cfg.level == "frame":
            for vid, path, exs in todo:
                _extract_frame_level(vid, path, runner, exs, plan, bar)
                bar.update(1)
                if on_video:
                    on_video(vid)
        else:
            _extract_clips(todo, plan, runner, cfg, bar, on_video)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        bar.close()
        report.seconds = time.time() - t0
    return report


class _NullBar:
    def update(self, n=1):
        pass

    def set_postfix_str(self, *a, **k):
        pass

    def close(self):
        pass


def _extract_clips(todo, plan: _Plan, runner: _Runner, cfg: ExtractConfig, bar, on_video) -> None:
    """Clip level: workers prepare videos; the main process runs extractors on batches across videos."""
    pending: list[tuple[_Prepared, list[Extractor]]] = []

    def flush(force: bool) -> None:
        rows = sum(p.rows for p, _ in pending)
        if pending and (force or rows >= cfg.batch_rows):
            runner.write(pending)
            for p, _ in pending:
                bar.update(1)
                if on_video:
                    on_video(p.video_id)
            pending.clear()

    def consume(prep: _Prepared, exs: list[Extractor]) -> None:
        bar.set_postfix_str(f"{prep.video_id}", refresh=False)
        pending.append((prep, exs))
        flush(False)

    done: set[str] = set()
    if cfg.workers > 0:
        import multiprocessing as mp
        from concurrent.futures.process import BrokenProcessPool

        ctx = mp.get_context("spawn")
        try:
            with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=ctx, initializer=_init_worker) as pool:
                window: deque = deque()
                it = iter(todo)
                for vid, path, exs in it:  # keep a bounded number of videos in flight: memory stays flat
                    window.append((vid, pool.submit(_prepare_clip, vid, str(path), plan), exs))
                    if len(window) >= 2 * cfg.workers + 1:
                        break
                while window:
                    vid, fut, exs = window.popleft()
                    consume(fut.result(), exs)
                    done.add(vid)
                    nxt = next(it, None)
                    if nxt is not None:
                        vid2, path2, exs2 = nxt
                        window.append((vid2, pool.submit(_prepare_clip, vid2, str(path2), plan), exs2))
        except BrokenProcessPool:
            # a worker died (a decoder crash on a bad file, out of memory): finish in this process, where a
            # failure is caught per video
            print("extract: a decoding worker died; continuing without workers", file=sys.stderr)
    for vid, path, exs in todo:
        if vid not in done:
            consume(_prepare_clip(vid, str(path), plan), exs)
    flush(True)
