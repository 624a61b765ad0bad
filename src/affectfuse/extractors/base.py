"""The extractor contract: a frozen config, a self-description, and ``(values, valid)`` for each batch.

An extractor is created by name, ``create_extractor("vit_cls", model="google/vit-base-patch16-224-in21k")``;
the keyword arguments are the fields of its config class (``VitConfig``, ...), a frozen keyword-only
dataclass with ``validate()``. An unknown keyword is a ``TypeError`` that names the accepted ones.

An extractor declares

* ``name`` — its registered name;
* ``config`` — its parameters; :meth:`ExtractorConfig.identity` (the fields that change the output:
  ``batch_size`` or ``device`` do not) is ``params``, and ``name`` + ``params`` (+ the sampling of its input,
  added by the extraction) is the store key (:func:`affectfuse.types.feature_key`), so a changed parameter
  never reuses stale features;
* ``modality`` — the stream it feeds by default (``"visual"``, ``"audio"``, ``"text"``, ``"fau"``);
* ``dim`` and ``columns`` — the width of its output rows and a name per column (the seven face-api
  classes, the 24 face-mesh measures, ``<name>_<i>`` for embeddings), recorded in the store's identity;
* ``contract`` — what input it needs (:class:`InputContract`): face crops or full frames at an image size,
  short frame clips, or audio fragments at a sample rate.

Calling an extractor on an :class:`ExtractorInput` returns :class:`Features`, the values ``(N, dim)`` and
a valid mask ``(N,)``: a row is valid when its input row was valid and the extractor could compute it (a
face mesh that finds no face marks its row invalid). Nothing is written onto an extractor from outside; the
extraction keeps what it needs (the stream's modality in a named set, the creation keywords) beside it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np

from affectfuse._config import make_config, to_dict
from affectfuse._registry import EXTRACTORS
from affectfuse.types import feature_key

__all__ = [
    "InputContract",
    "ExtractorInput",
    "ExtractorConfig",
    "Features",
    "Extractor",
    "runtime",
    "register_extractor",
    "create_extractor",
    "list_extractors",
]

InputKind = Literal["face", "frame", "clip", "audio_fragment"]


@dataclass(frozen=True)
class InputContract:
    """What an extractor consumes.

    Attributes:
        kind: ``"face"`` — face crops ``(N, S, S, 3)`` uint8 RGB at ``image_size`` (rows without a face
            follow the extraction's no-face policy); ``"frame"`` — whole frames resized to ``image_size``
            (aspect kept, padded); ``"clip"`` — ``clip_len`` frames ``clip_stride`` apart around (or ending at) each sampled frame,
            ``(N, clip_len, S, S, 3)``; ``"audio_fragment"`` — the :class:`~affectfuse.types.AudioFragments`
            of the sampled frames, mono float32 at ``sample_rate``.
        image_size: square side in pixels for image kinds.
        sample_rate: Hz for audio kinds.
        clip_len: frames per clip for ``"clip"``.
        clip_stride: frame step inside a clip for ``"clip"``.
        clip_anchor: where a ``"clip"`` sits relative to its row's frame: ``"centre"`` (the frames around it) or
            ``"end"`` (the clip ends at it, looking back only: JMT's sub-clips end at their labelled frame).
        mean: per-channel mean the extractor normalises with (informative; applied by the extractor).
        std: per-channel std (informative).
        align: ``"face"`` crops aligned by the face's key points (a similarity transform to a canonical template:
            :func:`affectfuse.io.faces.crop_faces`), for backbones trained on aligned faces; the extraction's
            ``face_align`` decides in the end.
    """

    kind: InputKind
    image_size: int = 224
    sample_rate: int = 16000
    clip_len: int = 8
    clip_stride: int = 4
    clip_anchor: str = "centre"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    align: bool = False


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


class Features(NamedTuple):
    """What an extractor returns for a batch.

    Attributes:
        values: ``(N, dim)`` float32; rows with ``valid == False`` hold zeros, not data.
        valid: ``(N,)`` bool.
    """

    values: np.ndarray
    valid: np.ndarray


def runtime(default: Any) -> Any:
    """A config field that does not change the output (batch size, device): left out of the identity."""
    return dataclasses.field(default=default, metadata={"identity": False})


@dataclass(frozen=True, kw_only=True)
class ExtractorConfig:
    """Base of every extractor's config: its fields are the extractor's keyword parameters.

    Subclasses add fields (in the order the error messages list them), check them in :meth:`validate` and
    mark fields that do not change the output with :func:`runtime`. :meth:`identity` — the other fields —
    is what the store key hashes; a config whose identity needs more than its fields (the fingerprint of a
    weights file, a seed that matters only without weights) overrides it.
    """

    def validate(self) -> "ExtractorConfig":
        return self

    def identity(self) -> dict[str, Any]:
        """The fields that decide the output, in declaration order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("identity", True)}


def _config_for(cls: type["Extractor"], config: ExtractorConfig | None, overrides: dict[str, Any]) -> ExtractorConfig:
    names = [f.name for f in dataclasses.fields(cls.Config)]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise TypeError(f"extractor {cls.name!r} got unknown parameter(s) {', '.join(map(repr, unknown))}; "
                        f"accepted: {', '.join(names)}")
    if config is not None and not isinstance(config, cls.Config):
        raise TypeError(f"extractor {cls.name!r}: expected a {cls.Config.__name__}, got {type(config).__name__}")
    return make_config(cls.Config, overrides, base=config)


