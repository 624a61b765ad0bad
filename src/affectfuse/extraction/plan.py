"""The plan of a run: which extractors (as streams with their store keys) and which inputs they need.

A :class:`Stream` is one extractor as this run uses it: the extractor object, the modality it feeds (a named
set such as ``viper-offline`` may give it another one than its default), the keywords it was created with and
the identity of the sampling that makes its input. Its store key is the extractor's name plus a hash of its
parameters *and* of that sampling (frames, level, face detector, margin, no-face policy, fragment rule), so
features made differently never share a key.

A :class:`Plan` is what the workers need to prepare one video: the :class:`~affectfuse.io.sampling.SamplingSpec`,
the face settings, and which crops / frames / clips / fragments the extractors consume. It holds no model, so
it is cheap to send to worker processes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from affectfuse._registry import EXTRACTORS

from affectfuse.extraction.config import ExtractConfig, expand_extractors
from affectfuse.extractors.base import Extractor, create_extractor
from affectfuse.io.faces import create_face_detector
from affectfuse.io.sampling import SamplingSpec
from affectfuse.io.video import DECODING
from affectfuse.types import feature_key

__all__ = ["Stream", "Plan", "make_streams", "make_plan", "sampling_identity"]


def _detector_config(name: str) -> dict[str, Any]:
    """The resolved configuration of a face detector (real name + parameters), without loading its model:
    features made with "default" get a new key if the default ever changes."""
    return dict(create_face_detector(name).config)


def aligned(ex: Extractor, cfg: ExtractConfig) -> bool:
    """Whether the extractor gets face crops aligned by their key points (``cfg.face_align``, its contract)."""
    c = ex.contract
    return c.kind == "face" and (cfg.face_align == "similarity" or (cfg.face_align == "auto" and c.align))


def sampling_identity(ex: Extractor, cfg: ExtractConfig) -> dict[str, Any]:
    """What the sampling of an extractor's input depends on (part of its store key)."""
    c = ex.contract
    s: dict[str, Any] = {"level": cfg.level}
    if cfg.level == "clip":
        s["frames"] = cfg.frames
    else:
        s["frame_fps" if cfg.frame_fps else "frame_step"] = cfg.frame_fps or cfg.frame_step
    if c.kind in ("face", "clip"):
        s["faces"] = {"detector": cfg.face_detector, "detector_config": _detector_config(cfg.face_detector),
                      "select": cfg.face_select, "margin": cfg.face_margin, "no_face": cfg.no_face,
                      "max_side": cfg.max_side}
        if aligned(ex, cfg):  # recorded only when aligned, so that the keys of box crops stay valid
            s["faces"]["align"] = "similarity_4pt_arcface_template"
    elif c.kind == "frame":
        s["max_side"] = cfg.max_side
    if c.kind == "audio_fragment":
        if cfg.level == "clip":
            s["audio"] = "viper_centred_fragments" if cfg.fragments == "paper" else "viper_code_overlapping_windows"
        else:
            s["audio"] = {"centred_window_s": cfg.audio_window}
    if cfg.span != "decodable":  # recorded only when not the default, so that older keys stay valid
        s["span"] = cfg.span
    return s


@dataclass(frozen=True)
class Stream:
    """One extractor as a run uses it.

    Attributes:
        extractor: the extractor.
        modality: the stream it feeds in this run.
        create_kwargs: the keywords it was created with (recorded so that ``predict`` can re-create it).
        sampling: :func:`sampling_identity` of its input.
    """

    extractor: Extractor
    modality: str
    create_kwargs: dict[str, Any]
    sampling: dict[str, Any]
    aligned: bool = False

    @property
    def image_request(self) -> tuple[str, int]:
        """``(kind, size)`` of the images it consumes: ``face`` / ``face_aligned`` crops or ``frame``s."""
        c = self.extractor.contract
        return ("face_aligned" if self.aligned else c.kind), c.image_size

    @property
    def name(self) -> str:
        return self.extractor.name

    @property
    def kind(self) -> str:
        return self.extractor.contract.kind

    @property
    def params(self) -> dict[str, Any]:
        return {**self.extractor.params, "sampling": self.sampling}

    @property
    def key(self) -> str:
        return feature_key(self.name, self.params)

    def identity(self) -> dict[str, Any]:
        """What the store records under :attr:`key`."""
        return {**self.extractor.identity(), "modality": self.modality, "params": self.params, "key": self.key,
                "create_kwargs": self.create_kwargs, "sampling": self.sampling, "decoding": dict(DECODING)}


