"""Frame access: exactly the wanted frames of a video, decoded in one forward pass.

Access strategy (measured, see ``benchmarks/decode.py``)
    :func:`read_frames` and :func:`iter_frame_windows` make one forward pass over the packets and feed
    the decoder only the groups of pictures (GOPs) that hold a wanted frame: packets are buffered from
    the latest keyframe and decoded only when a wanted frame's packet arrives; when a new keyframe comes
    and the next wanted frame is not before it, the buffer is dropped. The decoder therefore works only
    from the keyframe before each wanted frame up to that frame (the same work as ideal keyframe
    seeking) without any seek, which also makes it robust to containers that seek inaccurately.
    Only the wanted frames are converted to RGB, and only into a preallocated output array, so memory
    does not grow with the video's length.

Frames are indexed in display order on the clock of :func:`affectfuse.io.video.probe` and come as a player
shows them: turned and mirrored by the display matrix (``VideoInfo.rotation`` / ``flip``). A batch decoded
downscaled (``max_side``) records the video's own (shown) size in ``FrameBatch.source_size``.

Decoders may return frames out of display order (MPEG-4 Part 2 "packed" B-frames in AVI files come out
1 2 3 5 4 6 ...): decoded frames are matched to the wanted ones by timestamp and handed on in display order;
a wanted frame is given up as undecodable only when the decoder has gone ``_REORDER`` frames past it or the
stream has ended.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import av
import numpy as np

from affectfuse.errors import MediaError
from affectfuse.io.video import _open, _origin, _scan_packets, _video_stream, probe
from affectfuse.types import FrameBatch, VideoInfo

__all__ = ["read_frames", "iter_frame_windows", "decoded_size", "STRATEGIES"]

#: Access strategies understood by the private ``_read_frames(..., strategy=)`` (benchmarks compare them).
STRATEGIES = ("skip", "sequential", "seek", "hybrid")
_DEFAULT_STRATEGY = "skip"
_MAX_BUFFER_BYTES = 256 << 20  # packets buffered while skipping a GOP; above this the GOP is decoded instead
_REORDER = 16  # frames a decoder may return out of display order before a missing frame is given up
_HYBRID_MIN_SAVED = 24  # hybrid seek: seek only when it skips at least this many frames of decoding



def decoded_size(info: VideoInfo, max_side: int | None) -> tuple[int, int]:
    """``(width, height)`` of the frames :func:`read_frames` returns for ``max_side`` (shown orientation)."""
    return _out_size(info.width, info.height, max_side)


def _out_size(w: int, h: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(w, h) <= max_side:
        return w, h
    if max_side < 1:
        raise ValueError(f"max_side must be a positive number of pixels, got {max_side}")
    s = max_side / max(w, h)
    return max(1, min(max_side, int(round(w * s)))), max(1, min(max_side, int(round(h * s))))


def _source_size(info: VideoInfo, w: int, h: int) -> tuple[int, int] | None:
    """The video's own frame size when frames were decoded at ``(w, h)`` below it, else None."""
    return None if (w, h) == (info.width, info.height) else (int(info.width), int(info.height))


