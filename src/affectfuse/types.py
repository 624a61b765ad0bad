"""The typed objects that cross module boundaries.

The path data takes, one function per hop::

    path ─probe→ VideoInfo ─sample→ FrameBatch (+ AudioFragments) ─faces→ FrameBatch
         ─extractor→ FeatureSet ─store.put→ disk
    disk ─dataset→ samples ─collate→ Batch ─model→ ModelOutput ─task→ Prediction

Conventions used everywhere:

* times are seconds from the start of the media (presentation timestamps, not frame index / fps);
* boolean ``valid`` / mask arrays are ``True`` where a row holds real data. Padding and missing data are
  never encoded as zeros that pretend to be data;
* pixels cross boundaries as ``uint8`` RGB, ``(N, H, W, 3)``: each extractor owns its own resizing and
  normalisation (its :class:`~affectfuse.extractors.base.InputContract`), so one decoded frame serves
  extractors with different input contracts.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "VideoInfo",
    "FrameBatch",
    "AudioFragments",
    "FeatureSet",
    "Batch",
    "ModelOutput",
    "Prediction",
    "feature_key",
]


def feature_key(name: str, params: dict[str, Any]) -> str:
    """The store key of an extractor: its name plus a hash of its parameters.

    A changed parameter gives a new key, so stale features are never silently reused.

    Example:
        >>> feature_key("logmel_stats", {"n_mels": 64})
        'logmel_stats-...'
    """
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return f"{name}-{hashlib.sha1(blob).hexdigest()[:8]}"


@dataclass(frozen=True)
class VideoInfo:
    """What a media file holds, read from its container without decoding pixels.

    Attributes:
        path: the file.
        frame_times: presentation time of every video frame in display order, seconds, ``(T,)``
            float64, strictly increasing. Empty when the file has no video stream.
        width: frame width in pixels (0 without video).
        height: frame height in pixels (0 without video).
        duration: seconds; the end of the last frame or of the audio, whichever is later.
        has_audio: whether an audio stream exists.
        audio_sample_rate: native sample rate of the audio stream (0 without audio).
        nominal_fps: the container's average frame rate (informative only; times come from PTS).
    """

    path: Path
    frame_times: np.ndarray
    width: int
    height: int
    duration: float
    has_audio: bool
    audio_sample_rate: int = 0
    nominal_fps: float = 0.0

    @property
    def has_video(self) -> bool:
        return len(self.frame_times) > 0

    @property
    def n_frames(self) -> int:
        return len(self.frame_times)


@dataclass
class FrameBatch:
    """Sampled frames of one video, full frames or face crops.

    Attributes:
        pixels: RGB ``uint8``, ``(N, H, W, 3)``.
        times: presentation time of each row, seconds, ``(N,)`` float64.
        indices: index of each row's frame in the video's display order, ``(N,)`` int64.
        valid: ``(N,)`` bool; False where the row does not hold what it should (a repeated frame of a
            too-short video, a crop where no face was found, ...).
        boxes: face box per row in source-frame pixels ``(x1, y1, x2, y2)``, ``(N, 4)`` float32, NaN
            where no face; None for full frames that were not passed through a detector.
        scores: detector confidence per row, ``(N,)`` float32, NaN where no face; None like ``boxes``.
        notes: human-readable remarks (e.g. "video has 3 frames, 32 requested: frames repeated").
    """

    pixels: np.ndarray
    times: np.ndarray
    indices: np.ndarray
    valid: np.ndarray
    boxes: np.ndarray | None = None
    scores: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.times)


@dataclass
class AudioFragments:
    """Audio cut into one fragment per sampled frame (ViPER, section 3.2).

    Fragments are stored padded to a common length; ``lengths`` tells how many samples of each row are
    real audio. A row whose fragment lies outside the audio, or a video without audio, has
    ``valid == False``.

    Attributes:
        samples: mono float32 in [-1, 1], ``(N, L)``; samples past ``lengths[i]`` are zero padding.
        lengths: real samples per row, ``(N,)`` int64.
        starts: fragment start time, seconds, ``(N,)`` float64.
        ends: fragment end time, seconds, ``(N,)`` float64.
        times: the time each fragment belongs to (its frame's timestamp), ``(N,)`` float64.
        valid: ``(N,)`` bool.
        sample_rate: samples per second.
    """

    samples: np.ndarray
    lengths: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    times: np.ndarray
    valid: np.ndarray
    sample_rate: int

    def __len__(self) -> int:
        return len(self.times)


@dataclass
class FeatureSet:
    """The output of one extractor on one video.

    Attributes:
        values: ``(T, D)`` float32 or float16; rows with ``valid == False`` hold no data (zeros).
        times: ``(T,)`` float64 seconds.
        valid: ``(T,)`` bool.
        extractor: the extractor's registered name.
        params: the extractor's parameters (with ``extractor``, its identity).
        video_id: the video this came from.
        boxes: optional ``(T, 4)`` float32 face boxes (NaN where none).
        indices: optional ``(T,)`` int64 frame indices.
        meta: free-form extra information (e.g. notes on repeated frames).
    """

    values: np.ndarray
    times: np.ndarray
    valid: np.ndarray
    extractor: str
    params: dict[str, Any]
    video_id: str
    boxes: np.ndarray | None = None
    indices: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = len(self.times)
        if self.values.ndim != 2 or self.values.shape[0] != t or self.valid.shape != (t,):
            raise ValueError(
                f"FeatureSet({self.video_id!r}, {self.extractor!r}): expected values (T, D), times (T,), "
                f"valid (T,); got values {self.values.shape}, times {self.times.shape}, valid {self.valid.shape}"
            )

    @property
    def key(self) -> str:
        return feature_key(self.extractor, self.params)

    @property
    def dim(self) -> int:
        return int(self.values.shape[1])

    def __len__(self) -> int:
        return len(self.times)


@dataclass
class Batch:
    """A collated batch of per-modality sequences.

    Attributes:
        inputs: modality name → ``(B, T_m, D_m)`` float tensor. Any non-empty subset of a model's
            modalities may be present.
        masks: modality name → ``(B, T_m)`` bool tensor, True where the row is real data. A sample
            that lacks a modality has an all-False row for it.
        targets: ``(B, K)`` (clip level) or ``(B, T, K)`` (frame level) float for regression, int64
            class indices ``(B,)`` / ``(B, T)`` for classification; None at inference.
        target_mask: bool, shaped like the targets without the K axis (False = unlabelled / ignored).
        ids: video id per sample.
        times: optional ``(B, T)`` seconds of each output step for frame-level tasks (NaN on padding).
        frames: optional ``(B, T)`` int64 frame index of each output step for frame-level tasks (-1 on padding).
        raw: optional raw inputs for end-to-end models, e.g. ``{"pixels": (B, N, 3, H, W),
            "waveform": (B, S)}`` with masks in ``masks`` under the same names.
    """

    inputs: dict[str, Any]
    masks: dict[str, Any]
    targets: Any = None
    target_mask: Any = None
    ids: list[str] = field(default_factory=list)
    times: Any = None
    raw: dict[str, Any] = field(default_factory=dict)
    frames: Any = None

    @property
    def batch_size(self) -> int:
        for v in list(self.inputs.values()) + list(self.raw.values()):
            return int(v.shape[0])
        raise ValueError("Batch has no inputs")

    def to(self, device: Any) -> "Batch":
        """Move every tensor to ``device``."""

        def mv(x: Any) -> Any:
            return x.to(device) if hasattr(x, "to") else x

        return Batch(
            inputs={k: mv(v) for k, v in self.inputs.items()},
            masks={k: mv(v) for k, v in self.masks.items()},
            targets=mv(self.targets),
            target_mask=mv(self.target_mask),
            ids=list(self.ids),
            times=mv(self.times),
            raw={k: mv(v) for k, v in self.raw.items()},
            frames=mv(self.frames),
        )


@dataclass
class ModelOutput:
    """What every model returns. Losses are applied by the training code, never by the model.

    Attributes:
        preds: main head, before any activation: ``(B, K)`` (clip level) or ``(B, T, K)`` (frame level).
            For classification these are logits over K classes.
        logits: optional auxiliary head (e.g. ABAW5-ERI's dominant-emotion classifier), ``(B, C)``.
        embedding: optional fused representation, ``(B, E)`` or ``(B, T, E)``.
        extras: any other named tensor (e.g. per-modality predictions of a late-fusion model).
    """

    preds: Any
    logits: Any = None
    embedding: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prediction:
    """Predictions for one or more videos, ready to be written out.

    Attributes:
        values: ``(R, K)`` float, one row per clip (clip level) or per frame (frame level).
        names: the K column names (targets or class names).
        video_ids: ``(R,)`` video id of each row.
        times: ``(R,)`` seconds for frame-level rows, None for clip level.
        valid: ``(R,)`` bool, False where no prediction could be made (e.g. no face).
    """

    values: np.ndarray
    names: list[str]
    video_ids: list[str]
    times: np.ndarray | None = None
    valid: np.ndarray | None = None

    def to_frame(self):  # -> pandas.DataFrame
        import pandas as pd

        df = pd.DataFrame(self.values, columns=self.names)
        df.insert(0, "video_id", self.video_ids)
        if self.times is not None:
            df.insert(1, "time", self.times)
        if self.valid is not None:
            df["valid"] = self.valid
        return df
