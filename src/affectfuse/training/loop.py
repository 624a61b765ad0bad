"""The training loop — the only place where losses are applied.

:func:`train` reads top to bottom as its steps: inputs (labels, store, task) → the model and the datasets
(the model is built once) → the run record → optimiser and scheduler → resume → epochs (one epoch, dev score,
checkpoint) → final evaluation. Every file of the run folder is written through
:class:`~affectfuse.inference.run_folder.RunFolder` (layout there); predictions are
:class:`~affectfuse.types.Prediction` objects post-processed as the task and the loss say
(:class:`~affectfuse.tasks.postprocess.PostProcess`, recorded in ``postprocess.yaml``).

Reproducibility: the data order and dropout of epoch ``e`` are seeded from ``(seed, e)``, so a run that was
interrupted and resumed from ``last.pt`` ends with the same weights as one that was not (tested).

Several processes (``devices * nodes > 1``, or a ``torchrun`` / ``srun`` launch): :func:`train` hands the same
steps to :func:`affectfuse.training.distributed.launch`, which runs them on every rank under
DistributedDataParallel; rank 0 alone writes the run folder and evaluates (plumbing and guarantees there).
``precision`` (``32`` / ``bf16`` / ``fp16``) is :mod:`affectfuse.training.precision`.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from affectfuse._config import field_names, to_dict
from affectfuse.data.dataset import FeatureDataset, Standardizer, collate
from affectfuse.data.labels import Labels
from affectfuse.data.raw import RAW_MODALITIES
from affectfuse.errors import TrainingError
from affectfuse.features.store import FeatureStore
from affectfuse.inference.run import (
    Run,
    evaluate,
    labels_for,
    load_run,
    predict_dataset,
    raw_dataset,
    score_dataset,
)
from affectfuse.inference.run_folder import RunFolder
from affectfuse.inference.train_config import TrainConfig
from affectfuse.models import config_class, create_model
from affectfuse.tasks.losses import create_loss
from affectfuse.tasks.postprocess import PostProcess
from affectfuse.tasks.spec import TaskSpec, get_task
from affectfuse.training import distributed
from affectfuse.training.distributed import Group, on_main
from affectfuse.training.precision import Precision, check_precision
from affectfuse.training.schedule import PER_STEP, per_step_scheduler, steps_per_epoch, warmup_steps

__all__ = ["train", "evaluate", "load_run", "Run", "predict_dataset", "seed_everything", "EMA"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class EMA:
    """Exponential moving average of a model's weights (and a copy of its buffers).

    ABAW5 ERI keeps an EMA of the parameters with decay 0.99 and evaluates / saves it; the authors' code
    leaves buffers (e.g. BatchNorm statistics) out, which makes the EMA model use stale statistics. Here the
    buffers are copied from the live model at every update.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p.detach(), 1.0 - self.decay)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)


# -- step 1: inputs -----------------------------------------------------------------------------------
def _task_for(cfg: TrainConfig, labels: Labels) -> TaskSpec:
    if cfg.task == "generic":
        return labels.task
    task = get_task(cfg.task)
    if labels.task.name != task.name:
        raise ValueError(f"labels are for task {labels.task.name!r} but the config trains task {task.name!r}")
    return task


#: fields a resumed run may change: the global batch, and so the training, does not depend on them
_RESUMABLE_WITH_OTHER = ("devices", "nodes")


def _check_same_config(folder: RunFolder, cfg: TrainConfig) -> None:
    """A run folder continues only the configuration it was made with (on any number of processes)."""
    if not folder.has(folder.CONFIG):
        return
    old, new = to_dict(folder.read_config()), to_dict(cfg)
    for k in _RESUMABLE_WITH_OTHER:
        old.pop(k, None), new.pop(k, None)
    if old != new:
        raise ValueError(f"{folder.path}: this run folder was made with a different configuration; use another --out "
                         f"(or delete it) — differences: " + ", ".join(k for k in new if new[k] != old.get(k)))


# -- step 2: the model (built once) and the datasets --------------------------------------------------
@dataclass
class _Data:
    """The datasets of a run: the training split, every other split (evaluated), the fitted standardizer."""

    train: Any
    evals: dict[str, Any]
    standardizer: Standardizer | None = None

    def named(self) -> list[tuple[str, Any]]:
        return [("train", self.train), *self.evals.items()]


