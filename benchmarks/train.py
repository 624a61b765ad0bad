"""Training throughput on a generated Hume-Reaction-sized feature store (not a test).

25,067 clips x 32 frames with ViPER's four streams (visual 768, audio 512, text 768, FAU 32; float16 in the
store) — GENERATED random features. For each model: dataset build time, training samples/s, epoch time (measured
over ``--steps`` steps and extrapolated when the epoch is longer), the share of step time spent waiting for data
vs computing (the data pipeline must not be the bottleneck: compute >= 80 %), and peak RSS.

    .venv/bin/python benchmarks/train.py [--clips 25067] [--models viper_small,abaw5_eri_small,viper,abaw5_eri]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DIMS = {"visual": 768, "audio": 512, "text": 768, "fau": 32}


def build_store(path: Path, clips: int) -> Path:
    from affectfuse.features.store import FeatureStore
    from affectfuse.tasks.spec import REACTION_EMOTIONS
    from affectfuse.types import FeatureSet

    labels = path / "labels.csv"
    if labels.exists():
        return labels
    store = FeatureStore(path / "store", dtype="float16", create=True)
    rng = np.random.default_rng(0)
    t = time.time()
    rows = ["id,split," + ",".join(REACTION_EMOTIONS)]
    blocks = {m: rng.normal(size=(64, 32, d)).astype(np.float16) for m, d in DIMS.items()}
    for i in range(clips):
        vid = f"generated_{i:05d}"
        for m, d in DIMS.items():
            store.put(FeatureSet(values=blocks[m][i % 64], times=np.arange(32.0), valid=np.ones(32, bool),
                                 extractor=f"generated_{m}", params={"dim": d}, video_id=vid),
                      identity={"name": f"generated_{m}", "modality": m, "dim": d})
        split = "train" if i % 10 < 8 else "dev"
        rows.append(f"{vid},{split}," + ",".join(f"{v:.3f}" for v in rng.uniform(0, 1, 7)))
    labels.write_text("\n".join(rows) + "\n")
    print(f"generated store: {clips} clips in {time.time() - t:.0f} s")
    return labels


def bench(model_name: str, labels: Path, store_dir: Path, steps: int, batch: int) -> dict:
    from affectfuse.data.dataset import FeatureDataset, Standardizer, collate
    from affectfuse.data.labels import load_labels
    from affectfuse.features.store import FeatureStore
    from affectfuse.models import create_model
    from affectfuse.tasks.losses import create_loss

    t = time.time()
    lab = load_labels(labels, "reaction")
    store = FeatureStore(store_dir, create=False)
    mods = {m: f"generated_{m}" for m in DIMS}
    ds = FeatureDataset(store, lab, "train", mods)
    ds.standardizer = Standardizer().fit(ds)
    build = time.time() - t
    model = create_model(model_name, task="reaction", input_dims=ds.input_dims)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    loss_fn = create_loss("mse", "reaction")
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, collate_fn=collate, num_workers=0)
    wait = compute = 0.0
    n = 0
    it = iter(loader)
    t_start = time.time()
    for _ in range(steps):
        t0 = time.time()
        try:
            b = next(it)
        except StopIteration:
            break
        b = b.to(device)
        t1 = time.time()
        out = model(b)
        loss = loss_fn(out, b)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t2 = time.time()
        wait += t1 - t0
        compute += t2 - t1
        n += len(b.ids)
    total = time.time() - t_start
    steps_per_epoch = (len(ds) + batch - 1) // batch
    return {"model": model_name, "params": sum(p.numel() for p in model.parameters()), "build_s": build,
            "samples_s": n / total, "epoch_s": total / max(n, 1) * len(ds), "compute_share": compute / total,
            "steps": min(steps, steps_per_epoch), "steps_per_epoch": steps_per_epoch, "device": device.type,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=25067)
    ap.add_argument("--models", default="viper_small,abaw5_eri_small,viper,abaw5_eri")
    ap.add_argument("--steps", type=int, default=100, help="steps measured per model (the epoch is extrapolated)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--dir", default=str(ROOT / "bench_out" / "train_store"))
    args = ap.parse_args()
    d = Path(args.dir) / f"{args.clips}"
    d.mkdir(parents=True, exist_ok=True)
    labels = build_store(d, args.clips)
    print(f"{'model':18s} {'params':>10s} {'build s':>8s} {'samples/s':>10s} {'epoch s':>9s} {'compute %':>10s} "
          f"{'peak RSS MB':>12s} device")
    for m in args.models.split(","):
        r = bench(m, labels, d / "store", args.steps, args.batch)
        print(f"{r['model']:18s} {r['params']:10d} {r['build_s']:8.1f} {r['samples_s']:10.1f} {r['epoch_s']:9.0f} "
              f"{100 * r['compute_share']:9.1f}% {r['peak_rss_mb']:12.0f} {r['device']} "
              f"({r['steps']} of {r['steps_per_epoch']} steps measured)")


if __name__ == "__main__":
    main()