def _to_rgb(frame: av.VideoFrame, w: int, h: int, info: VideoInfo) -> np.ndarray:
    """RGB ``(h, w, 3)`` uint8 as a player shows the frame: scaled by swscale (area filter when shrinking),
    then turned and mirrored as the video's display matrix says (``info.rotation`` / ``info.flip``)."""
    sw, sh = (h, w) if info.rotation in (90, 270) else (w, h)  # the stored frame's output size
    interp = "AREA" if (sw < frame.width or sh < frame.height) else "BILINEAR"
    img = frame.reformat(width=sw, height=sh, format="rgb24", interpolation=interp).to_ndarray()
    if info.rotation:
        img = np.rot90(img, info.rotation // 90)
    if info.flip:
        img = img[:, ::-1]
    return img


def _ticks(info: VideoInfo, tb: Fraction, origin: float) -> np.ndarray:
    """Frame times back to stream ticks (exact: times came from integer ticks times the time base)."""
    return np.rint((info.frame_times + origin) / float(tb)).astype(np.int64)


class _Decoder:
    """Decodes the wanted frames of one video stream, in display order, by one of several strategies.

    ``run(targets)`` yields ``(k, frame_or_None)`` for each position ``k`` of the sorted unique target
    indices, in increasing order; ``None`` means the frame could not be decoded.
    """

    def __init__(self, container, vs, ticks: np.ndarray, path: Path, keyframes: np.ndarray | None = None):
        self.c = container
        self.vs = vs
        self.ticks = ticks  # (T,) all frames' pts
        self.path = path
        self.keyframes = keyframes
        self.errors: list[str] = []
        self.corrupt = 0

    # display index of a decoded frame
    def _index(self, frame, prev: int) -> int:
        if frame.pts is None:
            return prev + 1
        i = int(np.searchsorted(self.ticks, frame.pts))
        if i < len(self.ticks) and self.ticks[i] == frame.pts:
            return i
        return -1  # not a frame the probe listed (e.g. a leading frame the demuxer discarded)

    def _decode_packet(self, pkt):
        try:
            return pkt.decode()
        except av.FFmpegError as e:
            if len(self.errors) < 5:
                self.errors.append(f"decoder error at pts {pkt.pts}: {e}")
            return []

    def _flush(self):
        try:
            return self.vs.codec_context.decode(None)
        except av.FFmpegError as e:
            self.errors.append(f"decoder error while flushing: {e}")
            return []

    def _packets(self):
        try:
            for pkt in self.c.demux(self.vs):
                if pkt.size == 0:
                    continue
                yield pkt
        except av.FFmpegError as e:
            self.errors.append(f"demuxing stopped: {e}")

    def run(self, targets: np.ndarray, strategy: str) -> Iterator[tuple[int, av.VideoFrame | None]]:
        targets = np.asarray(targets, dtype=np.int64)
        if len(targets) == 0:
            return
        state = {"k": 0, "prev": -1}
        pending: dict[int, av.VideoFrame | None] = {}  # decoded targets waiting for earlier ones
        high = [-1]  # the highest display index the decoder has returned

        def emit(frames):
            """Match decoded frames against the targets and yield them in display order.

            Decoders may return frames out of display order (MPEG-4 Part 2 packed B-frames in AVI come out
            1 2 3 5 4 6 8 7 ...): a target is given up as undecodable only when the decoder has gone more than
            ``_REORDER`` frames past it, or at the end of the stream.
            """
            for fr in frames:
                i = self._index(fr, state["prev"])
                if i < 0:
                    continue
                state["prev"] = i
                high[0] = max(high[0], i)
                pos = int(np.searchsorted(targets, i))
                if pos >= state["k"] and pos < len(targets) and targets[pos] == i and pos not in pending:
                    if fr.is_corrupt:
                        self.corrupt += 1
                    pending[pos] = None if fr.is_corrupt else fr
                yield from resolve(final=False)

        def resolve(final: bool):
            while state["k"] < len(targets):
                k = state["k"]
                if k in pending:
                    yield k, pending.pop(k)
                elif final or targets[k] < high[0] - _REORDER:
                    yield k, None
                else:
                    return
                state["k"] += 1

        if strategy == "sequential":
            for pkt in self._packets():
                yield from emit(self._decode_packet(pkt))
                if state["k"] >= len(targets):
                    return
            yield from emit(self._flush())
        elif strategy == "skip":
            yield from self._run_skip(targets, state, emit)
        elif strategy in ("seek", "hybrid"):
            yield from self._run_seek(targets, state, emit, hybrid=strategy == "hybrid")
        else:
            raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
        yield from resolve(final=True)

    def _run_skip(self, targets, state, emit):
        """One forward pass without seeking. Packets are buffered, not decoded, until the packet of the
        next wanted frame arrives; a keyframe at or before the next wanted frame drops the buffer (and
        the decoder's pending output, which is not wanted). So the decoder works only from the last
        keyframe before each wanted frame (or from the previous wanted frame, when no keyframe lies
        between) up to that frame."""
        cc = self.vs.codec_context
        ticks = self.ticks
        buf: list = []
        buf_bytes = 0
        fed = False  # the decoder got packets since its last flush

        def feed():
            nonlocal buf, buf_bytes, fed
            for p in buf:
                yield from emit(self._decode_packet(p))
            fed = fed or bool(buf)
            buf, buf_bytes = [], 0

        for pkt in self._packets():
            if state["k"] >= len(targets):
                return
            nxt = ticks[targets[state["k"]]]
            pts = pkt.pts if pkt.pts is not None else pkt.dts
            if pkt.is_keyframe and pts is not None and nxt >= pts:
                # the next wanted frame decodes from here: nothing before this keyframe is needed
                if fed:
                    cc.flush_buffers()
                    fed = False
                buf, buf_bytes = [pkt], pkt.size
                continue
            buf.append(pkt)
            buf_bytes += pkt.size
            if pts is None or pts >= nxt or buf_bytes > _MAX_BUFFER_BYTES:
                yield from feed()  # (a frame still pending in the decoder keeps this firing per packet)
        if state["k"] < len(targets):
            yield from feed()
            yield from emit(self._flush())

    def _keyframe_ticks(self) -> np.ndarray:
        if self.keyframes is None:
            with _open(self.path) as c2:
                pk = _scan_packets(c2, c2.streams[self.vs.index], self.path)
            self.keyframes = pk.pts[pk.keyframe]
        return self.keyframes

    def _run_seek(self, targets, state, emit, hybrid: bool):
        """Keyframe seeking. ``hybrid=False``: seek back to the keyframe before every wanted frame that
        is not the next one. ``hybrid=True``: seek only when the keyframe before the wanted frame lies
        more than ``_HYBRID_MIN_SAVED`` frames past the current position; otherwise keep decoding."""
        cc = self.vs.codec_context
        ticks = self.ticks
        kf = self._keyframe_ticks() if hybrid else None
        cur = -1  # display index of the last frame the decoder returned
        started = False
        while state["k"] < len(targets):
            tgt = int(targets[state["k"]])
            if not started:
                do_seek = True
            elif hybrid:
                j = int(np.searchsorted(kf, ticks[tgt], side="right")) - 1
                do_seek = j >= 0 and int(np.searchsorted(ticks, kf[j])) > cur + _HYBRID_MIN_SAVED
            else:
                do_seek = tgt > cur + 1
            if do_seek:
                self.c.seek(int(ticks[tgt]), backward=True, any_frame=False, stream=self.vs)
                cc.flush_buffers()
                started = True
                state["prev"] = -1
            k0 = state["k"]
            for pkt in self._packets():
                yield from emit(self._decode_packet(pkt))
                cur = state["prev"]
                if state["k"] > k0:
                    break
            else:
                yield from emit(self._flush())
                return


def _check_indices(path: Path, indices, n: int) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.ndim != 1:
        raise ValueError(f"{path}: indices must be 1-D, got shape {idx.shape}")
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        if not np.all(np.equal(np.mod(idx, 1), 0)):
            raise ValueError(f"{path}: indices must be integers, got dtype {idx.dtype}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(
            f"{path}: frame indices must lie in [0, {n - 1}] (the video has {n} frames); got "
            f"min {int(idx.min())}, max {int(idx.max())}"
        )
    return idx


def _read_frames(
    path: str | Path,
    indices: Sequence[int] | np.ndarray,
    *,
    info: VideoInfo | None = None,
    max_side: int | None = None,
    strategy: str = _DEFAULT_STRATEGY,
) -> FrameBatch:
    path = Path(path)
    info = info if info is not None else probe(path)
    if not info.has_video:
        raise MediaError(path, "expected a video stream, found none (audio-only file)")
    idx = _check_indices(path, indices, info.n_frames)
    w, h = _out_size(info.width, info.height, max_side)
    n = len(idx)
    pixels = np.zeros((n, h, w, 3), dtype=np.uint8)  # (N, H, W, 3)
    valid = np.zeros(n, dtype=bool)
    times = info.frame_times[idx].astype(np.float64) if n else np.zeros(0)
    notes: list[str] = []
    if n == 0:
        return FrameBatch(pixels=pixels, times=times, indices=idx, valid=valid, notes=notes,
                          source_size=_source_size(info, w, h))
    uniq, inverse = np.unique(idx, return_inverse=True)
    rows_of: list[list[int]] = [[] for _ in range(len(uniq))]
    for r, u in enumerate(inverse):
        rows_of[u].append(r)
    with _open(path) as c:
        vs = _video_stream(c)
        if vs is None:
            raise MediaError(path, "expected a video stream, found none")
        dec = _Decoder(c, vs, _ticks(info, vs.time_base, _origin(c, path)), path)
        for k, frame in dec.run(uniq, strategy):
            if frame is None:
                continue
            rows = rows_of[k]
            pixels[rows[0]] = _to_rgb(frame, w, h, info)
            for r in rows[1:]:
                pixels[r] = pixels[rows[0]]
            valid[rows] = True
    missing = np.unique(idx[~valid])
    if len(missing) == n:
        detail = "; ".join(dec.errors) or "the decoder returned no picture for them"
        raise MediaError(path, f"none of the {len(uniq)} requested frames could be decoded ({detail})")
    if len(missing):
        notes.append(
            f"{len(missing)} of {len(uniq)} requested frames could not be decoded (truncated or corrupt "
            f"data?), marked valid=False: indices {missing[:10].tolist()}{' ...' if len(missing) > 10 else ''}"
        )
    if dec.corrupt:
        notes.append(f"{dec.corrupt} frames were flagged corrupt by the decoder and marked valid=False")
    if dec.errors:
        notes.append("decoder: " + "; ".join(dec.errors))
    if (w, h) != (info.width, info.height):
        notes.append(f"downscaled from {info.width}x{info.height} to {w}x{h} (max_side={max_side})")
    return FrameBatch(pixels=pixels, times=times, indices=idx, valid=valid, notes=notes,
                      source_size=_source_size(info, w, h))


def read_frames(
    path: str | Path,
    indices: Sequence[int] | np.ndarray,
    *,
    info: VideoInfo | None = None,
    max_side: int | None = None,
) -> FrameBatch:
    """Decode exactly the frames at ``indices`` and return them in the order given.

    Args:
        path: the video.
        indices: display-order frame indices into ``info.frame_times``; any order, repeats allowed.
        info: the file's :func:`probe` result (probed here when None).
        max_side: when given, frames are scaled down (aspect kept, swscale area filter) so that
            ``max(H, W) <= max_side``; smaller frames are left as they are.

    Returns:
        a :class:`~affectfuse.types.FrameBatch` with one row per requested index. Frames that cannot
        be decoded (truncated/corrupt data) are zeros with ``valid=False`` and a note.

    Shape:
        pixels ``(N, H, W, 3)`` uint8 RGB; times ``(N,)``; indices ``(N,)``; valid ``(N,)``.

    Raises:
        MediaError: unreadable file, no video stream, or none of the requested frames decodes.
        ValueError: an index outside ``[0, n_frames)``.
    """
    return _read_frames(path, indices, info=info, max_side=max_side)


def iter_frame_windows(
    path: str | Path,
    indices: Sequence[int] | np.ndarray,
    *,
    window: int = 64,
    info: VideoInfo | None = None,
    max_side: int | None = None,
) -> Iterator[FrameBatch]:
    """Decode many frames (frame-level tasks) in one streaming pass, ``window`` frames at a time.

    Args:
        path: the video.
        indices: frame indices; they are sorted (repeats are kept and decoded once).
        window: rows per yielded batch (the last one may be shorter).
        info: the :func:`probe` result (probed here when None).
        max_side: as in :func:`read_frames`.

    Yields:
        :class:`~affectfuse.types.FrameBatch` objects, consecutive slices of the sorted indices. Memory
        stays at one window of frames whatever the video's length.

    Shape:
        each batch: pixels ``(<=window, H, W, 3)`` uint8.

    Raises:
        MediaError: unreadable file or no video stream; also when not a single frame decodes.
    """
    path = Path(path)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    info = info if info is not None else probe(path)
    if not info.has_video:
        raise MediaError(path, "expected a video stream, found none (audio-only file)")
    idx = np.sort(_check_indices(path, indices, info.n_frames))
    if len(idx) == 0:
        return
    w, h = _out_size(info.width, info.height, max_side)
    uniq, first = np.unique(idx, return_index=True)
    counts = np.diff(np.append(first, len(idx)))

    c = _open(path)
    try:
        vs = _video_stream(c)
        if vs is None:
            raise MediaError(path, "expected a video stream, found none")
        dec = _Decoder(c, vs, _ticks(info, vs.time_base, _origin(c, path)), path)
        start = 0  # first row of the current window in the sorted index array
        pix = np.zeros((min(window, len(idx)), h, w, 3), dtype=np.uint8)  # (W, H, W, 3)
        val = np.zeros(len(pix), dtype=bool)
        n_ok = 0
        for k, frame in dec.run(uniq, _DEFAULT_STRATEGY):
            r0 = int(first[k])
            img = _to_rgb(frame, w, h, info) if frame is not None else None
            n_ok += img is not None
            for r in range(r0, r0 + int(counts[k])):
                if r - start >= len(pix):
                    yield _window_batch(info, idx, start, pix, val, dec)
                    start += len(pix)
                    pix = np.zeros((min(window, len(idx) - start), h, w, 3), dtype=np.uint8)
                    val = np.zeros(len(pix), dtype=bool)
                if img is not None:
                    pix[r - start] = img
                    val[r - start] = True
        if n_ok == 0:
            raise MediaError(path, "no requested frame could be decoded (" + ("; ".join(dec.errors) or "no picture") + ")")
        yield _window_batch(info, idx, start, pix, val, dec)
    finally:
        c.close()


def _window_batch(info, idx, start, pix, val, dec) -> FrameBatch:
    sl = idx[start : start + len(pix)]
    notes = []
    if not val.all():
        notes.append(f"{int((~val).sum())} frames could not be decoded, marked valid=False")
        if dec.errors:
            notes.append("decoder: " + "; ".join(dec.errors))
    h, w = pix.shape[1:3]
    return FrameBatch(pixels=pix, times=info.frame_times[sl].astype(np.float64), indices=sl.copy(), valid=val,
                      notes=notes, source_size=_source_size(info, w, h))


