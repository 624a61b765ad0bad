"""A trained run loaded back, and the model → Prediction hop shared by training, ``evaluate`` and ``predict``.

``load_run(path)`` rebuilds the model from ``model.yaml`` and loads its safetensors weights (no pickled
objects); :func:`score_dataset` runs a model over a dataset, applies the run's
:class:`~affectfuse.tasks.postprocess.PostProcess` and returns a :class:`~affectfuse.types.Prediction` with
the task's metrics on the labelled rows. Nothing here imports :mod:`affectfuse.training`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from affectfuse.data.dataset import FeatureDataset, Standardizer, collate
from affectfuse.data.labels import Labels, load_labels
from affectfuse.data.raw import RawVideoDataset, collate_raw
from affectfuse.features.store import FeatureStore
from affectfuse.inference.run_folder import RunFolder
from affectfuse.inference.train_config import TrainConfig
from affectfuse.models import create_model
from affectfuse.tasks.losses import create_loss
from affectfuse.tasks.metrics import compute_metrics
from affectfuse.tasks.postprocess import PostProcess
from affectfuse.tasks.spec import TaskSpec
from affectfuse.types import Prediction

__all__ = ["Run", "load_run", "use_backend", "evaluate", "predict_dataset", "score_dataset", "raw_dataset", "labels_for",
           "derived_postprocess"]


@dataclass
class Run:
    """A trained run loaded back: model (best weights), task, standardizer, configs, feature identities.

    Attributes:
        path: the run folder.
        config: its :class:`TrainConfig`.
        task: the task the model predicts.
        model: the model with the kept weights, in eval mode.
        standardizer: the training split's feature statistics (None for end-to-end runs / standardize off).
        features: modality → ``{"key", "identity"}`` (``features.json``).
        data: ``data.json`` (labels, store, videos the run was trained with).
        postprocess: raw outputs → predictions (``postprocess.yaml``; derived from the config for older runs).
        backend: what runs ``model``: ``"torch"`` (the module) or ``"onnx"`` (an
            :class:`~affectfuse.inference.onnx_model.OnnxModel`, same call and outputs).
    """

    path: Path
    config: TrainConfig
    task: TaskSpec
    model: torch.nn.Module
    standardizer: Standardizer | None
    features: dict[str, dict[str, Any]]
    data: dict[str, Any]
    postprocess: PostProcess = field(default_factory=PostProcess)
    backend: str = "torch"

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.path)

    @property
    def activation(self) -> str:
        return self.postprocess.activation

    @property
    def is_raw(self) -> bool:
        """An end-to-end run on raw frames / waveforms (no feature store)."""
        return all(f.get("identity", {}).get("raw") for f in self.features.values())

    def dataset(self, labels: Labels | None, split: str | None, *, store: FeatureStore | None = None,
                videos: Any = None, video_ids: Sequence[str] | None = None) -> "FeatureDataset | RawVideoDataset":
        """The inputs this run reads, for a labelled split or (``labels=None``) unlabelled ``video_ids``.

        Args:
            labels: labels of the split, or None for inference.
            split: the split (None with ``labels=None``).
            store: the feature store (feature runs).
            videos: a folder or ``{video_id: file}`` (end-to-end runs; default: the videos it was trained on).
            video_ids: inference: the videos to read.
        """
        kw = {"task": self.task, "video_ids": video_ids} if labels is None else {}
        if self.is_raw:
            return raw_dataset(self.config, labels, videos if videos is not None else self.data.get("videos"),
                               split, self.model, **kw)
        keys = {m: f["key"] for m, f in self.features.items()}
        return FeatureDataset(store, labels, split, keys, **self.config.sequence, standardizer=self.standardizer,
                              **kw)


def derived_postprocess(cfg: TrainConfig, task: TaskSpec) -> PostProcess:
    """The post-processing a run made with ``cfg`` used (for runs without ``postprocess.yaml``): the loss's
    activation, the config's smoothing."""
    loss = create_loss(cfg.loss, task, **cfg.loss_params)
    return PostProcess.for_task(task, activation=loss.activation, smoothing=cfg.smoothing,
                                smoothing_mode=cfg.smoothing_mode)


