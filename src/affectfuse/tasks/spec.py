"""Task specifications: what is predicted, at which resolution, and how it is scored.

The task decides the model's head (``num_outputs``, clip- or frame-level), the default loss and the
metrics; models never see labels or losses. Built-in tasks follow the challenges:

* ``reaction`` — Hume-Reaction (MuSe 2022 / ABAW5 ERI): 7 emotion intensities per clip in [0, 1],
  mean Pearson;
* ``va`` — Aff-Wild2: per-frame valence and arousal in [-1, 1], frames labelled -5 ignored, CCC;
* ``expr`` — Aff-Wild2: per-frame 8-class expression, macro F1;
* ``group`` — VGAF: 3-class group emotion per clip, accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Problem = Literal["regression", "multiclass"]
Resolution = Literal["clip", "frame"]

REACTION_EMOTIONS = ("Adoration", "Amusement", "Anxiety", "Disgust", "Empathic-Pain", "Fear", "Surprise")
EXPR_CLASSES = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")
GROUP_CLASSES = ("Positive", "Neutral", "Negative")


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """What a model must predict.

    Attributes:
        name: task name.
        problem: ``"regression"`` (K real targets) or ``"multiclass"`` (one of K classes).
        resolution: ``"clip"`` (one output per video) or ``"frame"`` (one per time step).
        targets: target names (regression) or class names (multiclass); K = len(targets).
        value_range: expected range of regression targets, or None.
        ignore_value: label value that marks an unlabelled target (e.g. -5 in Aff-Wild2 VA), or None.
        loss: default loss name (see ``affectfuse.tasks.losses``).
        metrics: metric names; the first is the model-selection metric.
    """

    name: str
    problem: Problem
    resolution: Resolution
    targets: tuple[str, ...]
    value_range: tuple[float, float] | None = None
    ignore_value: float | None = None
    loss: str = "mse"
    metrics: tuple[str, ...] = field(default_factory=tuple)

    @property
    def num_outputs(self) -> int:
        return len(self.targets)

    @property
    def is_classification(self) -> bool:
        return self.problem == "multiclass"

    def validate(self) -> "TaskSpec":
        if self.problem not in ("regression", "multiclass"):
            raise ValueError(f"task {self.name!r}: problem must be 'regression' or 'multiclass', got {self.problem!r}")
        if self.resolution not in ("clip", "frame"):
            raise ValueError(f"task {self.name!r}: resolution must be 'clip' or 'frame', got {self.resolution!r}")
        if not self.targets:
            raise ValueError(f"task {self.name!r}: needs at least one target")
        if self.problem == "multiclass" and len(self.targets) < 2:
            raise ValueError(f"task {self.name!r}: a multiclass task needs >= 2 classes, got {list(self.targets)}")
        return self


TASKS: dict[str, TaskSpec] = {
    "reaction": TaskSpec(
        name="reaction", problem="regression", resolution="clip", targets=REACTION_EMOTIONS,
        value_range=(0.0, 1.0), loss="mse", metrics=("mean_pearson",),
    ),
    "va": TaskSpec(
        name="va", problem="regression", resolution="frame", targets=("valence", "arousal"),
        value_range=(-1.0, 1.0), ignore_value=-5.0, loss="ccc", metrics=("mean_ccc", "ccc_valence", "ccc_arousal"),
    ),
    "expr": TaskSpec(
        name="expr", problem="multiclass", resolution="frame", targets=EXPR_CLASSES,
        ignore_value=-1, loss="focal", metrics=("macro_f1", "accuracy"),
    ),
    "group": TaskSpec(
        name="group", problem="multiclass", resolution="clip", targets=GROUP_CLASSES,
        loss="cross_entropy", metrics=("accuracy", "uar"),
    ),
}


def get_task(task: "str | TaskSpec") -> TaskSpec:
    """A built-in task by name, or the given spec validated."""
    if isinstance(task, TaskSpec):
        return task.validate()
    try:
        return TASKS[task]
    except KeyError:
        raise KeyError(f"unknown task {task!r}; built-in tasks: {', '.join(TASKS)}") from None


__all__ = ["TaskSpec", "TASKS", "get_task", "REACTION_EMOTIONS", "EXPR_CLASSES", "GROUP_CLASSES"]
