"""Hugging Face checkpoints of the extractors (``vit_cls``, ``hf_speech``, ``wavlm_xvector``, captions).

A checkpoint is named by a hub id (read from the local Hugging Face cache: with ``HF_HUB_OFFLINE=1``
nothing is downloaded) or by a local folder written by ``save_pretrained``. Extractors describe
themselves (width, image size, ...) from the checkpoint's ``config.json`` without loading weights, so
these helpers read single files; ``transformers`` itself is imported only by :func:`from_pretrained`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["hub_file", "read_hf_config", "from_pretrained"]


def hub_file(model: str, filename: str) -> Path | None:
    """``filename`` of ``model`` (a folder, or a hub id in the local HF cache), or None when absent."""
    d = Path(model).expanduser()
    if d.is_dir():
        p = d / filename
        return p if p.is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache  # heavy-ish, only for hub ids

        hit = try_to_load_from_cache(model, filename)
    except Exception:  # noqa: BLE001  (not a valid repo id: no cached file)
        return None
    return Path(hit) if isinstance(hit, str) else None


def read_hf_config(model: str) -> dict[str, Any] | None:
    """The ``config.json`` of a local checkpoint folder or of a hub id already in the HF cache.

    Returns:
        the parsed config, or None for a hub id that is not cached.

    Raises:
        FileNotFoundError: ``model`` is a folder without ``config.json``, or a file.
    """
    p = Path(model).expanduser()
    if p.is_file():
        raise FileNotFoundError(f"{p}: expected a transformers checkpoint folder or a hub id, got a file")
    f = hub_file(model, "config.json")
    if f is None and p.is_dir():
        raise FileNotFoundError(
            f"{p}: no config.json; expected a transformers checkpoint folder written by save_pretrained "
            "(config.json + model.safetensors)"
        )
    return None if f is None else json.loads(f.read_text())


def from_pretrained(loader: Any, model: str, *, who: str, what: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained(model, **kwargs)`` with an error that says how to make it work offline.

    Raises:
        OSError: the checkpoint cannot be loaded (not a folder, not cached, incomplete).
    """
    try:
        return loader.from_pretrained(model, **kwargs)
    except OSError as e:
        raise OSError(
            f"{who}: cannot load {what} {model!r}: {e}. Pass a local directory that holds it (save_pretrained "
            "format); with HF_HUB_OFFLINE=1 hub ids only work when already in the Hugging Face cache."
        ) from None
