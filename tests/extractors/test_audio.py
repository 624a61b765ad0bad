"""Audio extractors: values against independent computations, padding invariance, keys, errors.

Tiny random transformers checkpoints are built here and loaded from tmp folders (nothing is fetched).
The offline default's real weights come from the ``resemblyzer`` package (installed with --no-deps).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from affectfuse.extractors import ExtractorInput, create_extractor, list_extractors

SR = 16000
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=(16,) * 7)
NAMES = ["wavlm_xvector", "hf_speech", "logmel_stats", "jmt_resnet18", "deepspectrum", "resemblyzer_ge2e"]


def padded(rows: list[np.ndarray], total: int | None = None) -> ExtractorInput:
    """Rows zero-padded to a common length (or ``total``), with their real lengths."""
    n = max(total or 0, max(len(r) for r in rows))
    a = np.zeros((len(rows), n), np.float32)
    for i, r in enumerate(rows):
        a[i, : len(r)] = r
    return ExtractorInput(audio=a, audio_lengths=np.array([len(r) for r in rows], np.int64))


def noise(n: int, seed: int, scale: float = 0.1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * scale).astype(np.float32)


def speechlike(n: int, seed: int) -> np.ndarray:
    """Amplitude-modulated harmonic signal plus noise (changes over time, unlike white noise)."""
    t = np.arange(n) / SR
    rng = np.random.default_rng(seed)
    f0 = 120 + 40 * rng.random()
    x = sum(np.sin(2 * np.pi * f0 * k * t + rng.random() * 6) / k for k in range(1, 8))
    x = x * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(n)
    return (0.2 * x / np.abs(x).max()).astype(np.float32)


# -- registry, parameters, errors ---------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    """Tiny random WavLM-xvector / HuBERT / wav2vec2 / WavLM checkpoints saved with their feature extractors."""
    from transformers import (
        HubertConfig,
        HubertModel,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2Model,
        WavLMConfig,
        WavLMForXVector,
        WavLMModel,
    )

    root = tmp_path_factory.mktemp("hf_speech")
    torch.manual_seed(0)
    built = {
        "xvector": (
            WavLMForXVector(WavLMConfig(**TINY, tdnn_dim=(16, 16, 16, 16, 32), xvector_output_dim=24, num_buckets=16)),
            True,
        ),
        "hubert": (HubertModel(HubertConfig(**TINY)), True),
        "wav2vec2": (Wav2Vec2Model(Wav2Vec2Config(**TINY, feat_extract_norm="layer", do_stable_layer_norm=True)), False),
        "wavlm": (WavLMModel(WavLMConfig(**TINY, num_buckets=16)), True),
    }
    dirs = {}
    for k, (m, norm) in built.items():
        d = root / k
        m.eval().save_pretrained(d)
        Wav2Vec2FeatureExtractor(do_normalize=norm, return_attention_mask=not norm).save_pretrained(d)
        dirs[k] = d
    d = root / "no_fe"  # a checkpoint without preprocessor_config.json
    built["hubert"][0].save_pretrained(d)
    dirs["no_fe"] = d
    return dirs


def test_registered_with_audio_contracts():
    assert set(NAMES) <= set(list_extractors())
    for name in ["logmel_stats", "jmt_resnet18", "deepspectrum", "resemblyzer_ge2e"]:
        ex = create_extractor(name)
        assert ex.modality == "audio" and ex.contract.kind == "audio_fragment"
    assert create_extractor("jmt_resnet18").contract.sample_rate == 44100  # JMT's rate
    assert create_extractor("resemblyzer_ge2e").contract.sample_rate == 16000
    # the defaults can be created (to read their keys) without their weights on disk
    assert (create_extractor("wavlm_xvector").dim, create_extractor("hf_speech").dim) == (512, 768)
    assert (create_extractor("logmel_stats").dim, create_extractor("logmel_stats", deltas=True).dim) == (128, 256)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_parameter_is_a_type_error_listing_accepted(name):
    with pytest.raises(TypeError, match=r"bogus.*accepted: .*dtype|bogus.*accepted: .*n_mels"):
        create_extractor(name, bogus=1)


def test_key_changes_with_output_parameters_only(tiny_dirs):
    k = lambda name, **kw: create_extractor(name, **kw).key  # noqa: E731
    assert k("logmel_stats") != k("logmel_stats", n_mels=40) != k("logmel_stats", n_mels=40, deltas=True)
    assert k("resemblyzer_ge2e") != k("resemblyzer_ge2e", rate=1.0)
    assert k("resemblyzer_ge2e") != k("resemblyzer_ge2e", dtype="bfloat16")
    assert k("resemblyzer_ge2e") == k("resemblyzer_ge2e", batch_size=3, device="cpu")
    assert k("jmt_resnet18") != k("jmt_resnet18", sample_rate=16000)
    assert k("deepspectrum") != k("deepspectrum", colormap="magma") != k("deepspectrum", n_mels=64)
    hub = str(tiny_dirs["hubert"])
    assert k("hf_speech", model=hub) != k("hf_speech", model=hub, layer=1) != k("hf_speech", model=str(tiny_dirs["wavlm"]))
    assert k("hf_speech", model=hub) == k("hf_speech", model=hub, batch_size=2)
    xv = str(tiny_dirs["xvector"])
    assert k("wavlm_xvector", model=xv) != k("wavlm_xvector", model=xv, dtype="bfloat16")


def test_bad_parameter_values_are_value_errors(tiny_dirs):
    with pytest.raises(ValueError, match="n_mels must be > 0"):
        create_extractor("logmel_stats", n_mels=0)
    with pytest.raises(ValueError, match="dtype must be one of"):
        create_extractor("resemblyzer_ge2e", dtype="int8")
    with pytest.raises(ValueError, match="layer=9"):
        create_extractor("hf_speech", model=str(tiny_dirs["hubert"]), layer=9)
    with pytest.raises(ValueError, match="WavLMForXVector"):
        create_extractor("wavlm_xvector", model=str(tiny_dirs["wavlm"]))  # no x-vector head: would be random
    with pytest.raises(ValueError, match="not in the Hugging Face cache"):
        create_extractor("hf_speech", model="nobody/not-a-cached-model")
    with pytest.raises(ValueError, match="unknown matplotlib colormap 'nope'"):
        create_extractor("deepspectrum", colormap="nope")(padded([noise(1000, 0)]))
    with pytest.raises(FileNotFoundError, match="config.json"):
        create_extractor("hf_speech", model=str(tiny_dirs["hubert"].parent))


@pytest.mark.parametrize("name", ["logmel_stats", "resemblyzer_ge2e"])
def test_wrong_input_kind_and_bad_lengths(name):
    ex = create_extractor(name)
    with pytest.raises(ValueError, match=r"audio_fragment.*images \(2, 8, 8, 3\)"):
        ex(ExtractorInput(images=np.zeros((2, 8, 8, 3), np.uint8)))
    with pytest.raises(ValueError, match=r"audio_lengths must lie in \[0, 100\]"):
        ex(ExtractorInput(audio=np.zeros((2, 100), np.float32), audio_lengths=np.array([50, 101])))
    with pytest.raises(ValueError, match=r"\(N, L\) mono"):
        ex(ExtractorInput(audio=np.zeros((2, 100, 2), np.float32), audio_lengths=np.array([50, 100])))


# -- logmel_stats --------------------------------------------------------------------------------
def reference_logmel(x: np.ndarray, n_mels=64, n_fft=512, win=400, hop=160) -> np.ndarray:
    """torch.stft + transformers' mel filter bank + dB (independent of the extractor's numpy STFT)."""
    from transformers.audio_utils import mel_filter_bank

    spec = torch.stft(
        torch.from_numpy(x.astype(np.float64)),
        n_fft=n_fft,
        hop_length=hop,
        win_length=win,
        window=torch.hann_window(win, periodic=True, dtype=torch.float64),
        center=True,
        pad_mode="constant",
        return_complex=True,
    ).abs() ** 2  # (F, T)
    fb = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=0, max_frequency=SR / 2,
        sampling_rate=SR, norm="slaney", mel_scale="slaney",
    )
    return 10 * np.log10(np.maximum(fb.T @ spec.numpy(), 1e-10))  # (M, T)


def htk_deltas_loop(m: np.ndarray, width: int = 2) -> np.ndarray:
    t = m.shape[1]
    out = np.zeros_like(m)
    for j in range(t):
        for n in range(1, width + 1):
            out[:, j] += n * (m[:, min(j + n, t - 1)] - m[:, max(j - n, 0)])
    return out / (2 * sum(n * n for n in range(1, width + 1)))


def test_logmel_stats_matches_torch_stft_reference_and_ignores_padding():
    rows = [speechlike(12000, 1), speechlike(5000, 2), speechlike(150, 3)]  # 150 samples: one frame
    ex = create_extractor("logmel_stats", deltas=True)
    out = ex(padded(rows, total=16000)).values
    for i, r in enumerate(rows):
        ref = reference_logmel(r)
        d = htk_deltas_loop(ref)
        expect = np.concatenate([ref.mean(1), ref.std(1), d.mean(1), d.std(1)])
        np.testing.assert_allclose(out[i], expect, rtol=1e-4, atol=2e-3)
        alone = ex(padded([r])).values[0]
        np.testing.assert_allclose(out[i], alone, rtol=0, atol=1e-5)  # padding never enters
    assert ref.shape[1] == 1 and np.all(out[2, 128:] == 0)  # one frame: zero deltas, zero stds


def test_logmel_stats_tone_lands_in_its_band():
    t = np.arange(SR) / SR
    ex = create_extractor("logmel_stats", n_mels=40)
    peaks = [int(np.argmax(ex(padded([0.5 * np.sin(2 * np.pi * f * t).astype(np.float32)])).values[0, :40])) for f in (300, 1000, 4000)]
    from transformers.audio_utils import mel_filter_bank

    fb = mel_filter_bank(num_frequency_bins=257, num_mel_filters=40, min_frequency=0, max_frequency=8000,
                         sampling_rate=SR, norm="slaney", mel_scale="slaney")
    freqs = np.linspace(0, 8000, 257)
    for f, p in zip((300, 1000, 4000), peaks):
        assert fb[np.argmin(abs(freqs - f)), p] > 0  # the loudest band's filter covers the tone
    assert peaks[0] < peaks[1] < peaks[2]


# -- transformers speech encoders ----------------------------------------------------------------
def direct_hf(d, x: np.ndarray, min_len: int, xvector: bool, layer: int = -1) -> np.ndarray:
    """The feature extractor + model of a checkpoint folder on one row, zero-padded to ``min_len``."""
    from transformers import AutoFeatureExtractor, AutoModel, WavLMForXVector

    fe = AutoFeatureExtractor.from_pretrained(d)
    v = fe(x, sampling_rate=SR, return_tensors="pt")["input_values"]  # (1, l)
    v = torch.nn.functional.pad(v, (0, max(0, min_len - v.shape[1])))
    with torch.no_grad():
        if xvector:
            return WavLMForXVector.from_pretrained(d).eval()(v).embeddings[0].numpy()
        o = AutoModel.from_pretrained(d).eval()(v, output_hidden_states=True)
        h = o.last_hidden_state if layer == -1 else o.hidden_states[layer]  # -1: the encoder output
        return h[0].mean(0).numpy()


@pytest.mark.parametrize(
    "kind,name,layer",
    [("xvector", "wavlm_xvector", -1), ("hubert", "hf_speech", -1), ("hubert", "hf_speech", 1),
     ("wav2vec2", "hf_speech", -1), ("wavlm", "hf_speech", 0)],
)
def test_hf_speech_equals_direct_transformers(tiny_dirs, kind, name, layer):
    d = tiny_dirs[kind]
    kw = {} if name == "wavlm_xvector" else {"layer": layer}
    ex = create_extractor(name, model=str(d), batch_size=2, **kw)
    assert ex.dim == (24 if name == "wavlm_xvector" else 32)
    # rows: full, shorter (padded in the batch), shorter than the minimum, a repeat of the full length
    rows = [speechlike(8000, 1), speechlike(5600, 2), speechlike(300, 3), speechlike(8000, 4), np.zeros(0, np.float32)]
    out = ex(padded(rows, total=9000)).values
    # minimum length worked out by hand: conv stack (10,3,3,3,3,2,2)/(5,2,2,2,2,2,2) -> 400 samples per
    # frame + 320 per extra frame; x-vector TDNN (5,3,3,1,1)/(1,2,3,1,1) needs 2 + 4 + 4 + 6 = 16 frames
    min_len = 400 + 15 * 320 if name == "wavlm_xvector" else 400
    assert ex._min_len == min_len
    for i, r in enumerate(rows[:4]):
        np.testing.assert_allclose(out[i], direct_hf(d, r, min_len, name == "wavlm_xvector", layer), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ex(padded(rows[1:2])).values[0], out[1], atol=1e-5)  # alone, unpadded
    assert np.all(out[4] == 0) and np.isfinite(out).all()  # empty row: defined, finite


def test_hf_speech_bf16_and_missing_feature_extractor(tiny_dirs):
    rows = [speechlike(6000, 5), speechlike(4000, 6)]
    ref = create_extractor("hf_speech", model=str(tiny_dirs["hubert"]))(padded(rows)).values
    bf = create_extractor("hf_speech", model=str(tiny_dirs["hubert"]), dtype="bfloat16")
    got = bf(padded(rows)).values
    assert next(bf.net.parameters()).dtype == torch.bfloat16
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.99 and not np.array_equal(got, ref)
    # no preprocessor_config.json: Wav2Vec2FeatureExtractor defaults (normalisation on), with a warning
    ex = create_extractor("hf_speech", model=str(tiny_dirs["no_fe"]))
    with pytest.warns(UserWarning, match="no feature extractor config"):
        out = ex(padded(rows)).values
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)  # same weights, same normalisation


# -- JMT ResNet18 ----------------------------------------------------------------------------------
def reference_jmt_spectrogram(x: np.ndarray, sr: int = 44100) -> np.ndarray:
    """JMT's torchaudio front end written with torch.stft (torchaudio itself does not load here)."""
    from transformers.audio_utils import mel_filter_bank

    n = 45599 * sr // 44100
    x = np.pad(x, (n - len(x), 0)) if len(x) <= n else x
    win, hop = round(0.02 * sr), round(0.01 * sr)
    spec = torch.stft(
        torch.from_numpy(x.astype(np.float64))[None], n_fft=1024, hop_length=hop, win_length=win,
        window=torch.hann_window(win, dtype=torch.float64), center=True, pad_mode="reflect", return_complex=True,
    ).abs()[0] ** 2
    fb = mel_filter_bank(num_frequency_bins=513, num_mel_filters=64, min_frequency=0, max_frequency=sr / 2,
                         sampling_rate=sr, norm=None, mel_scale="htk")
    db = 10 * np.log10(np.maximum(fb.T @ spec.numpy(), 1e-10))
    db = np.maximum(db, db.max() - 80)
    return (db + 14.8) / 19.895


