"""The Joint Multimodal Transformer's audio backbone: a 1-channel ResNet18 over a 64-band log-mel spectrogram.

Front end as in PoloWlg/Joint-Multimodal-Transformer-6th-ABAW ``datasets/dataset_new.py`` (code from
kuhnkeF/ABAW2020TNT), see ``seed-code-facts.md`` §3: 1-s clips at 44.1 kHz, left-zero-padded to 45599
samples, ``torchaudio.transforms.MelSpectrogram(n_fft=1024, win_length=882 (20 ms), hop_length=441
(10 ms), n_mels=64, power=2)`` (periodic Hann, centred frames with reflect padding, HTK mel scale
without filter normalisation), ``AmplitudeToDB('power', top_db=80)``, then ``(x - (-14.8)) / 19.895``.
Backbone as in ``models/tsav.py``: torchvision ResNet18 whose ``conv1`` takes one channel (ImageNet
init averaged over RGB), ``fc`` removed, so the 512-d global-average-pooled feature is the output.

The STFT / mel / dB steps are re-implemented in numpy (torchaudio does not load next to the CPU
torch build) and checked against ``torch.stft`` in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from affectfuse._compat import import_torchvision
from affectfuse.extractors._torch_utils import (
    SeededConfig,
    TorchAudioExtractor,
    check_positive,
    check_torch_runtime,
    config_error,
    load_state_dict,
    load_weights_into,
    prepare_module,
)
from affectfuse.extractors.audio.logmel import mel_filters, power_spectrogram, power_to_db
from affectfuse.extractors.base import InputContract, register_extractor, runtime

__all__ = ["JMTResNet18", "JMTResNet18Config", "build_audio_resnet18"]

JMT_PAD_SECONDS = 45599 / 44100  # JMT left-pads every clip of <= 45599 samples (at 44.1 kHz) to 45599
JMT_MEAN, JMT_STD = -14.8, 19.895
N_FFT = 1024
#: wrapper prefixes stripped from checkpoint keys (when every key has them).
_PREFIXES = ("module.", "audio_resnet18.", "resnet.", "model.", "backbone.")


def build_audio_resnet18():
    """torchvision ResNet18 with a 1-channel ``conv1`` and no ``fc`` (outputs the 512-d pooled feature)."""
    tv = import_torchvision()
    from torch import nn  # torch: heavy, imported with the model

    net = tv.models.resnet18(weights=None)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Identity()
    return net


@dataclass(frozen=True, kw_only=True)
class JMTResNet18Config(SeededConfig):
    """Parameters of :class:`JMTResNet18`.

    Attributes:
        weights: a torchvision-layout ResNet18 state dict (``.pt`` / ``.pth`` read with
            ``weights_only=True``, or ``.safetensors``); ``conv1.weight`` may have 1 channel, or 3
            (ImageNet, averaged to 1 as JMT does); ``fc.*`` is ignored. None: random init (tests).
        sample_rate: Hz the fragments arrive at (JMT: 44100).
        dtype: ``"float32"`` or ``"bfloat16"`` / ``"float16"`` weights.
        batch_size: spectrograms per forward pass (within a group of equal length; not in the identity).
        seed: seed of the random init when ``weights`` is None (in the identity only then).
        device: torch device (not in the identity).
    """

    weights: str | None = None
    sample_rate: int = 44100
    dtype: str = "float32"
    batch_size: int = runtime(32)
    seed: int = 0
    device: str = runtime("cpu")

    def validate(self) -> "JMTResNet18Config":
        check_torch_runtime(self)
        check_positive(self, "sample_rate")
        if round(0.020 * self.sample_rate) > N_FFT:
            expected = f"at most {N_FFT * 50} Hz (a 20 ms window within n_fft={N_FFT})"
            raise config_error(self, "sample_rate", expected, self.sample_rate)
        return self


@register_extractor
class JMTResNet18(TorchAudioExtractor):
    """512-d ResNet18 feature of each fragment's 64-band log-mel spectrogram (JMT's audio stream).

    Per fragment (its real samples only): fragments of at most ``JMT_PAD_SECONDS`` (45599 samples
    at 44.1 kHz, 1.034 s) are left-padded with zeros to that length, as JMT does — that is also the
    minimum length; longer fragments are used whole (the network pools globally over time). Then the
    front end of the module docstring, with window / hop = 20 ms / 10 ms at ``sample_rate``.

    Parameters: :class:`JMTResNet18Config`.

    Shape:
        output ``(N, 512)`` float32.
    """

    name = "jmt_resnet18"
    weights_from = "checkpoint"
    Config = JMTResNet18Config

    def __init__(self, config: JMTResNet18Config | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        sr = self.config.sample_rate
        self.n_fft = N_FFT
        self.win_length = int(round(0.020 * sr))
        self.hop_length = int(round(0.010 * sr))
        self.min_samples = int(round(JMT_PAD_SECONDS * sr))
        self.dim = 512
        self.contract = InputContract(kind="audio_fragment", sample_rate=sr, mean=(JMT_MEAN,), std=(JMT_STD,))

    def _load(self) -> None:
        import torch  # heavy: only when the network is built

        c = self.config
        if c.weights is None:
            torch.manual_seed(c.seed)
        net = build_audio_resnet18()
        if c.weights is not None:
            sd = load_state_dict(c.weights, strip_prefixes=_PREFIXES)
            w = sd.get("conv1.weight")
            if w is not None and w.ndim == 4 and w.shape[1] == 3:
                sd["conv1.weight"] = w.float().mean(dim=1, keepdim=True)  # JMT's ImageNet init: mean over RGB
            load_weights_into(net, sd, c.weights, ignore_prefixes=("fc.", "classifier."), layout="torchvision ResNet")
        self.net = prepare_module(net, self.torch_dtype, c.device)

    def spectrogram(self, x: np.ndarray) -> np.ndarray:
        """JMT's normalised log-mel spectrogram of one fragment.

        Shape:
            ``(L,)`` -> ``(64, T)`` float32, ``T = 1 + max(L, min_samples) // hop``.
        """
        if len(x) <= self.min_samples:
            x = np.pad(x, (self.min_samples - len(x), 0))  # left zero padding, as JMT
        spec = power_spectrogram(
            x, n_fft=self.n_fft, win_length=self.win_length, hop_length=self.hop_length, center=True, pad_mode="reflect"
        )  # (513, T)
        mel = mel_filters(self.config.sample_rate, self.n_fft, 64, 0.0, None, "htk").T @ spec  # (64, T)
        return ((power_to_db(mel, top_db=80.0) - JMT_MEAN) / JMT_STD).astype(np.float32)

    def padded_length(self, n: int) -> int:
        return max(n, self.min_samples)

    def prepare(self, row: np.ndarray, length: int) -> np.ndarray:
        """Shape: ``(L,)`` -> ``(1, 64, T)`` (the padding to ``length`` happens in :meth:`spectrogram`)."""
        return self.spectrogram(row)[None]
