"""ViPER's audio stream: the WavLM speaker-verification x-vector of every audio fragment."""

from __future__ import annotations

from typing import Any

from affectfuse.extractors.audio.hf_speech import HFSpeechBase
from affectfuse.extractors.audio.logmel import reject_unknown
from affectfuse.extractors.base import register_extractor

__all__ = ["WavLMXVector"]


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

    Args:
        model: hub id (offline it must be in the HF cache) or a local ``WavLMForXVector`` checkpoint
            folder; its ``preprocessor_config.json`` is used when present.
        dtype: ``"float32"``, or ``"bfloat16"`` / ``"float16"`` weights.
        batch_size: fragments per forward pass.
        sample_rate: Hz; must match the checkpoint's feature extractor (16000).
        device: torch device (not part of the key).

    Shape:
        output ``(N, xvector_output_dim)`` float32.
    """

    name = "wavlm_xvector"
    default_model = "microsoft/wavlm-base-plus-sv"

    def __init__(
        self,
        *,
        model: str = "microsoft/wavlm-base-plus-sv",
        dtype: str = "float32",
        batch_size: int = 16,
        sample_rate: int = 16000,
        device: str = "cpu",
        **unknown: Any,
    ) -> None:
        reject_unknown(self.name, unknown, ("model", "dtype", "batch_size", "sample_rate", "device"))
        self._setup(model, dtype, batch_size, sample_rate, device, {})
        if self.config is not None:
            archs = self.config.get("architectures") or []
            if archs and "WavLMForXVector" not in archs:
                raise ValueError(
                    f"extractor {self.name!r}: {model} is a {', '.join(archs)} checkpoint; a WavLMForXVector "
                    "checkpoint (e.g. microsoft/wavlm-base-plus-sv) is needed — its x-vector head would be random"
                )
            self.dim = int(self.config.get("xvector_output_dim", 512))
        else:
            self.dim = 512  # WavLMConfig's default and microsoft/wavlm-base-plus-sv's value

    def _load_model(self, torch_dtype):
        from transformers import WavLMForXVector

        model, info = WavLMForXVector.from_pretrained(self.params["model"], output_loading_info=True)
        self._check_loading(self.params["model"], info)
        if int(model.config.xvector_output_dim) != self.dim:
            raise ValueError(
                f"{self.params['model']}: xvector_output_dim is {model.config.xvector_output_dim}, expected {self.dim}"
            )
        return model.to(torch_dtype)

    def _min_frames(self, config) -> int:
        # TDNN layers are valid dilated convolutions: out = in - d * (k - 1); std pooling needs >= 2 frames.
        return 2 + sum(int(d) * (int(k) - 1) for k, d in zip(config.tdnn_kernel, config.tdnn_dilation))

    def _embed(self, x):
        return self._model(x).embeddings  # (B, xvector_output_dim)