def _model_overrides(cfg: TrainConfig) -> dict[str, Any]:
    """The config's model overrides; models whose config has ``backbone_lr_scale`` (pretrained backbones) get
    the training config's value unless the overrides set it."""
    overrides = dict(cfg.model_overrides)
    if "backbone_lr_scale" in field_names(config_class(cfg.model)) and "backbone_lr_scale" not in overrides:
        overrides["backbone_lr_scale"] = cfg.backbone_lr_scale
    return overrides


def _build(cfg: TrainConfig, task: TaskSpec, lab: Labels, store: FeatureStore | None, videos,
           overrides: dict[str, Any]) -> tuple[torch.nn.Module, _Data]:
    """The model and the datasets. Feature runs read their input widths from the data; end-to-end runs size
    their frames by the model (so there the model comes first)."""
    evals = [s for s in lab.splits if s not in cfg.train_split]
    if store is None:
        model = create_model(cfg.model, task=task, input_dims={m: RAW_MODALITIES[m] for m in cfg.modalities},
                             **overrides)
        data = _Data(raw_dataset(cfg, lab, videos, list(cfg.train_split), model),
                     {s: raw_dataset(cfg, lab, videos, s, model) for s in evals})
    else:
        train_ds = FeatureDataset(store, lab, list(cfg.train_split), cfg.modalities, **cfg.sequence)
        std = Standardizer().fit(train_ds) if cfg.standardize and len(train_ds) else None
        train_ds.standardizer = std
        data = _Data(train_ds, {s: FeatureDataset(store, lab, s, cfg.modalities, **cfg.sequence, standardizer=std)
                                for s in evals}, std)
        model = create_model(cfg.model, task=task, input_dims=train_ds.input_dims, **overrides)
    if len(data.train) == 0:
        raise ValueError(f"no training samples: split {list(cfg.train_split)} of the labels has no video with "
                         f"{'a readable file' if store is None else 'features'} for {cfg.modalities}; report: "
                         f"{data.train.report[:5]}")
    return model, data


# -- step 3: the run record ---------------------------------------------------------------------------
def _record(folder: RunFolder, cfg: TrainConfig, task: TaskSpec, model, overrides: dict[str, Any], data: _Data,
            post: PostProcess, lab: Labels, labels_src: str | None, store: FeatureStore | None, videos,
            training: dict[str, Any]) -> None:
    """Everything the run depends on besides the weights: model.yaml, postprocess.yaml, features.json,
    standardizer.json, data.json (with ``training``: processes, backend, precision, device), versions.json."""
    train_ds = data.train
    folder.write_model(name=cfg.model, task=task, input_dims=train_ds.input_dims, overrides=overrides,
                       config=model.config)
    folder.write_postprocess(post)
    if store is None:
        ident = {"raw": True, "frames": cfg.raw_frames, "image_size": train_ds.image_size,
                 "sample_rate": train_ds.sample_rate, "max_seconds": cfg.raw_max_seconds}
        feats = {m: {"key": k, "identity": ident} for m, k in train_ds.keys.items()}
    else:
        feats = {m: {"key": k, "identity": _identity(store, k)} for m, k in train_ds.keys.items()}
    folder.write_features(feats)
    if data.standardizer is not None:
        folder.write_standardizer(data.standardizer)
    folder.write_data({"labels": labels_src, "store": None if store is None else str(store.path.resolve()),
                       "videos": None if videos is None else str(Path(videos).resolve()),
                       "task": task.name, "train_videos": len(train_ds.video_ids),
                       "splits": {s: len(d.video_ids) for s, d in data.evals.items()},
                       "label_report": lab.report[:200], "training": training})
    folder.write_versions()


def _identity(store: FeatureStore, key: str) -> dict[str, Any]:
    try:
        return store.identity(key)
    except KeyError:
        return {}


# -- step 4: optimiser and scheduler ------------------------------------------------------------------
def _optimiser(cfg: TrainConfig, model, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """The optimiser over the model's parameter groups (backbones at their own rate) and its scheduler, for a run
    of ``steps`` optimiser steps per epoch (``warmup_cosine`` is stepped per step, the others per epoch)."""
    groups = model.param_groups(cfg.lr)
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adam":
        opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                              weight_decay=cfg.weight_decay)
    if cfg.scheduler in PER_STEP:
        sched = per_step_scheduler(cfg, opt, steps)
    elif cfg.scheduler == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_epochs, gamma=cfg.gamma)
    elif cfg.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    elif cfg.scheduler == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=cfg.gamma, patience=cfg.step_epochs)
    else:
        sched = None
    return opt, sched


