"""The training loop — the only place where losses are applied — and run folders.

A run folder holds everything a result depends on::

    RUN/config.yaml          resolved TrainConfig
    RUN/model.safetensors    best weights (EMA weights when EMA is on), never a pickled module
    RUN/model.yaml           model name, task, input widths, model config
    RUN/standardizer.json    per-modality mean / std fitted on the training split only
    RUN/features.json        modality → store key and the extractor identity that made it
    RUN/data.json            where the labels and the store were, and the label report
    RUN/versions.json        library versions
    RUN/history.csv          per epoch: train loss, dev metrics, learning rate, seconds
    RUN/metrics.json         per split, every metric by name: {"dev": {"mean_pearson": ...}, ...}
    RUN/predictions/<split>.csv
    RUN/checkpoints/last.pt  weights + optimiser + scheduler state after the last finished epoch (resume)

Reproducibility: the data order and dropout of epoch ``e`` are seeded from ``(seed, e)``, so a run that was
interrupted and resumed from ``last.pt`` ends with the same weights as one that was not (tested).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from affectfuse._config import from_yaml, make_config, to_dict, to_yaml
from affectfuse._versions import versions
from affectfuse.data.dataset import FeatureDataset, Standardizer, collate
from affectfuse.data.labels import Labels, load_labels
from affectfuse.data.raw import RAW_MODALITIES, RawVideoDataset, collate_raw
from affectfuse.features.store import FeatureStore
from affectfuse.models import create_model
from affectfuse.tasks.losses import create_loss
from affectfuse.tasks.metrics import compute_metrics, smooth_predictions
from affectfuse.tasks.spec import TaskSpec, get_task
from affectfuse.training.config import TrainConfig

__all__ = ["train", "evaluate", "load_run", "Run", "predict_dataset", "seed_everything"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _task_for(cfg: TrainConfig, labels: Labels) -> TaskSpec:
    if cfg.task == "generic":
        return labels.task
    task = get_task(cfg.task)
    if labels.task.name != task.name:
        raise ValueError(f"labels are for task {labels.task.name!r} but the config trains task {task.name!r}")
    return task


def _activation(cfg: TrainConfig, task: TaskSpec) -> str:
    """How raw model outputs become predictions: the loss decides (MSE+CE trains sigmoid outputs)."""
    if task.is_classification:
        return "softmax"
    return "sigmoid" if (cfg.loss or task.loss) == "mse_ce" else "none"


def _apply(act: str, x: torch.Tensor) -> torch.Tensor:
    if act == "sigmoid":
        return torch.sigmoid(x)
    if act == "softmax":
        return torch.softmax(x, dim=-1)
    return x


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


@torch.no_grad()
def predict_dataset(model: torch.nn.Module, ds: "FeatureDataset | RawVideoDataset", *, batch_size: int = 64, act: str = "none",
                    device: torch.device | None = None) -> dict[str, Any]:
    """Predictions of a model over a dataset, one row per clip (clip level) or per labelled frame.

    Returns:
        dict with ``preds (R, K)`` (after ``act``), ``targets`` (or None), ``mask (R,)`` bool (labelled rows),
        ``video_ids (R,)``, ``frames (R,)`` and ``times (R,)`` for frame level (else None).
    """
    device = device or next(model.parameters()).device
    model.eval()
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False,
                                         collate_fn=getattr(ds, "collate_fn", collate))
    preds, targets, masks, vids, frames, times = [], [], [], [], [], []
    frame_level = ds.task.resolution == "frame"
    for batch in loader:
        out = model(batch.to(device))
        p = _apply(act, out.preds.float()).cpu().numpy()
        if frame_level:
            b, t = p.shape[:2]
            seq_mask = np.zeros((b, t), bool)
            for j in range(b):
                n = len(batch_frames := _frames_of(ds, batch, j))
                seq_mask[j, :n] = True
                frames.append(batch_frames)
                vids += [batch.ids[j]] * n
                times.append(np.asarray(batch.times[j][:n]) if batch.times is not None else np.full(n, np.nan))
            preds.append(p[seq_mask])
            if batch.targets is not None:
                targets.append(batch.targets.cpu().numpy()[seq_mask])
                masks.append(batch.target_mask.cpu().numpy()[seq_mask])
        else:
            preds.append(p)
            vids += list(batch.ids)
            if batch.targets is not None:
                targets.append(batch.targets.cpu().numpy())
                masks.append(batch.target_mask.cpu().numpy())
    res: dict[str, Any] = {
        "preds": np.concatenate(preds) if preds else np.zeros((0, ds.task.num_outputs)),
        "targets": np.concatenate(targets) if targets else None,
        "mask": np.concatenate(masks).astype(bool) if masks else None,
        "video_ids": vids,
        "frames": np.concatenate(frames) if frames else None,
        "times": np.concatenate(times) if times else None,
    }
    return res


def _frames_of(ds: FeatureDataset, batch, j: int) -> np.ndarray:
    """Frame indices of sample j of a frame-level batch (padding excluded)."""
    if batch.frames is None:
        raise ValueError("frame-level batch without frame indices (collate must set Batch.frames)")
    f = np.asarray(batch.frames[j].cpu() if hasattr(batch.frames[j], "cpu") else batch.frames[j])
    return f[f >= 0]


def _smooth(res: dict[str, Any], windows: tuple[int, ...] | None, task: TaskSpec) -> None:
    """JMT's post-processing: per video, uniform smoothing of each target over frames, clipped to range."""
    if not windows or task.resolution != "frame" or task.is_classification:
        return
    vids = np.asarray(res["video_ids"])
    for v in dict.fromkeys(res["video_ids"]):
        rows = np.nonzero(vids == v)[0]
        rows = rows[np.argsort(res["frames"][rows], kind="stable")]
        res["preds"][rows] = smooth_predictions(res["preds"][rows], list(windows), clip=task.value_range)


