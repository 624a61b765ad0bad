"""Training, evaluation and run folders (the only place where losses are applied).

``Run``, ``load_run``, ``evaluate`` and ``predict_dataset`` live in :mod:`affectfuse.inference.run` (loading a
run must not import training) and are re-exported here.
"""

from affectfuse.inference.run import Run, evaluate, load_run, predict_dataset
from affectfuse.inference.train_config import TrainConfig
from affectfuse.training.ablate import ablate
from affectfuse.training.kfold import kfold
from affectfuse.training.loop import train
from affectfuse.training.multi import train_seeds

__all__ = ["TrainConfig", "Run", "train", "evaluate", "load_run", "predict_dataset", "train_seeds", "ablate", "kfold"]