def tv_resnet18_1ch(sd3: dict):
    from torch import nn

    from affectfuse._compat import import_torchvision

    net = import_torchvision().models.resnet18(weights=None)
    net.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    net.fc = nn.Identity()
    sd = {k: v for k, v in sd3.items() if not k.startswith("fc.")}
    sd["conv1.weight"] = sd3["conv1.weight"].mean(1, keepdim=True)
    net.load_state_dict(sd)
    return net.eval()


def test_jmt_resnet18_front_end_weights_and_padding(tmp_path):
    from affectfuse._compat import import_torchvision

    sr = 44100
    rows = [speechlike(sr, 1), speechlike(sr // 2, 2), speechlike(60000, 3)]  # 1 s, 0.5 s, longer than the pad
    ex0 = create_extractor("jmt_resnet18")
    for r in rows:
        np.testing.assert_allclose(ex0.spectrogram(r), reference_jmt_spectrogram(r), rtol=1e-4, atol=1e-3)
    assert ex0.spectrogram(rows[0]).shape == (64, 1 + 45599 // 441)

    torch.manual_seed(1)
    sd3 = import_torchvision().models.resnet18(weights=None).state_dict()  # ImageNet-layout: 3-channel conv1
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd3.items()}}, tmp_path / "imagenet_like.pth")
    ex = create_extractor("jmt_resnet18", weights=str(tmp_path / "imagenet_like.pth"), batch_size=2)
    out = ex(padded(rows)).values
    ref_net = tv_resnet18_1ch(sd3)
    with torch.no_grad():
        for i, r in enumerate(rows):
            spec = torch.from_numpy(reference_jmt_spectrogram(r)).float()[None, None]
            np.testing.assert_allclose(out[i], ref_net(spec)[0].numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(ex(padded(rows[1:2])).values[0], out[1], atol=1e-4)  # padding never enters

    # round trip: the loaded 1-channel network saved as safetensors gives the same features
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in ex.net.state_dict().items()}, tmp_path / "jmt.safetensors")
    again = create_extractor("jmt_resnet18", weights=str(tmp_path / "jmt.safetensors"))(padded(rows)).values
    np.testing.assert_allclose(again, out, atol=1e-5)
    assert not np.allclose(create_extractor("jmt_resnet18")(padded(rows[:1])).values, out[:1], atol=1e-3)  # weights matter

    torch.save({"conv1.weight": torch.zeros(64, 1, 7, 7)}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"partial\.pt: does not match the torchvision ResNet layout"):
        create_extractor("jmt_resnet18", weights=str(tmp_path / "partial.pt"))(padded(rows[:1]))


