"""EmotiEffLib / HSEmotion facial expression (+ valence / arousal) from the published ONNX graphs.

The models (A. Savchenko, Apache-2.0; ``affectfuse fetch-models hsemotion-enet_b0_8_va_mtl``) are EfficientNets
trained on AffectNet and exported to ONNX with one input ``input`` ``(B, 3, S, S)`` and one output ``output``
``(B, K)``: K = 8 expression logits, or 7 for the ``*_7`` models, followed for the multi-task ``*_mtl`` model by
valence and arousal (the last two values, in that order; they are regression outputs and pass through as they
are). The class order is EmotiEffLib's ``idx_to_emotion_class``: Anger, Contempt, Disgust, Fear, Happiness,
Neutral, Sadness, Surprise (7 classes: without Contempt).

Preprocessing, as ``EmotiEffLibRecognizerOnnx._preprocess``: the RGB face crop resized to S×S with OpenCV's
bilinear ``cv2.resize`` (S = 224 for the B0 models, 260 for B2), divided by 255, minus the ImageNet mean
(0.485, 0.456, 0.406) over the std (0.229, 0.224, 0.225), channels first, float32. Probabilities are the softmax
of the expression logits (EmotiEffLib's ``logits=False``).

The graph is run as it is on ONNX Runtime (``affectfuse[onnx]``); nothing is re-exported or unpickled.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from affectfuse.extractors._catalogue import (
    CATALOGUE,
    announce_licence,
    check_sha256,
    download_url,
    is_url,
    missing_model_error,
    model_dir,
    models_dir,
    verify_fetched,
)
from affectfuse.extractors._torch_utils import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CheckedConfig,
    check_choice,
    config_error,
    file_fingerprint,
    on_valid_rows,
    require_images,
)
from affectfuse.extractors.base import Extractor, ExtractorInput, InputContract, register_extractor, runtime

__all__ = ["HSE_EXPRESSIONS_8", "HSE_EXPRESSIONS_7", "HSEmotion", "HSEmotionConfig", "hsemotion_preprocess",
           "resolve_onnx"]

#: EmotiEffLib's class order of the 8-class models (``idx_to_emotion_class``), lower-cased.
HSE_EXPRESSIONS_8: tuple[str, ...] = ("anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness",
                                      "surprise")
#: the 7-class models (``*_7``): the same without contempt.
HSE_EXPRESSIONS_7: tuple[str, ...] = tuple(c for c in HSE_EXPRESSIONS_8 if c != "contempt")
_OUTPUTS = ("probs", "logits")
_UNKNOWN_LICENCE = "unknown (a file given by path or URL: check its publisher's terms)"


def _defaults_from_name(stem: str) -> tuple[int, bool, int]:
    """EmotiEffLib's conventions from a model name: ``(classes, valence/arousal, image size)``."""
    return (7 if "_7" in stem else 8), "_mtl" in stem, (260 if "_b2_" in stem else 224)


def hsemotion_preprocess(images: np.ndarray | list[np.ndarray], size: int) -> np.ndarray:
    """RGB uint8 face crops → the network input, as EmotiEffLib's ONNX recogniser prepares it.

    Args:
        images: ``(N, H, W, 3)`` uint8 RGB, or a list of ``(H_i, W_i, 3)`` crops.
        size: the model's side (224 or 260).

    Shape:
        returns ``(N, 3, size, size)`` float32.
    """
    import cv2  # core dependency (opencv-python-headless); imported where used

    mean = np.asarray(IMAGENET_MEAN, np.float64)
    std = np.asarray(IMAGENET_STD, np.float64)
    out = np.zeros((len(images), 3, size, size), np.float32)
    for i, img in enumerate(images):
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"hsemotion expects uint8 RGB images (H, W, 3), got {img.shape} {img.dtype}")
        x = cv2.resize(img, (size, size)) / 255.0  # (S, S, 3) float64; INTER_LINEAR, as EmotiEffLib
        out[i] = ((x - mean) / std).transpose(2, 0, 1)
    return out


def resolve_onnx(model: str, sha256: str | None, *, who: str) -> tuple[Path, str | None]:
    """The local file of ``model`` (a catalogue name, an ``https://`` URL or a path) and its catalogue name.

    A catalogue model must have been fetched; a URL (its ``sha256`` is required) is downloaded into
    ``$AFFECTFUSE_CACHE/models/url/`` on first use and checked (unless ``AFFECTFUSE_NO_AUTOFETCH`` is set).

    Raises:
        FileNotFoundError: not fetched / no such file (the message says how to get it).
        ModelFetchError: a download failed or a hash does not match.
    """
    if model in CATALOGUE:
        p = model_dir(model) / CATALOGUE[model].files[0]
        if not p.is_file():
            raise missing_model_error(model)
        return p, model
    if is_url(model):
        assert sha256 is not None  # the config refuses a URL without one
        p = models_dir() / "url" / sha256[:16] / (Path(model.split("?")[0]).name or "model.onnx")
        if not p.is_file():
            if os.environ.get("AFFECTFUSE_NO_AUTOFETCH") is not None:
                raise FileNotFoundError(f"{who}: {model} is not in {p.parent} and AFFECTFUSE_NO_AUTOFETCH is set")
            download_url(model, p, sha256=sha256)
        return p, None
    p = Path(model)
    if not p.is_file():
        raise _no_file(p, who)
    return p, None


