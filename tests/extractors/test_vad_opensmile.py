"""Silero VAD statistics and openSMILE functionals per audio fragment.

Silero: the vectorised re-implementation is checked against the package's own TorchScript model called
chunk by chunk (``model(chunk, 16000)`` after ``reset_states()``, as ``get_speech_timestamps`` does),
and on generated audio: silence, a 440 Hz tone, white noise and a harmonic tone give low speech
probabilities; a crude formant-synthesised voiced signal gives high ones.

openSMILE is an opt-in extra (non-commercial licence): only its tests that need the package skip when it
is not installed.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
from scipy.signal import lfilter

from affectfuse.extractors import ExtractorInput, create_extractor
from affectfuse.extractors.audio.vad import CHUNK, chunk_fragment, silero_jit_path

SR = 16000


# -- generated audio --------------------------------------------------------------------------------
def _resonator(x: np.ndarray, f: float, bw: float) -> np.ndarray:
    r = np.exp(-np.pi * bw / SR)
    return lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / SR), r * r], x)


def voiced(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Crude speech-like signal: a glottal pulse train (F0 100-150 Hz) through vowel formants, 4 Hz syllables."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t) + 10 * np.sin(2 * np.pi * 3 * t)
    src = lfilter([1], [1, -0.95], np.diff(np.floor(np.cumsum(f0 / SR)), prepend=0.0))
    vowels = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410)]
    seg, out = int(0.2 * SR), np.zeros(n)
    for s in range(0, n, seg):
        f1, f2, f3 = vowels[rng.integers(len(vowels))]
        e = src[s : s + seg]
        out[s : s + seg] = _resonator(e, f1, 80) + 0.5 * _resonator(e, f2, 100) + 0.25 * _resonator(e, f3, 150)
    out = out * (0.5 - 0.5 * np.cos(2 * np.pi * 4 * t)) + 0.003 * rng.standard_normal(n)
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def non_speech(seconds: float = 2.0) -> dict[str, np.ndarray]:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(1)
    return {
        "silence": np.zeros_like(t),
        "tone440": 0.3 * np.sin(2 * np.pi * 440 * t),
        "white_noise": 0.1 * rng.standard_normal(len(t)),
        "harmonic_tone": sum(0.1 / k * np.sin(2 * np.pi * 150 * k * t) for k in range(1, 20)),
    }


def padded_batch(rows: list[np.ndarray], fill: float = 0.7, valid=None) -> ExtractorInput:
    """Rows right-padded with a non-zero value (padding must never enter the features)."""
    length = max(len(r) for r in rows)
    audio = np.full((len(rows), length), fill, np.float32)
    for i, r in enumerate(rows):
        audio[i, : len(r)] = r
    return ExtractorInput(audio=audio, audio_lengths=np.array([len(r) for r in rows]), valid=valid)


# -- Silero VAD -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vad():
    return create_extractor("silero_vad").load()


@pytest.fixture(scope="module")
def jit_model():
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(silero_jit_path()), map_location="cpu")


def jit_probs(model, x: np.ndarray) -> np.ndarray:
    """The package's own streaming use: reset, then one call per 512-sample chunk, last chunk zero-padded."""
    import torch

    n = max(1, -(-len(x) // CHUNK))
    xp = np.zeros(n * CHUNK, np.float32)
    xp[: len(x)] = x
    model.reset_states()
    with torch.inference_mode():
        return np.array([model(torch.from_numpy(xp[i * CHUNK : (i + 1) * CHUNK])[None], SR).item() for i in range(n)])


def test_silero_identity():
    ex = create_extractor("silero_vad")
    assert ex.modality == "audio" and ex.dim == 3
    assert ex.contract.kind == "audio_fragment" and ex.contract.sample_rate == 16000
    assert ex.key != create_extractor("silero_vad", threshold=0.3).key
    assert ex.key == create_extractor("silero_vad", batch_size=3, device="cpu").key  # not part of the identity


def test_silero_matches_jit_frame_by_frame(vad, jit_model):
    """Rows of different lengths in one padded batch (incl. < 1 chunk and partial last chunks) = the JIT model per fragment."""
    speech = voiced(1.5, seed=3)
    rng = np.random.default_rng(7)
    rows = [speech, speech[:100], speech[:512], speech[4000:4700], (0.05 * rng.standard_normal(3000)).astype(np.float32)]
    out = vad(padded_batch(rows)).values
    ref = [jit_probs(jit_model, r) for r in rows]
    assert [len(p) for p in ref] == [47, 1, 1, 2, 6]
    for r, p, o in zip(rows, ref, out):
        mine = vad.chunk_probs([r])[0]
        np.testing.assert_allclose(mine, p, atol=2e-5)
        np.testing.assert_allclose(o, [p.mean(), p.max(), (p > 0.5).mean()], atol=2e-5)
    assert out[0, 1] > 0.5  # the comparison covers high probabilities too


def test_silero_streaming_state_is_reset_per_fragment(vad, jit_model):
    """A fragment's result does not depend on what came before it in the batch or on the batch size."""
    a, b = voiced(1.0, seed=0), voiced(1.0, seed=1)
    together = vad(ExtractorInput(audio=np.stack([a, b]))).values
    alone = vad(ExtractorInput(audio=b[None])).values
    np.testing.assert_allclose(together[1], alone[0], atol=1e-6)
    # the JIT model, *not* reset between the two, carries state: so the reset matters
    import torch

    jit_model.reset_states()
    with torch.inference_mode():
        for i in range(len(a) // CHUNK):
            jit_model(torch.from_numpy(a[i * CHUNK : (i + 1) * CHUNK])[None], SR)
        carried = jit_model(torch.from_numpy(b[:CHUNK])[None], SR).item()
    assert abs(carried - jit_probs(jit_model, b[:CHUNK])[0]) > 1e-4


def test_silero_speech_vs_non_speech(vad):
    neg = non_speech(2.0)
    pos = [voiced(2.0, seed=s) for s in (0, 2)]
    out = vad(ExtractorInput(audio=np.stack([*neg.values(), *pos]).astype(np.float32))).values
    for name, row in zip(neg, out[: len(neg)]):
        assert row[1] < 0.25 and row[2] == 0.0, (name, row)
        assert row[0] < 0.05, (name, row)
    for row in out[len(neg) :]:
        assert row[1] > 0.8 and row[2] > 0.3 and row[0] > 0.3, row
    assert np.all((out >= 0) & (out <= 1))


def test_silero_threshold_and_stats(vad):
    x = voiced(1.0, seed=2)
    p = vad.chunk_probs([x])[0].astype(np.float64)
    assert len(p) == 32  # ceil(16000 / 512)
    ex = create_extractor("silero_vad", threshold=0.2)
    np.testing.assert_allclose(ex(ExtractorInput(audio=x[None])).values[0], [p.mean(), p.max(), (p > 0.2).mean()], atol=1e-6)
    assert (p > 0.2).mean() != (p > 0.5).mean()  # the threshold matters on this signal


def test_silero_chunking():
    x = np.arange(1, 701, dtype=np.float32)
    c = chunk_fragment(x)
    assert c.shape == (2, 576)
    np.testing.assert_array_equal(c[0, :64], 0)  # fresh context
    np.testing.assert_array_equal(c[0, 64:], x[:512])
    np.testing.assert_array_equal(c[1, :64], x[448:512])  # the previous chunk's last 64 samples
    np.testing.assert_array_equal(c[1, 64 : 64 + 188], x[512:])
    np.testing.assert_array_equal(c[1, 64 + 188 :], 0)
    assert chunk_fragment(x[:10]).shape == (1, 576)
    assert chunk_fragment(x, 4).shape == (4, 576)
    with pytest.raises(ValueError, match="fewer than the 2 chunks"):
        chunk_fragment(x, 1)


def test_silero_invalid_and_empty_rows(vad):
    x = voiced(0.5)
    out = vad(padded_batch([x, x, x[:0]], valid=np.array([True, False, True]))).values
    assert out[0, 1] > 0 and np.all(out[1:] == 0)
    assert vad(ExtractorInput(audio=np.zeros((0, 10), np.float32))).values.shape == (0, 3)


def test_silero_errors(tmp_path):
    with pytest.raises(TypeError, match="unknown parameter.*thresh"):
        create_extractor("silero_vad", thresh=0.5)
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\)"):
        create_extractor("silero_vad", threshold=1.5)
    missing = tmp_path / "nope.jit"
    with pytest.raises(FileNotFoundError, match="nope.jit"):
        create_extractor("silero_vad", weights=str(missing)).load()
    bad = tmp_path / "bad.jit"
    bad.write_bytes(b"not a torchscript archive")
    with pytest.raises(ValueError, match=r"bad\.jit: not a Silero VAD TorchScript archive"):
        create_extractor("silero_vad", weights=str(bad)).load()
    with pytest.raises(ValueError, match="needs 'audio_fragment' inputs"):
        create_extractor("silero_vad")(ExtractorInput(images=np.zeros((1, 8, 8, 3), np.uint8)))


# -- openSMILE --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def opensmile():
    return pytest.importorskip(
        "opensmile", reason="opt-in extra `pip install opensmile` (audEERING research licence, non-commercial)"
    )


def _direct(opensmile, x: np.ndarray, feature_set) -> np.ndarray:
    smile = opensmile.Smile(feature_set=feature_set, feature_level=opensmile.FeatureLevel.Functionals)
    return smile.process_signal(x, SR).to_numpy()[0]


def test_opensmile_egemaps_matches_direct_call(opensmile):
    ex = create_extractor("opensmile")
    assert ex.dim == 88 and ex.modality == "audio" and ex.contract.sample_rate == SR
    a, b = voiced(1.0, seed=0), voiced(0.7, seed=1)
    out = ex(padded_batch([a, b])).values  # b is padded with 0.7 for 0.3 s
    assert out.shape == (2, 88) and np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0], _direct(opensmile, a, opensmile.FeatureSet.eGeMAPSv02), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out[1], _direct(opensmile, b, opensmile.FeatureSet.eGeMAPSv02), rtol=1e-6, atol=1e-6)
    # padding invariance: the padded row equals the fragment alone
    np.testing.assert_array_equal(out[1], ex(ExtractorInput(audio=b[None])).values[0])
    assert not np.allclose(out[0], out[1])
    names = ex.feature_names
    assert len(names) == 88 and names[0].startswith("F0semitoneFrom27.5Hz")
    f0 = out[:, names.index("F0semitoneFrom27.5Hz_sma3nz_amean")]  # semitones above 27.5 Hz
    np.testing.assert_allclose(f0, 12 * np.log2(120 / 27.5), atol=2.0)  # the generated F0 is ~120 Hz


