"""The offline audio default: Resemblyzer's GE2E speaker encoder (256-d), re-implemented in torch.

Why this one (see ``design/offline-models.md`` §4): no wav2vec2 / HuBERT / WavLM checkpoint ships in
any package registry, so ViPER's WavLM x-vector cannot run offline. The closest learned analogue that
does ship is Resemblyzer 0.1.4 (PyPI, Apache-2.0): ``resemblyzer/pretrained.pt`` (17 MB) holds a GE2E
speaker-verification encoder (Wan et al. 2018; the Real-Time-Voice-Cloning encoder) — like the
x-vector, an utterance-level voice embedding. openSMILE's eGeMAPS ships too but its licence is
non-commercial, so it is not the default.

The package itself is never imported (it imports librosa and webrtcvad); only its weight file is read,
by path, with ``torch.load(weights_only=True)``. Install it with
``pip install --no-deps resemblyzer==0.1.4``, or pass ``weights=`` a copy of ``pretrained.pt``.

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
from pathlib import Path
from typing import Any

import numpy as np

from affectfuse.extractors.audio.logmel import (
    audio_rows,
    check_dtype,
    check_positive,
    mel_filters,
    power_spectrogram,
    reject_unknown,
)
from affectfuse.extractors.base import Extractor, ExtractorInput, InputContract, register_extractor

__all__ = ["ResemblyzerGE2E", "resemblyzer_weights_path", "partial_slices"]

SAMPLE_RATE = 16000
N_MELS = 40
WIN = 400  # 25 ms
HOP = 160  # 10 ms
PARTIAL_FRAMES = 160  # 1.6 s
HIDDEN = 256
TARGET_DBFS = -30.0


def resemblyzer_weights_path() -> Path:
    """``pretrained.pt`` of the installed ``resemblyzer`` package, found without importing it.

    Raises:
        FileNotFoundError: the package (or its weight file) is not installed; says how to install it.
    """
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "resemblyzer/pretrained.pt not found: the 'resemblyzer' package is not installed. Install its weights "
            "with `pip install --no-deps resemblyzer==0.1.4` (never imported) or pass weights=<path to pretrained.pt>"
        )
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


@register_extractor
class ResemblyzerGE2E(Extractor):
    """256-d GE2E speaker embedding of every fragment (Resemblyzer 0.1.4 weights, own torch code).

    See the module docstring for the exact front end. Fragments shorter than 1.6 s are zero-padded to
    1.6 s, as Resemblyzer does; longer ones are covered by overlapping 1.6 s partials whose
    embeddings are averaged. Each fragment is processed from its own real samples only.

    Args:
        weights: path to Resemblyzer's ``pretrained.pt`` (a dict with ``model_state``) or None for
            the installed package's file.
        normalize_volume: raise quiet fragments to -30 dBFS first (Resemblyzer's ``preprocess_wav``).
        rate: partial utterances per second (Resemblyzer's ``embed_utterance`` default 1.3).
        min_coverage: keep the last partial if it is at least this full (default 0.75).
        dtype: ``"float32"`` or ``"bfloat16"`` / ``"float16"`` weights.
        batch_size: partial utterances per LSTM pass.
        device: torch device (not part of the key).

    Shape:
        output ``(N, 256)`` float32, unit L2 norm, non-negative (zeros for empty / invalid rows).
    """

    name = "resemblyzer_ge2e"
    modality = "audio"

    def __init__(
        self,
        *,
        weights: str | None = None,
        normalize_volume: bool = True,
        rate: float = 1.3,
        min_coverage: float = 0.75,
        dtype: str = "float32",
        batch_size: int = 64,
        device: str = "cpu",
        **unknown: Any,
    ) -> None:
        reject_unknown(
            self.name,
            unknown,
            ("weights", "normalize_volume", "rate", "min_coverage", "dtype", "batch_size", "device"),
        )
        check_dtype(self.name, dtype)
        check_positive(self.name, rate=rate, batch_size=batch_size)
        if not 0 < min_coverage <= 1:
            raise ValueError(f"extractor {self.name!r}: min_coverage must be in (0, 1], got {min_coverage}")
        partial_slices(1, rate, min_coverage)  # validates rate
        super().__init__(
            dict(
                weights=None if weights is None else str(weights),
                normalize_volume=bool(normalize_volume),
                rate=float(rate),
                min_coverage=float(min_coverage),
                dtype=dtype,
            )
        )
        self.batch_size = int(batch_size)
        self.device = device
        self.dim = HIDDEN
        self.contract = InputContract(kind="audio_fragment", sample_rate=SAMPLE_RATE)
        self._lstm = None
        self._linear = None

    def load(self) -> None:
        import torch
        from torch import nn

        path = Path(self.params["weights"]) if self.params["weights"] else resemblyzer_weights_path()
        if not path.exists():
            raise FileNotFoundError(f"{path}: Resemblyzer weights not found (expected its pretrained.pt)")
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        state = ckpt.get("model_state", ckpt) if isinstance(ckpt, dict) else None
        if not isinstance(state, dict) or "linear.weight" not in state:
            raise ValueError(f"{path}: expected a Resemblyzer checkpoint (dict with 'model_state' holding lstm.* and linear.*)")
        lstm = nn.LSTM(N_MELS, HIDDEN, num_layers=3, batch_first=True)
        linear = nn.Linear(HIDDEN, HIDDEN)
        lstm.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("lstm.")})
        linear.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("linear.")})
        tdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.params["dtype"]]
        self._lstm = lstm.eval().to(self.device, tdtype)
        self._linear = linear.eval().to(self.device, tdtype)
        self._tdtype = tdtype

    def partials(self, wav: np.ndarray) -> np.ndarray:
        """Mel power spectrograms of a fragment's partial utterances.

        Shape:
            ``(L,)`` -> ``(P, 160, 40)`` float32.
        """
        if self.params["normalize_volume"]:
            wav = normalize_volume(wav)
        slices = partial_slices(len(wav), self.params["rate"], self.params["min_coverage"])
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
        import torch

        _, (hidden, _) = self._lstm(mels.to(self.device, self._tdtype))  # hidden (3, P, 256)
        e = torch.relu(self._linear(hidden[-1])).float()  # (P, 256)
        return e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def forward(self, batch: ExtractorInput) -> np.ndarray:
        """Fragment embeddings.

        Shape:
            ``batch.audio (N, L)`` -> ``(N, 256)`` float32.
        """
        import torch

        rows, active = audio_rows(self.name, batch)
        out = np.zeros((len(rows), self.dim), np.float32)
        idx = np.flatnonzero(active)
        if len(idx) == 0:
            return out
        parts = [self.partials(rows[i]) for i in idx]
        owner = np.repeat(np.arange(len(idx)), [len(p) for p in parts])  # (P,)
        mels = torch.from_numpy(np.concatenate(parts))  # (P, 160, 40)
        with torch.inference_mode():
            emb = torch.cat([self.embed_partials(mels[s : s + self.batch_size]) for s in range(0, len(mels), self.batch_size)])
        emb = emb.cpu().numpy().astype(np.float64)  # (P, 256)
        sums = np.zeros((len(idx), self.dim))
        np.add.at(sums, owner, emb)
        means = sums / np.bincount(owner, minlength=len(idx))[:, None]  # (n, 256)
        out[idx] = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        return out
