"""Eager PyTorch vs ONNX Runtime inference latency of every registered feature model, side by side.

For each model (paper size and ``_small``; ``reaction`` task, the paper's input widths from
``affectfuse.models._info.default_input_dims``): export with :func:`affectfuse.inference.onnx_model.export_model`
(its parity check included in the export time), then time ``model(batch)`` under ``torch.no_grad`` and
``OnnxModel(batch)`` on the same batches of 1 and 16 clips × 32 steps (a quarter of the rows padded, one modality
missing for every fourth sample), alternating the two backends call by call so both see the same machine load.
Prints the median latency per call of each, their ratio and the largest difference between the outputs. Both use
the same number of threads. A (model, batch) whose first eager call takes longer than ``--budget`` seconds is
skipped (and said so). End-to-end models are refused by the exporter and listed as such.

Each model runs in a fresh subprocess (the paper-sized ViPER holds 1.1 GB of weights, more while exporting).

Usage::

    python benchmarks/onnx_models.py                          # all feature models, batches 1 and 16, 2 threads
    python benchmarks/onnx_models.py --models jmt viper_small --batches 1 16 64 --iters 20 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time


def _batch(dims: dict[str, int], b: int, t: int, seed: int):
    import torch

    from affectfuse.types import Batch

    g = torch.Generator().manual_seed(seed)
    inputs = {m: torch.randn(b, t, d, generator=g) for m, d in dims.items()}
    lengths = torch.tensor([t if i % 4 else (3 * t) // 4 for i in range(b)])  # every fourth sample padded
    masks = {m: torch.arange(t)[None, :] < lengths[:, None] for m in dims}
    if len(dims) > 1:
        last = list(dims)[-1]
        masks[last][::4] = False  # ... and missing its last modality
    return Batch(inputs=inputs, masks=masks)


def _one(name: str, batches: list[int], steps: int, iters: int, threads: int, budget: float) -> dict:
    import torch

    torch.set_num_threads(threads)
    from affectfuse.inference.onnx_model import OnnxModel, export_model
    from affectfuse.models import create_model
    from affectfuse.models._info import default_input_dims

    dims = default_input_dims(name)
    torch.manual_seed(0)
    try:
        model = create_model(name, task="reaction", input_dims=dims).eval()
    except OSError as e:  # pretrained backbones not in the local cache (offline)
        return {"model": name, "params": 0, "refused": f"not built here: {str(e)[:60]}"}
    res: dict = {"model": name, "params": sum(p.numel() for p in model.parameters()), "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        try:
            path = export_model(model, f"{tmp}/m.onnx", name=name)
        except ValueError as e:
            res["refused"] = str(e)
            return res
        res["export_s"] = time.perf_counter() - t0
        om = OnnxModel(path, threads=threads)
        res["exporter"] = om.meta["exporter"]
        for b in batches:
            batch = _batch(dims, b, steps, seed=b)
            with torch.no_grad():
                t0 = time.perf_counter()
                ref = model(batch).preds
                first = time.perf_counter() - t0
            if first > budget:
                res["rows"].append({"batch": b, "skipped": f"first eager call {first:.1f} s > budget {budget:g} s"})
                continue
            om(batch)  # warm-up (session allocations)
            eager, onnx = [], []
            for _ in range(iters):  # alternate, so that both see the same load
                with torch.no_grad():
                    t0 = time.perf_counter()
                    model(batch)
                    eager.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                got = om(batch).preds
                onnx.append(time.perf_counter() - t0)
            res["rows"].append({"batch": b, "eager_ms": 1e3 * statistics.median(eager),
                                "onnx_ms": 1e3 * statistics.median(onnx),
                                "max_abs_diff": float((got - ref).abs().max())})
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="*", default=None, help="default: every registered feature model")
    ap.add_argument("--batches", nargs="*", type=int, default=[1, 16])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget", type=float, default=8.0, help="skip a batch whose first eager call takes longer (s)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(_one(args.one, args.batches, args.steps, args.iters, args.threads, args.budget)))
        return
    from affectfuse.models import list_models

    names = args.models or list_models()
    print(f"eager PyTorch vs ONNX Runtime, reaction task, {args.steps} steps, {args.threads} thread(s), "
          f"median of {args.iters} alternating calls")
    print(f"{'model':20s} {'params':>8s} {'export':>8s} {'batch':>5s} {'eager ms':>10s} {'onnx ms':>10s} "
          f"{'eager/onnx':>10s} {'max|diff|':>9s}")
    for name in names:
        cmd = [sys.executable, __file__, "--one", name, "--batches", *map(str, args.batches), "--steps",
               str(args.steps), "--iters", str(args.iters), "--threads", str(args.threads), "--budget", str(args.budget)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            print(f"{name:20s} failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if "refused" in r:
            print(f"{name:20s} {r['params'] / 1e6:7.1f}M  refused: {r['refused'][:90]}...")
            continue
        for row in r["rows"]:
            head = f"{name:20s} {r['params'] / 1e6:7.1f}M {r['export_s']:7.1f}s {row['batch']:5d}"
            if "skipped" in row:
                print(f"{head}  skipped: {row['skipped']}")
            else:
                print(f"{head} {row['eager_ms']:10.2f} {row['onnx_ms']:10.2f} {row['eager_ms'] / row['onnx_ms']:9.2f}x "
                      f"{row['max_abs_diff']:9.1e}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
