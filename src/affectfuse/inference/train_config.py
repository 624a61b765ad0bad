"""The training configuration: one frozen, keyword-only dataclass saved as YAML beside every run.

It lives with the run folder (:mod:`affectfuse.inference.run_folder`), not in :mod:`affectfuse.training`:
every run records it, and loading a run for inference must not import the training code.
:mod:`affectfuse.training.config` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrainConfig"]

_OPTIMIZERS = ("adamw", "adam", "sgd")
_SCHEDULERS = ("step", "cosine", "plateau", "none")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything a training run depends on (with the labels, the store and the code version).

    Attributes:
        task: built-in task name (``reaction``, ``va``, ``expr``, ``group``) or ``generic`` (from the labels).
        model: registered model name (``affectfuse models``).
        model_overrides: model config fields to change.
        modalities: modality name → extractor name or store key (e.g. ``{"visual": "vit_cls"}``).
        epochs: maximum epochs.
        batch_size: samples per step.
        lr: learning rate (backbones of end-to-end models get ``lr * backbone_lr_scale``).
        backbone_lr_scale: learning-rate factor of pretrained backbones (end-to-end models).
        weight_decay: optimiser weight decay.
        optimizer: ``adamw`` (ViPER), ``adam`` (MuSe baseline, ABAW5 ERI) or ``sgd`` (JMT; momentum, nesterov).
        momentum: SGD momentum.
        nesterov: SGD Nesterov momentum.
        scheduler: ``step`` (lr x ``gamma`` every ``step_epochs`` epochs, counted in epochs), ``cosine``,
            ``plateau`` (x ``gamma`` after ``step_epochs`` epochs without dev improvement) or ``none``.
        step_epochs: epochs per step (ViPER: 10, halving).
        gamma: the step factor.
        loss: loss name (``mse``, ``ccc``, ``mse_ce``, ``cross_entropy``, ``focal``); None = the task's default.
        loss_params: loss keyword parameters (e.g. ``{"ce_weight": 0.01}``, ``{"label_smoothing": 0.1}``).
        patience: early stopping after this many epochs without dev improvement; None = never.
        ema_decay: keep an exponential moving average of the weights (ABAW5 ERI: 0.99) and evaluate / save it.
        grad_clip: clip the gradient norm to this value (ABAW5 ERI: 0.1); None = no clipping.
        standardize: z-score every modality with statistics of the training split (saved with the model).
        seq_len: frame-level tasks: labelled frames per training sequence.
        seed: seeds python, numpy and torch (data order, init, dropout).
        num_workers: DataLoader workers.
        device: ``auto`` (cuda if available), ``cpu`` or ``cuda``.
        smoothing: frame-level regression: uniform-filter windows per target applied to predictions (JMT: 20
            for valence, 50 for arousal); None = no smoothing.
        train_split: split(s) trained on.
        dev_split: split used for model selection and early stopping.
        select_metric: metric that selects the best epoch; None = the task's first metric.
        max_steps_per_epoch: cap on optimiser steps per epoch (None = the whole split).
        raw_frames: end-to-end models (modalities ``pixels`` / ``waveform``): frames per clip (paper: 8).
        raw_max_seconds: end-to-end models: audio seconds kept per clip.
    """

    task: str = "reaction"
    model: str = "viper_small"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    modalities: dict[str, str] = field(default_factory=dict)
    epochs: int = 50
    batch_size: int = 16
    lr: float = 1e-4
    backbone_lr_scale: float = 0.01
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    momentum: float = 0.9
    nesterov: bool = True
    scheduler: str = "step"
    step_epochs: int = 10
    gamma: float = 0.5
    loss: str | None = None
    loss_params: dict[str, Any] = field(default_factory=dict)
    patience: int | None = None
    ema_decay: float | None = None
    grad_clip: float | None = None
    standardize: bool = True
    seq_len: int = 64
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    smoothing: tuple[int, ...] | None = None
    train_split: tuple[str, ...] = ("train",)
    dev_split: str = "dev"
    select_metric: str | None = None
    max_steps_per_epoch: int | None = None
    raw_frames: int = 8
    raw_max_seconds: float | None = 10.0

    def validate(self) -> "TrainConfig":
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"TrainConfig: epochs >= 1, batch_size >= 1, lr > 0 expected; got {self.epochs}, "
                             f"{self.batch_size}, {self.lr}")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"TrainConfig.optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}")
        if self.scheduler not in _SCHEDULERS:
            raise ValueError(f"TrainConfig.scheduler must be one of {_SCHEDULERS}, got {self.scheduler!r}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"TrainConfig.grad_clip must be > 0, got {self.grad_clip}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"TrainConfig.patience must be >= 1 or None, got {self.patience}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"TrainConfig.device must be auto / cpu / cuda, got {self.device!r}")
        return self
