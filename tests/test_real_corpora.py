"""Files nobody here made decode as FFmpeg decodes them: AVI with packed B-frames, phone rotation, truncation.

Reference decodes are plain PyAV (FFmpeg's libraries) ``container.decode()``; the orientation rule was checked
against the ``ffmpeg`` command line's auto-rotation for all eight orientations (see ``io.video.orientation``).
"""

from __future__ import annotations

import hashlib

import av
import numpy as np
import pytest

from affectfuse.errors import MediaError
from affectfuse.extraction import ExtractConfig, extract
from affectfuse.features.store import FeatureStore
from affectfuse.io.frames import iter_frame_windows, read_frames
from affectfuse.io.sampling import SamplingSpec, clip_indices, sample, sample_clip
from affectfuse.io.synthetic import read_frame_code, write_video
from affectfuse.io.video import orientation, probe, read_audio

REAL_VIDEOS = [("opencv-media", n) for n in ("Megamind.avi", "Megamind_bugy.avi", "tree.avi", "vtest.avi")] + [
    ("pyfeat-media", n) for n in ("single_face.mp4", "WolfgangLanger_Pexels.mp4", "face_noface.mov", "no_face.mp4")]


def _ffmpeg_frames(path) -> dict[int, str]:
    """pts → md5 of the RGB frame, for every frame plain PyAV / FFmpeg decodes."""
    with av.open(str(path)) as c:
        return {f.pts: hashlib.md5(f.to_ndarray(format="rgb24").tobytes()).hexdigest() for f in c.decode(video=0)}


def _md5(img) -> str:
    return hashlib.md5(np.ascontiguousarray(img).tobytes()).hexdigest()


# ----------------------------------------------------------------------------------------- AVI, B-frames
@pytest.mark.parametrize("group, name", REAL_VIDEOS)
def test_real_videos_decode_every_frame_ffmpeg_decodes_in_display_order(group, name, real_asset):
    path = real_asset(group, name)
    ref = _ffmpeg_frames(path)
    info = probe(path)
    assert info.n_frames == len(ref), "one frame time per frame FFmpeg decodes"
    tb = av.open(str(path)).streams.video[0].time_base
    ticks = np.rint(info.frame_times / float(tb)).astype(np.int64)
    assert sorted(ref) == ticks.tolist(), "display order = sorted presentation timestamps"
    every = read_frames(path, np.arange(info.n_frames), info=info)
    assert every.valid.all(), every.notes
    assert [_md5(p) for p in every.pixels] == [ref[int(t)] for t in ticks]
    windows = list(iter_frame_windows(path, np.arange(info.n_frames), window=16, info=info))
    assert [_md5(p) for w in windows for p in w.pixels] == [ref[int(t)] for t in ticks]
    clip = sample_clip(path, frames=32, max_side=None)
    idx, _ = clip_indices(info.n_frames, 32)
    assert clip.frames.valid.all() and [_md5(p) for p in clip.frames.pixels] == [ref[int(ticks[i])] for i in idx]


def test_megamind_is_the_packed_b_frame_case(real_asset):
    info = probe(real_asset("opencv-media", "Megamind.avi"))
    assert info.codec == "mpeg4" and info.has_b_frames and info.n_frames == 270 and info.notes == ()


@pytest.mark.parametrize("name, kw", [("mpeg4_b.avi", {"b_frames": 2}), ("h264_b.mp4", {"b_frames": 3}),
                                      ("mpeg4_b.mkv", {"codec": "mpeg4", "b_frames": 2}), ("vp9.webm", {}),
                                      ("plain.mov", {})])
def test_generated_containers_and_b_frames_give_every_frame(tmp_path, name, kw):
    path = tmp_path / name
    write_video(path, duration=2.0, fps=25, size=(320, 240), gop=12, **kw)
    info = probe(path)
    assert info.n_frames == len(_ffmpeg_frames(path)) == 50
    every = read_frames(path, np.arange(info.n_frames), info=info)
    assert every.valid.all() and [read_frame_code(p) for p in every.pixels] == list(range(50))
    clip = sample_clip(path, frames=32)
    assert [read_frame_code(p) for p in clip.frames.pixels] == clip.indices.tolist()
    assert np.all(np.diff(info.frame_times) > 0)


