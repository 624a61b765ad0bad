"""``model_info``: what ``affectfuse models --info NAME`` prints — size and configuration of a model.

The model is built on PyTorch's ``meta`` device (no memory, no initialisation cost), so even the
paper-sized ViPER (≈270 M parameters) is described instantly.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from typing import Any

import torch

from affectfuse._config import to_dict
from affectfuse._registry import MODELS
from affectfuse.tasks.spec import get_task

__all__ = ["model_info", "default_input_dims", "takes_raw_inputs", "supports", "config_class", "PAPER_INPUT_DIMS"]

# Input widths of the papers' feature sets, used when ``input_dims`` is not given. A model module may
# override them by defining its own ``PAPER_INPUT_DIMS`` dict.
PAPER_INPUT_DIMS: dict[str, dict[str, int]] = {
    # ViPER best run: ViT-age CLS 768, WavLM x-vector 512, RoBERTa CLS 768, FAU 27 zero-padded to 32
    "viper": {"visual": 768, "audio": 512, "text": 768, "fau": 32},
    # JMT: R(2+1)D-18 and ResNet18 backbones, 512 each
    "jmt": {"visual": 512, "audio": 512},
    # MuSe 2022 reaction baseline: eGeMAPS (88 functionals per step)
    "muse_lstm": {"audio": 88},
}
_FALLBACK_DIMS = {"visual": 768, "audio": 512}


def takes_raw_inputs(name: str) -> bool:
    """Whether a registered model reads raw media (``batch.raw``) rather than feature sequences.

    Convention: the module of such a model defines ``RAW_MODALITIES`` (name → channel count).
    """
    module = sys.modules.get(getattr(MODELS.get(name), "__module__", ""), None)
    return bool(getattr(module, "RAW_MODALITIES", None))


def supports(name: str, task) -> bool:
    """Whether a registered model can be trained for ``task`` (a :class:`~affectfuse.tasks.spec.TaskSpec`).

    Convention: the module of a model that predicts at some resolutions only defines ``RESOLUTIONS``
    (e.g. ``("clip",)``); every other model handles clip- and frame-level tasks, regression and classification.
    """
    module = sys.modules.get(getattr(MODELS.get(name), "__module__", ""), None)
    return task.resolution in getattr(module, "RESOLUTIONS", ("clip", "frame"))


def config_class(name: str) -> type:
    """The config dataclass a registered model is built with, found without building the model.

    Read from annotations, by the convention every model module follows: the registered factory's return
    annotation is the model class, whose ``__init__`` takes ``config: <its config class>``. Training uses it to
    decide overrides (e.g. ``backbone_lr_scale``) before the one call to ``create_model``.

    Raises:
        TypeError: the factory or the model class does not carry those annotations.
    """
    factory = MODELS.get(name)
    model_cls = typing.get_type_hints(factory).get("return")
    init = getattr(model_cls, "__init__", None)
    cfg = typing.get_type_hints(init).get("config") if init is not None else None
    if not (isinstance(cfg, type) and dataclasses.is_dataclass(cfg)):
        raise TypeError(f"model {name!r}: cannot tell its config class: the factory must be annotated "
                        f"'-> ModelClass' and ModelClass.__init__ must take 'config: ConfigClass' (got {model_cls!r}, "
                        f"{cfg!r})")
    return cfg


def _family(name: str) -> str:
    return name[: -len("_small")] if name.endswith("_small") else name


def default_input_dims(name: str) -> dict[str, int]:
    """Input widths used by :func:`model_info` when none are given."""
    fam = _family(name)
    module = sys.modules.get(getattr(MODELS.get(name), "__module__", ""), None)
    raw = getattr(module, "RAW_MODALITIES", None)  # end-to-end models name raw inputs and channel counts
    if isinstance(raw, dict) and raw:
        return dict(raw)
    own = getattr(module, "PAPER_INPUT_DIMS", None)
    if isinstance(own, dict) and own:
        if all(isinstance(v, int) for v in own.values()):
            return dict(own)
        if fam in own:
            return dict(own[fam])
    return dict(PAPER_INPUT_DIMS.get(fam, _FALLBACK_DIMS))


def model_info(name: str, task: str = "reaction", input_dims: dict[str, int] | None = None) -> dict[str, Any]:
    """Describe a registered model.

    Args:
        name: registered model name (``list_models()``).
        task: task name or spec (decides the head).
        input_dims: modality widths; default: the paper's feature set (:data:`PAPER_INPUT_DIMS`).

    Returns:
        ``{"name", "class", "module", "task", "input_dims", "params", "trainable_params", "config",
        "config_type"}`` with ``config`` the config as a plain dict (YAML-ready).
    """
    dims = dict(input_dims) if input_dims is not None else default_input_dims(name)
    note = None
    over: dict = {}
    for attempt in range(2):
        try:
            try:
                with torch.device("meta"):
                    model = MODELS.create(name, task=get_task(task), input_dims=dims, **over)
            except RuntimeError:  # e.g. a backbone loaded with from_pretrained cannot be built on "meta"
                model = MODELS.create(name, task=get_task(task), input_dims=dims, **over)
            break
        except OSError:
            # pretrained weights that are not in the local cache (offline): count the same architectures
            # untrained (e2e_cross: timm's ResNet101d and HuBERT-base from HubertConfig(), no weights)
            if attempt or not takes_raw_inputs(name):
                raise
            over = {"audio_config": {}, "backbone_init": "random"}
            note = "pretrained weights not in the local cache: counted untrained from the same architectures"
    params = list(model.parameters())
    out = {
        "name": name,
        "class": type(model).__name__,
        "module": type(model).__module__,
        "task": model.task.name,
        "input_dims": dims,
        "params": int(sum(p.numel() for p in params)),
        "trainable_params": int(sum(p.numel() for p in params if p.requires_grad)),
        "config_type": type(model.config).__name__,
        "config": to_dict(model.config),
    }
    if note:
        out["note"] = note
    return out
