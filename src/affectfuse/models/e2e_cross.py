"""End-to-end group emotion model: image backbone + HuBERT, self- and cross-modal attention.

Paper: L. Evtodienko, "Multimodal End-to-End Group Emotion Recognition using Cross-Modal Attention",
arXiv 2111.05890 (VGAF, EmotiW 2020 data): 60.37 % validation accuracy with ResNet101d + HuBERT. No public
code exists (``/work/shared/design/seed-code-facts.md`` §5); everything here follows the paper's text, with
our own choices marked.

What the paper specifies, and how it is built here:

* **Frames** (section 4.1): 8 equally spaced frames per clip; ``v_emb = PL(ResNet101d(M(v)))`` with ``M`` a
  mean-pooling over the frames, "an inexpensive way to make use of temporal information", inspired by
  ClipBERT — whose sparse sampling runs the backbone on every sampled frame and pools the frames' features.
  That reading is the default (``frame_pooling="features"``: backbone per valid frame, masked mean of the
  feature maps). ``frame_pooling="pixels"`` takes the equation's symbols literally (the masked mean of the
  frames' pixels, one image per clip through the backbone): an option, N times cheaper.
* **Pretrained backbones** (section 5 fine-tunes an ImageNet ResNet101d and HuBERT pretrained on LibriSpeech):
  ``backbone_init="pretrained"`` (default) loads timm's ImageNet weights (hub, or the local timm / Hugging
  Face cache), ``backbone_checkpoint=PATH`` a local state dict; a randomly initialised image backbone is only
  built when asked for by name (``backbone_init="random"``, as the tiny test variant does) — fine-tuning a
  random ResNet at ``lr × 0.01`` is not the paper's model. HuBERT comes from ``audio_model`` (hub id or folder).
* The backbone's feature map is flattened over its last two (spatial) dimensions; each of the ``h × w``
  positions becomes a token of width ``C`` (our reading of "flatten embedding on last two dimensions"),
  then a projection layer ``PL`` (one ``Linear``) maps it to ``d_model``. ViT-like timm backbones whose
  ``forward_features`` already returns tokens ``(B, N, C)`` are used as they are.
* **Audio**: raw 16 kHz waveform → HuBERT (``facebook/hubert-base-ls960`` by default) → last hidden states →
  ``PL``. HuBERT-base uses group norm in its first convolution, so zero padding changes its output; every
  sample is therefore encoded on its own valid samples only (samples of equal valid length are batched
  together), which makes the output exactly independent of padding. A clip with fewer valid samples than
  HuBERT's receptive field (400 samples = 25 ms) counts as having no audio.
* **Attention**: self-attention over the concatenation ``a_emb ⊕ v_emb``; cross-modal attention
  ``Q = v, K = V = a`` and ``Q = a, K = V = v``; each with a skip connection (``x + attn(x)``). A learned
  modality-type vector is added to each stream's tokens (ours: otherwise self-attention cannot tell audio
  from visual tokens).
* **Head**: masked means of the three attention outputs are concatenated (ours), ``LayerNorm`` ("applied
  before penultimate projection layers") → ``Linear(3d → d)`` → ReLU → dropout → ``Linear(d → K)``.
* **Training** (section 5, applied by the training code): Adam lr 1e-4, weight decay 1e-3, encoders at
  ``lr × 0.01`` (``param_groups``; ``backbone_lr_scale``), label smoothing 0.2, nothing frozen.

Raw inputs (``batch.raw`` and ``batch.masks``), named by ``input_dims``, e.g. ``{"pixels": 3, "waveform": 1}``
(the values are the channel counts: 3 colour channels, 1 audio channel); either may be left out of
``input_dims`` (a unimodal model) or be absent from a batch or missing for some samples:

* ``raw["pixels"]`` ``(B, N, 3, H, W)`` float, already normalised with the model's ``image_mean`` /
  ``image_std`` at ``image_size`` (use :meth:`E2ECross.prepare_pixels` on uint8 frames), with
  ``masks["pixels"]`` ``(B, N)`` bool;
* ``raw["waveform"]`` ``(B, S)`` float mono at 16 kHz, with ``masks["waveform"]`` ``(B, S)`` bool
  (True = a real sample; invalid samples are dropped, so padding anywhere never matters).

Registered variants: ``e2e_cross`` (ResNet101d, HuBERT-base, ``d_model`` 512, 8 heads; the paper gives no
width) and ``e2e_cross_small`` (timm ``test_resnet`` + a tiny random HuBERT built from a config, for tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from affectfuse._config import make_config
from affectfuse._registry import MODELS
from affectfuse.models.base import FusionModel
from affectfuse.models.layers import MultiHeadAttention
from affectfuse.tasks.spec import TaskSpec
from affectfuse.types import Batch, ModelOutput

__all__ = ["E2EConfig", "E2ECross"]

RAW_MODALITIES = {"pixels": 3, "waveform": 1}
#: one output per clip: frame-level tasks are refused (``affectfuse models --task va`` leaves it out)
RESOLUTIONS = ("clip",)
SAMPLE_RATE = 16000


@dataclass(frozen=True, kw_only=True)
class E2EConfig:
    """Configuration of :class:`E2ECross`.

    Attributes:
        backbone: timm model name of the image encoder (paper: ``resnet101d``).
        backbone_init: ``"pretrained"`` (timm's pretrained weights, from the hub or its local cache; the
            paper), or ``"random"`` (untrained: tests, or an explicit choice); ignored when
            ``backbone_checkpoint`` is given.
        backbone_checkpoint: local ``.safetensors`` / ``.pth`` state dict for the backbone (classifier keys
            are ignored; loaded with ``weights_only``).
        image_size: square input side; None = the backbone's default (``pretrained_cfg["input_size"]``).
        frame_pooling: ``"features"`` (ClipBERT-style: backbone per frame, mean of the features; default) or
            ``"pixels"`` (the mean frame through the backbone once).
        audio_model: HuBERT hub id (must already be in the local Hugging Face cache) or local directory.
        audio_config: if set, a ``HubertConfig`` built from this dict with random weights (no download);
            overrides ``audio_model``.
        normalize_waveform: zero-mean / unit-variance per clip before HuBERT (False for hubert-base-ls960,
            whose feature extractor does not normalise).
        d_model: common width of the projected tokens (not given in the paper).
        heads: attention heads.
        dropout: dropout in the attention layers and the head.
        modality_embeddings: add a learned type vector to the audio and visual tokens.
        backbone_lr_scale: learning-rate factor of both encoders in ``param_groups`` (paper: 1e-2).
    """

    backbone: str = "resnet101d"
    backbone_init: str = "pretrained"
    backbone_checkpoint: str | None = None
    image_size: int | None = None
    frame_pooling: str = "features"
    audio_model: str = "facebook/hubert-base-ls960"
    audio_config: dict[str, Any] | None = None
    normalize_waveform: bool = False
    d_model: int = 512
    heads: int = 8
    dropout: float = 0.1
    modality_embeddings: bool = True
    backbone_lr_scale: float = 0.01

    def validate(self) -> "E2EConfig":
        if self.backbone_init not in ("pretrained", "random"):
            raise ValueError(f"E2EConfig.backbone_init: expected 'pretrained' or 'random' (an untrained backbone, "
                             f"asked for by name), got {self.backbone_init!r}")
        if self.frame_pooling not in ("pixels", "features"):
            raise ValueError(f"E2EConfig.frame_pooling: expected 'pixels' or 'features', got {self.frame_pooling!r}")
        if not isinstance(self.d_model, int) or self.d_model < 1 or self.d_model % self.heads:
            raise ValueError(f"E2EConfig.d_model: expected a positive multiple of heads={self.heads}, got {self.d_model!r}")
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"E2EConfig.image_size: expected None or >= 8, got {self.image_size!r}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"E2EConfig.dropout: expected a probability in [0, 1), got {self.dropout!r}")
        if not 0.0 <= float(self.backbone_lr_scale):
            raise ValueError(f"E2EConfig.backbone_lr_scale: expected >= 0, got {self.backbone_lr_scale!r}")
        if self.audio_config is not None and not isinstance(self.audio_config, dict):
            raise ValueError(f"E2EConfig.audio_config: expected a dict of HubertConfig fields, got {type(self.audio_config).__name__}")
        return self


def _plain(v: Any) -> Any:
    """Tuples → lists, recursively, so a config equals its YAML round trip."""
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


# ------------------------------------------------------------------------------------------------ helpers
def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over valid rows of dim 1 (exact zeros for invalid rows, even NaN); empty rows give zeros.

    Shape:
        x ``(B, T, *F)``, mask ``(B, T)`` bool → ``(B, *F)``.
    """
    m = mask.reshape(*mask.shape, *([1] * (x.dim() - 2)))
    x = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))
    return x.sum(1) / m.to(x.dtype).sum(1).clamp(min=1.0)


