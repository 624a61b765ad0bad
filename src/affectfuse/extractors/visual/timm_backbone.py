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

import functools
from dataclasses import dataclass
from typing import Any

from affectfuse._compat import import_timm
from affectfuse.extractors._torch_utils import (
    IMAGE_DTYPES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TorchExtractor,
    WeightsFileConfig,
    check_choice,
    check_torch_runtime,
    config_error,
    load_state_dict,
    load_weights_into,
    prepare_module,
)
from affectfuse.extractors.base import InputContract, register_extractor, runtime

__all__ = ["TimmBackbone", "TimmConfig", "TimmBackboneBase", "TimmConfigBase"]


@functools.lru_cache(maxsize=64)
def _describe_timm(model: str) -> dict[str, Any]:
    """num_features, input size, mean/std and classifier name of a timm model, built on the meta device."""
    import torch  # heavy: only to build the model on the meta device

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
        "mean": tuple(float(v) for v in cfg.get("mean", IMAGENET_MEAN)),
        "std": tuple(float(v) for v in cfg.get("std", IMAGENET_STD)),
        "classifier": (classifier,) if isinstance(classifier, str) else tuple(classifier),
    }


@dataclass(frozen=True, kw_only=True)
class TimmConfigBase(WeightsFileConfig):
    """What the configs of timm-backed extractors share (each declares its fields ``model``,
    ``pretrained``, the weights file, ``input``, ``image_size``, ``dtype``, ``batch_size``, ``device``).

    The identity holds the pretrained flag in effect (False when a local file is given) and the input
    size in effect (``image_size`` or the model's ``pretrained_cfg`` size).
    """

    @functools.cached_property
    def described(self) -> dict[str, Any]:
        """``dim``, ``image_size``, ``mean``, ``std``, ``classifier`` of the timm model (no weights)."""
        return _describe_timm(getattr(self, "model"))

    @property
    def use_pretrained(self) -> bool:
        """Whether timm loads its own pretrained weights (not when a local file is given)."""
        return getattr(self, "pretrained") and self.weights_file is None

    @property
    def size(self) -> int:
        return getattr(self, "image_size") or self.described["image_size"]

    def validate(self) -> "TimmConfigBase":
        check_choice(self, "input", ("face", "frame"))
        check_torch_runtime(self, IMAGE_DTYPES)
        if getattr(self, "image_size") is not None and getattr(self, "image_size") < 1:
            raise config_error(self, "image_size", "a positive int or None", getattr(self, "image_size"))
        _ = self.described  # an unknown model fails now
        return super().validate()

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "pretrained": self.use_pretrained, "image_size": self.size}


class TimmBackboneBase(TorchExtractor):
    """Shared machinery of timm-backed extractors (``timm``, ``regnet``)."""

    channels_last = True

    def __init__(self, config: TimmConfigBase | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        desc = self.config.described
        self.dim = desc["dim"]
        c = self.config
        self.contract = InputContract(kind=c.input, image_size=c.size, mean=desc["mean"], std=desc["std"])

    @property
    def timm_name(self) -> str:
        return self.config.model

    def _load(self) -> None:
        timm = import_timm()
        c = self.config
        try:
            net = timm.create_model(c.model, pretrained=c.use_pretrained, num_classes=0)
        except Exception as e:  # noqa: BLE001  (hub / network errors of many kinds)
            if not c.use_pretrained:
                raise
            raise RuntimeError(
                f"{self.name}: timm could not load pretrained weights of {c.model!r} ({e}); they come "
                "from the Hugging Face hub (cache or network); or pass a local weights file instead"
            ) from e
        if c.weights_file is not None:
            head = tuple(f"{h}." for h in c.described["classifier"])
            load_weights_into(net, load_state_dict(c.weights_file), c.weights_file, ignore_prefixes=head)
        self.module = prepare_module(net, self.torch_dtype, c.device, channels_last=True)

    def encode(self, x):
        """Shape: ``(B, 3, S, S)`` -> ``(B, num_features)`` (timm's pooled pre-logits)."""
        return self.module(x)  # (B, D)


@dataclass(frozen=True, kw_only=True)
class TimmConfig(TimmConfigBase):
    """Parameters of :class:`TimmBackbone`.

    Attributes:
        model: timm model name (``"resnet101d"``, ``"convnext_tiny.fb_in22k"``, ...).
        pretrained: let timm load its pretrained weights (downloads on a user's machine).
        checkpoint: local ``.safetensors`` / ``.pth`` state dict of the same architecture (not with
            ``pretrained``); stored resolved, its content fingerprint is in the identity.
        input: ``"face"`` or ``"frame"``.
        image_size: input side; None: the model's ``pretrained_cfg`` input size.
        dtype: ``"float32"`` or ``"bfloat16"``.
        batch_size: rows per forward pass (not in the identity).
        device: torch device (not in the identity).
        backend: ``"auto"`` (ONNX Runtime on the CPU when installed), ``"torch"`` or ``"onnx"`` (not in the identity).
    """

    weights_field = "checkpoint"

    model: str = "resnet101d"
    pretrained: bool = False
    checkpoint: str | None = None
    input: str = "face"
    image_size: int | None = None
    dtype: str = "float32"
    batch_size: int = runtime(32)
    device: str = runtime("cpu")
    backend: str = runtime("auto")

    def validate(self) -> "TimmConfig":
        if self.pretrained and self.checkpoint is not None:
            expected = "False when a local checkpoint is given (pass one or the other, not both)"
            raise config_error(self, "pretrained", expected, self.pretrained)
        return super().validate()


@register_extractor
class TimmBackbone(TimmBackboneBase):
    """Pooled features of a timm model.

    Parameters: :class:`TimmConfig`.

    Shape:
        input ``images (N, S, S, 3)`` uint8; output ``(N, num_features)``.
    """

    name = "timm"
    weights_from = "hub"
    modality = "visual"
    Config = TimmConfig