def test_opensmile_short_fragments_padded_to_60ms(opensmile):
    ex = create_extractor("opensmile")
    x = voiced(0.5, seed=4)[2000:2400]  # 25 ms: openSMILE alone gives NaN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert np.isnan(_direct(opensmile, x, opensmile.FeatureSet.eGeMAPSv02)).all()
        ref = _direct(opensmile, np.pad(x, (0, 960 - len(x))), opensmile.FeatureSet.eGeMAPSv02)
    out = ex(padded_batch([x, voiced(0.2)])).values
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0], ref, rtol=1e-6, atol=1e-6)


def test_opensmile_clips_out_of_range_samples(opensmile):
    ex = create_extractor("opensmile")
    x = 4 * voiced(0.5, seed=5)  # peaks at 1.2: openSMILE's int16 conversion would wrap around
    out = ex(ExtractorInput(audio=x[None])).values[0]
    np.testing.assert_allclose(out, _direct(opensmile, np.clip(x, -1, 32767 / 32768), opensmile.FeatureSet.eGeMAPSv02), rtol=1e-6, atol=1e-6)
    assert not np.allclose(out, _direct(opensmile, x, opensmile.FeatureSet.eGeMAPSv02), rtol=1e-3)


def test_opensmile_compare_2016(opensmile):
    ex = create_extractor("opensmile", feature_set="ComParE_2016")
    assert ex.dim == 6373 and ex.key != create_extractor("opensmile").key
    x = voiced(0.5, seed=6)
    out = ex(ExtractorInput(audio=x[None])).values
    assert out.shape == (1, 6373) and np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0], _direct(opensmile, x, opensmile.FeatureSet.ComParE_2016), rtol=1e-6, atol=1e-6)


def test_opensmile_parameter_errors():
    with pytest.raises(ValueError, match=r"unknown feature_set 'eGeMAPS'; expected one of eGeMAPSv02, ComParE_2016"):
        create_extractor("opensmile", feature_set="eGeMAPS")
    with pytest.raises(ValueError, match="sample_rate must be an integer >= 8000"):
        create_extractor("opensmile", sample_rate=4000)
    with pytest.raises(TypeError, match="unknown parameter.*level"):
        create_extractor("opensmile", level="lld")


def test_opensmile_missing_package_error(monkeypatch):
    """Without the package, loading says how to install it and names the licence (runs with or without it)."""
    monkeypatch.setitem(sys.modules, "opensmile", None)  # makes `import opensmile` raise ImportError
    ex = create_extractor("opensmile")
    with pytest.raises(ImportError, match=r"(?s)non-commercial.*pip install opensmile"):
        ex(ExtractorInput(audio=np.zeros((1, 1600), np.float32)))
