"""The typed objects that cross module boundaries.

The path data takes, one function per hop::

    path ─probe→ VideoInfo ─sample→ Clip (FrameBatch + AudioFragments; or windows of them) ─faces→ FrameBatch
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
    "Clip",
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
        width: width of the frames as a player shows them (rotation applied), pixels (0 without video).
        height: height of the shown frames, pixels (0 without video).
        duration: seconds the data holds: the end of the last frame or of the last audio packet, whichever
            is later.
        has_audio: whether an audio stream exists.
        audio_sample_rate: native sample rate of the audio stream (0 without audio).
        nominal_fps: the container's average frame rate (informative only; times come from PTS).
        rotation: counter-clockwise degrees (0 / 90 / 180 / 270) a player turns the stored frames by (the
            display matrix phones write, or the legacy ``rotate`` tag); decoded frames come turned.
        flip: whether the shown frame is also mirrored left-right (after the rotation).
        declared_duration: seconds the container declares, or None; longer than ``duration`` for a
            truncated file (see ``notes``).
        codec: the video codec's name (``""`` without video).
        has_b_frames: whether the video stream uses B-frames (decode order differs from display order).
        notes: what is wrong or unusual with the file ("truncated: declares 18.45 s, frames end at 9.01 s").
    """

    path: Path
    frame_times: np.ndarray
    width: int
    height: int
    duration: float
    has_audio: bool
    audio_sample_rate: int = 0
    nominal_fps: float = 0.0
    rotation: int = 0
    flip: bool = False
    declared_duration: float | None = None
    codec: str = ""
    has_b_frames: bool = False
    notes: tuple[str, ...] = ()

    @property
    def has_video(self) -> bool:
        return len(self.frame_times) > 0

    @property
    def n_frames(self) -> int:
        return len(self.frame_times)

    @property
    def stored_size(self) -> tuple[int, int]:
        """``(width, height)`` of the frames as stored (before ``rotation``)."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)


@dataclass
class FrameBatch:
    """Sampled frames of one video, full frames or face crops.

    Attributes:
        pixels: RGB ``uint8``, ``(N, H, W, 3)``.
        times: presentation time of each row, seconds, ``(N,)`` float64.
        indices: index of each row's frame in the video's display order, ``(N,)`` int64.
        valid: ``(N,)`` bool; False where the row does not hold what it should (a repeated frame of a
            too-short video, a crop where no face was found, ...).
        boxes: face box per row in **source-frame** pixels ``(x1, y1, x2, y2)``, ``(N, 4)`` float32, NaN
            where no face; None for full frames that were not passed through a detector.
        scores: detector confidence per row, ``(N,)`` float32, NaN where no face; None like ``boxes``.
        notes: human-readable remarks (e.g. "video has 3 frames, 32 requested: frames repeated").
        source_size: ``(width, height)`` of the video's own frames when ``pixels`` were decoded downscaled
            (``max_side``); None when ``pixels`` are at the source size. Boxes are always in source pixels:
            :meth:`scale` converts them to ``pixels`` coordinates.
        landmarks: ``(N, P, 2)`` float32 key points of each row's face in source-frame pixels (the detector's
            points: MediaPipe 6, MTCNN 5), NaN where no face; None when the detector gives none.
    """

    pixels: np.ndarray
    times: np.ndarray
    indices: np.ndarray
    valid: np.ndarray
    boxes: np.ndarray | None = None
    scores: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    source_size: tuple[int, int] | None = None
    landmarks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.times)

    @property
    def scale(self) -> tuple[float, float]:
        """``(sx, sy)``: source pixels per ``pixels`` pixel along x and y (1.0 when not downscaled)."""
        if self.source_size is None or self.pixels.ndim != 4:
            return 1.0, 1.0
        h, w = self.pixels.shape[1:3]
        return self.source_size[0] / w, self.source_size[1] / h


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
class Clip:
    """One media file sampled for extraction or training: frames and audio on one clock.

    The output of the one decode → sample hop (:func:`affectfuse.io.sampling.sample`). At clip level a
    file gives one Clip; at frame level it gives consecutive windows, each a Clip whose rows continue the
    previous one's (``window`` counts them, ``last`` marks the final one).

    Attributes:
        video_id: the id the file is known by.
        source: the file.
        info: the file's :class:`VideoInfo`.
        times: ``(N,)`` float64 seconds of each row (the sampled frames' times; for a file without video, a
            grid over its duration).
        indices: ``(N,)`` int64 frame index of each row, -1 where the file has no video.
        valid: ``(N,)`` bool; False for a repeated frame of a too-short video (its first occurrence stays True).
        frames: the sampled frames (``pixels`` possibly downscaled, see :attr:`FrameBatch.source_size`);
            None when pixels were not asked for or the file has no video.
        context: ``(clip_len, clip_stride, anchor)`` → a FrameBatch of ``N * clip_len`` rows, the frames around each
            row (short clips for video backbones), row-major; empty unless asked for.
        fragments: sample rate → :class:`AudioFragments` cut around the rows (clip level: ViPER's
            non-overlapping fragments; frame level: centred windows); empty when not asked for or no audio.
        waveform: the whole audio track, mono float32 ``(S,)`` at :attr:`sample_rate`, when asked for (end-to-end
            models), else None.
        audio_start: seconds of ``waveform[0]`` on the clock of ``times``.
        sample_rate: Hz of ``waveform``.
        video_missing: why there are no frames (e.g. an audio-only file), or None.
        audio_missing: why there is no audio (no stream, undecodable), or None.
        notes: remarks on this clip (repeated frames, frames that could not be decoded, downscaling).
        window: index of this window (0 at clip level).
        last: whether this is the file's last window (always True at clip level).

    Shape:
        times, indices, valid ``(N,)``; frames.pixels ``(N, H, W, 3)`` uint8.
    """

    video_id: str
    source: Path
    info: VideoInfo
    times: np.ndarray
    indices: np.ndarray
    valid: np.ndarray
    frames: FrameBatch | None = None
    context: dict[tuple[int, int, str], FrameBatch] = field(default_factory=dict)
    fragments: dict[int, AudioFragments] = field(default_factory=dict)
    waveform: np.ndarray | None = None
    audio_start: float = 0.0
    sample_rate: int = 0
    video_missing: str | None = None
    audio_missing: str | None = None
    notes: list[str] = field(default_factory=list)
    window: int = 0
    last: bool = True

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
        boxes: optional ``(T, 4)`` float32 face boxes in source-frame pixels (NaN where none).
        indices: optional ``(T,)`` int64 frame indices.
        meta: free-form extra information (e.g. notes on repeated frames, the video's duration).
        scores: optional ``(T,)`` float32 face-detector confidence of each row's box (NaN where none).
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
    scores: np.ndarray | None = None

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
    """Predictions for one or more videos: one row per clip (clip level) or per frame (frame level).

    The one writer and reader of prediction tables: ``RUN/predictions/<split>.csv`` (training, ``evaluate``),
    the seed ensemble, k-fold out-of-fold predictions, ``affectfuse predict --run`` and the offline
    predictor's per-frame table. A :class:`Prediction.Layout` names the columns, their order and the number
    format; three are defined:

    * :attr:`RUN` (run folders, ``predict --run``): ``video_id``, [``frame``, ``time``], then the target
      columns (regression) or ``prediction`` (the predicted class) and ``p_<class>`` (probabilities);
      values with 6 decimals, times with 4;
    * :attr:`OOF` (k-fold): as RUN with a ``fold`` column after ``video_id``; numbers at full precision;
    * :attr:`FRAME_TABLE` (offline predictor): ``video_id, frame, time, face, box_x1..box_y2, face_score``,
      one column per class (no prefix), then ``dominant``; full precision, NaN written empty, ``face`` holds
      :attr:`valid`.

    Attributes:
        values: ``(R, K)`` float: regression targets, or class scores (probabilities) for classification.
        names: the K target or class names.
        video_ids: ``(R,)`` video id of each row.
        times: ``(R,)`` float64 seconds of frame-level rows, or None (clip level).
        valid: ``(R,)`` bool, False where no prediction could be made (e.g. no face); None = every row.
        frames: ``(R,)`` int64 frame index of frame-level rows, or None.
        classification: the values are class scores: tables carry a label column (the predicted class).
        labels: ``(R,)`` predicted class name per row (str); None = the argmax of ``values``, ``""`` where a
            row is not valid or not finite (see :meth:`predicted_labels`). Read back from a table's label column.
        extra: other per-row columns ``(R,)`` by name, in order (e.g. face boxes, the fold of an out-of-fold row).

    Example:
        >>> p = Prediction(values=probs, names=["Positive", "Neutral", "Negative"], video_ids=ids,
        ...                classification=True)
        >>> p.write("predictions/test.csv")                     # Prediction.RUN layout
        >>> Prediction.read("predictions/test.csv").values      # (R, 3)
    """

    values: np.ndarray
    names: list[str]
    video_ids: list[str]
    times: np.ndarray | None = None
    valid: np.ndarray | None = None
    frames: np.ndarray | None = None
    classification: bool = False
    labels: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @dataclass(frozen=True, kw_only=True)
    class Layout:
        """The columns of a prediction table, in order, and how numbers are written.

        Attributes:
            columns: column names in order, with two placeholders: ``{scores}`` (the K value columns) and
                ``{extra}`` (extra columns not named elsewhere, in their order). ``frame`` / ``time`` are left
                out when the prediction has none, the label column when it is not a classification. Any other
                name is an extra column the prediction must have.
            label: the label column (classification): the predicted class name.
            prefix: classification score columns are ``prefix + class name`` (regression: the target names).
            valid: the column that holds :attr:`Prediction.valid` (True / False), or None (not written).
            decimals: digits after the point of values and float extras (NaN written ``nan``); None = the
                shortest exact form (``repr``), NaN written empty.
            time_decimals: the same for ``time``.
            lineterminator: row separator.
        """

        columns: tuple[str, ...] = ("video_id", "frame", "time", "{extra}", "prediction", "{scores}")
        label: str = "prediction"
        prefix: str = "p_"
        valid: str | None = None
        decimals: int | None = 6
        time_decimals: int | None = 4
        lineterminator: str = "\r\n"

    RUN = Layout()
    OOF = Layout(columns=("video_id", "fold", "frame", "time", "{extra}", "prediction", "{scores}"), decimals=None,
                 time_decimals=None, lineterminator="\n")
    FRAME_TABLE = Layout(columns=("video_id", "frame", "time", "face", "box_x1", "box_y1", "box_x2", "box_y2",
                                  "face_score", "{extra}", "{scores}", "dominant"),
                         label="dominant", prefix="", valid="face", decimals=None, time_decimals=None,
                         lineterminator="\n")

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values)
        self.names = [str(n) for n in self.names]
        self.video_ids = [str(v) for v in self.video_ids]
        r = len(self.video_ids)
        if self.values.shape != (r, len(self.names)):
            raise ValueError(f"Prediction: values must be (R, K) = ({r}, {len(self.names)}) for {r} video ids and "
                             f"names {self.names}; got {self.values.shape}")
        per_row = {"times": self.times, "valid": self.valid, "frames": self.frames, "labels": self.labels,
                   **{f"extra[{k!r}]": v for k, v in self.extra.items()}}
        for name, arr in per_row.items():
            if arr is not None and len(arr) != r:
                raise ValueError(f"Prediction: {name} must have one entry per row ({r}), got {len(arr)}")

    def __len__(self) -> int:
        return len(self.video_ids)

    def predicted_labels(self) -> np.ndarray:
        """``(R,)`` class name per row: :attr:`labels`, else the argmax of the scores (``""`` where a row is
        not valid or not finite)."""
        if self.labels is not None:
            return np.asarray(self.labels, dtype=object)
        out = np.full(len(self), "", dtype=object)
        if not self.names:
            return out
        ok = np.isfinite(self.values).all(axis=1)
        if self.valid is not None:
            ok &= np.asarray(self.valid, dtype=bool)
        out[ok] = np.asarray(self.names, dtype=object)[np.argmax(self.values[ok], axis=1)]
        return out

    # -- tables --------------------------------------------------------------------------------------
    def _columns(self, layout: "Prediction.Layout") -> list[tuple[str, str, Any]]:
        """``[(column, kind, values)]`` in the layout's order; kind: id, frame, time, label, valid, value, extra."""
        named = set(layout.columns) - {"{scores}", "{extra}"}
        rest = [k for k in self.extra if k not in named]
        out: list[tuple[str, str, Any]] = []
        for col in layout.columns:
            if col == "video_id":
                out.append((col, "id", self.video_ids))
            elif col in ("frame", "time"):
                arr = self.frames if col == "frame" else self.times
                if arr is not None:
                    out.append((col, col, arr))
            elif col == layout.label:
                if self.classification:
                    out.append((col, "label", self.predicted_labels()))
            elif col == layout.valid:
                out.append((col, "valid", np.ones(len(self), bool) if self.valid is None else self.valid))
            elif col == "{scores}":
                prefix = layout.prefix if self.classification else ""
                out += [(prefix + n, "value", self.values[:, j]) for j, n in enumerate(self.names)]
            elif col == "{extra}":
                out += [(k, "extra", self.extra[k]) for k in rest]
            elif col in self.extra:
                out.append((col, "extra", self.extra[col]))
            else:
                raise ValueError(f"Prediction: the layout names a column {col!r} that this prediction does not have "
                                 f"(extra columns: {list(self.extra)})")
        if rest and "{extra}" not in layout.columns:
            raise ValueError(f"Prediction: extra column(s) {rest} have no place in the layout {layout.columns}")
        return out

    def to_frame(self, layout: "Prediction.Layout | None" = None):  # -> pandas.DataFrame
        """The table as a DataFrame with typed columns (ids str, frames int, numbers float), in layout order."""
        import pandas as pd  # heavy: only when a table is made

        cols = self._columns(layout or Prediction.RUN)
        df = pd.DataFrame({name: np.asarray(v) for name, _, v in cols}, columns=[name for name, _, _ in cols])
        return df.astype({name: object for name, kind, _ in cols if kind in ("id", "label")})

    def write(self, path: str | Path, layout: "Prediction.Layout | None" = None) -> Path:
        """Write the table as CSV (parent folders made), numbers formatted as the layout says."""
        import pandas as pd  # heavy: only when a table is written

        layout = layout or Prediction.RUN
        cells: dict[str, list[str]] = {}
        for name, kind, v in self._columns(layout):
            digits = layout.time_decimals if kind == "time" else layout.decimals
            cells[name] = [Prediction._cell(x, kind, digits) for x in v]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(cells, columns=list(cells), dtype=object).to_csv(path, index=False,
                                                                      lineterminator=layout.lineterminator)
        return path

    @classmethod
    def from_frame(cls, df, layout: "Prediction.Layout | None" = None, *, names: list[str] | None = None,
                   classification: bool | None = None) -> "Prediction":
        """Read a table (as :meth:`to_frame` or a CSV gives it) back.

        Args:
            df: the table.
            layout: which columns mean what (default :attr:`RUN`).
            names: the target / class names (default: the score columns found: ``prefix*`` columns for
                classification, else every column the layout does not name).
            classification: default: whether the label column (or a ``prefix*`` column) is there.

        Raises:
            ValueError: no ``video_id`` column, or a named score column is missing.
        """
        layout = layout or Prediction.RUN
        cols = [str(c) for c in df.columns]
        if "video_id" not in cols:
            raise ValueError(f"prediction table without a video_id column; found {cols}")
        has_label = layout.label in cols
        if classification is None:
            classification = has_label or bool(layout.prefix and any(c.startswith(layout.prefix) for c in cols))
        reserved = {"video_id", "frame", "time", layout.label, layout.valid}
        named = set(layout.columns) - {"{scores}", "{extra}"} - reserved
        prefix = layout.prefix if classification else ""
        if names is not None:
            score_cols = [prefix + n for n in names]
            missing = [c for c in score_cols if c not in cols]
            if missing:
                raise ValueError(f"prediction table: score column(s) {missing} missing; found {cols}")
        elif classification and prefix:
            score_cols = [c for c in cols if c.startswith(prefix) and c not in reserved]
        else:
            score_cols = [c for c in cols if c not in reserved and c not in named]
        vals = df[score_cols].to_numpy(np.float64) if score_cols else np.zeros((len(df), 0))
        labels = None
        if classification and has_label:
            labels = df[layout.label].astype(object).where(df[layout.label].notna(), "").astype(str).to_numpy(object)
        valid = None
        if layout.valid in cols:
            v = df[layout.valid]
            valid = (v.fillna(False).astype(bool).to_numpy() if v.dtype == bool or v.dtype.kind in "iuf"
                     else v.astype(str).str.strip().str.lower().isin(("true", "1", "1.0")).to_numpy())
        extra = {c: df[c].to_numpy() for c in cols if c not in reserved and c not in score_cols}
        return cls(values=vals, names=[c[len(prefix):] for c in score_cols], video_ids=list(df["video_id"]),
                   times=df["time"].to_numpy(np.float64) if "time" in cols else None, valid=valid,
                   frames=df["frame"].to_numpy(np.int64) if "frame" in cols else None,
                   classification=classification, labels=labels, extra=extra)

    @classmethod
    def read(cls, path: str | Path, layout: "Prediction.Layout | None" = None, *, names: list[str] | None = None,
             classification: bool | None = None) -> "Prediction":
        """Read a CSV written by :meth:`write` (or by hand in the same layout); see :meth:`from_frame`."""
        import pandas as pd  # heavy: only when a table is read

        layout = layout or Prediction.RUN
        return cls.from_frame(pd.read_csv(path, dtype={"video_id": str, layout.label: str}), layout, names=names,
                              classification=classification)

    # -- several predictions -------------------------------------------------------------------------
    @classmethod
    def concat(cls, preds: "list[Prediction]") -> "Prediction":
        """The rows of several predictions of the same targets / classes, one after the other."""
        if not preds:
            raise ValueError("Prediction.concat: no predictions")
        first = preds[0]
        for p in preds[1:]:
            if (p.names, p.classification, list(p.extra)) != (first.names, first.classification, list(first.extra)):
                raise ValueError(f"Prediction.concat: names / extra columns differ: {p.names} {list(p.extra)} vs "
                                 f"{first.names} {list(first.extra)}")

        def cat(attr: str):
            arrs = [getattr(p, attr) for p in preds]
            if all(a is None for a in arrs):
                return None
            if attr in ("valid",):
                arrs = [np.ones(len(p), bool) if a is None else a for p, a in zip(preds, arrs)]
            if attr == "labels":
                arrs = [p.predicted_labels() for p in preds]
            if any(a is None for a in arrs):
                raise ValueError(f"Prediction.concat: {attr} present in some predictions only")
            return np.concatenate(arrs)

        return cls(values=np.concatenate([p.values for p in preds]), names=list(first.names),
                   video_ids=[v for p in preds for v in p.video_ids], times=cat("times"), valid=cat("valid"),
                   frames=cat("frames"), classification=first.classification, labels=cat("labels"),
                   extra={k: np.concatenate([p.extra[k] for p in preds]) for k in first.extra})

    @classmethod
    def mean(cls, preds: "list[Prediction]") -> "Prediction":
        """The ensemble: rows matched by video id (and frame), values averaged over the predictions that have
        the row; rows in order of first appearance, times from the first prediction that has the row.
        Labels are re-derived (argmax of the mean scores); valid flags and extra columns are dropped."""
        import pandas as pd  # heavy: only when predictions are combined

        if not preds:
            raise ValueError("Prediction.mean: no predictions")
        first = preds[0]
        frame_level = first.frames is not None
        if any((p.frames is not None) != frame_level or p.names != first.names for p in preds):
            raise ValueError("Prediction.mean: the predictions differ in targets / classes or in resolution")
        keys = ["video_id", "frame"] if frame_level else ["video_id"]
        k = len(first.names)

        def table(p: "Prediction"):
            d = {"video_id": p.video_ids, **({"frame": p.frames} if frame_level else {})}
            d.update({f"v{j}": p.values[:, j] for j in range(k)})
            if p.times is not None:
                d["time"] = p.times
            return pd.DataFrame(d)

        tables = [table(p) for p in preds]
        out = pd.concat(tables).groupby(keys, sort=False)[[f"v{j}" for j in range(k)]].mean().reset_index()
        times = None
        if first.times is not None:
            t = pd.concat(tables).drop_duplicates(subset=keys)[keys + ["time"]]
            times = out[keys].merge(t, on=keys, how="left")["time"].to_numpy(np.float64)
        return cls(values=out[[f"v{j}" for j in range(k)]].to_numpy(np.float64), names=list(first.names),
                   video_ids=list(out["video_id"]), times=times,
                   frames=out["frame"].to_numpy(np.int64) if frame_level else None,
                   classification=first.classification)

    @staticmethod
    def _cell(x: Any, kind: str, digits: int | None) -> str:
        """One CSV cell of a prediction table."""
        if kind in ("id", "label") or isinstance(x, str):
            return str(x)
        if isinstance(x, (bool, np.bool_)):
            return str(bool(x))
        if kind == "frame" or isinstance(x, (int, np.integer)):
            return str(int(x))
        x = float(x)
        if digits is not None:
            return f"{x:.{digits}f}"
        return "" if x != x else repr(x)
