"""Batch factories and model lists shared by the model tests."""

from __future__ import annotations

import dataclasses

import torch

from affectfuse.models import list_models
from affectfuse.models._info import takes_raw_inputs
from affectfuse.tasks.spec import TaskSpec
from affectfuse.types import Batch

DIMS = {"visual": 12, "audio": 8}

REGRESSION_1 = TaskSpec(name="synthetic", problem="regression", resolution="clip", targets=("y",))


def feature_models() -> list[str]:
    """Registered models that read feature sequences (end-to-end models read raw media: tested by their author)."""
    return [n for n in list_models() if not takes_raw_inputs(n)]


def behavioural_models() -> list[str]:
    """The variants to run: ``*_small`` ones, and models without a small variant."""
    names = feature_models()
    return [n for n in names if n.endswith("_small") or f"{n}_small" not in names]


def make_batch(dims: dict[str, int] | None = None, *, b: int = 4, t: int = 10, frame_level: bool = False,
               lengths: list[int] | None = None, missing: dict[str, list[int]] | None = None, seed: int = 0) -> Batch:
    """A batch with padded tails and optional missing modalities.

    Clip-level batches give the modalities different lengths (``t`` for the first, ``t - 2`` for the
    others) to exercise alignment; frame-level ones share ``t``. ``lengths[i]`` valid steps for sample i
    (clipped to each modality's length); ``missing[m]`` lists samples whose mask row for ``m`` is all False.
    Padded values are random, like real garbage.
    """
    dims = dict(DIMS if dims is None else dims)
    g = torch.Generator().manual_seed(seed)
    lengths = lengths or [t - (i * 3) % (t - 2) for i in range(b)]
    inputs, masks = {}, {}
    for j, (m, d) in enumerate(dims.items()):
        tm = t if (frame_level or j == 0) else t - 2
        inputs[m] = torch.randn(b, tm, d, generator=g)
        steps = torch.arange(tm)
        masks[m] = steps[None, :] < torch.tensor(lengths)[:, None].clamp(max=tm)
        for i in (missing or {}).get(m, []):
            masks[m][i] = False
    return Batch(inputs=inputs, masks=masks, ids=[f"s{i}" for i in range(b)])


def perturb_invalid(batch: Batch, seed: int = 1, scale: float = 100.0) -> Batch:
    """The same batch with every invalid row overwritten by large random values."""
    g = torch.Generator().manual_seed(seed)
    inputs = {}
    for m, x in batch.inputs.items():
        noise = scale * torch.randn(x.shape, generator=g)
        inputs[m] = torch.where(batch.masks[m].unsqueeze(-1), x, noise)
    return dataclasses.replace(batch, inputs=inputs)


def select(batch: Batch, idx: list[int], mods: list[str] | None = None) -> Batch:
    """Samples ``idx`` of a batch, keeping only modalities ``mods`` (default: all)."""
    mods = list(batch.inputs) if mods is None else mods
    return Batch(inputs={m: batch.inputs[m][idx] for m in mods}, masks={m: batch.masks[m][idx] for m in mods},
                 ids=[batch.ids[i] for i in idx] if batch.ids else [])


def all_outputs(out) -> list[torch.Tensor]:
    """Every tensor a model returned (preds, logits, embedding, extras)."""
    ts = [out.preds, out.logits, out.embedding, *out.extras.values()]
    return [x for x in ts if torch.is_tensor(x)]