def load_run(path: str | Path, *, device: str = "cpu", backend: str = "torch") -> Run:
    """Load a run folder written by :func:`affectfuse.training.train` (safetensors weights; no pickled objects).

    Args:
        path: the run folder.
        device: where the torch model goes.
        backend: ``"torch"``; ``"onnx"`` runs the model on ONNX Runtime from ``RUN/model.onnx`` (exported when
            missing or made from other weights); ``"auto"``: ONNX where ONNX Runtime is installed and a current
            export exists, else torch (see :func:`use_backend`).

    Raises:
        FileNotFoundError: the folder is not a finished run (names the missing file).
        ValueError: an unknown backend, or one that cannot serve this run.
    """
    folder = RunFolder(path)
    from affectfuse.inference.seeds import seed_runs

    if seeds := seed_runs(path):
        raise FileNotFoundError(f"{path}: a folder of {len(seeds)} seeds (train --seeds), not one run: load one of "
                                f"{', '.join(str(p) for p in seeds.values())}, or give the folder to evaluate / "
                                f"predict (their ensemble, or --seed S)")
    folder.require_finished()
    cfg = folder.read_config()
    meta = folder.read_model()
    task = folder.read_task()
    model = create_model(meta["name"], task=task, input_dims=meta["input_dims"], **meta.get("overrides", {}))
    folder.load_weights(model, device=device)
    model.to(device).eval()
    post = folder.read_postprocess() or derived_postprocess(cfg, task)
    run = Run(folder.path, cfg, task, model, folder.read_standardizer(), folder.read_features(), folder.read_data(),
              post)
    return run if backend == "torch" else use_backend(run, backend)


def use_backend(run: Run, backend: str) -> Run:
    """The run with its model on ``backend`` (``"torch"``, ``"onnx"`` or ``"auto"``; see :func:`load_run`).

    Raises:
        ValueError: an unknown backend, ONNX Runtime not installed (``"onnx"``), a model that cannot be exported,
            or a torch run asked for from an ONNX one.
    """
    from affectfuse.inference.onnx_model import load_onnx_model, resolve_model_backend  # heavy: onnxruntime

    if run.backend != "torch":
        if backend in (run.backend, "auto"):
            return run
        raise ValueError(f"{run.path}: loaded on the {run.backend} backend; load_run(path, backend={backend!r}) instead")
    if str(next(run.model.parameters()).device) != "cpu" and backend != "torch":
        raise ValueError(f"{run.path}: the ONNX backend runs on the CPU; load the run with device='cpu'")
    chosen = resolve_model_backend(backend, run)
    if chosen == "torch":
        return run
    return replace(run, model=load_onnx_model(run), backend="onnx")


def raw_dataset(cfg: TrainConfig, labels: Labels | None, videos, split, model: torch.nn.Module,
                **kw: Any) -> RawVideoDataset:
    """Raw frames and waveforms for an end-to-end model, sized and normalised as the model expects.

    ``kw`` go to :class:`RawVideoDataset` (inference: ``task=`` and ``video_ids=``).
    """
    size = int(getattr(model, "image_size", 224))
    ds = RawVideoDataset(labels, videos, split, modalities=list(cfg.modalities), frames=cfg.raw_frames,
                         image_size=size, max_seconds=cfg.raw_max_seconds, **kw)
    ds.collate_fn = partial(collate_raw, mean=getattr(model, "image_mean", (0.485, 0.456, 0.406)),
                            std=getattr(model, "image_std", (0.229, 0.224, 0.225)))
    return ds


