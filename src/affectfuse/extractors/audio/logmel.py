"""Log-mel statistics per audio fragment, and the audio helpers every audio extractor shares.

``logmel_stats`` is the dependency-free audio baseline: a log-mel spectrogram (25 ms Hann windows every
10 ms, 64 mel bands, power in dB) of each fragment, summarised by the mean and the standard deviation
of every band over time (optionally also of the bands' first-order deltas).

The helpers below (input checks, parameter checks, a vectorised numpy STFT, mel filter banks from
``transformers.audio_utils``) are used by the other audio extractors of this package too. None of them
imports more than numpy at module import time.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import numpy as np

from affectfuse.extractors.base import Extractor, ExtractorInput, InputContract, register_extractor

__all__ = [
    "LogMelStats",
    "reject_unknown",
    "check_dtype",
    "audio_rows",
    "power_spectrogram",
    "mel_filters",
    "power_to_db",
    "deltas",
]

DTYPES = ("float32", "bfloat16", "float16")


# -- shared helpers ------------------------------------------------------------------------------
def reject_unknown(name: str, unknown: dict[str, Any], accepted: Iterable[str]) -> None:
    """Raise ``TypeError`` for keyword arguments an extractor does not take.

    Args:
        name: the extractor's registered name (for the message).
        unknown: the unexpected keyword arguments.
        accepted: the parameter names the extractor does take.

    Raises:
        TypeError: ``unknown`` is not empty; the message lists the accepted names.
    """
    if unknown:
        raise TypeError(
            f"extractor {name!r} got unknown parameter(s) {', '.join(sorted(unknown))}; "
            f"accepted: {', '.join(accepted)}"
        )


def check_dtype(name: str, dtype: str) -> str:
    """Validate a weight dtype name (``"float32"``, ``"bfloat16"`` or ``"float16"``)."""
    if dtype not in DTYPES:
        raise ValueError(f"extractor {name!r}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return dtype


def check_positive(name: str, **values: float) -> None:
    """Raise ``ValueError`` naming the first parameter that is not > 0."""
    for k, v in values.items():
        if not v > 0:
            raise ValueError(f"extractor {name!r}: {k} must be > 0, got {v!r}")


def audio_rows(name: str, batch: ExtractorInput) -> tuple[list[np.ndarray], np.ndarray]:
    """Check an ``audio_fragment`` batch and cut every row to its real samples.

    Args:
        name: the extractor's name (for error messages).
        batch: must carry ``audio (N, L)`` and (optionally) ``audio_lengths (N,)``; without lengths
            every row is taken as L real samples.

    Returns:
        ``(rows, active)``: ``rows[i]`` is ``audio[i, :lengths[i]]`` as float32 (a view, no copy), and
        ``active (N,)`` bool marks the rows worth computing (length > 0 and not ``valid == False``).
        Inactive rows may be given any finite output.

    Raises:
        ValueError: the batch holds another input kind, or the arrays have wrong shapes / lengths.
    """
    if batch.audio is None:
        got = [f"{f} {tuple(getattr(batch, f).shape)}" for f in ("images", "clips") if getattr(batch, f) is not None]
        raise ValueError(
            f"extractor {name!r} needs 'audio_fragment' inputs (ExtractorInput.audio (N, L) float32 mono "
            f"with audio_lengths (N,)); got a batch with {', '.join(got) or 'no data'}"
        )
    audio = np.asarray(batch.audio)
    if audio.ndim != 2:
        raise ValueError(f"extractor {name!r}: ExtractorInput.audio must be (N, L) mono, got shape {audio.shape}")
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"extractor {name!r}: ExtractorInput.audio must be float in [-1, 1], got {audio.dtype}")
    n, length = audio.shape
    if batch.audio_lengths is None:
        lengths = np.full(n, length, np.int64)
    else:
        lengths = np.asarray(batch.audio_lengths).astype(np.int64, copy=False)
        if lengths.shape != (n,):
            raise ValueError(
                f"extractor {name!r}: audio_lengths must be ({n},) for audio {audio.shape}, got {lengths.shape}"
            )
        if n and (lengths.min() < 0 or lengths.max() > length):
            raise ValueError(
                f"extractor {name!r}: audio_lengths must lie in [0, {length}], got min {lengths.min()} max {lengths.max()}"
            )
    audio = audio.astype(np.float32, copy=False)
    rows = [audio[i, : lengths[i]] for i in range(n)]
    active = lengths > 0
    if batch.valid is not None:
        active &= np.asarray(batch.valid, dtype=bool)
    return rows, active


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
def mel_filters(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
    scale: str = "slaney",
) -> np.ndarray:
    """Triangular mel filter bank from ``transformers.audio_utils.mel_filter_bank``.

    Args:
        scale: ``"slaney"`` (Slaney mel scale with Slaney area normalisation — librosa's default) or
            ``"htk"`` (HTK mel scale, no normalisation — torchaudio's default).

    Shape:
        returns ``(n_fft // 2 + 1, n_mels)`` float32 (read-only, cached).
    """
    from transformers.audio_utils import mel_filter_bank

    fb = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=n_mels,
        min_frequency=float(fmin),
        max_frequency=float(fmax if fmax is not None else sample_rate / 2),
        sampling_rate=sample_rate,
        norm="slaney" if scale == "slaney" else None,
        mel_scale=scale,
    ).astype(np.float32)
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
@register_extractor
class LogMelStats(Extractor):
    """Mean and standard deviation over time of each log-mel band of a fragment.

    Per fragment (its real samples only; padding never enters): power spectrogram with a periodic
    Hann window of ``win_ms`` every ``hop_ms`` (FFT size ``n_fft``, frames centred, zero padding at the
    edges), ``n_mels`` Slaney-normalised mel bands (librosa's default filter bank, built by
    ``transformers.audio_utils.mel_filter_bank``) between ``fmin`` and ``fmax``, power in dB
    (``10 log10(max(p, 1e-10))``). The output row is ``[mean(n_mels), std(n_mels)]`` and, with
    ``deltas=True``, ``[..., mean(delta), std(delta)]`` of the HTK regression deltas (width 2).
    Any fragment of at least one sample works (it gives at least one frame).

    Args:
        sample_rate: Hz the fragments arrive at (the pipeline resamples to it).
        n_mels: mel bands.
        win_ms: window length in milliseconds.
        hop_ms: hop in milliseconds.
        n_fft: FFT size (>= the window in samples).
        fmin: lowest mel edge, Hz.
        fmax: highest mel edge, Hz (None: ``sample_rate / 2``).
        deltas: also summarise the bands' first-order deltas.

    Shape:
        output ``(N, 2 * n_mels)`` or ``(N, 4 * n_mels)`` with deltas, float32.
    """

    name = "logmel_stats"
    modality = "audio"

    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        n_mels: int = 64,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        n_fft: int = 512,
        fmin: float = 0.0,
        fmax: float | None = None,
        deltas: bool = False,
        **unknown: Any,
    ) -> None:
        reject_unknown(
            self.name, unknown, ("sample_rate", "n_mels", "win_ms", "hop_ms", "n_fft", "fmin", "fmax", "deltas")
        )
        check_positive(self.name, sample_rate=sample_rate, n_mels=n_mels, win_ms=win_ms, hop_ms=hop_ms, n_fft=n_fft)
        self.win_length = int(round(sample_rate * win_ms / 1000))
        self.hop_length = int(round(sample_rate * hop_ms / 1000))
        if self.win_length > n_fft:
            raise ValueError(
                f"extractor {self.name!r}: the window ({win_ms} ms = {self.win_length} samples) is longer than n_fft={n_fft}"
            )
        if self.hop_length < 1:
            raise ValueError(f"extractor {self.name!r}: hop_ms={hop_ms} is below one sample at {sample_rate} Hz")
        top = fmax if fmax is not None else sample_rate / 2
        if not 0 <= fmin < top <= sample_rate / 2:
            raise ValueError(f"extractor {self.name!r}: need 0 <= fmin < fmax <= sample_rate/2, got {fmin}, {fmax}")
        super().__init__(
            dict(
                sample_rate=int(sample_rate),
                n_mels=int(n_mels),
                win_ms=float(win_ms),
                hop_ms=float(hop_ms),
                n_fft=int(n_fft),
                fmin=float(fmin),
                fmax=None if fmax is None else float(fmax),
                deltas=bool(deltas),
            )
        )
        self.dim = 2 * n_mels * (2 if deltas else 1)
        self.contract = InputContract(kind="audio_fragment", sample_rate=int(sample_rate))

    def logmel(self, x: np.ndarray) -> np.ndarray:
        """Log-mel spectrogram (dB) of one signal.

        Shape:
            ``(L,)`` -> ``(n_mels, T)`` float32.
        """
        p = self.params
        spec = power_spectrogram(x, n_fft=p["n_fft"], win_length=self.win_length, hop_length=self.hop_length)  # (F, T)
        fb = mel_filters(p["sample_rate"], p["n_fft"], p["n_mels"], p["fmin"], p["fmax"], "slaney")  # (F, M)
        return power_to_db(fb.T @ spec).astype(np.float32)  # (M, T)

    def forward(self, batch: ExtractorInput) -> np.ndarray:
        rows, active = audio_rows(self.name, batch)
        out = np.zeros((len(rows), self.dim), np.float32)
        for i in np.flatnonzero(active):
            lm = self.logmel(rows[i]).astype(np.float64)  # (M, T)
            feats = [lm.mean(1), lm.std(1)]
            if self.params["deltas"]:
                d = deltas(lm)  # (M, T)
                feats += [d.mean(1), d.std(1)]
            out[i] = np.concatenate(feats)  # (dim,)
        return out
