"""ViPER's audio stream: the WavLM speaker-verification x-vector of every audio fragment."""

from __future__ import annotations

from dataclasses import dataclass

from affectfuse.extractors.audio.hf_speech import HFSpeechBase, SpeechConfig
from affectfuse.extractors.base import register_extractor, runtime

__all__ = ["WavLMXVector", "WavLMXVectorConfig"]


@dataclass(frozen=True, kw_only=True)
class WavLMXVectorConfig(SpeechConfig):
    """Parameters of :class:`WavLMXVector`.

    Attributes:
        model: hub id (offline it must be in the HF cache) or a local ``WavLMForXVector`` checkpoint
            folder; its ``preprocessor_config.json`` is used when present.
        dtype: ``"float32"``, or ``"bfloat16"`` / ``"float16"`` weights.
        batch_size: fragments per forward pass (not in the identity).
        sample_rate: Hz; must match the checkpoint's feature extractor (16000).
        device: torch device (not in the identity).
    """

    model: str = "microsoft/wavlm-base-plus-sv"
    dtype: str = "float32"
    batch_size: int = runtime(16)
    sample_rate: int = 16000
    device: str = runtime("cpu")

    def output_dim(self) -> int:
        """``xvector_output_dim`` of the checkpoint (512, WavLMConfig's default, when it is not on disk)."""
        cfg = self.hf_config
        if cfg is None:
            return 512  # WavLMConfig's default and microsoft/wavlm-base-plus-sv's value
        archs = cfg.get("architectures") or []
        if archs and "WavLMForXVector" not in archs:
            raise ValueError(
                f"{type(self).__name__}: model={self.model!r} is a {', '.join(archs)} checkpoint; a WavLMForXVector "
                "checkpoint (e.g. microsoft/wavlm-base-plus-sv) is needed — its x-vector head would be random"
            )
        return int(cfg.get("xvector_output_dim", 512))


@register_extractor
class WavLMXVector(HFSpeechBase):
    """``WavLMForXVector(...).embeddings`` (512-d for microsoft/wavlm-base-plus-sv) per fragment.

    As ViPER (VaianiLorenzo/ViPER ``extract_audio_features.py``): 16 kHz mono, the checkpoint's
    feature extractor, the x-vector ``embeddings`` output (before the AM-softmax classifier). Two
    behaviours of that script are deliberately NOT reproduced (both bugs, see
    ``seed-code-facts.md`` §1):

    * it called the feature extractor with ``max_length=16000, truncation=True``, so every fragment was
      cut to its first second; here the **whole fragment** is used;
    * every batch re-encoded the full fragment list instead of the batch slice (correct only when
      ``batch_size >= n_fragments``); here each fragment is encoded once, in batches of equal-length
      fragments (no padding, so padding can never change a fragment's x-vector).

    Minimum length: the TDNN statistics pooling needs at least two frames after the TDNN layers
    (16 encoder frames with the default TDNN), i.e. 5200 samples = 0.325 s at 16 kHz; shorter
    fragments are right-padded with zeros (after the feature extractor's normalisation) to that length.

    Parameters: :class:`WavLMXVectorConfig`.

    Shape:
        output ``(N, xvector_output_dim)`` float32.
    """

    name = "wavlm_xvector"
    weights_from = "hub"
    Config = WavLMXVectorConfig

    def _load_model(self):
        from transformers import WavLMForXVector  # heavy: only when loading

        model = self._from_pretrained(WavLMForXVector)
        if int(model.config.xvector_output_dim) != self.dim:
            raise ValueError(
                f"{self.config.model}: xvector_output_dim is {model.config.xvector_output_dim}, expected {self.dim}"
            )
        return model

    def _min_frames(self, config) -> int:
        # TDNN layers are valid dilated convolutions: out = in - d * (k - 1); std pooling needs >= 2 frames.
        return 2 + sum(int(d) * (int(k) - 1) for k, d in zip(config.tdnn_kernel, config.tdnn_dilation))

    def encode(self, x):
        """Shape: ``(B, L)`` model-dtype tensor -> ``(B, xvector_output_dim)``."""
        return self.net(x).embeddings