#: ``Extractor.weights_from`` → whether it works offline with its defaults, and how to get its weights
WEIGHTS_FROM: dict[str, tuple[bool, str]] = {
    "none": (True, "no weights"),
    "package": (True, "shipped by a registry package"),
    "hub": (False, "hub id or local folder (--set NAME.model=...)"),
    "download": (False, "downloaded on first use (or --set NAME.weights=FILE)"),
    "checkpoint": (False, "your checkpoint (--set NAME.weights=FILE); random init without"),
    "fetch": (False, "a published model: affectfuse fetch-models (licence in its identity)"),
}


class Extractor:
    """Base class. A subclass sets ``name``, ``modality`` and ``Config``, then in ``__init__`` calls
    ``super().__init__(config, **overrides)`` and sets ``self.dim`` and ``self.contract`` from
    ``self.config``; it implements :meth:`_load` (heavy models, loaded lazily so that creating an extractor
    to read its key is cheap) and :meth:`forward`, and overrides :attr:`columns` when its columns have names.
    """

    name: ClassVar[str] = "base"
    modality: ClassVar[str] = "visual"
    #: where its default weights come from (:data:`WEIGHTS_FROM`): ``"none"`` (no weights), ``"package"`` (a
    #: registry package ships them: works offline), ``"hub"`` (a hub id or a local folder), ``"download"`` (a
    #: URL on first use), ``"fetch"`` (``affectfuse fetch-models``) or ``"checkpoint"`` (the user's file; random init without one, for tests only)
    weights_from: ClassVar[str] = "none"
    Config: ClassVar[type[ExtractorConfig]] = ExtractorConfig

    def __init__(self, config: ExtractorConfig | None = None, /, **overrides: Any) -> None:
        self.config = _config_for(type(self), config, overrides)
        self.dim: int = 0
        self.contract: InputContract = InputContract(kind="face")
        self._loaded = False

    # -- identity -----------------------------------------------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        """The parameters that decide the output (``config.identity()``)."""
        return self.config.identity()

    @property
    def key(self) -> str:
        return feature_key(self.name, self.params)

    @property
    def columns(self) -> list[str]:
        """A name per output column (``<name>_<i>`` unless the subclass names them)."""
        return [f"{self.name}_{i}" for i in range(self.dim)]

    def identity(self) -> dict[str, Any]:
        """Everything that decides this extractor's output, recorded next to the features."""
        return {
            "name": self.name,
            "key": self.key,
            "modality": self.modality,
            "dim": self.dim,
            "params": self.params,
            "config": to_dict(self.config),
            "columns": list(self.columns),
            "contract": dataclasses.asdict(self.contract),
        }

    # -- running ------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> "Extractor":
        """Load the weights now (otherwise done before the first batch); idempotent. Returns self."""
        if not self._loaded:
            self._load()
            self._loaded = True
        return self

    def _load(self) -> None:
        """Build the model. Override in subclasses."""

    def forward(self, batch: ExtractorInput) -> "np.ndarray | Features | tuple[np.ndarray, np.ndarray]":
        """Features for every row of ``batch``: the values, or the values and the rows computed.

        Shape:
            returns ``(N, dim)`` (and optionally ``(N,)`` bool) with N = len(batch).
        """
        raise NotImplementedError

    def __call__(self, batch: ExtractorInput) -> Features:
        """Values ``(N, dim)`` float32 and valid ``(N,)`` bool for a batch (``valid`` = the input's valid
        rows that the extractor could compute; invalid rows are zeros)."""
        n = len(batch)
        given = np.ones(n, bool) if batch.valid is None else np.asarray(batch.valid, bool)
        if given.shape != (n,):
            field = next((f for f in ("images", "clips", "audio") if getattr(batch, f) is not None), "inputs")
            has = f"{len(given)} rows" if given.ndim == 1 else f"shape {given.shape}"
            raise ValueError(f"extractor {self.name!r}: valid has {has}, {field} have {n}")
        if n == 0:
            return Features(np.zeros((0, self.dim), np.float32), np.zeros(0, bool))
        self.load()
        out = self.forward(batch)
        values, ok = (out if isinstance(out, tuple) else (out, None))
        values = np.asarray(values, dtype=np.float32)
        if values.shape != (n, self.dim):
            raise RuntimeError(f"extractor {self.name!r} returned {values.shape}, expected ({n}, {self.dim})")
        valid = given if ok is None else given & np.asarray(ok, bool)
        if not valid.all():
            values = np.where(valid[:, None], values, np.float32(0.0))
        return Features(values, valid)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, modality={self.modality!r}, dim={self.dim})"


def register_extractor(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator: register an extractor class under its ``name``."""
    EXTRACTORS.register(cls.name)(cls)
    return cls


def create_extractor(name: str, /, **params: Any) -> Extractor:
    """Create a registered extractor by name; ``params`` are fields of its config.

    Raises:
        KeyError: unknown name (the message lists the registered ones).
        TypeError: an unknown parameter (the message lists the accepted ones).
    """
    import affectfuse.extractors  # noqa: F401  (registers the built-ins; the package imports this module)

    return EXTRACTORS.get(name)(**params)


def list_extractors(pattern: str = "*") -> list[str]:
    import affectfuse.extractors  # noqa: F401  (as above)

    return EXTRACTORS.names(pattern)