def _no_file(p: Path, who: str) -> FileNotFoundError:
    return FileNotFoundError(f"{who}: {p}: no such ONNX file; expected a catalogue name "
                             f"({', '.join(n for n in CATALOGUE if CATALOGUE[n].extractor == 'hsemotion')}), "
                             "an https:// URL with sha256=..., or a local .onnx file")


@dataclass(frozen=True, kw_only=True)
class HSEmotionConfig(CheckedConfig):
    """Parameters of :class:`HSEmotion`.

    Attributes:
        model: a catalogue name (``hsemotion-enet_b0_8_va_mtl`` default; ``affectfuse fetch-models --list``), an
            ``https://`` URL of an ``.onnx`` file (``sha256`` required) or a local ``.onnx`` file (stored absolute).
        sha256: the SHA-256 the file must have (required for a URL; checked at load for a local file too).
        classes: expression classes, 8 or 7 (default from the name, as EmotiEffLib: ``_7`` → 7).
        va: whether the graph's last two outputs are valence and arousal (default: ``_mtl`` in the name).
        image_size: the graph's input side (default from the name: ``_b2_`` → 260, else 224).
        output: ``"probs"`` (softmax over the expressions, default) or ``"logits"``; valence / arousal are
            passed through either way.
        batch_size: faces per ONNX Runtime call (not in the identity).
    """

    model: str = "hsemotion-enet_b0_8_va_mtl"
    sha256: str | None = None
    classes: int | None = None
    va: bool | None = None
    image_size: int | None = None
    output: str = "probs"
    batch_size: int = runtime(32)

    def __post_init__(self) -> None:
        super().__post_init__()
        m = self.model
        if m not in CATALOGUE and not is_url(m):
            object.__setattr__(self, "model", str(Path(m).expanduser().resolve()))
        if self.sha256 is not None:
            object.__setattr__(self, "sha256", self.sha256.lower())
        classes, va, size = _defaults_from_name(self.file_name)
        for name, v in (("classes", classes), ("va", va), ("image_size", size)):
            if getattr(self, name) is None:
                object.__setattr__(self, name, v)

    @property
    def file_name(self) -> str:
        if self.model in CATALOGUE:
            return CATALOGUE[self.model].files[0]
        return Path(self.model.split("?")[0]).name

    @property
    def catalogue_entry(self):
        """The catalogue entry of the model, also for a local copy or URL of a published file (by file name)."""
        if self.model in CATALOGUE:
            return CATALOGUE[self.model]
        return next((m for m in CATALOGUE.values() if m.extractor == "hsemotion" and m.files[0] == self.file_name),
                    None)

    @property
    def licence(self) -> str:
        entry = self.catalogue_entry
        return entry.licence if entry is not None else _UNKNOWN_LICENCE

    @functools.cached_property
    def fingerprint(self) -> str | None:
        """:func:`file_fingerprint` of a local file (None for catalogue names and URLs, which the hash pins)."""
        if self.model in CATALOGUE or is_url(self.model):
            return None
        if not Path(self.model).is_file():
            raise _no_file(Path(self.model), "hsemotion")
        return file_fingerprint(self.model)

    def validate(self) -> "HSEmotionConfig":
        check_choice(self, "output", _OUTPUTS)
        check_choice(self, "classes", (7, 8))
        if not self.image_size > 0:
            raise config_error(self, "image_size", "> 0", self.image_size)
        if self.batch_size <= 0:
            raise config_error(self, "batch_size", "a positive int", self.batch_size)
        if self.sha256 is not None and (len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256)):
            raise config_error(self, "sha256", "64 hex digits", self.sha256)
        if is_url(self.model) and self.sha256 is None:
            raise config_error(self, "sha256", f"the SHA-256 of {self.model} (a URL is fetched only with a pinned "
                               "hash)", None)
        _ = self.fingerprint  # a missing local file fails now, not at the first batch
        return self

    def identity(self) -> dict[str, Any]:
        # the key names a catalogue model by its name (its pin, checked at load, is recorded beside the key by
        # HSEmotion.identity: pinning it later must not move the features already stored); a URL or a local copy
        # by its own sha256= or fingerprint, whatever its file is called
        weights: dict[str, Any] = {"file": self.file_name, "sha256": self.sha256, "licence": self.licence}
        if self.fingerprint is not None:
            weights["fingerprint"] = self.fingerprint
        return {**super().identity(), "weights": weights}