def _metrics(task: TaskSpec, res: dict[str, Any]) -> dict[str, float]:
    if res["targets"] is None or len(res["preds"]) == 0:
        return {}
    return {k: float(v) for k, v in compute_metrics(task, res["preds"], res["targets"], res["mask"]).items()}


def _write_predictions(path: Path, task: TaskSpec, res: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        head = ["video_id"] + (["frame", "time"] if res["frames"] is not None else [])
        if task.is_classification:
            head += ["prediction"] + [f"p_{c}" for c in task.targets]
        else:
            head += list(task.targets)
        w.writerow(head)
        for i, vid in enumerate(res["video_ids"]):
            row: list[Any] = [vid]
            if res["frames"] is not None:
                row += [int(res["frames"][i]), f"{res['times'][i]:.4f}"]
            p = res["preds"][i]
            if task.is_classification:
                row += [task.targets[int(np.argmax(p))]] + [f"{x:.6f}" for x in p]
            else:
                row += [f"{x:.6f}" for x in p]
            w.writerow(row)


@dataclass
class Run:
    """A trained run loaded back: model (best weights), task, standardizer, configs, feature identities."""

    path: Path
    config: TrainConfig
    task: TaskSpec
    model: torch.nn.Module
    standardizer: Standardizer | None
    features: dict[str, dict[str, Any]]
    data: dict[str, Any]

    @property
    def activation(self) -> str:
        return _activation(self.config, self.task)

    @property
    def is_raw(self) -> bool:
        """An end-to-end run on raw frames / waveforms (no feature store)."""
        return all(f.get("identity", {}).get("raw") for f in self.features.values())


def _save_weights(model: torch.nn.Module, path: Path) -> None:
    from safetensors.torch import save_model

    tmp = path.with_suffix(".tmp")
    save_model(model, str(tmp))
    tmp.replace(path)


def _task_dict(task: TaskSpec) -> dict[str, Any]:
    return to_dict(task)


def load_run(path: str | Path, *, device: str = "cpu") -> Run:
    """Load a run folder written by :func:`train` (safetensors weights; no pickled objects).

    Raises:
        FileNotFoundError: the folder is not a finished run (names the missing file).
    """
    from safetensors.torch import load_model

    run = Path(path)
    for f in ("config.yaml", "model.yaml", "model.safetensors", "features.json"):
        if not (run / f).exists():
            raise FileNotFoundError(f"{run}: not a finished affectfuse run (missing {f})")
    cfg = from_yaml(TrainConfig, run / "config.yaml")
    import yaml

    meta = yaml.safe_load((run / "model.yaml").read_text())
    task = make_config(TaskSpec, meta["task"]).validate()
    model = create_model(meta["name"], task=task, input_dims=meta["input_dims"], **meta.get("overrides", {}))
    load_model(model, str(run / "model.safetensors"), device=device)
    model.to(device).eval()
    std = None
    if (run / "standardizer.json").exists():
        std = Standardizer.from_state_dict(json.loads((run / "standardizer.json").read_text()))
    data = json.loads((run / "data.json").read_text()) if (run / "data.json").exists() else {}
    return Run(run, cfg, task, model, std, json.loads((run / "features.json").read_text()), data)


def train(labels: Labels | str | Path, store: FeatureStore | str | Path | None, config: TrainConfig, out: str | Path, *,
          videos: str | Path | None = None, progress: bool = True, resume: bool = True, stop_after: int | None = None,
          log=print) -> dict[str, dict[str, float]]:
    """Train a model on stored features, keep the best epoch by the dev metric, evaluate every split.

    Args:
        labels: a :class:`Labels` or a label file / folder (see :func:`affectfuse.data.labels.load_labels`).
        store: a :class:`FeatureStore` or its folder (None for end-to-end models on raw video).
        config: the :class:`TrainConfig`.
        videos: end-to-end models (modalities ``pixels`` / ``waveform``): the folder or list of the labelled
            videos; frames and audio are decoded per sample.
        out: the run folder (see the module docstring).
        progress: show a progress bar.
        resume: continue from ``out/checkpoints/last.pt`` when it exists and the config is the same.
        stop_after: end this call after that many epochs (a time-boxed job; the next call resumes). The
            final evaluation is skipped and an empty dict returned.

    Returns:
        metrics per split (also in ``out/metrics.json``).
    """
    cfg = config.validate()
    if not cfg.modalities:
        raise ValueError("TrainConfig.modalities: name at least one modality → extractor (e.g. visual=vit_cls); "
                         "recipes leave it to --modalities")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels_src = None if isinstance(labels, Labels) else str(Path(labels).resolve())
    lab = labels if isinstance(labels, Labels) else load_labels(labels, None if cfg.task == "generic" else cfg.task)
    raw = set(cfg.modalities) <= set(RAW_MODALITIES)
    if raw and videos is None:
        raise ValueError(f"modalities {sorted(cfg.modalities)} are raw inputs of end-to-end models: pass the videos "
                         f"(--videos DIR)")
    st = None if raw else (store if isinstance(store, FeatureStore) else FeatureStore(store, create=False))
    task = _task_for(cfg, lab)
    if (out / "config.yaml").exists() and resume:
        old = from_yaml(TrainConfig, out / "config.yaml")
        if to_dict(old) != to_dict(cfg):
            raise ValueError(f"{out}: this run folder was made with a different configuration; use another --out "
                             f"(or delete it) — differences: "
                             + ", ".join(k for k in to_dict(cfg) if to_dict(cfg)[k] != to_dict(old).get(k)))
    to_yaml(cfg, out / "config.yaml")
    device = _device(cfg.device)

    seed_everything(cfg.seed)
    splits = [s for s in lab.splits if s not in cfg.train_split]
    overrides = dict(cfg.model_overrides)
    if raw:
        input_dims = {m: RAW_MODALITIES[m] for m in cfg.modalities}
        model = _create(cfg, task, input_dims, overrides)
        train_ds, eval_sets = _raw_datasets(cfg, lab, videos, model, splits)
        std = None
    else:
        train_ds = FeatureDataset(st, lab, list(cfg.train_split), cfg.modalities, seq_len=cfg.seq_len)
        std = Standardizer().fit(train_ds) if cfg.standardize and len(train_ds) else None
        train_ds.standardizer = std
        eval_sets = {s: FeatureDataset(st, lab, s, cfg.modalities, seq_len=cfg.seq_len, standardizer=std) for s in splits}
        model = _create(cfg, task, train_ds.input_dims, overrides)
    if len(train_ds) == 0:
        raise ValueError(f"no training samples: split {list(cfg.train_split)} of the labels has no video with "
                         f"{'a readable file' if raw else 'features'} for {cfg.modalities}; report: {train_ds.report[:5]}")
    dev_ds = eval_sets.get(cfg.dev_split)
    for name, ds in [("train", train_ds), *eval_sets.items()]:
        for line in ds.report[:20]:
            log(f"[data:{name}] {line}")
    model.to(device)
    (out / "model.yaml").write_text(_yaml({"name": cfg.model, "task": _task_dict(task), "input_dims": train_ds.input_dims,
                                           "overrides": overrides, "config": to_dict(model.config)}))
    if raw:
        feats = {m: {"key": k, "identity": {"raw": True, "frames": cfg.raw_frames, "image_size": train_ds.image_size,
                                            "sample_rate": train_ds.sample_rate, "max_seconds": cfg.raw_max_seconds}}
                 for m, k in train_ds.keys.items()}
    else:
        feats = {m: {"key": k, "identity": _identity(st, k)} for m, k in train_ds.keys.items()}
    (out / "features.json").write_text(json.dumps(feats, indent=1, default=str))
    if std is not None:
        (out / "standardizer.json").write_text(json.dumps(std.state_dict()))
    (out / "data.json").write_text(json.dumps({"labels": labels_src, "store": None if st is None else str(st.path.resolve()),
                                               "videos": None if videos is None else str(Path(videos).resolve()),
                                               "task": task.name, "train_videos": len(train_ds.video_ids),
                                               "splits": {s: len(d.video_ids) for s, d in eval_sets.items()},
                                               "label_report": lab.report[:200]}, indent=1))
    (out / "versions.json").write_text(json.dumps(versions(), indent=1))

    loss_fn = create_loss(cfg.loss, task, **cfg.loss_params)
    act = _activation(cfg, task)
    groups = model.param_groups(cfg.lr)
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adam":
        opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                              weight_decay=cfg.weight_decay)
    if cfg.scheduler == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_epochs, gamma=cfg.gamma)
    elif cfg.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    elif cfg.scheduler == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=cfg.gamma, patience=cfg.step_epochs)
    else:
        sched = None
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay else None
    select = cfg.select_metric or task.metrics[0]
    higher_better = not select.startswith(("mse", "loss"))

    start, best, best_epoch, history = 0, -math.inf, -1, []
    ckpt = out / "checkpoints" / "last.pt"
    if resume and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sched is not None and state.get("scheduler"):
            sched.load_state_dict(state["scheduler"])
        if ema is not None and state.get("ema"):
            ema.model.load_state_dict(state["ema"])
        start, best, best_epoch = int(state["epoch"]) + 1, float(state["best"]), int(state["best_epoch"])
        history = list(state["history"])
        if (ckpt.parent / "early_stopped").exists():
            start = cfg.epochs  # finished by early stopping: nothing left to train
        log(f"resuming {out} from epoch {start + 1}")

    from tqdm.auto import tqdm

    bar = tqdm(range(start, cfg.epochs), desc="train", unit="epoch", disable=not progress, dynamic_ncols=True,
               initial=start, total=cfg.epochs)
    for epoch in bar:
        t0 = time.time()
        seed_everything(cfg.seed * 100003 + epoch)  # data order, dropout (and numpy-driven SpecAugment) of this epoch
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        loader = torch.utils.data.DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True, generator=gen,
                                             collate_fn=getattr(train_ds, "collate_fn", collate),
                                             num_workers=cfg.num_workers, drop_last=False)
        model.train()
        total, steps = 0.0, 0
        for batch in loader:
            batch = batch.to(device)
            output = model(batch)
            loss = loss_fn(output, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            if ema is not None:
                ema.update(model)
            total += float(loss.detach())
            steps += 1
            if cfg.max_steps_per_epoch and steps >= cfg.max_steps_per_epoch:
                break
        eval_model = ema.model if ema is not None else model
        row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": total / max(steps, 1),
                               "lr": opt.param_groups[-1]["lr"]}
        score = -total / max(steps, 1)
        if dev_ds is not None and len(dev_ds):
            res = predict_dataset(eval_model, dev_ds, act=act, device=device)
            _smooth(res, cfg.smoothing, task)
            dev_metrics = _metrics(task, res)
            row.update({f"dev_{k}": v for k, v in dev_metrics.items()})
            if select in dev_metrics:
                score = dev_metrics[select] if higher_better else -dev_metrics[select]
        row["seconds"] = time.time() - t0
        history.append(row)
        improved = score > best
        if improved:
            best, best_epoch = score, epoch
            _save_weights(eval_model, out / "model.safetensors")
        if sched is not None:
            sched.step(score) if cfg.scheduler == "plateau" else sched.step()
        ckpt.parent.mkdir(exist_ok=True)
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict() if sched is not None else {},
                 "ema": ema.model.state_dict() if ema is not None else {}, "epoch": epoch, "best": best,
                 "best_epoch": best_epoch, "history": history}
        torch.save(state, ckpt.with_suffix(".tmp"))
        ckpt.with_suffix(".tmp").replace(ckpt)
        _write_history(out / "history.csv", history)
        shown = row.get(f"dev_{select}")
        bar.set_postfix_str(f"loss {row['train_loss']:.4f}" + (f" dev {select} {shown:.4f}" if shown is not None else "")
                            + f" best@{best_epoch + 1}")
        if stop_after is not None and epoch + 1 - start >= stop_after and epoch + 1 < cfg.epochs:
            bar.close()
            log(f"stopped after epoch {epoch + 1} (stop_after={stop_after}); run again to resume")
            return {}
        if cfg.patience and epoch - best_epoch >= cfg.patience:
            log(f"early stop after epoch {epoch + 1}: no dev improvement for {cfg.patience} epochs")
            (ckpt.parent / "early_stopped").write_text(str(epoch + 1))
            break
    bar.close()
    return _final_eval(out, lab, st, cfg, task, act, train_ds, eval_sets, device, log)


