"""Defaults that learn (issue 11): every clip-level fusion model with its defaults on GENERATED event data (not a test).

One store from :func:`affectfuse.data.synthetic.make_event_dataset` (the targets are linear in a latent signal
that visual and audio each carry, noisily, during one short event at a random time). For every feature-based
fusion model that takes the reaction task (the ``_small`` variants, and ``linear_meanpool``), all at the same
epochs and seed, the test mean Pearson of:

* **old** — the old defaults: ``lr=1e-4``, ``scheduler="step"`` (halved every 10 epochs);
* **step @ model lr** — the model's default learning rate with the old ``step`` schedule (what the schedule alone
  changes);
* **new** — ``TrainConfig`` with ``lr`` and ``scheduler`` left at their defaults (the model's ``DEFAULT_LR``,
  linear warm-up then cosine);
* **best single** — the same model with the new defaults on one modality, the modality chosen on dev;

and the ridge references of :func:`affectfuse.data.synthetic.event_reference`: event-aware fused and per modality
(they know where the event is), and mean pooling (what a model that averages over the clip can reach).

    .venv/bin/python benchmarks/defaults.py [--n 1000] [--rows 32] [--epochs 40] [--seed 0] [--jobs 2]

Runs use one torch thread each (on two cores tiny models run ~9x slower with two threads while another process
competes for the cores); ``--jobs`` runs that many trainings at once.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import platform
import subprocess
import tempfile
import time
from pathlib import Path

MODELS = ("early_fusion_small", "late_fusion_small", "linear_meanpool", "muse_lstm_small", "viper_small", "jmt_small",
          "abaw5_eri_small", "abaw5_expr_small")
OLD = {"lr": 1e-4, "scheduler": "step"}  # the defaults before issue 11 (step_epochs 10, gamma 0.5)


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")),
                    platform.processor() or "unknown")
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown"


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _run(job: tuple[str, str, str, dict, dict, int, int]) -> tuple[str, str, dict, float]:
    """Train one configuration; returns (model, variant, {split: mean_pearson}, seconds)."""
    from affectfuse.training import TrainConfig, train

    folder, model, variant, modalities, kw, epochs, seed = job
    t0 = time.time()
    cfg = TrainConfig(task="reaction", model=model, modalities=modalities, epochs=epochs, seed=seed, device="cpu",
                      **kw)
    metrics = train(Path(folder) / "labels.csv", Path(folder) / "store", cfg, Path(folder) / "runs" / f"{model}-{variant}",
                    progress=False, log=lambda *_: None)
    return model, variant, {s: m["mean_pearson"] for s, m in metrics.items() if "mean_pearson" in m}, time.time() - t0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="clips (60 / 20 / 20 %% train / dev / test)")
    p.add_argument("--rows", type=int, default=32, help="rows per clip and modality")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0, help="the data's and every run's seed")
    p.add_argument("--jobs", type=int, default=2, help="trainings at once (one torch thread each)")
    p.add_argument("--models", default=",".join(MODELS))
    args = p.parse_args(argv)
    _init_worker()

    from affectfuse.data.synthetic import event_reference, make_event_dataset
    from affectfuse.inference.train_config import TrainConfig

    start = time.time()
    models = [m for m in args.models.split(",") if m]
    with tempfile.TemporaryDirectory(prefix="affectfuse-defaults-") as tmp:
        folder = Path(tmp)
        data = make_event_dataset(folder / "store", folder / "labels.csv", n=args.n, rows=args.rows, seed=args.seed)
        mods = dict(data.keys)

        def ref(modalities=None, pooling="event") -> dict[str, float]:
            r = event_reference(folder / "store", folder / "labels.csv", data, modalities=modalities, pooling=pooling)
            return {s: v["mean_pearson"] for s, v in r.items()}

        refs = {"event-aware ridge, fused": ref(), "event-aware ridge, visual": ref(["visual"]),
                "event-aware ridge, audio": ref(["audio"]), "mean-pooling ridge, fused": ref(pooling="mean")}
        lrs = {m: TrainConfig(model=m).resolved().lr for m in models}
        jobs = []
        for m in models:
            jobs += [(tmp, m, "old", mods, OLD, args.epochs, args.seed),
                     (tmp, m, "step", mods, {"scheduler": "step"}, args.epochs, args.seed),
                     (tmp, m, "new", mods, {}, args.epochs, args.seed)]
            jobs += [(tmp, m, f"only-{k}", {k: v}, {}, args.epochs, args.seed) for k, v in mods.items()]
        jobs.sort(key=lambda j: MODELS.index(j[1]) if j[1] in MODELS else 0, reverse=True)  # the slow ones first
        res: dict[tuple[str, str], dict[str, float]] = {}
        secs: dict[str, float] = {}
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx, initializer=_init_worker) as pool:
            for model, variant, scores, s in pool.map(_run, jobs):
                res[model, variant] = scores
                secs[model] = secs.get(model, 0.0) + s
    elapsed = time.time() - start

    fused = refs["event-aware ridge, fused"]["test"]
    print(f"## Defaults that learn — generated event data (seed {args.seed})\n")
    print(f"`make_event_dataset(n={args.n}, rows={args.rows}, event_len=4, dims visual 16 / audio 12, latent 4, "
          f"seed={args.seed})`: {int(args.n * 0.6)} train / {int(args.n * 0.2)} dev / "
          f"{args.n - int(args.n * 0.6) - int(args.n * 0.2)} test clips; every run {args.epochs} epochs, batch 16, "
          f"AdamW, seed {args.seed}. Test mean Pearson (best epoch chosen on dev).\n")
    print("| model | default lr | old: 1e-4, step | step @ default lr | **new defaults** | best single modality "
          "(new) | new / event-aware fused ridge | new − best single |")
    print("|---|---|---|---|---|---|---|---|")
    for m in models:
        singles = {k: res[m, f"only-{k}"] for k in mods}
        best = max(singles, key=lambda k: singles[k]["dev"])
        new, single = res[m, "new"]["test"], singles[best]["test"]
        print(f"| `{m}` | {lrs[m]:g} | {res[m, 'old']['test']:.3f} | {res[m, 'step']['test']:.3f} | **{new:.3f}** | "
              f"{single:.3f} ({best}) | {new / fused:.0%} | {new - single:+.3f} |")
    print("\n| reference (ridge on pooled features, alpha by CV on train) | dev | test |")
    print("|---|---|---|")
    for name, r in refs.items():
        print(f"| {name} | {r['dev']:.3f} | {r['test']:.3f} |")
    print(f"\ntraining seconds per model (5 runs): " + ", ".join(f"{m} {secs[m]:.0f}" for m in models))
    print(f"elapsed {elapsed:.0f} s with --jobs {args.jobs} on {_cpu()}")


if __name__ == "__main__":
    main()
