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

from pathlib import Path

from affectfuse.extractors._torch_utils import (
    TorchExtractor,
    check_batch_size,
    check_dtype,
    file_fingerprint,
    load_state_dict,
    load_weights_into,
    prepare_module,
)
from affectfuse.extractors.base import InputContract, register_extractor

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


@register_extractor
class R2Plus1D18(TorchExtractor):
    """512-d clip features of torchvision's R(2+1)D-18.

    Args:
        weights: local torchvision state dict (``.pth`` / ``.safetensors``); None = random init.
        clip_len: frames per clip (JMT: 8).
        clip_stride: frame step inside a clip (JMT: 4, the "dilation").
        image_size: clip side in pixels (JMT: 112).
        dtype: ``"float32"`` or ``"bfloat16"``.
        batch_size: clips per forward pass (does not change the output).
        device: torch device.

    Shape:
        input ``clips (N, clip_len, S, S, 3)`` uint8; output ``(N, 512)``.
    """

    name = "r2plus1d_18"
    modality = "visual"

    def __init__(
        self,
        *,
        weights: str | None = None,
        clip_len: int = 8,
        clip_stride: int = 4,
        image_size: int = 112,
        dtype: str = "float32",
        batch_size: int = 8,
        device: str = "cpu",
    ) -> None:
        check_dtype(dtype)
        check_batch_size(batch_size)
        for k, v in (("clip_len", clip_len), ("clip_stride", clip_stride), ("image_size", image_size)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{self.name}: {k} must be a positive int, got {v!r}")
        if image_size < 16:
            raise ValueError(f"{self.name}: image_size must be at least 16 (5 stride-2 stages), got {image_size}")
        wpath = None if weights is None else str(Path(weights).expanduser().resolve())
        params = {"weights": wpath, "clip_len": clip_len, "clip_stride": clip_stride, "image_size": image_size, "dtype": dtype}
        if wpath is not None:
            params["fingerprint"] = file_fingerprint(wpath)
        super().__init__(params)
        self.setup_runtime(dtype=dtype, batch_size=batch_size, device=device)
        self.weights_path = wpath
        self.dim = 512
        self.contract = InputContract(
            kind="clip", image_size=image_size, clip_len=clip_len, clip_stride=clip_stride,
            mean=KINETICS_MEAN, std=KINETICS_STD,
        )

    def load(self) -> None:
        import torch

        from affectfuse._compat import import_torchvision

        tv = import_torchvision()
        net = tv.models.video.r2plus1d_18(weights=None)
        if self.weights_path is not None:
            load_weights_into(net, load_state_dict(self.weights_path), self.weights_path, ignore_prefixes=("fc.",))
        net.fc = torch.nn.Identity()  # keep the 512-d spatio-temporal average pool
        self.module = prepare_module(net, self.torch_dtype, self.device)

    def encode(self, x):
        """Shape: ``(B, 3, L, S, S)`` -> ``(B, 512)``."""
        return self.module(x)  # (B, 512)
