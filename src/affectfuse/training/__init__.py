"""Training, evaluation and run folders (the only place where losses are applied)."""

from affectfuse.training.config import TrainConfig
from affectfuse.training.loop import Run, evaluate, load_run, predict_dataset, train

__all__ = ["TrainConfig", "Run", "train", "evaluate", "load_run", "predict_dataset"]
