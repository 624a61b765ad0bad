"""Feature extractors, registered by name.

Every module of this package (and of its sub-packages ``visual``, ``audio``, ``text``, ``face``) is
imported here, so that its ``@register_extractor`` classes are known to :func:`create_extractor`.
Modules must keep heavy imports (torch, transformers, timm, mediapipe, ...) inside functions.
"""

from __future__ import annotations

import importlib
import pkgutil

from affectfuse.extractors.base import (
    Extractor,
    ExtractorConfig,
    ExtractorInput,
    Features,
    InputContract,
    create_extractor,
    list_extractors,
    register_extractor,
    runtime,
)


def _import_all() -> None:
    for sub in ("visual", "audio", "text", "face"):
        pkg = importlib.import_module(f"{__name__}.{sub}")
        for m in pkgutil.iter_modules(pkg.__path__):
            if not m.name.startswith("_"):
                importlib.import_module(f"{pkg.__name__}.{m.name}")


_import_all()

__all__ = [
    "Extractor",
    "ExtractorConfig",
    "ExtractorInput",
    "Features",
    "InputContract",
    "create_extractor",
    "list_extractors",
    "register_extractor",
    "runtime",
]
