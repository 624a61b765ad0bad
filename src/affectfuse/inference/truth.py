"""Predictions matched to their labels: the rows a metric is computed on (seed ensembles, out-of-fold)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from affectfuse.data.labels import Labels
from affectfuse.types import Prediction

__all__ = ["matched_targets"]


def matched_targets(pred: Prediction, labels: Labels, *, split: str | None = None
                    ) -> tuple[np.ndarray, np.ndarray, int]:
    """Predicted values and true targets of the prediction rows that have a label row.

    Rows are matched by video id, and by frame for frame-level predictions; their order is the prediction's.

    Args:
        pred: the predictions.
        labels: the labels.
        split: only label rows of this split (None: every split).

    Returns:
        ``(values (N, K), targets, unmatched)``: targets ``(N, K)`` float for regression, class indices ``(N,)``
        for classification; ``unmatched`` counts prediction rows without a label row.
    """
    table = labels.table if split is None else labels.table[labels.table["split"] == split]
    keys = ["video_id"] + (["frame"] if pred.frames is not None and "frame" in table.columns else [])
    table = table.drop(columns=["split"]).drop_duplicates(subset=keys)
    left = pd.DataFrame({"video_id": pred.video_ids, "_row": np.arange(len(pred))})
    if "frame" in keys:
        left["frame"] = pred.frames
    merged = left.merge(table, on=keys, how="inner")
    rows = merged["_row"].to_numpy()
    task = labels.task
    t = merged["label"].to_numpy() if task.is_classification else merged[list(task.targets)].to_numpy(float)
    return pred.values[rows], t, len(pred) - len(merged)