# -- steps 5-7: resume, one epoch, checkpoint ---------------------------------------------------------
@dataclass
class _Progress:
    """Where training stands: the next epoch, the best dev score so far and its epoch, the history rows."""

    start: int = 0
    best: float = -math.inf
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Trainer:
    """The live objects of one training run and the three things done with them per epoch."""

    cfg: TrainConfig
    folder: RunFolder
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    ema: EMA | None
    loss_fn: Any
    device: torch.device
    group: Group | None = None  # several processes: this rank's group (distributed.py)
    precision: Precision | None = None
    per_step: bool = False  # the scheduler is stepped after every optimiser step (warmup_cosine), else per epoch
    net: torch.nn.Module | None = None  # what the training steps call: the model, or its DDP wrapper
    _shards: Any = None  # several processes: (the DataLoader, its EpochShards sampler), made once

    def __post_init__(self) -> None:
        if self.precision is None:
            self.precision = Precision.for_run("32", self.device)
        if self.net is None:
            self.net = self.model

    @property
    def main(self) -> bool:
        """Whether this process writes the run folder and evaluates (rank 0, or the only process)."""
        return self.group is None or self.group.is_main

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights that are evaluated and kept: the EMA when there is one."""
        return self.ema.model if self.ema is not None else self.model

    def resume(self, log) -> _Progress:
        """Continue from ``checkpoints/last.pt`` when there is one (a finished early-stopped run: nothing left).

        Several processes: rank 0 reads it and sends it to every rank (no shared file system needed)."""
        folder = self.folder
        state, stopped = on_main(self.group, lambda: (folder.load_checkpoint(device="cpu" if self.group else self.device),
                                                      folder.early_stopped))
        if state is None:
            return _Progress()
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.sched is not None and state.get("scheduler"):
            self.sched.load_state_dict(state["scheduler"])
        if self.ema is not None and state.get("ema"):
            self.ema.model.load_state_dict(state["ema"])
        self.precision.load_state_dict(state.get("scaler"))
        prog = _Progress(int(state["epoch"]) + 1, float(state["best"]), int(state["best_epoch"]), list(state["history"]))
        if stopped:
            prog.start = self.cfg.epochs  # finished by early stopping: nothing left to train
        if prog.history and self.main:  # last.pt is the truth (a kill may land between writing it and history.csv)
            folder.write_history(prog.history)
        log(f"resuming {folder.path} from epoch {prog.start + 1}")
        return prog

    def _loader(self, epoch: int, train_ds) -> tuple[Any, distributed.EpochShards | None]:
        """The epoch's batches (seeded by epoch) and, with several processes, their sampler (its ``weights``:
        this rank's loss weight per batch, set when the iteration starts)."""
        cfg = self.cfg
        collate_fn = getattr(train_ds, "collate_fn", collate)
        if self.group is None:
            gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
            return torch.utils.data.DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, generator=gen,
                                               collate_fn=collate_fn, num_workers=cfg.num_workers,
                                               drop_last=False), None
        if self._shards is None:
            sampler = distributed.EpochShards(train_ds, batch_size=cfg.batch_size, num_replicas=self.group.world_size,
                                              rank=self.group.rank, seed=cfg.seed * 100003)
            self._shards = (torch.utils.data.DataLoader(train_ds, batch_size=sampler.rank_batch, sampler=sampler,
                                                        collate_fn=collate_fn, num_workers=cfg.num_workers), sampler)
        loader, sampler = self._shards
        sampler.set_epoch(epoch)
        return loader, sampler

    def epoch(self, epoch: int, train_ds) -> tuple[float, int]:
        """One pass over the training split (seeded by epoch); returns (summed loss, steps).

        The loss is checked before ``backward`` and the gradient norm before the optimiser step, so the weights
        never take a non-finite value; either fault raises :class:`TrainingError` (see :meth:`_fault`) before
        anything of this epoch is written.
        """
        cfg, group, prec = self.cfg, self.group, self.precision
        rank = group.rank if group is not None else 0  # each rank draws its own dropout noise
        seed_everything(cfg.seed * 100003 + epoch + rank * distributed.RANK_SEED)  # dropout, SpecAugment of this epoch
        loader, shards = self._loader(epoch, train_ds)
        self.model.train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        total, steps = 0.0, 0
        for batch in loader:
            batch = batch.to(self.device)
            with prec.autocast():
                out = self.net(batch)
            loss = self.loss_fn(prec.float_output(out), batch)
            if shards is None:
                value = float(loss.detach())  # host syncs per step: this one and the gradient norm's below
            else:  # the rank's share of the global batch; the mean over ranks is the global batch's loss
                loss = loss * shards.weights[steps]
                value = group.mean(loss)  # the same on every rank, so every rank takes the same decisions
            if not math.isfinite(value):
                raise self._fault(epoch, steps + 1, f"the loss is {value}")
            self.opt.zero_grad(set_to_none=True)
            prec.backward(loss, self.opt)  # DDP: the gradients are averaged over the ranks here
            grads = [p.grad for p in params if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())
            finite = math.isfinite(float(norm))
            if not finite and prec.scaler is None:  # (with the float16 scaler: an overflow, the step is skipped)
                raise self._fault(epoch, steps + 1, f"the gradient norm is {float(norm)} (the loss was {value:.6g})")
            if cfg.grad_clip and finite:  # = clip_grad_norm_, reusing the norm just computed
                torch.nn.utils.clip_grads_with_norm_(params, cfg.grad_clip, norm)
            if prec.step(self.opt, float(norm)) and self.ema is not None:
                self.ema.update(self.model)
            if self.per_step:
                self.sched.step()
            total += value
            steps += 1
            if cfg.max_steps_per_epoch and steps >= cfg.max_steps_per_epoch:
                break
        named = list(self.model.named_parameters())
        finite = torch.stack([torch.isfinite(p).all() for _, p in named]) if named else torch.ones(1, dtype=bool)
        if not bool(finite.all()):  # finite gradients can still overflow the weights (e.g. a huge learning rate)
            bad = [n for (n, _), ok in zip(named, finite.tolist()) if not ok]
            raise self._fault(epoch, steps, f"the weights became non-finite ({', '.join(bad[:3])})")
        return total, steps

    def _fault(self, epoch: int, step: int, what: str) -> TrainingError:
        """The error for a non-finite loss / gradient at ``step`` (1-based) of ``epoch`` (0-based here).

        Nothing of the failed epoch has been written at this point, so the run folder holds the state after
        the last finished epoch: ``checkpoints/last.pt`` (resume), ``model.safetensors`` and ``history.csv``.
        """
        lr, peak = self.opt.param_groups[-1]["lr"], self.cfg.lr
        at = "" if math.isclose(lr, peak, rel_tol=1e-9) else f"; the schedule had it at {lr:g} at this step"
        ckpt = self.folder.file(self.folder.CHECKPOINT)
        if epoch > 0 and ckpt.exists():
            kept = f"the last good checkpoint (epoch {epoch}) is kept in {ckpt}"
        else:
            kept = "no epoch had finished, so there is no checkpoint to resume from"
        return TrainingError(f"{self.folder.path}: training stopped at epoch {epoch + 1}, step {step}: {what} "
                             f"(learning rate {peak:g}); {kept}. Lower the learning rate, set grad_clip, or check the "
                             f"data, then train again (a new --out, or the same one after fixing the data){at}",
                             run=self.folder.path, epoch=epoch + 1, step=step)

    def checkpoint(self, epoch: int, prog: _Progress, score: float) -> None:
        """Keep the weights when the dev score improved, step the scheduler, save ``last.pt`` and the history
        (every rank steps; rank 0 writes)."""
        improved = score > prog.best
        if improved:
            prog.best, prog.best_epoch = score, epoch
            if self.group is None:
                self.folder.save_weights(self.eval_model)
        if self.sched is not None and not self.per_step:
            self.sched.step(score) if self.cfg.scheduler == "plateau" else self.sched.step()

        def write() -> None:
            if improved and self.group is not None:
                self.folder.save_weights(self.eval_model)
            self.folder.save_checkpoint({
                "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict() if self.sched is not None else {},
                "ema": self.ema.model.state_dict() if self.ema is not None else {}, "epoch": epoch, "best": prog.best,
                "best_epoch": prog.best_epoch, "history": prog.history, "scaler": self.precision.state_dict()})
            self.folder.write_history(prog.history)

        on_main(self.group, write)


