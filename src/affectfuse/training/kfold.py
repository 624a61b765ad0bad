"""K-fold cross validation over the videos of one or more splits, with out-of-fold predictions.

The videos of the pooled splits (default train + dev) are shuffled with ``seed`` and dealt round-robin into
``k`` folds, so fold sizes differ by at most one and every row of a video (frame-level labels) stays in its
video's fold. Fold ``i`` trains on the other folds and uses fold ``i`` as its dev split, for model selection
and early stopping exactly like a normal run's dev split. The held-out fold therefore also picks the epoch,
so per-fold dev scores carry the usual (small) optimism of a dev score; rows of splits that are not pooled
(by default: test) stay in place and every fold model is evaluated on them too, which is unbiased.

Layout::

    OUT/folds.csv               video_id, fold (the assignment; a re-run with another one is refused)
    OUT/fold_<i>/               an ordinary run folder (predictions/dev.csv = the held-out fold)
    OUT/oof_predictions.csv     every pooled video predicted once, by the fold model that did not train on it
    OUT/metrics.json            per-fold metrics, mean / std (numpy, ddof=0) per split, the OOF metrics

Finished fold runs are reused (resume).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from affectfuse.data.labels import Labels
from affectfuse.inference.run import labels_for
from affectfuse.inference.run_folder import RunFolder
from affectfuse.inference.train_config import TrainConfig
from affectfuse.tasks.metrics import compute_metrics
from affectfuse.tasks.spec import TaskSpec
from affectfuse.training.ablate import train_or_reuse
from affectfuse.inference.truth import matched_targets
from affectfuse.types import Prediction

__all__ = ["kfold", "assign_folds", "fold_labels", "oof_metrics"]


def assign_folds(video_ids: Sequence[str], k: int, seed: int = 0) -> dict[str, int]:
    """Video → fold in ``0..k-1``: sorted ids shuffled with ``seed``, dealt round-robin (deterministic;
    independent of the input order)."""
    vids = sorted(set(video_ids))
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2 folds, got {k}")
    if len(vids) < k:
        raise ValueError(f"k-fold with k={k} needs at least {k} videos, the pooled splits hold {len(vids)}")
    order = np.random.default_rng(seed).permutation(len(vids))
    return {vids[j]: int(pos % k) for pos, j in enumerate(order)}


def fold_labels(lab: Labels, folds: dict[str, int], i: int) -> Labels:
    """Labels of fold ``i``: pooled videos of fold i → ``dev``, the other pooled videos → ``train``; rows of
    non-pooled videos keep their split, except ``train`` / ``dev`` rows, which are dropped (they would mix
    with the fold's own train / dev)."""
    t = lab.table
    fold = t["video_id"].map(folds)
    pooled = fold.notna().to_numpy()
    keep = pooled | ~t["split"].isin(["train", "dev"]).to_numpy()
    split = np.where(pooled, np.where(fold.to_numpy() == i, "dev", "train"), t["split"].to_numpy())
    table = t.assign(split=split)[keep].reset_index(drop=True)
    return dataclasses.replace(lab, table=table, report=list(lab.report) + [f"k-fold: fold {i} as dev"])


def oof_metrics(task: TaskSpec, lab: Labels, pred: Prediction) -> dict[str, float]:
    """Every metric of the task on out-of-fold predictions (rows matched to the labels by video id / frame).

    Raises:
        ValueError: a prediction row has no label row.
    """
    p, t, unmatched = matched_targets(pred, lab)
    if unmatched:
        raise ValueError(f"{unmatched} out-of-fold prediction row(s) have no label row")
    return {k: float(v) for k, v in compute_metrics(task, p, t).items()}


def kfold(labels: Labels | str | Path, store, base: TrainConfig, out: str | Path, *, k: int = 5, seed: int = 0,
          splits: Sequence[str] = ("train", "dev"), progress: bool = False,
          log: Callable[[str], Any] = print) -> dict[str, Any]:
    """K-fold cross validation with out-of-fold predictions (layout and caveats: module docstring).

    Args:
        labels: a :class:`Labels` or a label file / folder.
        store: a feature store or its folder.
        base: the training configuration (its ``train_split`` / ``dev_split`` are set per fold).
        out: the cross-validation folder.
        k: number of folds (>= 2).
        seed: seeds the fold assignment (training uses ``base.seed``).
        splits: the splits whose videos are pooled and re-split.
        progress: progress bars of the runs.
        log: where progress lines go.

    Returns:
        the content of ``out/metrics.json``: ``k``, ``seed``, ``splits``, ``folds`` (fold → number of videos),
        ``per_fold`` (fold → split → metric), ``mean`` / ``std`` (split → metric over folds), ``oof``
        (metric → value on the out-of-fold predictions), ``oof_videos``, ``missing`` (pooled videos without a
        prediction, e.g. no features).
    """
    lab = labels_for(base, labels)
    pooled = lab.video_ids(list(splits))
    folds = assign_folds(pooled, k, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    assignment = pd.DataFrame({"video_id": list(folds), "fold": list(folds.values())})
    fpath = out / "folds.csv"
    if fpath.exists():
        old = pd.read_csv(fpath, dtype={"video_id": str})
        if not old.sort_values("video_id").reset_index(drop=True).equals(
                assignment.sort_values("video_id").reset_index(drop=True)):
            raise ValueError(f"{out}: made with another fold assignment (k, seed, splits or labels changed); use "
                             f"another output folder or delete {fpath}")
    assignment.to_csv(fpath, index=False)
    cfg = dataclasses.replace(base, train_split=("train",), dev_split="dev")
    per: dict[int, dict[str, dict[str, float]]] = {}
    task = lab.task
    oof: list[Prediction] = []
    for i in range(k):
        log(f"[fold {i + 1}/{k}] {sum(f == i for f in folds.values())} held-out videos")
        run = RunFolder(out / f"fold_{i}")
        per[i] = train_or_reuse(fold_labels(lab, folds, i), store, cfg, run.path, progress=progress, log=log)
        if "dev" in run.prediction_splits():
            p = run.read_predictions("dev")
            oof.append(dataclasses.replace(p, extra={"fold": np.full(len(p), i), **p.extra}))
    oof_pred = Prediction.concat(oof) if oof else Prediction(
        values=np.zeros((0, task.num_outputs)), names=list(task.targets), video_ids=[],
        classification=task.is_classification, extra={"fold": np.zeros(0, np.int64)})
    oof_pred.write(out / "oof_predictions.csv", Prediction.OOF)
    summary: dict[str, Any] = {
        "k": k, "seed": seed, "splits": list(splits),
        "folds": {str(i): sum(f == i for f in folds.values()) for i in range(k)},
        "per_fold": {str(i): m for i, m in per.items()}, "mean": {}, "std": {},
    }
    for split in sorted({s for m in per.values() for s in m if s != "train"}):
        names = sorted({n for m in per.values() for n in m.get(split, {})})
        summary["mean"][split] = {n: float(np.mean([per[i][split][n] for i in per if n in per[i].get(split, {})]))
                                  for n in names}
        summary["std"][split] = {n: float(np.std([per[i][split][n] for i in per if n in per[i].get(split, {})]))
                                 for n in names}
    summary["oof"] = oof_metrics(task, lab, oof_pred) if len(oof_pred) else {}
    predicted = set(oof_pred.video_ids)
    summary["oof_videos"] = len(predicted)
    summary["missing"] = sorted(set(pooled) - predicted)
    RunFolder(out).write_metrics(summary)
    if summary["oof"]:
        first = (cfg.select_metric or task.metrics[0])
        log(f"out-of-fold {first} = {summary['oof'].get(first, float('nan')):.4f} over {len(predicted)} videos")
    return summary