# ----------------------------------------------------------------------------------------- rotation
ORIENTATIONS = [(0, False, False), (90, False, False), (180, False, False), (270, False, False),
                (0, True, False), (90, True, False), (0, False, True), (270, True, False)]


def _shown(img, rot, flip):
    out = np.rot90(img, rot // 90)
    return out[:, ::-1] if flip else out


@pytest.mark.parametrize("ext", ["mp4", "mov", "mkv"])
@pytest.mark.parametrize("rot, hflip, vflip", ORIENTATIONS)
def test_every_rotation_and_flip_is_shown_as_a_player_shows_it(tmp_path, ext, rot, hflip, vflip):
    upright, turned = tmp_path / f"up.{ext}", tmp_path / f"turned.{ext}"
    write_video(upright, duration=0.4, fps=10, size=(96, 64), audio=False)
    write_video(turned, duration=0.4, fps=10, size=(96, 64), audio=False, rotation=rot, hflip=hflip, vflip=vflip)
    info = probe(turned)
    # PyAV's writer: rotate counter-clockwise, then mirror; a vertical mirror is a half turn plus a left-right one
    want_rot, want_flip = ((rot + 180) % 360, not hflip) if vflip else (rot, hflip)
    assert (info.rotation, info.flip) == (want_rot, want_flip)
    assert (info.width, info.height) == ((64, 96) if want_rot in (90, 270) else (96, 64))
    a = read_frames(upright, np.arange(4))
    b = read_frames(turned, np.arange(4), info=info)
    for x, y in zip(a.pixels, b.pixels):
        np.testing.assert_array_equal(y, _shown(x, want_rot, want_flip))


def test_orientation_from_matrix_and_legacy_tag():
    def m(a, b, c, d):
        return np.array([[a, b, 0], [c, d, 0], [0, 0, 1 << 30]], np.int32) * 65536

    assert orientation(m(1, 0, 0, 1)) == (0, False, None)
    assert orientation(m(0, -1, 1, 0))[:2] == (90, False)
    assert orientation(m(0, 1, -1, 0))[:2] == (270, False)
    assert orientation(m(-1, 0, 0, 1))[:2] == (0, True)
    assert orientation(None, "90") == (270, False, None), "the legacy tag is clockwise"
    assert orientation(None, None) == (0, False, None)
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    rot, flip, note = orientation(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) * 65536)
    assert (rot, flip) == (0, False) and "30.0 degrees" in note


def test_a_phone_clip_finds_the_face_it_shows_and_the_same_features(tmp_path, astronaut):
    """The clip stored sideways (a phone held upright) gives the upright clip's faces and features."""
    face = astronaut[30:250, 140:340]
    write_video(tmp_path / "up.mp4", duration=1.6, fps=10, size=(240, 320), face=face, face_size=150, audio=False)
    # the same footage as a phone stores it: frames turned a quarter, the display matrix turning them back
    frames = read_frames(tmp_path / "up.mp4", np.arange(16)).pixels
    side = tmp_path / "side.mp4"
    with av.open(str(side), "w") as out:
        vs = out.add_stream("libx264", rate=10)
        vs.width, vs.height, vs.pix_fmt = 320, 240, "yuv444p"
        vs.options = {"qp": "0", "preset": "ultrafast"}
        vs.set_display_rotation(90)
        for img in frames:
            for p in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(img, -1)), format="rgb24")):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
    cfg = ExtractConfig(extractors=("faceapi_expression",), frames=8, workers=0)
    ra = extract([tmp_path / "up.mp4"], tmp_path / "a", cfg, progress=False)
    rb = extract([side], tmp_path / "b", cfg, progress=False)
    up = FeatureStore(tmp_path / "a", create=True).get("up", ra.keys["faceapi_expression"])
    turned = FeatureStore(tmp_path / "b", create=True).get("side", rb.keys["faceapi_expression"])
    assert up.valid.all() and turned.valid.all()
    np.testing.assert_allclose(turned.values, up.values, atol=0.05)
    np.testing.assert_allclose(turned.boxes, up.boxes, atol=4)  # boxes in the shown (upright) frame's pixels
    assert turned.meta["video"]["rotation"] == 90 and turned.meta["decoding"]["rotation"] == 90


