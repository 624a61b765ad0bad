"""The feature dataset: stored features + labels → samples → :class:`~affectfuse.types.Batch`.

``FeatureDataset(store, labels, split, {"visual": "vit_cls", "audio": "wavlm_xvector-1a2b3c4d"})`` reads
every modality of the split's videos with one bulk query per modality (``FeatureStore.load``) and keeps each
modality as **one contiguous array** ``(rows of all videos, D)`` with per-video offsets, so indexing 25k
clips is a slice, not a dict lookup of small arrays or a file read.

Availability (reported in ``report`` and by :meth:`FeatureDataset.check_available`):

* a labelled video absent from the store for *every* modality is dropped (listed, with the store's failure
  message when the extraction failed) — it never crashes a batch;
* a video missing *some* modalities is kept; the missing modality is an all-False mask for that sample.

Clip-level tasks: one sample per video; each modality gives its stored rows ``(T_m, D_m)`` with their
``valid`` flags; the target is ``(K,)`` float32 (regression) or an int64 class index.

Frame-level tasks: the labelled frames of a video (``Labels.table`` rows, sorted by frame) are cut into
windows of ``seq_len`` consecutive labelled frames (``stride`` apart; the last window of a video may be
shorter). Every modality is aligned to the labelled frames:

* features with frame ``indices`` (face / frame extractors): the feature row with the largest frame index
  ``<=`` the labelled frame — the row itself when features exist for every frame, the nearest *earlier*
  row when features were extracted at a lower rate (a prediction never uses a later frame);
* features without ``indices`` (audio windows): the same rule on time, the labelled frame's time taken from
  a modality of that video that has both indices and times (linear in between, extrapolated by the median
  frame period), or ``frame / fps`` when ``fps`` is given;
* a labelled frame further than ``max_gap`` frames (default: twice the median index step of that feature
  set; in time: twice the median row period) after its row, or before the first row, is masked.

So all modalities of a frame-level sample have ``T`` = the window length, like the targets ``(T, K)`` /
``(T,)`` and ``target_mask (T,)``.

:class:`Standardizer` holds per-modality mean / std over the valid rows of the training split only;
:func:`collate` pads to the batch maximum with masks False on padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from affectfuse.data.labels import Labels, _as_splits
from affectfuse.tasks.spec import TaskSpec, get_task
from affectfuse.types import Batch

__all__ = ["FeatureDataset", "Sample", "Standardizer", "collate", "resolve_key"]


def resolve_key(store, name_or_key: str) -> str:
    """A store key from a key or an extractor name.

    Raises:
        KeyError: neither a key nor an extractor name of the store (the message lists the keys).
        ValueError: the extractor has several keys (different parameters); the message lists them.
    """
    keys = store.keys()
    if name_or_key in keys:
        return name_or_key
    cands = store.keys_for(name_or_key)
    if len(cands) == 1:
        return cands[0]
    if not cands:
        raise KeyError(f"{store.path}: {name_or_key!r} is neither a feature key nor an extractor name in this store; "
                       f"keys: {keys}")
    raise ValueError(f"{store.path}: extractor {name_or_key!r} has {len(cands)} feature sets with different "
                     f"parameters: {cands}; name one of these keys instead")


@dataclass
class Sample:
    """One dataset item (numpy), before collate.

    Attributes:
        video_id: the video.
        inputs: modality → ``(T_m, D_m)`` float32; rows where the mask is False are zeros (not data).
        masks: modality → ``(T_m,)`` bool.
        target: clip: ``(K,)`` float32 or an int64 scalar; frame: ``(T, K)`` float32 or ``(T,)`` int64;
            None without labels.
        target_mask: clip: bool scalar; frame: ``(T,)`` bool; None without labels.
        times: frame level: ``(T,)`` seconds of the labelled frames (NaN where unknown); None for clips.
        frames: frame level: ``(T,)`` int64 frame indices; None for clips.
    """

    video_id: str
    inputs: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    target: np.ndarray | None = None
    target_mask: np.ndarray | None = None
    times: np.ndarray | None = None
    frames: np.ndarray | None = None


@dataclass
class _Modality:
    """One modality of the dataset's videos as contiguous arrays.

    ``values (N, D)`` (stored dtype), ``valid (N,)``, ``times (N,)``, ``indices (N,)`` (-1 where the
    feature set has none); video ``i`` holds rows ``start[i]:stop[i]`` (``start[i] == -1``: absent).
    """

    name: str
    key: str
    dim: int
    values: np.ndarray
    valid: np.ndarray
    times: np.ndarray
    indices: np.ndarray
    has_indices: np.ndarray
    start: np.ndarray
    stop: np.ndarray


class FeatureDataset(torch.utils.data.Dataset):
    """Samples of one split from a feature store and labels.

    Args:
        store: a :class:`~affectfuse.features.store.FeatureStore`.
        labels: a :class:`~affectfuse.data.labels.Labels`; None for inference (then give ``video_ids`` and
            ``task``).
        split: ``"train"`` / ``"dev"`` / ``"test"`` (aliases accepted), several, or None for every row.
        modalities: modality name → store key or extractor name (see :func:`resolve_key`).
        seq_len: frame level: labelled frames per sample (None = a whole video per sample).
        stride: frame level: first-frame distance of consecutive windows (default ``seq_len``: no overlap).
        dilation: frame level: labelled frames between consecutive tokens of a sample (default 1: consecutive
            frames). With ``d > 1`` a window spans ``seq_len * d`` labelled frames and gives ``d`` samples, the
            ``o``-th taking frames ``o, o + d, o + 2d, …`` of it, so every labelled frame is a token of exactly one
            sample (JMT's sub-clip tokens: ``seq_len=16, dilation=32`` spans the authors' 512 frames).
        max_gap: frame level: largest distance in frames between a labelled frame and its feature row
            (None = automatic, see the module docstring).
        fps: frame level: frame rate used to time labelled frames when no modality of a video has frame
            indices and times.
        standardizer: applied to every sample when set (see :class:`Standardizer`).
        video_ids: inference only: the videos (default: every video of the first modality).
        task: inference only: the task (default ``labels.task``).

    Attributes:
        video_ids: the kept videos, in label order.
        dropped: labelled videos without features in any modality.
        missing: modality → kept videos without that modality.
        report: human-readable lines on dropped / partial videos.
        input_dims: modality → feature width (for ``create_model(input_dims=...)``).
    """

    def __init__(self, store, labels: Labels | None, split: str | Sequence[str] | None,
                 modalities: dict[str, str], *, seq_len: int | None = 64, stride: int | None = None,
                 dilation: int = 1, max_gap: int | None = None, fps: float | None = None, standardizer: "Standardizer | None" = None,
                 video_ids: Sequence[str] | None = None, task: "str | TaskSpec | None" = None) -> None:
        if not modalities:
            raise ValueError("FeatureDataset: modalities must name at least one modality → feature key")
        if labels is None and task is None:
            raise ValueError("FeatureDataset: without labels, pass task= (and video_ids=)")
        self.task = get_task(task) if task is not None else labels.task
        if labels is not None and task is not None and labels.task.resolution != self.task.resolution:
            raise ValueError(f"FeatureDataset: labels are {labels.task.resolution} level, task {self.task.name!r} is "
                             f"{self.task.resolution} level")
        self.store = store
        self.splits = None if split is None else _as_splits(split)
        self.frame_level = self.task.resolution == "frame"
        if seq_len is not None and seq_len < 1:
            raise ValueError(f"FeatureDataset: seq_len must be >= 1 or None, got {seq_len}")
        if dilation < 1 or (dilation > 1 and seq_len is None):
            raise ValueError(f"FeatureDataset: dilation must be >= 1 (and > 1 needs a seq_len), got {dilation} with "
                             f"seq_len {seq_len}")
        self.dilation = int(dilation)
        span = None if seq_len is None else seq_len * self.dilation
        self.seq_len, self.stride = span, (stride * self.dilation if stride else span)
        self.tokens = seq_len
        self.standardizer = standardizer
        self.keys = {m: resolve_key(store, k) for m, k in modalities.items()}

        # -- which videos / rows ----------------------------------------------------------------
        table = None
        if labels is not None:
            table = labels.table if self.splits is None else labels.table[labels.table["split"].isin(self.splits)]
            if self.frame_level:
                table = table.sort_values(["video_id", "frame"], kind="stable")
            table = table.reset_index(drop=True)
            wanted = list(dict.fromkeys(table["video_id"]))
        else:
            wanted = list(video_ids) if video_ids is not None else store.video_ids(next(iter(self.keys.values())))

        # -- bulk load ------------------------------------------------------------------------------
        loaded = {m: store.load(k, wanted) for m, k in self.keys.items()}
        present = {m: np.array([v in loaded[m] for v in wanted], dtype=bool) for m in self.keys}
        any_present = np.any(np.stack(list(present.values())), axis=0) if wanted else np.zeros(0, bool)
        self.report: list[str] = []
        fails = {m: {r.video_id: r.error for r in store.failures(k)} for m, k in self.keys.items()}

        def why(m: str, v: str) -> str:
            return f"extraction failed: {fails[m][v]}" if v in fails[m] else "not extracted"

        self.dropped = [v for v, ok in zip(wanted, any_present) if not ok]
        for v in self.dropped:
            self.report.append(f"{v}: dropped, no features in any modality ("
                               + "; ".join(f"{m} [{self.keys[m]}]: {why(m, v)}" for m in self.keys) + ")")
        self.video_ids = [v for v, ok in zip(wanted, any_present) if ok]
        self.missing: dict[str, list[str]] = {}
        for m in self.keys:
            miss = [v for v, ok, anyok in zip(wanted, present[m], any_present) if anyok and not ok]
            self.missing[m] = miss
            for v in miss:
                self.report.append(f"{v}: modality {m!r} [{self.keys[m]}] missing ({why(m, v)}); masked")
        self._mods = {m: self._pack(m, self.keys[m], loaded[m]) for m in self.keys}
        del loaded
        self.input_dims = {m: mod.dim for m, mod in self._mods.items()}

        # -- targets and sample index -------------------------------------------------------------
        self._vidx = {v: i for i, v in enumerate(self.video_ids)}
        if table is not None:
            table = table[table["video_id"].isin(self._vidx)].reset_index(drop=True)
        self._table = table
        if self.frame_level:
            self._build_frames(table, max_gap, fps)
        else:
            self._build_clips(table)

    # -- construction helpers ---------------------------------------------------------------------
    def _pack(self, m: str, key: str, fsets: dict) -> _Modality:
        n_v = len(self.video_ids)
        start = np.full(n_v, -1, dtype=np.int64)
        stop = np.full(n_v, -1, dtype=np.int64)
        has_idx = np.zeros(n_v, dtype=bool)
        vals, valid, times, idx = [], [], [], []
        dim, dtype, pos = None, None, 0
        for i, v in enumerate(self.video_ids):
            fs = fsets.get(v)
            if fs is None:
                continue
            if dim is None:
                dim, dtype = fs.dim, fs.values.dtype
            elif fs.dim != dim:
                raise ValueError(f"{self.store.path}: key {key!r} ({m}): video {v!r} has width {fs.dim}, "
                                 f"others {dim}")
            n = len(fs)
            vals.append(fs.values)
            valid.append(fs.valid)
            times.append(fs.times)
            if fs.indices is not None:
                idx.append(fs.indices)
                has_idx[i] = True
            else:
                idx.append(np.full(n, -1, dtype=np.int64))
            start[i], stop[i] = pos, pos + n
            pos += n
        if dim is None:
            try:
                dim = int(self.store.identity(key).get("dim") or 0)
            except KeyError:
                dim = 0
            if not dim:
                raise ValueError(f"{self.store.path}: key {key!r} ({m}) has no features for any video of this "
                                 f"dataset, and its width is unknown")
            dtype = np.float32
        return _Modality(
            name=m, key=key, dim=int(dim),
            values=np.concatenate(vals) if vals else np.zeros((0, dim), dtype),
            valid=np.concatenate(valid).astype(bool) if valid else np.zeros(0, bool),
            times=np.concatenate(times) if times else np.zeros(0),
            indices=np.concatenate(idx) if idx else np.zeros(0, np.int64),
            has_indices=has_idx, start=start, stop=stop,
        )

    def _build_clips(self, table) -> None:
        task = self.task
        n = len(self.video_ids)
        self._items = np.arange(n)
        if table is None:
            self._targets = None
            return
        order = table.set_index("video_id").loc[self.video_ids]
        if task.is_classification:
            self._targets = order["label"].to_numpy(np.int64)  # (N,)
        else:
            self._targets = order[list(task.targets)].to_numpy(np.float32)  # (N, K)

    def _build_frames(self, table, max_gap: int | None, fps: float | None) -> None:
        task = self.task
        if table is not None:
            vids = table["video_id"].to_numpy()
            frames = table["frame"].to_numpy(np.int64)
            if task.is_classification:
                self._targets = table["label"].to_numpy(np.int64)  # (R,)
            else:
                self._targets = table[list(task.targets)].to_numpy(np.float32)  # (R, K)
        else:
            vids_l, frames_l = [], []
            for i, v in enumerate(self.video_ids):
                fr = [mod.indices[mod.start[i]:mod.stop[i]] for mod in self._mods.values()
                      if mod.start[i] >= 0 and mod.has_indices[i]]
                if not fr:
                    raise ValueError(f"FeatureDataset: frame-level inference on {v!r} needs a modality with frame "
                                     f"indices to know which frames to predict; modalities: {list(self.keys)}")
                u = np.unique(np.concatenate(fr))
                vids_l.append(np.full(len(u), v, dtype=object))
                frames_l.append(u)
            vids = np.concatenate(vids_l) if vids_l else np.zeros(0, object)
            frames = np.concatenate(frames_l) if frames_l else np.zeros(0, np.int64)
            self._targets = None
        self._frames = frames
        r = len(frames)
        self._rowmap = {m: np.full(r, -1, dtype=np.int64) for m in self._mods}
        self._ftimes = np.full(r, np.nan)
        items = []
        # contiguous label rows per video (the table is sorted by video, then frame)
        bounds = np.flatnonzero(np.r_[True, vids[1:] != vids[:-1], True]) if r else np.array([0])
        for a, b in zip(bounds[:-1], bounds[1:]):
            i = self._vidx[vids[a]]
            fr = frames[a:b]
            self._ftimes[a:b] = self._frame_times(i, fr, fps)
            for m, mod in self._mods.items():
                self._rowmap[m][a:b] = self._align(mod, i, fr, self._ftimes[a:b], max_gap, fps)
            n = b - a
            if self.seq_len is None or n <= self.seq_len:
                starts = [0]
            else:
                starts = list(range(0, n - self.seq_len + 1, self.stride))
                if starts[-1] + self.seq_len < n:
                    starts.append(starts[-1] + self.stride if self.stride == self.seq_len else n - self.seq_len)
            for s in starts:
                e = n if self.seq_len is None else min(s + self.seq_len, n)
                for o in range(min(self.dilation, e - s)):
                    items.append((i, a + s + o, a + e, self.dilation))
        self._items = items

    def _frame_times(self, i: int, frames: np.ndarray, fps: float | None) -> np.ndarray:
        """Seconds of the labelled frames of video ``i`` (NaN where no timing is known)."""
        for mod in self._mods.values():
            if mod.start[i] >= 0 and mod.has_indices[i]:
                idx = mod.indices[mod.start[i]:mod.stop[i]]
                t = mod.times[mod.start[i]:mod.stop[i]]
                idx, first = np.unique(idx, return_index=True)
                t = t[first]
                if len(idx) >= 2:
                    period = float(np.median(np.diff(t) / np.diff(idx)))
                    out = np.interp(frames, idx, t)
                    lo, hi = frames < idx[0], frames > idx[-1]
                    out[lo] = t[0] - (idx[0] - frames[lo]) * period
                    out[hi] = t[-1] + (frames[hi] - idx[-1]) * period
                    return out
                if len(idx) == 1 and fps:
                    return t[0] + (frames - idx[0]) / fps
        if fps:
            return frames / float(fps)
        return np.full(len(frames), np.nan)

    def _align(self, mod: _Modality, i: int, frames: np.ndarray, ftimes: np.ndarray, max_gap: int | None,
               fps: float | None) -> np.ndarray:
        """Global row of ``mod`` for each labelled frame of video ``i`` (-1 = none)."""
        if mod.start[i] < 0:
            return np.full(len(frames), -1, dtype=np.int64)
        s, e = mod.start[i], mod.stop[i]
        if mod.has_indices[i]:
            key, query = mod.indices[s:e], frames.astype(np.float64)
            step = np.diff(np.unique(key))
            gap = max_gap if max_gap is not None else 2 * max(1, int(np.median(step)) if len(step) else 1)
            tol = 0.0
        else:
            if np.isnan(ftimes).any():
                raise ValueError(
                    f"FeatureDataset: cannot align modality {mod.name!r} of {self.video_ids[i]!r} to labelled frames: "
                    f"its features have no frame indices and no modality of this video gives frame times; pass fps=")
            key, query = mod.times[s:e], ftimes
            step = np.diff(np.unique(key))
            period = float(np.median(step)) if len(step) else (1.0 / fps if fps else np.inf)
            frame_period = (1.0 / fps) if fps else (float(np.nanmedian(np.diff(ftimes))) if len(ftimes) > 1 else 0.0)
            gap = (max_gap * frame_period) if max_gap is not None else 2 * period
            tol = 1e-6
        order = np.argsort(key, kind="stable")
        ks = key[order]
        pos = np.searchsorted(ks, query + tol, side="right") - 1  # nearest earlier (or equal) row
        ok = pos >= 0
        posc = np.clip(pos, 0, None)
        ok &= (query - ks[posc]) <= gap + tol
        return np.where(ok, s + order[posc], -1).astype(np.int64)

    # -- access -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, idx: int) -> Sample:
        return self._frame_sample(idx) if self.frame_level else self._clip_sample(idx)

    def _clip_sample(self, idx: int) -> Sample:
        i = int(self._items[idx])
        inputs, masks = {}, {}
        for m, mod in self._mods.items():
            s, e = mod.start[i], mod.stop[i]
            if s < 0:
                x, v = np.zeros((0, mod.dim), np.float32), np.zeros(0, bool)
            else:
                x, v = mod.values[s:e].astype(np.float32), mod.valid[s:e].copy()  # (T_m, D_m), (T_m,)
            inputs[m], masks[m] = self._finish(m, x, v)
        t = None if self._targets is None else self._targets[i]
        return Sample(self.video_ids[i], inputs, masks, target=None if t is None else np.array(t),
                      target_mask=None if t is None else np.array(True))

    def _frame_sample(self, idx: int) -> Sample:
        i, a, b, d = self._items[idx]
        sel = slice(a, b, d)  # the sample's labelled rows: consecutive, or every d-th (sub-clip tokens)
        t_len = len(range(a, b, d))
        inputs, masks = {}, {}
        for m, mod in self._mods.items():
            rows = self._rowmap[m][sel]  # (T,)
            ok = rows >= 0
            rc = np.where(ok, rows, 0)
            if len(mod.values):
                x = mod.values[rc].astype(np.float32)  # (T, D_m)
                v = ok & mod.valid[rc]
            else:
                x, v = np.zeros((t_len, mod.dim), np.float32), np.zeros(t_len, bool)
            inputs[m], masks[m] = self._finish(m, x, v)
        t = None if self._targets is None else self._targets[sel]
        return Sample(self.video_ids[i], inputs, masks, target=t,
                      target_mask=None if t is None else np.ones(t_len, dtype=bool),
                      times=self._ftimes[sel].copy(), frames=self._frames[sel].copy())

    def _finish(self, m: str, x: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.standardizer is not None:
            x = self.standardizer.transform(m, x, v)
        else:
            x[~v] = 0.0
        return x, v

    # -- reporting -----------------------------------------------------------------------------------
    def check_available(self) -> dict[str, Any]:
        """What the dataset holds: kept / dropped videos and, per modality, the videos lacking it."""
        return {
            "videos": len(self.video_ids),
            "samples": len(self),
            "dropped": list(self.dropped),
            "missing": {m: list(v) for m, v in self.missing.items()},
            "keys": dict(self.keys),
            "report": list(self.report),
        }

    def rows(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        """All stored rows of a modality for this dataset's videos: ``values (N, D)``, ``valid (N,)``."""
        mod = self._mods[modality]
        return mod.values, mod.valid

    def __repr__(self) -> str:
        return (f"FeatureDataset(task={self.task.name!r}, splits={self.splits}, videos={len(self.video_ids)}, "
                f"samples={len(self)}, modalities={self.keys}, dropped={len(self.dropped)})")


