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

from pathlib import Path
from typing import Any

import numpy as np

from affectfuse.extractors.audio.logmel import (
    audio_rows,
    check_dtype,
    check_positive,
    mel_filters,
    power_spectrogram,
    power_to_db,
    reject_unknown,
)
from affectfuse.extractors._torch_utils import load_state_dict
from affectfuse.extractors.base import Extractor, ExtractorInput, InputContract, register_extractor

__all__ = ["JMTResNet18", "load_state_dict_file", "build_audio_resnet18"]

JMT_PAD_SECONDS = 45599 / 44100  # JMT left-pads every clip of <= 45599 samples (at 44.1 kHz) to 45599
JMT_MEAN, JMT_STD = -14.8, 19.895
_PREFIXES = ("module.", "audio_resnet18.", "resnet.", "model.", "backbone.")


def load_state_dict_file(path: str | Path) -> dict:
    """Read a weight file safely: ``.safetensors`` or a torch file via ``torch.load(weights_only=True)``.

    Nested checkpoints (``{"state_dict": ...}``, ``{"model_state_dict": ...}``, ``{"model": ...}``,
    ``{"net": ...}``) are unwrapped; wrapper prefixes (``module.``, ``audio_resnet18.``, ``resnet.``,
    ``model.``, ``backbone.``) are stripped when every key has them.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds no tensor dictionary.
    """
    return load_state_dict(path, strip_prefixes=_PREFIXES)


def load_into(module, sd: dict, path: str | Path, ignore: tuple[str, ...] = ("fc.", "classifier.")) -> None:
    """``module.load_state_dict`` that ignores head weights and names the file on a mismatch."""
    sd = {k: v for k, v in sd.items() if not k.startswith(ignore)}
    missing, unexpected = module.load_state_dict(sd, strict=False)
    # BatchNorm's num_batches_tracked is unused at inference and absent from old checkpoints
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in unexpected if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"{path}: does not match the torchvision {type(module).__name__} layout: "
            f"missing {missing[:4]}{'...' if len(missing) > 4 else ''}, "
            f"unexpected {unexpected[:4]}{'...' if len(unexpected) > 4 else ''}"
        )


def build_audio_resnet18():
    """torchvision ResNet18 with a 1-channel ``conv1`` and no ``fc`` (outputs the 512-d pooled feature)."""
    from affectfuse._compat import import_torchvision

    tv = import_torchvision()
    from torch import nn

    net = tv.models.resnet18(weights=None)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Identity()
    return net


@register_extractor
class JMTResNet18(Extractor):
    """512-d ResNet18 feature of each fragment's 64-band log-mel spectrogram (JMT's audio stream).

    Per fragment (its real samples only): fragments of at most ``JMT_PAD_SECONDS`` (45599 samples
    at 44.1 kHz, 1.034 s) are left-padded with zeros to that length, as JMT does — that is also the
    minimum length; longer fragments are used whole (the network pools globally over time). Then the
    front end of the module docstring, with window / hop = 20 ms / 10 ms at ``sample_rate``.

    Args:
        weights: a torchvision-layout ResNet18 state dict (``.pt`` / ``.pth`` read with
            ``weights_only=True``, or ``.safetensors``); ``conv1.weight`` may have 1 channel, or 3
            (ImageNet, averaged to 1 as JMT does); ``fc.*`` is ignored. None: random init (tests).
        sample_rate: Hz the fragments arrive at (JMT: 44100).
        dtype: ``"float32"`` or ``"bfloat16"`` / ``"float16"`` weights.
        batch_size: spectrograms per forward pass (within a group of equal length).
        seed: seed of the random init when ``weights`` is None.
        device: torch device (not part of the key).

    Shape:
        output ``(N, 512)`` float32.
    """

    name = "jmt_resnet18"
    modality = "audio"

    def __init__(
        self,
        *,
        weights: str | None = None,
        sample_rate: int = 44100,
        dtype: str = "float32",
        batch_size: int = 32,
        seed: int = 0,
        device: str = "cpu",
        **unknown: Any,
    ) -> None:
        reject_unknown(self.name, unknown, ("weights", "sample_rate", "dtype", "batch_size", "seed", "device"))
        check_dtype(self.name, dtype)
        check_positive(self.name, sample_rate=sample_rate, batch_size=batch_size)
        self.n_fft = 1024
        self.win_length = int(round(0.020 * sample_rate))
        self.hop_length = int(round(0.010 * sample_rate))
        if self.win_length > self.n_fft:
            raise ValueError(f"extractor {self.name!r}: sample_rate={sample_rate} gives a 20 ms window longer than n_fft=1024")
        params: dict[str, Any] = dict(weights=None if weights is None else str(weights), sample_rate=int(sample_rate), dtype=dtype)
        if weights is None:
            params["seed"] = int(seed)
        super().__init__(params)
        self.min_samples = int(round(JMT_PAD_SECONDS * sample_rate))
        self.batch_size = int(batch_size)
        self.device = device
        self.dim = 512
        self.contract = InputContract(kind="audio_fragment", sample_rate=int(sample_rate), mean=(JMT_MEAN,), std=(JMT_STD,))
        self.net = None

    def load(self) -> None:
        import torch

        if self.params["weights"] is None:
            torch.manual_seed(self.params["seed"])
        net = build_audio_resnet18()
        if self.params["weights"] is not None:
            sd = load_state_dict_file(self.params["weights"])
            w = sd.get("conv1.weight")
            if w is not None and w.ndim == 4 and w.shape[1] == 3:
                sd["conv1.weight"] = w.float().mean(dim=1, keepdim=True)  # JMT's ImageNet init: mean over RGB
            load_into(net, sd, self.params["weights"])
        tdtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[self.params["dtype"]]
        self.net = net.eval().to(self.device, tdtype)
        self._tdtype = tdtype

    def spectrogram(self, x: np.ndarray) -> np.ndarray:
        """JMT's normalised log-mel spectrogram of one fragment.

        Shape:
            ``(L,)`` -> ``(64, T)`` float32, ``T = 1 + max(L, min_samples) // hop``.
        """
        if len(x) <= self.min_samples:
            x = np.pad(x, (self.min_samples - len(x), 0))  # left zero padding, as JMT
        sr = self.params["sample_rate"]
        spec = power_spectrogram(
            x, n_fft=self.n_fft, win_length=self.win_length, hop_length=self.hop_length, center=True, pad_mode="reflect"
        )  # (513, T)
        mel = mel_filters(sr, self.n_fft, 64, 0.0, None, "htk").T @ spec  # (64, T)
        return ((power_to_db(mel, top_db=80.0) - JMT_MEAN) / JMT_STD).astype(np.float32)

    def forward(self, batch: ExtractorInput) -> np.ndarray:
        """Shape: ``batch.audio (N, L)`` -> ``(N, 512)`` float32 (zeros for empty / invalid rows)."""
        import torch

        rows, active = audio_rows(self.name, batch)
        out = np.zeros((len(rows), self.dim), np.float32)
        specs = {int(i): self.spectrogram(rows[i]) for i in np.flatnonzero(active)}
        groups: dict[int, list[int]] = {}
        for i, s in specs.items():
            groups.setdefault(s.shape[1], []).append(i)
        with torch.inference_mode():
            for idx in groups.values():
                for s in range(0, len(idx), self.batch_size):
                    chunk = idx[s : s + self.batch_size]
                    x = torch.from_numpy(np.stack([specs[i] for i in chunk])[:, None])  # (B, 1, 64, T)
                    out[chunk] = self.net(x.to(self.device, self._tdtype)).float().cpu().numpy()  # (B, 512)
        return out

