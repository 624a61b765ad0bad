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

__all__ = ["make_feature_dataset"]


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
