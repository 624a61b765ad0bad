"""Shared fixtures: generated media (PyAV) and real media from registry packages (``make assets``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("AFFECTFUSE_CACHE", str(ROOT / ".cache" / "affectfuse"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import affectfuse  # noqa: E402,F401  (prepares torchvision before transformers is imported)
from affectfuse.io.synthetic import write_video  # noqa: E402


@pytest.fixture
def make_video(tmp_path):
    """Factory: ``make_video(name="clip.mp4", **write_video_kwargs) -> (path, frame_times)``."""

    def _make(name: str = "clip.mp4", **kw):
        p = tmp_path / name
        times = write_video(p, **kw)
        return p, times

    return _make


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real smiling face (NASA, public domain), RGB (512, 512, 3), from scikit-image."""
    from skimage import data

    return data.astronaut()


def asset(group: str, name: str) -> Path:
    """A real media file from the asset cache; fails (not skips) with how to fetch it when missing."""
    from affectfuse.assets import asset_path

    return asset_path(group, name)


@pytest.fixture
def real_asset():
    return asset
