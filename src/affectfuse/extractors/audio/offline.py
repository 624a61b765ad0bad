"""The offline audio default: Resemblyzer's GE2E speaker encoder (256-d), re-implemented in torch.

Why this one (see ``design/offline-models.md`` §4): no wav2vec2 / HuBERT / WavLM checkpoint ships in
any package registry, so ViPER's WavLM x-vector cannot run offline. The closest learned analogue that
does ship is Resemblyzer 0.1.4 (PyPI, Apache-2.0): ``resemblyzer/pretrained.pt`` (17 MB) holds a GE2E
speaker-verification encoder (Wan et al. 2018; the Real-Time-Voice-Cloning encoder) — like the
x-vector, an utterance-level voice embedding. openSMILE's eGeMAPS ships too but its licence is
non-commercial, so it is not the default.

The package itself is never imported (it imports librosa and webrtcvad); only its weight file is read,
by path, with :func:`~affectfuse.extractors._torch_utils.load_state_dict` (``weights_only=True``): the asset
``resemblyzer-ge2e`` (that file out of the PyPI wheel, SHA-256 checked), an installed package's copy, or
``weights=`` a copy of ``pretrained.pt``.

What is re-implemented (``resemblyzer/audio.py`` + ``voice_encoder.py`` of 0.1.4):

* volume normalisation to -30 dBFS, increase only (``preprocess_wav``), per fragment;
* 40-band mel *power* spectrogram (not log): 25 ms periodic-Hann windows (n_fft 400) every 10 ms,
  centred frames with zero padding (librosa >= 0.10 ``melspectrogram`` defaults), Slaney mel filters;
* partial utterances of 160 frames (1.6 s) every ``16000 / rate / 160`` frames (``rate`` 1.3), the last
  kept when it covers >= ``min_coverage`` (0.75) of a window; the waveform is zero-padded to the end
  of the last window — so a fragment shorter than 1.6 s is zero-padded to 1.6 s (Resemblyzer's
  behaviour; this is also the minimum length);
* a 3-layer LSTM (40 -> 256) whose last hidden state goes through Linear(256, 256) + ReLU and is L2
  normalised; the fragment's embedding is the L2-normalised mean of its partial embeddings.

Not re-implemented: the webrtcvad silence trimming of ``preprocess_wav`` (it would make the fragment's
content depend on a VAD and break the alignment of fragments with frames).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from affectfuse.extractors._runtime import OnnxNet, load_network
from affectfuse.extractors._torch_utils import (
    AudioExtractor,
    CheckedConfig,
    batch_slices,
    check_positive,
    check_range,
    check_torch_runtime,
    load_state_dict,
    load_weights_into,
    prepare_module,
    torch_dtype,
)
from affectfuse.extractors.audio.logmel import mel_filters, power_spectrogram
from affectfuse.extractors.base import InputContract, register_extractor, runtime

__all__ = ["ResemblyzerGE2E", "ResemblyzerConfig", "resemblyzer_weights_path", "partial_slices"]

SAMPLE_RATE = 16000
N_MELS = 40
WIN = 400  # 25 ms
HOP = 160  # 10 ms
PARTIAL_FRAMES = 160  # 1.6 s
HIDDEN = 256
TARGET_DBFS = -30.0


def resemblyzer_weights_path() -> Path:
    """``pretrained.pt`` of the installed ``resemblyzer`` package (found without importing it), else the asset
    ``resemblyzer-ge2e`` (the same file from the package on PyPI, SHA-256 checked).

    Raises:
        FileNotFoundError: neither is there; says how to get them.
    """
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:  # a pip install: the same file, as a pinned asset
        from affectfuse.assets import asset_path

        return asset_path("resemblyzer-ge2e", "pretrained.pt")
    p = Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"
    if not p.exists():
        raise FileNotFoundError(f"{p}: missing; reinstall with `pip install --no-deps --force-reinstall resemblyzer==0.1.4`")
    return p


def partial_slices(n_samples: int, rate: float = 1.3, min_coverage: float = 0.75) -> list[tuple[int, int]]:
    """Mel-frame ranges ``[start, start + 160)`` of the partial utterances of a signal (Resemblyzer's rule).

    Args:
        n_samples: real samples of the fragment.
        rate: partial utterances per second.
        min_coverage: the last partial is kept if at least this fraction of it holds real audio
            (always kept when it is the only one).

    Returns:
        a non-empty list of ``(start_frame, stop_frame)``.
    """
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    frame_step = int(np.round((SAMPLE_RATE / rate) / HOP))
    if not 0 < frame_step <= PARTIAL_FRAMES:
        raise ValueError(f"rate={rate} must give a partial step in (0, {PARTIAL_FRAMES}] frames, got {frame_step}")
    steps = max(1, n_frames - PARTIAL_FRAMES + frame_step + 1)
    slices = [(i, i + PARTIAL_FRAMES) for i in range(0, steps, frame_step)]
    start, stop = slices[-1][0] * HOP, slices[-1][1] * HOP
    if (n_samples - start) / (stop - start) < min_coverage and len(slices) > 1:
        slices = slices[:-1]
    return slices


def normalize_volume(wav: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """Scale up (never down) to an RMS of ``target_dbfs`` dB full scale; silence stays silence."""
    rms = float(np.sqrt(np.mean(wav.astype(np.float64) ** 2))) if len(wav) else 0.0
    if rms <= 1e-12:
        return wav
    gain = 10 ** (target_dbfs / 20) / rms
    return wav * np.float32(gain) if gain > 1 else wav


@dataclass(frozen=True, kw_only=True)
class ResemblyzerConfig(CheckedConfig):
    """Parameters of :class:`ResemblyzerGE2E`.

    Attributes:
        weights: path to Resemblyzer's ``pretrained.pt`` (a dict with ``model_state``) or None for
            the installed package's file.
        normalize_volume: raise quiet fragments to -30 dBFS first (Resemblyzer's ``preprocess_wav``).
        rate: partial utterances per second (Resemblyzer's ``embed_utterance`` default 1.3).
        min_coverage: keep the last partial if it is at least this full (default 0.75).
        dtype: ``"float32"`` or ``"bfloat16"`` / ``"float16"`` weights.
        batch_size: partial utterances per LSTM pass (not in the identity).
        device: torch device (not in the identity).
        backend: ``"auto"`` (ONNX Runtime on the CPU when installed), ``"torch"`` or ``"onnx"`` (not in the identity).
    """

    weights: str | None = None
    normalize_volume: bool = True
    rate: float = 1.3
    min_coverage: float = 0.75
    dtype: str = "float32"
    batch_size: int = runtime(64)
    device: str = runtime("cpu")
    backend: str = runtime("auto")

    def validate(self) -> "ResemblyzerConfig":
        check_torch_runtime(self)
        check_positive(self, "rate")
        check_range(self, "min_coverage", 0, 1, "(]")
        partial_slices(1, self.rate, self.min_coverage)  # the rate must give a partial step of 1..160 frames
        return self


@register_extractor
class ResemblyzerGE2E(AudioExtractor):
    """256-d GE2E speaker embedding of every fragment (Resemblyzer 0.1.4 weights, own torch code).

    See the module docstring for the exact front end. Fragments shorter than 1.6 s are zero-padded to
    1.6 s, as Resemblyzer does; longer ones are covered by overlapping 1.6 s partials whose
    embeddings are averaged. Each fragment is processed from its own real samples only.

    Parameters: :class:`ResemblyzerConfig`.

    Shape:
        output ``(N, 256)`` float32, unit L2 norm, non-negative (zeros for empty / invalid rows).
    """

    name = "resemblyzer_ge2e"
    weights_from = "package"
    Config = ResemblyzerConfig

    def __init__(self, config: ResemblyzerConfig | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.dim = HIDDEN
        self.contract = InputContract(kind="audio_fragment", sample_rate=SAMPLE_RATE)
        self._net: Any = None  # ModuleDict(lstm=LSTM(40, 256, 3 layers), linear=Linear(256, 256))
        self._onnx: OnnxNet | None = None

    def load(self) -> "ResemblyzerGE2E":
        """Load the LSTM on the config's backend (ONNX Runtime or PyTorch); idempotent."""
        import torch  # heavy: only when the network is loaded

        if not self._loaded:
            self._onnx = load_network(self, lambda: torch.randn(2, 160, N_MELS), {0: "batch"},
                                      encode=lambda: self.embed_partials, module=lambda: self._net)
            self._loaded = True
        return self

    def _load(self) -> None:
        from torch import nn  # heavy: only when the network is built

        path = Path(self.config.weights) if self.config.weights else resemblyzer_weights_path()
        state = load_state_dict(path)  # unwraps {"model_state": ...}
        if "linear.weight" not in state:
            raise ValueError(f"{path}: expected a Resemblyzer checkpoint (dict with 'model_state' holding lstm.* and linear.*)")
        lstm = nn.LSTM(N_MELS, HIDDEN, num_layers=3, batch_first=True)
        net = nn.ModuleDict({"lstm": lstm, "linear": nn.Linear(HIDDEN, HIDDEN)})
        load_weights_into(net, state, path, ignore_prefixes=("similarity_",))  # GE2E training-only scale / bias
        self._net = prepare_module(net, torch_dtype(self.config.dtype), self.config.device)

    def partials(self, wav: np.ndarray) -> np.ndarray:
        """Mel power spectrograms of a fragment's partial utterances.

        Shape:
            ``(L,)`` -> ``(P, 160, 40)`` float32.
        """
        if self.config.normalize_volume:
            wav = normalize_volume(wav)
        slices = partial_slices(len(wav), self.config.rate, self.config.min_coverage)
        stop = slices[-1][1] * HOP
        if stop >= len(wav):
            wav = np.pad(wav, (0, stop - len(wav)))
        spec = power_spectrogram(wav, n_fft=WIN, win_length=WIN, hop_length=HOP)  # (201, T)
        mel = (mel_filters(SAMPLE_RATE, WIN, N_MELS, 0.0, None, "slaney").T @ spec).T  # (T, 40)
        return np.stack([mel[a:b] for a, b in slices]).astype(np.float32)  # (P, 160, 40)

    def embed_partials(self, mels):
        """GE2E embeddings of partial utterances.

        Shape:
            ``(P, 160, 40)`` tensor -> ``(P, 256)`` float32 tensor, unit norm.
        """
        import torch  # heavy: only when running

        dtype = torch_dtype(self.config.dtype)
        _, (hidden, _) = self._net["lstm"](mels.to(self.config.device, dtype))  # hidden (3, P, 256)
        e = torch.relu(self._net["linear"](hidden[-1])).float()  # (P, 256)
        return e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def embed(self, rows: list[np.ndarray]) -> np.ndarray:
        """Fragment embeddings: the L2-normalised mean of each fragment's partial embeddings.

        Shape:
            ``rows[i] (L_i,)`` -> ``(len(rows), 256)`` float32.
        """
        import torch  # heavy: only when running

        parts = [self.partials(r) for r in rows]
        owner = np.repeat(np.arange(len(rows)), [len(p) for p in parts])  # (P,)
        mels = np.concatenate(parts)  # (P, 160, 40)
        slices = list(batch_slices(len(mels), self.config.batch_size))
        if self._onnx is not None:
            emb = np.concatenate([self._onnx(mels[sl]) for sl in slices]).astype(np.float64)  # (P, 256)
        else:
            with torch.inference_mode():
                emb = torch.cat([self.embed_partials(torch.from_numpy(mels[sl])) for sl in slices])
            emb = emb.cpu().numpy().astype(np.float64)  # (P, 256)
        sums = np.zeros((len(rows), self.dim))
        np.add.at(sums, owner, emb)
        means = sums / np.bincount(owner, minlength=len(rows))[:, None]  # (n, 256)
        return (means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)).astype(np.float32)
