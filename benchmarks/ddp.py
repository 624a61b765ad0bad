"""One process against ``--devices 2`` (DistributedDataParallel, gloo on CPU / NCCL on GPU), side by side (not a test).

On a GENERATED clip-level feature store (``--clips`` clips x 16 frames, visual 128-d + audio 64-d), for each
model: the same :class:`~affectfuse.training.TrainConfig` trained with one process and with two, each in a fresh
run folder. Printed per model: seconds per epoch (median of ``history.csv`` epochs 2.., which include rank 0's
dev evaluation), the whole call's wall time (process start-up included), the ratio, and the largest difference
of the final dev / test metrics. On CPU the one-process run uses every core and each of the two processes gets
half of them, so on 2 cores two processes cannot be faster: the ratio shows DDP's overhead there.

    .venv/bin/python benchmarks/ddp.py [--clips 2000] [--epochs 4] [--models early_fusion_small,viper_small]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

MODS = {"visual": "generated_visual", "audio": "generated_audio"}


def run(labels: Path, store: Path, out: Path, **kw) -> tuple[float, float, dict]:
    import pandas as pd

    from affectfuse.training import TrainConfig, train

    cfg = TrainConfig(task="reaction", modalities=MODS, **kw)
    t = time.perf_counter()
    metrics = train(labels, store, cfg, out, progress=False, log=lambda *_: None)
    wall = time.perf_counter() - t
    hist = pd.read_csv(out / "history.csv")
    per_epoch = float(hist["seconds"].iloc[1:].median() if len(hist) > 1 else hist["seconds"].iloc[0])
    return per_epoch, wall, metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--models", default="early_fusion_small,viper_small")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    import torch

    from affectfuse.data.synthetic import make_feature_dataset
    from affectfuse.training.distributed import local_cores

    print(f"torch {torch.__version__}, {local_cores()} cores, threads {torch.get_num_threads()}, "
          f"cuda {torch.cuda.is_available()}")
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        t = time.perf_counter()
        make_feature_dataset(d / "store", d / "labels.csv", n=args.clips, rows=16, dims={"visual": 128, "audio": 64})
        print(f"generated {args.clips} clips in {time.perf_counter() - t:.1f} s (60 % train)\n")
        print("| model | 1 process s/epoch | 2 processes s/epoch | ratio 2p/1p | wall 1p / 2p s | max abs metric diff dev, test |")
        print("|---|---|---|---|---|---|")
        for name in args.models.split(","):
            kw = dict(model=name, epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, device=args.device)
            e1, w1, m1 = run(d / "labels.csv", d / "store", d / f"{name}_1", **kw)
            e2, w2, m2 = run(d / "labels.csv", d / "store", d / f"{name}_2", devices=2, **kw)
            diff = {s: max(abs(m1[s][k] - m2[s][k]) for k in m1[s]) for s in ("dev", "test")}
            print(f"| {name} | {e1:.2f} | {e2:.2f} | {e2 / e1:.2f} | {w1:.1f} / {w2:.1f} | "
                  f"{diff['dev']:.4f}, {diff['test']:.4f} |", flush=True)
            print("  " + json.dumps({"mean_pearson 1p": [round(m1[s]["mean_pearson"], 4) for s in ("dev", "test")],
                                     "mean_pearson 2p": [round(m2[s]["mean_pearson"], 4) for s in ("dev", "test")]}))


if __name__ == "__main__":  # the spawned processes import this module: the guard keeps them from running it
    main()
