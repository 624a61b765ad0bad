"""ABAW5 expression recipe: per-frame features of several face backbones fused by a transformer.

Paper: J. Li, Y. Chen et al., "Multimodal Feature Extraction and Fusion for Emotional Reaction Intensity
Estimation and Expression Classification in Videos with Transformers", CVPRW 2023 (arXiv 2303.09164),
section 3.2: features of InceptionResnetV1 (VGGFace2), InceptionResnetV1 (CASIA-WebFace) and RegNet
(ImageNet) are "stitched" per frame and fed "uniformly into a transformer-based feature fusion module";
the loss is a focal loss (the task's default, applied by the training code). Aff-Wild2 validation macro F1
0.346 (Table 4).

The authors released no code for this part (``cyinen/CVPR2023-ABAW5-ERI`` holds only the ERI model), and
the paper gives no sizes for the fusion module; the sizes below are ours:

* each backbone is one modality ``m``: ``Linear(D_m → d_proj)``; a frame where the
  modality is invalid (no face found, or the modality absent) gets a learned "missing" vector instead;
* the per-frame projections are concatenated along features (``M × d_proj``, the "stitching"), mapped to
  ``d_model`` and given sinusoidal positions of the frame index;
* a pre-LN transformer encoder (``layers`` × ``heads``, GELU MLP) runs over the frames with a key mask
  (a frame is valid when any modality is valid there), then a final LayerNorm;
* frame-level tasks (``expr``: 8 classes) get per-frame logits ``(B, T, K)``; clip-level tasks get a
  masked mean over valid frames and ``(B, K)``.

Clip-level tasks pad shorter modalities at the end with invalid frames (aligned by index); frame-level
tasks need all modalities on one frame axis (``layers.align_modalities``). Padded / invalid values are
replaced by exact zeros on entry and never read.

Registered variants: ``abaw5_expr`` (``d_proj`` 256, ``d_model`` 512, 2 layers, 8 heads) and
``abaw5_expr_small``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from affectfuse._config import make_config
from affectfuse._registry import MODELS
from affectfuse.models.base import FusionModel, masked_mean
from affectfuse.models.layers import TransformerEncoderLayer, align_modalities, fill_invalid, sinusoidal_positions
from affectfuse.tasks.spec import TaskSpec
from affectfuse.types import Batch, ModelOutput

__all__ = ["ExprConfig", "ABAW5Expr"]

#: default learning rate (``TrainConfig(lr=None)``), benchmarks/defaults.py grid (event data, 1000 clips, 40 epochs, test
#: mean Pearson at 1e-3 / 3e-3 / 1e-2): 0.670 / 0.672 / 0.658 (300 clips 0.458 / 0.534 / 0.392; 1e-4: 0.04)
DEFAULT_LR = {"abaw5_expr_small": 3e-3}

#: the paper's backbones: InceptionResnetV1 on VGGFace2 and on CASIA-WebFace (512-d each) and an ImageNet
#: RegNet (variant not named; 888-d for timm's regnety_016, the ``regnet`` extractor's default)
PAPER_INPUT_DIMS = {"irv1_vggface2": 512, "irv1_casia": 512, "regnet": 888}


@dataclass(frozen=True, kw_only=True)
class ExprConfig:
    """Configuration of :class:`ABAW5Expr` (the paper gives no sizes; these are ours).

    Attributes:
        d_proj: width each backbone's features are projected to before stitching.
        d_model: transformer width.
        layers: transformer encoder layers.
        heads: attention heads.
        mlp: transformer MLP width.
        dropout: dropout in the transformer and after the stitching projection.
    """

    d_proj: int = 256
    d_model: int = 512
    layers: int = 2
    heads: int = 8
    mlp: int = 1024
    dropout: float = 0.1

    def validate(self) -> "ExprConfig":
        for name in ("d_proj", "d_model", "layers", "heads", "mlp"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"ExprConfig.{name}: expected a positive int, got {v!r}")
        if self.d_model % self.heads or self.d_model % 2:
            raise ValueError(f"ExprConfig.d_model: expected an even multiple of heads={self.heads}, got {self.d_model}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"ExprConfig.dropout: expected a probability in [0, 1), got {self.dropout!r}")
        return self


class ABAW5Expr(FusionModel):
    """Per-frame feature stitching + transformer fusion (see the module docstring).

    ``forward(batch)`` takes ``batch.inputs[m] (B, T_m, D_m)`` / ``batch.masks[m] (B, T_m)`` for any
    non-empty subset of the model's modalities and returns ``preds`` ``(B, T, K)`` (frame level, ``T`` = the
    common frame axis) or ``(B, K)`` (clip level), with the fused ``embedding`` of the same layout.
    """

    def __init__(self, *, task: TaskSpec, input_dims: dict[str, int], config: ExprConfig) -> None:
        super().__init__(task=task, input_dims=input_dims, config=config)
        c = config
        self.proj = nn.ModuleDict({
            m: nn.Linear(dim, c.d_proj) for m, dim in self.input_dims.items()
        })
        self.missing = nn.ParameterDict({m: nn.Parameter(torch.zeros(c.d_proj)) for m in self.modalities})
        self.stitch = nn.Sequential(nn.Linear(c.d_proj * len(self.modalities), c.d_model), nn.Dropout(c.dropout))
        self.encoder = nn.ModuleList([
            TransformerEncoderLayer(c.d_model, c.heads, c.mlp, dropout=c.dropout, activation="gelu", norm_first=True)
            for _ in range(c.layers)
        ])
        self.norm = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, task.num_outputs)

    def forward(self, batch: Batch) -> ModelOutput:
        mods = self.present(batch)
        frame = self.task.resolution == "frame"
        inputs, masks, t = align_modalities(batch, mods, frame_level=frame, owner=type(self).__name__)
        x0 = inputs[mods[0]]
        b, dev, dt = x0.shape[0], x0.device, x0.dtype
        cols, union = [], torch.zeros(b, t, dtype=torch.bool, device=dev)
        for m in self.modalities:
            if m in mods:
                mask = masks[m].to(dev)  # (B, T)
                h = self.proj[m](fill_invalid(inputs[m].to(dt), mask))  # (B, T, d_proj); padding never read
                cols.append(fill_invalid(h, mask, self.missing[m]))  # (B, T, d_proj)
                union = union | mask
            else:
                cols.append(self.missing[m].to(dt).expand(b, t, -1))  # (B, T, d_proj)
        z = self.stitch(torch.cat(cols, dim=-1))  # (B, T, d_model)
        z = z + sinusoidal_positions(t, z.shape[-1], device=dev, dtype=dt)  # (B, T, d_model)
        for layer in self.encoder:
            z = layer(z, union)  # (B, T, d_model); keys masked
        z = fill_invalid(self.norm(z), union)  # (B, T, d_model)
        if not frame:
            z = masked_mean(z, union)  # (B, d_model)
        return ModelOutput(preds=self.head(z), embedding=z)


def _create_abaw5_expr(task: TaskSpec, input_dims: dict[str, int], config: ExprConfig) -> ABAW5Expr:
    return ABAW5Expr(task=task, input_dims=input_dims, config=config)


_SMALL = dict(d_proj=32, d_model=64, layers=1, heads=2, mlp=128)


@MODELS.register("abaw5_expr")
def abaw5_expr(*, task: TaskSpec, input_dims: dict[str, int], **overrides: Any) -> ABAW5Expr:
    """Paper recipe: stitched per-frame backbone features + transformer (d_model 512, 2 layers, 8 heads)."""
    return _create_abaw5_expr(task, input_dims, make_config(ExprConfig, overrides))


@MODELS.register("abaw5_expr_small")
def abaw5_expr_small(*, task: TaskSpec, input_dims: dict[str, int], **overrides: Any) -> ABAW5Expr:
    """Small variant for tests: d_proj 32, d_model 64, 1 layer, 2 heads."""
    return _create_abaw5_expr(task, input_dims, make_config(ExprConfig, {**_SMALL, **overrides}))
