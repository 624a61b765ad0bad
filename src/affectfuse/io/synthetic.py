"""Generated media with known content, written with PyAV (no ffmpeg binary needed).

Used by the tests, the benchmarks and the demo's generated dataset. Every frame carries its own index
as a row of black/white blocks along the top edge (:func:`read_frame_code` reads it back), so a test can
check exactly which frame a decoder returned; the audio is a sine tone whose frequency is known.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np

CODE_BITS = 16
CODE_BLOCK = 12  # pixels per bit block (must survive H.264 at crf 18 and downscaling to 1/2)


def _draw_code(img: np.ndarray, index: int) -> None:
    for b in range(CODE_BITS):
        v = 255 if (index >> b) & 1 else 0
        img[0:CODE_BLOCK, b * CODE_BLOCK : (b + 1) * CODE_BLOCK] = v


def read_frame_code(pixels: np.ndarray, scale: float = 1.0) -> int:
    """The frame index drawn by :func:`write_video` into an RGB frame ``(H, W, 3)``.

    Args:
        pixels: the decoded frame.
        scale: decoded width / written width, if the frame was resized on decode.
    """
    blk = CODE_BLOCK * scale
    gray = pixels.mean(axis=2)
    idx = 0
    for b in range(CODE_BITS):
        y0, y1 = int(blk * 0.25), max(int(blk * 0.75), int(blk * 0.25) + 1)
        x0, x1 = int((b + 0.25) * blk), max(int((b + 0.75) * blk), int((b + 0.25) * blk) + 1)
        if gray[y0:y1, x0:x1].mean() > 127:
            idx |= 1 << b
    return idx


def write_video(
    path: str | Path,
    *,
    duration: float = 2.0,
    fps: float = 30.0,
    size: tuple[int, int] = (320, 240),
    audio: bool = True,
    video: bool = True,
    sample_rate: int = 16000,
    tone_hz: float = 440.0,
    frame_times: Sequence[float] | None = None,
    face: np.ndarray | None = None,
    face_size: int | None = None,
    gop: int | None = None,
    crf: int = 18,
    seed: int = 0,
    codec: str | None = None,
    b_frames: int = 0,
    rotation: int = 0,
    hflip: bool = False,
    vflip: bool = False,
    faststart: bool = False,
    audio_duration: float | None = None,
) -> np.ndarray:
    """Write a video (H.264 + AAC by default) with known frame times, frame codes and a tone.

    Args:
        path: output file (``.mp4``).
        duration: seconds (ignored for video if ``frame_times`` is given).
        fps: constant frame rate when ``frame_times`` is None.
        size: ``(width, height)``; even numbers.
        audio: write an AAC audio track.
        video: write a video track (False gives an audio-only file).
        sample_rate: audio sample rate.
        tone_hz: sine frequency of the audio.
        frame_times: explicit presentation times in seconds (variable frame rate), increasing.
        face: optional RGB image ``(h, w, 3)`` pasted on a grey background, moving slowly.
        face_size: side of the pasted face in pixels (default: 3/4 of the frame height).
        gop: keyframe interval in frames (x264 default when None).
        crf: x264 quality.
        seed: background noise seed.
        codec: video encoder; default ``libx264`` (``mpeg4`` for ``.avi``, ``libvpx-vp9`` for ``.webm``, whose
            audio is then Opus at 48 kHz).
        b_frames: B-frames between reference frames (``mpeg4`` / ``libx264``: decode order then differs from
            display order).
        rotation: counter-clockwise degrees written into the display matrix (what phones do); the frames
            themselves are stored unturned.
        hflip: display matrix mirrors left-right (after the rotation).
        vflip: display matrix mirrors top-bottom (after the rotation).
        faststart: put the MP4 index (moov) before the data, so a file cut short still opens.
        audio_duration: seconds of audio (default: ``duration``), e.g. shorter to make the audio end early.

    Returns:
        the frame presentation times written, seconds ``(T,)`` (empty without video).
    """
    path = Path(path)
    w, h = size
    if frame_times is None:
        n = max(int(round(duration * fps)), 0) if video else 0
        times = np.arange(n) / fps
    else:
        times = np.asarray(frame_times, dtype=np.float64)
        duration = max(duration, float(times[-1]) + 1.0 / fps) if len(times) else duration
    rng = np.random.default_rng(seed)
    bg = np.clip(110 + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
    face_img = None
    if face is not None:
        import cv2

        side = face_size or int(h * 0.75)
        face_img = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)

    suffix = path.suffix.lower()
    vcodec = codec or {".avi": "mpeg4", ".webm": "libvpx-vp9"}.get(suffix, "libx264")
    acodec, arate = ("libopus", 48000) if suffix == ".webm" else ("aac", sample_rate)
    opts = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=opts) as out:
        vs = aus = None
        if video:
            vs = out.add_stream(vcodec, rate=Fraction(fps).limit_denominator(1001))
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
            tb = Fraction(1, 1000) if frame_times is not None else Fraction(fps).limit_denominator(1001) ** -1
            vs.time_base = tb
            vs.codec_context.time_base = tb
            if vcodec == "libx264":
                vopts = {"crf": str(crf), "preset": "ultrafast"}
                vopts.update({"bf": str(b_frames)} if b_frames else {"tune": "zerolatency"})
            elif vcodec == "mpeg4":
                vopts = {"qscale": "3", "bf": str(b_frames)}
            else:
                vopts = {"crf": str(max(crf, 30)), "b": "0", "deadline": "realtime", "cpu-used": "8"}
            if gop:
                vopts["g"] = str(gop)
            vs.options = vopts
            if rotation or hflip or vflip:
                vs.set_display_rotation(rotation, hflip=hflip, vflip=vflip)
        if audio:
            aus = out.add_stream(acodec, rate=arate)
            aus.layout = "mono"
        if vs is not None:
            for i, t in enumerate(times):
                img = bg.copy()
                if face_img is not None:
                    side = face_img.shape[0]
                    cx = int((w - side) / 2 + (w - side) / 3 * np.sin(2 * np.pi * t / 4.0))
                    cy = max((h - side) // 2, CODE_BLOCK + 1)
                    img[cy : cy + side, max(cx, 0) : max(cx, 0) + side] = face_img[:, : w - max(cx, 0)][: h - cy]
                else:
                    x = int((i * 4) % max(w - 40, 1))
                    img[h // 2 - 20 : h // 2 + 20, x : x + 40] = (200, 60, 60)
                _draw_code(img, i)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = int(round(t / tb))
                frame.time_base = tb
                for p in vs.encode(frame):
                    out.mux(p)
            for p in vs.encode():
                out.mux(p)
        if aus is not None:
            sample_rate = arate
            n = int(round((duration if audio_duration is None else audio_duration) * sample_rate))
            tt = np.arange(n) / sample_rate
            wave = (0.3 * np.sin(2 * np.pi * tone_hz * tt)).astype(np.float32)
            chunk = 1024
            for s in range(0, n, chunk):
                piece = wave[s : s + chunk][None, :]
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(piece), format="fltp", layout="mono")
                af.sample_rate = sample_rate
                af.pts = s
                af.time_base = Fraction(1, sample_rate)
                for p in aus.encode(af):
                    out.mux(p)
            for p in aus.encode():
                out.mux(p)
    return times


__all__ = ["write_video", "read_frame_code", "CODE_BITS", "CODE_BLOCK"]
