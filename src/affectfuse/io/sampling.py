"""Which frames and which audio to take: ViPER clip-level sampling, frame-level grids, audio fragments.

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

from pathlib import Path

import numpy as np

from affectfuse.errors import NoAudioError
from affectfuse.types import AudioFragments, FrameBatch, VideoInfo

__all__ = ["clip_indices", "frame_level_indices", "audio_fragments", "centred_windows", "sample_clip"]


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


def sample_clip(
    path: str | Path,
    *,
    n: int = 32,
    sample_rate: int = 16000,
    max_side: int | None = None,
    audio: bool = True,
) -> tuple[VideoInfo, FrameBatch | None, AudioFragments | None]:
    """Clip-level extraction input in one call: probe, ViPER frame sampling, audio fragments.

    Args:
        path: the media file.
        n: frames per clip.
        sample_rate: audio rate of the fragments.
        max_side: frame downscaling as in :func:`~affectfuse.io.video.read_frames`.
        audio: also cut audio fragments.

    Returns:
        ``(info, frames, fragments)``. ``frames`` is None for an audio-only file, whose fragments are
        then cut on ``n`` times evenly spaced over the audio. ``fragments`` is None when ``audio`` is
        False or the file has no (decodable) audio. Repeated frames (videos shorter than ``n`` frames)
        are ``valid=False`` with a note, and so are their (empty) audio fragments.

    Raises:
        MediaError: the file cannot be used (see :func:`~affectfuse.io.video.probe`).
    """
    from affectfuse.io.video import probe, read_audio, read_frames

    info = probe(path)
    frames = None
    if info.has_video:
        idx, first = clip_indices(info.n_frames, n)
        frames = read_frames(path, idx, info=info, max_side=max_side)
        frames.valid &= first
        if not first.all():
            frames.notes.append(
                f"video has {info.n_frames} frames, {n} requested: {int((~first).sum())} rows repeat a frame "
                "and are marked valid=False"
            )
    if not audio or not info.has_audio:
        return info, frames, None
    try:
        wave, a0 = read_audio(path, sample_rate=sample_rate, info=info)
    except NoAudioError:
        return info, frames, None
    if frames is not None:
        times = frames.times
    else:
        times = np.linspace(a0, a0 + len(wave) / sample_rate, n)
    return info, frames, audio_fragments(wave, sample_rate, times, audio_start=a0, start=-np.inf)
