"""Reports people would rather look at than read: PNG figures and a self-contained ``index.html``.

* :func:`report` — a trained run folder: training curves, per-target scores, predicted vs true,
  confusion matrices (``affectfuse report RUN``);
* :func:`prediction_report` — predictions on new videos: a timeline per video with no-face stretches shaded.

matplotlib (extra ``report``) is imported only when a figure is drawn.
"""

from affectfuse.reporting.html import (
    RunData,
    class_pairs,
    merge_truth,
    prediction_report,
    read_run,
    report,
    split_confusion,
)
from affectfuse.reporting.plots import confusion_matrix, normalize_rows, per_class_f1

__all__ = [
    "report",
    "prediction_report",
    "read_run",
    "RunData",
    "merge_truth",
    "class_pairs",
    "split_confusion",
    "confusion_matrix",
    "normalize_rows",
    "per_class_f1",
]
