"""Several seeds of one configuration: mean ± std of every metric and the ensemble of the runs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from affectfuse.data.labels import Labels, load_labels
from affectfuse.tasks.metrics import compute_metrics
from affectfuse.tasks.spec import TaskSpec
from affectfuse.training.config import TrainConfig
from affectfuse.training.loop import train

__all__ = ["train_seeds", "ensemble_predictions"]


def ensemble_predictions(runs: Sequence[str | Path], split: str) -> pd.DataFrame:
    """Average the prediction CSVs of several runs for one split (rows matched by video id and frame)."""
    frames = [pd.read_csv(Path(r) / "predictions" / f"{split}.csv") for r in runs]
    keys = [c for c in ("video_id", "frame") if c in frames[0].columns]
    num = [c for c in frames[0].columns if c not in keys + ["time", "prediction"]]
    cat = pd.concat(frames)
    out = cat.groupby(keys, sort=False)[num].mean().reset_index()
    if "time" in frames[0].columns:
        out = out.merge(frames[0][keys + ["time"]], on=keys, how="left")
    if "prediction" in frames[0].columns:
        probs = [c for c in num if c.startswith("p_")]
        out["prediction"] = [probs[i][2:] for i in out[probs].to_numpy().argmax(1)]
    return out


def _targets_for(lab: Labels, task: TaskSpec, pred: pd.DataFrame, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    table = lab.table[lab.table["split"] == split]
    keys = [c for c in ("video_id", "frame") if c in pred.columns]
    merged = pred.merge(table, on=keys, how="inner", suffixes=("", "_true"))
    if task.is_classification:
        p = merged[[f"p_{c}" for c in task.targets]].to_numpy()
        col = task.targets[0] + "_true" if task.targets[0] + "_true" in merged else "label"
        t = merged[col].to_numpy() if col in merged else merged[[c for c in merged.columns if c.endswith("_true")][0]].to_numpy()
    else:
        p = merged[list(task.targets)].to_numpy()
        t = merged[[f"{c}_true" for c in task.targets]].to_numpy()
    return p, t, np.ones(len(merged), bool)


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
    lab = labels if isinstance(labels, Labels) else load_labels(labels, None if config.task == "generic" else config.task)
    ens: dict[str, dict[str, float]] = {}
    runs = [out / f"seed_{s}" for s in seeds]
    task = lab.task
    for split in summary["mean"]:
        if split == "train" or task.is_classification:
            continue
        pred = ensemble_predictions(runs, split)
        (out / "predictions").mkdir(parents=True, exist_ok=True)
        pred.to_csv(out / "predictions" / f"{split}.csv", index=False)
        p, t, m = _targets_for(lab, task, pred, split)
        ens[split] = {k: float(v) for k, v in compute_metrics(task, p, t, m).items()}
    summary["ensemble"] = ens
    (out / "metrics.json").write_text(json.dumps(summary, indent=1))
    return summary
