"""The training configuration: one frozen, keyword-only dataclass saved as YAML beside every run.

It lives with the run folder (:mod:`affectfuse.inference.run_folder`), not in :mod:`affectfuse.training`:
every run records it, and loading a run for inference must not import the training code.
:mod:`affectfuse.training.config` re-exports it.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrainConfig", "DEFAULT_LR", "model_default_lr"]

_OPTIMIZERS = ("adamw", "adam", "sgd")
_SCHEDULERS = ("auto", "warmup_cosine", "step", "cosine", "plateau", "none")

#: the learning rate of a model whose module declares none (``DEFAULT_LR`` there), and the old default of every run
DEFAULT_LR = 1e-4


def model_default_lr(name: str) -> float:
    """The default learning rate of a registered model: its module's ``DEFAULT_LR[name]``, else :data:`DEFAULT_LR`.

    A model module may define ``DEFAULT_LR = {"<registered name>": lr, ...}`` (measured, see
    ``benchmarks/defaults.py``); names it does not list get :data:`DEFAULT_LR`.

    Raises:
        KeyError: ``name`` is not a registered model (the message lists the known ones).
    """
    import affectfuse.models  # noqa: F401  (registers every model; imported here: loading a config stays light)
    from affectfuse._registry import MODELS

    module = sys.modules.get(getattr(MODELS.get(name), "__module__", ""), None)
    table = getattr(module, "DEFAULT_LR", None)
    return float(table[name]) if isinstance(table, dict) and name in table else DEFAULT_LR
_PRECISIONS = ("32", "bf16", "fp16")
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything a training run depends on (with the labels, the store and the code version).

    Attributes:
        task: built-in task name (``reaction``, ``va``, ``expr``, ``group``) or ``generic`` (from the labels).
        model: registered model name (``affectfuse models``).
        model_overrides: model config fields to change.
        modalities: modality name → extractor name or store key (e.g. ``{"visual": "vit_cls"}``).
        epochs: maximum epochs.
        batch_size: samples per optimiser step — the global batch: with ``devices * nodes`` processes each
            rank takes ``batch_size // (devices * nodes)`` (it must divide evenly).
        lr: peak learning rate (backbones of end-to-end models get ``lr * backbone_lr_scale``); None (the
            default) = the model's default (:func:`model_default_lr`), recorded as a number in the run's config.
        backbone_lr_scale: learning-rate factor of pretrained backbones (end-to-end models).
        weight_decay: optimiser weight decay.
        optimizer: ``adamw`` (ViPER), ``adam`` (MuSe baseline, ABAW5 ERI) or ``sgd`` (JMT; momentum, nesterov).
        momentum: SGD momentum.
        nesterov: SGD Nesterov momentum.
        scheduler: ``auto`` (the default; a run records what it resolved to: today ``warmup_cosine``),
            ``warmup_cosine`` (per optimiser step: linear warm-up over the first ``warmup`` fraction of the run's
            steps, then cosine decay to ~0 at its last step, so a run of any length ends annealed), ``step`` (lr x
            ``gamma`` every ``step_epochs`` epochs, counted in epochs), ``cosine`` (per epoch, ``T_max = epochs``),
            ``plateau`` (x ``gamma`` after ``step_epochs`` epochs without dev improvement) or ``none``.
        step_epochs: epochs per step (ViPER: 10, halving).
        gamma: the step factor.
        warmup: ``warmup_cosine``: fraction of the run's optimiser steps (``epochs x`` steps per epoch) spent
            warming up linearly from ``lr / warmup_steps`` to ``lr``.
        loss: loss name (``mse``, ``ccc``, ``mse_ce``, ``cross_entropy``, ``focal``); None = the task's default.
        loss_params: loss keyword parameters (e.g. ``{"ce_weight": 0.01}``, ``{"label_smoothing": 0.1}``).
        patience: early stopping after this many epochs without dev improvement; None = never.
        ema_decay: keep an exponential moving average of the weights (ABAW5 ERI: 0.99) and evaluate / save it.
        grad_clip: clip the gradient norm to this value (ABAW5 ERI: 0.1); None = no clipping.
        standardize: z-score every modality with statistics of the training split (saved with the model).
        seq_len: frame-level tasks: tokens (labelled frames) per sequence.
        tokens: frame-level tasks: ``"frames"`` (a sequence is ``seq_len`` consecutive labelled frames; the
            default) or ``"subclips"`` (JMT's code: a token every ``subclip_stride`` labelled frames, each token's
            features those of the clip ending at its frame, e.g. ``r2plus1d_18`` with ``clip_anchor: end``; a
            sequence of 16 tokens spans 16 x 32 = 512 frames, and every labelled frame is a token of one sequence).
        subclip_stride: with ``tokens="subclips"``, labelled frames between consecutive tokens (JMT: 32).
        seed: seeds python, numpy and torch (data order, init, dropout).
        num_workers: DataLoader workers.
        device: ``auto`` (cuda if available), ``cpu``, ``cuda`` or ``cuda:N`` (one process only; with
            ``devices > 1`` each rank uses ``cuda:LOCAL_RANK``).
        devices: training processes per node (DistributedDataParallel when ``devices * nodes > 1``: gloo on
            CPU, NCCL on GPU). A plain command spawns them itself; under ``torchrun`` / ``srun`` the launcher's
            world size must equal ``devices * nodes``.
        nodes: nodes of a multi-node run (needs a launcher on every node).
        precision: ``"32"`` (float32, the default), ``"bf16"`` (bfloat16 autocast; on CPU slower than float32
            without AMX / AVX512-BF16) or ``"fp16"`` (float16 autocast with a GradScaler, CUDA only; JMT).
        smoothing: frame-level regression: uniform-filter windows per target applied to predictions (JMT: 20
            for valence, 50 for arousal); None = no smoothing.
        smoothing_mode: how the smoothing window treats a video's ends: ``"reflect"`` (mirrors the frames; the
            default) or ``"constant"`` (zeros past the ends, as JMT's ``val.py`` calls ``uniform_filter1d``).
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
    lr: float | None = None
    backbone_lr_scale: float = 0.01
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    momentum: float = 0.9
    nesterov: bool = True
    scheduler: str = "auto"
    step_epochs: int = 10
    gamma: float = 0.5
    warmup: float = 0.05
    loss: str | None = None
    loss_params: dict[str, Any] = field(default_factory=dict)
    patience: int | None = None
    ema_decay: float | None = None
    grad_clip: float | None = None
    standardize: bool = True
    seq_len: int = 64
    tokens: str = "frames"
    subclip_stride: int = 32
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"
    devices: int = 1
    nodes: int = 1
    precision: str = "32"
    smoothing: tuple[int, ...] | None = None
    smoothing_mode: str = "reflect"
    train_split: tuple[str, ...] = ("train",)
    dev_split: str = "dev"
    select_metric: str | None = None
    max_steps_per_epoch: int | None = None
    raw_frames: int = 8
    raw_max_seconds: float | None = 10.0

    def __post_init__(self) -> None:
        if isinstance(self.precision, int) and not isinstance(self.precision, bool):  # YAML ``precision: 32``
            object.__setattr__(self, "precision", str(self.precision))

    @property
    def sequence(self) -> dict[str, int]:
        """The frame-level sequence keywords of :class:`~affectfuse.data.dataset.FeatureDataset`."""
        return {"seq_len": self.seq_len, "dilation": self.subclip_stride if self.tokens == "subclips" else 1}

    @property
    def world_size(self) -> int:
        """Training processes in all: ``devices * nodes``."""
        return self.devices * self.nodes

    def resolved(self) -> "TrainConfig":
        """This config with its defaults made concrete — what a run records and trains with.

        ``lr=None`` becomes the model's default learning rate (:func:`model_default_lr`) and
        ``scheduler="auto"`` becomes ``warmup_cosine``; everything else (an explicit ``step``, a recipe's values)
        is kept as it is. Resolving twice changes nothing.

        Raises:
            KeyError: ``lr`` is None and ``model`` is not a registered model.
        """
        changes: dict[str, Any] = {}
        if self.lr is None:
            changes["lr"] = model_default_lr(self.model)
        if self.scheduler == "auto":
            changes["scheduler"] = "warmup_cosine"
        return dataclasses.replace(self, **changes) if changes else self

    def validate(self) -> "TrainConfig":
        if self.lr is not None and (isinstance(self.lr, bool) or not isinstance(self.lr, (int, float))):
            raise ValueError(f"TrainConfig.lr must be a number > 0 or None (the model's default), got {self.lr!r}")
        if self.epochs < 1 or self.batch_size < 1 or (self.lr is not None and self.lr <= 0):
            raise ValueError(f"TrainConfig: epochs >= 1, batch_size >= 1, lr > 0 expected; got {self.epochs}, "
                             f"{self.batch_size}, {self.lr}")
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"TrainConfig.optimizer must be one of {_OPTIMIZERS}, got {self.optimizer!r}")
        if self.scheduler not in _SCHEDULERS:
            raise ValueError(f"TrainConfig.scheduler must be one of {_SCHEDULERS}, got {self.scheduler!r}")
        if not isinstance(self.warmup, (int, float)) or isinstance(self.warmup, bool) or not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"TrainConfig.warmup must be a fraction of the run's steps in [0, 1), got {self.warmup!r}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must be in (0, 1), got {self.ema_decay}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"TrainConfig.grad_clip must be > 0, got {self.grad_clip}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"TrainConfig.patience must be >= 1 or None, got {self.patience}")
        if not isinstance(self.device, str) or not _DEVICE.fullmatch(self.device):
            raise ValueError(f"TrainConfig.device must be auto / cpu / cuda / cuda:N, got {self.device!r}")
        for name in ("devices", "nodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 1, got {value!r}")
        if self.world_size > 1 and self.device.startswith("cuda:"):
            raise ValueError(f"TrainConfig.device {self.device!r} names one GPU, but devices x nodes = "
                             f"{self.world_size} processes: use device 'cuda' (each rank takes cuda:LOCAL_RANK)")
        if self.batch_size % self.world_size:
            raise ValueError(f"TrainConfig.batch_size {self.batch_size} is the global batch and must be divisible by "
                             f"the {self.world_size} processes (devices {self.devices} x nodes {self.nodes})")
        if self.tokens not in ("frames", "subclips") or self.subclip_stride < 1:
            raise ValueError(f"TrainConfig: tokens must be 'frames' or 'subclips' and subclip_stride >= 1, got "
                             f"{self.tokens!r}, {self.subclip_stride}")
        if self.smoothing_mode not in ("reflect", "constant"):
            raise ValueError(f"TrainConfig.smoothing_mode must be 'reflect' or 'constant', got {self.smoothing_mode!r}")
        if self.precision not in _PRECISIONS:
            raise ValueError(f"TrainConfig.precision must be one of {_PRECISIONS}, got {self.precision!r}")
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError("TrainConfig.precision 'fp16' (float16 autocast with a GradScaler) needs a CUDA device; "
                             "on CPU use precision 'bf16' (bfloat16 autocast) or '32'")
        return self
