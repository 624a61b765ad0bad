"""affectfuse: multimodal emotion recognition from raw video.

From your own videos to features, fusion models (ViPER, Joint Multimodal Transformer, ABAW5-ERI,
end-to-end cross-modal), scores and submission files.

The public API (everything else is plumbing and may change)::

    import affectfuse as af
    store = af.FeatureStore("features/")
    fs = store.get("video_001", "vit_cls-1a2b3c4d")          # FeatureSet: values (T, D), times, valid
    ex = af.create_extractor("logmel_stats")
    model = af.create_model("viper", task="reaction", input_dims={"visual": 768})
"""

from __future__ import annotations

from affectfuse._compat import prepare_torchvision as _prepare_torchvision

_prepare_torchvision()  # before anything imports transformers / torchvision (see _compat)

from affectfuse.types import (  # noqa: E402
    AudioFragments,
    Batch,
    FeatureSet,
    FrameBatch,
    ModelOutput,
    Prediction,
    VideoInfo,
)

__version__ = "0.1.0"

_LAZY = {
    "FeatureStore": ("affectfuse.features.store", "FeatureStore"),
    "create_extractor": ("affectfuse.extractors.base", "create_extractor"),
    "list_extractors": ("affectfuse.extractors.base", "list_extractors"),
    "create_model": ("affectfuse.models", "create_model"),
    "list_models": ("affectfuse.models", "list_models"),
    "TaskSpec": ("affectfuse.tasks.spec", "TaskSpec"),
    "get_task": ("affectfuse.tasks.spec", "get_task"),
    "extract": ("affectfuse.extraction.run", "extract"),
    "ExtractConfig": ("affectfuse.extraction.config", "ExtractConfig"),
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
    "AudioFragments",
    "Batch",
    "FeatureSet",
    "FeatureStore",
    "FrameBatch",
    "ModelOutput",
    "Prediction",
    "TaskSpec",
    "VideoInfo",
    "create_extractor",
    "create_model",
    "extract",
    "ExtractConfig",
    "get_task",
    "list_extractors",
    "list_models",
]