@torch.no_grad()
def predict_dataset(model: torch.nn.Module, ds: "FeatureDataset | RawVideoDataset", *, batch_size: int = 64,
                    device: torch.device | None = None) -> dict[str, Any]:
    """Raw model outputs over a dataset, one row per clip (clip level) or per labelled frame.

    ``model`` is a torch model or an :class:`~affectfuse.inference.onnx_model.OnnxModel` (same call).

    Returns:
        dict with ``preds (R, K)`` float32 (before any activation), ``targets`` (or None), ``mask (R,)`` bool
        (labelled rows), ``video_ids (R,)``, ``frames (R,)`` and ``times (R,)`` for frame level (else None).
    """
    device = device or getattr(model, "device", None) or next(model.parameters()).device  # OnnxModel: cpu
    model.eval()
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False,
                                         collate_fn=getattr(ds, "collate_fn", collate))
    preds, targets, masks, vids, frames, times = [], [], [], [], [], []
    frame_level = ds.task.resolution == "frame"
    for batch in loader:
        out = model(batch.to(device))
        p = out.preds.float().cpu().numpy()  # (B, K) or (B, T, K)
        if frame_level:
            b, t = p.shape[:2]
            seq_mask = np.zeros((b, t), bool)
            for j in range(b):
                n = len(batch_frames := _frames_of(batch, j))
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
    return {
        "preds": np.concatenate(preds) if preds else np.zeros((0, ds.task.num_outputs), np.float32),
        "targets": np.concatenate(targets) if targets else None,
        "mask": np.concatenate(masks).astype(bool) if masks else None,
        "video_ids": vids,
        "frames": np.concatenate(frames) if frames else None,
        "times": np.concatenate(times) if times else None,
    }


def _frames_of(batch, j: int) -> np.ndarray:
    """Frame indices of sample j of a frame-level batch (padding excluded)."""
    if batch.frames is None:
        raise ValueError("frame-level batch without frame indices (collate must set Batch.frames)")
    f = np.asarray(batch.frames[j].cpu() if hasattr(batch.frames[j], "cpu") else batch.frames[j])
    return f[f >= 0]


def score_dataset(model: torch.nn.Module, ds: "FeatureDataset | RawVideoDataset", post: PostProcess, *,
                  device: torch.device | None = None) -> tuple[Prediction, dict[str, float]]:
    """The model's predictions over a dataset, post-processed, and every metric of the task on the labelled
    rows ({} when the dataset has no targets or no rows)."""
    res = predict_dataset(model, ds, device=device)
    values = post.apply(res["preds"], video_ids=res["video_ids"], frames=res["frames"])
    task = ds.task
    pred = Prediction(values=values, names=list(task.targets), video_ids=res["video_ids"], times=res["times"],
                      frames=res["frames"], classification=task.is_classification)
    if res["targets"] is None or len(values) == 0:
        return pred, {}
    return pred, {k: float(v) for k, v in compute_metrics(task, values, res["targets"], res["mask"]).items()}


def labels_for(cfg: TrainConfig, labels: Labels | str | Path) -> Labels:
    """A :class:`Labels`, loading a label file / folder for the config's task (``generic``: from the file)."""
    return labels if isinstance(labels, Labels) else load_labels(labels, None if cfg.task == "generic" else cfg.task)


def evaluate(run_dir: str | Path, *, split: str = "test", labels: str | Path | None = None,
             store: str | Path | None = None, backend: str = "torch", seed: int | None = None) -> dict[str, float]:
    """Re-evaluate a run on a split (labels and store default to the ones it was trained on; ``backend`` as in
    :func:`load_run`).

    Writes ``RUN/predictions/<split>.csv`` and merges the split's metrics into ``RUN/metrics.json``. A folder of
    ``train --seeds`` is evaluated as its ensemble (every seed evaluated too, all written: see
    :func:`~affectfuse.inference.seeds.evaluate_seeds`; the ensemble's metrics are returned), or as one of its
    seeds with ``seed``.
    """
    from affectfuse.inference.seeds import evaluate_seeds, seed_runs, select_runs

    if seed is not None:
        run_dir = select_runs(run_dir, seed)[0]
    elif seed_runs(run_dir):
        return evaluate_seeds(run_dir, split=split, labels=labels, store=store, backend=backend)["ensemble"]
    run = load_run(run_dir, backend=backend)
    lab_src = labels or run.data.get("labels")
    st_src = store or run.data.get("store")
    if not lab_src or not (st_src or run.is_raw):
        raise ValueError(f"{run_dir}: the run does not record its labels / store; pass them explicitly")
    lab = labels_for(run.config, lab_src)
    if split not in lab.splits:
        raise ValueError(f"{lab_src}: no split {split!r}; the labels have {lab.splits}")
    st = None if run.is_raw else FeatureStore(st_src, create=False)
    pred, metrics = score_dataset(run.model, run.dataset(lab, split, store=st), run.postprocess)
    run.folder.write_predictions(split, pred)
    run.folder.merge_metrics(split, metrics)
    return metrics
