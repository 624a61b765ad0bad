"""The model contract shared by every fusion architecture.

A model is an ``nn.Module`` created by name with a task and the input width of each modality::

    model = create_model("viper", task="reaction", input_dims={"visual": 768, "audio": 512})
    out = model(batch)            # ModelOutput; preds (B, 7)

* ``forward(batch: Batch) -> ModelOutput``; it never applies a loss;
* it accepts any non-empty subset of its modalities, and samples whose mask row is all False for a
  modality (missing for that sample); padding and invalid rows never change the output;
* ``self.config`` is a frozen keyword-only dataclass (YAML round trip via ``affectfuse._config``);
* ``param_groups(lr)`` returns optimiser parameter groups (models with pretrained backbones give them a
  lower learning rate).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from affectfuse.tasks.spec import TaskSpec
from affectfuse.types import Batch, ModelOutput


class FusionModel(nn.Module):
    """Base class: stores task, input dims and config; subclasses implement ``forward``."""

    def __init__(self, *, task: TaskSpec, input_dims: dict[str, int], config: Any) -> None:
        super().__init__()
        if not input_dims:
            raise ValueError(f"{type(self).__name__}: input_dims must name at least one modality")
        self.task = task
        self.input_dims = dict(input_dims)
        self.config = config

    @property
    def modalities(self) -> list[str]:
        return list(self.input_dims)

    def present(self, batch: Batch) -> list[str]:
        """Modalities of this model that the batch carries; raises if none or if one is unknown."""
        return present_modalities(type(self).__name__, self.input_dims, batch)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def forward(self, batch: Batch) -> ModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError


def present_modalities(owner: str, input_dims: dict[str, int], batch: Batch) -> list[str]:
    """The modalities of ``input_dims`` (in its order) that ``batch`` carries, checked against their widths.

    Raises:
        KeyError: the batch has a modality the model was not built for.
        ValueError: it carries none of them, or one has another width.
    """
    modalities = list(input_dims)
    unknown = sorted(set(batch.inputs) - set(input_dims))
    if unknown:
        raise KeyError(f"{owner}: batch has modalities {unknown} the model was not built for; "
                       f"model modalities: {modalities}")
    mods = [m for m in modalities if m in batch.inputs]
    if not mods:
        raise ValueError(f"{owner}: batch carries none of the model's modalities {modalities}")
    for m in mods:
        x = batch.inputs[m]
        if x.shape[-1] != input_dims[m]:
            raise ValueError(f"{owner}: modality {m!r} expected width {input_dims[m]}, got {tuple(x.shape)}")
    return mods


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Mean over valid rows.

    Shape:
        x ``(B, T, D)``, mask ``(B, T)`` bool → ``(B, D)``; all-invalid rows give zeros.
    """
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(dim) / m.sum(dim).clamp(min=1.0)
