"""``affectfuse import-features``, ``ablate`` and ``cv``: feature import and research experiments.

    affectfuse import-features SRC --modality NAME --out STORE [--name N] [--meta-columns K] [--overwrite]
    affectfuse ablate --task T --labels L --features STORE --modalities a,b,c --model M --out DIR [--seeds 0,1]
    affectfuse cv --task T --labels L --features STORE --modalities a,b --model M --folds K --out DIR
"""

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
from affectfuse.cli._train import resolve_modalities
from affectfuse.features.store import FeatureStore
from affectfuse.inference.train_config import TrainConfig


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def _add(sub, name: str, help_text: str, conf, callback) -> None:
    p = sub.add_parser(name, help=help_text, description=help_text)
    conf(p)
    p.set_defaults(run=callback)


# -- import-features --------------------------------------------------------------------------------
def _import_conf(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", help="folder of per-video .npy (T, D) or .csv files (video id = file stem)")
    p.add_argument("--modality", required=True, help="modality name recorded with the features (e.g. fau, audio)")
    p.add_argument("--out", required=True, help="feature store folder (created if missing)")
    p.add_argument("--name", help="feature name (extractor becomes imported_<name>; default: the modality)")
    p.add_argument("--meta-columns", type=int, dest="meta_columns",
                   help="leading CSV columns that are not features (MuSe 2022: 2); default: detected by name")
    p.add_argument("--time-column", dest="time_column", default="auto",
                   help="CSV time column name, 'auto' (timestamp / time / ...) or 'none' (row index)")
    p.add_argument("--time-unit", dest="time_unit", choices=["auto", "s", "ms"], default="auto",
                   help="unit of the time column: s, ms, or auto (a name ending in ms / _s decides, else a median step >= 5 means ms)")
    p.add_argument("--rate", type=float, help="rows per second when there is no time column")
    p.add_argument("--float16", action="store_true", help="store values as float16")
    p.add_argument("--overwrite", action="store_true", help="re-import videos already in the store")


def _import_run(args: argparse.Namespace) -> int:
    store = FeatureStore(args.out, create=True, dtype="float16" if args.float16 else "float32")
    tcol = None if str(args.time_column).lower() == "none" else args.time_column
    from affectfuse.features.importers import import_features

    rep = import_features(args.src, modality=args.modality, store=store, name=args.name, time_column=tcol,
                          meta_columns=args.meta_columns, time_unit=args.time_unit, rate=args.rate,
                          overwrite=args.overwrite)
    print(rep.summary())
    return 1 if rep.failed else 0


import_cmd = SimpleNamespace(add_parser=lambda sub, name: _add(
    sub, name, "import pre-computed per-video feature files (.npy / .csv, e.g. MuSe 2022) into a store",
    _import_conf, _import_run))


# -- shared training options -----------------------------------------------------------------------
def _exp_conf(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="reaction / va / expr / group, or generic (from the labels CSV)")
    p.add_argument("--labels", required=True, help="labels file or folder")
    p.add_argument("--features", required=True, help="feature store folder")
    p.add_argument("--modalities", help="comma list: extractor names / keys / modality=extractor (default: all)")
    p.add_argument("--model", default=None, help="registered model (affectfuse models); default viper_small")
    p.add_argument("--config", help="a shipped recipe by name (viper_reaction, jmt_va, abaw5_eri, abaw5_expr, e2e_vgaf: "
                                    "`affectfuse recipes`) or a YAML file with TrainConfig fields; options given here win")
    p.add_argument("--epochs", type=int, help="passes over the training split (default 50, or the recipe's)")
    p.add_argument("--batch-size", type=int, dest="batch_size", help="samples per optimiser step (default 16, or the recipe's)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the model's own; `affectfuse lr-find` suggests one)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where training runs (auto: the GPU when there is one)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _base_config(args: argparse.Namespace, extra: dict[str, Any] | None = None):
    base = from_yaml(TrainConfig, resolve_recipe(args.config)) if args.config else TrainConfig()
    store = FeatureStore(args.features, create=False)
    over: dict[str, Any] = {"task": args.task, **(extra or {})}
    if args.modalities or not base.modalities:
        over["modalities"] = resolve_modalities(store, args.modalities)
    for k in ("model", "epochs", "batch_size", "lr", "device"):
        if getattr(args, k, None) is not None:
            over[k] = getattr(args, k)
    return make_config(TrainConfig, over, base=base), store


def _ints(spec: str, what: str) -> list[int]:
    try:
        return [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"{what}: expected a comma list of integers, got {spec!r}") from None


# -- ablate ------------------------------------------------------------------------------------------
def _ablate_conf(p: argparse.ArgumentParser) -> None:
    _exp_conf(p)
    p.add_argument("--seeds", default="0", help="comma list of seeds per combination (table: mean ± std)")


def _ablate_run(args: argparse.Namespace) -> int:
    cfg, store = _base_config(args)
    _log(f"ablation of {list(cfg.modalities)} with {cfg.model} on {cfg.task} -> {args.out}")
    from affectfuse.training.ablate import ablate

    ablate(args.labels, store, cfg, args.out, modalities=dict(cfg.modalities), seeds=_ints(args.seeds, "--seeds"),
           progress=progress_bars(args), log=_log)
    print((Path(args.out) / "ablation.md").read_text(), end="")
    return 0


ablate_cmd = SimpleNamespace(add_parser=lambda sub, name: _add(
    sub, name, "train every combination of modalities (ViPER Table 3): OUT/ablation.csv / .md", _ablate_conf,
    _ablate_run))


# -- cv ----------------------------------------------------------------------------------------------
def _cv_conf(p: argparse.ArgumentParser) -> None:
    _exp_conf(p)
    p.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    p.add_argument("--fold-seed", type=int, default=0, dest="fold_seed", help="seed of the fold assignment")
    p.add_argument("--seed", type=int, help="training seed")
    p.add_argument("--pool", default="train,dev", help="splits whose videos are pooled and re-split (default train,dev)")


def _cv_run(args: argparse.Namespace) -> int:
    cfg, store = _base_config(args, {"seed": args.seed} if args.seed is not None else None)
    pool = tuple(s.strip() for s in args.pool.split(",") if s.strip())
    _log(f"{args.folds}-fold cross validation of {cfg.model} on {cfg.task}, pooling {pool} -> {args.out}")
    from affectfuse.training.kfold import kfold

    summary = kfold(args.labels, store, cfg, args.out, k=args.folds, seed=args.fold_seed, splits=pool,
                    progress=progress_bars(args), log=_log)
    print(json.dumps({k: summary[k] for k in ("k", "mean", "std", "oof", "oof_videos", "missing")}, indent=1))
    return 0


cv_cmd = SimpleNamespace(add_parser=lambda sub, name: _add(
    sub, name, "k-fold cross validation with out-of-fold predictions: OUT/metrics.json, OUT/oof_predictions.csv",
    _cv_conf, _cv_run))

__all__ = ["import_cmd", "ablate_cmd", "cv_cmd"]
