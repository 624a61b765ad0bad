"""Which frames and which audio to take, and the one hop that takes them: ``sample(path, spec) → Clip``.

:func:`sample` is the only place where a media file becomes sampled frames and audio: feature extraction,
end-to-end training on raw video (``RawVideoDataset``) and the offline ``predict`` all go through it, so they
agree on which frames, which audio and which time grid. Its rules:

* clip level (ViPER): :func:`clip_indices` — exactly ``frames`` rows evenly spaced over the video, first and
  last included, repeats marked invalid; a file without video gets ``frames`` times evenly spaced over
  ``[0, duration]`` (its clock starts at the audio stream's start) and frame index -1;
* frame level (Aff-Wild2): :func:`frame_level_indices` — every ``frame_step``-th frame or the frame nearest
  each point of a ``frame_fps`` grid, delivered in consecutive windows of ``window`` rows so that memory stays
  flat; a file without video cannot be sampled at frame level;
* audio: ViPER's non-overlapping fragments (:func:`audio_fragments`) at clip level, ``audio_window``-second
  windows centred on each row (:func:`centred_windows`) at frame level, for every sample rate asked for; the
  whole track (``waveform_rate``) for end-to-end models;
* a truncated file (the container declares more than the data holds; ``VideoInfo.notes`` says so) is
  sampled over what can be decoded, or with ``span="declared"`` over the declared duration with the missing
  rows invalid — an explicit choice recorded in the store key when not the default;
* frames are decoded downscaled to ``max_side`` (``FrameBatch.source_size`` keeps the video's own size, and
  face boxes are always in its pixels).

All times are seconds on the clock of :func:`affectfuse.io.video.probe` (video stream start = 0). Audio
arrays come with ``audio_start``, the time of their first sample on that clock (from
:func:`affectfuse.io.video.read_audio`), so cutting is by timestamps, never by assuming that sample 0
is at time 0.

Fragment convention (shared by :func:`audio_fragments` and :func:`centred_windows`): row ``i`` of
``samples`` holds ``lengths[i]`` real samples, left-aligned, followed by zero padding;
``samples[i, j]`` (``j < lengths[i]``) is the audio at ``starts[i] + j / sample_rate``. ``starts`` and
``ends`` are the span of the real samples, or the nominal fragment bounds when the row has no audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from affectfuse.errors import MediaError, NoAudioError
from affectfuse.io.frames import decoded_size, iter_frame_windows, read_frames
from affectfuse.io.video import probe, read_audio
from affectfuse.types import AudioFragments, Clip, FrameBatch, VideoInfo

__all__ = ["clip_offsets", "clip_indices", "frame_level_indices", "audio_fragments", "overlapping_windows", "centred_windows",
           "SamplingSpec", "sample", "sample_clip"]


def clip_indices(n_frames: int, n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """ViPER clip-level sampling: ``n`` frame indices evenly spaced over the whole video.

    The first and the last frame are always included (for ``n >= 2``) and there are always exactly ``n``
    rows. With fewer frames than ``n`` every frame is used and some repeat; a repeat is marked
    ``valid=False`` (its first occurrence stays True), so a fixed-size model input never counts a frame
    twice.

    Args:
        n_frames: frames in the video (>= 1).
        n: rows wanted (>= 1).

    Returns:
        ``(indices, valid)``: int64 ``(n,)`` non-decreasing, bool ``(n,)``.

    Raises:
        ValueError: ``n_frames < 1`` or ``n < 1``.
    """
    if int(n_frames) != n_frames or n_frames < 1:
        raise ValueError(f"clip_indices: expected a video with at least 1 frame, got n_frames={n_frames}")
    if int(n) != n or n < 1:
        raise ValueError(f"clip_indices: expected n >= 1 rows, got n={n}")
    pos = np.linspace(0.0, n_frames - 1, int(n))
    idx = np.floor(pos + 0.5).astype(np.int64)  # round half up
    idx = np.clip(idx, 0, n_frames - 1)
    valid = np.ones(int(n), dtype=bool)
    valid[1:] = idx[1:] != idx[:-1]
    return idx, valid


def frame_level_indices(frame_times: np.ndarray, *, fps: float | None = None, step: int = 1) -> np.ndarray:
    """Frames for frame-level tasks (Aff-Wild2 style).

    Args:
        frame_times: ``(T,)`` increasing frame times (``VideoInfo.frame_times``).
        fps: when given, a fixed-rate grid from the first to the last frame time at ``fps`` points per
            second; each grid point takes its nearest frame and duplicates are dropped.
        step: without ``fps``: every ``step``-th frame.

    Returns:
        int64 ``(K,)`` sorted unique frame indices.
    """
    t = np.asarray(frame_times, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError(f"frame_times must be 1-D, got shape {t.shape}")
    if len(t) == 0:
        return np.zeros(0, dtype=np.int64)
    if fps is None:
        if int(step) != step or step < 1:
            raise ValueError(f"step must be a positive integer, got {step}")
        return np.arange(0, len(t), int(step), dtype=np.int64)
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    n_grid = int(np.floor((t[-1] - t[0]) * fps + 1e-9)) + 1
    grid = t[0] + np.arange(n_grid) / fps
    j = np.clip(np.searchsorted(t, grid), 1, len(t) - 1) if len(t) > 1 else np.zeros(n_grid, dtype=np.int64)
    if len(t) > 1:
        left_closer = (grid - t[j - 1]) <= (t[j] - grid)
        j = np.where(left_closer, j - 1, j)
    return np.unique(j.astype(np.int64))


def _cut(
    audio: np.ndarray,
    sample_rate: int,
    lo: np.ndarray,
    hi: np.ndarray,
    nominal_starts: np.ndarray,
    nominal_ends: np.ndarray,
    times: np.ndarray,
    audio_start: float,
    start: float,
    end: float | None,
) -> AudioFragments:
    """Rows ``audio[lo[i]:hi[i]]`` (sample positions, possibly outside the array) as AudioFragments."""
    a = np.asarray(audio, dtype=np.float32).reshape(-1)
    n_avail_lo = 0
    n_avail_hi = len(a)
    # the usable span [start, end] on the media clock, in sample positions of ``audio``
    if np.isfinite(start):
        n_avail_lo = max(n_avail_lo, int(np.ceil((start - audio_start) * sample_rate - 1e-6)))
    if end is not None and np.isfinite(end):
        n_avail_hi = min(n_avail_hi, int(np.floor((end - audio_start) * sample_rate + 1e-6)))
    rlo = np.clip(lo, n_avail_lo, max(n_avail_hi, n_avail_lo))
    rhi = np.clip(hi, n_avail_lo, max(n_avail_hi, n_avail_lo))
    lengths = np.maximum(rhi - rlo, 0).astype(np.int64)
    width = max(int(lengths.max()) if len(lengths) else 0, 1)
    samples = np.zeros((len(lo), width), dtype=np.float32)  # (N, L)
    for i in range(len(lo)):
        if lengths[i]:
            samples[i, : lengths[i]] = a[rlo[i] : rhi[i]]
    valid = lengths > 0
    starts = np.where(valid, audio_start + rlo / sample_rate, nominal_starts).astype(np.float64)
    ends = np.where(valid, audio_start + rhi / sample_rate, nominal_ends).astype(np.float64)
    return AudioFragments(
        samples=samples, lengths=lengths, starts=starts, ends=ends, times=times.astype(np.float64),
        valid=valid, sample_rate=int(sample_rate),
    )


def _check(audio, sample_rate, times) -> np.ndarray:
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if np.asarray(audio).ndim != 1:
        raise ValueError(f"audio must be mono (S,), got shape {np.asarray(audio).shape}")
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    if len(t) > 1 and np.any(np.diff(t) < 0):
        raise ValueError("times must be non-decreasing (sort the sampled frames by time first)")
    return t


def audio_fragments(
    audio: np.ndarray,
    sample_rate: int,
    times: np.ndarray,
    *,
    audio_start: float = 0.0,
    start: float = 0.0,
    end: float | None = None,
) -> AudioFragments:
    """ViPER (section 3.2): cut the audio into one fragment per sampled time, without overlap.

    Fragment boundaries are the midpoints between consecutive times; the first fragment starts at
    ``times[0]`` and the last ends at ``times[-1]``, so with evenly spaced times every fragment has the
    same length except the two at the ends, which are half as long and begin / end at their frame. The
    whole fragment is kept (no truncation to a fixed length). Boundaries are rounded to samples once
    and shared by neighbours, so fragments never overlap and their lengths add up to the samples between
    ``times[0]`` and ``times[-1]``. A repeated time (a frame sampled twice) gets its fragment on its first
    occurrence; the repeats get empty fragments (``valid=False``), like the repeated frames themselves.

    Args:
        audio: mono waveform ``(S,)``.
        sample_rate: its rate in Hz.
        times: ``(N,)`` non-decreasing times (seconds) of the sampled frames.
        audio_start: time of ``audio[0]`` on the same clock.
        start: audio before this time counts as missing (e.g. to restrict to one segment of a file).
        end: audio after this time counts as missing; None = no limit.

    Returns:
        :class:`~affectfuse.types.AudioFragments` (see the module docstring for the row layout). Parts
        outside the audio are missing: ``lengths`` count real samples, rows without any are invalid.

    Shape:
        samples ``(N, L)`` with ``L = max(lengths)`` (at least 1); the other arrays ``(N,)``.
    """
    t = _check(audio, sample_rate, times)
    if len(t) == 0:
        return _cut(audio, sample_rate, *(np.zeros(0, dtype=np.int64),) * 2, *(np.zeros(0),) * 3, audio_start, start, end)
    u, first = np.unique(t, return_index=True)  # repeats: the first occurrence gets the fragment
    bounds = np.concatenate([[u[0]], (u[:-1] + u[1:]) / 2.0, [u[-1]]])  # (U + 1,)
    pos = np.floor((bounds - audio_start) * sample_rate + 0.5).astype(np.int64)
    k = np.searchsorted(u, t)  # (N,) unique-time slot of each row
    lo, hi = pos[k].copy(), pos[k + 1].copy()
    b0, b1 = bounds[k].copy(), bounds[k + 1].copy()
    rep = np.ones(len(t), dtype=bool)
    rep[first] = False
    tpos = np.floor((t - audio_start) * sample_rate + 0.5).astype(np.int64)
    lo[rep], hi[rep], b0[rep], b1[rep] = tpos[rep], tpos[rep], t[rep], t[rep]
    return _cut(audio, sample_rate, lo, hi, b0, b1, t, audio_start, start, end)


def overlapping_windows(
    audio: np.ndarray,
    sample_rate: int,
    times: np.ndarray,
    *,
    audio_start: float = 0.0,
) -> AudioFragments:
    """ViPER's code (``extract_audio_features.py``): ``n`` windows of ``2 L / (n + 1)`` seconds with 50 %
    overlap, uniformly over the whole track of ``L`` seconds — window ``i`` spans ``[i, i + 2] · L / (n + 1)`` —
    row ``i`` belonging to the ``i``-th sampled time (aligned in order, not by timestamps). At 32 rows over
    12 s: 0.73 s windows, the 0.74 s mean the paper's §4 reports (its §3.2 describes :func:`audio_fragments`).

    Shape:
        samples ``(N, L_w)``; the other arrays ``(N,)``.
    """
    t = _check(audio, sample_rate, times)
    n = len(t)
    a = np.asarray(audio, dtype=np.float32).reshape(-1)
    step = len(a) / (n + 1) if n else 0.0
    lo = np.floor(np.arange(n) * step + 0.5).astype(np.int64)
    hi = np.floor((np.arange(n) + 2) * step + 0.5).astype(np.int64)
    return _cut(a, sample_rate, lo, hi, audio_start + lo / sample_rate, audio_start + hi / sample_rate, t,
                audio_start, -np.inf, None)


def centred_windows(
    audio: np.ndarray,
    sample_rate: int,
    times: np.ndarray,
    *,
    length: float,
    audio_start: float = 0.0,
) -> AudioFragments:
    """Fixed-length windows centred on each time (frame-level audio); windows may overlap.

    Args:
        audio: mono waveform ``(S,)``.
        sample_rate: Hz.
        times: ``(N,)`` times in seconds.
        length: window length in seconds (``round(length * sample_rate)`` samples).
        audio_start: time of ``audio[0]``.

    Returns:
        :class:`~affectfuse.types.AudioFragments`: windows cut at the audio's edges keep only their real
        samples (``lengths``) and are zero-padded after them; rows with no audio are invalid.

    Shape:
        samples ``(N, round(length * sample_rate))``.
    """
    t = _check(audio, sample_rate, times)
    if not length > 0:
        raise ValueError(f"length must be positive seconds, got {length}")
    n = int(round(length * sample_rate))
    lo = np.floor((t - length / 2.0 - audio_start) * sample_rate + 0.5).astype(np.int64)
    frag = _cut(audio, sample_rate, lo, lo + n, t - length / 2.0, t + length / 2.0, t, audio_start, -np.inf, None)
    if frag.samples.shape[1] != n:  # keep the fixed width even when every window is cut at an edge
        s = np.zeros((len(t), n), dtype=np.float32)
        w = min(n, frag.samples.shape[1])
        s[:, :w] = frag.samples[:, :w]
        frag.samples = s
    return frag


@dataclass(frozen=True, kw_only=True)
class SamplingSpec:
    """What :func:`sample` takes from a media file.

    Attributes:
        level: ``"clip"`` (``frames`` rows per file) or ``"frame"`` (every ``frame_step``-th frame, or
            ``frame_fps`` frames per second, in windows of ``window`` rows).
        frames: rows per file at clip level.
        frame_step: frame-level step in frames.
        frame_fps: frame-level fixed rate (overrides ``frame_step``).
        window: rows per window at frame level.
        pixels: decode the sampled frames (False: only their times and indices).
        max_side: frames are decoded downscaled so that their longer side is at most this; None = as stored.
        context: ``(clip_len, clip_stride, anchor)`` triples: also decode ``clip_len`` frames ``clip_stride`` apart for
            each row, centred on it (anchor ``"centre"``: offsets ``(k - clip_len // 2) * clip_stride``) or ending at
            it (``"end"``: ``(k - clip_len + 1) * clip_stride``), for ``k < clip_len``, clamped to the video.
        sample_rates: cut audio fragments at each of these rates (Hz).
        audio_window: frame level: seconds of audio centred on each row.
        waveform_rate: also return the whole audio track at this rate (Hz); None = no.
        max_seconds: keep at most this many seconds of the whole track; None = all.
        fragments: clip level: ``"paper"`` (ViPER §3.2: one non-overlapping fragment per row, centred on its frame,
            the end ones half as long: :func:`audio_fragments`) or ``"code"`` (ViPER's code: 50 % overlapping windows
            of ``2 L / (N + 1)`` over the whole track: :func:`overlapping_windows`).
        span: what a truncated file is sampled over: ``"decodable"`` (the frames and audio that exist, the
            default) or ``"declared"`` (the duration the container declares: rows past the decodable end are
            invalid, so the rows keep the times an intact file would give them).
    """

    level: Literal["clip", "frame"] = "clip"
    frames: int = 32
    frame_step: int = 1
    frame_fps: float | None = None
    window: int = 64
    pixels: bool = True
    max_side: int | None = 1280
    context: tuple[tuple[int, int, str], ...] = ()
    sample_rates: tuple[int, ...] = ()
    audio_window: float = 1.0
    waveform_rate: int | None = None
    max_seconds: float | None = None
    span: Literal["decodable", "declared"] = "decodable"
    fragments: Literal["paper", "code"] = "paper"

    def validate(self) -> "SamplingSpec":
        if self.level not in ("clip", "frame"):
            raise ValueError(f"SamplingSpec.level must be 'clip' or 'frame', got {self.level!r}")
        if self.frames < 1 or self.frame_step < 1 or self.window < 1:
            raise ValueError(f"SamplingSpec: frames, frame_step and window must be >= 1, got {self.frames}, "
                             f"{self.frame_step}, {self.window}")
        if self.frame_fps is not None and not self.frame_fps > 0:
            raise ValueError(f"SamplingSpec.frame_fps must be > 0, got {self.frame_fps}")
        if self.max_side is not None and self.max_side < 1:
            raise ValueError(f"SamplingSpec.max_side must be a positive number of pixels, got {self.max_side}")
        if self.fragments not in ("paper", "code"):
            raise ValueError(f"SamplingSpec.fragments must be 'paper' or 'code', got {self.fragments!r}")
        if self.span not in ("decodable", "declared"):
            raise ValueError(f"SamplingSpec.span must be 'decodable' or 'declared', got {self.span!r}")
        for c in self.context:
            if len(c) != 3 or int(c[0]) < 1 or int(c[1]) < 1 or c[2] not in ("centre", "end"):
                raise ValueError(f"SamplingSpec.context: (clip_len >= 1, clip_stride >= 1, 'centre' | 'end') expected, "
                                 f"got {c!r}")
        if any(r <= 0 for r in self.sample_rates) or not self.audio_window > 0:
            raise ValueError(f"SamplingSpec: sample rates and audio_window must be positive, got "
                             f"{self.sample_rates}, {self.audio_window}")
        return self


class _Audio:
    """The file's audio track, decoded once per sample rate on first use (or the reason there is none)."""

    def __init__(self, path: Path, info: VideoInfo) -> None:
        self.path, self.info = path, info
        self.tracks: dict[int, tuple[np.ndarray, float]] = {}
        self.missing: str | None = None

    def track(self, sr: int) -> tuple[np.ndarray, float] | None:
        if self.missing is None and sr not in self.tracks:
            try:
                self.tracks[sr] = read_audio(self.path, sample_rate=sr, info=self.info)
            except NoAudioError as e:
                self.missing = f"no audio: {e.reason}; audio rows invalid"
        return self.tracks.get(sr)

    def fragments(self, spec: SamplingSpec, times: np.ndarray) -> dict[int, AudioFragments]:
        out: dict[int, AudioFragments] = {}
        for sr in spec.sample_rates:
            tr = self.track(sr)
            if tr is None:
                return {}
            wave, start = tr
            if spec.level == "clip" and spec.fragments == "code":
                out[sr] = overlapping_windows(wave, sr, times, audio_start=start)
            elif spec.level == "clip":
                out[sr] = audio_fragments(wave, sr, times, audio_start=start)
            else:
                out[sr] = centred_windows(wave, sr, times, length=spec.audio_window, audio_start=start)
        return out


def clip_offsets(length: int, stride: int, anchor: str = "centre") -> np.ndarray:
    """Frame offsets of a clip from its row's frame: centred on it, or ending at it (``anchor="end"``).

    Shape:
        ``(length,)`` int64, increasing.
    """
    if anchor not in ("centre", "end"):
        raise ValueError(f"clip anchor must be 'centre' or 'end', got {anchor!r}")
    first = length // 2 if anchor == "centre" else length - 1
    return (np.arange(length, dtype=np.int64) - first) * stride


def _context(path: Path, info: VideoInfo, frames: FrameBatch, spec: SamplingSpec
             ) -> dict[tuple[int, int, str], FrameBatch]:
    """The frames of each row's clip for every ``(clip_len, clip_stride, anchor)`` of the spec (``N * clip_len`` rows)."""
    out = {}
    for length, stride, anchor in spec.context:
        offs = clip_offsets(length, stride, anchor)  # (L,)
        idx = np.clip(frames.indices[:, None] + offs[None, :], 0, info.n_frames - 1)  # (N, L)
        out[(length, stride, anchor)] = read_frames(path, idx.reshape(-1), info=info, max_side=spec.max_side)
    return out


def _grid(info: VideoInfo, spec: SamplingSpec) -> np.ndarray:
    """Frame times to sample from: the decodable frames, and with ``span="declared"`` virtual frames at the
    nominal rate from the last decodable frame to the declared duration (a truncated file)."""
    t = info.frame_times
    if spec.span != "declared" or not info.declared_duration or not info.nominal_fps or not len(t):
        return t
    step = 1.0 / info.nominal_fps
    extra = int(np.ceil((info.declared_duration - t[-1]) * info.nominal_fps - 1e-6)) - 1  # frames before the end
    return t if extra <= 0 else np.concatenate([t, t[-1] + step * np.arange(1, extra + 1)])


def _span_note(info: VideoInfo, virtual: int) -> list[str]:
    if not virtual:
        return []
    return [f"sampled over the declared {info.declared_duration:.2f} s (span='declared'): {virtual} rows past the "
            f"decodable end ({info.duration:.2f} s) are invalid"]


def _sample_clip_level(video_id: str, path: Path, info: VideoInfo, spec: SamplingSpec) -> Clip:
    audio = _Audio(path, info)
    notes: list[str] = list(info.notes)
    frames, context, video_missing = None, {}, None
    if info.has_video:
        grid = _grid(info, spec)
        idx, valid = clip_indices(len(grid), spec.frames)
        times = grid[idx]
        real = idx < info.n_frames
        valid &= real
        if spec.pixels:
            frames = read_frames(path, np.minimum(idx, info.n_frames - 1), info=info, max_side=spec.max_side)
            frames.valid &= valid
            frames.pixels[~real] = 0
            frames.times, frames.indices = times, np.where(real, idx, -1)
            frames.notes = notes + frames.notes
            notes = frames.notes
            context = _context(path, info, frames, spec)
        idx = np.where(real, idx, -1)
        if not valid[real].all():
            notes.append(f"video has {info.n_frames} frames, {spec.frames} requested: "
                         f"{int((~valid[real]).sum())} rows repeat frames and are invalid")
        notes += _span_note(info, int((~real).sum()))
    else:
        video_missing = "no video stream (audio-only file): visual rows invalid"
        end = info.declared_duration if spec.span == "declared" and info.declared_duration else info.duration
        times = np.linspace(0.0, max(end, 0.0), spec.frames)
        idx = np.full(spec.frames, -1, np.int64)
        valid = np.ones(spec.frames, bool)
    clip = Clip(video_id=video_id, source=path, info=info, times=times.astype(np.float64), indices=idx, valid=valid,
                frames=frames, context=context, fragments=audio.fragments(spec, times), video_missing=video_missing,
                notes=notes)
    if spec.waveform_rate:
        tr = audio.track(spec.waveform_rate)
        if tr is not None:
            wave, clip.audio_start = tr
            keep = len(wave) if spec.max_seconds is None else int(spec.max_seconds * spec.waveform_rate)
            clip.waveform = wave[:keep].astype(np.float32)
        clip.sample_rate = spec.waveform_rate
    clip.audio_missing = audio.missing
    return clip


def _windows(path: Path, info: VideoInfo, idx: np.ndarray, spec: SamplingSpec) -> Iterator[FrameBatch | np.ndarray]:
    """Consecutive windows of the sampled rows: decoded frames, or only their indices without pixels; rows
    past the decodable end (``span="declared"``) come last, as black invalid frames with index -1."""
    real, virtual = idx[idx < info.n_frames], idx[idx >= info.n_frames]
    if spec.pixels:
        yield from iter_frame_windows(path, real, window=spec.window, info=info, max_side=spec.max_side)
    else:
        for s in range(0, len(real), spec.window):
            yield real[s : s + spec.window]
    for s in range(0, len(virtual), spec.window):
        rows = virtual[s : s + spec.window]
        if not spec.pixels:
            yield rows
            continue
        w, h = decoded_size(info, spec.max_side)
        yield FrameBatch(pixels=np.zeros((len(rows), h, w, 3), np.uint8), times=np.zeros(len(rows)), indices=rows,
                         valid=np.zeros(len(rows), bool))


def _sample_frame_level(video_id: str, path: Path, info: VideoInfo, spec: SamplingSpec) -> Iterator[Clip]:
    if not info.has_video:
        raise MediaError(path, "no video stream: frame-level extraction needs video frames")
    grid = _grid(info, spec)
    idx = frame_level_indices(grid, fps=spec.frame_fps, step=spec.frame_step)
    n_real = int((idx < info.n_frames).sum())
    n_windows = max(1, -(-n_real // spec.window) + -(-(len(idx) - n_real) // spec.window))
    audio = _Audio(path, info)
    for k, w in enumerate(_windows(path, info, idx, spec)):
        frames = w if isinstance(w, FrameBatch) else None
        rows = frames.indices if frames is not None else w
        times = grid[rows].astype(np.float64)
        real = rows < info.n_frames
        indices = np.where(real, rows, -1)
        if frames is not None:
            frames.times, frames.indices = times, indices
        notes = list(info.notes) + ([] if frames is None else list(frames.notes)) + _span_note(info, int((~real).sum()))
        yield Clip(video_id=video_id, source=path, info=info, times=times, indices=indices, valid=real,
                   frames=frames, context={} if frames is None else _context(path, info, frames, spec),
                   fragments=audio.fragments(spec, times), audio_missing=audio.missing,
                   notes=notes, window=k, last=k == n_windows - 1)


def sample(video_id: str, path: str | Path, spec: SamplingSpec, *, info: VideoInfo | None = None) -> Iterator[Clip]:
    """Decode and sample one media file: one :class:`~affectfuse.types.Clip` at clip level, consecutive windows
    at frame level (rules: module docstring).

    Args:
        video_id: the id the clip is known by.
        path: the media file.
        spec: what to take (:class:`SamplingSpec`).
        info: the file's :func:`~affectfuse.io.video.probe` result, if at hand.

    Yields:
        Clips; at frame level the last one has ``last=True``. A missing audio track is not an error: the
        clips have no fragments and say why in ``audio_missing`` (likewise ``video_missing`` at clip level).

    Raises:
        MediaError: the file cannot be read, or has no video at frame level, or no requested frame decodes.
    """
    path = Path(path)
    spec = spec.validate()
    info = info if info is not None else probe(path)
    if spec.level == "clip":
        yield _sample_clip_level(video_id, path, info, spec)
    else:
        yield from _sample_frame_level(video_id, path, info, spec)


def sample_clip(path: str | Path, *, video_id: str | None = None, **spec: object) -> Clip:
    """The clip-level :class:`~affectfuse.types.Clip` of one file: ``sample`` with ``SamplingSpec(**spec)``.

    Example:
        >>> clip = sample_clip("video.mp4", frames=32, sample_rates=(16000,))
        >>> clip.frames.pixels.shape, clip.fragments[16000].samples.shape
    """
    p = Path(path)
    return next(sample(video_id or p.stem, p, SamplingSpec(level="clip", **spec)))  # type: ignore[arg-type]
