"""Learning-rate schedules counted in optimiser steps: the default ``warmup_cosine``.

``warmup_cosine`` (what ``scheduler: auto`` resolves to): the first ``W = round(warmup x T)`` of the run's ``T``
optimiser steps raise the learning rate linearly to its peak, the rest follow a half cosine down to ~0 at the
run's last step, so a run of any length ends annealed (the old default, ``step``, halved every 10 epochs
whatever the length, and a 40-epoch run was still at a quarter of its peak when it stopped). The choice was
measured: ``benchmarks/defaults.py``.

Step ``s`` (0-based) runs at ``lr x factor(s)``::

    factor(s) = (s + 1) / W                                  s < W
    factor(s) = (1 + cos(pi (s - W) / (T - W))) / 2          s >= W   (1 at the peak, ~0 at s = T - 1)

The epoch-counted schedules (``step``, ``cosine``, ``plateau``) stay in :func:`affectfuse.training.loop._optimiser`
with the meaning they always had.
"""

from __future__ import annotations

import math

import torch

from affectfuse.inference.train_config import TrainConfig

__all__ = ["PER_STEP", "steps_per_epoch", "warmup_steps", "warmup_cosine_factor", "per_step_scheduler"]

#: the schedulers stepped after every optimiser step (the others after every epoch)
PER_STEP = ("warmup_cosine",)


def steps_per_epoch(n_train: int, cfg: TrainConfig) -> int:
    """Optimiser steps of one epoch: global batches of the training split (the last one partial), capped by
    ``max_steps_per_epoch`` — the same on every rank of a data-parallel run."""
    steps = max(1, math.ceil(n_train / cfg.batch_size))
    return min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps


def warmup_steps(total: int, warmup: float) -> int:
    """Steps of the linear warm-up: ``round(warmup x total)``, leaving at least one step of decay."""
    return max(0, min(int(round(warmup * total)), total - 1))


def warmup_cosine_factor(step: int, total: int, warm: int) -> float:
    """The learning-rate factor of step ``step`` (0-based) of ``total``, ``warm`` of them warming up."""
    if step < warm:
        return (step + 1) / warm
    span = max(total - warm, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warm, span) / span))


def per_step_scheduler(cfg: TrainConfig, opt: torch.optim.Optimizer, steps: int
                       ) -> torch.optim.lr_scheduler.LambdaLR:
    """The ``warmup_cosine`` schedule of a run of ``cfg.epochs x steps`` optimiser steps (every parameter group
    scaled by the same factor, so backbones keep their ratio to the head).

    Raises:
        ValueError: ``cfg.scheduler`` is not a per-step schedule (``auto`` must be resolved first).
    """
    if cfg.scheduler not in PER_STEP:
        raise ValueError(f"per_step_scheduler: scheduler {cfg.scheduler!r} is not stepped per optimiser step "
                         f"(those are {PER_STEP}; resolve 'auto' with TrainConfig.resolved() first)")
    total = cfg.epochs * steps
    warm = warmup_steps(total, cfg.warmup)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine_factor(s, total, warm))
