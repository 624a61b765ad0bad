"""``affectfuse train`` and ``evaluate``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from affectfuse.cli._common import progress_bars
from affectfuse._config import from_yaml, make_config
from affectfuse.recipes import resolve as resolve_recipe
from affectfuse.features.store import FeatureStore
from affectfuse.inference.train_config import TrainConfig

# training / inference import torch: imported when a command runs, so that ``--help`` stays fast


def resolve_modalities(store, spec: str | None) -> dict[str, str]:
    """``--modalities`` → {modality: extractor name or key}.

    ``spec`` items are ``modality=extractor`` or a bare extractor name / key (the modality name is then the
    extractor's modality from the store, or the extractor name when two share one). None = every key.
    """
    summary = store.summary()
    if spec:
        items = [s.strip() for s in spec.split(",") if s.strip()]
    else:
        items = list(summary)
    out: dict[str, str] = {}
    for item in items:
        if "=" in item:
            m, src = item.split("=", 1)
            out[m.strip()] = src.strip()
            continue
        if item in summary:
            name, mod = summary[item]["name"], summary[item]["modality"]
        else:
            keys = store.keys_for(item)
            if not keys:
                known = sorted({s["name"] for s in summary.values()} | {s["modality"] or "" for s in summary.values()} - {""})
                # a modality name ("visual") selects the store's extractor of that modality when there is one
                by_mod = [k for k, s in summary.items() if s["modality"] == item]
                if len(by_mod) == 1:
                    out[item] = by_mod[0]
                    continue
                raise ValueError(f"--modalities: {item!r} is neither a key, an extractor name nor a modality of the store "
                                 f"{store.path}; it holds: {', '.join(known)}")
            name, mod = item, summary[keys[0]]["modality"]
        m = mod or name
        if m in out:
            m = name
        out[m] = item
    return out


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def _train_conf(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="reaction / va / expr / group, or generic (from the labels CSV)")
    p.add_argument("--labels", required=True, help="labels file or folder (ViPER data_info.csv, MuSe, Aff-Wild2, VGAF, CSV)")
    p.add_argument("--features", help="feature store folder (feature-based models)")
    p.add_argument("--videos", help="video folder or list (end-to-end models: --modalities pixels,waveform)")
    p.add_argument("--modalities", help="comma list: extractor names / keys / modality=extractor (default: all)")
    p.add_argument("--model", default=None, help="registered model (affectfuse models); default viper_small")
    p.add_argument("--config", help="a shipped recipe by name (viper_reaction, jmt_va, abaw5_eri, abaw5_expr, e2e_vgaf: "
                                    "`affectfuse recipes`) or a YAML file with TrainConfig fields; options given here win")
    p.add_argument("--epochs", type=int, help="passes over the training split (default 50, or the recipe's)")
    p.add_argument("--batch-size", type=int, dest="batch_size", help="samples per optimiser step (default 16, or the recipe's)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the model's own; `affectfuse lr-find` suggests one)")
    p.add_argument("--seed", type=int, help="seed of the weights, data order and dropout (default 0)")
    p.add_argument("--seeds", help="comma list of seeds: one run per seed in OUT/seed_<s>, mean ± std in OUT/metrics.json")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where training runs (auto: the GPU when there is one)")
    p.add_argument("--devices", type=int, help="training processes per node (DistributedDataParallel when devices x "
                   "nodes > 1: gloo on CPU, NCCL on GPU, one GPU each); a plain command starts them itself, under "
                   "torchrun / srun the launcher's world size must equal devices x nodes. --batch-size stays the "
                   "global batch (divisible by devices x nodes). Default 1")
    p.add_argument("--nodes", type=int, help="nodes of a multi-node run, each started by torchrun --nnodes or srun "
                   "(default 1)")
    p.add_argument("--precision", choices=["32", "bf16", "fp16"], help="32: float32 (the default); bf16: bfloat16 "
                   "autocast (GPU, or CPU with AMX / AVX512-BF16, slower than 32 on other CPUs); fp16: float16 autocast "
                   "with loss scaling (CUDA only, as JMT trained)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")


def _config(args: argparse.Namespace) -> tuple[TrainConfig, FeatureStore | None]:
    """The run's configuration from a recipe / YAML and the options given (they win), and its feature store."""
    base = from_yaml(TrainConfig, resolve_recipe(args.config)) if args.config else TrainConfig()
    over: dict[str, Any] = {"task": args.task}
    raw_mods = [m.strip() for m in (args.modalities or "").split(",") if m.strip()]
    from affectfuse.data.raw import RAW_MODALITIES

    if raw_mods and set(raw_mods) <= set(RAW_MODALITIES):
        if not args.videos:
            raise ValueError(f"--modalities {','.join(raw_mods)} are raw inputs: pass --videos DIR")
        store = None
        over["modalities"] = {m: "raw" for m in raw_mods}
    else:
        if not args.features:
            raise ValueError("pass --features STORE (or --videos with --modalities pixels,waveform for end-to-end models)")
        store = FeatureStore(args.features, create=False)
        if args.modalities or not base.modalities:
            over["modalities"] = resolve_modalities(store, args.modalities)
    for k in ("model", "epochs", "batch_size", "lr", "seed", "device", "devices", "nodes", "precision"):
        if getattr(args, k, None) is not None:
            over[k] = getattr(args, k)
    return make_config(TrainConfig, over, base=base), store


def _train_run(args: argparse.Namespace) -> int:
    from affectfuse.training import train
    from affectfuse.training.multi import train_seeds

    cfg, store = _config(args)
    main = _is_main_rank()
    if main:
        procs = f" on {cfg.world_size} processes" if cfg.world_size > 1 else ""
        print(f"training {cfg.model} on {cfg.task} with modalities {cfg.modalities}{procs} -> {args.out}",
              file=sys.stderr)
    if args.seeds:
        seeds = [int(s) for s in args.seeds.split(",")]
        summary = train_seeds(args.labels, store, cfg, args.out, seeds=seeds, videos=args.videos,
                              progress=progress_bars(args), log=_log)
        if main:
            print(json.dumps(summary, indent=1))
        return 0
    metrics = train(args.labels, store, cfg, args.out, videos=args.videos, progress=progress_bars(args), log=_log)
    if main:  # under torchrun / srun every rank runs this command; rank 0 prints
        print(json.dumps(metrics, indent=1))
    return 0


def _is_main_rank() -> bool:
    """Whether this process prints: no launcher started it, or it is the launcher's rank 0."""
    from affectfuse.training.distributed import launch_env

    env = launch_env()
    return env is None or env.rank == 0


# -- lr-find --------------------------------------------------------------------------------------
def _lrfind_conf(p: argparse.ArgumentParser) -> None:
    _train_conf(p)
    p.add_argument("--start-lr", type=float, default=1e-7, dest="start_lr", help="first learning rate (default 1e-7)")
    p.add_argument("--end-lr", type=float, default=1.0, dest="end_lr", help="last learning rate (default 1)")
    p.add_argument("--steps", type=int, default=100, help="optimiser steps from --start-lr to --end-lr (default 100)")


def _lrfind_run(args: argparse.Namespace) -> int:
    from affectfuse.training.lr_find import lr_find

    if args.seeds:
        raise ValueError("lr-find tests one configuration: --seeds does not apply (the curve hardly depends on it)")
    cfg, store = _config(args)
    if cfg.world_size > 1:
        raise ValueError(f"lr-find runs in one process: --devices/--nodes give {cfg.world_size} processes")
    res = lr_find(args.labels, store, cfg, start_lr=args.start_lr, end_lr=args.end_lr, num_steps=args.steps,
                  out=args.out, log=_log)
    print(json.dumps({"model": res.model, "suggestion": res.suggestion, "steepest": res.steepest,
                      "min_div10": res.min_div10, "steps": int(len(res.lrs)), "stopped": res.stopped}, indent=1))
    return 0


lrfind_cmd = SimpleNamespace(add_parser=lambda sub, name: _add(
    sub, name, "learning-rate range test: the loss as the learning rate rises, and a suggested --lr",
    _lrfind_conf, _lrfind_run))


train_cmd = SimpleNamespace(add_parser=lambda sub, name: _add(sub, name, "train a fusion model on stored features",
                                                                _train_conf, _train_run))


def _add(sub, name, help_text, conf, run):
    p = sub.add_parser(name, help=help_text, description=help_text)
    conf(p)
    p.set_defaults(run=run)


# -- evaluate -------------------------------------------------------------------------------------
def _eval_conf(p):
    p.add_argument("run_dir", metavar="RUN", help="run folder, or a folder of `train --seeds` (every seed and "
                                                  "their ensemble)")
    p.add_argument("--split", default="test", help="the labels' split to score (default: test)")
    p.add_argument("--labels", help="labels (default: the ones the run was trained with)")
    p.add_argument("--features", help="feature store (default: the one the run was trained with)")
    p.add_argument("--seed", type=int, default=None, help="a seeds folder: evaluate this seed's run only")
    p.add_argument("--backend", default="torch", choices=("torch", "onnx", "auto"),
                   help="what runs the model (see predict --backend)")


def _eval_run(args) -> int:
    from affectfuse.inference.run import evaluate
    from affectfuse.inference.seeds import evaluate_seeds, seed_runs

    if args.seed is None and seed_runs(args.run_dir):
        out = evaluate_seeds(args.run_dir, split=args.split, labels=args.labels, store=args.features,
                             backend=args.backend)
        print(json.dumps({args.split: out}, indent=1))
        return 0
    m = evaluate(args.run_dir, split=args.split, labels=args.labels, store=args.features, backend=args.backend,
                 seed=args.seed)
    print(json.dumps({args.split: m}, indent=1))
    return 0


evaluate_cmd = SimpleNamespace(add_parser=lambda sub, name: _add(sub, name, "evaluate a run on a split", _eval_conf,
                                                                   _eval_run))