# -- DeepSpectrum ----------------------------------------------------------------------------------
def test_deepspectrum_image_network_and_checkpoint_round_trip(tmp_path):
    import matplotlib
    from transformers.audio_utils import mel_filter_bank

    rows = [speechlike(SR, 1), speechlike(5000, 2), speechlike(100, 3)]  # the last is shorter than n_fft=512
    ex = create_extractor("deepspectrum", n_mels=32, batch_size=2)
    assert ex.n_fft == 512
    # mel dB against torch.stft (no centring, hop n_fft/2) + librosa's Slaney filter bank, ref = max
    x = rows[1]
    spec = torch.stft(torch.from_numpy(x.astype(np.float64)), n_fft=512, hop_length=256,
                      window=torch.hann_window(512, dtype=torch.float64), center=False, return_complex=True).abs() ** 2
    fb = mel_filter_bank(num_frequency_bins=257, num_mel_filters=32, min_frequency=0, max_frequency=8000,
                         sampling_rate=SR, norm="slaney", mel_scale="slaney")
    mel = fb.T @ spec.numpy()
    ref_db = 10 * np.log10(np.maximum(mel, 1e-10) / mel.max())
    np.testing.assert_allclose(ex.mel_db(x), ref_db, atol=1e-3)
    # the picture: viridis over min..max, highest band at the top, time left to right
    img = ex.image(x).transpose(1, 2, 0) * np.array([0.229, 0.224, 0.225]) + np.array([0.485, 0.456, 0.406])
    norm = (ref_db - ref_db.min()) / (ref_db.max() - ref_db.min())
    cmap = matplotlib.colormaps["viridis"]
    t = ref_db.shape[1]
    np.testing.assert_allclose(img[0, 0], cmap(norm[-1, 0])[:3], atol=1e-5)  # top-left: top band, first frame
    np.testing.assert_allclose(img[-1, -1], cmap(norm[0, t - 1])[:3], atol=1e-5)  # bottom-right
    assert ex.mel_db(rows[2]).shape == (32, 1)

    out = ex(padded(rows)).values
    assert out.shape == (3, 1024) and np.isfinite(out).all() and (out >= 0).all()  # ReLU + average pool
    np.testing.assert_allclose(ex(padded(rows[1:2])).values[0], out[1], atol=1e-5)
    # direct torchvision computation with the same weights
    with torch.no_grad():
        feats = ex.net.features(torch.from_numpy(np.stack([ex.image(r) for r in rows])))
        direct = torch.nn.functional.adaptive_avg_pool2d(torch.relu(feats), 1).flatten(1).numpy()
    np.testing.assert_allclose(out, direct, rtol=1e-4, atol=1e-5)
    # round trip through an old-style torchvision checkpoint ("norm.1" keys) with a classifier
    sd = {k.replace("norm1", "norm.1").replace("conv2", "conv.2"): v for k, v in ex.net.state_dict().items()}
    sd["classifier.weight"], sd["classifier.bias"] = torch.zeros(1000, 1024), torch.zeros(1000)
    torch.save(sd, tmp_path / "densenet121_old.pth")
    again = create_extractor("deepspectrum", n_mels=32, weights=str(tmp_path / "densenet121_old.pth"))
    np.testing.assert_allclose(again(padded(rows[:2])).values, out[:2], atol=1e-5)


