"""Post-processing: raw model outputs → predictions, as the task and the loss define it.

A :class:`PostProcess` is a small frozen config saved beside every run (``RUN/postprocess.yaml``), so
inference applies exactly what training evaluated with:

1. the output activation the loss trained (``none``, ``sigmoid`` for ``mse_ce``, ``softmax`` for the
   classification losses; see :mod:`affectfuse.tasks.losses`);
2. frame-level regression only: JMT's smoothing — per video, frames in order, each target clipped to the task's
   value range and averaged with a uniform window (:func:`affectfuse.tasks.metrics.smooth_predictions`).

Example:
    >>> post = PostProcess.for_task(get_task("va"), activation="none", smoothing=(20, 50))
    >>> post
    PostProcess(activation='none', clip=(-1.0, 1.0), smoothing=(20, 50))
    >>> values = post.apply(raw, video_ids=ids, frames=frames)     # (R, K) float32
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from affectfuse.tasks.metrics import smooth_predictions
from affectfuse.tasks.spec import TaskSpec

__all__ = ["PostProcess", "ACTIVATIONS"]

ACTIVATIONS = ("none", "sigmoid", "softmax")


@dataclass(frozen=True, kw_only=True)
class PostProcess:
    """How raw model outputs become predictions.

    Attributes:
        activation: ``none``, ``sigmoid`` (element-wise) or ``softmax`` (over the K outputs of a row).
        clip: ``(low, high)`` applied after the activation (before smoothing), or None.
        smoothing: one uniform-filter window per output, applied per video over its frames in frame order
            (frame-level outputs only), or None.
        smoothing_mode: ``"reflect"`` (default) or ``"constant"`` (zeros past the video's ends: JMT's ``val.py``);
            see :func:`affectfuse.tasks.metrics.smooth_predictions`.
    """

    activation: str = "none"
    clip: tuple[float, float] | None = None
    smoothing: tuple[int, ...] | None = None
    smoothing_mode: str = "reflect"

    def validate(self) -> "PostProcess":
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"PostProcess.activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.clip is not None and (len(self.clip) != 2 or not self.clip[0] <= self.clip[1]):
            raise ValueError(f"PostProcess.clip must be (low, high) with low <= high, got {self.clip!r}")
        if self.smoothing_mode not in ("reflect", "constant"):
            raise ValueError(f"PostProcess.smoothing_mode must be 'reflect' or 'constant', got {self.smoothing_mode!r}")
        if self.smoothing is not None and (not self.smoothing or min(self.smoothing) < 1):
            raise ValueError(f"PostProcess.smoothing must be windows >= 1 (one per output), got {self.smoothing!r}")
        return self

    @classmethod
    def for_task(cls, task: TaskSpec, *, activation: str = "none", smoothing: Sequence[int] | None = None,
                 smoothing_mode: str = "reflect") -> "PostProcess":
        """The post-processing of a task trained with a loss whose outputs need ``activation``.

        ``smoothing`` applies to frame-level regression only (it is dropped for other tasks) and comes with
        clipping to the task's value range.
        """
        smooth = bool(smoothing) and task.resolution == "frame" and not task.is_classification
        return cls(activation=activation, clip=task.value_range if smooth else None,
                   smoothing=tuple(int(w) for w in smoothing) if smooth else None,
                   smoothing_mode=smoothing_mode).validate()

    def output_range(self) -> tuple[float, float] | None:
        """The range the predictions are guaranteed to lie in, or None (raw regression outputs: unbounded, e.g.
        a ViPER intensity can fall below 0 though the targets were in [0, 1])."""
        if self.clip is not None:
            lo, hi = self.clip
            if self.activation in ("sigmoid", "softmax"):
                return max(lo, 0.0), min(hi, 1.0)
            return float(lo), float(hi)
        return (0.0, 1.0) if self.activation in ("sigmoid", "softmax") else None

    def activate(self, values: np.ndarray) -> np.ndarray:
        """The activation alone.

        Shape:
            ``(R, K)`` (or any ``(..., K)``) → the same, float32.
        """
        x = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
        if self.activation == "sigmoid":
            x = torch.sigmoid(x)
        elif self.activation == "softmax":
            x = torch.softmax(x, dim=-1)
        return x.numpy().copy()

    def apply(self, values: np.ndarray, *, video_ids: Sequence[str] | None = None,
              frames: np.ndarray | None = None) -> np.ndarray:
        """Predictions from raw outputs: activation, then clipping and per-video smoothing.

        Args:
            values: raw outputs, one row per clip or frame.
            video_ids: ``(R,)`` video of each row (needed for smoothing).
            frames: ``(R,)`` frame index of each row (needed for smoothing; rows of a video are smoothed in
                frame order and written back in place).

        Shape:
            values ``(R, K)`` → ``(R, K)`` float32.
        """
        x = self.activate(values)
        if self.smoothing:
            if video_ids is None or frames is None:
                raise ValueError("PostProcess.apply: smoothing needs the video id and the frame of every row")
            vids = np.asarray(video_ids)
            frames = np.asarray(frames)
            for v in dict.fromkeys(video_ids):
                rows = np.nonzero(vids == v)[0]
                rows = rows[np.argsort(frames[rows], kind="stable")]
                x[rows] = smooth_predictions(x[rows], list(self.smoothing), clip=self.clip, mode=self.smoothing_mode)
        elif self.clip is not None:
            x = np.clip(x, self.clip[0], self.clip[1])
        return x
