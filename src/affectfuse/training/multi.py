"""Several seeds of one configuration: mean ± std of every metric and the ensemble of the runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from affectfuse.data.labels import Labels
from affectfuse.inference.run import labels_for
from affectfuse.inference.run_folder import RunFolder
from affectfuse.inference.train_config import TrainConfig
from affectfuse.training.loop import train
from affectfuse.inference.seeds import ensemble_metrics
from affectfuse.types import Prediction

__all__ = ["train_seeds", "ensemble_predictions"]


def ensemble_predictions(runs: Sequence[str | Path], split: str) -> Prediction:
    """The mean of several runs' predictions of one split (rows matched by video id and frame; see
    :meth:`Prediction.mean`)."""
    return Prediction.mean([RunFolder(r).read_predictions(split) for r in runs])


def train_seeds(labels: Labels | str | Path, store, config: TrainConfig, out: str | Path, *, seeds: Sequence[int],
                videos: str | Path | None = None, progress: bool = True, log=print) -> dict[str, Any]:
    """Train one run per seed in ``out/seed_<s>``; write ``out/metrics.json`` with per-seed metrics, their mean
    and std, and the metrics of the seed ensemble (predictions averaged)."""
    out = Path(out)
    per: dict[int, dict[str, dict[str, float]]] = {}
    for s in seeds:
        log(f"seed {s}")
        per[s] = train(labels, store, dataclasses.replace(config, seed=s), out / f"seed_{s}", videos=videos,
                       progress=progress, log=log)
    summary: dict[str, Any] = {"seeds": list(seeds), "per_seed": {str(s): m for s, m in per.items()}, "mean": {}, "std": {}}
    for split in {sp for m in per.values() for sp in m}:
        names = {k for m in per.values() for k in m.get(split, {})}
        summary["mean"][split] = {k: float(np.mean([per[s][split][k] for s in seeds if k in per[s].get(split, {})]))
                                  for k in names}
        summary["std"][split] = {k: float(np.std([per[s][split][k] for s in seeds if k in per[s].get(split, {})]))
                                 for k in names}
    lab = labels_for(config, labels)
    ens: dict[str, dict[str, float]] = {}
    runs = [out / f"seed_{s}" for s in seeds]
    folder = RunFolder(out)
    for split in summary["mean"]:
        if split == "train":
            continue
        pred = ensemble_predictions(runs, split)  # classification: the mean of the class probabilities
        folder.write_predictions(split, pred)
        ens[split] = ensemble_metrics(pred, lab, split)
    summary["ensemble"] = ens
    folder.write_metrics(summary)
    return summary