def _selection(cfg: TrainConfig, task: TaskSpec) -> tuple[str, bool]:
    """The dev metric that selects the kept epoch, and whether higher is better."""
    select = cfg.select_metric or task.metrics[0]
    return select, not select.startswith(("mse", "loss"))


# -- step 8: final evaluation -------------------------------------------------------------------------
def _final_eval(trainer: _Trainer, data: _Data, post: PostProcess, select: str, log) -> dict[str, dict[str, float]]:
    """Every split with the kept weights: ``predictions/<split>.csv`` and ``metrics.json``."""
    model = trainer.folder.load_weights(trainer.eval_model, device=trainer.device).eval()
    metrics: dict[str, dict[str, float]] = {}
    for name, ds in data.named():
        if len(ds) == 0:
            continue
        pred, m = score_dataset(model, ds, post, device=trainer.device)
        trainer.folder.write_predictions(name, pred)
        if m:
            metrics[name] = m
    trainer.folder.write_metrics(metrics)
    for split, m in metrics.items():
        if select in m:
            log(f"{split}: {select} = {m[select]:.4f}")
    return metrics


def train(labels: Labels | str | Path, store: FeatureStore | str | Path | None, config: TrainConfig, out: str | Path, *,
          videos: str | Path | None = None, progress: bool = True, resume: bool = True, stop_after: int | None = None,
          log=print) -> dict[str, dict[str, float]]:
    """Train a model on stored features, keep the best epoch by the dev metric, evaluate every split.

    With ``config.devices * config.nodes > 1`` (or under ``torchrun`` / ``srun``) the run is data-parallel
    (:mod:`affectfuse.training.distributed`): a plain call spawns ``devices`` local processes and returns rank
    0's metrics; under a launcher every rank calls this and gets the same metrics.

    Args:
        labels: a :class:`Labels` or a label file / folder (see :func:`affectfuse.data.labels.load_labels`).
        store: a :class:`FeatureStore` or its folder (None for end-to-end models on raw video).
        config: the :class:`TrainConfig`.
        videos: end-to-end models (modalities ``pixels`` / ``waveform``): the folder or list of the labelled
            videos; frames and audio are decoded per sample.
        out: the run folder (see :mod:`affectfuse.inference.run_folder`).
        progress: show a progress bar (rank 0).
        resume: continue from ``out/checkpoints/last.pt`` when it exists and the config is the same (the
            number of processes may differ).
        stop_after: end this call after that many epochs (a time-boxed job; the next call resumes). The
            final evaluation is skipped and an empty dict returned.
        log: called with each line to show (rank 0's lines only).

    Returns:
        metrics per split (also in ``out/metrics.json``).

    Raises:
        TrainingError: the loss or the gradients became NaN / Inf; the message names the epoch, the step and the
            run folder. Nothing of that epoch is written: ``checkpoints/last.pt``, ``model.safetensors`` and
            ``history.csv`` stay as the last finished epoch left them, so a resume continues from there.
        ValueError: a bad configuration, among them ``precision='fp16'`` off CUDA and a launcher whose world size
            is not ``devices * nodes``.
    """
    cfg = config.validate().resolved()  # lr None -> the model's default, scheduler auto -> warmup_cosine (recorded)
    if not cfg.modalities:
        raise ValueError("TrainConfig.modalities: name at least one modality → extractor (e.g. visual=vit_cls); "
                         "recipes leave it to --modalities")
    if distributed.wanted(cfg.world_size):
        check_precision(cfg.precision, _device(cfg.device), warn=False)  # before any process starts
        st = store.path if isinstance(store, FeatureStore) else store  # (a path travels to spawned processes)
        return distributed.launch(_train, (labels, st, cfg, out, videos, progress, resume, stop_after),
                                  devices=cfg.devices, nodes=cfg.nodes, device=cfg.device, log=log)
    return _train(None, log, labels, store, cfg, out, videos, progress, resume, stop_after)


