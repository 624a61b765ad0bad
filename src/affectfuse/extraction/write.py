"""Running the extractors on prepared parts and writing the store (the caller's side of the engine).

:class:`Writer` collects prepared parts of any number of videos until ``batch_rows`` rows are waiting, runs
every extractor once over all of them (backbones run batched across videos), hands each part its rows back,
and writes a video's feature sets as soon as its last part has been computed. Only valid rows are computed;
invalid rows are zeros with ``valid=False``. A batch that breaks an extractor is retried part by part, so one
bad video fails alone. The writer is the only writer of the store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from affectfuse.extraction.config import ExtractConfig, ExtractReport
from affectfuse.extraction.plan import Stream
from affectfuse.extraction.prepare import Prepared
from affectfuse.errors import MediaError
from affectfuse.extractors.base import ExtractorInput
from affectfuse.features.store import FeatureStore
from affectfuse.io.video import decoding_record, probe, stale_decoding
from affectfuse.types import FeatureSet

__all__ = ["Writer"]


def _input_for(stream: Stream, prep: Prepared) -> tuple[ExtractorInput | None, np.ndarray, str | None]:
    """The extractor's rows for one part, the per-row valid mask, and a missing-stream reason."""
    c = stream.extractor.contract
    n = prep.rows
    if c.kind in ("face", "frame", "clip") and prep.video_missing:
        return None, np.zeros(n, bool), prep.video_missing
    if c.kind == "audio_fragment":
        frag = prep.audio.get(c.sample_rate)
        if frag is None:
            return None, np.zeros(n, bool), prep.audio_missing or "no audio"
        return ExtractorInput(audio=frag.samples, audio_lengths=frag.lengths, valid=frag.valid.copy()), frag.valid.copy(), None
    if c.kind == "clip":
        clips, valid = prep.clips[(c.image_size, c.clip_len, c.clip_stride, c.clip_anchor)]
        return ExtractorInput(clips=clips, valid=valid), valid.copy(), None
    images, valid = prep.images[stream.image_request]
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


Rows = tuple[np.ndarray, np.ndarray, "str | None"]  # values (N, D), valid (N,), missing-stream reason


def _run(stream: Stream, parts: list[Prepared]) -> list[Rows]:
    """Values and valid rows of one extractor for several parts (one call over the valid rows of all)."""
    ex = stream.extractor
    inputs, owners, out = [], [], []
    for k, prep in enumerate(parts):
        inp, valid, missing = _input_for(stream, prep)
        out.append((np.zeros((prep.rows, ex.dim), np.float32), valid, missing))
        if inp is not None and valid.any():
            rows = np.nonzero(valid)[0]
            inputs.append(_take(inp, rows))
            owners.append((k, rows))
    if inputs:
        values, ok = ex(_concat(inputs))  # (sum rows, D), (sum rows,)
        o = 0
        for k, rows in owners:
            out[k][0][rows] = values[o : o + len(rows)]
            out[k][1][rows] &= ok[o : o + len(rows)]
            o += len(rows)
    return out


@dataclass
class _Video:
    """A video being assembled from its parts."""

    streams: list[Stream]
    parts: list[Prepared] = field(default_factory=list)  # computed parts, pixels dropped
    rows: dict[str, list[Rows]] = field(default_factory=dict)  # stream key → rows of each computed part
    failed: set[str] = field(default_factory=set)

    def needs(self, s: Stream) -> bool:
        return s.key not in self.failed and any(s.key == t.key for t in self.streams)


