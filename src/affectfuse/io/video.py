"""Probing media and decoding audio with PyAV: frame times from packets, audio on the same clock.

The clock
    Every time this module returns is in seconds on one clock per file: the **video stream's start**
    (``stream.start_time``, which FFmpeg derives from the container, edit lists included) is 0. So the
    first frame is at 0 (or very near it) and the audio's first sample time (:func:`read_audio`) says
    where the audio track lies relative to the frames: AAC priming, edit lists and audio that starts
    late are handled by timestamps, never by counting samples. A file without video uses the audio
    stream's start as 0.

Frame times
    :func:`probe` demuxes the video packets (no decoding) and sorts their presentation timestamps, so
    variable-frame-rate files get their true times. Packets that the container marks for discarding
    (edit-list pre-roll) are left out, which matches what the decoder outputs.

Frames
    :mod:`affectfuse.io.frames` decodes the wanted frames; :mod:`affectfuse.io.sampling` decides which.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from affectfuse.errors import MediaError, NoAudioError
from affectfuse.types import VideoInfo

__all__ = ["probe", "read_audio", "orientation", "DECODING", "decoding_record", "stale_decoding"]

#: What the decoding applies, recorded with every feature set (``meta["decoding"]``) and in the store's
#: identity of every key. Version 2: frames matched to their timestamps and handed on in display order
#: whatever order the decoder returns them in (packed B-frames), the display matrix / ``rotate`` tag
#: applied, declared vs decodable duration compared. Entries without it were written by version 1, which did
#: neither: :func:`stale_decoding` tells whether such an entry is wrong for its file.
DECODING: dict[str, object] = {"version": 2, "frame_order": "timestamps, display order (reorder-tolerant)",
                               "orientation": "display matrix or rotate tag applied"}

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- opening


def _check_file(path: Path) -> None:
    if not path.exists():
        raise MediaError(path, "file not found")
    if not path.is_file():
        raise MediaError(path, "not a regular file (expected a video or audio file)")
    if path.stat().st_size == 0:
        raise MediaError(path, "zero-length file (0 bytes); expected a video or audio file")


def _open(path: Path) -> av.container.InputContainer:
    _check_file(path)
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise MediaError(
            path, f"cannot be read as a media container ({type(e).__name__}: {e}); expected a video/audio "
            "file such as MP4, MOV, MKV, AVI or WebM (a truncated MP4 whose index sits at the end also fails here)"
        ) from e


def _video_stream(container) -> av.video.stream.VideoStream | None:
    for s in container.streams.video:
        disp = getattr(s, "disposition", None)
        try:
            if disp is not None and disp & av.stream.Disposition.attached_pic:
                continue  # cover art, not a video
        except (AttributeError, TypeError):  # pragma: no cover - older PyAV
            pass
        return s
    return None


def _audio_stream(container):
    return container.streams.audio[0] if container.streams.audio else None


def _secs(x: int | None, tb: Fraction | None) -> float | None:
    return None if x is None or tb is None else float(x * tb)


def _first_pts(container, stream) -> int | None:
    """Smallest presentation timestamp among the first packets of ``stream`` (fallback for start_time)."""
    best = None
    n = 0
    for pkt in container.demux(stream):
        if pkt.size == 0 or pkt.is_discard:
            continue
        ts = pkt.pts if pkt.pts is not None else pkt.dts
        if ts is not None:
            best = ts if best is None else min(best, ts)
        n += 1
        if n >= 16:
            break
    return best


def _origin(container, path: Path) -> float:
    """The clock's zero, seconds in container time: the video stream start (else the audio stream start)."""
    vs = _video_stream(container)
    s = vs if vs is not None else _audio_stream(container)
    if s is None:
        return 0.0
    if s.start_time is not None and s.time_base is not None:
        return float(s.start_time * s.time_base)
    # rare: no start_time; use the first packets (on a fresh container so the caller's position is kept)
    with _open(path) as c2:
        s2 = c2.streams[s.index]
        p = _first_pts(c2, s2)
    return float(p * s.time_base) if p is not None and s.time_base is not None else 0.0


