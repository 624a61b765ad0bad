"""The training configuration (defined with the run folder, :mod:`affectfuse.inference.train_config`)."""

from affectfuse.inference.train_config import TrainConfig

__all__ = ["TrainConfig"]