def _train(group: Group | None, log, labels, store, cfg: TrainConfig, out, videos, progress: bool, resume: bool,
           stop_after: int | None) -> dict[str, dict[str, float]]:
    """The steps of :func:`train` in one process, or on one rank of a group (its arguments, in order)."""
    # 1. inputs
    main = group is None or group.is_main
    device = _device(cfg.device) if group is None else group.device
    check_precision(cfg.precision, device, warn=main)
    folder = RunFolder(out)
    on_main(group, lambda: folder.path.mkdir(parents=True, exist_ok=True))
    labels_src = None if isinstance(labels, Labels) else str(Path(labels).resolve())
    lab = labels_for(cfg, labels)
    raw = set(cfg.modalities) <= set(RAW_MODALITIES)
    if raw and videos is None:
        raise ValueError(f"modalities {sorted(cfg.modalities)} are raw inputs of end-to-end models: pass the videos "
                         f"(--videos DIR)")
    st = None if raw else (store if isinstance(store, FeatureStore) else FeatureStore(store, create=False))
    task = _task_for(cfg, lab)

    def start() -> None:
        if resume:
            _check_same_config(folder, cfg)
        folder.write_config(cfg)

    on_main(group, start)

    # 2. the model (once) and the datasets
    seed_everything(cfg.seed)
    overrides = _model_overrides(cfg)
    model, data = _build(cfg, task, lab, st, videos, overrides)
    for name, ds in data.named():
        for line in ds.report[:20]:
            log(f"[data:{name}] {line}")
    model.to(device)

    # 3. the run record; the loss says what its outputs mean
    loss_fn = create_loss(cfg.loss, task, **cfg.loss_params)
    post = PostProcess.for_task(task, activation=loss_fn.activation, smoothing=cfg.smoothing,
                                smoothing_mode=cfg.smoothing_mode)
    steps = steps_per_epoch(len(data.train), cfg)
    training = {"devices": cfg.devices, "nodes": cfg.nodes, "precision": cfg.precision, "device": str(device),
                **(group.describe() if group is not None else {"world_size": 1, "backend": None, "launcher": None}),
                "lr": cfg.lr, "scheduler": cfg.scheduler, "steps_per_epoch": steps, "optimizer_steps": steps * cfg.epochs,
                **({"warmup_steps": warmup_steps(steps * cfg.epochs, cfg.warmup)} if cfg.scheduler in PER_STEP else {})}
    on_main(group, lambda: _record(folder, cfg, task, model, overrides, data, post, lab, labels_src, st, videos,
                                   training))

    # 4. optimiser, scheduler, EMA, precision; 5. resume; then DDP around the model
    opt, sched = _optimiser(cfg, model, steps)
    trainer = _Trainer(cfg, folder, model, opt, sched, EMA(model, cfg.ema_decay) if cfg.ema_decay else None, loss_fn,
                       device, group=group, precision=Precision.for_run(cfg.precision, device),
                       per_step=cfg.scheduler in PER_STEP)
    select, higher_better = _selection(cfg, task)
    prog = trainer.resume(log) if resume else _Progress()
    trainer.net = distributed.wrap(model, group)

    # 6. epochs: train, score on dev (rank 0), checkpoint
    dev_ds = data.evals.get(cfg.dev_split)
    bar = tqdm(range(prog.start, cfg.epochs), desc="train", unit="epoch", disable=not progress or not main,
               dynamic_ncols=True, initial=prog.start, total=cfg.epochs)
    for epoch in bar:
        t0 = time.time()
        total, steps = trainer.epoch(epoch, data.train)

        def scored() -> tuple[dict[str, Any], float]:
            row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": total / max(steps, 1),
                                   "lr": opt.param_groups[-1]["lr"]}
            score = -total / max(steps, 1)
            if dev_ds is not None and len(dev_ds):
                _, dev_metrics = score_dataset(trainer.eval_model, dev_ds, post, device=device)
                row.update({f"dev_{k}": v for k, v in dev_metrics.items()})
                if select in dev_metrics:
                    score = dev_metrics[select] if higher_better else -dev_metrics[select]
            row["seconds"] = time.time() - t0
            return row, score

        row, score = on_main(group, scored)
        prog.history.append(row)
        trainer.checkpoint(epoch, prog, score)
        shown = row.get(f"dev_{select}")
        status = (f"loss {row['train_loss']:.4f}" + (f" dev {select} {shown:.4f}" if shown is not None else "")
                  + f" best@{prog.best_epoch + 1}")
        bar.set_postfix_str(status)
        if bar.disable:  # no bar (a redirected log, --quiet, an API call): one line per epoch instead
            log(f"epoch {epoch + 1}/{cfg.epochs}: {status} ({row['seconds']:.1f} s)")
        if stop_after is not None and epoch + 1 - prog.start >= stop_after and epoch + 1 < cfg.epochs:
            bar.close()
            log(f"stopped after epoch {epoch + 1} (stop_after={stop_after}); run again to resume")
            return {}
        if cfg.patience and epoch - prog.best_epoch >= cfg.patience:
            log(f"early stop after epoch {epoch + 1}: no dev improvement for {cfg.patience} epochs")
            on_main(group, lambda: folder.mark_early_stopped(epoch + 1))
            break
    bar.close()

    # 7. final evaluation with the kept weights (rank 0; every rank returns its metrics)
    return on_main(group, lambda: _final_eval(trainer, data, post, select, log))
