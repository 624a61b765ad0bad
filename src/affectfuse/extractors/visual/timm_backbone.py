"""``timm``: pooled features of any timm image model (``num_classes=0``).

Weights come from one of two places:

* ``pretrained=True`` — timm's own loading (downloads from the Hugging Face hub on a user's machine;
  fails offline unless the hub cache already holds the file);
* ``checkpoint="path.safetensors|.pth"`` — a local state dict (``weights_only=True``). A classifier
  head in the file (``pretrained_cfg["classifier"]``, e.g. ``fc`` or ``head.fc``) is ignored; every
  other key must fit.

Neither: random initialisation (only useful for tests). Normalisation (mean/std) and the default input
size come from the model's ``pretrained_cfg``. CNNs run in ``channels_last`` (about 2x faster on CPU for
ResNets, design/platform.md §5). timm is imported only through :func:`affectfuse._compat.import_timm`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def _describe_timm(model: str) -> dict[str, Any]:
    """num_features, input size, mean/std and classifier name of a timm model, built on the meta device."""
    import torch

    from affectfuse._compat import import_timm

    timm = import_timm()
    if not timm.is_model(model):
        close = timm.list_models(f"*{model.split('.')[0][:6]}*")[:10]
        raise ValueError(f"unknown timm model {model!r}" + (f"; similar: {', '.join(close)}" if close else ""))
    with torch.device("meta"):
        net = timm.create_model(model, pretrained=False, num_classes=0)
    cfg = dict(net.pretrained_cfg)
    classifier = cfg.get("classifier") or "fc"
    return {
        "dim": int(net.num_features),
        "image_size": int(cfg.get("input_size", (3, 224, 224))[-1]),
        "mean": tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),
        "std": tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))),
        "classifier": (classifier,) if isinstance(classifier, str) else tuple(classifier),
    }


class TimmBackboneBase(TorchExtractor):
    """Shared machinery of timm-backed extractors (``timm``, ``regnet``)."""

    channels_last = True

    def _setup_timm(
        self,
        params: dict[str, Any],
        *,
        model: str,
        pretrained: bool,
        weights: str | None,
        input: str,
        image_size: int | None,
        dtype: str,
        batch_size: int,
        device: str,
    ) -> None:
        if input not in ("face", "frame"):
            raise ValueError(f"{self.name}: input must be 'face' or 'frame', got {input!r}")
        if not isinstance(pretrained, bool):
            raise ValueError(f"{self.name}: pretrained must be True or False, got {pretrained!r}")
        if pretrained and weights is not None:
            raise ValueError(f"{self.name}: pass either pretrained=True or a local weights file, not both")
        check_dtype(dtype)
        check_batch_size(batch_size)
        desc = _describe_timm(model)
        if weights is not None:
            p = Path(weights).expanduser().resolve()
            params = {**params, "fingerprint": file_fingerprint(p)}  # same path, new file -> new key
            weights = str(p)
        size = int(image_size or desc["image_size"])
        super().__init__({**params, "image_size": size})
        self.setup_runtime(dtype=dtype, batch_size=batch_size, device=device)
        self.timm_name, self.pretrained, self.weights_path = model, bool(pretrained), weights
        self.classifier = desc["classifier"]
        self.dim = desc["dim"]
        self.contract = InputContract(kind=input, image_size=size, mean=desc["mean"], std=desc["std"])

    def load(self) -> None:
        from affectfuse._compat import import_timm

        timm = import_timm()
        try:
            net = timm.create_model(self.timm_name, pretrained=self.pretrained, num_classes=0)
        except Exception as e:  # noqa: BLE001  (hub / network errors of many kinds)
            if not self.pretrained:
                raise
            raise RuntimeError(
                f"{self.name}: timm could not load pretrained weights of {self.timm_name!r} ({e}); they come "
                "from the Hugging Face hub (cache or network); or pass a local weights file instead"
            ) from e
        if self.weights_path is not None:
            sd = load_state_dict(self.weights_path)
            load_weights_into(net, sd, self.weights_path, ignore_prefixes=tuple(f"{c}." for c in self.classifier))
        self.module = prepare_module(net, self.torch_dtype, self.device, channels_last=True)

    def encode(self, x):
        """Shape: ``(B, 3, S, S)`` -> ``(B, num_features)`` (timm's pooled pre-logits)."""
        return self.module(x)  # (B, D)


@register_extractor
class TimmBackbone(TimmBackboneBase):
    """Pooled features of a timm model.

    Args:
        model: timm model name (``"resnet101d"``, ``"convnext_tiny.fb_in22k"``, ...).
        pretrained: let timm load its pretrained weights (downloads on a user's machine).
        checkpoint: local ``.safetensors`` / ``.pth`` state dict of the same architecture.
        input: ``"face"`` or ``"frame"``.
        image_size: input side; default the model's ``pretrained_cfg`` input size.
        dtype: ``"float32"`` or ``"bfloat16"``.
        batch_size: rows per forward pass (does not change the output).
        device: torch device.

    Shape:
        input ``images (N, S, S, 3)`` uint8; output ``(N, num_features)``.
    """

    name = "timm"
    modality = "visual"

    def __init__(
        self,
        *,
        model: str = "resnet101d",
        pretrained: bool = False,
        checkpoint: str | None = None,
        input: str = "face",
        image_size: int | None = None,
        dtype: str = "float32",
        batch_size: int = 32,
        device: str = "cpu",
    ) -> None:
        params = {
            "model": model,
            "pretrained": bool(pretrained),
            "checkpoint": None if checkpoint is None else str(Path(checkpoint).expanduser().resolve()),
            "input": input,
            "dtype": dtype,
        }
        self._setup_timm(
            params, model=model, pretrained=pretrained, weights=checkpoint, input=input,
            image_size=image_size, dtype=dtype, batch_size=batch_size, device=device,
        )