def _create(cfg: TrainConfig, task: TaskSpec, input_dims: dict[str, int], overrides: dict[str, Any]):
    """Create the model; models with pretrained backbones get the config's backbone learning-rate factor."""
    model = create_model(cfg.model, task=task, input_dims=input_dims, **overrides)
    if "backbone_lr_scale" in getattr(model.config, "__dataclass_fields__", {}) and "backbone_lr_scale" not in overrides:
        overrides["backbone_lr_scale"] = cfg.backbone_lr_scale
        model = create_model(cfg.model, task=task, input_dims=input_dims, **overrides)
    return model


def _raw_dataset(cfg: TrainConfig, lab: Labels | None, videos, model, split, **kw) -> RawVideoDataset:
    from functools import partial

    size = int(getattr(model, "image_size", 224))
    ds = RawVideoDataset(lab, videos, split, modalities=list(cfg.modalities), frames=cfg.raw_frames, image_size=size,
                         max_seconds=cfg.raw_max_seconds, **kw)
    ds.collate_fn = partial(collate_raw, mean=getattr(model, "image_mean", (0.485, 0.456, 0.406)),
                            std=getattr(model, "image_std", (0.229, 0.224, 0.225)))
    return ds


def _raw_datasets(cfg: TrainConfig, lab: Labels, videos, model, splits: list[str]):
    train_ds = _raw_dataset(cfg, lab, videos, model, list(cfg.train_split))
    return train_ds, {s: _raw_dataset(cfg, lab, videos, model, s) for s in splits}


