"""Training-step throughput and peak memory of every registered feature model, paper-sized and small.

For each model: forward + backward (MSE on the predictions) on a batch of 16 clips × 32 steps, for the
``reaction`` task with the paper's input widths (``affectfuse.models._info.default_input_dims``). Prints
samples/s (median over the timed iterations) and peak memory: on CUDA ``torch.cuda.max_memory_allocated``;
on CPU the growth of the peak resident set (``ru_maxrss``) from just before the model is built, measured in
a fresh subprocess per model (``tracemalloc`` does not see torch's tensor storage, which is allocated
outside Python's allocator). It includes weights, activations and gradients.

Usage::

    python benchmarks/models.py                      # all models, CPU, 1 warm-up + 3 timed (paper: 1 + 2)
    python benchmarks/models.py --models viper_small jmt --iters 5 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def _one(name: str, device: str, batch: int, steps: int, warmup: int, iters: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    import affectfuse  # noqa: F401
    from affectfuse.models import create_model
    from affectfuse.models._info import default_input_dims
    from affectfuse.types import Batch

    dims = default_input_dims(name)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    torch.manual_seed(0)
    model = create_model(name, task="reaction", input_dims=dims).to(device).train()
    params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(0)
    b = Batch(inputs={m: torch.randn(batch, steps, d, generator=g).to(device) for m, d in dims.items()},
              masks={m: torch.ones(batch, steps, dtype=torch.bool, device=device) for m in dims})
    y = torch.rand(batch, model.task.num_outputs, device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + iters):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = torch.nn.functional.mse_loss(model(b).preds, y)
        loss.backward()
        model.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024  # KiB → MiB
    return {"model": name, "params_M": params / 1e6, "ms_per_step": med * 1e3, "samples_per_s": batch / med,
            "peak_MiB": peak, "iters": iters, "device": device, "threads": threads}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="*", help="default: every registered feature model")
    ap.add_argument("--device", default="cuda" if os.environ.get("CUDA_VISIBLE_DEVICES") else "cpu")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--iters", type=int, default=3, help="timed iterations (small models)")
    ap.add_argument("--paper-iters", type=int, default=2, help="timed iterations (paper-sized models)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        small = args._child.endswith("_small") or args._child == "linear_meanpool"
        res = _one(args._child, args.device, args.batch, args.steps, 1, args.iters if small else args.paper_iters,
                   args.threads)
        print("RESULT " + json.dumps(res))
        return
    import affectfuse  # noqa: F401
    from affectfuse.models import list_models
    from affectfuse.models._info import takes_raw_inputs

    names = args.models or [n for n in list_models() if not takes_raw_inputs(n)]
    rows = []
    print(f"batch {args.batch} × {args.steps} steps, fwd+bwd, device {args.device}, {args.threads} threads", flush=True)
    print(f"{'model':<20}{'params (M)':>12}{'ms/step':>11}{'samples/s':>12}{'peak MiB':>10}", flush=True)
    for n in names:
        cmd = [sys.executable, __file__, "--_child", n, "--device", args.device, "--batch", str(args.batch),
               "--steps", str(args.steps), "--iters", str(args.iters), "--paper-iters", str(args.paper_iters),
               "--threads", str(args.threads)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(f"{n:<20} failed: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}", flush=True)
            continue
        r = json.loads(line[7:])
        rows.append(r)
        print(f"{n:<20}{r['params_M']:>12.2f}{r['ms_per_step']:>11.1f}{r['samples_per_s']:>12.1f}{r['peak_MiB']:>10.0f}",
              flush=True)


if __name__ == "__main__":
    main()
