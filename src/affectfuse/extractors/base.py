"""The extractor contract: extractors describe themselves and turn prepared inputs into features.

An extractor is created by name (``create_extractor("vit_cls", model="google/vit-base-patch16-224-in21k")``)
and declares

* ``name`` and ``params`` — together its identity and its key in the feature store
  (:func:`affectfuse.types.feature_key`), so a changed parameter never reuses stale features;
* ``modality`` — the stream it feeds (``"visual"``, ``"audio"``, ``"text"``, ``"fau"``);
* ``dim`` — the width of its output rows;
* ``contract`` — what input it needs (:class:`InputContract`): face crops or full frames at an image
  size, short frame clips, audio fragments at a sample rate, or the whole audio track.

The extraction pipeline prepares inputs of the declared kind for many videos, concatenates them and
calls :meth:`Extractor.__call__` once per batch, so backbones run batched across videos.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

from affectfuse._registry import EXTRACTORS
from affectfuse.types import feature_key

InputKind = Literal["face", "frame", "clip", "audio_fragment"]


@dataclass(frozen=True)
class InputContract:
    """What an extractor consumes.

    Attributes:
        kind: ``"face"`` — face crops ``(N, S, S, 3)`` uint8 RGB at ``image_size`` (rows without a face
            follow the pipeline's no-face policy); ``"frame"`` — whole frames resized to ``image_size``
            (aspect kept, padded); ``"clip"`` — ``clip_len`` consecutive frames around each sampled frame,
            ``(N, clip_len, S, S, 3)``; ``"audio_fragment"`` — the :class:`~affectfuse.types.AudioFragments`
            of the sampled frames, mono float32 at ``sample_rate``.
        image_size: square side in pixels for image kinds.
        sample_rate: Hz for audio kinds.
        clip_len: frames per clip for ``"clip"``.
        clip_stride: frame step inside a clip for ``"clip"``.
        mean: per-channel mean the extractor normalises with (informative; applied by the extractor).
        std: per-channel std (informative).
    """

    kind: InputKind
    image_size: int = 224
    sample_rate: int = 16000
    clip_len: int = 8
    clip_stride: int = 4
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()


@dataclass
class ExtractorInput:
    """A batch of prepared inputs for one extractor call (rows of several videos concatenated).

    Exactly one of the array fields is set, as the contract's ``kind`` says.

    Attributes:
        images: ``(N, S, S, 3)`` uint8 RGB for ``face`` / ``frame``.
        clips: ``(N, L, S, S, 3)`` uint8 RGB for ``clip``.
        audio: ``(N, L)`` float32 mono padded fragments for ``audio_fragment``.
        audio_lengths: ``(N,)`` int64 real samples per fragment row.
        valid: ``(N,)`` bool; rows with False need no meaningful output (their output is discarded).
    """

    images: np.ndarray | None = None
    clips: np.ndarray | None = None
    audio: np.ndarray | None = None
    audio_lengths: np.ndarray | None = None
    valid: np.ndarray | None = None

    def __len__(self) -> int:
        for a in (self.images, self.clips, self.audio):
            if a is not None:
                return len(a)
        return 0


class Extractor:
    """Base class. Subclasses set the class attributes and implement :meth:`forward`.

    Subclass checklist: set ``name`` (registered name), ``modality``; in ``__init__`` call
    ``super().__init__(params)``, set ``self.dim`` and ``self.contract``; implement ``forward``.
    Heavy models load lazily in :meth:`load` so that creating an extractor to read its key is cheap.
    """

    name: ClassVar[str] = "base"
    modality: ClassVar[str] = "visual"

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        self.params: dict[str, Any] = dict(params or {})
        self.dim: int = 0
        self.contract: InputContract = InputContract(kind="face")
        self._loaded = False

    # -- identity -----------------------------------------------------------------------------
    @property
    def key(self) -> str:
        return feature_key(self.name, self.params)

    def identity(self) -> dict[str, Any]:
        """Everything that decides this extractor's output, recorded next to the features."""
        return {
            "name": self.name,
            "key": self.key,
            "modality": self.modality,
            "dim": self.dim,
            "params": self.params,
            "contract": self.contract.__dict__,
        }

    # -- running ------------------------------------------------------------------------------
    def load(self) -> None:
        """Load weights (called once, before the first batch). Override in subclasses."""

    def forward(self, batch: ExtractorInput) -> np.ndarray:
        """Features for every row of ``batch``.

        Shape:
            returns ``(N, dim)`` float32 with N = len(batch).
        """
        raise NotImplementedError

    def __call__(self, batch: ExtractorInput) -> np.ndarray:
        if not self._loaded:
            self.load()
            self._loaded = True
        if len(batch) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = np.asarray(self.forward(batch), dtype=np.float32)
        if out.shape != (len(batch), self.dim):
            raise RuntimeError(
                f"extractor {self.name!r} returned {out.shape}, expected ({len(batch)}, {self.dim})"
            )
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, modality={self.modality!r}, dim={self.dim})"


def register_extractor(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator: register an extractor class under its ``name``."""
    EXTRACTORS.register(cls.name)(cls)
    return cls


def create_extractor(name: str, **params: Any) -> Extractor:
    """Create a registered extractor by name. Unknown parameters raise ``TypeError``."""
    import affectfuse.extractors  # noqa: F401  (registers the built-ins)

    return EXTRACTORS.create(name, **params)


def list_extractors(pattern: str = "*") -> list[str]:
    import affectfuse.extractors  # noqa: F401

    return EXTRACTORS.names(pattern)


__all__ = [
    "InputContract",
    "ExtractorInput",
    "Extractor",
    "register_extractor",
    "create_extractor",
    "list_extractors",
]
