"""affectfuse: multimodal emotion recognition from raw video.

From your own videos to features, fusion models (ViPER, Joint Multimodal Transformer, ABAW5-ERI,
end-to-end cross-modal), scores and submission files.

The public API is what the command line runs (everything else is plumbing and may change)::

    import affectfuse as af
    af.extract(["videos/"], "features/", af.ExtractConfig(extractors=("viper-offline",)))   # affectfuse extract
    store = af.FeatureStore("features/")
    metrics = af.train("labels.csv", store, af.TrainConfig(task="reaction", model="viper_small",
                                                           modalities={"visual": "faceapi_expression"}), "run/")
    af.evaluate("run/", split="test")                                                     # affectfuse evaluate
    res = af.predict(["new.mp4"], "run/", out="pred.csv")                                 # affectfuse predict
    res = af.predict(["new.mp4"])                               # the offline default: expressions per frame
    run = af.load_run("run/")                                   # model, task, configs, feature identities
"""

from __future__ import annotations

from affectfuse._compat import install_hook as _install_hook

_install_hook()  # torchvision is made safe when something first imports it (see _compat)

from affectfuse.types import (  # noqa: E402
    AudioFragments,
    Batch,
    Clip,
    FeatureSet,
    FrameBatch,
    ModelOutput,
    Prediction,
    VideoInfo,
)

__version__ = "0.1.0"

# The entry points are imported on first use: importing them pulls in torch, transformers and the model
# registry (seconds), which ``import affectfuse`` for a type or a store should not pay.
_LAZY = {
    "extract": ("affectfuse.extraction.run", "extract"),
    "ExtractConfig": ("affectfuse.extraction.config", "ExtractConfig"),
    "train": ("affectfuse.training.loop", "train"),
    "TrainConfig": ("affectfuse.inference.train_config", "TrainConfig"),
    "evaluate": ("affectfuse.inference.run", "evaluate"),
    "predict": ("affectfuse.inference.predictor", "predict"),
    "load_run": ("affectfuse.inference.run", "load_run"),
    "FeatureStore": ("affectfuse.features.store", "FeatureStore"),
    "create_extractor": ("affectfuse.extractors.base", "create_extractor"),
    "list_extractors": ("affectfuse.extractors.base", "list_extractors"),
    "create_model": ("affectfuse.models", "create_model"),
    "list_models": ("affectfuse.models", "list_models"),
    "TaskSpec": ("affectfuse.tasks.spec", "TaskSpec"),
    "get_task": ("affectfuse.tasks.spec", "get_task"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'affectfuse' has no attribute {name!r}")


__all__ = [
    # the command line's entry points
    "extract",
    "ExtractConfig",
    "train",
    "TrainConfig",
    "evaluate",
    "predict",
    "load_run",
    "FeatureStore",
    # registries
    "create_extractor",
    "list_extractors",
    "create_model",
    "list_models",
    "TaskSpec",
    "get_task",
    # the typed objects that cross module boundaries
    "AudioFragments",
    "Batch",
    "Clip",
    "FeatureSet",
    "FrameBatch",
    "ModelOutput",
    "Prediction",
    "VideoInfo",
]
