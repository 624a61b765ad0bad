"""Presets of ``affectfuse predict`` without a run: ``default`` (the offline default) and ``best``.

    affectfuse predict VIDEO... --preset best [--require-all] [--models DIR] [--json] [--report DIR]
    affectfuse.predict(["v.mp4"], preset="best", out="pred.csv")

``best`` uses the published affect models of :mod:`affectfuse.extractors._catalogue` whose weights are on this
machine (nothing is downloaded here: ``affectfuse fetch-models NAME`` does that):

* face — ``hsemotion-enet_b0_8_va_mtl`` (EmotiEffLib / HSEmotion, Apache-2.0): per sampled frame with a face, 8
  expression probabilities (the 7 ABAW classes and contempt) and valence / arousal (the network's regression
  outputs as they are, nominally -1..1). Without it the face columns are the offline default's (face-api, 7 ABAW
  classes, no valence / arousal).
* voice — ``audeering-msp-dim`` (audEERING, **CC-BY-NC-SA-4.0, non-commercial**): arousal, dominance, valence
  (nominally 0..1) per audio window. Without it there are no voice columns.
* face AU — ``pyfeat-multitask-v28`` (py-feat ``Detectorv2``'s multitask model, **CC-BY-NC-4.0 and research-only
  terms, non-commercial**): per sampled frame with a face, py-feat's 20 action-unit probabilities (0..1) and its
  valence / arousal (tanh, -1..1), on a 256 px chip of the same face (same detection, same ``margin``: 0.1 is
  py-feat's 1.2x square). Its 7 emotion probabilities are computed but not kept: HSEmotion (or face-api) stays the
  source of the expression columns. Without it there are no AU / py-feat columns. Found as the audEERING model is:
  its fetched folder, else the Hugging Face cache; it needs timm (``affectfuse[timm]``).
* voice activity — Silero VAD (MIT, the ``silero-vad`` package): a window counts as voiced when at least
  ``min_speech`` (default half) of its 32 ms chunks are speech; voice values of other windows are NaN.

Before any video is read one line per model says where it was found or that it is missing and the exact
command that gets it (:func:`model_status`); a present non-commercial model says so. With no published model
present the offline default runs and the lines say so.

``require_all``
    ``True`` (``--require-all``) refuses to run unless *every* model of the preset is present — py-feat's included:
    the flag promises the whole ``best`` table (the same columns on every machine), and py-feat's columns are part
    of it, so someone who had HSEmotion + audEERING and passed ``--require-all`` now gets an error naming
    ``affectfuse fetch-models pyfeat-multitask-v28`` instead of a table that silently lacks the AU columns. Who
    wants a subset (e.g. not py-feat's research-only weights) names it: ``require_all=("face", "voice")`` (roles or
    catalogue names) requires those and lets the others fall back as usual.

Sampling and time axis
    Faces: as the offline default (:func:`~affectfuse.inference.offline.offline_config`): the frame nearest each
    point of a ``fps`` grid (5 per second), decoded ``window`` frames at a time, largest MediaPipe face, square
    crop with ``margin``. Voice: windows of ``voice_window`` seconds (2.0) centred on the frame nearest each point
    of a ``voice_hop`` grid (every 1.0 s), a second frame-level pass over the audio only (no pixels decoded). A
    frame row carries the voice window whose centre is nearest its time (``voice_time``, within ``voice_hop``),
    so consecutive rows repeat a window's values; the report draws each window once, at its centre. Windows
    centred on every 5-fps frame would run the 12-layer wav2vec 2.0-large on ten seconds of audio per second of
    video; this grid runs it on two. The choices are recorded in the JSON (``sampling``).

Columns (per frame, :data:`BEST_TABLE` layout)
    ``video_id, frame, time, face, box_*, face_score``, the expression columns (``hsemotion_<class>`` in ABAW
    order then ``hsemotion_contempt``; or the offline default's ``Neutral`` ... ``Surprise``), ``dominant`` (the
    class name), ``hsemotion_valence, hsemotion_arousal``, then py-feat's ``pyfeat_AU01 ... pyfeat_AU43`` (its 20
    AUs in py-feat's order: 01 02 04 05 06 07 09 10 11 12 14 15 17 20 23 24 25 26 28 43) and ``pyfeat_valence,
    pyfeat_arousal``, then ``voice_time, silero_speech_fraction, voice_arousal, voice_dominance, voice_valence``.
    NaN (never zero) where there is no face, no audio, or the window is not voiced; the columns of a missing
    model are left out. Values are the models' outputs as they are (nothing clipped). Each column's model, licence
    and weights (path or hub id, revision, SHA-256 where known) are in ``<stem>.columns.csv`` next to the CSV and in
    the JSON (``columns``).

Memory
    Frames stream ``window`` at a time as in the offline default; the audio pass holds one file's 16 kHz track
    (3.8 MB per minute) and one window of fragments.

Report
    Per video one figure: the expression timeline, below it face (HSEmotion solid, py-feat dash-dot, left scale)
    and voice (dashed, right scale) valence / arousal on the same time axis, and at the bottom a heat-map of
    py-feat's 20 AU probabilities (0..1; grey where there is no face), each labelled with its model and licence.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from affectfuse.extraction import ExtractConfig, extract
from affectfuse.extractors.face.pyfeat_multitask import PYFEAT_AUS_20
from affectfuse.features.store import FeatureStore
from affectfuse.inference import published
from affectfuse.inference.offline import (
    OFFLINE_CLASSES,
    Failure,
    _gather_inputs,
    _records,
    extracted,
    format_summary,
    frame_prediction,
    offline_config,
    summarize,
)
from affectfuse.inference.published import (
    FACE_MODEL,
    PYFEAT_MODEL,
    VOICE_MODEL,
    ModelStatus,
    models_env,
    short_licence,
)
from affectfuse.types import FeatureSet, Prediction

__all__ = ["PRESETS", "BEST_TABLE", "HSE_COLUMNS", "PYFEAT_AU_COLUMNS", "PYFEAT_VA", "ModelStatus", "PresetResult",
           "check_preset", "model_status", "predict_best", "write_preset_outputs", "preset_report",
           "format_preset_summary"]

#: preset name → what it runs.
PRESETS: dict[str, str] = {
    "default": "the offline default: face-api expression probabilities per frame (weights from registry packages)",
    "best": "published affect models where present: HSEmotion face expressions + valence / arousal, audEERING "
            "voice arousal / dominance / valence, py-feat face action units + valence / arousal "
            "(affectfuse fetch-models)",
}
#: HSEmotion class (``hse_<class>`` columns of the extractor) → the ``dominant`` name, ABAW order then contempt.
_HSE_CLASSES: dict[str, str] = {"neutral": "Neutral", "anger": "Anger", "disgust": "Disgust", "fear": "Fear",
                                "happiness": "Happiness", "sadness": "Sadness", "surprise": "Surprise",
                                "contempt": "Contempt"}
#: the expression columns of the table with HSEmotion.
HSE_COLUMNS: tuple[str, ...] = tuple(f"hsemotion_{c}" for c in _HSE_CLASSES)
_VA = ("hsemotion_valence", "hsemotion_arousal")
#: the AU columns of the table with py-feat's published model (its 20 AUs, ``feat.multitask.AU_NAMES_V24``; a
#: checkpoint with the older 24-AU head in the model's folder gives its own).
PYFEAT_AU_COLUMNS: tuple[str, ...] = tuple(f"pyfeat_{a}" for a in PYFEAT_AUS_20)
#: py-feat's valence / arousal columns.
PYFEAT_VA: tuple[str, ...] = ("pyfeat_valence", "pyfeat_arousal")
_PF = "pyfeat_multitask"  # the extractor
_BOX = ("box_x1", "box_y1", "box_x2", "box_y2", "face_score")
#: the per-frame table: the offline default's, with the extra (dimensional) columns after ``dominant``.
BEST_TABLE = Prediction.Layout(columns=("video_id", "frame", "time", "face", *_BOX, "{scores}", "dominant",
                                        "{extra}"),
                               label="dominant", prefix="", valid="face", decimals=None, time_decimals=None,
                               lineterminator="\n")


def check_preset(name: str) -> str:
    """``name`` if it is a preset. Raises ValueError naming the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return name


