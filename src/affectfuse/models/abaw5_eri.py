"""ABAW5 ERI winner: TCN embeddings, modality encoders and an audio-visual interaction encoder.

Paper: J. Li, Y. Chen et al., "Multimodal Feature Extraction and Fusion for Emotional Reaction Intensity
Estimation and Expression Classification in Videos with Transformers", CVPRW 2023 (arXiv 2303.09164),
section 3.1; first place of the ABAW5 ERI challenge (mean Pearson 0.4394 on Hume-Reaction validation with
DeepSpectrum 1024-d audio + PosterV2-ViT 1536-d visual features, 0.4734 on test).

Architecture (paper eqs. 1-7, numbers from the authors' code ``cyinen/CVPR2023-ABAW5-ERI``,
``model/vitmodel.py`` and ``model/transformer.py`` of commit 07e0969 — the released HEAD imports a
different, inconsistent ``MutilModel``; see ``/work/shared/design/seed-code-facts.md`` §4):

* per modality ``m``: embedding = TemporalConvNet (5 levels, kernel 3, weight-norm ``Conv1d``,
  dilations 1, 2, 4, 8, 16, dropout 0.2, causal as in the locuslab TCN the code uses) → ``× sqrt(d)`` →
  sinusoidal positions (base 1000, not 10000, as in the code) + dropout 0.2;
* modality encoder: ``concat(x, MHA(x), Transformer(x))`` (eq. 3) → ``3d``; MHA is the bare attention of
  the code (no norm, no residual; ``dim_head`` 64, heads 2, dropout 0.5), the transformer one pre-LN layer
  with a GELU MLP of 512;
* interaction encoder: the same block (heads 8, dropout 0.1) on the per-modality embeddings concatenated
  **along features** (eq. 5: ``h_av^{2d} = concat(h_a, h_v)``; the code does ``torch.concat(..., dim=-1)``),
  so its width is ``d × M`` and its output ``3 d M``;
* projections: ``Linear(3 d M → d M / 2) + ReLU`` for the concatenated modality encodings (``g_cat``) and the
  same for the interaction encoding (``g_av``); their concatenation (``d M``) feeds two heads: intensity
  regression (``preds``, K = ``task.num_outputs``) and dominant-emotion classification (``logits``, K
  classes). The authors train with ``MSE(sigmoid(preds)) + 0.01 × CE(logits, argmax target)``; this module
  returns both heads before any activation (the training code owns activations and losses).

Deviations from the authors' code, and why:

* **The 30-step flatten, with masks.** The code truncates / zero-pads every sequence to 30 steps and
  flattens ``(30, 3dM)`` into the projection (``Linear(3·d·M·30, ...)``: position-specific weights, ≈33.5 M
  parameters at paper size). ``pooling="flatten"``, ``steps=30`` reproduces it, and it is the default of the
  ``abaw5_eri`` recipe; every stage respects the boolean masks: padded values are replaced by zeros on entry (so they can never leak, not
  even NaN), the TCN re-zeroes invalid steps before every convolution (an invalid step in the middle acts like
  the convolution's own zero padding), attention never attends to invalid keys, and invalid steps enter the
  flatten as exact zeros. The model's default, ``pooling="masked_mean"``, reads a mean over the valid steps
  instead: any length, 10.6 M parameters, no position-specific weights — it learns better from
  variable-length clips and little data (``tests/models/test_learning.py`` fails with the flatten), so a run
  without the recipe uses it; the choice is in every run's ``model.yaml``.
* **Missing modalities.** The code drops samples that lack a modality. Here a modality may be absent from
  the batch or missing for some samples (all-False mask row): its pooled encoding is zero and, in the
  feature-concatenated interaction input, each of its invalid steps is replaced by a learned
  "missing" vector. The feature concatenation needs one time axis: for clip-level tasks shorter
  modalities are padded at the end with invalid steps (aligned by index), frame-level tasks require equal
  lengths (``layers.align_modalities``) — collate per-frame features on a common time grid.
* **Frame-level tasks** (e.g. ``va``): the same network without pooling; ``preds`` and ``logits`` are
  ``(B, T, K)`` on the common step axis.

Registered variants: ``abaw5_eri`` (paper size, ``d_model`` 256 as in the paper and README) and
``abaw5_eri_small`` (for tests and debugging).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from affectfuse._config import make_config
from affectfuse._registry import MODELS
from affectfuse.models.base import FusionModel, masked_mean
from affectfuse.models.layers import align_modalities, fill_invalid
from affectfuse.tasks.spec import TaskSpec
from affectfuse.types import Batch, ModelOutput

__all__ = ["ERIConfig", "ABAW5ERI", "TemporalConvNet", "ModalEncoder", "SinusoidalPositions"]

#: default learning rate (``TrainConfig(lr=None)``), benchmarks/defaults.py grid (event data, 1000 clips, 40 epochs, test
#: mean Pearson at 1e-3 / 3e-3 / 1e-2): 0.651 / 0.676 / 0.636 (300 clips 0.405 / 0.585 / 0.561; 1e-4: 0.15)
DEFAULT_LR = {"abaw5_eri_small": 3e-3}

#: the paper's feature sets: DeepSpectrum (DenseNet121) 1024-d audio, PosterV2+ViT 1536-d visual (section 3.1.2)
PAPER_INPUT_DIMS = {"audio": 1024, "visual": 1536}


# ----------------------------------------------------------------------------------------------- config
@dataclass(frozen=True, kw_only=True)
class ERIConfig:
    """Configuration of :class:`ABAW5ERI` (defaults: the paper / authors' code).

    Attributes:
        d_model: embedding width ``d`` of every modality (paper and README: 256; code default 128).
        tcn_levels: TemporalConvNet levels (dilation ``2**i`` at level ``i``).
        tcn_kernel: TCN kernel size.
        tcn_causal: causal convolutions (the locuslab TCN of the code) or centred ones.
        tcn_dropout: dropout inside the TCN blocks.
        pe_base: base of the sinusoidal positions (the code uses 1000).
        pe_dropout: dropout after adding positions.
        modal_heads, modal_dim_head, modal_mlp, modal_dropout: modality encoders (paper: 2 heads,
            dropout 0.5; code: dim_head 64, MLP 512).
        inter_heads, inter_dim_head, inter_mlp, inter_dropout: interaction encoder (8 heads, dropout 0.1).
        interaction: use the audio-visual interaction branch (Table 1: "A+V+AV" = True, "A+V" = False).
        pooling: clip-level tasks: ``"flatten"`` (the authors: the first ``steps`` steps flattened into the
            projections, invalid / missing steps as zeros; the recipe's default) or ``"masked_mean"`` (mean over
            the valid steps; the model's default).
        steps: the flattened length (the code's ``max_len`` 30); longer sequences are cut before the model (as
            the authors' data loader does), shorter ones padded with invalid steps.
    """

    d_model: int = 256
    tcn_levels: int = 5
    tcn_kernel: int = 3
    tcn_causal: bool = True
    tcn_dropout: float = 0.2
    pe_base: float = 1000.0
    pe_dropout: float = 0.2
    modal_heads: int = 2
    modal_dim_head: int = 64
    modal_mlp: int = 512
    modal_dropout: float = 0.5
    inter_heads: int = 8
    inter_dim_head: int = 64
    inter_mlp: int = 512
    inter_dropout: float = 0.1
    interaction: bool = True
    pooling: str = "masked_mean"
    steps: int = 30

    def validate(self) -> "ERIConfig":
        for name in ("d_model", "tcn_levels", "tcn_kernel", "modal_heads", "modal_dim_head", "modal_mlp",
                     "inter_heads", "inter_dim_head", "inter_mlp"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"ERIConfig.{name}: expected a positive int, got {v!r}")
        if self.d_model % 2:
            raise ValueError(f"ERIConfig.d_model: expected an even width (sinusoidal positions), got {self.d_model}")
        for name in ("tcn_dropout", "pe_dropout", "modal_dropout", "inter_dropout"):
            v = getattr(self, name)
            if not 0.0 <= float(v) < 1.0:
                raise ValueError(f"ERIConfig.{name}: expected a probability in [0, 1), got {v!r}")
        if self.pooling not in ("flatten", "masked_mean"):
            raise ValueError(f"ERIConfig.pooling: expected 'flatten' (the authors') or 'masked_mean', got {self.pooling!r}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"ERIConfig.steps: expected a positive int, got {self.steps!r}")
        if self.pe_base <= 1.0:
            raise ValueError(f"ERIConfig.pe_base: expected > 1, got {self.pe_base!r}")
        return self


# ----------------------------------------------------------------------------------------------- helpers
def masked_pool(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid steps (invalid rows are never read, even NaN); rows without a valid step give zeros.

    Shape:
        x ``(B, T, D)``, mask ``(B, T)`` bool → ``(B, D)``.
    """
    return masked_mean(fill_invalid(x, mask), mask)


def attention_mask(mask: torch.Tensor) -> torch.Tensor:
    """Key mask for scaled-dot-product attention; rows with no valid key attend to everything.

    Such rows carry no data, and their outputs are later pooled out or replaced; letting them attend
    everywhere (to values computed from zeros) only avoids the NaN of a softmax over nothing.

    Shape:
        mask ``(B, T)`` bool (True = valid) → ``(B, 1, 1, T)`` bool (True = may attend).
    """
    empty = ~mask.any(1, keepdim=True)  # (B, 1)
    return (mask | empty)[:, None, None, :]


# ------------------------------------------------------------------------------------------------ blocks
class SinusoidalPositions(nn.Module):
    """Sinusoidal positions of the step index (computed for any length; base 1000 in the authors' code).

    Shape:
        x ``(B, T, D)`` → ``(B, T, D)``.
    """

    def __init__(self, dim: int, base: float = 10000.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.dim, self.base = dim, base
        self.dropout = nn.Dropout(dropout)

    def encoding(self, length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]  # (T, 1)
        div = torch.exp(torch.arange(0, self.dim, 2, device=device, dtype=torch.float32)
                        * (-math.log(self.base) / self.dim))  # (D/2,)
        pe = torch.zeros(length, self.dim, device=device)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        return pe.to(dtype)  # (T, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x + self.encoding(x.shape[1], x.device, x.dtype))  # (B, T, D)


class _TemporalBlock(nn.Module):
    """Two dilated weight-norm convolutions with a residual, re-zeroing invalid steps before each."""

    def __init__(self, n_in: int, n_out: int, kernel: int, dilation: int, dropout: float, causal: bool) -> None:
        super().__init__()
        wn = nn.utils.parametrizations.weight_norm
        self.total_pad = (kernel - 1) * dilation
        self.causal = causal
        self.conv1 = wn(nn.Conv1d(n_in, n_out, kernel, dilation=dilation))
        self.conv2 = wn(nn.Conv1d(n_out, n_out, kernel, dilation=dilation))
        self.drop = nn.Dropout(dropout)
        self.downsample = nn.Conv1d(n_in, n_out, 1) if n_in != n_out else None

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        if self.causal:
            return F.pad(x, (self.total_pad, 0))
        left = self.total_pad // 2
        return F.pad(x, (left, self.total_pad - left))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        # x (B, C, T), keep (B, 1, T) float 0/1
        h = self.drop(F.relu(self.conv1(self._pad(x * keep))))  # (B, C_out, T)
        h = self.drop(F.relu(self.conv2(self._pad(h * keep))))  # (B, C_out, T)
        res = x if self.downsample is None else self.downsample(x)  # (B, C_out, T)
        return F.relu(h + res)


class TemporalConvNet(nn.Module):
    """The locuslab TCN used by the authors, made mask-aware.

    Invalid steps are set to zero before every convolution, so the output at every step is the output
    of the same network on the sequence where invalid steps hold zeros (exactly what the convolution's
    own padding does at the ends): values in padded or missing steps never matter.

    Shape:
        x ``(B, T, D_in)``, mask ``(B, T)`` bool → ``(B, T, D_out)``.
    """

    def __init__(self, n_in: int, channels: list[int], kernel: int = 3, dropout: float = 0.2,
                 causal: bool = True) -> None:
        super().__init__()
        blocks, prev = [], n_in
        for i, ch in enumerate(channels):
            blocks.append(_TemporalBlock(prev, ch, kernel, 2**i, dropout, causal))
            prev = ch
        self.blocks = nn.ModuleList(blocks)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # locuslab init: conv weights ~ N(0, 0.01)
        for b in self.blocks:
            for conv in (b.conv1, b.conv2):
                nn.init.normal_(conv.parametrizations.weight.original1, 0.0, 0.01)
                with torch.no_grad():
                    w = conv.parametrizations.weight.original1
                    conv.parametrizations.weight.original0.copy_(
                        torch.linalg.vector_norm(w, dim=(1, 2), keepdim=True))
            if b.downsample is not None:
                nn.init.normal_(b.downsample.weight, 0.0, 0.01)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask[:, None, :].to(x.dtype)  # (B, 1, T)
        h = fill_invalid(x, mask).transpose(1, 2)  # (B, D_in, T); invalid steps never read (not even NaN)
        for block in self.blocks:
            h = block(h, keep)  # (B, C, T)
        return h.transpose(1, 2)  # (B, T, D_out)


class Attention(nn.Module):
    """Multi-head self-attention of the authors' code (lucidrains-style: bias-free qkv, inner width
    ``heads × dim_head``), with a key mask.

    Shape:
        x ``(B, T, D)``, mask ``(B, T)`` bool → ``(B, T, D)``.
    """

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = (z.view(b, t, self.heads, self.dim_head).transpose(1, 2)
                   for z in self.to_qkv(x).chunk(3, dim=-1))  # 3 × (B, H, T, dh)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask(mask))  # (B, H, T, dh)
        return self.to_out(out.transpose(1, 2).reshape(b, t, -1))  # (B, T, D)


class ModalEncoder(nn.Module):
    """``concat(x, MHA(x), Transformer(x))`` (paper eq. 3) with a one-layer pre-LN transformer.

    Shape:
        x ``(B, T, D)``, mask ``(B, T)`` bool → ``(B, T, 3 D)``.
    """

    def __init__(self, dim: int, heads: int, dim_head: int, mlp: int, dropout: float) -> None:
        super().__init__()
        self.att = Attention(dim, heads, dim_head, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.trans_att = Attention(dim, heads, dim_head, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp, dim),
                                nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        att = self.att(x, mask)  # (B, T, D)
        h = x + self.trans_att(self.norm1(x), mask)  # (B, T, D)
        h = h + self.ff(self.norm2(h))  # (B, T, D)
        return torch.cat([x, att, h], dim=-1)  # (B, T, 3D)


# ------------------------------------------------------------------------------------------------- model
class ABAW5ERI(FusionModel):
    """The ABAW5 ERI winner's fusion network (see the module docstring).

    ``forward(batch)`` takes ``batch.inputs[m] (B, T_m, D_m)`` and ``batch.masks[m] (B, T_m)`` for any
    non-empty subset of the model's modalities. Returns ``ModelOutput`` with ``preds`` (intensity head),
    ``logits`` (dominant-emotion head) and ``embedding`` (the fused ``d × M`` vector), all ``(B, ·)`` for
    clip-level tasks and ``(B, T, ·)`` for frame-level ones (all modalities on one axis of length ``T``).
    """

    def __init__(self, *, task: TaskSpec, input_dims: dict[str, int], config: ERIConfig) -> None:
        super().__init__(task=task, input_dims=input_dims, config=config)
        c = config
        d, n_mod, k = c.d_model, len(self.modalities), task.num_outputs
        self.embed = nn.ModuleDict({
            m: TemporalConvNet(dim, [d] * c.tcn_levels, c.tcn_kernel, c.tcn_dropout, c.tcn_causal)
            for m, dim in self.input_dims.items()
        })
        self.positions = SinusoidalPositions(d, c.pe_base, c.pe_dropout)
        self.encoders = nn.ModuleDict({
            m: ModalEncoder(d, c.modal_heads, c.modal_dim_head, c.modal_mlp, c.modal_dropout) for m in self.modalities
        })
        half = max(1, d * n_mod // 2)
        self.flatten = c.pooling == "flatten" and task.resolution == "clip"
        span = c.steps if self.flatten else 1  # the projections see `steps` positions, or one pooled vector
        self.regress = nn.Sequential(nn.Linear(3 * d * n_mod * span, half), nn.ReLU())
        fused = half
        if c.interaction:
            self.missing = nn.ParameterDict({m: nn.Parameter(torch.zeros(d)) for m in self.modalities})
            self.interaction = ModalEncoder(d * n_mod, c.inter_heads, c.inter_dim_head, c.inter_mlp, c.inter_dropout)
            self.proj = nn.Sequential(nn.Linear(3 * d * n_mod * span, half), nn.ReLU())
            fused += half
        self.intensity_head = nn.Linear(fused, k)
        self.class_head = nn.Linear(fused, k)
        self.fused_dim = fused

    def forward(self, batch: Batch) -> ModelOutput:
        mods = self.present(batch)
        c, d = self.config, self.config.d_model
        frame = self.task.resolution == "frame"
        inputs, masks, t = align_modalities(batch, mods, frame_level=frame, owner=type(self).__name__)
        if self.flatten and t > c.steps:  # the authors cut every sequence to `steps` before the model
            inputs = {m: x[:, : c.steps] for m, x in inputs.items()}
            masks = {m: x[:, : c.steps] for m, x in masks.items()}
            t = c.steps
        x0 = inputs[mods[0]]
        b, dev, dt = x0.shape[0], x0.device, x0.dtype

        emb: dict[str, torch.Tensor] = {}
        for m in mods:
            masks[m] = masks[m].to(dev)  # (B, T)
            x = fill_invalid(inputs[m].to(dt), masks[m])  # (B, T, D_m); padding never read
            emb[m] = self.positions(self.embed[m](x, masks[m]) * math.sqrt(d))  # (B, T, d)  (eq. 1)

        # modality encoders -> g_cat (eqs. 4, 7)
        parts = []
        for m in self.modalities:
            if m in emb:
                g = self.encoders[m](emb[m], masks[m])  # (B, T, 3d)
                g = fill_invalid(g, masks[m]) if frame else self._pool(g, masks[m])  # (B, [T,] 3d [* steps])
            else:
                g = x0.new_zeros((b, t, 3 * d) if frame else (b, 3 * d * (c.steps if self.flatten else 1)))
            parts.append(g)
        fused = [self.regress(torch.cat(parts, dim=-1))]  # (B, [T,] dM/2)

        # interaction encoder on the feature-concatenated embeddings (eqs. 5, 6)
        if c.interaction:
            cols, union = [], torch.zeros(b, t, dtype=torch.bool, device=dev)
            for m in self.modalities:
                if m in emb:
                    cols.append(fill_invalid(emb[m], masks[m], self.missing[m]))  # (B, T, d)
                    union = union | masks[m]
                else:
                    cols.append(self.missing[m].to(dt).expand(b, t, d))  # (B, T, d)
            g_av = self.interaction(torch.cat(cols, dim=-1), union)  # (B, T, 3dM)
            g_av = fill_invalid(g_av, union) if frame else self._pool(g_av, union)  # (B, [T,] 3dM [* steps])
            fused.append(self.proj(g_av))  # (B, [T,] dM/2)

        z = torch.cat(fused, dim=-1)  # (B, [T,] dM)
        return ModelOutput(preds=self.intensity_head(z), logits=self.class_head(z), embedding=z)

    def _pool(self, g: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Clip-level pooling: the first ``steps`` steps flattened (invalid ones zero), or the masked mean.

        Shape:
            g ``(B, T, F)``, mask ``(B, T)`` → ``(B, steps * F)`` (flatten) or ``(B, F)``.
        """
        if not self.flatten:
            return masked_pool(g, mask)
        s = self.config.steps
        g = fill_invalid(g, mask)[:, :s]  # (B, <=s, F)
        if g.shape[1] < s:
            g = F.pad(g, (0, 0, 0, s - g.shape[1]))  # (B, s, F)
        return g.flatten(1)  # (B, s * F)


def _create_abaw5_eri(task: TaskSpec, input_dims: dict[str, int], config: ERIConfig) -> ABAW5ERI:
    return ABAW5ERI(task=task, input_dims=input_dims, config=config)


_SMALL = dict(d_model=32, tcn_levels=2, modal_dim_head=16, modal_mlp=64, inter_heads=2, inter_dim_head=16,
              inter_mlp=64)


@MODELS.register("abaw5_eri")
def abaw5_eri(*, task: TaskSpec, input_dims: dict[str, int], **overrides: Any) -> ABAW5ERI:
    """Paper size: ``d_model`` 256, 5-level TCN, encoders of 2 (modality) and 8 (interaction) heads."""
    return _create_abaw5_eri(task, input_dims, make_config(ERIConfig, overrides))


@MODELS.register("abaw5_eri_small")
def abaw5_eri_small(*, task: TaskSpec, input_dims: dict[str, int], **overrides: Any) -> ABAW5ERI:
    """Small variant for tests: ``d_model`` 32, 2 TCN levels, ``dim_head`` 16, MLP 64."""
    return _create_abaw5_eri(task, input_dims, make_config(ERIConfig, {**_SMALL, **overrides}))