def resolve_device(device: str) -> str:
    """``"auto"`` → ``"cuda"`` where a GPU is present, else ``"cpu"``; other names as given."""
    if device != "auto":
        return device
    import torch  # heavy: asked only when the device is resolved

    return "cuda" if torch.cuda.is_available() else "cpu"


def make_streams(cfg: ExtractConfig, extractors: list[Extractor] | None = None) -> list[Stream]:
    """The run's streams: ``cfg.extractors`` created by name (sets expanded), with ``cfg.device`` / ``cfg.backend``
    for the extractors that take them (unless their parameters name one), or the given extractor objects.

    Raises:
        KeyError / TypeError / ValueError: an unknown extractor, parameter or value (before any video is read).
    """
    if extractors is not None:
        made = [(ex, ex.modality, cfg.extractor_params.get(ex.name, {})) for ex in extractors]
    else:
        runtime = {"device": resolve_device(cfg.device), "backend": cfg.backend}
        made = []
        for name, params, modality in expand_extractors(cfg.extractors, cfg.extractor_params):
            accepted = {f.name for f in dataclasses.fields(EXTRACTORS.get(name).Config)}
            given = {k: v for k, v in runtime.items() if k in accepted and k not in params}
            made.append((create_extractor(name, **params, **given), modality, params))
    return [Stream(ex, modality or ex.modality, dict(kw), sampling_identity(ex, cfg), aligned(ex, cfg))
            for ex, modality, kw in made]


@dataclass(frozen=True)
class Plan:
    """What preparing one video takes (sent to the workers).

    Attributes:
        sampling: frames and audio to take.
        face_detector: registered detector name.
        face_select: ``"largest"`` or ``"score"``.
        face_margin: crop margin, fraction of the box side.
        no_face: policy for rows without a face.
        image_requests: ``(kind, size)`` pairs, kind ``"face"`` (crops), ``"face_aligned"`` (crops aligned by the
            key points) or ``"frame"`` (letterboxed frames).
        clip_requests: ``(size, clip_len, clip_stride, clip_anchor)`` for clip extractors (face crops of the frames around
            each row).
    """

    sampling: SamplingSpec
    face_detector: str
    face_select: str
    face_margin: float
    no_face: str
    image_requests: tuple[tuple[str, int], ...]
    clip_requests: tuple[tuple[int, int, int, str], ...]

    @property
    def needs_faces(self) -> bool:
        return any(k.startswith("face") for k, _ in self.image_requests) or bool(self.clip_requests)


def make_plan(streams: list[Stream], cfg: ExtractConfig) -> Plan:
    """The inputs the streams consume, and the sampling that gives them."""
    images, clips, rates = set(), set(), set()
    for s in streams:
        c = s.extractor.contract
        if c.kind in ("face", "frame"):
            images.add(s.image_request)
        elif c.kind == "clip":
            clips.add((c.image_size, c.clip_len, c.clip_stride, c.clip_anchor))
        elif c.kind == "audio_fragment":
            rates.add(c.sample_rate)
        else:
            raise ValueError(f"extractor {s.name!r}: unknown input kind {c.kind!r}")
    spec = SamplingSpec(level=cfg.level, frames=cfg.frames, frame_step=cfg.frame_step, frame_fps=cfg.frame_fps,
                        window=cfg.window, pixels=bool(images or clips), max_side=cfg.max_side,
                        context=tuple(sorted({(length, stride, anchor) for _, length, stride, anchor in clips})),
                        sample_rates=tuple(sorted(rates)), audio_window=cfg.audio_window, span=cfg.span,
                        fragments=cfg.fragments).validate()
    return Plan(spec, cfg.face_detector, cfg.face_select, cfg.face_margin, cfg.no_face, tuple(sorted(images)),
                tuple(sorted(clips)))
