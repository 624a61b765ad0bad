"""The run folder: one class that knows its files and is the only reader and writer of them.

A run folder holds everything a result depends on::

    RUN/config.yaml          resolved TrainConfig
    RUN/model.safetensors    best weights (EMA weights when EMA is on), never a pickled module
    RUN/model.yaml           model name, task, input widths, overrides, model config
    RUN/postprocess.yaml     how raw outputs become predictions (PostProcess; older runs: derived from the config)
    RUN/standardizer.json    per-modality mean / std fitted on the training split only
    RUN/features.json        modality → store key and the extractor identity that made it
    RUN/data.json            where the labels and the store were, and the label report
    RUN/versions.json        library versions
    RUN/history.csv          per epoch: train loss, dev metrics, learning rate, seconds
    RUN/metrics.json         per split, every metric by name: {"dev": {"mean_pearson": ...}, ...}
    RUN/predictions/<split>.csv   Prediction.RUN layout
    RUN/checkpoints/last.pt  weights + optimiser + scheduler state after the last finished epoch (resume)
    RUN/checkpoints/early_stopped   present when early stopping ended the run

A multi-seed folder (``train_seeds``) uses the same names for its summary ``metrics.json`` and the
ensemble's ``predictions/``. Readers return None / {} for a missing optional file and raise the parser's
error for a broken one (the report turns those into notes).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml
from safetensors.torch import load_model, save_model

from affectfuse.errors import writing
from affectfuse._config import from_yaml, make_config, to_dict, to_yaml
from affectfuse._versions import versions
from affectfuse.data.dataset import Standardizer
from affectfuse.inference.train_config import TrainConfig
from affectfuse.tasks.postprocess import PostProcess
from affectfuse.tasks.spec import TaskSpec
from affectfuse.types import Prediction

__all__ = ["RunFolder"]


def _fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class RunFolder:
    """The files of one run folder (layout: module docstring).

    Args:
        path: the folder (nothing is created until something is written).

    Example:
        >>> folder = RunFolder("runs/viper")
        >>> folder.read_metrics()["test"]["mean_pearson"]
        >>> folder.read_predictions("test").values           # (R, 7)
    """

    CONFIG = "config.yaml"
    WEIGHTS = "model.safetensors"
    MODEL = "model.yaml"
    POSTPROCESS = "postprocess.yaml"
    STANDARDIZER = "standardizer.json"
    FEATURES = "features.json"
    DATA = "data.json"
    VERSIONS = "versions.json"
    HISTORY = "history.csv"
    METRICS = "metrics.json"
    PREDICTIONS = "predictions"
    CHECKPOINT = "checkpoints/last.pt"
    EARLY_STOPPED = "checkpoints/early_stopped"
    #: what a finished run must have to be loaded
    REQUIRED = (CONFIG, MODEL, WEIGHTS, FEATURES)
    #: any of these marks a folder as a run folder (possibly unfinished)
    MARKERS = (CONFIG, METRICS, HISTORY, PREDICTIONS)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def file(self, name: str) -> Path:
        """The path of one of the names above."""
        return self.path / name

    def has(self, name: str) -> bool:
        return self.file(name).exists()

    def require_finished(self) -> None:
        """Raises FileNotFoundError naming the first missing file of a finished run."""
        for f in self.REQUIRED:
            if not self.has(f):
                raise FileNotFoundError(f"{self.path}: not a finished affectfuse run (missing {f})")

    def is_run_folder(self) -> bool:
        """Whether the folder holds any of :attr:`MARKERS`."""
        return self.path.is_dir() and any(self.has(m) for m in self.MARKERS)

    def _write_text(self, name: str, text: str) -> Path:
        path = self.file(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with writing(path):
            path.write_text(text)
        return path

    def _write_json(self, name: str, data: Any, **kw: Any) -> Path:
        return self._write_text(name, json.dumps(data, **kw))

    def _read_json(self, name: str, default: Any = None) -> Any:
        return json.loads(self.file(name).read_text()) if self.has(name) else default

    # -- configuration, model, post-processing -----------------------------------------------------
    def write_config(self, cfg: TrainConfig) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        to_yaml(cfg, self.file(self.CONFIG))
        return self.file(self.CONFIG)

    def read_config(self) -> TrainConfig:
        return from_yaml(TrainConfig, self.file(self.CONFIG))

    def read_config_text(self) -> str | None:
        """``config.yaml`` as written (None when missing)."""
        return self.file(self.CONFIG).read_text() if self.has(self.CONFIG) else None

    def write_model(self, *, name: str, task: TaskSpec, input_dims: dict[str, int], overrides: dict[str, Any],
                    config: Any) -> Path:
        """``model.yaml``: what :func:`affectfuse.models.create_model` needs to build the model again."""
        meta = {"name": name, "task": to_dict(task), "input_dims": dict(input_dims), "overrides": overrides,
                "config": to_dict(config)}
        return self._write_text(self.MODEL, yaml.safe_dump(meta, sort_keys=False))

    def read_model(self) -> dict[str, Any] | None:
        """``model.yaml`` as a dict (``name``, ``task``, ``input_dims``, ``overrides``, ``config``)."""
        return (yaml.safe_load(self.file(self.MODEL).read_text()) or {}) if self.has(self.MODEL) else None

    def read_task(self) -> TaskSpec | None:
        """The task recorded in ``model.yaml`` (None when missing)."""
        meta = self.read_model()
        if not meta or not isinstance(meta.get("task"), dict):
            return None
        return make_config(TaskSpec, meta["task"]).validate()

    def write_postprocess(self, post: PostProcess) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        to_yaml(post, self.file(self.POSTPROCESS))
        return self.file(self.POSTPROCESS)

    def read_postprocess(self) -> PostProcess | None:
        """The recorded post-processing (None for runs made before it was recorded)."""
        return from_yaml(PostProcess, self.file(self.POSTPROCESS)) if self.has(self.POSTPROCESS) else None

    # -- data records --------------------------------------------------------------------------------
    def write_standardizer(self, std: Standardizer) -> Path:
        return self._write_json(self.STANDARDIZER, std.state_dict())

    def read_standardizer(self) -> Standardizer | None:
        state = self._read_json(self.STANDARDIZER)
        return None if state is None else Standardizer.from_state_dict(state)

    def write_features(self, features: dict[str, dict[str, Any]]) -> Path:
        return self._write_json(self.FEATURES, features, indent=1, default=str)

    def read_features(self) -> dict[str, dict[str, Any]]:
        return self._read_json(self.FEATURES, {})

    def write_data(self, data: dict[str, Any]) -> Path:
        return self._write_json(self.DATA, data, indent=1)

    def read_data(self) -> dict[str, Any]:
        return self._read_json(self.DATA, {})

    def write_versions(self) -> Path:
        return self._write_json(self.VERSIONS, versions(), indent=1)

    # -- results -------------------------------------------------------------------------------------
    def write_history(self, history: list[dict[str, Any]]) -> Path:
        path = self.file(self.HISTORY)
        cols = list(dict.fromkeys(k for row in history for k in row))
        with writing(path), open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(history)
        return path

    def read_history(self) -> pd.DataFrame | None:
        """``history.csv`` (None when missing)."""
        return pd.read_csv(self.file(self.HISTORY)) if self.has(self.HISTORY) else None

    def write_metrics(self, metrics: dict[str, Any]) -> Path:
        return self._write_json(self.METRICS, metrics, indent=1)

    def read_metrics(self) -> dict[str, Any]:
        """``metrics.json`` ({} when missing)."""
        return self._read_json(self.METRICS, {})

    def merge_metrics(self, split: str, metrics: dict[str, float]) -> Path:
        """Replace one split's metrics in ``metrics.json``, keeping the others."""
        return self.write_metrics({**self.read_metrics(), split: metrics})

    def predictions_file(self, split: str) -> Path:
        return self.file(self.PREDICTIONS) / f"{split}.csv"

    def write_predictions(self, split: str, pred: Prediction) -> Path:
        return pred.write(self.predictions_file(split), Prediction.RUN)

    def read_predictions(self, split: str) -> Prediction:
        return Prediction.read(self.predictions_file(split), Prediction.RUN)

    def prediction_splits(self) -> list[str]:
        """Splits with a ``predictions/<split>.csv``, sorted by name."""
        d = self.file(self.PREDICTIONS)
        return sorted(p.stem for p in d.glob("*.csv")) if d.is_dir() else []

    # -- weights and checkpoints ---------------------------------------------------------------------
    def save_weights(self, model: torch.nn.Module) -> Path:
        """``model.safetensors``, written atomically."""
        path = self.file(self.WEIGHTS)
        tmp = path.with_suffix(".tmp")
        save_model(model, str(tmp))
        tmp.replace(path)
        return path

    def load_weights(self, model: torch.nn.Module, *, device: str | torch.device = "cpu") -> torch.nn.Module:
        load_model(model, str(self.file(self.WEIGHTS)), device=str(device))
        return model

    def save_checkpoint(self, state: dict[str, Any]) -> Path:
        """``checkpoints/last.pt`` (tensors and plain values only), written atomically.

        The state goes to ``last.pt.tmp``, is flushed and fsynced, then renamed over ``last.pt`` (and the folder
        fsynced), so a kill or a power cut at any moment leaves either the previous or the new checkpoint. A
        ``last.pt.tmp`` left behind by such a kill is never read and is overwritten by the next save.
        """
        path = self.file(self.CHECKPOINT)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        return path

    def load_checkpoint(self, *, device: str | torch.device = "cpu") -> dict[str, Any] | None:
        """The last checkpoint (None when there is none); no pickled objects are accepted.

        Only ``last.pt`` is read; a partial ``last.pt.tmp`` (a save interrupted by a kill) is ignored.
        """
        if not self.has(self.CHECKPOINT):
            return None
        return torch.load(self.file(self.CHECKPOINT), map_location=device, weights_only=True)

    def mark_early_stopped(self, epoch: int) -> None:
        self._write_text(self.EARLY_STOPPED, str(epoch))

    @property
    def early_stopped(self) -> bool:
        return self.has(self.EARLY_STOPPED)
