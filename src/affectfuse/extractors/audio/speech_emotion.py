"""Dimensional speech emotion — arousal, dominance, valence — from audEERING's wav2vec 2.0 model.

``audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim`` (Wagner et al. 2023, "Dawn of the transformer era in
speech emotion recognition"; **CC-BY-NC-SA-4.0, research use only** — the licence is recorded in the identity
and logged when the model loads; ``affectfuse fetch-models audeering-msp-dim``) is wav2vec2-large-robust pruned
to 12 transformer layers and fine-tuned on MSP-Podcast v1.7. Its model card defines the network, rebuilt here
with the same module names so that the hub checkpoint's state dict (``wav2vec2.*``, ``classifier.dense.*``,
``classifier.out_proj.*``) loads unchanged through ``transformers``' ``from_pretrained`` (safetensors, or a
``pytorch_model.bin`` read with ``weights_only=True``):

* ``wav2vec2``: a ``Wav2Vec2Model``; its ``last_hidden_state`` ``(B, T, 1024)`` is averaged over time;
* ``classifier``: dropout → ``dense`` (1024 → 1024) → tanh → dropout → ``out_proj`` (1024 → 3); dropout is
  inactive at inference;
* outputs in the config's ``id2label`` order: arousal, dominance, valence, roughly in [0, 1].

Input: 16 kHz mono raw audio, normalised as the checkpoint's processor does (``Wav2Vec2FeatureExtractor`` with
``do_normalize``: zero mean, unit variance per fragment). Each fragment — the clip-level fragment of a sampled
frame, or the window around a frame at frame level — runs alone at its own length (see
:mod:`affectfuse.extractors.audio.hf_speech`), so its prediction depends only on its own samples.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectfuse.extractors._catalogue import (
    CATALOGUE,
    announce_licence,
    is_fetched,
    missing_model_error,
    model_dir,
    verify_fetched,
)
from affectfuse.extractors._hf import from_pretrained, hub_file, read_hf_config
from affectfuse.extractors._torch_utils import check_choice, file_fingerprint, prepare_module
from affectfuse.extractors.audio.hf_speech import HFSpeechBase, SpeechConfig, conv_min_samples
from affectfuse.extractors.base import register_extractor, runtime

__all__ = ["AudeeringDim", "AudeeringDimConfig", "dimensional_emotion_class", "ADV_LABELS"]

#: the hub checkpoint's ``id2label``.
ADV_LABELS: tuple[str, ...] = ("arousal", "dominance", "valence")
_HIDDEN = 1024  # wav2vec2-large
_OUTPUTS = ("dims", "embedding", "both")
_UNKNOWN_LICENCE = "unknown (a checkpoint given by path or hub id: check its publisher's terms)"
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@functools.lru_cache(maxsize=None)
def dimensional_emotion_class():
    """The model card's ``EmotionModel`` as a ``transformers`` model class (built on first use: torch and
    transformers are imported here, not with the package).

    Returns:
        a ``Wav2Vec2PreTrainedModel`` subclass whose ``forward(input_values)`` returns the time-averaged last
        hidden state ``(B, H)`` and the head's outputs ``(B, num_labels)``.
    """
    import torch
    from torch import nn
    from transformers import Wav2Vec2Model, Wav2Vec2PreTrainedModel

    class RegressionHead(nn.Module):
        """dropout → dense → tanh → dropout → out_proj (module names as the checkpoint's)."""

        def __init__(self, config) -> None:
            super().__init__()
            self.dense = nn.Linear(config.hidden_size, config.hidden_size)
            self.dropout = nn.Dropout(config.final_dropout)
            self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            """Shape: ``(B, H)`` → ``(B, num_labels)``."""
            x = self.dropout(features)
            x = torch.tanh(self.dense(x))
            return self.out_proj(self.dropout(x))

    class Wav2Vec2ForDimensionalEmotion(Wav2Vec2PreTrainedModel):
        """wav2vec 2.0 + mean pooling + regression head (audEERING's ``EmotionModel``)."""

        def __init__(self, config) -> None:
            super().__init__(config)
            self.wav2vec2 = Wav2Vec2Model(config)
            self.classifier = RegressionHead(config)
            self.post_init()

        def forward(self, input_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """Shape: ``(B, L)`` normalised audio → ``(B, H)`` pooled states, ``(B, num_labels)`` outputs."""
            hidden = self.wav2vec2(input_values).last_hidden_state  # (B, T, H)
            pooled = hidden.mean(dim=1)  # (B, H)
            return pooled, self.classifier(pooled)

    return Wav2Vec2ForDimensionalEmotion


def _local_weights(folder: Path) -> Path | None:
    return next((folder / f for f in _WEIGHT_FILES if (folder / f).is_file()), None)


@dataclass(frozen=True, kw_only=True)
class AudeeringDimConfig(SpeechConfig):
    """Parameters of :class:`AudeeringDim`.

    Attributes:
        model: the catalogue name ``audeering-msp-dim`` (default: the folder ``affectfuse fetch-models`` fills,
            or the hub id in the Hugging Face cache), a hub id, or a local ``save_pretrained`` folder of the
            same architecture (``config.json`` with ``num_labels`` / ``id2label``, weights, optionally
            ``preprocessor_config.json``).
        output: ``"dims"`` (the head's outputs: arousal, dominance, valence; default), ``"embedding"`` (the
            time-averaged last hidden state, 1024-d) or ``"both"`` (embedding, then the dimensions).
        dtype: ``"float32"``, or ``"bfloat16"`` / ``"float16"`` weights.
        batch_size: fragments per forward pass (within a group of equal length; not in the identity).
        sample_rate: Hz; must match the checkpoint's feature extractor (16000).
        device: torch device (not in the identity).
    """

    model: str = "audeering-msp-dim"
    output: str = "dims"
    dtype: str = "float32"
    batch_size: int = runtime(8)
    sample_rate: int = 16000
    device: str = runtime("cpu")

    def __post_init__(self) -> None:
        super().__post_init__()
        p = Path(self.model).expanduser()
        if self.model not in CATALOGUE and p.is_dir():
            object.__setattr__(self, "model", str(p.resolve()))

    @property
    def entry(self):
        """The catalogue entry (by name or by its hub id), or None."""
        if self.model in CATALOGUE:
            return CATALOGUE[self.model]
        return next((m for m in CATALOGUE.values() if m.kind == "hub" and m.source == self.model), None)

    @property
    def source(self) -> str | None:
        """Where the checkpoint is read from: a folder, a hub id, or None (a catalogue model not on this machine)."""
        if self.model in CATALOGUE:
            if is_fetched(self.model):
                return str(model_dir(self.model))
            hub = CATALOGUE[self.model].source
            return hub if hub_file(hub, "config.json") is not None else None
        return self.model

    @functools.cached_property
    def hf_config(self) -> dict[str, Any] | None:
        src = self.source
        return None if src is None else read_hf_config(src)

    @property
    def labels(self) -> tuple[str, ...]:
        """The head's output names (``id2label`` of the checkpoint; the hub model's when it is not on disk)."""
        cfg = self.hf_config
        if cfg is None:
            return ADV_LABELS
        n = int(cfg.get("num_labels") or len(cfg.get("id2label") or {}) or 0)
        if n <= 0:
            raise ValueError(f"{self.model}: config.json has no num_labels / id2label; is it a regression head "
                             "checkpoint like audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim?")
        id2label = cfg.get("id2label") or {}
        return tuple(str(id2label.get(str(i), id2label.get(i, f"dim{i}"))) for i in range(n))

    @property
    def hidden_size(self) -> int:
        cfg = self.hf_config
        return _HIDDEN if cfg is None else int(cfg["hidden_size"])

    @property
    def licence(self) -> str:
        return self.entry.licence if self.entry is not None else _UNKNOWN_LICENCE

    @functools.cached_property
    def fingerprint(self) -> str | None:
        """:func:`file_fingerprint` of a local folder's weights (catalogue / hub models: None)."""
        p = Path(self.model)
        if self.model in CATALOGUE or not p.is_dir():
            return None
        w = _local_weights(p)
        if w is None:
            raise FileNotFoundError(f"{p}: no {' or '.join(_WEIGHT_FILES)}; expected a save_pretrained folder")
        return file_fingerprint(w)

    def output_dim(self) -> int:
        n, h = len(self.labels), self.hidden_size
        return {"dims": n, "embedding": h, "both": h + n}[self.output]

    def validate(self) -> "AudeeringDimConfig":
        check_choice(self, "output", _OUTPUTS)
        super().validate()
        _ = self.fingerprint
        return self

    def identity(self) -> dict[str, Any]:
        entry = self.entry
        weights: dict[str, Any] = {"source": entry.source if entry is not None else self.model,
                                   "revision": entry.revision if entry is not None else None,
                                   "sha256": None, "licence": self.licence}
        if self.fingerprint is not None:
            weights["fingerprint"] = self.fingerprint
        return {**super().identity(), "weights": weights}


@register_extractor
class AudeeringDim(HFSpeechBase):
    """Arousal, dominance and valence (audEERING's wav2vec 2.0 MSP-Podcast model) per audio fragment.

    Parameters: :class:`AudeeringDimConfig`. Columns: ``ser_arousal``, ``ser_dominance``, ``ser_valence`` (the
    checkpoint's ``id2label``), ``ser_e<i>`` for the embedding.

    Shape:
        output ``(N, 3)`` (``"dims"``), ``(N, 1024)`` (``"embedding"``) or ``(N, 1027)`` (``"both"``) float32.
    """

    name = "audeering_dim"
    weights_from = "fetch"
    Config = AudeeringDimConfig

    @property
    def columns(self) -> list[str]:
        c = self.config
        emb = [f"ser_e{i}" for i in range(c.hidden_size)]
        dims = [f"ser_{n}" for n in c.labels]
        return {"dims": dims, "embedding": emb, "both": emb + dims}[c.output]

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "licence": self.config.licence}

    def _resolve(self) -> str:
        c = self.config
        src = c.source
        if src is None:
            raise missing_model_error(c.model)
        if c.model in CATALOGUE and Path(src).is_dir():
            folder = Path(src)
            for f in (*CATALOGUE[c.model].files, _local_weights(folder).name):
                verify_fetched(c.model, f, folder / f)
        return src

    def _load_model(self):
        src = self._resolve()
        model, info = from_pretrained(dimensional_emotion_class(), src, who=self.name, what="checkpoint",
                                      output_loading_info=True)
        missing = [k for k in info.get("missing_keys", []) if "masked_spec_embed" not in k]
        unexpected = list(info.get("unexpected_keys", []))
        if missing or unexpected:
            parts = ([f"lacks {len(missing)} weight(s) (e.g. {', '.join(sorted(missing)[:3])})"] if missing else []) + (
                [f"has {len(unexpected)} unknown weight(s) (e.g. {', '.join(sorted(unexpected)[:3])})"]
                if unexpected else [])
            raise ValueError(f"{self.config.model}: the checkpoint {' and '.join(parts)}; expected the layout of "
                             "audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim (wav2vec2.*, classifier.dense.*, "
                             "classifier.out_proj.*)")
        labels = self.config.labels
        if int(model.config.num_labels) != len(labels):
            raise ValueError(f"{self.config.model}: num_labels is {model.config.num_labels}, expected {len(labels)}")
        self._source = src
        return model

    def _load_feature_extractor(self):
        from transformers import AutoFeatureExtractor, Wav2Vec2FeatureExtractor  # heavy: only when loading

        src, sr = self._source, self.config.sample_rate
        try:
            fe = AutoFeatureExtractor.from_pretrained(src)
        except (OSError, ValueError) as e:
            fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=sr, padding_value=0.0, do_normalize=True,
                                          return_attention_mask=True)
            warnings.warn(f"{src}: no feature extractor config ({type(e).__name__}); normalising to zero mean and "
                          "unit variance as the model card's processor does", stacklevel=2)
        if getattr(fe, "sampling_rate", sr) != sr:
            raise ValueError(f"{src}: the checkpoint expects {fe.sampling_rate} Hz audio but extractor {self.name!r} "
                             f"was created with sample_rate={sr}")
        return fe

    def _load(self) -> None:
        self.net = prepare_module(self._load_model(), self.torch_dtype, self.config.device)
        self._fe = self._load_feature_extractor()
        cfg = self.net.config
        self._min_len = conv_min_samples(cfg.conv_kernel, cfg.conv_stride, 1)
        announce_licence(f"speech emotion model {self.config.model}", self.config.licence)

    def encode(self, x):
        """Shape: ``(B, L)`` model-dtype tensor → ``(B, dim)``: dimensions, embedding, or both."""
        import torch  # heavy: only when running

        pooled, dims = self.net(x)  # (B, H), (B, num_labels)
        out = self.config.output
        return dims if out == "dims" else pooled if out == "embedding" else torch.cat([pooled, dims], dim=1)