def model_status(preset: str = "best") -> list[ModelStatus]:
    """The published models ``preset`` uses, each found or missing (nothing is loaded or downloaded)."""
    return [] if check_preset(preset) == "default" else published.model_status()


def _provenance(face: str, voice: bool, gate: dict[str, Any] | None, detector: str,
                expressions: Sequence[str], aus: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Column → ``{model, extractor, licence, weights}`` for every score column of the table."""
    det = published.detector_record(detector)
    cols: dict[str, dict[str, Any]] = {c: det for c in ("face", *_BOX)}
    rec = published.face_record() if face == "hsemotion" else published.faceapi_record()
    cols.update({c: rec for c in (*expressions, "dominant", *(_VA if face == "hsemotion" else ()))})
    if aus:
        rec = published.pyfeat_record()  # one record (one hash of the file) for all its columns
        cols.update({c: rec for c in (*aus, *PYFEAT_VA)})
    if voice:
        rec = published.voice_record()
        cols.update({c: rec for c in ("voice_time", "voice_arousal", "voice_dominance", "voice_valence")})
        if gate is not None:
            cols["silero_speech_fraction"] = gate
    return cols


# -- the result ------------------------------------------------------------------------------------
@dataclass
class PresetResult:
    """What :func:`predict_best` gives.

    Attributes:
        frames: the per-frame table (:data:`BEST_TABLE` columns; rows of each video in time order).
        summary: one row per video: the offline default's summary with these expression columns, mean face
            valence / arousal over the frames with a face, voice windows and voiced windows, mean voice arousal /
            dominance / valence over the voiced windows.
        failures: inputs that could not be scored.
        models: the status of each published model (found / missing).
        columns: column → ``{model, extractor, licence, weights}``.
        expressions: the expression score columns, in order; labels: their ``dominant`` names.
        sampling: how frames and audio windows were taken (recorded in the JSON).
        aus: py-feat's AU columns (``pyfeat_AU01`` ...) when its model ran, else empty.
    """

    frames: pd.DataFrame
    summary: pd.DataFrame
    failures: list[Failure]
    models: list[ModelStatus]
    columns: dict[str, dict[str, Any]]
    expressions: list[str]
    labels: list[str]
    sampling: dict[str, Any] = field(default_factory=dict)
    aus: list[str] = field(default_factory=list)

    def prediction(self) -> Prediction:
        """The table as a :class:`~affectfuse.types.Prediction` (expression scores as its values)."""
        return Prediction.from_frame(self.frames, BEST_TABLE, names=self.expressions, classification=True)


# -- tables ----------------------------------------------------------------------------------------
def _face_rows(fs: FeatureSet, face: str, columns: Sequence[str]) -> pd.DataFrame:
    """One video's face rows: detection, expression probabilities, dominant, (HSEmotion) valence / arousal."""
    if face == "faceapi":  # the offline default's table, as it is
        return frame_prediction(fs).to_frame(Prediction.FRAME_TABLE)
    n = len(fs)
    ok = np.asarray(fs.valid, bool) & (np.isfinite(fs.scores) if fs.scores is not None else False)
    idx = {c: i for i, c in enumerate(columns)}
    vals = np.full((n, len(HSE_COLUMNS) + 2), np.nan)
    pick = [idx[f"hse_{c}"] for c in _HSE_CLASSES] + [idx["hse_valence"], idx["hse_arousal"]]
    vals[ok] = np.asarray(fs.values, np.float64)[ok][:, pick]
    boxes = np.full((n, 4), np.nan) if fs.boxes is None else np.asarray(fs.boxes, np.float64).copy()
    scores = np.full(n, np.nan) if fs.scores is None else np.asarray(fs.scores, np.float64).copy()
    boxes[~ok], scores[~ok] = np.nan, np.nan
    labels = np.full(n, "", dtype=object)
    labels[ok] = np.asarray(list(_HSE_CLASSES.values()), dtype=object)[np.argmax(vals[ok, :8], axis=1)]
    extra = {**{k: boxes[:, i] for i, k in enumerate(_BOX[:4])}, "face_score": scores,
             _VA[0]: vals[:, 8], _VA[1]: vals[:, 9]}
    pred = Prediction(values=vals[:, :8], names=list(HSE_COLUMNS), video_ids=[fs.video_id] * n,
                      times=np.asarray(fs.times, np.float64), valid=ok, frames=np.asarray(fs.indices, np.int64),
                      classification=True, labels=labels, extra=extra)
    return pred.to_frame(BEST_TABLE)


def _join_pyfeat(df: pd.DataFrame, pf: FeatureSet | None, columns: Sequence[str], aus: Sequence[str]) -> pd.DataFrame:
    """py-feat's AU probabilities and valence / arousal on the face rows, matched by frame; NaN (never zero) where
    there is no face or no py-feat value (``columns``: the extractor's, ``AU01`` ... ``valence, arousal``)."""
    names = [*aus, *PYFEAT_VA]
    vals = np.full((len(df), len(names)), np.nan)
    if pf is not None and len(pf):
        idx = {c: i for i, c in enumerate(columns)}
        pick = [idx[c[len("pyfeat_"):]] for c in names]
        ok = np.asarray(pf.valid, bool)
        pos = {int(f): i for i, f in enumerate(np.asarray(pf.indices)) if ok[i]}
        rows = np.array([pos.get(int(f), -1) for f in df["frame"]], np.int64)
        hit = (rows >= 0) & df["face"].to_numpy(bool)
        vals[hit] = np.asarray(pf.values, np.float64)[rows[hit]][:, pick]
    return df.assign(**{c: vals[:, j] for j, c in enumerate(names)})


def nearest_window(times: np.ndarray, centres: np.ndarray, reach: float) -> np.ndarray:
    """Index of the window centre nearest each time (the earlier one on a tie), -1 where none is within ``reach``.

    Shape:
        times ``(T,)``, centres ``(W,)`` sorted → ``(T,)`` int64.
    """
    t = np.asarray(times, np.float64)
    c = np.asarray(centres, np.float64)
    if not len(c):
        return np.full(len(t), -1, np.int64)
    hi = np.clip(np.searchsorted(c, t), 0, len(c) - 1)
    lo = np.clip(hi - 1, 0, len(c) - 1)
    j = np.where(np.abs(c[lo] - t) <= np.abs(c[hi] - t), lo, hi)
    return np.where(np.abs(c[j] - t) <= reach, j, -1).astype(np.int64)


@dataclass
class _Voice:
    """One video's voice windows.

    Shape:
        times (centres, s), speech (Silero's speech fraction, NaN without audio) ``(W,)``; values ``(W, 3)`` in
        ``labels`` order, NaN where the window is not voiced.
    """

    times: np.ndarray
    values: np.ndarray
    speech: np.ndarray
    labels: list[str]

    @property
    def voiced(self) -> np.ndarray:
        return np.isfinite(self.values).all(axis=1)


def _voice(dims: FeatureSet, labels: Sequence[str], vad: FeatureSet | None, min_speech: float) -> _Voice:
    ok = np.asarray(dims.valid, bool).copy()
    speech = np.full(len(dims), np.nan)
    if vad is not None:
        has = np.asarray(vad.valid, bool)
        speech[has] = np.asarray(vad.values, np.float64)[has, 2]  # speech_fraction
        ok &= has & (speech >= min_speech)
    vals = np.full((len(dims), len(labels)), np.nan)
    vals[ok] = np.asarray(dims.values, np.float64)[ok]
    return _Voice(np.asarray(dims.times, np.float64), vals, speech, list(labels))


def _join(df: pd.DataFrame, v: _Voice | None, reach: float) -> pd.DataFrame:
    """The voice columns on the frame rows (the nearest window's values; NaN where none)."""
    n = len(df)
    names = ["voice_arousal", "voice_dominance", "voice_valence"]
    out = {"voice_time": np.full(n, np.nan), "silero_speech_fraction": np.full(n, np.nan),
           **{c: np.full(n, np.nan) for c in names}}
    if v is not None and len(v.times):
        j = nearest_window(df["time"].to_numpy(np.float64), v.times, reach)
        hit = j >= 0
        out["voice_time"][hit] = v.times[j[hit]]
        out["silero_speech_fraction"][hit] = v.speech[j[hit]]
        for c in names:
            k = v.labels.index(c[len("voice_"):]) if c[len("voice_"):] in v.labels else None
            if k is not None:
                out[c][hit] = v.values[j[hit], k]
    return df.assign(**out)


def _summary(df: pd.DataFrame, vid: str, path: Path, meta: dict[str, Any], expressions: list[str],
             labels: list[str], v: _Voice | None, voice: bool, notes: list[str]) -> dict[str, Any]:
    video = meta.get("video", {})
    row = summarize(df, vid, path=str(path), duration=video.get("duration", math.nan),
                    declared=video.get("declared_duration"), notes=[*video.get("notes", ()), *notes],
                    classes=expressions, labels=labels)
    face = df["face"].to_numpy(bool)
    for c in (*_VA, *PYFEAT_VA):
        if c in df.columns:
            row[c] = float(df.loc[face, c].mean()) if face.any() else math.nan
    if voice:
        voiced = v.voiced if v is not None else np.zeros(0, bool)
        row["voice_windows"] = int(len(voiced))
        row["voiced_windows"] = int(voiced.sum())
        for c in ("arousal", "dominance", "valence"):
            k = v.labels.index(c) if v is not None and c in v.labels else None
            row[f"voice_{c}"] = float(v.values[voiced, k].mean()) if k is not None and voiced.any() else math.nan
    return row


def _summary_columns(expressions: list[str], face_va: bool, voice: bool, pyfeat: bool = False) -> list[str]:
    cols = ["video_id", "path", "duration_s", "frames_scored", "face_frames", "face_fraction", *expressions,
            "dominant", "peak_prob", "peak_time", "peak_start", "peak_end"]
    cols += list(_VA) if face_va else []
    cols += list(PYFEAT_VA) if pyfeat else []
    cols += ["voice_windows", "voiced_windows", "voice_arousal", "voice_dominance", "voice_valence"] if voice else []
    return cols + ["declared_s", "notes"]


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    text = {"video_id", "dominant"}
    return pd.DataFrame({c: pd.Series(dtype="object" if c in text else "int64" if c == "frame"
                                      else "bool" if c == "face" else "float64") for c in columns})


# -- predicting --------------------------------------------------------------------------------------
def _check_voice(voice_window: float, voice_hop: float, min_speech: float) -> None:
    for name, v in (("voice_window", voice_window), ("voice_hop", voice_hop)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a positive number of seconds, got {v!r}")
    if isinstance(min_speech, bool) or not isinstance(min_speech, (int, float)) or not 0 <= min_speech <= 1:
        raise ValueError(f"min_speech must be a fraction in [0, 1], got {min_speech!r}")


def _required(status: Sequence[ModelStatus], require_all: Any) -> list[ModelStatus]:
    """The models ``require_all`` asks for: all (True), none (False / None / empty) or those named by role or
    catalogue name (a string or a collection of them)."""
    if require_all is None or isinstance(require_all, bool):
        return list(status) if require_all else []
    try:
        want = [require_all] if isinstance(require_all, str) else list(require_all)
    except TypeError:
        raise TypeError(f"require_all must be True / False or model roles / names, got {require_all!r}") from None
    known = {k: s for s in status for k in (s.role, s.name)}
    bad = [w for w in want if w not in known]
    if bad:
        raise ValueError(f"require_all: {', '.join(map(repr, bad))} is not a model of preset 'best'; name roles "
                         f"({', '.join(repr(s.role) for s in status)}) or catalogue names "
                         f"({', '.join(s.name for s in status)}), or pass True for all")
    return [s for s in status if s.role in want or s.name in want]


def _stream_key(cfg: ExtractConfig, name: str) -> str:
    """The store key the extraction gives extractor ``name`` of ``cfg``."""
    from affectfuse.extraction.plan import make_streams

    return next(st.key for st in make_streams(cfg) if st.name == name)


def predict_best(videos: Iterable[str | Path] | str | Path, *, fps: float = 5.0, window: int = 64,
                 detector: str = "default", progress: bool = True, workers: int = 1, margin: float = 0.1,
                 max_side: int = 1280, features: str | Path | None = None, voice_window: float = 2.0,
                 voice_hop: float = 1.0, min_speech: float = 0.5, require_all: bool | Iterable[str] = False,
                 models: str | Path | None = None, log: Callable[[str], Any] = lambda *_: None) -> PresetResult:
    """The ``best`` preset: published face, voice and face-AU affect models where present, the offline default
    elsewhere.

    Args:
        videos: files, folders or lists (as :func:`~affectfuse.inference.offline.predict_offline`).
        fps / window / detector / margin / max_side / workers / progress / features: as the offline default.
        voice_window: seconds of audio per voice window (centred on its frame).
        voice_hop: seconds between voice window centres.
        min_speech: fraction of a window's 32 ms chunks Silero must call speech for it to count as voiced.
        require_all: ``True``: raise instead of falling back when any published model of the preset (py-feat's
            included) is missing; or the roles / catalogue names that must be present (``("face", "voice")``), the
            others falling back as usual (see the module's notes).
        models: a folder of models (``<folder>/<name>/``) to use instead of ``$AFFECTFUSE_MODELS`` / the cache.
        log: where the model lines go (one per model, before any video is read).

    Returns:
        a :class:`PresetResult`.

    Raises:
        ValueError: bad parameters; FileNotFoundError: ``require_all`` and a required model is missing (one line
        per model, joined by "; ").
    """
    cfg = offline_config(fps=fps, window=window, detector=detector, margin=margin, max_side=max_side, workers=workers)
    _check_voice(voice_window, voice_hop, min_speech)
    with models_env(models):
        status = model_status("best")
        missing = [s for s in status if not s.present]
        required = _required(status, require_all)
        lacking = [s for s in required if not s.present]
        if lacking:
            what = ("every published model" if len(required) == len(status)
                    else ", ".join(f"the {s.role} model" for s in required))
            raise FileNotFoundError(f"preset 'best' needs {what} (require_all): "
                                    + "; ".join(s.line() for s in lacking))
        for s in status:
            log(s.line())
        present = {s.name for s in status if s.present}
        face = "hsemotion" if FACE_MODEL in present else "faceapi"
        voice = VOICE_MODEL in present
        au = PYFEAT_MODEL in present
        gate = published.silero_record() if voice else None
        if voice and gate is None:
            log("voice activity: Silero VAD's weights are not here (`affectfuse fetch-assets silero-vad`): voice "
                "values are kept for every window with audio, voiced or not")
        if len(missing) == len(status):
            log("no published model is present: running the offline default (face-api expressions only)")
        if face == "hsemotion":
            cfg = dataclasses.replace(cfg, extractors=("hsemotion",), extractor_params={
                "hsemotion": {"model": FACE_MODEL, "output": "probs"}}).validate()
        if au:  # one pass over the frames: the same detections, a 256 px chip for py-feat
            cfg = dataclasses.replace(cfg, extractors=(*cfg.extractors, _PF), extractor_params={
                **cfg.extractor_params, _PF: {"model": PYFEAT_MODEL, "output": "all"}}).validate()
        vcfg = ExtractConfig(extractors=("audeering_dim",) + (("silero_vad",) if gate else ()),
                             extractor_params={"audeering_dim": {"model": VOICE_MODEL, "output": "dims"}},
                             level="frame", frame_fps=1.0 / float(voice_hop), window=int(window),
                             audio_window=float(voice_window), max_side=int(max_side), workers=cfg.workers,
                             batch_rows=int(window)).validate() if voice else None
        expressions = list(HSE_COLUMNS) if face == "hsemotion" else list(OFFLINE_CLASSES)
        labels = list(_HSE_CLASSES.values()) if face == "hsemotion" else list(OFFLINE_CLASSES)
        result = _run(videos, cfg, vcfg, face, features, progress, expressions, labels, voice_hop, min_speech, au)
        result.models = status
        result.columns = _provenance(face, voice, gate, detector, expressions, result.aus)
        result.sampling = {"fps": float(fps), "window": int(window), "margin": float(margin), "detector": detector,
                           "face_au": None if not au else {
                               "chip_px": 256, "margin": float(margin),
                               "faces": "the detections of the expression columns (one per frame), cut again as a "
                                        "256 px square chip as py-feat's Detectorv2 takes (1.2x box at margin 0.1)"},
                           "voice": None if not voice else {
                               "window_s": float(voice_window), "hop_s": float(voice_hop),
                               "centred_on": "the frame nearest each point of a hop grid (frame-level audio pass)",
                               "frame_rows": "each frame row carries the window whose centre is nearest its time "
                                             "(voice_time), within hop_s",
                               "voiced": (f"silero_speech_fraction >= {min_speech}" if gate
                                          else "every window with audio (no Silero VAD weights)")}}
    return result


def _run(videos, cfg: ExtractConfig, vcfg: ExtractConfig | None, face: str, features, progress: bool,
         expressions: list[str], labels: list[str], reach: float, min_speech: float, au: bool = False) -> PresetResult:
    pairs, failures = _gather_inputs(videos)
    frames, rows = [], []
    aus = list(PYFEAT_AU_COLUMNS) if au else []
    with extracted(pairs, cfg, features, progress, failures) as (store, key, done):
        vrep = extract(done, store, vcfg, progress=progress) if vcfg is not None and done else None
        columns = store.identity(key)["columns"] if done else []
        pkey = _stream_key(cfg, _PF) if au and done else None
        pcols = store.identity(pkey)["columns"] if pkey is not None and pkey in store.keys() else []
        if pcols:  # the checkpoint's own AUs (20 for the published model)
            aus = [f"pyfeat_{c}" for c in pcols if c.startswith("AU")]
        for vid, path in done:
            fs = store.get(vid, key)
            df = _face_rows(fs, face, columns)
            v, notes = None, []
            if pkey is not None:
                pf = store.get(vid, pkey) if store.has(vid, pkey) else None
                if pf is None:
                    notes.append("face AU: py-feat's model gave no values for this video")
                df = _join_pyfeat(df, pf, pcols, aus)
            if vrep is not None:
                v, vnotes = _video_voice(store, vrep, vid, min_speech)
                notes += vnotes
            if vcfg is not None:
                df = _join(df, v, reach)
            frames.append(df)
            rows.append(_summary(df, vid, path, fs.meta, expressions, labels, v, vcfg is not None, notes))
    cols = list(frames[0].columns) if frames else list(_table_columns(expressions, face, vcfg is not None, aus))
    frames_df = pd.concat(frames, ignore_index=True) if frames else _empty(cols)
    summary_df = pd.DataFrame(rows, columns=_summary_columns(expressions, face == "hsemotion", vcfg is not None, au))
    return PresetResult(frames_df, summary_df, failures, [], {}, expressions, labels, aus=aus)


def _table_columns(expressions: list[str], face: str, voice: bool, aus: Sequence[str] = ()) -> list[str]:
    cols = ["video_id", "frame", "time", "face", *_BOX, *expressions, "dominant"]
    cols += list(_VA) if face == "hsemotion" else []
    cols += [*aus, *PYFEAT_VA] if aus else []
    return cols + (["voice_time", "silero_speech_fraction", "voice_arousal", "voice_dominance", "voice_valence"]
                   if voice else [])


def _video_voice(store: FeatureStore, rep, vid: str, min_speech: float) -> tuple[_Voice | None, list[str]]:
    dkey = rep.keys["audeering_dim"]
    if not store.has(vid, dkey):
        msg = next((m for v, _, m in rep.failed if v == vid), "no voice windows")
        return None, [f"voice: {msg}"]
    dims = store.get(vid, dkey)
    labels = [c[len("ser_"):] for c in store.identity(dkey)["columns"]]
    vkey = rep.keys.get("silero_vad")
    vad = store.get(vid, vkey) if vkey and store.has(vid, vkey) else None
    v = _voice(dims, labels, vad, min_speech)
    notes = [f"voice: {w}" for w in dims.meta.get("notes", ()) if "audio" in str(w).lower()]
    return v, list(dict.fromkeys(notes))


# -- outputs -----------------------------------------------------------------------------------------
def _weights_text(w: dict[str, Any]) -> str:
    if "config" in w:
        return json.dumps(w["config"], sort_keys=True)
    parts = [str(w.get("path") or w.get("source"))]
    if w.get("revision"):
        parts.append(f"revision {w['revision']}")
    if w.get("sha256"):
        parts.append(f"sha256 {w['sha256']}" + (" (verified)" if w.get("verified") else ""))
    return ", ".join(parts)


def _columns_table(columns: dict[str, dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([{"column": c, "model": r["model"], "extractor": r["extractor"] or "", "licence": r["licence"],
                          "weights": str(r["weights"].get("path") or r["weights"].get("source")
                                         or json.dumps(r["weights"].get("config"), sort_keys=True)),
                          "source": str(r["weights"].get("source") or ""),
                          "revision": str(r["weights"].get("revision") or ""),
                          "sha256": str(r["weights"].get("sha256") or "")} for c, r in columns.items()])


def write_preset_outputs(res: PresetResult, out_csv: str | Path, *, json_out: bool = False) -> list[Path]:
    """Write ``out_csv`` (per frame), ``<stem>.summary.csv``, ``<stem>.columns.csv`` (each column's model, licence
    and weights) and, with ``json_out``, ``<stem>.json`` (``preset``, ``models``, ``columns``, ``sampling``,
    ``videos`` with summary and frames, ``failures``; NaN as null).

    Returns:
        the files written.
    """
    out_csv = Path(out_csv)
    base = out_csv.with_suffix("") if out_csv.suffix.lower() == ".csv" else out_csv
    written = [res.prediction().write(out_csv, BEST_TABLE)]
    for suffix, table in ((".summary.csv", res.summary), (".columns.csv", _columns_table(res.columns))):
        p = base.with_name(base.name + suffix)
        table.to_csv(p, index=False)
        written.append(p)
    if json_out:
        js = base.with_name(base.name + ".json")
        doc = {"preset": "best", "classes": res.expressions, "labels": dict(zip(res.expressions, res.labels)),
               "models": [{"role": s.role, "name": s.name, "present": s.present, "where": s.where,
                           "licence": s.licence, "non_commercial": s.non_commercial,
                           "fetch": s.command} for s in res.models],
               "columns": res.columns, "sampling": res.sampling, "videos": [],
               "failures": [{"video_id": f.video_id, "path": f.path, "message": f.message} for f in res.failures]}
        for srow in _records(res.summary):
            vid = srow["video_id"]
            doc["videos"].append({"video_id": vid, "summary": srow,
                                  "frames": _records(res.frames[res.frames["video_id"] == vid])})
        tmp = js.with_name(js.name + ".part")
        tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        tmp.replace(js)
        written.append(js)
    return written


def _licence_text(rec: dict[str, Any], short: bool = False) -> str:
    """``"model (licence, non-commercial)"``; ``short``: the licence's first word only (``CC-BY-NC-4.0``)."""
    lic = short_licence(rec["licence"])
    nc = ", non-commercial" if "-NC" in rec["licence"].split(" ")[0].upper() else ""
    return f"{rec['model']} ({lic.split(' ')[0] if short else lic}{nc})"


def _label(column: str, rec: dict[str, Any]) -> str:
    what = column.replace("hsemotion_", "face ").replace("pyfeat_", "face ").replace("voice_", "voice ")
    return f"{what} — {_licence_text(rec, short=True)}"


def _column_list(cs: Sequence[str], aus: Sequence[str]) -> str:
    """``", "``-joined column names, a run of the AU columns shortened to ``first … last (n AUs)``."""
    au = [c for c in cs if c in set(aus)]
    if len(au) < 4:
        return ", ".join(cs)
    rest = [c for c in cs if c not in set(au)]
    return ", ".join([f"{au[0]} … {au[-1]} ({len(au)} AUs)", *rest])


def preset_report(res: PresetResult, out_dir: str | Path, *, title: str | None = None) -> Path:
    """The HTML report: per video the expression timeline with face valence / arousal (HSEmotion solid, py-feat
    dash-dot) and voice arousal / valence (dashed) below it on one time axis, and py-feat's AU probabilities as a
    heat-map at the bottom, each labelled with its model and licence; the models and licences table."""
    from affectfuse.reporting import AffectColumn, prediction_report
    from affectfuse.reporting.prediction_report import HeatmapColumns

    color = {"valence": "tab:blue", "arousal": "tab:red"}  # one colour per dimension: face solid, voice dashed
    affect = [AffectColumn(c, _label(c, res.columns[c]), "left", color=color[c.split("_")[1]])
              for c in _VA if c in res.columns]
    affect += [AffectColumn(c, _label(c, res.columns[c]), "left", color=color[c.split("_")[1]], style="-.")
               for c in PYFEAT_VA if c in res.columns]
    affect += [AffectColumn(c, _label(c, res.columns[c]), "right", "voice_time", color[c.split("_")[1]])
               for c in ("voice_valence", "voice_arousal") if c in res.columns]
    aus = [c for c in res.aus if c in res.frames.columns]
    heat = None
    caption = None
    if aus:
        what = f"action-unit probabilities (0..1, grey: no face) — {_licence_text(res.columns[aus[0]])}"
        heat = HeatmapColumns(aus, [c[len("pyfeat_"):] for c in aus], what)
        faces = [what for what, cols in (("HSEmotion solid", _VA), ("py-feat dash-dot", PYFEAT_VA))
                 if cols[0] in res.columns]
        caption = (f"expressions (top), valence / arousal (below) on one time axis — face on the left scale "
                   f"({', '.join(faces)}), voice on the right scale (dashed) — and py-feat's {len(aus)} action-unit "
                   "probabilities (bottom)")
    groups: dict[str, list[str]] = {}
    for c, r in res.columns.items():
        groups.setdefault(json.dumps(r, sort_keys=True, default=str), []).append(c)
    prov = [[_column_list(cs, aus), res.columns[cs[0]]["model"], res.columns[cs[0]]["licence"],
             _weights_text(res.columns[cs[0]]["weights"])] for cs in groups.values()]
    what = "expressions, valence and arousal" + (", action units" if aus else "")
    return prediction_report(res.frames, Path(out_dir), summary=res.summary, value_columns=res.expressions,
                             failures=res.failures, affect=affect, provenance=prov,
                             notes=[s.line() for s in res.models], heatmap=heat, caption=caption,
                             title=title or f"affectfuse predict --preset best: {what}")


def format_preset_summary(res: PresetResult) -> str:
    """One line per video: the offline default's line, then mean face valence / arousal and voice values."""
    s = res.summary
    lines = format_summary(s.rename(columns=dict(zip(res.expressions, res.labels)))).split("\n") if len(s) else []
    out = []
    for line, r in zip(lines, _records(s)):
        extra = []
        if r.get(_VA[0]) is not None:
            extra.append(f"face valence {r[_VA[0]]:+.2f}, arousal {r[_VA[1]]:+.2f}")
        if r.get(PYFEAT_VA[0]) is not None:
            extra.append(f"py-feat valence {r[PYFEAT_VA[0]]:+.2f}, arousal {r[PYFEAT_VA[1]]:+.2f}")
        if "voice_windows" in r:
            if r.get("voice_arousal") is not None:
                extra.append(f"voice arousal {r['voice_arousal']:.2f}, valence {r['voice_valence']:.2f} "
                             f"({r['voiced_windows']}/{r['voice_windows']} windows voiced)")
            else:
                extra.append(f"no voiced audio ({r['voice_windows']} windows)")
        out.append(line + ("; " + "; ".join(extra) if extra else ""))
    return "\n".join(out)
