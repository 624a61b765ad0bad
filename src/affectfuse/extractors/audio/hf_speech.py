"""Self-supervised speech encoders from ``transformers`` (HuBERT, wav2vec 2.0, WavLM), mean-pooled.

``hf_speech`` turns each audio fragment into the time average of one hidden layer of any
``HubertModel`` / ``Wav2Vec2Model`` / ``WavLMModel`` checkpoint (a hub id resolved by ``transformers``
or a local ``save_pretrained`` folder). The shared machinery here — checkpoint and feature-extractor
loading, exact length buckets, minimum-length padding, bf16 weights — also serves ``wavlm_xvector``.

How rows of different lengths are batched: rows are grouped by their exact length and each group runs
without padding, so a row's output depends only on its own samples, for every checkpoint. (Models
with ``feat_extract_norm="group"`` — wav2vec2-base, HuBERT-base, WavLM-base(-plus) — normalise the
first convolution over time, so zero padding changes their output even with an attention mask.) The
checkpoint's feature extractor (``preprocessor_config.json``; zero-mean/unit-variance normalisation
when ``do_normalize``) is applied to each row's real samples only.

Minimum length: a row shorter than the model's receptive field (400 samples = 25 ms for the standard
wav2vec2 convolution stack) is right-padded with zeros, after normalisation, to that length.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from affectfuse.extractors._hf import from_pretrained, read_hf_config
from affectfuse.extractors._torch_utils import (
    CheckedConfig,
    TorchAudioExtractor,
    check_positive,
    check_torch_runtime,
    prepare_module,
)
from affectfuse.extractors.base import InputContract, register_extractor, runtime

__all__ = ["HFSpeech", "HFSpeechConfig", "HFSpeechBase", "SpeechConfig", "conv_min_samples"]

# Output widths of well-known checkpoints, used only when their config is not on disk (offline).
KNOWN_HIDDEN = {
    "facebook/hubert-base-ls960": 768,
    "facebook/hubert-large-ll60k": 1024,
    "facebook/wav2vec2-base": 768,
    "facebook/wav2vec2-base-960h": 768,
    "facebook/wav2vec2-large-960h": 1024,
    "microsoft/wavlm-base": 768,
    "microsoft/wavlm-base-plus": 768,
    "microsoft/wavlm-base-plus-sv": 768,
    "microsoft/wavlm-base-sv": 768,
    "microsoft/wavlm-large": 1024,
}


def conv_min_samples(conv_kernel, conv_stride, frames: int) -> int:
    """Fewest input samples for which a stack of valid 1-D convolutions yields ``frames`` outputs.

    ``out = (in - k) // s + 1`` per layer, inverted from the last layer to the first.
    """
    n = int(frames)
    for k, s in reversed(list(zip(conv_kernel, conv_stride))):
        n = (n - 1) * int(s) + int(k)
    return n


@dataclass(frozen=True, kw_only=True)
class SpeechConfig(CheckedConfig):
    """What the configs of the transformers speech encoders share (their fields ``model``, ``dtype``,
    ``batch_size``, ``sample_rate`` and ``device`` are declared by each, in its own order).

    Subclasses implement :meth:`output_dim`, which reads the checkpoint's ``config.json`` (no weights)
    and checks the other fields against it.
    """

    @functools.cached_property
    def hf_config(self) -> dict[str, Any] | None:
        """The checkpoint's ``config.json``, or None for a hub id not in the local cache."""
        return read_hf_config(getattr(self, "model"))

    def output_dim(self) -> int:
        raise NotImplementedError

    def validate(self) -> "SpeechConfig":
        check_torch_runtime(self)
        check_positive(self, "sample_rate")
        self.output_dim()
        return self