class _SkipAttention(nn.Module):
    """``q + Dropout(MHA(q, kv, kv))`` with a key mask; queries without any valid key get no update.

    Shape:
        q ``(B, Tq, D)``, kv ``(B, Tk, D)``, kv_mask ``(B, Tk)`` bool → ``(B, Tq, D)``.
    """

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, num_heads=heads, dropout=dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, kv_mask: torch.Tensor) -> torch.Tensor:
        has_key = kv_mask.any(1)  # (B,)
        out = self.attn(q, kv, kv_mask)  # (B, Tq, D)
        return q + self.drop(out) * has_key[:, None, None].to(out.dtype)  # skip connection


# ------------------------------------------------------------------------------------------------- model
class E2ECross(FusionModel):
    """End-to-end cross-modal group emotion model (see the module docstring).

    Attributes:
        image_mean, image_std: per-channel normalisation the pixels must carry (from the backbone).
        image_size: the square side :meth:`prepare_pixels` resizes frames to.
        raw_inputs: the raw modalities this model reads from ``batch.raw``.
    """

    raw_inputs: tuple[str, ...] = ("pixels", "waveform")

    def __init__(self, *, task: TaskSpec, input_dims: dict[str, int], config: E2EConfig) -> None:
        super().__init__(task=task, input_dims=input_dims, config=config)
        unknown = {m: c for m, c in input_dims.items() if RAW_MODALITIES.get(m) != c}
        if unknown:
            raise ValueError(f"E2ECross: input_dims must name raw modalities with their channel counts "
                             f"{RAW_MODALITIES} (or a subset); got {input_dims}")
        if task.resolution != "clip":
            raise ValueError(f"E2ECross predicts one output per clip; task {task.name!r} is {task.resolution}-level")
        c, d = config, config.d_model
        self.visual: nn.Module | None = None
        self.audio: nn.Module | None = None
        if "pixels" in input_dims:
            self.visual, vdim = self._build_backbone(c)
            self.visual_proj = nn.Linear(vdim, d)
        if "waveform" in input_dims:
            self.audio = self._build_audio(c)
            self.audio_proj = nn.Linear(self.audio.config.hidden_size, d)
        if c.modality_embeddings:
            self.type_embed = nn.ParameterDict({m: nn.Parameter(torch.randn(d) * 0.02) for m in input_dims})
        self.self_attn = _SkipAttention(d, c.heads, c.dropout)
        n_streams = 1
        if len(input_dims) == 2:
            self.cross_va = _SkipAttention(d, c.heads, c.dropout)  # visual queries audio
            self.cross_av = _SkipAttention(d, c.heads, c.dropout)  # audio queries visual
            n_streams = 3
        self.head = nn.Sequential(nn.LayerNorm(n_streams * d), nn.Linear(n_streams * d, d), nn.ReLU(),
                                  nn.Dropout(c.dropout), nn.Linear(d, task.num_outputs))

    # -------------------------------------------------------------------------------------- encoders
    def _build_backbone(self, c: E2EConfig) -> tuple[nn.Module, int]:
        from affectfuse._compat import import_timm

        timm = import_timm()
        pretrained = c.backbone_init == "pretrained" and not c.backbone_checkpoint
        try:
            net = timm.create_model(c.backbone, pretrained=pretrained, num_classes=0, global_pool="")
        except Exception as e:  # noqa: BLE001 - timm raises hub / cache errors of several kinds
            if not pretrained:
                raise
            raise OSError(f"E2ECross: cannot load timm's pretrained {c.backbone!r} weights ({type(e).__name__}: {e}). "
                          f"They come from the Hugging Face hub or its local cache; offline, pass "
                          f"backbone_checkpoint=<state dict file>, or backbone_init='random' to train an untrained "
                          f"backbone (not the paper's setting)") from e
        if c.backbone_checkpoint:
            _load_backbone_checkpoint(net, Path(c.backbone_checkpoint))
        data_cfg = timm.data.resolve_model_data_config(net)
        self.image_mean = tuple(float(v) for v in data_cfg["mean"])
        self.image_std = tuple(float(v) for v in data_cfg["std"])
        self.image_size = int(c.image_size or data_cfg["input_size"][-1])
        return net, int(net.num_features)

    @staticmethod
    def _build_audio(c: E2EConfig) -> nn.Module:
        from transformers import HubertConfig, HubertModel

        if c.audio_config is not None:
            return HubertModel(HubertConfig(**c.audio_config))
        try:
            return HubertModel.from_pretrained(c.audio_model)
        except OSError as e:
            raise OSError(f"E2ECross: cannot load the HuBERT weights {c.audio_model!r} (a local directory, or a hub id "
                          f"already in the Hugging Face cache; downloads are off when HF_HUB_OFFLINE=1). Pass "
                          f"audio_model=<dir> or audio_config={{...}} for random weights. Cause: {e}") from e

    def prepare_pixels(self, frames: Any) -> torch.Tensor:
        """uint8 RGB frames → the normalised float pixels this model expects in ``raw["pixels"]``.

        Frames are resized (bilinear, antialiased, no crop: group scenes fill the whole frame) to
        ``image_size × image_size``, scaled to [0, 1] and normalised with ``image_mean`` / ``image_std``.

        Shape:
            frames ``(B, N, H, W, 3)`` uint8 (numpy or torch) → ``(B, N, 3, S, S)`` float32.
        """
        if self.visual is None:
            raise ValueError("E2ECross.prepare_pixels: this model was built without 'pixels' in input_dims")
        x = torch.as_tensor(frames)
        if x.dim() != 5 or x.shape[-1] != 3 or x.dtype != torch.uint8:
            raise ValueError(f"E2ECross.prepare_pixels: expected uint8 frames (B, N, H, W, 3), got "
                             f"{x.dtype} {tuple(x.shape)}")
        b, n, h, w, _ = x.shape
        x = x.reshape(b * n, h, w, 3).permute(0, 3, 1, 2).float() / 255.0  # (BN, 3, H, W)
        s = self.image_size
        if (h, w) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)  # (BN, 3, S, S)
        mean = torch.tensor(self.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std).view(1, 3, 1, 1)
        return ((x - mean) / std).reshape(b, n, 3, s, s)  # (B, N, 3, S, S)

    def _features_to_tokens(self, f: torch.Tensor) -> torch.Tensor:
        if f.dim() == 4:  # CNN map (B, C, h, w) -> h*w tokens
            return f.flatten(2).transpose(1, 2)  # (B, hw, C)
        return f  # (B, N_tok, C)

    def _encode_visual(self, pixels: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # pixels (B, N, 3, H, W), mask (B, N) -> tokens (B, S_v, d), token mask (B, S_v)
        b = pixels.shape[0]
        has = mask.any(1)  # (B,)
        idx = has.nonzero().squeeze(1)
        d = self.config.d_model
        if idx.numel() == 0:
            return pixels.new_zeros(b, 1, d), torch.zeros(b, 1, dtype=torch.bool, device=pixels.device)
        px, pm = pixels[idx], mask[idx]  # (B', N, 3, H, W), (B', N)
        if self.config.frame_pooling == "pixels":
            img = _masked_mean(px, pm)  # (B', 3, H, W): M(v), mean over valid frames
            tok = self._features_to_tokens(self.visual.forward_features(img))  # (B', S_v, C)
        else:
            bp, n = pm.shape
            flat_idx = pm.reshape(-1).nonzero().squeeze(1)
            f = self.visual.forward_features(px.reshape(bp * n, *px.shape[2:])[flat_idx])  # (V, ...)
            tok = self._features_to_tokens(f)  # (V, S_v, C)
            full = tok.new_zeros(bp * n, *tok.shape[1:]).index_copy(0, flat_idx, tok)  # (B'N, S_v, C)
            tok = _masked_mean(full.reshape(bp, n, *tok.shape[1:]), pm)  # (B', S_v, C)
        tok = self.visual_proj(tok)  # (B', S_v, d)
        out = tok.new_zeros(b, tok.shape[1], d).index_copy(0, idx, tok)  # (B, S_v, d)
        tmask = has[:, None].expand(b, tok.shape[1])  # (B, S_v)
        return out, tmask

    def _encode_audio(self, wave: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # wave (B, S), mask (B, S) -> tokens (B, F, d), token mask (B, F)
        b, dev = wave.shape[0], wave.device
        d = self.config.d_model
        lengths = mask.sum(1)  # (B,)
        n_frames = self.audio._get_feat_extract_output_lengths(lengths).clamp(min=0)  # (B,)
        n_frames = torch.where(lengths > 0, n_frames, torch.zeros_like(n_frames))
        cfg = self.audio.config
        per_sample: dict[int, torch.Tensor] = {}
        for length in sorted(set(lengths.tolist())):
            rows = ((lengths == length) & (n_frames > 0)).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            x = wave[rows][mask[rows]].reshape(len(rows), length)  # (b_L, L) valid samples only
            if self.config.normalize_waveform:
                x = (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-7)
            n = int(n_frames[rows[0]])
            kw: dict[str, Any] = {}
            if self.training and n <= cfg.mask_time_length:  # too short for SpecAugment's time masks
                kw["mask_time_indices"] = torch.zeros(len(rows), n, dtype=torch.bool, device=dev)
            h = self.audio(input_values=x, **kw).last_hidden_state  # (b_L, F_L, H)
            for j, r in enumerate(rows.tolist()):
                per_sample[r] = h[j]
        f_max = max([1] + [int(v) for v in n_frames.tolist()])
        hidden = self.audio.config.hidden_size
        seqs = [per_sample.get(r, wave.new_zeros(0, hidden)) for r in range(b)]
        padded = torch.stack([F.pad(s, (0, 0, 0, f_max - s.shape[0])) for s in seqs])  # (B, F, H)
        tmask = torch.arange(f_max, device=dev)[None, :] < torch.as_tensor(
            [s.shape[0] for s in seqs], device=dev)[:, None]  # (B, F)
        return self.audio_proj(padded), tmask  # (B, F, d), (B, F)

    # ------------------------------------------------------------------------------------------ forward
    def _present(self, batch: Batch) -> list[str]:
        unknown = sorted(set(batch.raw) - set(self.input_dims))
        if unknown:
            raise KeyError(f"E2ECross: batch.raw has {unknown}, the model was built for {self.modalities}")
        mods = [m for m in self.modalities if m in batch.raw]
        if not mods:
            raise ValueError(f"E2ECross: batch.raw carries none of the model's raw modalities {self.modalities} "
                             f"(got raw={sorted(batch.raw)}, inputs={sorted(batch.inputs)})")
        for m in mods:
            x, mask = batch.raw[m], batch.masks.get(m)
            want = 5 if m == "pixels" else 2
            if x.dim() != want or (m == "pixels" and x.shape[2] != 3):
                raise ValueError(f"E2ECross: raw[{m!r}] expected "
                                 f"{'(B, N, 3, H, W)' if m == 'pixels' else '(B, S)'}, got {tuple(x.shape)}")
            if mask is None or tuple(mask.shape) != tuple(x.shape[:2]):
                raise ValueError(f"E2ECross: masks[{m!r}] expected bool {tuple(x.shape[:2])}, got "
                                 f"{None if mask is None else tuple(mask.shape)}")
        return mods

    def forward(self, batch: Batch) -> ModelOutput:
        mods = self._present(batch)
        b = batch.raw[mods[0]].shape[0]
        dev = batch.raw[mods[0]].device
        streams: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for m in self.modalities:
            if m in mods:
                x, mask = batch.raw[m], batch.masks[m].to(device=dev, dtype=torch.bool)
                tok, tmask = self._encode_visual(x, mask) if m == "pixels" else self._encode_audio(x, mask)
            else:
                tok = torch.zeros(b, 1, self.config.d_model, device=dev)
                tmask = torch.zeros(b, 1, dtype=torch.bool, device=dev)
            if self.config.modality_embeddings:
                tok = tok + self.type_embed[m]
            streams[m] = (tok, tmask)

        order = [m for m in ("waveform", "pixels") if m in streams]  # a_emb ⊕ v_emb
        cat = torch.cat([streams[m][0] for m in order], dim=1)  # (B, S_a + S_v, d)
        cat_mask = torch.cat([streams[m][1] for m in order], dim=1)  # (B, S_a + S_v)
        pooled = [_masked_mean(self.self_attn(cat, cat, cat_mask), cat_mask)]  # (B, d)
        if len(order) == 2:
            (a, am), (v, vm) = streams["waveform"], streams["pixels"]
            pooled.append(_masked_mean(self.cross_va(v, a, am), vm))  # (B, d): Q = v, K = V = a
            pooled.append(_masked_mean(self.cross_av(a, v, vm), am))  # (B, d): Q = a, K = V = v
        z = torch.cat(pooled, dim=-1)  # (B, n_streams * d)
        return ModelOutput(preds=self.head(z), embedding=z)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Encoders (image backbone, HuBERT) at ``lr × backbone_lr_scale``, everything else at ``lr``."""
        enc = [p for mod in (self.visual, self.audio) if mod is not None for p in mod.parameters() if p.requires_grad]
        ids = {id(p) for p in enc}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [{"params": enc, "lr": lr * self.config.backbone_lr_scale, "name": "encoders"},
                {"params": rest, "lr": lr, "name": "fusion"}]


def _load_backbone_checkpoint(net: nn.Module, path: Path) -> None:
    """Load a local state dict into the timm backbone; classifier keys are ignored, other mismatches raise."""
    if not path.is_file():
        raise FileNotFoundError(f"E2ECross: backbone_checkpoint {path} does not exist")
    from affectfuse.extractors._torch_utils import load_state_dict

    state = load_state_dict(path)  # safetensors or weights_only torch file, unwrapped, "module." stripped
    missing, unexpected = net.load_state_dict(state, strict=False)
    head = ("fc.", "head.", "classifier.", "last_linear.")
    unexpected = [k for k in unexpected if not k.startswith(head)]
    if missing or unexpected:
        raise ValueError(f"E2ECross: {path} does not match backbone: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                         f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")


def _create_e2e_cross(task: TaskSpec, input_dims: dict[str, int], config: E2EConfig) -> E2ECross:
    return E2ECross(task=task, input_dims=input_dims, config=config)


TINY_HUBERT: dict[str, Any] = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, conv_dim=[32] * 7,
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, layerdrop=0.0,
)
_SMALL = dict(backbone="test_resnet", backbone_init="random", audio_config=TINY_HUBERT, d_model=32, heads=2)


def _overrides(over: dict[str, Any]) -> dict[str, Any]:
    if over.get("audio_config") is not None:
        over = {**over, "audio_config": _plain(dict(over["audio_config"]))}
    return over


@MODELS.register("e2e_cross")
def e2e_cross(*, task: TaskSpec, input_dims: dict[str, int], **overrides: Any) -> E2ECross:
    """Paper setting: timm ResNet101d with its ImageNet weights + HuBERT-base (hub id or folder), d_model 512."""
    return _create_e2e_cross(task, input_dims, make_config(E2EConfig, _overrides(overrides)))


@MODELS.register("e2e_cross_small")
def e2e_cross_small(*, task: TaskSpec, input_dims: dict[str, int], **overrides: Any) -> E2ECross:
    """Small variant for tests: timm ``test_resnet`` and a 2-layer, 32-wide HuBERT, both random (by name); d 32."""
    return _create_e2e_cross(task, input_dims, make_config(E2EConfig, _overrides({**_SMALL, **overrides})))