def _yaml(d: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False)


def _identity(store: FeatureStore, key: str) -> dict[str, Any]:
    try:
        return store.identity(key)
    except KeyError:
        return {}


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    cols = list(dict.fromkeys(k for row in history for k in row))
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(history)


def _final_eval(out: Path, lab: Labels, st: FeatureStore, cfg: TrainConfig, task: TaskSpec, act: str,
                train_ds: FeatureDataset, eval_sets: dict[str, FeatureDataset], device, log) -> dict[str, dict[str, float]]:
    run = load_run(out, device=str(device))
    metrics: dict[str, dict[str, float]] = {}
    for name, ds in [("train", train_ds), *eval_sets.items()]:
        if len(ds) == 0:
            continue
        res = predict_dataset(run.model, ds, act=act, device=device)
        _smooth(res, cfg.smoothing, task)
        _write_predictions(out / "predictions" / f"{name}.csv", task, res)
        m = _metrics(task, res)
        if m:
            metrics[name] = m
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    sel = cfg.select_metric or task.metrics[0]
    for split, m in metrics.items():
        if sel in m:
            log(f"{split}: {sel} = {m[sel]:.4f}")
    return metrics


def evaluate(run_dir: str | Path, *, split: str = "test", labels: str | Path | None = None,
             store: str | Path | None = None) -> dict[str, float]:
    """Re-evaluate a run on a split (labels and store default to the ones it was trained on).

    Writes ``RUN/predictions/<split>.csv`` and merges the split's metrics into ``RUN/metrics.json``.
    """
    run = load_run(run_dir)
    lab_src = labels or run.data.get("labels")
    st_src = store or run.data.get("store")
    if not lab_src or not (st_src or run.is_raw):
        raise ValueError(f"{run_dir}: the run does not record its labels / store; pass them explicitly")
    lab = load_labels(lab_src, None if run.config.task == "generic" else run.config.task)
    if split not in lab.splits:
        raise ValueError(f"{lab_src}: no split {split!r}; the labels have {lab.splits}")
    if run.is_raw:
        ds = _raw_dataset(run.config, lab, run.data.get("videos"), run.model, split)
    else:
        keys = {m: f["key"] for m, f in run.features.items()}
        ds = FeatureDataset(FeatureStore(st_src, create=False), lab, split, keys, seq_len=run.config.seq_len,
                            standardizer=run.standardizer)
    res = predict_dataset(run.model, ds, act=run.activation)
    _smooth(res, run.config.smoothing, run.task)
    _write_predictions(Path(run_dir) / "predictions" / f"{split}.csv", run.task, res)
    m = _metrics(run.task, res)
    path = Path(run_dir) / "metrics.json"
    allm = json.loads(path.read_text()) if path.exists() else {}
    allm[split] = m
    path.write_text(json.dumps(allm, indent=1))
    return m