# --------------------------------------------------------------------------------------------- probe


@dataclass
class _Packets:
    pts: np.ndarray  # (T,) int64, display order, stream ticks
    keyframe: np.ndarray  # (T,) bool
    last_duration: int  # ticks of the last packet (0 if unknown)
    matrix: np.ndarray | None = None  # (3, 3) display matrix of the first decoded frame, if any
    audio_end: int | None = None  # end of the last audio packet, audio stream ticks


_PROBE_DECODE_PACKETS = 32  # packets fed to the decoder at most while looking for the first frame's side data


def _display_matrix(frames) -> np.ndarray | None:
    for fr in frames:
        for sd in fr.side_data:
            if "DISPLAYMATRIX" in str(sd.type):
                return np.frombuffer(bytes(sd), dtype="<i4").reshape(3, 3).copy()
        return np.eye(3, dtype=np.int32)  # a decoded frame without a display matrix: shown as stored
    return None


def _scan_packets(container, vs, path: Path, aus=None) -> _Packets:
    """Demux the video (and audio) packets: presentation timestamps, keyframe flags, where the audio ends;
    the first few video packets are decoded to read the frames' display matrix."""
    pts: list[int] = []
    dts: list[int | None] = []
    key: list[bool] = []
    missing_pts = False
    last_dur = 0
    matrix = None
    fed = 0
    audio_end = None
    try:
        for pkt in container.demux(*[s for s in (vs, aus) if s is not None]):
            if pkt.size == 0 or pkt.is_discard:
                continue
            if pkt.stream is not vs:
                if pkt.pts is not None:
                    end = pkt.pts + (pkt.duration or 0)
                    audio_end = end if audio_end is None else max(audio_end, end)
                continue
            if pkt.pts is None:
                missing_pts = True
            pts.append(pkt.pts if pkt.pts is not None else -1)
            dts.append(pkt.dts)
            key.append(bool(pkt.is_keyframe))
            last_dur = pkt.duration or 0
            if matrix is None and fed < _PROBE_DECODE_PACKETS:
                fed += 1
                try:
                    matrix = _display_matrix(pkt.decode())
                except av.FFmpegError:
                    pass
    except av.FFmpegError as e:  # a damaged tail: keep the packets read so far
        log.warning("%s: demuxing stopped early (%s); keeping %d video packets", path, e, len(pts))
    if missing_pts:
        if all(d is not None for d in dts) and len(dts):
            pts = [int(d) for d in dts]  # e.g. AVI without B-frames: decode order == display order
        else:
            scan = _decode_scan(container, vs, path)
            scan.matrix, scan.audio_end = matrix, audio_end
            return scan
    p = np.asarray(pts, dtype=np.int64)
    k = np.asarray(key, dtype=bool)
    order = np.argsort(p, kind="stable")
    p, k = p[order], k[order]
    if len(p) > 1:
        keep = np.concatenate([[True], np.diff(p) > 0])  # duplicated timestamps: one frame each
        p, k = p[keep], k[keep]
    return _Packets(p, k, int(last_dur), matrix, audio_end)


def _decode_scan(container, vs, path: Path) -> _Packets:
    """Fallback for streams whose packets carry no timestamps: decode once and use the frames' times."""
    pts: list[int] = []
    container.seek(0)
    step = None
    rate = vs.average_rate or vs.guessed_rate
    if rate and vs.time_base:
        step = int(round(1 / (float(rate) * float(vs.time_base))))
    n = 0
    try:
        for frame in container.decode(vs):
            if frame.pts is not None:
                pts.append(int(frame.pts))
            else:
                pts.append(n * (step or 1))
            n += 1
    except av.FFmpegError as e:
        log.warning("%s: decoding stopped early while probing (%s)", path, e)
    p = np.unique(np.asarray(pts, dtype=np.int64))
    k = np.zeros(len(p), dtype=bool)
    if len(k):
        k[0] = True
    return _Packets(p, k, step or 0)