class Standardizer:
    """Per-modality mean / std over the valid rows of the training split.

    ``fit`` only accepts a dataset whose splits include ``train`` (pass ``allow_any_split=True`` to fit on
    something else on purpose); ``transform`` maps valid rows to ``(x - mean) / std`` and leaves invalid
    rows at zero. A feature with std below ``eps`` is only centred.

    ``state_dict()`` gives plain lists (JSON); ``arrays()`` flat float32 arrays (``"<modality>.mean"`` /
    ``"<modality>.std"``, safetensors); :meth:`from_state_dict` reads either.
    """

    def __init__(self, eps: float = 1e-6) -> None:
        self.eps = float(eps)
        self.mean: dict[str, np.ndarray] = {}
        self.std: dict[str, np.ndarray] = {}
        self.count: dict[str, int] = {}

    def fit(self, dataset: FeatureDataset, *, allow_any_split: bool = False) -> "Standardizer":
        if not allow_any_split and (dataset.splits is None or "train" not in dataset.splits):
            raise ValueError(f"Standardizer.fit: expects the training split, got splits {dataset.splits}; statistics "
                             f"of dev / test data would leak into training (allow_any_split=True to insist)")
        for m in dataset.keys:
            values, valid = dataset.rows(m)
            self.fit_array(m, values, valid)
        return self

    def fit_array(self, modality: str, values: np.ndarray, valid: np.ndarray) -> "Standardizer":
        """Statistics of one modality from ``values (N, D)`` and ``valid (N,)`` (float64 accumulation)."""
        x = np.asarray(values)[np.asarray(valid, dtype=bool)]
        if len(x) == 0:
            raise ValueError(f"Standardizer: modality {modality!r} has no valid rows to fit on")
        mean = np.zeros(x.shape[1])
        sq = np.zeros(x.shape[1])
        for c in range(0, len(x), 65536):  # chunked: no float64 copy of the whole array
            blk = x[c : c + 65536].astype(np.float64)
            mean += blk.sum(0)
        mean /= len(x)
        for c in range(0, len(x), 65536):
            blk = x[c : c + 65536].astype(np.float64) - mean
            sq += (blk * blk).sum(0)
        std = np.sqrt(sq / len(x))
        self.mean[modality] = mean.astype(np.float32)
        self.std[modality] = np.where(std < self.eps, 1.0, std).astype(np.float32)
        self.count[modality] = int(len(x))
        return self

    def transform(self, modality: str, values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """``(x - mean) / std`` on valid rows; invalid rows zero.

        Shape:
            values ``(T, D)``, valid ``(T,)`` → ``(T, D)`` float32.
        """
        if modality not in self.mean:
            raise KeyError(f"Standardizer: no statistics for modality {modality!r}; fitted: {sorted(self.mean)}")
        x = np.asarray(values, dtype=np.float32)
        if x.shape[-1] != self.mean[modality].shape[0]:
            raise ValueError(f"Standardizer: modality {modality!r} was fitted on width {self.mean[modality].shape[0]}, "
                             f"got {x.shape}")
        out = (x - self.mean[modality]) / self.std[modality]  # (T, D)
        if valid is not None:
            out[~np.asarray(valid, dtype=bool)] = 0.0
        return out.astype(np.float32, copy=False)

    def state_dict(self) -> dict[str, Any]:
        return {"eps": self.eps, "modalities": {
            m: {"mean": self.mean[m].tolist(), "std": self.std[m].tolist(), "count": self.count.get(m, 0)}
            for m in self.mean}}

    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for m in self.mean:
            out[f"{m}.mean"] = self.mean[m].astype(np.float32)
            out[f"{m}.std"] = self.std[m].astype(np.float32)
        return out

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "Standardizer":
        if "modalities" in state:
            s = cls(eps=float(state.get("eps", 1e-6)))
            for m, d in state["modalities"].items():
                s.mean[m] = np.asarray(d["mean"], dtype=np.float32)
                s.std[m] = np.asarray(d["std"], dtype=np.float32)
                s.count[m] = int(d.get("count", 0))
            return s
        s = cls()
        for k, v in state.items():
            m, _, what = k.rpartition(".")
            if what not in ("mean", "std") or not m:
                raise ValueError(f"Standardizer.from_state_dict: unexpected entry {k!r}; expected '<modality>.mean' / "
                                 f"'<modality>.std' or the nested state_dict() form")
            getattr(s, what)[m] = np.asarray(v, dtype=np.float32)
        if set(s.mean) != set(s.std):
            raise ValueError(f"Standardizer.from_state_dict: mean for {sorted(s.mean)} but std for {sorted(s.std)}")
        return s

    def __repr__(self) -> str:
        return f"Standardizer(modalities={ {m: len(v) for m, v in self.mean.items()} })"


def collate(samples: Sequence[Sample], *, ignore_index: int = -1) -> Batch:
    """Stack samples into a :class:`~affectfuse.types.Batch`, padding to the batch maximum.

    Padding rows have mask False (inputs zero there, never read as data); a sample lacking a modality has an
    all-False row. Frame-level targets are padded with 0.0 (regression) / ``ignore_index`` (classes) and
    ``target_mask`` False.

    Shape:
        inputs[m] ``(B, T_m, D_m)`` float32 and masks[m] ``(B, T_m)`` bool with ``T_m >= 1``; targets
        ``(B, K)`` / ``(B,)`` (clip) or ``(B, T, K)`` / ``(B, T)`` (frame); target_mask ``(B,)`` / ``(B, T)``;
        times ``(B, T)`` float64 (frame level, NaN on padding) or None.
    """
    if not samples:
        raise ValueError("collate: no samples")
    b = len(samples)
    mods = list(samples[0].inputs)
    inputs, masks = {}, {}
    for m in mods:
        dims = {s.inputs[m].shape[1] for s in samples}
        if len(dims) != 1:
            raise ValueError(f"collate: modality {m!r} has different widths in one batch: {sorted(dims)}")
        t = max(1, max(len(s.inputs[m]) for s in samples))
        x = np.zeros((b, t, dims.pop()), dtype=np.float32)
        mk = np.zeros((b, t), dtype=bool)
        for j, s in enumerate(samples):
            n = len(s.inputs[m])
            x[j, :n] = s.inputs[m]
            mk[j, :n] = s.masks[m]
        x[~mk] = 0.0
        inputs[m], masks[m] = torch.from_numpy(x), torch.from_numpy(mk)

    targets = target_mask = times = None
    frame_level = samples[0].frames is not None
    if all(s.target is not None for s in samples):
        if frame_level:
            t = max(len(s.target) for s in samples)
            first = np.asarray(samples[0].target)
            if first.dtype.kind in "iu":
                y = np.full((b, t), ignore_index, dtype=np.int64)
            else:
                y = np.zeros((b, t) + first.shape[1:], dtype=np.float32)
            tm = np.zeros((b, t), dtype=bool)
            for j, s in enumerate(samples):
                n = len(s.target)
                y[j, :n] = s.target
                tm[j, :n] = s.target_mask
            targets, target_mask = torch.from_numpy(y), torch.from_numpy(tm)
        else:
            y = np.stack([np.asarray(s.target) for s in samples])
            y = y.astype(np.int64) if y.dtype.kind in "iu" else y.astype(np.float32)
            targets = torch.from_numpy(y)
            target_mask = torch.from_numpy(np.array([bool(s.target_mask) for s in samples]))
    if frame_level:
        t = max(len(s.times) for s in samples)
        tt = np.full((b, t), np.nan)
        for j, s in enumerate(samples):
            tt[j, : len(s.times)] = s.times
        times = torch.from_numpy(tt)
    frames = None
    if frame_level:
        fr = np.full((b, max(len(s.frames) for s in samples)), -1, dtype=np.int64)
        for j, s in enumerate(samples):
            fr[j, : len(s.frames)] = s.frames
        frames = torch.from_numpy(fr)
    return Batch(inputs=inputs, masks=masks, targets=targets, target_mask=target_mask,
                 ids=[s.video_id for s in samples], times=times, frames=frames)
