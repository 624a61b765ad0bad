"""Reports people would rather look at than read: PNG figures and a self-contained ``index.html``.

* :func:`report` — a trained run folder: training curves, per-target scores, predicted vs true,
  confusion matrices (``affectfuse report RUN``);
* :func:`prediction_report` — predictions on new videos: a timeline per video with no-face stretches shaded, and
  (``affect=``) valence / arousal curves on the same time axis below it.

Modules: :mod:`~affectfuse.reporting.html` (the page builder), :mod:`~affectfuse.reporting.run_data` (a run
folder read for a report, predictions matched to the truth), :mod:`~affectfuse.reporting.run_report`,
:mod:`~affectfuse.reporting.prediction_report`, :mod:`~affectfuse.reporting.plots` (the figures).
matplotlib (extra ``report``) is imported only when a figure is drawn.
"""

from affectfuse.reporting.prediction_report import AffectColumn, prediction_report
from affectfuse.reporting.run_data import RunData, class_pairs, merge_truth, read_run, split_confusion
from affectfuse.reporting.run_report import report
from affectfuse.reporting.plots import confusion_matrix, normalize_rows, per_class_f1

__all__ = [
    "report",
    "prediction_report",
    "AffectColumn",
    "read_run",
    "RunData",
    "merge_truth",
    "class_pairs",
    "split_confusion",
    "confusion_matrix",
    "normalize_rows",
    "per_class_f1",
]
