"""DeepSpectrum-style audio features (ABAW5 ERI winner's audio stream): DenseNet121 over mel-spectrogram images.

The ERI winner (arXiv 2303.09164, §3.1.2) used "DeepSpectrum [...] a 1024 dimensional feature [...]
DenseNet121 trained on ImageNet". DeepSpectrum (Amiriparian et al.; ``deepspectrum`` ``mel`` mode,
``backend/plotting.py``) turns an audio chunk into a picture and feeds it to an image CNN:

* STFT with ``n_fft = next power of two of 25 ms`` (512 at 16 kHz), hop ``n_fft / 2``, no centring,
  power -> mel bands (librosa's Slaney filter bank; 128 bands is the CLI default) ->
  ``power_to_db(ref=max)``;
* drawn with ``librosa.display.specshow`` and the ``viridis`` colour map over the data's min..max,
  low frequencies at the bottom, axes off, as a square image;
* ImageNet preprocessing, DenseNet121, the ``avg_pool`` layer (ReLU + global average) -> 1024-d.

Here the picture is rendered directly, without drawing a figure: the dB image is min-max scaled,
coloured with ``matplotlib.colormaps[colormap]`` and sampled cell-wise (nearest) onto a 224x224 grid.
DeepSpectrum draws a 227x227 matplotlib figure and resizes it to the network input; the direct
rendering skips that antialiasing and the resize, so values differ slightly from the original tool.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from affectfuse._compat import import_torchvision
from affectfuse.extractors._torch_utils import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SeededConfig,
    TorchAudioExtractor,
    check_positive,
    check_torch_runtime,
    load_state_dict,
    load_weights_into,
    prepare_module,
)
from affectfuse.extractors.audio.logmel import mel_filters, power_spectrogram, power_to_db
from affectfuse.extractors.base import InputContract, register_extractor, runtime

__all__ = ["DeepSpectrum", "DeepSpectrumConfig", "render_spectrogram"]

# old torchvision DenseNet checkpoints name "norm.1" what the module calls "norm1"
_OLD_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


def render_spectrogram(db: np.ndarray, size: int = 224, colormap: str = "viridis") -> np.ndarray:
    """Colour a spectrogram like ``librosa.display.specshow`` on a borderless square figure.

    Args:
        db: ``(M, T)`` values (row 0 = lowest band).
        size: output side in pixels.
        colormap: a matplotlib colormap name.

    Shape:
        returns ``(size, size, 3)`` float32 RGB in [0, 1]; image row 0 shows the highest band.
    """
    import matplotlib  # optional dependency: only its colour maps (no pyplot, no figure)

    lo, hi = float(db.min()), float(db.max())
    norm = (db - lo) / (hi - lo) if hi > lo else np.zeros_like(db)  # matplotlib: vmin == vmax -> 0
    m, t = db.shape
    rows = (m - 1 - (np.arange(size) * m) // size)  # image top = highest band
    cols = (np.arange(size) * t) // size
    cell = norm[rows[:, None], cols[None, :]]  # (size, size)
    return matplotlib.colormaps[colormap](cell)[..., :3].astype(np.float32)  # (size, size, 3)


@dataclass(frozen=True, kw_only=True)
class DeepSpectrumConfig(SeededConfig):
    """Parameters of :class:`DeepSpectrum`.

    Attributes:
        weights: a torchvision-layout DenseNet121 state dict (``.pt`` / ``.pth`` read with
            ``weights_only=True``, or ``.safetensors``; old ``norm.1``-style keys are renamed;
            ``classifier.*`` is ignored). None: random init (tests).
        sample_rate: Hz the fragments arrive at.
        n_mels: mel bands (DeepSpectrum CLI default 128).
        colormap: matplotlib colour map (DeepSpectrum default ``viridis``; checked when loading).
        image_size: side of the square network input.
        dtype: ``"float32"`` or ``"bfloat16"`` / ``"float16"`` weights.
        batch_size: images per forward pass (not in the identity).
        seed: seed of the random init when ``weights`` is None (in the identity only then).
        device: torch device (not in the identity).
    """

    weights: str | None = None
    sample_rate: int = 16000
    n_mels: int = 128
    colormap: str = "viridis"
    image_size: int = 224
    dtype: str = "float32"
    batch_size: int = runtime(16)
    seed: int = 0
    device: str = runtime("cpu")

    def validate(self) -> "DeepSpectrumConfig":
        check_torch_runtime(self)
        check_positive(self, "sample_rate", "n_mels", "image_size")
        return self


@register_extractor
class DeepSpectrum(TorchAudioExtractor):
    """1024-d DenseNet121 ``avg_pool`` feature of each fragment's coloured mel spectrogram.

    See the module docstring for the pipeline. Each fragment is rendered from its own samples only;
    a fragment shorter than ``n_fft`` (32 ms at 16 kHz) is zero-padded to ``n_fft`` (one STFT frame).

    Parameters: :class:`DeepSpectrumConfig`.

    Shape:
        output ``(N, 1024)`` float32.
    """

    name = "deepspectrum"
    weights_from = "checkpoint"
    Config = DeepSpectrumConfig

    def __init__(self, config: DeepSpectrumConfig | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.n_fft = 1 << (int(c.sample_rate * 0.025) - 1).bit_length()  # next power of two of 25 ms
        self.dim = 1024
        self.contract = InputContract(
            kind="audio_fragment", sample_rate=c.sample_rate, image_size=c.image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD
        )

    def _load(self) -> None:
        import torch  # heavy: only when the network is built
        from torch import nn

        try:
            import matplotlib  # optional dependency: only its colour maps (no pyplot, no figure)
        except ImportError as e:
            raise ImportError(f"extractor {self.name!r} needs matplotlib for its colour maps: pip install matplotlib") from e
        c = self.config
        if c.colormap not in matplotlib.colormaps:
            raise ValueError(f"extractor {self.name!r}: unknown matplotlib colormap {c.colormap!r}")
        tv = import_torchvision()
        if c.weights is None:
            torch.manual_seed(c.seed)
        net = tv.models.densenet121(weights=None)
        net.classifier = nn.Identity()  # forward = features -> relu -> global avg pool -> (B, 1024)
        if c.weights is not None:
            sd = load_state_dict(c.weights, strip_prefixes=("module.", "model.", "backbone."))
            sd = {_OLD_DENSENET_KEY.sub(r"\1\2", k): v for k, v in sd.items()}
            load_weights_into(net, sd, c.weights, ignore_prefixes=("classifier.",), layout="torchvision DenseNet")
        self.net = prepare_module(net, self.torch_dtype, c.device)

    def mel_db(self, x: np.ndarray) -> np.ndarray:
        """DeepSpectrum's mel spectrogram in dB relative to its maximum.

        Shape:
            ``(L,)`` -> ``(n_mels, T)`` float32, ``T = 1 + (max(L, n_fft) - n_fft) // (n_fft // 2)``.
        """
        c = self.config
        spec = power_spectrogram(x, n_fft=self.n_fft, win_length=self.n_fft, hop_length=self.n_fft // 2, center=False)
        mel = mel_filters(c.sample_rate, self.n_fft, c.n_mels, 0.0, None, "slaney").T @ spec  # (M, T)
        return (power_to_db(mel) - power_to_db(np.asarray(mel.max()))).astype(np.float32)

    def image(self, x: np.ndarray) -> np.ndarray:
        """The network input of one fragment, ImageNet-normalised.

        Shape:
            ``(L,)`` -> ``(3, S, S)`` float32.
        """
        rgb = render_spectrogram(self.mel_db(x), self.config.image_size, self.config.colormap)  # (S, S, 3)
        rgb = (rgb - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
        return rgb.transpose(2, 0, 1).astype(np.float32)  # (3, S, S)

    def padded_length(self, n: int) -> int:
        return 0  # every image has the same shape: one group

    def prepare(self, row: np.ndarray, length: int) -> np.ndarray:
        """Shape: ``(L,)`` -> ``(3, S, S)``."""
        return self.image(row)
