"""Joint Multimodal Transformer (JMT) for audio-visual emotion recognition.

Paper: P. Waligora, O. Zeeshan, H. Aslam, S. Belharbi, A. L. Koerich, M. Pedersoli, S. Bacon, E. Granger,
"Joint Multimodal Transformer for Emotion Recognition in the Wild", CVPRW 2024 (arXiv 2403.10488),
section 3: ``J = FC([F_a; F_v])`` (eq. 1, 1024 → 512), three self-attention encoders (audio, visual,
joint), six cross-attentions in which each source queries each other one, concatenation, fully connected
layers regressing valence and arousal.

Where the paper is vague, the authors' code decides (``PoloWlg/Joint-Multimodal-Transformer-6th-ABAW``,
``models/mm_multi_transformers.py`` class ``MultimodalTransformer_w_JR``, ``models/two_transformers.py``,
``config_file.json``; see ``/work/shared/design/seed-code-facts.md`` §3):

* inputs are L2-normalised per frame (``F.normalize(..., dim=-1)``); a visual feature wider than 512 is
  then projected to 512 by a linear layer (here: any modality whose width differs from ``d_model``);
* encoders: ``num_layers`` (1) post-LN layers ``x = LN(x + MHA(x)); x = LN(x + FFN(x))`` with a ReLU FFN
  of 512, ``num_heads`` (1), no dropout;
* cross-attentions are bare ``nn.MultiheadAttention`` (no residual, no norm). The code creates three of
  them and uses each twice — **shared by query source**: ``cross_v`` for v←a and v←j, ``cross_a`` for a←v
  and a←j, ``cross_j`` for j←v and j←a (``share_cross_weights=True``; False gives six modules);
* output "FC" format: ``concat(v←a, a←v, j←v, v←j, j←a, a←j)`` (6 × 512) → ``Linear(3072 → 1024)``
  (no activation), then one regressor per target ``Linear(1024 → 128) → ReLU → Dropout → Linear(128 → 1)``
  (the code has separate valence and arousal regressors; ``head_per_target=False`` or a classification task
  uses one ``Linear(128 → K)``); dropout 0.0 as in ``config_file.json``;
* frame-level outputs (the code predicts every frame of a sub-sequence). For clip-level tasks the 1024-d
  frame representations are averaged over valid frames before the regressors (masked mean).

Missing data (not handled by the code, which fed black frames): the two streams' invalid rows are set to
zero after normalisation and projection, so the joint stream is built from what is present
(``FC([0; F_v])`` where audio is missing); keys of invalid rows are masked in every attention, a stream
with no valid key for a sample gives zero cross-attention context, and the outputs of attentions whose
*queries* are invalid rows are zeroed before the concatenation. With only one modality present the model
therefore runs on that modality plus the joint stream derived from it. The joint stream is valid where
any modality is; clip pooling uses the joint validity.

The model takes one or two modalities. Names ``"audio"`` and ``"visual"`` are used by role; otherwise the
first modality of ``input_dims`` plays the visual role and the second the audio role. A model built for one
modality (a single-stream run, an ablation) has that stream and the joint stream ``J = FC(F_m)`` built from it,
and the two cross-attentions between them (j←m, m←j) in the authors' order; with both modalities it is the
paper's model, six cross-attentions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from affectfuse._config import make_config
from affectfuse._registry import MODELS
from affectfuse.models.base import FusionModel, masked_mean
from affectfuse.models.layers import MultiHeadAttention, TransformerEncoderLayer, align_modalities, fill_invalid
from affectfuse.tasks.spec import TaskSpec
from affectfuse.types import Batch, ModelOutput

__all__ = ["JMTConfig", "JointMultimodalTransformer"]

#: default learning rate (``TrainConfig(lr=None)``), benchmarks/defaults.py grid (event data, 1000 clips, 40 epochs, test
#: mean Pearson at 1e-3 / 3e-3 / 1e-2): 0.638 / 0.625 / 0.622, dev 0.634 / 0.640 / 0.626 (1e-4: 0.04 at 300 clips)
DEFAULT_LR = {"jmt_small": 3e-3}

# (query stream, key/value stream) in the authors' concatenation order
CROSS_PAIRS = (("v", "a"), ("a", "v"), ("j", "v"), ("v", "j"), ("j", "a"), ("a", "j"))


# ----------------------------------------------------------------------------------------------- config
@dataclass(frozen=True, kw_only=True)
class JMTConfig:
    """Configuration of :class:`JointMultimodalTransformer` (defaults: authors' ``config_file.json``).

    Attributes:
        d_model: stream width (512: the backbones' output and the joint FC's output).
        num_heads: heads of the encoders and cross-attentions.
        num_layers: layers per self-attention encoder.
        ff_dim: hidden width of the encoders' feed-forward block.
        dropout: dropout inside the encoders and attentions.
        share_cross_weights: three cross-attentions shared by query source (code) instead of six.
        fc_dim: width of the layer after the concatenation of the six cross-attention outputs.
        head_dim: hidden width of the regressors.
        head_dropout: dropout of the regressors (``v_dropout`` / ``a_dropout``).
        head_per_target: one regressor per target (code: valence and arousal separately).
        l2_normalize: L2-normalise every input frame.
    """

    d_model: int = 512
    num_heads: int = 1
    num_layers: int = 1
    ff_dim: int = 512
    dropout: float = 0.0
    share_cross_weights: bool = True
    fc_dim: int = 1024
    head_dim: int = 128
    head_dropout: float = 0.0
    head_per_target: bool = True
    l2_normalize: bool = True

    def validate(self) -> "JMTConfig":
        for name in ("d_model", "num_heads", "num_layers", "ff_dim", "fc_dim", "head_dim"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"JMTConfig.{name}: expected a positive int, got {v!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"JMTConfig.num_heads: d_model={self.d_model} must be divisible by it, got {self.num_heads}")
        for name in ("dropout", "head_dropout"):
            if not 0.0 <= float(getattr(self, name)) < 1.0:
                raise ValueError(f"JMTConfig.{name}: expected a probability in [0, 1), got {getattr(self, name)!r}")
        return self


# ----------------------------------------------------------------------------------------------- blocks
class Encoder(nn.Module):
    """``num_layers`` post-LN Transformer layers with key padding.

    Shape: x ``(B, T, D)``, mask ``(B, T)`` → ``(B, T, D)``.
    """

    def __init__(self, c: JMTConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TransformerEncoderLayer(c.d_model, c.num_heads, c.ff_dim, dropout=c.dropout,
                                                            activation="relu", norm_first=False)
                                    for _ in range(c.num_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)  # (B, T, D)
        return x


# ----------------------------------------------------------------------------------------------- model
class JointMultimodalTransformer(FusionModel):
    """JMT fusion of one or two modalities (see the module docstring).

    Forward → ``ModelOutput(preds=(B, K) | (B, T, K), embedding=(B, fc_dim) | (B, T, fc_dim))``.
    """

    def __init__(self, *, task: TaskSpec, input_dims: dict[str, int], config: JMTConfig) -> None:
        super().__init__(task=task, input_dims=input_dims, config=config)
        if not 1 <= len(self.input_dims) <= 2:
            raise ValueError(f"jmt: fuses one or two modalities (audio and visual), got input_dims {self.input_dims}")
        names = list(self.input_dims)
        if set(names) <= {"audio", "visual"}:
            self.roles = {r: m for r, m in (("v", "visual"), ("a", "audio")) if m in names}
        else:
            self.roles = dict(zip(("v", "a"), names))
        self.streams = (*self.roles, "j")
        self.pairs = tuple((q, k) for q, k in CROSS_PAIRS if q in self.streams and k in self.streams)
        c = config
        d = c.d_model
        self.proj = nn.ModuleDict({
            r: (nn.Identity() if self.input_dims[m] == d else nn.Linear(self.input_dims[m], d)) for r, m in self.roles.items()
        })
        self.joint = nn.Linear(len(self.roles) * d, d)
        self.encoders = nn.ModuleDict({r: Encoder(c) for r in self.streams})
        if c.share_cross_weights:
            self.cross = nn.ModuleDict({r: MultiHeadAttention(d, num_heads=c.num_heads, dropout=c.dropout)
                                        for r in self.streams})
        else:
            self.cross = nn.ModuleDict({f"{q}{k}": MultiHeadAttention(d, num_heads=c.num_heads, dropout=c.dropout)
                                        for q, k in self.pairs})
        self.fc = nn.Linear(len(self.pairs) * d, c.fc_dim)
        k = task.num_outputs
        per_target = c.head_per_target and not task.is_classification
        n_heads, n_out = (k, 1) if per_target else (1, k)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(c.fc_dim, c.head_dim), nn.ReLU(), nn.Dropout(c.head_dropout), nn.Linear(c.head_dim, n_out))
            for _ in range(n_heads)
        )
        self.frame_level = task.resolution == "frame"

    def _cross(self, q: str, k: str) -> MultiHeadAttention:
        return self.cross[q] if self.config.share_cross_weights else self.cross[f"{q}{k}"]

    def forward(self, batch: Batch) -> ModelOutput:
        mods = self.present(batch)
        inputs, masks, t = align_modalities(batch, mods, frame_level=self.frame_level, owner="jmt")
        ref = inputs[mods[0]]
        b, d = ref.shape[0], self.config.d_model
        x, valid = {}, {}
        for r, m in self.roles.items():
            if m in inputs:
                h = inputs[m]
                if self.config.l2_normalize:
                    h = F.normalize(fill_invalid(h, masks[m]), dim=-1)  # (B, T, D_m)
                h = self.proj[r](fill_invalid(h, masks[m]))  # (B, T, d)
                x[r], valid[r] = fill_invalid(h, masks[m]), masks[m]  # zero where invalid
            else:
                x[r] = ref.new_zeros(b, t, d)  # (B, T, d)
                valid[r] = torch.zeros(b, t, dtype=torch.bool, device=ref.device)
        valid["j"] = torch.stack([valid[r] for r in self.roles]).any(0)  # (B, T)
        x["j"] = fill_invalid(self.joint(torch.cat([x[r] for r in self.roles], dim=-1)), valid["j"])  # (B, T, d)
        enc = {r: self.encoders[r](x[r], valid[r]) for r in self.streams}  # each (B, T, d)
        outs = []
        for q, k in self.pairs:
            z = self._cross(q, k)(enc[q], enc[k], valid[k])  # (B, T, d)
            outs.append(fill_invalid(z, valid[q]))  # zero rows whose query is invalid
        h = self.fc(torch.cat(outs, dim=-1))  # (B, T, fc_dim)
        if not self.frame_level:
            h = masked_mean(h, valid["j"])  # (B, fc_dim)
        preds = torch.cat([head(h) for head in self.heads], dim=-1)  # (B, [T,] K)
        return ModelOutput(preds=preds, embedding=h)


# ----------------------------------------------------------------------------------------------- factory
def _create_jmt(task: TaskSpec, input_dims: dict[str, int], defaults: dict[str, Any], overrides: dict[str, Any]) -> JointMultimodalTransformer:
    config = make_config(JMTConfig, overrides, base=make_config(JMTConfig, defaults))
    return JointMultimodalTransformer(task=task, input_dims=input_dims, config=config)


@MODELS.register("jmt")
def jmt(*, task: TaskSpec, input_dims: dict[str, int], **overrides: Any) -> JointMultimodalTransformer:
    """JMT as in the authors' code: d 512, 1 layer, 1 head, FFN 512, FC 3072 → 1024 → 128 → K."""
    return _create_jmt(task, input_dims, {}, overrides)


@MODELS.register("jmt_small")
def jmt_small(*, task: TaskSpec, input_dims: dict[str, int], **overrides: Any) -> JointMultimodalTransformer:
    """A CPU-sized JMT: d 32, 2 heads, FFN 64, FC 192 → 64 → 32 → K."""
    return _create_jmt(task, input_dims, dict(d_model=32, num_heads=2, ff_dim=64, fc_dim=64, head_dim=32), overrides)
