"""Runs of several seeds (``affectfuse train --seeds``) as first-class inputs of ``evaluate`` and ``predict``.

A seeds folder holds one finished run per seed, ``OUT/seed_<s>/``, beside the summary ``OUT/metrics.json``
(``{"seeds": [...], "per_seed": ..., "mean": ..., "std": ..., "ensemble": ...}``) and the ensemble's
``OUT/predictions/<split>.csv``. The ensemble of a seeds folder is the mean of its runs' post-processed
predictions (:meth:`~affectfuse.types.Prediction.mean`: rows matched by video and frame; for classification
the mean of the class probabilities, labels re-derived by argmax). One seed is chosen by number (``seed=1``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from affectfuse.data.labels import Labels
from affectfuse.inference.run_folder import RunFolder
from affectfuse.inference.truth import matched_targets
from affectfuse.tasks.metrics import compute_metrics
from affectfuse.types import Prediction

__all__ = ["seed_runs", "is_seeds_folder", "select_runs", "ensemble_metrics", "evaluate_seeds"]

_SEED_DIR = re.compile(r"seed_(-?\d+)")


def seed_runs(path: str | Path) -> dict[int, Path]:
    """The seed runs of a seeds folder, seed → run folder, in the order the summary lists them (else by seed);
    ``{}`` when ``path`` is not a seeds folder (a run folder, or no folder)."""
    path = Path(path)
    if not path.is_dir() or RunFolder(path).has(RunFolder.CONFIG):
        return {}
    found = {int(m.group(1)): d for d in path.iterdir() if d.is_dir() and (m := _SEED_DIR.fullmatch(d.name))}
    order = RunFolder(path).read_metrics().get("seeds") if RunFolder(path).has(RunFolder.METRICS) else None
    seeds = [int(s) for s in order if int(s) in found] if isinstance(order, list) else sorted(found)
    return {s: found[s] for s in seeds}


def is_seeds_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder of ``train --seeds`` (``seed_<s>/`` runs, no ``config.yaml`` of its own)."""
    return bool(seed_runs(path))


def select_runs(path: str | Path, seed: int | None = None) -> list[Path]:
    """The run folders that ``path`` (and ``seed``) stand for: a run folder alone; every finished seed of a
    seeds folder (the ensemble), or one of them with ``seed``.

    Raises:
        FileNotFoundError: no such folder; a seeds folder whose runs are not all finished (names the first); the
            seed asked for is not in the folder (lists those that are).
        ValueError: ``seed`` given for a folder that is a single run.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run folder")
    runs = seed_runs(path)
    if not runs:
        if seed is not None:
            raise ValueError(f"{path}: a single run, not a seeds folder (train --seeds); --seed applies to those")
        return [path]
    if seed is not None:
        if seed not in runs:
            raise FileNotFoundError(f"{path}: no run of seed {seed}; the folder has seeds "
                                    f"{', '.join(map(str, runs))}")
        runs = {seed: runs[seed]}
    for s, r in runs.items():
        try:
            RunFolder(r).require_finished()
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{e} — seed {s} of the seeds folder {path} did not finish; train it again "
                                    f"(the same command resumes) or choose a finished seed with --seed") from None
    return list(runs.values())


def ensemble_metrics(pred: Prediction, labels: Labels, split: str) -> dict[str, float]:
    """Every metric of the labels' task on the prediction rows of ``split`` that have a label.

    Raises:
        ValueError: no prediction row has a label in ``split``.
    """
    p, t, _ = matched_targets(pred, labels, split=split)
    if not len(p):
        raise ValueError(f"no prediction row matches a label row of split {split!r} (by video id and frame)")
    return {k: float(v) for k, v in compute_metrics(labels.task, p, t, np.ones(len(p), bool)).items()}


def evaluate_seeds(path: str | Path, *, split: str = "test", labels: str | Path | None = None,
                   store: str | Path | None = None, backend: str = "torch") -> dict[str, Any]:
    """Evaluate every seed of a seeds folder on ``split`` and their ensemble.

    Each seed's run gets its ``predictions/<split>.csv`` and metrics as :func:`~affectfuse.inference.run.evaluate`
    writes them; the folder's ``predictions/<split>.csv`` gets the ensemble and its ``metrics.json`` the split's
    per-seed metrics, their mean / std and the ensemble's.

    Returns:
        ``{"per_seed": {seed: metrics}, "mean": ..., "std": ..., "ensemble": metrics}`` of the split.
    """
    from affectfuse.inference.run import evaluate, labels_for, load_run

    runs = select_runs(path)
    folder = RunFolder(path)
    per = {s: evaluate(r, split=split, labels=labels, store=store, backend=backend)
           for s, r in zip(seed_runs(path), runs)}
    first = load_run(runs[0])
    lab = labels_for(first.config, labels or first.data.get("labels"))
    pred = Prediction.mean([RunFolder(r).read_predictions(split) for r in runs])
    folder.write_predictions(split, pred)
    names = sorted({k for m in per.values() for k in m})
    out = {"per_seed": {str(s): m for s, m in per.items()},
           "mean": {k: float(np.mean([m[k] for m in per.values() if k in m])) for k in names},
           "std": {k: float(np.std([m[k] for m in per.values() if k in m])) for k in names},
           "ensemble": ensemble_metrics(pred, lab, split)}
    summary = folder.read_metrics() if folder.has(folder.METRICS) else {"seeds": list(seed_runs(path))}
    for part in ("mean", "std", "ensemble"):
        summary.setdefault(part, {})[split] = out[part]
    for s, m in per.items():
        summary.setdefault("per_seed", {}).setdefault(str(s), {})[split] = m
    folder.write_metrics(summary)
    return out
