"""Fusion models, registered by name (``create_model``, ``list_models``).

Every module of this package is imported here so its ``@MODELS.register`` variants are known.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from affectfuse._registry import MODELS
from affectfuse.models._info import config_class
from affectfuse.models.base import FusionModel
from affectfuse.tasks.spec import TaskSpec, get_task


def _import_all() -> None:
    for m in pkgutil.iter_modules(__path__):
        if not m.name.startswith("_") and m.name not in ("base",):
            importlib.import_module(f"{__name__}.{m.name}")


def create_model(name: str, *, task: "str | TaskSpec", input_dims: dict[str, int], **overrides: Any) -> FusionModel:
    """Create a registered model for a task.

    Args:
        name: registered name (``list_models()``).
        task: a built-in task name or a :class:`TaskSpec`.
        input_dims: width of each modality's feature rows, e.g. ``{"visual": 768, "audio": 512}``.
        **overrides: config fields to change; unknown fields raise ``TypeError`` listing the accepted ones.
    """
    return MODELS.create(name, task=get_task(task), input_dims=dict(input_dims), **overrides)


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.names(pattern)


_import_all()

__all__ = ["create_model", "list_models", "config_class", "FusionModel"]
