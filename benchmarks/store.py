"""Feature store write / read throughput on a Hume-Reaction-shaped key (not a test).

    .venv/bin/python benchmarks/store.py [--clips 25067] [--dim 768] [--float16]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from affectfuse.features.store import FeatureStore
from affectfuse.types import FeatureSet


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=25067)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--float16", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    block = rng.normal(size=(args.rows, args.dim)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        store = FeatureStore(Path(tmp) / "s", dtype="float16" if args.float16 else "float32", create=True)
        t = time.time()
        for i in range(args.clips):
            store.put(FeatureSet(values=block, times=np.arange(args.rows, dtype=float), valid=np.ones(args.rows, bool),
                                 extractor="bench", params={"dim": args.dim}, video_id=f"{i:05d}"))
        w = time.time() - t
        key = store.keys()[0]
        size = (Path(tmp) / "s" / FeatureStore.FILENAME).stat().st_size
        t = time.time()
        allsets = store.load(key)
        bulk = time.time() - t
        ids = list(allsets)[:2000]
        t = time.time()
        for vid in ids:
            store.get(vid, key)
        per = (time.time() - t) / len(ids)
    gb = args.clips * args.rows * args.dim * (2 if args.float16 else 4) / 1e9
    print(f"{args.clips} clips x {args.rows} x {args.dim} ({'float16' if args.float16 else 'float32'}, {gb:.2f} GB of values)")
    print(f"write: {args.clips / w:8.0f} clips/s ({w:.1f} s), file {size / 1e9:.2f} GB")
    print(f"bulk load (one query): {args.clips / bulk:8.0f} clips/s ({bulk:.1f} s)")
    print(f"random get: {per * 1e6:8.0f} us per clip ({1 / per:.0f} clips/s)")


if __name__ == "__main__":
    main()
