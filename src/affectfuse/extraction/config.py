"""What an extraction run does: :class:`ExtractConfig`, the named extractor sets, and the run's report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

__all__ = ["ExtractConfig", "ExtractReport", "expand_extractors", "DEFAULT_EXTRACTORS", "EXTRACTOR_SETS", "ENGINES"]

#: Where videos are prepared (``ExtractConfig.engine``).
ENGINES: tuple[str, ...] = ("local", "ray")

#: The offline default set: every one ships its weights in a registry package (see README).
DEFAULT_EXTRACTORS: tuple[str, ...] = ("mobilenetv2_imagenet", "faceapi_expression", "resemblyzer_ge2e")

#: Named sets of extractors usable wherever an extractor name is: name → [(extractor, params, modality)].
#: ``viper-offline`` is ViPER's four streams made only of weights that registry packages ship: the face crop's
#: face-api expression probabilities + 256-d face feature (visual), face-mesh geometry standing in for action units
#: (fau), the caption chosen from the expression probabilities and encoded with all-MiniLM-L6-v2 (text), and a GE2E
#: voice embedding of the audio fragment centred on each frame (audio).
EXTRACTOR_SETS: dict[str, list[tuple[str, dict[str, Any], str]]] = {
    "viper-offline": [
        ("faceapi_expression", {"output": "both"}, "visual"),
        ("facemesh_geometry", {}, "fau"),
        ("caption_offline", {}, "text"),
        ("resemblyzer_ge2e", {}, "audio"),
    ],
}


def expand_extractors(names: Iterable[str], params: dict[str, dict[str, Any]] | None = None
                      ) -> list[tuple[str, dict[str, Any], str | None]]:
    """Extractor names (and set names) → [(extractor name, creation parameters, modality or None)].

    Parameters given for an extractor by name override a set's defaults.

    Raises:
        ValueError: an extractor appears twice.
    """
    params = params or {}
    out: list[tuple[str, dict[str, Any], str | None]] = []
    for n in names:
        members = EXTRACTOR_SETS.get(n, [(n, {}, None)])
        for name, p, modality in members:
            if any(name == o[0] for o in out):
                raise ValueError(f"extractor {name!r} is named twice (directly or through a set such as {n!r})")
            out.append((name, {**p, **params.get(name, {})}, modality))
    return out


@dataclass(frozen=True, kw_only=True)
class ExtractConfig:
    """How videos are turned into features.

    Attributes:
        extractors: registered extractor names.
        extractor_params: per extractor name, keyword parameters (e.g. ``{"vit_cls": {"model": "dir/"}}``).
        level: ``"clip"`` (``frames`` rows per video, ViPER) or ``"frame"`` (every ``frame_step``-th frame, or
            ``frame_fps`` frames per second; Aff-Wild2 style).
        frames: rows per video at clip level.
        frame_step: frame-level step in frames.
        frame_fps: frame-level fixed rate (overrides ``frame_step``).
        window: frames per processing window at frame level (memory stays flat).
        audio_window: seconds of audio centred on each frame at frame level.
        sample_rate: audio sample rate for fragments (extractors may ask for another one).
        face_detector: registered face detector name.
        face_select: ``"largest"`` or ``"score"``.
        face_margin: crop margin, fraction of the box side.
        no_face: ``"mask"`` (row invalid), ``"full_frame"`` (ViPER's code) or ``"previous"`` (last crop).
        face_align: ``"auto"`` (face crops aligned by their key points for the extractors whose backbones were
            trained on aligned faces: ``InputContract.align``), ``"none"`` (box crops for all) or ``"similarity"``
            (aligned for all). Part of the store key of the streams it changes.
        max_side: frames are decoded downscaled so that their longer side is at most this.
        float16: store values as float16.
        workers: decoding / face processes; 0 decodes in the main process (no time limit then); None (default) =
            half the cores, at least 2 and at most 8, never more than the videos, and 0 when there is a single
            video to prepare (no process start-up for one short clip): :func:`~affectfuse.extraction.run.default_workers`.
        batch_rows: rows (frames / fragments) per backbone call, across videos.
        overwrite: recompute entries that already exist.
        span: what a truncated file is sampled over: ``"decodable"`` (what the data holds) or ``"declared"``
            (the container's duration; rows past the data are invalid). See :mod:`affectfuse.io.sampling`.
        fragments: clip-level audio: ``"paper"`` (ViPER §3.2: non-overlapping fragments centred on the frames) or
            ``"code"`` (ViPER's code: 50 % overlapping windows of ``2 L / (N + 1)``, the 0.74 s of the paper's §4);
            see :mod:`affectfuse.io.sampling`. A different rule is a different store key.
        device: where the backbones run: ``"auto"`` (the GPU where one is present), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"``; given to every extractor that has a ``device`` (``--set NAME.device=...`` still wins).
        backend: ``"auto"`` (ONNX Runtime for float32 on the CPU when installed, else PyTorch), ``"torch"`` or
            ``"onnx"``; given to every extractor that has a ``backend`` like ``device``. Neither changes the keys.
        timeout: seconds a video may go without progress (clip level: its whole preparation; frame level: one
            window) before its worker is stopped and the file recorded as failed; 0 = no limit.
        engine: where videos are decoded and cropped: ``"local"`` (``workers`` processes on this machine) or
            ``"ray"`` (``workers`` Ray actors, default 1, see :class:`~affectfuse.engines.ray.RayEngine`). The features are
            the same either way, so this is not part of the store keys.
        address: with ``engine="ray"``, the cluster to connect to (``"auto"``, ``"ray://host:10001"``); None
            starts a local Ray instance.
    """

    extractors: tuple[str, ...] = DEFAULT_EXTRACTORS
    extractor_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    level: Literal["clip", "frame"] = "clip"
    frames: int = 32
    frame_step: int = 1
    frame_fps: float | None = None
    window: int = 64
    audio_window: float = 1.0
    sample_rate: int = 16000
    face_detector: str = "default"
    face_select: Literal["largest", "score"] = "largest"
    face_margin: float = 0.25
    no_face: Literal["mask", "full_frame", "previous"] = "mask"
    face_align: Literal["auto", "none", "similarity"] = "auto"
    max_side: int = 1280
    float16: bool = False
    workers: int | None = None
    batch_rows: int = 64
    overwrite: bool = False
    span: Literal["decodable", "declared"] = "decodable"
    fragments: Literal["paper", "code"] = "paper"
    device: str = "auto"
    backend: Literal["auto", "torch", "onnx"] = "auto"
    timeout: float = 300.0
    engine: Literal["local", "ray"] = "local"
    address: str | None = None

    def validate(self) -> "ExtractConfig":
        if not self.extractors:
            raise ValueError("ExtractConfig.extractors: name at least one extractor")
        if self.level not in ("clip", "frame"):
            raise ValueError(f"ExtractConfig.level must be 'clip' or 'frame', got {self.level!r}")
        if self.frames < 1:
            raise ValueError(f"ExtractConfig.frames must be >= 1, got {self.frames}")
        if self.frame_step < 1 or (self.frame_fps is not None and self.frame_fps <= 0):
            raise ValueError(f"ExtractConfig: frame_step >= 1 and frame_fps > 0 expected, got {self.frame_step}, {self.frame_fps}")
        if self.no_face not in ("mask", "full_frame", "previous"):
            raise ValueError(f"ExtractConfig.no_face must be mask / full_frame / previous, got {self.no_face!r}")
        if self.face_select not in ("largest", "score"):
            raise ValueError(f"ExtractConfig.face_select must be 'largest' or 'score', got {self.face_select!r}")
        if (self.workers is not None and self.workers < 0) or self.batch_rows < 1 or self.window < 1 or self.max_side < 32:
            raise ValueError("ExtractConfig: workers >= 0, batch_rows >= 1, window >= 1, max_side >= 32 expected")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"ExtractConfig.device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.backend not in ("auto", "torch", "onnx"):
            raise ValueError(f"ExtractConfig.backend must be auto, torch or onnx, got {self.backend!r}")
        if self.face_align not in ("auto", "none", "similarity"):
            raise ValueError(f"ExtractConfig.face_align must be auto, none or similarity, got {self.face_align!r}")
        if self.fragments not in ("paper", "code"):
            raise ValueError(f"ExtractConfig.fragments must be 'paper' or 'code', got {self.fragments!r}")
        if self.span not in ("decodable", "declared"):
            raise ValueError(f"ExtractConfig.span must be 'decodable' or 'declared', got {self.span!r}")
        if not self.timeout >= 0:
            raise ValueError(f"ExtractConfig.timeout must be >= 0 seconds (0 = no limit), got {self.timeout}")
        if self.engine not in ENGINES:
            raise ValueError(f"ExtractConfig.engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.engine == "ray" and self.workers is not None and self.workers < 1:
            raise ValueError(f"ExtractConfig: engine='ray' needs workers >= 1 (Ray actors), got {self.workers}")
        if self.address is not None and self.engine != "ray":
            raise ValueError(f"ExtractConfig.address ({self.address!r}) is for engine='ray', got engine={self.engine!r}")
        unknown = set(self.extractor_params) - {n for n, _, _ in expand_extractors(self.extractors)}
        if unknown:
            raise ValueError(f"ExtractConfig.extractor_params names extractors not in extractors: {sorted(unknown)}")
        return self


@dataclass
class ExtractReport:
    """What a run did.

    Attributes:
        done: (video_id, key) pairs written.
        skipped: pairs already in the store.
        failed: (video_id, key, message) for pairs that could not be computed.
        warnings: (video_id, message) remarks on written entries.
        keys: extractor name → store key.
        seconds: wall time.
        interrupted: the run was stopped before the end.
        stages: busy seconds per stage: ``decode`` / ``faces`` / ``crops`` (summed over the workers), each
            extractor and ``store`` (this process).
    """

    done: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False
    stages: dict[str, float] = field(default_factory=dict)

    @property
    def failed_videos(self) -> list[str]:
        return sorted({v for v, _, _ in self.failed})

    def text(self) -> str:
        """The summary: counts of feature sets and of videos (done, skipped, failed), the keys, each warning once
        with the videos it was said of, and each failure once per video with the extractors it stopped."""
        vids_done, vids_failed = {v for v, _ in self.done}, {v for v, _, _ in self.failed}
        vids_skipped = {v for v, _ in self.skipped} - vids_done - vids_failed
        head = (f"extracted {len(self.done)} feature set(s) for {len(vids_done)} video(s) in {self.seconds:.1f} s; "
                f"{len(self.skipped)} already stored" + (f" ({len(vids_skipped)} video(s) with nothing new)"
                                                          if vids_skipped else "")
                + f"; {len(vids_failed)} video(s) failed" + (f" ({len(self.failed)} feature set(s))" if self.failed
                                                               else "")
                + (" (interrupted: run again to resume)" if self.interrupted else ""))
        lines = [head] + [f"  {name:24s} -> key {key}" for name, key in self.keys.items()]
        said: dict[str, list[str]] = {}  # message -> videos, in order
        for v, m in self.warnings:
            if v not in said.setdefault(m, []):
                said[m].append(v)
        if said:
            lines.append(f"warnings ({len(said)} distinct):")
            for m, vids in list(said.items())[:50]:
                more = f" (+{len(vids) - 3} more)" if len(vids) > 3 else ""
                lines.append(f"  {', '.join(vids[:3])}{more}: {m}" if len(vids) > 1 else f"  {vids[0]}: {m}")
            if len(said) > 50:
                lines.append(f"  ... and {len(said) - 50} more distinct warnings (affectfuse store STORE)")
        if self.failed:
            by: dict[tuple[str, str], list[str]] = {}
            for v, k, m in self.failed:
                by.setdefault((v, m), []).append(k)
            lines.append(f"failures ({len(vids_failed)} video(s)):")
            lines += [f"  {v} [{', '.join(dict.fromkeys(ks))}]: {m}" for (v, m), ks in by.items()]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