class _NamedOnnx:
    """An ONNX Runtime session of a graph with one named input and its first output."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort  # optional extra: affectfuse[onnx]
        import torch  # only to match its thread setting, as the other extractors' sessions

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.output = self.session.get_outputs()[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output.name], {self.input.name: np.ascontiguousarray(x, np.float32)})[0]


@register_extractor
class HSEmotion(Extractor):
    """EmotiEffLib / HSEmotion expression probabilities (+ valence, arousal) per face crop, from ONNX.

    Parameters: :class:`HSEmotionConfig`. Columns: ``hse_<class>`` in EmotiEffLib's order, then ``hse_valence``,
    ``hse_arousal`` for the multi-task model. Input: face crops ``(N, S, S, 3)`` uint8 RGB (other sizes are
    resized as EmotiEffLib does). Rows with ``valid == False`` are not computed.

    Shape:
        output ``(N, classes + 2 * va)`` float32.
    """

    name = "hsemotion"
    weights_from = "fetch"
    modality = "fau"
    Config = HSEmotionConfig

    def __init__(self, config: HSEmotionConfig | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.dim = c.classes + (2 if c.va else 0)
        self.contract = InputContract(kind="face", image_size=c.image_size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        self.session: _NamedOnnx | None = None
        self.path: Path | None = None

    @property
    def columns(self) -> list[str]:
        names = HSE_EXPRESSIONS_8 if self.config.classes == 8 else HSE_EXPRESSIONS_7
        return [f"hse_{c}" for c in names] + (["hse_valence", "hse_arousal"] if self.config.va else [])

    def identity(self) -> dict[str, Any]:
        ident = {**super().identity(), "licence": self.config.licence}
        entry = CATALOGUE.get(self.config.model)
        if entry is not None:  # the weights a catalogue name stands for: refused at load unless they match
            f = entry.files[0]
            ident["catalogue_weights"] = {"file": f, "sha256": entry.pinned(f),
                                          "pin_source": entry.pin_source_of(f) or None}
        return ident

    def _load(self) -> None:
        try:
            import onnxruntime  # noqa: F401  (optional extra)
        except ImportError:
            raise ImportError('extractor "hsemotion" runs the published ONNX graph on ONNX Runtime: '
                              'pip install "affectfuse[onnx]"') from None
        c = self.config
        path, name = resolve_onnx(c.model, c.sha256, who=self.name)
        if name is not None:
            verify_fetched(name, path.name, path)
        if c.sha256 is not None:
            check_sha256(path, c.sha256, f"extractor {self.name!r}")
        session = _NamedOnnx(path)
        shape = list(session.input.shape)
        if len(shape) != 4 or shape[1] not in (3, "3") or any(isinstance(s, int) and s != c.image_size
                                                               for s in shape[2:]):
            raise ValueError(f"{path}: the graph's input {session.input.name!r} is {shape}, expected "
                             f"(batch, 3, {c.image_size}, {c.image_size}); set image_size= to the graph's side")
        width = session.output.shape[-1] if session.output.shape else None
        if isinstance(width, int) and width != self.dim:
            raise ValueError(f"{path}: the graph outputs {width} values per face, expected {self.dim} "
                             f"({c.classes} expressions{' + valence + arousal' if c.va else ''}); set classes= / va=")
        announce_licence(f"hsemotion model {c.model}", c.licence)
        self.session, self.path = session, path

    def predict(self, images: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """Expression probabilities (or logits) and valence / arousal for RGB uint8 face crops of any size.

        Shape:
            images ``(N, H, W, 3)``; returns ``(N, dim)`` float32.
        """
        self.load()
        c = self.config
        out = np.zeros((len(images), self.dim), np.float32)
        for i in range(0, len(images), c.batch_size):
            x = hsemotion_preprocess(images[i : i + c.batch_size], c.image_size)  # (B, 3, S, S)
            y = np.asarray(self.session(x), np.float32)  # (B, dim)
            if y.ndim != 2 or y.shape[1] != self.dim:
                raise RuntimeError(f"{self.path}: the graph returned {y.shape}, expected (B, {self.dim})")
            if c.output == "probs":
                z = y[:, : c.classes] - y[:, : c.classes].max(axis=1, keepdims=True)
                e = np.exp(z)
                y = y.copy()
                y[:, : c.classes] = e / e.sum(axis=1, keepdims=True)
            out[i : i + len(y)] = y
        return out

    def forward(self, batch: ExtractorInput) -> np.ndarray:
        """Shape: ``batch.images (N, S, S, 3)`` uint8 → ``(N, dim)`` float32 (zeros for invalid rows)."""
        images = require_images(batch, self.name, self.config.image_size)
        return on_valid_rows(batch, images, self.dim, self.predict)