def orientation(matrix: np.ndarray | None, rotate_tag: str | None = None) -> tuple[int, bool, str | None]:
    """How a player shows the stored frames: ``(rotation, flip, note)``.

    ``rotation`` is counter-clockwise degrees (0, 90, 180, 270) and ``flip`` a left-right mirror applied
    after it, so that the shown frame is ``fliplr(rot90(stored, rotation // 90))`` (numpy). Read from the
    display matrix FFmpeg attaches to the frames (phones write one); without one, from the legacy
    ``rotate`` tag (clockwise degrees). Checked against FFmpeg's own auto-rotation for all eight
    orientations. A matrix that is not a multiple of 90 degrees is rounded to the nearest one, with a note.

    Args:
        matrix: the ``(3, 3)`` int32 display matrix (16.16 fixed point), or None.
        rotate_tag: the stream's ``rotate`` metadata, or None.
    """
    if matrix is not None:
        a, b, c, d = (float(matrix[0, 0]), float(matrix[0, 1]), float(matrix[1, 0]), float(matrix[1, 1]))
        flip = a * d - b * c < 0
        if flip:
            a, c = -a, -c
        angle = math.degrees(math.atan2(-b, a)) % 360.0
        rot = int(round(angle / 90.0)) * 90 % 360
        off = min(abs(angle - rot), 360 - abs(angle - rot))
        note = f"display matrix rotates by {angle:.1f} degrees: shown at {rot}" if off > 1.0 else None
        return rot, bool(flip), note
    if rotate_tag:
        try:
            return int(round(-float(rotate_tag) / 90.0)) * 90 % 360, False, None
        except ValueError:
            return 0, False, f"unreadable rotate tag {rotate_tag!r}: frames shown as stored"
    return 0, False, None


def _declared(c, vs, aus, origin: float) -> float | None:
    """The duration the container and its streams declare (seconds on the file's clock), if any."""
    ends = []
    for s in (vs, aus):
        if s is not None and s.duration is not None and s.time_base is not None:
            ends.append(float(((s.start_time or 0) + s.duration) * s.time_base) - origin)
    if not ends and c.duration is not None:
        ends.append(c.duration / av.time_base - origin)
    return max(ends) if ends else None