class HFSpeechBase(TorchAudioExtractor):
    """Shared loading and batching for transformers speech encoders (not registered itself).

    Subclasses set ``name``, ``Config`` (a :class:`SpeechConfig`), ``_load_model()`` (the model; ``_load``
    casts it to the config's dtype and device into ``self.net``), ``_min_frames(config)`` and
    ``encode(x) -> (B, dim)``.
    """

    def __init__(self, config: SpeechConfig | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.dim = self.config.output_dim()
        self.contract = InputContract(kind="audio_fragment", sample_rate=self.config.sample_rate)
        self._fe: Any = None
        self._min_len = 1

    # -- loading --------------------------------------------------------------------------------
    def _load_feature_extractor(self):
        from transformers import AutoFeatureExtractor, Wav2Vec2FeatureExtractor  # heavy: only when loading

        model, sr = self.config.model, self.config.sample_rate
        try:
            fe = AutoFeatureExtractor.from_pretrained(model)
        except (OSError, ValueError) as e:
            cfg = self.net.config
            fe = Wav2Vec2FeatureExtractor(
                feature_size=1,
                sampling_rate=sr,
                padding_value=0.0,
                do_normalize=True,
                return_attention_mask=getattr(cfg, "feat_extract_norm", "group") == "layer",
            )
            warnings.warn(
                f"{model}: no feature extractor config ({type(e).__name__}); using Wav2Vec2FeatureExtractor "
                "defaults (zero-mean/unit-variance normalisation)",
                stacklevel=2,
            )
        if getattr(fe, "sampling_rate", sr) != sr:
            raise ValueError(
                f"{model}: the checkpoint expects {fe.sampling_rate} Hz audio but extractor {self.name!r} was "
                f"created with sample_rate={sr}"
            )
        return fe

    def _from_pretrained(self, loader: Any) -> Any:
        """The checkpoint through ``loader``, refusing one that lacks weights the model needs."""
        model, info = from_pretrained(
            loader, self.config.model, who=self.name, what="checkpoint", output_loading_info=True
        )
        missing = [k for k in info.get("missing_keys", []) if "masked_spec_embed" not in k]
        if missing:
            raise ValueError(
                f"{self.config.model}: the checkpoint lacks {len(missing)} weight(s) the model needs "
                f"(e.g. {', '.join(missing[:3])}); they would be random. Is it the right kind of checkpoint?"
            )
        return model

    def _load_model(self):
        raise NotImplementedError

    def _min_frames(self, config) -> int:
        return 1

    def _load(self) -> None:
        self.net = prepare_module(self._load_model(), self.torch_dtype, self.config.device)
        self._fe = self._load_feature_extractor()
        cfg = self.net.config
        self._min_len = conv_min_samples(cfg.conv_kernel, cfg.conv_stride, self._min_frames(cfg))

    # -- running --------------------------------------------------------------------------------
    def padded_length(self, n: int) -> int:
        return max(n, self._min_len)

    def prepare(self, row: np.ndarray, length: int) -> np.ndarray:
        """The feature extractor on a row's real samples, then zero padding to ``length``.

        Shape:
            ``(l,)`` -> ``(length,)`` float32 with ``length >= l``.
        """
        v = self._fe(row, sampling_rate=self.config.sample_rate, return_tensors="np")["input_values"][0]  # (l,)
        v = np.asarray(v, dtype=np.float32).reshape(-1)
        if len(v) < length:
            v = np.pad(v, (0, length - len(v)), constant_values=float(getattr(self._fe, "padding_value", 0.0)))
        return v


@dataclass(frozen=True, kw_only=True)
class HFSpeechConfig(SpeechConfig):
    """Parameters of :class:`HFSpeech`.

    Attributes:
        model: hub id (resolved by ``transformers``; offline it must be in the HF cache) or a local
            checkpoint folder (``config.json`` + weights, optionally ``preprocessor_config.json``).
        layer: -1 (default) averages ``last_hidden_state``, the encoder's output (for
            stable-layer-norm checkpoints such as wav2vec2-large / WavLM-large that is after the final
            layer norm); any other value indexes ``hidden_states`` (0 = the input of the first
            transformer layer, i = the output of layer i).
        dtype: ``"float32"``, or ``"bfloat16"`` / ``"float16"`` weights (activations follow).
        batch_size: fragments per forward pass (within a group of equal length; not in the identity).
        sample_rate: Hz the fragments arrive at; must match the checkpoint's feature extractor.
        device: torch device to run on (not in the identity).
    """

    model: str = "facebook/hubert-base-ls960"
    layer: int = -1
    dtype: str = "float32"
    batch_size: int = runtime(16)
    sample_rate: int = 16000
    device: str = runtime("cpu")

    def output_dim(self) -> int:
        """``hidden_size`` of the checkpoint; checks ``layer`` against its depth."""
        cfg = self.hf_config
        if cfg is None:
            if self.model not in KNOWN_HIDDEN:
                raise ValueError(
                    f"{type(self).__name__}: cannot read the config of model={self.model!r}: it is not a local folder "
                    "and not in the Hugging Face cache (offline). Pass a local checkpoint folder."
                )
            return KNOWN_HIDDEN[self.model]
        n_layers = int(cfg.get("num_hidden_layers", 0))
        if not -(n_layers + 1) <= self.layer <= n_layers:
            raise ValueError(
                f"{type(self).__name__}: layer={self.layer} is outside [-{n_layers + 1}, {n_layers}] for {self.model} "
                f"({n_layers} layers)"
            )
        return int(cfg["hidden_size"])


@register_extractor
class HFSpeech(HFSpeechBase):
    """Time-averaged hidden states of a HuBERT / wav2vec 2.0 / WavLM checkpoint.

    Each fragment runs alone at its own length (see the module docstring), so the average is over the
    fragment's own frames only; a fragment shorter than the convolutional receptive field (400
    samples for the standard stack) is zero-padded to it.

    Parameters: :class:`HFSpeechConfig`.

    Shape:
        output ``(N, hidden_size)`` float32.
    """

    name = "hf_speech"
    weights_from = "hub"
    Config = HFSpeechConfig

    def _load_model(self):
        from transformers import AutoModel  # heavy: only when loading

        model = self._from_pretrained(AutoModel)
        if not hasattr(model.config, "conv_kernel"):
            raise ValueError(
                f"{self.config.model}: {type(model).__name__} is not a wav2vec2-style speech encoder "
                "(HuBERT / wav2vec2 / WavLM / data2vec-audio expected)"
            )
        return model

    def encode(self, x):
        """Shape: ``(B, L)`` model-dtype tensor -> ``(B, hidden_size)`` (time average of the chosen layer)."""
        layer = self.config.layer
        if layer == -1:
            h = self.net(x).last_hidden_state  # (B, T, H)
        else:
            h = self.net(x, output_hidden_states=True).hidden_states[layer]  # (B, T, H)
        return h.mean(dim=1)  # (B, H)
