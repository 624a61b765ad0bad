"""Reading a run folder for a report, and matching its predictions to the truth.

Everything is read through :class:`~affectfuse.inference.run_folder.RunFolder` (predictions as
:class:`~affectfuse.types.Prediction`); whatever is missing or broken becomes a note in
:attr:`RunData.notes`, never an exception.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from affectfuse.data.labels import load_labels
from affectfuse.inference.run_folder import RunFolder
from affectfuse.reporting import plots
from affectfuse.tasks.spec import TASKS, get_task

__all__ = ["RunData", "read_run", "merge_truth", "class_pairs", "split_confusion", "split_key"]

SPLIT_ORDER = ("train", "dev", "test")


@dataclass
class RunData:
    """What :func:`read_run` found in a run folder (None / empty where a piece is missing).

    Attributes:
        path: the run folder.
        task: the task (from ``model.yaml``, else the built-in named in ``config.yaml``).
        config: ``config.yaml`` parsed; config_text: as written.
        model: ``model.yaml`` parsed.
        metrics: ``metrics.json`` — ``{split: {metric: value}}``.
        history: ``history.csv``.
        predictions: ``{split: predictions/<split>.csv}`` in train / dev / test order.
        labels: the labels named in ``data.json``, loaded for the run's task.
        data: ``data.json``.
        notes: what was missing or could not be read.
    """

    path: Path
    task: Any = None
    config: dict[str, Any] | None = None
    config_text: str | None = None
    model: dict[str, Any] | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    history: pd.DataFrame | None = None
    predictions: dict[str, pd.DataFrame] = field(default_factory=dict)
    labels: Any = None
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)



def split_key(s: str) -> tuple[int, str]:
    """Sort key of split names: train, dev, test, then the others by name."""
    return (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s)


def read_run(run_dir: str | Path) -> RunData:
    """Read the parts of a run folder that a report needs.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist, or holds none of ``config.yaml``, ``metrics.json``,
            ``history.csv``, ``predictions/`` (it is not a run folder).
    """
    folder = RunFolder(run_dir)
    run = folder.path
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: no such run folder (expected the --out folder of `affectfuse train`)")
    if not folder.is_run_folder():
        found = sorted(p.name for p in run.iterdir())[:12]
        raise FileNotFoundError(f"{run}: not an affectfuse run folder — it has none of {', '.join(folder.MARKERS)}; "
                                f"found {found or 'nothing'}. Pass the --out folder of `affectfuse train`.")
    rd = RunData(path=run)
    rd.config_text = folder.read_config_text()
    if rd.config_text is not None:
        try:
            rd.config = yaml.safe_load(rd.config_text) or {}
        except yaml.YAMLError as e:
            rd.notes.append(f"config.yaml could not be parsed: {e}")
    else:
        rd.notes.append("no config.yaml: the configuration is not shown")
    try:
        rd.model = folder.read_model()
        rd.task = folder.read_task()
    except Exception as e:  # noqa: BLE001 - a broken file becomes a note
        rd.notes.append(f"model.yaml could not be read ({type(e).__name__}: {e})")
    if rd.task is None and rd.config and rd.config.get("task") not in (None, "generic"):
        try:
            rd.task = get_task(str(rd.config["task"]))
        except KeyError:
            pass
    if rd.task is None:
        rd.notes.append("the task is unknown (no model.yaml): only metrics and training curves are shown")
    _read_results(folder, rd)
    try:
        rd.data = folder.read_data()
    except json.JSONDecodeError as e:
        rd.notes.append(f"data.json could not be parsed: {e}")
    rd.labels = _load_run_labels(rd)
    return rd


def _read_results(folder: RunFolder, rd: RunData) -> None:
    """metrics.json, history.csv and predictions/ of a run, into ``rd``."""
    if folder.has(folder.METRICS):
        try:
            m = folder.read_metrics()
            rd.metrics = {s: v for s, v in sorted(m.items(), key=lambda kv: split_key(kv[0]))
                          if isinstance(v, dict) and all(isinstance(x, (int, float)) for x in v.values())}
        except json.JSONDecodeError as e:
            rd.notes.append(f"metrics.json could not be parsed: {e}")
    else:
        rd.notes.append("no metrics.json: the run has not finished its final evaluation")
    try:
        h = folder.read_history()
        rd.history = h if h is not None and len(h) and "epoch" in h.columns else None
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
        rd.notes.append(f"history.csv could not be read: {e}")
    if rd.history is None:
        rd.notes.append("no training history (history.csv missing or empty): no training curves")
    for split in sorted(folder.prediction_splits(), key=split_key):
        try:
            rd.predictions[split] = folder.read_predictions(split).to_frame()
        except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            rd.notes.append(f"predictions/{split}.csv skipped: {folder.predictions_file(split)}: {e}")
    if not rd.predictions:
        rd.notes.append("no predictions/<split>.csv: no prediction plots")


def _load_run_labels(rd: RunData):
    src = rd.data.get("labels")
    if rd.task is None or not rd.predictions:
        return None
    if not src:
        rd.notes.append("data.json does not name the labels: plots that need the truth are skipped")
        return None
    if not Path(src).exists():
        rd.notes.append(f"the labels {src} are no longer there: plots that need the truth are skipped")
        return None
    builtin = rd.task.name if TASKS.get(rd.task.name) == rd.task else None
    try:
        lab = load_labels(src, builtin)
    except Exception as e:  # noqa: BLE001 - unreadable labels become a note
        rd.notes.append(f"the labels {src} could not be read ({type(e).__name__}: {e}): plots that need the truth "
                        f"are skipped")
        return None
    if list(lab.task.targets) != list(rd.task.targets) or lab.task.problem != rd.task.problem:
        rd.notes.append(f"the labels {src} are for targets {list(lab.task.targets)}, the run predicts "
                        f"{list(rd.task.targets)}: plots that need the truth are skipped")
        return None
    return lab


def merge_truth(pred: pd.DataFrame, labels, split: str, *, how: str = "inner") -> pd.DataFrame:
    """Predictions of one split with the true values next to them.

    The label columns are added as ``true_<target>`` (regression) or ``true_label`` (classification, class
    index), matched on ``video_id`` (and ``frame`` for frame-level predictions). ``how="inner"`` keeps
    labelled rows only; ``"left"`` keeps every prediction (NaN truth where unlabelled). Regression truth equal
    to the task's ignore value becomes NaN.
    """
    table = labels.table[labels.table["split"] == split].drop(columns=["split"])
    keys = ["video_id"] + (["frame"] if "frame" in pred.columns and "frame" in table.columns else [])
    truth = table.rename(columns={c: f"true_{c}" for c in labels.target_columns})
    left = pred.copy()
    left["video_id"] = left["video_id"].astype(str)
    if "frame" in keys:
        left = left[pd.to_numeric(left["frame"], errors="coerce").notna()]
        left["frame"] = left["frame"].astype(np.int64)
    merged = left.merge(truth, on=keys, how=how)
    ign = labels.task.ignore_value
    if not labels.task.is_classification and ign is not None:
        for t in labels.task.targets:
            merged.loc[merged[f"true_{t}"] == ign, f"true_{t}"] = np.nan
    return merged


def class_pairs(merged: pd.DataFrame, task) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_pred)`` class indices from a :func:`merge_truth` table of a classification run.

    The predicted class is the ``prediction`` column (a class name, or an index); without it, the argmax
    of the ``p_<class>`` columns. Rows whose truth is not a class ``0..K-1`` are left out.

    Raises:
        ValueError: a predicted class name is not one of the task's classes.
    """
    k = task.num_outputs
    t = pd.to_numeric(merged["true_label"], errors="coerce").to_numpy(dtype=np.float64)
    if "prediction" in merged.columns:
        idx = {c: i for i, c in enumerate(task.targets)}
        idx.update({c.lower(): i for i, c in enumerate(task.targets)})
        pred = []
        for v in merged["prediction"].astype(str):
            if v in idx or v.lower() in idx:
                pred.append(idx.get(v, idx.get(v.lower())))
            elif re.fullmatch(r"-?\d+(\.0+)?", v.strip()):
                pred.append(int(float(v)))
            else:
                raise ValueError(f"predicted class {v!r} is not one of {list(task.targets)}")
        p = np.asarray(pred, dtype=np.int64)
    else:
        cols = [f"p_{c}" for c in task.targets]
        missing = [c for c in cols if c not in merged.columns]
        if missing:
            raise ValueError(f"classification predictions need a 'prediction' column or {cols}; missing {missing}")
        p = merged[cols].to_numpy(dtype=np.float64).argmax(1)
    ok = np.isfinite(t) & (t >= 0) & (t < k)
    return t[ok].astype(np.int64), p[ok]


def split_confusion(run_dir: str | Path, split: str) -> np.ndarray:
    """The confusion matrix (rows = true, columns = predicted) a report draws for one split of a run.

    Raises:
        ValueError: the run is not a classification run, or the split has no predictions / labels.
    """
    rd = read_run(run_dir)
    if rd.task is None or not rd.task.is_classification:
        raise ValueError(f"{run_dir}: not a classification run")
    if split not in rd.predictions or rd.labels is None or split not in rd.labels.splits:
        raise ValueError(f"{run_dir}: split {split!r} has no predictions or no labels ({'; '.join(rd.notes)})")
    t, p = class_pairs(merge_truth(rd.predictions[split], rd.labels, split), rd.task)
    return plots.confusion_matrix(t, p, rd.task.num_outputs)