# -- the offline default: Resemblyzer GE2E -------------------------------------------------------------
def synthetic_voice(rng, f0: float, formant_scale: float, breath: float, seconds: float = 1.0) -> np.ndarray:
    """Source-filter vowels: glottal impulse train at ``f0`` through three formant resonators."""
    from scipy.signal import lfilter

    vowels = [(730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410)]
    seg = int(seconds * SR) // 4
    out = []
    for _ in range(4):
        v = vowels[rng.integers(len(vowels))]
        f = f0 * (1 + 0.05 * rng.standard_normal()) * (1 + 0.1 * np.sin(np.linspace(0, np.pi, seg)))
        src = (np.diff(np.floor(np.cumsum(f / SR)), prepend=0) > 0).astype(float)
        y = lfilter([1], [1, -0.95], src) + breath * rng.standard_normal(seg)
        for fr, bw in zip(np.array(v) * formant_scale, (80, 100, 120)):
            r, th = np.exp(-np.pi * bw / SR), 2 * np.pi * fr / SR
            y = lfilter([1 - r], [1, -2 * r * np.cos(th), r * r], y)
        out.append(y * np.hanning(seg))
    x = np.concatenate(out)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def test_resemblyzer_partial_slices_rule():
    from affectfuse.extractors.audio.offline import partial_slices

    assert partial_slices(12000) == [(0, 160)]  # short: one partial, zero-padded to 1.6 s
    # 5 s: 501 frames, step round(16000 / 1.3 / 160) = 77 -> starts 0, 77, ..., 385; the last covers
    # (80000 - 61600) / 25600 = 0.72 < 0.75 of its window and is dropped
    assert partial_slices(80000) == [(s, s + 160) for s in (0, 77, 154, 231, 308)]
    assert len(partial_slices(80000, min_coverage=0.7)) == 6


