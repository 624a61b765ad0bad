"""Log-mel statistics per audio fragment, and the signal processing the audio extractors share.

``logmel_stats`` is the dependency-free audio baseline: a log-mel spectrogram (25 ms Hann windows every
10 ms, 64 mel bands, power in dB) of each fragment, summarised by the mean and the standard deviation
of every band over time (optionally also of the bands' first-order deltas).

The signal-processing functions below (a vectorised numpy STFT, mel filter banks from
``transformers.audio_utils``, dB conversion, deltas) are used by the other audio extractors of this
package too. None of them imports more than numpy at module import time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from affectfuse.extractors._torch_utils import AudioExtractor, CheckedConfig, check_positive, config_error
from affectfuse.extractors.base import InputContract, register_extractor

__all__ = ["LogMelStats", "LogMelStatsConfig", "power_spectrogram", "mel_filters", "power_to_db", "deltas"]


# -- signal processing ---------------------------------------------------------------------------
def power_spectrogram(
    x: np.ndarray,
    *,
    n_fft: int,
    win_length: int,
    hop_length: int,
    center: bool = True,
    pad_mode: str = "constant",
) -> np.ndarray:
    """Power spectrogram ``|STFT|^2`` of one signal with a periodic Hann window (numpy, vectorised).

    The window of ``win_length`` samples is zero-padded to ``n_fft`` symmetrically (as torch.stft and
    librosa do). With ``center`` the signal is padded by ``n_fft // 2`` on both sides (``pad_mode``
    ``"constant"`` = zeros, or ``"reflect"``) and frame ``t`` is centred on sample ``t * hop_length``.
    Without ``center`` a signal shorter than ``n_fft`` is zero-padded on the right to one frame.

    Args:
        x: ``(L,)`` float signal.
        n_fft: FFT size.
        win_length: window length in samples (<= n_fft).
        hop_length: hop in samples.
        center: pad so that frames are centred on ``t * hop_length``.
        pad_mode: ``"constant"`` or ``"reflect"`` (reflect falls back to zeros when L <= n_fft // 2).

    Shape:
        returns ``(n_fft // 2 + 1, T)`` float32; ``T = 1 + L // hop_length`` with ``center``, else
        ``1 + (max(L, n_fft) - n_fft) // hop_length``.
    """
    if win_length > n_fft:
        raise ValueError(f"win_length {win_length} > n_fft {n_fft}")
    x = np.asarray(x, dtype=np.float64)
    if center:
        pad = n_fft // 2
        mode = "constant" if (pad_mode == "reflect" and len(x) <= pad) else pad_mode  # torch cannot reflect these
        x = np.pad(x, (pad, pad), mode=mode)
    elif len(x) < n_fft:
        x = np.pad(x, (0, n_fft - len(x)))
    n = np.arange(win_length)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / win_length)  # periodic Hann
    left = (n_fft - win_length) // 2
    window = np.pad(window, (left, n_fft - win_length - left))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop_length]  # (T, n_fft)
    spec = np.fft.rfft(frames * window, axis=-1)  # (T, F)
    return (spec.real**2 + spec.imag**2).T.astype(np.float32)  # (F, T)


@functools.lru_cache(maxsize=16)
def _hz_to_mel(f: np.ndarray, scale: str) -> np.ndarray:
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f = np.asarray(f, np.float64)  # Slaney: linear below 1 kHz, logarithmic above
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) * (27.0 / np.log(6.4)), 3.0 * f / 200.0)


def _mel_to_hz(m: np.ndarray, scale: str) -> np.ndarray:
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    m = np.asarray(m, np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (m - 15.0)), 200.0 * m / 3.0)


@functools.lru_cache(maxsize=32)
def mel_filters(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
    scale: str = "slaney",
) -> np.ndarray:
    """Triangular mel filter bank, as ``transformers.audio_utils.mel_filter_bank`` computes it (tested equal).

    Written here in numpy: importing transformers for it cost 0.7 s of every extraction's start-up.

    Args:
        scale: ``"slaney"`` (Slaney mel scale with Slaney area normalisation — librosa's default) or
            ``"htk"`` (HTK mel scale, no normalisation — torchaudio's default).

    Shape:
        returns ``(n_fft // 2 + 1, n_mels)`` float32 (read-only, cached).
    """
    fmax = float(fmax if fmax is not None else sample_rate / 2)
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)  # (F,)
    mels = np.linspace(_hz_to_mel(np.float64(fmin), scale), _hz_to_mel(np.float64(fmax), scale), n_mels + 2)
    edges = _mel_to_hz(mels, scale)  # (M + 2,)
    diff = np.diff(edges)  # (M + 1,)
    slopes = edges[None, :] - freqs[:, None]  # (F, M + 2)
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))  # (F, M)
    if scale == "slaney":
        fb *= (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[None, :]
    fb = fb.astype(np.float32)
    fb.setflags(write=False)
    return fb


def power_to_db(s: np.ndarray, amin: float = 1e-10, top_db: float | None = None) -> np.ndarray:
    """``10 * log10(max(s, amin))``, optionally floored at ``max - top_db`` (torchaudio / librosa style)."""
    db = 10.0 * np.log10(np.maximum(s, amin))
    if top_db is not None:
        db = np.maximum(db, db.max() - top_db)
    return db


def deltas(x: np.ndarray, width: int = 2) -> np.ndarray:
    """First-order regression deltas along the last axis (HTK formula, edges repeated).

    ``d_t = sum_{n=1..width} n (x_{t+n} - x_{t-n}) / (2 sum_{n} n^2)``.

    Shape:
        ``(..., T)`` -> ``(..., T)``.
    """
    t = x.shape[-1]
    xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(width, width)], mode="edge")
    num = sum(n * (xp[..., width + n : width + n + t] - xp[..., width - n : width - n + t]) for n in range(1, width + 1))
    return num / (2 * sum(n * n for n in range(1, width + 1)))


# -- the extractor --------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class LogMelStatsConfig(CheckedConfig):
    """Parameters of :class:`LogMelStats` (all of them change the output).

    Attributes:
        sample_rate: Hz the fragments arrive at (the pipeline resamples to it).
        n_mels: mel bands.
        win_ms: window length in milliseconds.
        hop_ms: hop in milliseconds.
        n_fft: FFT size (>= the window in samples).
        fmin: lowest mel edge, Hz.
        fmax: highest mel edge, Hz (None: ``sample_rate / 2``).
        deltas: also summarise the bands' first-order deltas.
    """

    sample_rate: int = 16000
    n_mels: int = 64
    win_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    fmin: float = 0.0
    fmax: float | None = None
    deltas: bool = False

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    def validate(self) -> "LogMelStatsConfig":
        check_positive(self, "sample_rate", "n_mels", "win_ms", "hop_ms", "n_fft")
        if self.win_length > self.n_fft:
            expected = f"at most n_fft={self.n_fft} samples (it is {self.win_length} samples)"
            raise config_error(self, "win_ms", expected, self.win_ms)
        if self.hop_length < 1:
            raise config_error(self, "hop_ms", f"at least one sample at {self.sample_rate} Hz", self.hop_ms)
        nyquist = self.sample_rate / 2
        if self.fmax is not None and not 0 < self.fmax <= nyquist:
            raise config_error(self, "fmax", f"None or in (0, sample_rate/2 = {nyquist:g}]", self.fmax)
        if not 0 <= self.fmin < (nyquist if self.fmax is None else self.fmax):
            raise config_error(self, "fmin", "in [0, fmax)", self.fmin)
        return self


@register_extractor
class LogMelStats(AudioExtractor):
    """Mean and standard deviation over time of each log-mel band of a fragment.

    Per fragment (its real samples only; padding never enters): power spectrogram with a periodic
    Hann window of ``win_ms`` every ``hop_ms`` (FFT size ``n_fft``, frames centred, zero padding at the
    edges), ``n_mels`` Slaney-normalised mel bands (librosa's default filter bank, built by
    ``transformers.audio_utils.mel_filter_bank``) between ``fmin`` and ``fmax``, power in dB
    (``10 log10(max(p, 1e-10))``). The output row is ``[mean(n_mels), std(n_mels)]`` and, with
    ``deltas=True``, ``[..., mean(delta), std(delta)]`` of the HTK regression deltas (width 2).
    Any fragment of at least one sample works (it gives at least one frame).

    Parameters: :class:`LogMelStatsConfig`.

    Shape:
        output ``(N, 2 * n_mels)`` or ``(N, 4 * n_mels)`` with deltas, float32.
    """

    name = "logmel_stats"
    weights_from = "none"
    Config = LogMelStatsConfig

    def __init__(self, config: LogMelStatsConfig | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.dim = 2 * c.n_mels * (2 if c.deltas else 1)
        self.contract = InputContract(kind="audio_fragment", sample_rate=c.sample_rate)

    @property
    def columns(self) -> list[str]:
        """``mel<i>_mean``, ``mel<i>_std`` (then ``mel<i>_delta_mean``, ``mel<i>_delta_std``)."""
        stats = ("mean", "std", "delta_mean", "delta_std")[: 4 if self.config.deltas else 2]
        return [f"mel{i}_{s}" for s in stats for i in range(self.config.n_mels)]

    def logmel(self, x: np.ndarray) -> np.ndarray:
        """Log-mel spectrogram (dB) of one signal.

        Shape:
            ``(L,)`` -> ``(n_mels, T)`` float32.
        """
        c = self.config
        spec = power_spectrogram(x, n_fft=c.n_fft, win_length=c.win_length, hop_length=c.hop_length)  # (F, T)
        fb = mel_filters(c.sample_rate, c.n_fft, c.n_mels, c.fmin, c.fmax, "slaney")  # (F, M)
        return power_to_db(fb.T @ spec).astype(np.float32)  # (M, T)

    def embed(self, rows: list[np.ndarray]) -> np.ndarray:
        """Shape: ``rows[i] (L_i,)`` -> ``(len(rows), dim)``."""
        out = np.zeros((len(rows), self.dim), np.float32)
        for i, r in enumerate(rows):
            lm = self.logmel(r).astype(np.float64)  # (M, T)
            feats = [lm.mean(1), lm.std(1)]
            if self.config.deltas:
                d = deltas(lm)  # (M, T)
                feats += [d.mean(1), d.std(1)]
            out[i] = np.concatenate(feats)  # (dim,)
        return out
