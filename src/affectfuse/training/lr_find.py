"""The learning-rate range test (``affectfuse lr-find``): Smith 2017, "Cyclical Learning Rates" §3.3, as fastai's
``lr_find`` runs it.

The model of a run is built as :func:`~affectfuse.training.loop.train` builds it (same data, standardisation,
loss, optimiser, gradient clipping) and trained for ``num_steps`` optimiser steps while the learning rate rises
exponentially from ``start_lr`` to ``end_lr``; the loss of each step is smoothed with a bias-corrected
exponential moving average (``beta`` 0.98) and the test stops when the smoothed loss exceeds ``diverge`` (4) x
its best, or is not finite. The weights are thrown away: nothing but the CSV and the plot is written.

Suggestions (the curve is read on a log-lr axis):

* ``steepest`` — where the smoothed loss falls fastest (the most negative ``d loss / d log lr``), searched
  between the 10th point and the minimum;
* ``min_div10`` — a tenth of the learning rate at the minimum of the smoothed loss;
* ``suggestion`` — the smaller of the two (the steepest point can sit right before the blow-up on short
  noisy curves, a tenth of the minimum rarely does; both are what fastai offers).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from affectfuse.data.labels import Labels
from affectfuse.features.store import FeatureStore
from affectfuse.inference.run import labels_for
from affectfuse.inference.train_config import TrainConfig
from affectfuse.tasks.losses import create_loss

__all__ = ["lr_find", "LRFindResult", "suggest"]


@dataclass(frozen=True, kw_only=True)
class LRFindResult:
    """The curve of a range test and what it suggests.

    Attributes:
        lrs: learning rate of each step taken (the model's base group).
        losses: the training loss of each step.
        smoothed: the bias-corrected moving average of ``losses``.
        suggestion: the suggested learning rate (``min(steepest, min_div10)``).
        steepest: the learning rate of the steepest descent of the smoothed loss.
        min_div10: a tenth of the learning rate at the smoothed loss's minimum.
        stopped: ``"diverged"`` (the smoothed loss passed ``diverge`` x its best, or was not finite) or
            ``"end"`` (``end_lr`` was reached).
        model: the model tested.

    Shape:
        lrs, losses, smoothed ``(S,)`` for the ``S`` steps taken.
    """

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    suggestion: float
    steepest: float
    min_div10: float
    stopped: str
    model: str

    def to_frame(self):
        """The curve as a table: ``step, lr, loss, smoothed_loss``."""
        import pandas as pd

        return pd.DataFrame({"step": np.arange(1, len(self.lrs) + 1), "lr": self.lrs, "loss": self.losses,
                             "smoothed_loss": self.smoothed})

    def save(self, out: str | Path) -> tuple[Path, Path]:
        """Write ``out/lr_find.csv`` and ``out/lr_find.png`` (the curve, the suggestion marked); returns both."""
        from matplotlib.figure import Figure

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        csv, png = out / "lr_find.csv", out / "lr_find.png"
        self.to_frame().to_csv(csv, index=False)
        fig = Figure(figsize=(6.4, 4.0), dpi=110)
        ax = fig.add_subplot()
        ax.plot(self.lrs, self.losses, color="0.75", lw=0.8, label="loss")
        ax.plot(self.lrs, self.smoothed, color="C0", lw=1.6, label="smoothed loss")
        ax.axvline(self.suggestion, color="C3", ls="--", lw=1.2, label=f"suggestion {self.suggestion:.2g}")
        ax.axvline(self.steepest, color="C2", ls=":", lw=1.0, label=f"steepest {self.steepest:.2g}")
        ax.set_xscale("log")
        finite = self.smoothed[np.isfinite(self.smoothed)]
        if finite.size:  # the blow-up at the end would flatten the interesting part
            lo, hi = float(finite.min()), float(min(finite.max(), 4 * finite.min() if finite.min() > 0 else finite.max()))
            ax.set_ylim(lo - 0.05 * (hi - lo + 1e-12), hi + 0.05 * (hi - lo + 1e-12))
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.set_title(f"learning-rate range test: {self.model} ({self.stopped})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(png)
        return csv, png


def suggest(lrs: np.ndarray, smoothed: np.ndarray, skip_start: int = 10) -> tuple[float, float, float]:
    """``(suggestion, steepest, min_div10)`` of a smoothed range-test curve (see the module docstring); the steepest
    descent is searched after the first ``skip_start`` points (fastai's ``skip_start``).

    Shape:
        lrs, smoothed ``(S,)``, ``S >= 2``, ``lrs`` increasing.

    Raises:
        ValueError: fewer than two finite points.
    """
    lrs, smoothed = np.asarray(lrs, np.float64), np.asarray(smoothed, np.float64)
    ok = np.isfinite(smoothed)
    lrs, smoothed = lrs[ok], smoothed[ok]
    if lrs.size < 2:
        raise ValueError(f"lr_find: {lrs.size} finite loss value(s): too few to read a curve (the loss diverged at "
                         f"once; lower start_lr)")
    i_min = int(np.argmin(smoothed))
    min_div10 = float(lrs[i_min] / 10.0)
    skip = min(skip_start, i_min - 1)  # the first averages rest on a few noisy losses
    if skip < 0 or i_min - skip < 2:
        return min_div10, min_div10, min_div10
    slope = np.gradient(smoothed[skip: i_min + 1], np.log(lrs[skip: i_min + 1]))
    steepest = float(lrs[skip + int(np.argmin(slope))])
    return min(steepest, min_div10), steepest, min_div10


def lr_find(labels: Labels | str | Path, store: FeatureStore | str | Path, config: TrainConfig, *,
            start_lr: float = 1e-7, end_lr: float = 1.0, num_steps: int = 100, beta: float = 0.98,
            diverge: float = 4.0, out: str | Path | None = None, log=print) -> LRFindResult:
    """Run the learning-rate range test for ``config`` (its model, data, loss, optimiser, gradient clipping).

    Args:
        labels: a :class:`Labels` or a label file / folder.
        store: the feature store (feature-based models).
        config: the training configuration; its ``lr`` and ``scheduler`` are ignored, its training split is used.
        start_lr: the first learning rate.
        end_lr: the last learning rate.
        num_steps: optimiser steps from ``start_lr`` to ``end_lr`` (the training split is cycled as needed).
        beta: the loss smoothing factor.
        diverge: stop when the smoothed loss exceeds ``diverge`` x its best.
        out: a folder for ``lr_find.csv`` and ``lr_find.png`` (None: nothing written).
        log: called with the lines to show.

    Returns:
        the :class:`LRFindResult`.

    Raises:
        ValueError: ``0 < start_lr < end_lr``, ``num_steps >= 2``, ``0 <= beta < 1`` or ``diverge > 1`` not met,
            or a configuration :func:`~affectfuse.training.loop.train` refuses.
    """
    from affectfuse.training import loop  # (the same steps as a training run)

    if not 0 < start_lr < end_lr or num_steps < 2 or not 0 <= beta < 1 or diverge <= 1:
        raise ValueError(f"lr_find: 0 < start_lr < end_lr, num_steps >= 2, 0 <= beta < 1 and diverge > 1 expected; "
                         f"got start_lr={start_lr}, end_lr={end_lr}, num_steps={num_steps}, beta={beta}, "
                         f"diverge={diverge}")
    cfg = dataclasses.replace(config.validate().resolved(), scheduler="none")
    if not cfg.modalities:
        raise ValueError("lr_find: TrainConfig.modalities names no modality (e.g. visual=vit_cls)")
    device = loop._device(cfg.device)
    lab = labels_for(cfg, labels)
    st = store if isinstance(store, FeatureStore) else FeatureStore(store, create=False)
    task = loop._task_for(cfg, lab)
    loop.seed_everything(cfg.seed)
    model, data = loop._build(cfg, task, lab, st, None, loop._model_overrides(cfg))
    model.to(device).train()
    loss_fn = create_loss(cfg.loss, task, **cfg.loss_params)
    opt, _ = loop._optimiser(cfg, model, 1)
    ratios = [g["lr"] / cfg.lr for g in opt.param_groups]  # backbones keep their ratio to the head
    gen = torch.Generator().manual_seed(cfg.seed * 100003)
    loader = torch.utils.data.DataLoader(data.train, batch_size=cfg.batch_size, shuffle=True, generator=gen,
                                         collate_fn=getattr(data.train, "collate_fn", loop.collate))
    batches = itertools.chain.from_iterable(loader for _ in itertools.count())
    params = [p for p in model.parameters() if p.requires_grad]
    factor = (end_lr / start_lr) ** (1.0 / (num_steps - 1))
    lrs, losses, smoothed = [], [], []
    avg, best, stopped = 0.0, math.inf, "end"
    for i in range(num_steps):
        lr = start_lr * factor ** i
        for g, r in zip(opt.param_groups, ratios):
            g["lr"] = lr * r
        batch = next(batches).to(device)
        loss = loss_fn(model(batch), batch)
        value = float(loss.detach())
        avg = beta * avg + (1 - beta) * value
        smooth = avg / (1 - beta ** (i + 1))
        lrs.append(lr), losses.append(value), smoothed.append(smooth)
        if not math.isfinite(smooth) or (i > 0 and smooth > diverge * best):
            stopped = "diverged"
            break
        best = min(best, smooth)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
    del model, opt  # the weights are not kept
    sug, steep, mdiv = suggest(np.array(lrs), np.array(smoothed))
    result = LRFindResult(lrs=np.array(lrs), losses=np.array(losses), smoothed=np.array(smoothed), suggestion=sug,
                          steepest=steep, min_div10=mdiv, stopped=stopped, model=cfg.model)
    log(f"lr-find {cfg.model}: {len(lrs)} steps from {start_lr:g} ({stopped} at {lrs[-1]:.3g}); suggested lr "
        f"{sug:.3g} (steepest descent {steep:.3g}, minimum / 10 {mdiv:.3g})")
    if out is not None:
        csv, png = result.save(out)
        log(f"wrote {csv} and {png}")
    return result