class Writer:
    """Batches parts across videos, runs the extractors and writes the store (see the module docstring).

    Args:
        streams: the run's streams.
        store: where features go.
        cfg: the run's config (``batch_rows``, ``level``, ``overwrite``).
        report: filled as the run goes.
        on_video: called with each video id when its features are written.
    """

    def __init__(self, streams: list[Stream], store: FeatureStore, cfg: ExtractConfig, report: ExtractReport,
                 on_video: Callable[[str], None] | None = None) -> None:
        self.streams, self.store, self.cfg, self.report, self.on_video = streams, store, cfg, report, on_video
        self.videos: dict[str, _Video] = {}
        self.buffer: list[Prepared] = []
        self.seconds: dict[str, float] = {}  # per stage: the workers' decode / faces / crops, each extractor, store
        for s in streams:
            store.register(s.key, s.identity())
        report.keys = {s.name: s.key for s in streams}

    def pending(self, video_id: str, source: str | Path | None = None) -> list[Stream]:
        """The streams a video still needs (all with ``overwrite``).

        An existing entry written by an older decoding (no ``meta["decoding"]`` record) is checked against its
        file once: recomputed, with a warning, when today's decoding differs for that file (a rotated video,
        MPEG-4 Part 2 with B-frames; :func:`~affectfuse.io.video.stale_decoding`), else stamped as current.
        """
        if self.cfg.overwrite:
            return list(self.streams)
        todo, info = [], None
        for s in self.streams:
            meta = self.store.meta(video_id, s.key)
            if meta is None:
                todo.append(s)
                continue
            if isinstance(meta.get("decoding"), dict) or source is None:
                continue
            if info is None:
                try:
                    info = probe(source)
                except MediaError:
                    return todo  # the file is gone or unreadable now: keep what was computed from it
            reason = stale_decoding(meta, info)
            if reason:
                todo.append(s)
                self.report.warnings.append((video_id, f"[{s.name}] recomputed: {reason}"))
            else:
                self.store.update_meta(video_id, s.key, {**meta, "decoding": decoding_record(info)})
        return todo

    def start(self, video_id: str, streams: list[Stream]) -> None:
        self.videos[video_id] = _Video(streams)

    # -- parts in -------------------------------------------------------------------------------
    def add(self, part: Prepared) -> None:
        """Take a prepared part; compute and write when enough rows wait."""
        if part.error is not None:
            self.fail(part.video_id, part.source, part.error)
            return
        for stage, sec in part.seconds.items():
            self.seconds[stage] = self.seconds.get(stage, 0.0) + sec
        self.buffer.append(part)
        if sum(p.rows for p in self.buffer) >= self.cfg.batch_rows:
            self.flush()

    def fail(self, video_id: str, source: str, message: str) -> None:
        """Record a video as failed for every stream it still needed; drop what was computed of it."""
        video = self.videos.pop(video_id, None)
        self.buffer = [p for p in self.buffer if p.video_id != video_id]
        if video is None:
            return
        for s in video.streams:
            if s.key not in video.failed:
                self._fail_stream(video_id, source, s, message)
        self._finished(video_id)

    def flush(self) -> None:
        """Run every extractor over the waiting parts, then write the videos whose last part was among them."""
        parts, self.buffer = self.buffer, []
        if not parts:
            return
        for s in self.streams:
            mine = [p for p in parts if self.videos[p.video_id].needs(s)]
            t0 = time.perf_counter()
            computed = self._rows(s, mine)
            self.seconds[s.name] = self.seconds.get(s.name, 0.0) + time.perf_counter() - t0
            for p, rows in zip(mine, computed):
                if rows is not None:
                    self.videos[p.video_id].rows.setdefault(s.key, []).append(rows)
        t0 = time.perf_counter()
        for p in parts:
            video = self.videos[p.video_id]
            video.parts.append(_light(p))
            if p.last:
                self._write(p.video_id, self.videos.pop(p.video_id))
        self.seconds["store"] = self.seconds.get("store", 0.0) + time.perf_counter() - t0

    def _rows(self, s: Stream, parts: list[Prepared]) -> list[Rows | None]:
        if not parts:
            return []
        try:
            return _run(s, parts)
        except Exception:  # noqa: BLE001 - isolate the part that broke the batch
            out: list[Rows | None] = []
            for p in parts:
                try:
                    out.append(_run(s, [p])[0])
                except Exception as e:  # noqa: BLE001
                    self._fail_stream(p.video_id, p.source, s, f"{p.source}: extractor {s.name} failed: "
                                                                f"{type(e).__name__}: {e}")
                    self.videos[p.video_id].failed.add(s.key)
                    out.append(None)
            return out

    # -- features out ---------------------------------------------------------------------------
    def _fail_stream(self, video_id: str, source: str, s: Stream, message: str) -> None:
        self.store.put_failure(video_id, s.key, message, source=source)
        self.report.failed.append((video_id, s.key, message))

    def _write(self, video_id: str, video: _Video) -> None:
        parts = video.parts
        notes = [w for p in parts for w in p.warnings]
        notes = sorted(set(notes)) if self.cfg.level == "frame" else notes
        times = np.concatenate([np.asarray(p.times, np.float64) for p in parts])
        indices = np.concatenate([p.indices for p in parts])
        boxes = _cat([p.boxes for p in parts], [p.rows for p in parts], (4,))
        scores = _cat([p.scores for p in parts], [p.rows for p in parts], ())
        for s in video.streams:
            if s.key in video.failed:
                continue
            rows = video.rows[s.key]
            values = np.concatenate([r[0] for r in rows])
            valid = np.concatenate([r[1] for r in rows])
            missing = next((r[2] for r in rows if r[2]), None)
            warns = [n for n in notes if concerns(n, s.kind)] + (
                [missing] if missing else [] if valid.any() else [f"{s.name}: no valid row"])
            face = s.kind in ("face", "clip")
            fs = FeatureSet(values=values, times=times, valid=valid, extractor=s.name, params=s.params,
                            video_id=video_id, boxes=boxes if face else None, indices=indices,
                            scores=scores if face else None,
                            meta={"source": parts[0].source, "notes": warns, "video": parts[0].video,
                                  "decoding": parts[0].decoding})
            self.store.put(fs, source=parts[0].source, warnings=warns)
            self.report.done.append((video_id, fs.key))
            self.report.warnings += [(video_id, f"[{s.name}] {w}") for w in warns]
        self._finished(video_id)

    def _finished(self, video_id: str) -> None:
        if self.on_video is not None:
            self.on_video(video_id)