def probe(path: str | Path) -> VideoInfo:
    """Read a media file's streams, every video frame's presentation time and how frames are shown.

    Only packets are read (plus the first few video packets decoded for their display matrix).

    Args:
        path: a video (or audio-only) file.

    Returns:
        the :class:`~affectfuse.types.VideoInfo`; ``frame_times`` are seconds on the file's clock (the
        video stream start is 0, see the module docstring), sorted, correct for variable frame rates;
        ``width`` / ``height`` are the frames as a player shows them (``rotation`` / ``flip`` applied);
        ``duration`` is what the data holds, ``declared_duration`` what the container says, and ``notes``
        say when they differ (a truncated file) or a stream ends early. An audio-only file has empty
        ``frame_times``.

    Raises:
        MediaError: missing or zero-length file, not a media file, corrupt container, no video frames
            and no audio stream.
    """
    path = Path(path)
    notes: list[str] = []
    with _open(path) as c:
        vs = _video_stream(c)
        aus = _audio_stream(c)
        if vs is None and aus is None:
            kinds = sorted({s.type for s in c.streams}) or ["none"]
            raise MediaError(path, f"expected a video or an audio stream, found streams of type {kinds}")
        origin = _origin(c, path)
        frame_times = np.zeros(0, dtype=np.float64)
        width = height = 0
        nominal_fps = 0.0
        video_end = 0.0
        rot, flip = 0, False
        codec, b_frames = "", False
        pk = _scan_packets(c, vs, path, aus)
        if vs is not None and len(pk.pts):
            tb = vs.time_base
            frame_times = (pk.pts * float(tb) - origin).astype(np.float64)
            gaps = np.diff(frame_times)
            last = pk.last_duration * float(tb) if pk.last_duration else (float(np.median(gaps)) if len(gaps) else 0.0)
            video_end = float(frame_times[-1] + last)
            width, height = int(vs.codec_context.width), int(vs.codec_context.height)
            rate = vs.average_rate or vs.guessed_rate
            nominal_fps = float(rate) if rate else (1.0 / float(np.median(gaps)) if len(gaps) else 0.0)
            rot, flip, note = orientation(pk.matrix, vs.metadata.get("rotate"))
            notes += [note] if note else []
            if rot in (90, 270):
                width, height = height, width
            codec, b_frames = str(vs.codec_context.name), bool(vs.codec_context.has_b_frames)
        if len(frame_times) == 0 and aus is None:
            raise MediaError(path, "the video stream holds no frames (empty or truncated file) and there is no audio")
        has_audio = aus is not None
        sr = int(aus.codec_context.sample_rate or aus.rate or 0) if has_audio else 0
        audio_end = 0.0
        if has_audio and pk.audio_end is not None and aus.time_base is not None:
            audio_end = float(pk.audio_end * aus.time_base) - origin
        duration = max(video_end, audio_end, 0.0)
        declared = _declared(c, vs, aus, origin)
    tol = max(0.5, 3.0 / nominal_fps) if nominal_fps else 0.5
    if declared is not None and declared - duration > tol:
        what = f"frames end at {video_end:.2f} s" if len(frame_times) else f"audio ends at {audio_end:.2f} s"
        if len(frame_times) and has_audio:
            what += f", audio at {audio_end:.2f} s"
        notes.append(f"truncated: declares {declared:.2f} s, {what}")
    elif len(frame_times) and has_audio and abs(audio_end - video_end) > tol:
        early = "audio" if audio_end < video_end else "video"
        notes.append(f"the {early} stream ends early: audio ends at {audio_end:.2f} s, frames at {video_end:.2f} s")
    return VideoInfo(
        path=path,
        frame_times=frame_times,
        width=width,
        height=height,
        duration=float(duration),
        has_audio=has_audio,
        audio_sample_rate=sr,
        nominal_fps=nominal_fps,
        rotation=rot,
        flip=flip,
        declared_duration=None if declared is None else float(declared),
        codec=codec,
        has_b_frames=b_frames,
        notes=tuple(notes),
    )


def decoding_record(info: VideoInfo) -> dict[str, object]:
    """:data:`DECODING` plus what it did to this file (rotation, flip)."""
    return {**DECODING, "rotation": int(info.rotation), "flip": bool(info.flip)}


def stale_decoding(meta: dict, info: VideoInfo) -> str | None:
    """Why a stored entry's features are wrong for its file under today's decoding, or None.

    Entries written with :data:`DECODING` version 2 or later are current. Older entries (no record) are
    wrong where version 1 decoded differently: a file shown rotated or mirrored (version 1 ignored the display
    matrix), or MPEG-4 Part 2 video with B-frames (version 1 lost the frames the decoder returned out of order).

    Args:
        meta: the entry's ``FeatureSet.meta``.
        info: the file's :func:`probe` result now.
    """
    rec = meta.get("decoding") if isinstance(meta, dict) else None
    if isinstance(rec, dict) and int(rec.get("version", 0)) >= int(DECODING["version"]):
        return None
    if info.rotation or info.flip:
        how = f"rotated by {info.rotation} degrees" + (" and mirrored" if info.flip else "")
        return f"stale: written before the display matrix was applied; {info.path} is shown {how}"
    if info.has_b_frames and info.codec == "mpeg4":
        return (f"stale: written before frames returned out of order were kept; {info.path} is MPEG-4 Part 2 "
                "with B-frames, whose frames the older decoding partly lost")
    return None


