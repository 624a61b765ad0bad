"""Frame sampling (ViPER clip level, frame-level grids) and audio fragments, against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from affectfuse.io.sampling import audio_fragments, centred_windows, clip_indices, frame_level_indices, sample_clip
from affectfuse.io.synthetic import read_frame_code

# ----------------------------------------------------------------------------------------- clip_indices


@pytest.mark.parametrize("n_frames", [1, 3, 31, 32, 33, 1000])
def test_clip_indices_always_n_rows_first_last_and_valid(n_frames):
    idx, valid = clip_indices(n_frames, 32)
    assert idx.shape == (32,) and idx.dtype == np.int64
    assert valid.shape == (32,) and valid.dtype == bool
    assert idx[0] == 0 and idx[-1] == n_frames - 1
    assert np.all(np.diff(idx) >= 0)
    # every distinct frame appears once as valid, and the video's frames are all used when short
    assert sorted(idx[valid].tolist()) == sorted(set(idx.tolist()))
    assert valid.sum() == min(n_frames, 32)
    # independent formula: round(i * (N - 1) / 31), ties up
    ref = [int(np.floor(i * (n_frames - 1) / 31 + 0.5)) for i in range(32)]
    assert idx.tolist() == ref


def test_clip_indices_small_cases_by_hand():
    idx, valid = clip_indices(3, 32)
    assert set(idx.tolist()) == {0, 1, 2}
    assert valid.tolist() == [True] + [False] * 7 + [True] + [False] * 15 + [True] + [False] * 7
    idx, valid = clip_indices(1, 32)
    assert idx.tolist() == [0] * 32 and valid.tolist() == [True] + [False] * 31
    idx, valid = clip_indices(33, 32)
    assert len(set(idx.tolist())) == 32 and valid.all()
    idx, valid = clip_indices(1000, 32)
    assert np.all(np.diff(idx) >= 32) and np.all(np.diff(idx) <= 33)


def test_clip_indices_rejects_empty():
    with pytest.raises(ValueError, match="at least 1 frame"):
        clip_indices(0, 32)
    with pytest.raises(ValueError, match="n >= 1"):
        clip_indices(10, 0)


# --------------------------------------------------------------------------------- frame_level_indices


def test_frame_level_indices_step_and_grid():
    t = np.arange(100) / 30.0
    assert frame_level_indices(t).tolist() == list(range(100))
    assert frame_level_indices(t, step=4).tolist() == list(range(0, 100, 4))
    assert frame_level_indices(t, fps=10).tolist() == list(range(0, 100, 3))
    assert frame_level_indices(np.zeros(0)).shape == (0,)
    with pytest.raises(ValueError):
        frame_level_indices(t, step=0)


def test_frame_level_indices_vfr_nearest_without_duplicates():
    rng = np.random.default_rng(3)
    t = np.cumsum(rng.uniform(0.01, 0.12, 200))
    got = frame_level_indices(t, fps=15)
    grid = t[0] + np.arange(int(np.floor((t[-1] - t[0]) * 15)) + 1) / 15
    brute = np.unique([int(np.argmin(np.abs(t - g))) for g in grid])
    assert got.tolist() == brute.tolist()
    assert len(np.unique(got)) == len(got)


# ------------------------------------------------------------------------------------- audio_fragments


def test_audio_fragments_hand_computed():
    sr = 1000
    audio = np.arange(1000, dtype=np.float32) / 1000  # sample value tells its position
    times = np.array([0.1, 0.3, 0.5, 0.7])
    fr = audio_fragments(audio, sr, times)
    # boundaries: 0.1 | 0.2 | 0.4 | 0.6 | 0.7 (midpoints; first starts at its frame, last ends at its frame)
    assert fr.lengths.tolist() == [100, 200, 200, 100]
    assert np.allclose(fr.starts, [0.1, 0.2, 0.4, 0.6]) and np.allclose(fr.ends, [0.2, 0.4, 0.6, 0.7])
    assert fr.samples.shape == (4, 200)
    for i, (a, b) in enumerate([(100, 200), (200, 400), (400, 600), (600, 700)]):
        np.testing.assert_array_equal(fr.samples[i, : b - a], audio[a:b])
        assert not fr.samples[i, b - a :].any()
    assert fr.lengths.sum() == 600 == round((times[-1] - times[0]) * sr)
    assert np.all(fr.ends[:-1] == fr.starts[1:])  # no overlap, no gap
    assert fr.valid.all() and fr.sample_rate == sr and np.array_equal(fr.times, times)


def test_audio_fragments_whole_fragment_no_truncation_and_offset_clock():
    sr = 100
    audio = np.arange(2000, dtype=np.float32)
    times = np.array([1.0, 5.0, 9.0])  # 4-s middle fragment: longer than 1 s, kept whole
    fr = audio_fragments(audio, sr, times, audio_start=0.5)
    # sample k is at 0.5 + k/100: time 1.0 -> sample 50, 3.0 -> 250, 7.0 -> 650, 9.0 -> 850
    assert fr.lengths.tolist() == [200, 400, 200]
    assert fr.samples[0, 0] == 50 and fr.samples[1, 0] == 250 and fr.samples[2, 199] == 849
    assert fr.lengths.sum() == 800


def test_audio_fragments_missing_audio_and_repeats():
    sr = 1000
    audio = np.ones(300, dtype=np.float32)  # audio covers [0.2, 0.5) with audio_start=0.2
    times = np.array([0.0, 0.1, 0.3, 0.3, 0.5, 0.9])
    fr = audio_fragments(audio, sr, times, audio_start=0.2)
    # unique times 0 .1 .3 .5 .9 -> bounds 0 .05 .2 .4 .7 .9: [0,.05) none, [.05,.2) none, [.2,.4) 200,
    # the repeat of .3 empty, [.4,.7) only .4-.5 is real = 100, [.7,.9) none
    assert fr.lengths.tolist() == [0, 0, 200, 0, 100, 0]
    spans = [(0.0, 0.05), (0.05, 0.2), (0.2, 0.4), (0.3, 0.3), (0.4, 0.7), (0.7, 0.9)]
    expected = [max(int(round((min(b, 0.5) - max(a, 0.2)) * sr)), 0) for a, b in spans]
    assert fr.lengths.tolist() == expected
    assert fr.valid.tolist() == [e > 0 for e in expected]
    # a partly covered row's span is where its real samples are
    assert fr.starts[4] == pytest.approx(0.4) and fr.ends[4] == pytest.approx(0.5)
    assert fr.samples.shape[1] == max(expected)


def test_audio_fragments_start_end_limits_and_validation():
    sr = 1000
    audio = np.ones(1000, dtype=np.float32)
    fr = audio_fragments(audio, sr, np.array([0.0, 0.4, 0.8]), start=0.1, end=0.5)
    # bounds 0 .2 .6 .8 within [0.1, 0.5]: 100, 300, 0
    assert fr.lengths.tolist() == [100, 300, 0]
    with pytest.raises(ValueError, match="non-decreasing"):
        audio_fragments(audio, sr, np.array([0.5, 0.1]))
    with pytest.raises(ValueError, match="mono"):
        audio_fragments(np.ones((2, 10)), sr, np.array([0.0]))


def test_centred_windows_edges():
    sr = 1000
    audio = np.arange(1000, dtype=np.float32)
    fr = centred_windows(audio, sr, np.array([0.0, 0.5, 0.95, 2.0]), length=0.2)
    assert fr.samples.shape == (4, 200)
    assert fr.lengths.tolist() == [100, 200, 150, 0]
    assert fr.valid.tolist() == [True, True, True, False]
    np.testing.assert_array_equal(fr.samples[1], audio[400:600])
    np.testing.assert_array_equal(fr.samples[0, :100], audio[:100])  # real samples first, then zeros
    assert not fr.samples[0, 100:].any()
    assert fr.starts[0] == 0.0 and fr.starts[2] == pytest.approx(0.85) and fr.ends[2] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------- sample_clip


def test_sample_clip_video_with_audio(make_video):
    path, times = make_video("c.mp4", duration=2.0, fps=30, size=(192, 112))
    clip = sample_clip(path, frames=32, sample_rates=(16000,))
    info, frames, frag = clip.info, clip.frames, clip.fragments.get(16000)
    assert len(frames) == 32 and frames.valid.all()
    assert [read_frame_code(p) for p in frames.pixels] == frames.indices.tolist()
    assert frames.indices[0] == 0 and frames.indices[-1] == 59
    np.testing.assert_allclose(frames.times, times[frames.indices], atol=1e-6)
    assert len(frag) == 32 and frag.valid.all() and frag.sample_rate == 16000
    assert abs(int(frag.lengths.sum()) - round((times[-1] - times[0]) * 16000)) <= 1
    mid = frag.lengths[1:-1]
    assert abs(int(frag.lengths[0]) * 2 - int(np.median(mid))) <= 2  # first/last half length
    np.testing.assert_allclose(frag.times, frames.times)


def test_sample_clip_short_video_repeats_marked(make_video):
    path, _ = make_video("short.mp4", duration=0.1, fps=30, size=(192, 112))  # 3 frames
    clip = sample_clip(path, frames=32, sample_rates=(16000,))
    info, frames, frag = clip.info, clip.frames, clip.fragments.get(16000)
    assert info.n_frames == 3 and len(frames) == 32 and frames.valid.sum() == 3
    assert any("repeat" in n for n in frames.notes)
    assert sorted(frames.indices[frames.valid].tolist()) == [0, 1, 2]
    assert len(frag) == 32 and not frag.valid[~frames.valid].any()  # repeated times: empty fragments


def test_sample_clip_audio_only_and_no_audio(make_video):
    path, _ = make_video("a.mp4", video=False, duration=1.5)
    clip = sample_clip(path, frames=8, sample_rates=(16000,))
    info, frames, frag = clip.info, clip.frames, clip.fragments.get(16000)
    assert frames is None and not info.has_video
    assert len(frag) == 8 and frag.valid.all()
    assert frag.starts[0] == pytest.approx(frag.times[0]) and frag.times[-1] >= 1.5 - 0.01
    path, _ = make_video("v.mp4", audio=False, duration=0.5, size=(192, 112))
    clip = sample_clip(path, frames=8, sample_rates=(16000,))
    info, frames, frag = clip.info, clip.frames, clip.fragments.get(16000)
    assert frag is None and len(frames) == 8


def test_viper_code_windows_overlap_by_half_and_cover_the_track():
    from affectfuse.io.sampling import overlapping_windows

    sr, n = 16000, 32
    audio = np.arange(12 * sr, dtype=np.float32)  # sample value = its index
    frag = overlapping_windows(audio, sr, np.linspace(0, 11.9, n))
    step = len(audio) / (n + 1)
    assert frag.valid.all() and len(frag) == n
    np.testing.assert_allclose(frag.lengths, 2 * step, atol=1)  # 2 L / (n + 1): 0.727 s here
    assert frag.lengths.mean() / sr == pytest.approx(0.727, abs=1e-3)
    np.testing.assert_allclose(frag.starts[1:] - frag.starts[:-1], step / sr, atol=1 / sr)
    assert frag.samples[0, 0] == 0 and frag.ends[-1] == pytest.approx(12.0, abs=1 / sr)
    assert frag.samples[5, 0] == np.floor(5 * step + 0.5)


def test_clip_context_centred_or_ending_at_the_row(make_video):
    """JMT's sub-clips end at their labelled frame (8 frames, dilation 4: frames t-28 .. t); 'centre' is the
    frames around it. Decoded frames carry their index as a code, so the frames taken are read back."""
    from affectfuse.io.sampling import SamplingSpec, clip_offsets, sample

    assert clip_offsets(8, 4, "end").tolist() == [-28, -24, -20, -16, -12, -8, -4, 0]
    assert clip_offsets(8, 4, "centre").tolist() == [-16, -12, -8, -4, 0, 4, 8, 12]
    with pytest.raises(ValueError, match="clip anchor must be 'centre' or 'end'"):
        clip_offsets(8, 4, "start")
    path, _ = make_video("ctx.mp4", duration=2.0, fps=30, size=(192, 112))
    spec = SamplingSpec(frames=4, context=((8, 4, "end"), (8, 4, "centre")))
    (clip,) = list(sample("ctx", path, spec))
    rows = clip.frames.indices  # (4,) first = 0, last = 59
    for anchor in ("end", "centre"):
        ctx = clip.context[(8, 4, anchor)]
        codes = np.array([read_frame_code(p) for p in ctx.pixels]).reshape(len(rows), 8)
        want = np.clip(rows[:, None] + clip_offsets(8, 4, anchor)[None], 0, 59)
        np.testing.assert_array_equal(codes, want)
        np.testing.assert_array_equal(ctx.indices.reshape(len(rows), 8), want)
    assert (codes[:, :] <= 59).all()
    with pytest.raises(ValueError, match="SamplingSpec.context"):
        SamplingSpec(context=((8, 4),)).validate()


def test_r2plus1d_clips_end_at_the_row_by_default_and_centred_keeps_the_old_key():
    from affectfuse.extractors import create_extractor

    ex, old = create_extractor("r2plus1d_18"), create_extractor("r2plus1d_18", clip_anchor="centre")
    assert ex.contract.clip_anchor == "end" and old.contract.clip_anchor == "centre"
    assert "clip_anchor" not in old.params and ex.params["clip_anchor"] == "end" and ex.key != old.key
