"""``r2plus1d_18``: the Joint Multimodal Transformer's video backbone (torchvision R(2+1)D-18).

JMT (PoloWlg/Joint-Multimodal-Transformer-6th-ABAW, ``models/tsav.py``; design/seed-code-facts.md §3)
cuts each sequence into clips of 8 frames taken every 4th frame, resized to 112x112 and normalised
with the Kinetics mean/std, and runs torchvision's ``r2plus1d_18`` (Kinetics-400 or Aff-Wild2
initialisation). The spatio-temporal feature map is average-pooled to 512-d (the input of the
Kinetics classifier, which is dropped here).

``weights`` is a local torchvision checkpoint (``r2plus1d_18-91a641e6.pth`` or a fine-tuned state dict
with the same keys; a ``fc.*`` head is ignored). ``None`` is random initialisation (tests only).

Cost (measured on this AVX2-only dev box, one thread, under load): one 8x112x112 clip takes 1.7 s in
float32. bfloat16 3D convolutions have no fast CPU kernel there: 81 s per clip (48x slower), so use
``dtype="bfloat16"`` only on a GPU (or a CPU with AMX; not measured); a ``RuntimeWarning`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from affectfuse._compat import import_torchvision
from affectfuse.extractors._torch_utils import (
    IMAGE_DTYPES,
    TorchExtractor,
    WeightsFileConfig,
    check_positive,
    check_torch_runtime,
    config_error,
    load_state_dict,
    load_weights_into,
    prepare_module,
)
from affectfuse.extractors.base import InputContract, register_extractor, runtime

__all__ = ["R2Plus1D18", "R2Plus1D18Config"]

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


@dataclass(frozen=True, kw_only=True)
class R2Plus1D18Config(WeightsFileConfig):
    """Parameters of :class:`R2Plus1D18`.

    Attributes:
        weights: local torchvision state dict (``.pth`` / ``.safetensors``); None = random init.
            Stored resolved; its content fingerprint is in the identity.
        clip_len: frames per clip (JMT: 8).
        clip_stride: frame step inside a clip (JMT: 4, the "dilation").
        clip_anchor: ``"end"`` (the authors' sub-clips: the clip ends at its row's frame, looking back
            ``(clip_len - 1) * clip_stride`` frames; the default) or ``"centre"`` (the frames around the row, what
            this extractor did before; its store keys are unchanged).
        image_size: clip side in pixels (JMT: 112), at least 16 (5 stride-2 stages).
        dtype: ``"float32"`` or ``"bfloat16"``.
        batch_size: clips per forward pass (not in the identity).
        device: torch device (not in the identity).
        backend: ``"auto"`` (ONNX Runtime on the CPU when installed), ``"torch"`` or ``"onnx"`` (not in the identity).
    """

    weights: str | None = None
    clip_len: int = 8
    clip_stride: int = 4
    clip_anchor: str = "end"
    image_size: int = 112
    dtype: str = "float32"
    batch_size: int = runtime(8)
    device: str = runtime("cpu")
    backend: str = runtime("auto")

    def validate(self) -> "R2Plus1D18Config":
        check_torch_runtime(self, IMAGE_DTYPES)
        check_positive(self, "clip_len", "clip_stride")
        if self.clip_anchor not in ("end", "centre"):
            raise config_error(self, "clip_anchor", "'end' or 'centre'", self.clip_anchor)
        if self.image_size < 16:
            raise config_error(self, "image_size", "at least 16 (5 stride-2 stages)", self.image_size)
        return super().validate()

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        if ident.get("clip_anchor") == "centre":  # the old clips: the old key, so existing stores stay valid
            ident.pop("clip_anchor")
        return ident


@register_extractor
class R2Plus1D18(TorchExtractor):
    """512-d clip features of torchvision's R(2+1)D-18.

    Parameters: :class:`R2Plus1D18Config`.

    Shape:
        input ``clips (N, clip_len, S, S, 3)`` uint8; output ``(N, 512)``.
    """

    name = "r2plus1d_18"
    weights_from = "checkpoint"
    modality = "visual"
    Config = R2Plus1D18Config

    def __init__(self, config: R2Plus1D18Config | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.dim = 512
        self.contract = InputContract(
            kind="clip", image_size=c.image_size, clip_len=c.clip_len, clip_stride=c.clip_stride, clip_anchor=c.clip_anchor,
            mean=KINETICS_MEAN, std=KINETICS_STD,
        )

    def _load(self) -> None:
        import torch  # heavy: only when the network is built

        net = import_torchvision().models.video.r2plus1d_18(weights=None)
        if self.config.weights is not None:
            w = self.config.weights
            load_weights_into(net, load_state_dict(w), w, ignore_prefixes=("fc.",))
        net.fc = torch.nn.Identity()  # keep the 512-d spatio-temporal average pool
        self.module = prepare_module(net, self.torch_dtype, self.config.device)

    def encode(self, x):
        """Shape: ``(B, 3, L, S, S)`` -> ``(B, 512)``."""
        return self.module(x)  # (B, 512)
