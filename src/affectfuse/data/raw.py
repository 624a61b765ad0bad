"""Raw frames and waveforms from videos, for end-to-end models (``e2e_cross``).

``RawVideoDataset(labels, videos, split)`` decodes, per sample, ``frames`` equally spaced whole frames
(letterboxed to ``image_size``; group emotion looks at the whole scene, not a face) and the audio track as a
16 kHz mono waveform (at most ``max_seconds``), through the same decode → sample hop as ``affectfuse extract``
(:func:`affectfuse.io.sampling.sample`). Decoding
runs in DataLoader workers; nothing is cached beyond one sample.

A video that cannot be read is dropped at construction time with a message in ``report`` (it never breaks a
batch); a video without audio keeps an all-False waveform mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from affectfuse.data.labels import Labels, _as_splits
from affectfuse.errors import MediaError
from affectfuse.io.faces import letterbox
from affectfuse.io.inputs import list_inputs
from affectfuse.io.sampling import SamplingSpec, sample
from affectfuse.io.video import probe
from affectfuse.tasks.spec import TaskSpec, get_task
from affectfuse.types import Batch

__all__ = ["RawVideoDataset", "RawSample", "collate_raw", "RAW_MODALITIES"]

RAW_MODALITIES = {"pixels": 3, "waveform": 1}


@dataclass
class RawSample:
    """One clip: frames ``(N, S, S, 3)`` uint8, ``frame_valid (N,)``, ``waveform (L,)`` float32, target."""

    video_id: str
    frames: np.ndarray | None
    frame_valid: np.ndarray | None
    waveform: np.ndarray | None
    target: Any = None


class RawVideoDataset(torch.utils.data.Dataset):
    """Clip-level samples of raw frames and audio.

    Args:
        labels: a :class:`Labels` (clip level) or None for inference (then give ``video_ids`` and ``task``).
        videos: a folder (files found by video id = relative path without extension, as ``affectfuse extract``
            names them) or a mapping video id → file.
        split: split name(s) or None for every labelled video.
        modalities: which of ``pixels`` / ``waveform`` to decode.
        frames: frames per clip, equally spaced, first and last included (paper: 8).
        image_size: square side of the letterboxed frames.
        sample_rate: audio sample rate.
        max_seconds: audio longer than this is cut (None keeps all).
        max_side: frames are decoded downscaled to this longer side first.
    """

    def __init__(self, labels: Labels | None, videos: str | Path | dict[str, str | Path], split: str | Sequence[str] | None,
                 *, modalities: Sequence[str] = ("pixels", "waveform"), frames: int = 8, image_size: int = 224,
                 sample_rate: int = 16000, max_seconds: float | None = 10.0, max_side: int = 640,
                 video_ids: Sequence[str] | None = None, task: "str | TaskSpec | None" = None) -> None:
        unknown = set(modalities) - set(RAW_MODALITIES)
        if unknown or not modalities:
            raise ValueError(f"RawVideoDataset: modalities must be a non-empty subset of {sorted(RAW_MODALITIES)}, "
                             f"got {list(modalities)}")
        self.task = get_task(task) if task is not None else labels.task  # type: ignore[union-attr]
        if self.task.resolution != "clip":
            raise ValueError(f"RawVideoDataset: end-to-end training is clip level; task {self.task.name!r} is frame level")
        self.modalities = list(modalities)
        self.frames, self.image_size, self.sample_rate = frames, image_size, sample_rate
        self.max_seconds, self.max_side = max_seconds, max_side
        paths = dict(list_inputs([videos])) if not isinstance(videos, dict) else {k: Path(v) for k, v in videos.items()}
        table = None
        if labels is not None:
            table = labels.table if split is None else labels.table[labels.table["split"].isin(_as_splits(split))]
            wanted = list(dict.fromkeys(table["video_id"]))
        else:
            wanted = list(video_ids) if video_ids is not None else list(paths)
        self.report: list[str] = []
        self.video_ids: list[str] = []
        self.paths: dict[str, Path] = {}
        for v in wanted:
            if v not in paths:
                self.report.append(f"{v}: dropped, no video file for it under {videos}")
                continue
            try:
                info = probe(paths[v])
            except MediaError as e:
                self.report.append(f"{v}: dropped, {e}")
                continue
            if "pixels" in self.modalities and not info.has_video and "waveform" not in self.modalities:
                self.report.append(f"{v}: dropped, no video stream")
                continue
            self.video_ids.append(v)
            self.paths[v] = paths[v]
        self.targets: dict[str, Any] = {}
        if table is not None:
            cols = labels.target_columns  # type: ignore[union-attr]
            for d in table.to_dict("records"):
                if self.task.is_classification:
                    self.targets[d["video_id"]] = np.int64(d["label"])
                else:
                    self.targets[d["video_id"]] = np.array([d[c] for c in cols], np.float32)
        self.input_dims = {m: RAW_MODALITIES[m] for m in self.modalities}
        self.keys = {m: f"raw:{m}" for m in self.modalities}
        self.collate_fn = collate_raw

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, i: int) -> RawSample:
        vid = self.video_ids[i]
        spec = SamplingSpec(level="clip", frames=self.frames, pixels="pixels" in self.modalities, max_side=self.max_side,
                            waveform_rate=self.sample_rate if "waveform" in self.modalities else None,
                            max_seconds=self.max_seconds)
        clip = next(sample(vid, self.paths[vid], spec))  # the same decode → sample hop as extraction
        frames = valid = wave = None
        if "pixels" in self.modalities:
            if clip.frames is not None:
                frames = np.stack([letterbox(p, self.image_size) for p in clip.frames.pixels])  # (N, S, S, 3)
                valid = clip.frames.valid.copy()
            else:
                frames = np.zeros((self.frames, self.image_size, self.image_size, 3), np.uint8)
                valid = np.zeros(self.frames, bool)
        if "waveform" in self.modalities:
            wave = clip.waveform if clip.waveform is not None else np.zeros(0, np.float32)
        return RawSample(vid, frames, valid, wave, self.targets.get(vid))


def collate_raw(samples: Sequence[RawSample], *, mean: Sequence[float] = (0.485, 0.456, 0.406),
                std: Sequence[float] = (0.229, 0.224, 0.225)) -> Batch:
    """Stack raw samples into ``Batch.raw`` (pixels normalised with ``mean`` / ``std``) with masks.

    Shape:
        raw["pixels"] ``(B, N, 3, S, S)`` float32, masks["pixels"] ``(B, N)``; raw["waveform"] ``(B, L)``
        float32 padded to the longest, masks["waveform"] ``(B, L)`` True on real samples.
    """
    b = len(samples)
    raw: dict[str, torch.Tensor] = {}
    masks: dict[str, torch.Tensor] = {}
    if samples[0].frames is not None:
        px = torch.from_numpy(np.stack([s.frames for s in samples])).permute(0, 1, 4, 2, 3).float() / 255.0
        m = torch.tensor(mean).view(1, 1, 3, 1, 1)
        sd = torch.tensor(std).view(1, 1, 3, 1, 1)
        raw["pixels"] = (px - m) / sd  # (B, N, 3, S, S)
        masks["pixels"] = torch.from_numpy(np.stack([s.frame_valid for s in samples]))
    if samples[0].waveform is not None:
        length = max(1, max(len(s.waveform) for s in samples))
        w = np.zeros((b, length), np.float32)
        wm = np.zeros((b, length), bool)
        for j, s in enumerate(samples):
            w[j, : len(s.waveform)] = s.waveform
            wm[j, : len(s.waveform)] = True
        raw["waveform"], masks["waveform"] = torch.from_numpy(w), torch.from_numpy(wm)
    targets = target_mask = None
    if all(s.target is not None for s in samples):
        y = np.stack([np.asarray(s.target) for s in samples])
        targets = torch.from_numpy(y.astype(np.int64) if y.dtype.kind in "iu" else y.astype(np.float32))
        target_mask = torch.ones(b, dtype=torch.bool)
    return Batch(inputs={}, masks=masks, targets=targets, target_mask=target_mask, ids=[s.video_id for s in samples],
                 raw=raw)
