"""Blocks shared by two or more fusion models.

Everything here respects the masking convention of :class:`affectfuse.types.Batch`: boolean masks are
``True`` where a row holds real data, and a block's output never depends on the values stored in
invalid rows. Attention over a row with no valid key gives a zero context vector (instead of the NaN a
plain softmax over ``-inf`` would give), so samples that lack a modality stay finite.

Contents:

* :func:`sinusoidal_positions` — the fixed sine/cosine table of Vaswani et al. (2017);
* :func:`pad_and_stack` — list of ``(T_i, D)`` tensors → padded ``(B, T, D)`` + mask;
* :func:`align_modalities` — bring a batch's modalities to one time axis (pad for clip-level tasks,
  insist on equal lengths for frame-level tasks);
* :class:`MultiHeadAttention` — masked multi-head (cross- or self-) attention on
  ``F.scaled_dot_product_attention`` with independent query / key / value widths;
* :class:`TransformerEncoderLayer` — masked encoder layer, post-LN (Vaswani) or pre-LN;
* :class:`AttentionPool` — masked additive-attention pooling over time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from affectfuse.types import Batch

__all__ = [
    "sinusoidal_positions",
    "pad_and_stack",
    "align_modalities",
    "fill_invalid",
    "MultiHeadAttention",
    "TransformerEncoderLayer",
    "AttentionPool",
]


def sinusoidal_positions(length: int, dim: int, *, device=None, dtype=None) -> torch.Tensor:
    """Fixed sine/cosine position table.

    ``pe[t, 2i] = sin(t / 10000^(2i/dim))``, ``pe[t, 2i+1] = cos(t / 10000^(2i/dim))``; odd ``dim``
    drops the last cosine column.

    Shape:
        → ``(length, dim)``.
    """
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)  # (T, 1)
    half = (dim + 1) // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) * 2 / dim)  # (half,)
    ang = pos * freq  # (T, half)
    pe = torch.stack([ang.sin(), ang.cos()], dim=-1).reshape(length, 2 * half)[:, :dim]  # (T, dim)
    return pe.to(dtype) if dtype is not None else pe


def pad_and_stack(seqs: Sequence[torch.Tensor], *, length: int | None = None, value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack variable-length sequences into a padded batch and its validity mask.

    Args:
        seqs: tensors ``(T_i, D)`` (same D, dtype and device).
        length: padded length; default ``max(T_i)``. Must be ``>= max(T_i)``.
        value: fill value of padded rows.

    Shape:
        → ``(B, T, D)`` and bool ``(B, T)`` (True = real row).
    """
    if not seqs:
        raise ValueError("pad_and_stack: needs at least one sequence")
    t_max = max(int(s.shape[0]) for s in seqs)
    length = t_max if length is None else int(length)
    if length < t_max:
        raise ValueError(f"pad_and_stack: length={length} is shorter than the longest sequence ({t_max})")
    first = seqs[0]
    out = first.new_full((len(seqs), length, *first.shape[1:]), value)  # (B, T, D)
    mask = torch.zeros(len(seqs), length, dtype=torch.bool, device=first.device)  # (B, T)
    for i, s in enumerate(seqs):
        out[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = True
    return out, mask


def fill_invalid(x: torch.Tensor, mask: torch.Tensor, fill: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Replace invalid rows of ``x`` by ``fill`` (a scalar or a ``(D,)`` vector, e.g. a learned embedding).

    Shape:
        x ``(B, T, D)``, mask ``(B, T)`` → ``(B, T, D)``.
    """
    if not torch.is_tensor(fill):
        fill = x.new_tensor(fill)
    return torch.where(mask.unsqueeze(-1), x, fill.to(x.dtype))


def align_modalities(
    batch: Batch, mods: Sequence[str], *, frame_level: bool, owner: str
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], int]:
    """Bring the given modalities of a batch onto one time axis of length T.

    Frame-level tasks need one output per step, so all modalities must already share T (the data
    pipeline aligns them); a mismatch raises. Clip-level tasks pad the shorter modalities with invalid
    rows up to the longest one.

    Args:
        batch: the batch.
        mods: modalities to align (all present in ``batch.inputs``).
        frame_level: whether the task predicts one output per time step.
        owner: model name used in error messages.

    Returns:
        inputs ``{m: (B, T, D_m)}``, masks ``{m: (B, T)}`` bool, and T.
    """
    lengths = {m: batch.inputs[m].shape[1] for m in mods}  # no int(): symbolic under torch.export (ONNX)
    for m in mods:
        x, mk = batch.inputs[m], batch.masks.get(m)
        if mk is None:
            raise KeyError(f"{owner}: batch has inputs[{m!r}] but no masks[{m!r}]")
        if x.ndim != 3 or tuple(mk.shape) != tuple(x.shape[:2]):
            raise ValueError(f"{owner}: modality {m!r} expected inputs (B, T, D) and mask (B, T); "
                             f"got inputs {tuple(x.shape)} and mask {tuple(mk.shape)}")
    t = max(lengths.values())
    if frame_level and any(n != t for n in lengths.values()):
        raise ValueError(f"{owner}: a frame-level task needs all modalities on one time axis, got lengths {lengths}; "
                         "align them in the data pipeline (resample features to the label times)")
    inputs, masks = {}, {}
    for m in mods:
        x, mk = batch.inputs[m], batch.masks[m].to(torch.bool)
        if x.shape[1] < t:
            x = F.pad(x, (0, 0, 0, t - x.shape[1]))  # (B, T, D_m)
            mk = F.pad(mk, (0, t - mk.shape[1]), value=False)  # (B, T)
        inputs[m], masks[m] = x, mk
    return inputs, masks, t


class MultiHeadAttention(nn.Module):
    """Masked multi-head attention with independent query, key and value widths.

    ``out = W_o · softmax(Q Kᵀ / √d_head) V`` per head, with ``Q = W_q q``, ``K = W_k c``, ``V = W_v c``.
    Keys whose mask is False get zero weight. A query whose row has no valid key at all gets a zero
    context vector (so the output is ``W_o · 0 + b_o``), never NaN.

    Args:
        q_dim: width of the queries.
        kv_dim: width of the context (default ``q_dim``).
        num_heads: heads; ``qk_dim`` and ``v_dim`` must be divisible by it.
        qk_dim: width of the query/key projections (default ``q_dim``).
        v_dim: width of the value projection (default ``qk_dim``).
        out_dim: output width (default ``q_dim``).
        dropout: dropout on the attention probabilities (training only).
        bias: whether the projections have biases.
    """

    def __init__(self, q_dim: int, kv_dim: int | None = None, *, num_heads: int = 1, qk_dim: int | None = None,
                 v_dim: int | None = None, out_dim: int | None = None, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        kv_dim = q_dim if kv_dim is None else kv_dim
        qk_dim = q_dim if qk_dim is None else qk_dim
        v_dim = qk_dim if v_dim is None else v_dim
        out_dim = q_dim if out_dim is None else out_dim
        for name, d in (("qk_dim", qk_dim), ("v_dim", v_dim)):
            if d % num_heads:
                raise ValueError(f"MultiHeadAttention: {name}={d} must be divisible by num_heads={num_heads}")
        self.num_heads, self.dropout = num_heads, float(dropout)
        self.q = nn.Linear(q_dim, qk_dim, bias=bias)
        self.k = nn.Linear(kv_dim, qk_dim, bias=bias)
        self.v = nn.Linear(kv_dim, v_dim, bias=bias)
        self.out = nn.Linear(v_dim, out_dim, bias=bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)  # (B, H, N, d_h)

    def forward(self, query: torch.Tensor, context: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from ``query`` into ``context`` (self-attention when ``context`` is None).

        Shape:
            query ``(B, Q, q_dim)``, context ``(B, S, kv_dim)``, key_mask bool ``(B, S)`` → ``(B, Q, out_dim)``.
        """
        context = query if context is None else context
        q = self._heads(self.q(query))  # (B, H, Q, d_qk)
        k = self._heads(self.k(context))  # (B, H, S, d_qk)
        v = self._heads(self.v(context))  # (B, H, S, d_v)
        attn_mask, has_key = None, None
        if key_mask is not None:
            key_mask = key_mask.to(torch.bool)
            has_key = key_mask.any(dim=-1)  # (B,)
            # rows without any valid key attend to everything (finite) and are zeroed below
            attn_mask = (key_mask | ~has_key.unsqueeze(-1))[:, None, None, :]  # (B, 1, 1, S)
        ctx = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, H, Q, d_v)
        if has_key is not None:
            ctx = ctx * has_key.to(ctx.dtype)[:, None, None, None]
        b, h, nq, dv = ctx.shape
        ctx = ctx.transpose(1, 2).reshape(b, nq, h * dv)  # (B, Q, v_dim)
        return self.out(ctx)  # (B, Q, out_dim)


class TransformerEncoderLayer(nn.Module):
    """A masked Transformer encoder layer.

    Post-LN (``norm_first=False``, Vaswani et al. / ``nn.TransformerEncoderLayer``)::

        x = LN(x + Drop(MHA(x, mask)));  x = LN(x + Drop(FFN(x)))

    or pre-LN (``norm_first=True``)::

        x = x + Drop(MHA(LN(x), mask));  x = x + Drop(FFN(LN(x)))

    Args:
        d_model: token width.
        num_heads: attention heads.
        ff_dim: hidden width of the feed-forward block.
        dropout: dropout on attention probabilities and on both residual branches.
        activation: ``"relu"`` or ``"gelu"``.
        norm_first: pre-LN instead of post-LN.
    """

    def __init__(self, d_model: int, num_heads: int, ff_dim: int, *, dropout: float = 0.0,
                 activation: str = "relu", norm_first: bool = False) -> None:
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"TransformerEncoderLayer: activation must be 'relu' or 'gelu', got {activation!r}")
        self.attn = MultiHeadAttention(d_model, num_heads=num_heads, dropout=dropout)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_dim), nn.ReLU() if activation == "relu" else nn.GELU(),
                                nn.Dropout(dropout), nn.Linear(ff_dim, d_model))
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Shape: x ``(B, T, D)``, mask bool ``(B, T)`` (key padding; True = valid) → ``(B, T, D)``."""
        if self.norm_first:
            h = self.norm1(x)
            x = x + self.drop1(self.attn(h, h, mask))  # (B, T, D)
            return x + self.drop2(self.ff(self.norm2(x)))  # (B, T, D)
        x = self.norm1(x + self.drop1(self.attn(x, x, mask)))  # (B, T, D)
        return self.norm2(x + self.drop2(self.ff(x)))  # (B, T, D)


class AttentionPool(nn.Module):
    """Masked additive-attention pooling over time: ``Σ_t softmax_t(wᵀ tanh(W x_t)) x_t``.

    A row with no valid step pools to zeros.

    Args:
        dim: token width.
        hidden: width of the scoring layer.
    """

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Shape: x ``(B, T, D)``, mask bool ``(B, T)`` → ``(B, D)``."""
        mask = mask.to(torch.bool)
        x = fill_invalid(x, mask)  # (B, T, D)
        s = self.score(x).squeeze(-1).masked_fill(~mask, float("-inf"))  # (B, T)
        has = mask.any(dim=1, keepdim=True)  # (B, 1)
        w = torch.softmax(s.masked_fill(~has, 0.0), dim=1) * has  # (B, T)
        return torch.einsum("bt,btd->bd", w, x)  # (B, D)