#: notes about the pictures (faces, decoded frames, scaling): not said of an extractor that reads only audio
_FACE_NOTES = ("faces:", "no face found")
_PICTURE_NOTES = ("downscaled", "decoder:")
_PICTURE_WORDS = ("flagged corrupt by the decoder", "frames could not be decoded")
#: notes about the sound alone: said only of extractors that read audio
_AUDIO_NOTES = ("the audio stream ends early",)


def concerns(note: str, kind: str) -> bool:
    """Whether a video's note concerns an extractor of input kind ``kind`` (``face``, ``clip``, ``frame``,
    ``audio_fragment``, ...): face notes only face and clip extractors, notes on the decoded pictures every
    extractor that reads them, an audio stream ending early the audio extractors, the rest (truncation, the video
    stream ending early, repeated rows) every extractor."""
    if note.startswith(_FACE_NOTES):
        return kind in ("face", "clip")
    if note.startswith(_AUDIO_NOTES):
        return kind.startswith("audio")
    if note.startswith(_PICTURE_NOTES) or any(w in note for w in _PICTURE_WORDS):
        return not kind.startswith("audio")
    return True


def _light(p: Prepared) -> Prepared:
    """A computed part without its pixels and audio (what writing the features still needs)."""
    return Prepared(p.video_id, p.source, rows=p.rows, times=p.times, indices=p.indices, boxes=p.boxes,
                    scores=p.scores, warnings=p.warnings, video=p.video, decoding=p.decoding, window=p.window,
                    last=p.last)


def _cat(arrays: list[np.ndarray | None], rows: list[int], tail: tuple[int, ...]) -> np.ndarray | None:
    """Concatenate per-part arrays; parts without one get NaN rows; None when no part has one."""
    if all(a is None for a in arrays):
        return None
    return np.concatenate([np.full((n, *tail), np.nan, np.float32) if a is None else np.asarray(a, np.float32)
                           for a, n in zip(arrays, rows)])