def test_resemblyzer_weights_load_and_embeddings_are_speaker_sensitive():
    from affectfuse.extractors.audio.offline import resemblyzer_weights_path

    assert resemblyzer_weights_path().stat().st_size > 15_000_000  # the real 17 MB GE2E checkpoint
    rng = np.random.default_rng(0)
    low = [synthetic_voice(rng, 110, 1.0, 0.0) for _ in range(4)]  # "voice A": low pitch, long tract
    high = [synthetic_voice(rng, 220, 1.2, 0.3) for _ in range(4)]  # "voice B": high pitch, short tract, breathy
    ex = create_extractor("resemblyzer_ge2e")
    e = ex(padded(low + high)).values
    assert e.shape == (8, 256) and np.isfinite(e).all() and (e >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    s = e @ e.T
    lab = np.array([0] * 4 + [1] * 4)
    iu = np.triu_indices(8, 1)
    same = (lab[:, None] == lab[None, :])[iu]
    assert s[iu][same].min() > s[iu][~same].max()  # every same-voice pair beats every cross-voice pair
    assert s[iu][same].mean() - s[iu][~same].mean() > 0.1


def test_resemblyzer_padding_volume_and_dtype():
    rows = [speechlike(24000, 1) * 0.05, speechlike(8000, 2) * 0.05, speechlike(40000, 3)]  # quiet, quiet, loud
    ex = create_extractor("resemblyzer_ge2e", batch_size=2)
    out = ex(padded(rows, total=48000)).values
    np.testing.assert_allclose(ex(padded(rows[1:2])).values[0], out[1], atol=1e-5)  # padding never enters
    # quiet input is raised to -30 dBFS (increase only), so halving it changes nothing ...
    np.testing.assert_allclose(ex(padded([rows[0] * 0.5])).values[0], out[0], atol=1e-4)
    # ... unless volume normalisation is off (the encoder sees mel power, so level matters)
    raw = create_extractor("resemblyzer_ge2e", normalize_volume=False)
    assert np.abs(raw(padded([rows[0] * 0.5])).values[0] - raw(padded([rows[0]])).values[0]).max() > 1e-3
    bf = create_extractor("resemblyzer_ge2e", dtype="bfloat16")(padded(rows)).values
    assert ((bf * out).sum(1)).min() > 0.98
    silent = ex(ExtractorInput(audio=np.zeros((2, 800), np.float32), audio_lengths=np.array([800, 0]))).values
    assert np.isfinite(silent).all() and np.all(silent[1] == 0)


@pytest.mark.parametrize("sr, n_fft, n_mels, fmin, fmax, scale", [
    (16000, 400, 40, 0.0, None, "slaney"), (16000, 512, 128, 0.0, None, "slaney"), (44100, 1024, 64, 0.0, None, "htk"),
    (16000, 400, 80, 20.0, 7600.0, "slaney")])
def test_mel_filters_match_transformers(sr, n_fft, n_mels, fmin, fmax, scale):
    from transformers.audio_utils import mel_filter_bank

    from affectfuse.extractors.audio.logmel import mel_filters

    ref = mel_filter_bank(num_frequency_bins=n_fft // 2 + 1, num_mel_filters=n_mels, min_frequency=fmin,
                          max_frequency=fmax or sr / 2, sampling_rate=sr, norm="slaney" if scale == "slaney" else None,
                          mel_scale=scale)
    np.testing.assert_allclose(mel_filters(sr, n_fft, n_mels, fmin, fmax, scale), ref, rtol=1e-5, atol=1e-7)
