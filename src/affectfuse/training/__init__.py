"""Training, evaluation and run folders (the only place where losses are applied)."""

from affectfuse.training.ablate import ablate
from affectfuse.training.config import TrainConfig
from affectfuse.training.kfold import kfold
from affectfuse.training.loop import Run, evaluate, load_run, predict_dataset, train
from affectfuse.training.multi import train_seeds

__all__ = ["TrainConfig", "Run", "train", "evaluate", "load_run", "predict_dataset", "train_seeds", "ablate", "kfold"]