# --------------------------------------------------------------------------------------------- audio


def read_audio(path: str | Path, *, sample_rate: int = 16000, info: VideoInfo | None = None) -> tuple[np.ndarray, float]:
    """Decode the whole audio track to mono float32 at ``sample_rate`` (FFmpeg's swresample).

    Args:
        path: the media file.
        sample_rate: output rate in Hz.
        info: the :func:`probe` result, if at hand (only used to fail fast when there is no audio).

    Returns:
        ``(audio, start)``: ``audio`` is ``(S,)`` float32 in [-1, 1]; ``start`` is the time in seconds
        of its first sample on the same clock as ``VideoInfo.frame_times`` (taken from the decoded
        frames' timestamps, so encoder priming and late-starting audio are accounted for). Gaps in the
        timestamps are filled with silence so that sample ``i`` is at ``start + i / sample_rate``.

    Shape:
        audio ``(S,)``.

    Raises:
        NoAudioError: no audio stream, or it cannot be decoded.
        MediaError: the file cannot be read at all.
    """
    path = Path(path)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if info is not None and not info.has_audio:
        raise NoAudioError(path, "expected an audio stream, the file has none")
    with _open(path) as c:
        aus = _audio_stream(c)
        if aus is None:
            raise NoAudioError(path, "expected an audio stream, the file has none")
        origin = _origin(c, path)
        tb = aus.time_base
        est = None
        if aus.duration is not None and tb is not None:
            est = float(aus.duration * tb)
        elif c.duration is not None:
            est = c.duration / av.time_base
        cap = int((est or 60.0) * sample_rate * 1.02) + 4 * sample_rate
        buf = np.zeros(cap, dtype=np.float32)
        n = 0
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        first_time = None
        expected = None  # input-clock time (s) where the next decoded frame should start
        errors: list[str] = []

        def put(frames):
            nonlocal buf, n
            for f in frames:
                a = f.to_ndarray().reshape(-1)
                if n + len(a) > len(buf):
                    buf = np.concatenate([buf, np.zeros(max(len(a), len(buf) // 4), dtype=np.float32)])
                buf[n : n + len(a)] = a
                n += len(a)

        try:
            for pkt in c.demux(aus):
                if pkt.size == 0:
                    continue
                try:
                    frames = pkt.decode()
                except av.FFmpegError as e:
                    if len(errors) < 3:
                        errors.append(f"pts {pkt.pts}: {e}")
                    continue
                for fr in frames:
                    t = _secs(fr.pts, fr.time_base or tb)
                    if first_time is None:
                        first_time = t if t is not None else (_secs(aus.start_time, tb) or 0.0)
                        expected = first_time
                    elif t is not None and expected is not None:
                        gap = t - expected
                        if 0.002 < gap < 3600:  # timestamps jump: keep alignment with silence
                            silence = av.AudioFrame(format=fr.format.name, layout=fr.layout.name, samples=int(round(gap * fr.sample_rate)))
                            for p in silence.planes:
                                p.update(bytes(p.buffer_size))
                            silence.sample_rate = fr.sample_rate
                            put(resampler.resample(silence))
                            expected = t
                    put(resampler.resample(fr))
                    if expected is not None:
                        expected += fr.samples / fr.sample_rate
        except av.FFmpegError as e:
            errors.append(f"demuxing stopped: {e}")
        if first_time is not None:
            put(resampler.resample(None))
    if first_time is None or n == 0:
        raise NoAudioError(path, "the audio stream could not be decoded" + (f" ({'; '.join(errors)})" if errors else " (no samples)"))
    if errors:
        log.warning("%s: audio decoded with errors: %s", path, "; ".join(errors))
    return buf[:n], float(first_time - origin)
