"""``vit_cls``: the CLS token of a Hugging Face ViT, ViPER's visual embedding.

ViPER (MuSe 2022) feeds face crops to ViT-B/16 at 224x224 and keeps the 768-d last hidden state of the
classification token: ``ViTModel(...).last_hidden_state[:, 0]`` (after the final layer norm). It
compares the ImageNet-21k checkpoint ``google/vit-base-patch16-224-in21k`` with a ViT fine-tuned for
age estimation on FairFace (``nateraw/vit-age-classifier``, "ViT-Face"). The latter is a
``ViTForImageClassification`` checkpoint: its ``vit.*`` backbone is loaded and the head ignored.

``model`` is a hub id (read from the local Hugging Face cache; nothing is downloaded when
``HF_HUB_OFFLINE=1``) or a local directory written by ``save_pretrained``. Width and image size come
from the model's ``config.json``; mean/std from its ``preprocessor_config.json`` when present (ViT's
default 0.5/0.5 otherwise).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from affectfuse.extractors._hf import from_pretrained, hub_file, read_hf_config
from affectfuse.extractors._torch_utils import (
    IMAGE_DTYPES,
    CheckedConfig,
    TorchExtractor,
    check_choice,
    check_torch_runtime,
    prepare_module,
)
from affectfuse.extractors.base import InputContract, register_extractor, runtime

__all__ = ["ViTCLS", "VitConfig"]

_VIT_DEFAULT_MEAN = (0.5, 0.5, 0.5)  # ViTImageProcessor's defaults (IMAGENET_STANDARD_MEAN/STD)
_VIT_DEFAULT_STD = (0.5, 0.5, 0.5)

#: What the ViPER checkpoints declare, used only to describe an extractor (key, dim, contract) before
#: the checkpoint is available locally; ``_load()`` checks the real files against it.
_VIT_B16_224 = {"hidden_size": 768, "image_size": 224, "mean": _VIT_DEFAULT_MEAN, "std": _VIT_DEFAULT_STD}
_KNOWN: dict[str, dict[str, Any]] = {
    "google/vit-base-patch16-224-in21k": _VIT_B16_224,
    "nateraw/vit-age-classifier": _VIT_B16_224,
}


def _describe_model(model: str) -> dict[str, Any]:
    """hidden size, image size, mean, std of a ViT checkpoint, from its local files (or ``_KNOWN``)."""
    cfg = read_hf_config(model)  # FileNotFoundError for a folder without config.json
    if cfg is None:
        if model in _KNOWN:
            return dict(_KNOWN[model])
        raise FileNotFoundError(
            f"ViT model {model!r} is neither a local directory nor in the Hugging Face cache; "
            "download it once (huggingface-cli download ...) or pass a directory written by save_pretrained"
        )
    if cfg.get("model_type") != "vit":
        raise ValueError(f"{model}: config.json has model_type {cfg.get('model_type')!r}, expected 'vit'")
    image_size = cfg.get("image_size", 224)
    if isinstance(image_size, (list, tuple)):
        if image_size[0] != image_size[-1]:
            raise ValueError(f"{model}: non-square image_size {image_size} is not supported")
        image_size = image_size[0]
    desc = {"hidden_size": int(cfg.get("hidden_size", 768)), "image_size": int(image_size)}
    desc["mean"], desc["std"] = _VIT_DEFAULT_MEAN, _VIT_DEFAULT_STD
    pp = hub_file(model, "preprocessor_config.json")
    if pp is not None:
        pcfg = json.loads(Path(pp).read_text())
        if pcfg.get("do_normalize", True):
            desc["mean"] = tuple(float(v) for v in pcfg.get("image_mean", _VIT_DEFAULT_MEAN))
            desc["std"] = tuple(float(v) for v in pcfg.get("image_std", _VIT_DEFAULT_STD))
        else:
            desc["mean"], desc["std"] = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        if pcfg.get("do_rescale") is False:
            raise ValueError(f"{pp}: do_rescale=false is not supported (inputs are uint8 scaled by 1/255)")
    return desc


@dataclass(frozen=True, kw_only=True)
class VitConfig(CheckedConfig):
    """Parameters of :class:`ViTCLS`.

    Attributes:
        model: hub id (from the local HF cache) or a ``save_pretrained`` directory of a ``ViTModel`` or
            ``ViTForImageClassification`` checkpoint.
        input: ``"face"`` (face crops, ViPER's choice) or ``"frame"`` (whole frames).
        dtype: ``"float32"`` or ``"bfloat16"`` (bf16 weights; ~4x faster on CPU, ~1% error).
        batch_size: rows per forward pass (not in the identity).
        device: torch device (not in the identity: it changes the output only by float rounding).
        backend: ``"auto"`` (ONNX Runtime on the CPU when installed), ``"torch"`` or ``"onnx"`` (not in the identity).
    """

    model: str = "google/vit-base-patch16-224-in21k"
    input: str = "face"
    dtype: str = "float32"
    batch_size: int = runtime(32)
    device: str = runtime("cpu")
    backend: str = runtime("auto")

    @functools.cached_property
    def described(self) -> dict[str, Any]:
        """``hidden_size``, ``image_size``, ``mean``, ``std`` of the checkpoint (its files, no weights)."""
        return _describe_model(self.model)

    def validate(self) -> "VitConfig":
        check_choice(self, "input", ("face", "frame"))
        check_torch_runtime(self, IMAGE_DTYPES)
        _ = self.described  # an unknown or malformed checkpoint fails now
        return self


@register_extractor
class ViTCLS(TorchExtractor):
    """CLS token of ``transformers.ViTModel`` (ViPER's visual feature).

    Parameters: :class:`VitConfig`.

    Shape:
        input ``images (N, S, S, 3)`` uint8 with S = config image size; output ``(N, hidden_size)``.
    """

    name = "vit_cls"
    weights_from = "hub"
    modality = "visual"
    Config = VitConfig

    def __init__(self, config: VitConfig | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        desc = self.config.described
        self.dim = desc["hidden_size"]
        self.contract = InputContract(
            kind=self.config.input, image_size=desc["image_size"], mean=tuple(desc["mean"]), std=tuple(desc["std"])
        )

    def _load(self) -> None:
        from transformers import ViTModel  # heavy: only when loading

        model = self.config.model
        net = from_pretrained(ViTModel, model, who=self.name, what="ViT weights", add_pooling_layer=False)
        cfg = net.config
        if cfg.hidden_size != self.dim or int(cfg.image_size) != self.contract.image_size:
            raise ValueError(
                f"{model}: config has hidden_size {cfg.hidden_size}, image_size {cfg.image_size}; "
                f"expected {self.dim}, {self.contract.image_size}"
            )
        desc = _describe_model(model)  # now the files are local: re-check normalisation
        if tuple(desc["mean"]) != self.contract.mean or tuple(desc["std"]) != self.contract.std:
            raise ValueError(
                f"{model}: preprocessor mean/std {desc['mean']}/{desc['std']} differ from the "
                f"declared {self.contract.mean}/{self.contract.std}"
            )
        self.module = prepare_module(net, self.torch_dtype, self.config.device)

    def encode(self, x):
        """Shape: ``(B, 3, S, S)`` -> ``(B, hidden_size)``."""
        h = self.module(pixel_values=x).last_hidden_state  # (B, 1 + patches, D)
        return h[:, 0]  # (B, D)