# ----------------------------------------------------------------------------------------- truncation
@pytest.fixture(scope="module")
def long_fast(tmp_path_factory):
    d = tmp_path_factory.mktemp("trunc")
    path = d / "full.mp4"
    write_video(path, duration=12.0, fps=10, size=(160, 120), faststart=True, gop=10)
    return path


@pytest.mark.parametrize("frac", [0.3, 0.5, 0.8])
def test_a_truncated_file_says_so_and_samples_what_decodes(long_fast, tmp_path, frac):
    data = long_fast.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * frac)])
    info = probe(cut)
    assert info.declared_duration == pytest.approx(12.0, abs=0.1)
    assert info.duration < 12.0 * frac + 1.0
    note = next(n for n in info.notes if n.startswith("truncated"))
    assert "declares 12.00 s" in note and f"frames end at {info.frame_times[-1] + 0.1:.2f} s" in note
    clip = sample_clip(cut, frames=16, sample_rates=(16000,))
    assert note in clip.notes
    assert clip.times[-1] <= info.duration and clip.frames.valid.sum() >= 15
    declared = sample_clip(cut, frames=16, span="declared")
    past = declared.indices == -1
    assert past.any() and not declared.valid[past].any() and declared.times[-1] == pytest.approx(11.9, abs=0.11)
    np.testing.assert_array_equal(np.diff(declared.times) > 0, True)
    assert any("span='declared'" in n for n in declared.notes)
    windows = list(sample("cut", cut, SamplingSpec(level="frame", frame_fps=2.0, window=4, span="declared")))
    times = np.concatenate([w.times for w in windows])
    assert windows[-1].last and times[-1] == pytest.approx(11.5, abs=0.11) and not windows[-1].valid.any()


def test_truncation_reaches_the_store_notes_and_the_report(long_fast, tmp_path):
    data = long_fast.read_bytes()
    cut = tmp_path / "half.mp4"
    cut.write_bytes(data[: len(data) // 2])
    rep = extract([cut], tmp_path / "s", ExtractConfig(extractors=("logmel_stats",), frames=8, workers=0),
                  progress=False)
    fs = FeatureStore(tmp_path / "s", create=True).get("half", rep.keys["logmel_stats"])
    assert any(n.startswith("truncated: declares 12.00 s") for n in fs.meta["notes"])
    assert fs.meta["video"]["declared_duration"] == pytest.approx(12.0, abs=0.1)
    assert "truncated: declares 12.00 s" in rep.text()
    other = extract([cut], tmp_path / "s2", ExtractConfig(extractors=("logmel_stats",), frames=8, workers=0,
                                                          span="declared"), progress=False)
    assert other.keys != rep.keys, "sampling over the declared duration is another feature set"


def test_moov_at_the_end_cut_off_is_a_clear_failure(tmp_path):
    path = tmp_path / "moov_end.mp4"
    write_video(path, duration=3.0, fps=10, size=(160, 120))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="index sits at the end"):
        probe(path)


def test_an_audio_stream_that_ends_early_and_zero_length_streams(tmp_path):
    early = tmp_path / "early.mp4"
    write_video(early, duration=4.0, fps=10, size=(160, 120), audio_duration=1.5)
    assert any("audio stream ends early" in n for n in probe(early).notes)
    empty_video = tmp_path / "novideo.mp4"
    write_video(empty_video, duration=0.0, fps=10, size=(160, 120), audio_duration=1.0)
    info = probe(empty_video)
    assert not info.has_video and info.has_audio
    silent = tmp_path / "emptyaudio.mp4"
    write_video(silent, duration=1.0, fps=10, size=(160, 120), audio_duration=0.0)
    clip = sample_clip(silent, frames=4, sample_rates=(16000,))
    assert clip.frames.valid.all() and clip.fragments == {} and "no audio" in clip.audio_missing


def test_a_pipe_is_refused_at_once_not_waited_on(tmp_path):
    import os

    fifo = tmp_path / "stalled.mp4"
    os.mkfifo(fifo)
    with pytest.raises(MediaError, match="not a regular file"):
        probe(fifo)
    with pytest.raises(MediaError, match="not a regular file"):
        read_audio(fifo)
