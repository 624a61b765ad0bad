"""The published models the ``best`` preset uses (:mod:`affectfuse.inference.preset`): found or missing, and
what made each column of its table.

:func:`model_status` looks for the weights where the extractors read them — ``$AFFECTFUSE_MODELS/<name>/`` (or
``$AFFECTFUSE_CACHE/models/<name>/``, where ``affectfuse fetch-models`` puts them) and, for the hub models
(audEERING, py-feat), the Hugging Face cache — without loading or downloading anything. The ``*_record``
functions give each model's ``{model, extractor, licence, weights}``, the weights as ``{path, sha256, verified,
source, revision}``: the SHA-256 recorded by ``fetch-models`` (``MANIFEST.json``), or computed for files up to
256 MiB, or the blob name of a hub cache file (which the hub names by its SHA-256); ``revision`` is the hub
snapshot's commit where known.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from affectfuse.extractors._catalogue import CATALOGUE, MODELS_ENV, is_fetched, model_dir, read_manifest, sha256_file

__all__ = ["FACE_MODEL", "VOICE_MODEL", "PYFEAT_MODEL", "ModelStatus", "model_status", "models_env", "short_licence",
           "face_record", "faceapi_record", "voice_record", "pyfeat_record", "silero_record", "detector_record"]

FACE_MODEL = "hsemotion-enet_b0_8_va_mtl"
VOICE_MODEL = "audeering-msp-dim"
PYFEAT_MODEL = "pyfeat-multitask-v28"
_FETCH_FILES = {FACE_MODEL: "enet_b0_8_va_mtl.onnx",
                VOICE_MODEL: "config.json + preprocessor_config.json + model.safetensors (or pytorch_model.bin)",
                PYFEAT_MODEL: "face_multitask_v28.safetensors"}
_FULL_HASH = 256 << 20  # files up to this size are hashed for the record; larger ones only when a record has it


def short_licence(licence: str) -> str:
    """``"CC-BY-NC-SA-4.0 (audEERING; ...)"`` → ``"CC-BY-NC-SA-4.0"``."""
    return licence.split(" (")[0]


@dataclass(frozen=True)
class ModelStatus:
    """One published model of a preset and whether its weights are on this machine.

    Attributes:
        role: ``"face"``, ``"voice"`` or ``"face AU"`` (py-feat's action units and valence / arousal).
        name: the catalogue name (``affectfuse fetch-models NAME``).
        present: its weights were found.
        where: where they were found (a folder, or a hub id in the Hugging Face cache), else where they go.
        licence: the licence of the weights, as the publisher states it.
        non_commercial: the licence forbids commercial use.
        fallback: what the preset does without it.
        problem: why weights that are there cannot be used (e.g. ONNX Runtime missing); "" when none.
    """

    role: str
    name: str
    present: bool
    where: str
    licence: str
    non_commercial: bool
    fallback: str
    problem: str = ""

    @property
    def command(self) -> str:
        return f"affectfuse fetch-models {self.name}"

    def line(self) -> str:
        """One line: where it was found (with its licence), or that it is missing and how to get it."""
        if self.problem:
            return f"{self.role} model {self.name}: found in {self.where} but {self.problem}; {self.fallback}"
        if self.present:
            nc = " — NON-COMMERCIAL use only" if self.non_commercial else ""
            return f"{self.role} model {self.name}: found in {self.where} (licence {self.licence}){nc}"
        return (f"{self.role} model {self.name} is missing: get it with `{self.command}`, or put "
                f"{_FETCH_FILES[self.name]} in {self.where}/ (licence {short_licence(self.licence)}); {self.fallback}")


def _hub_snapshot(hub: str) -> Path | None:
    """The Hugging Face cache folder of the catalogue's hub model ``hub`` holding its files (the audEERING model's
    config.json, ...) and one of its weight files, or None."""
    from affectfuse.extractors._hf import hub_file

    m = next(m for m in CATALOGUE.values() if m.kind == "hub" and m.source == hub)
    found = [hub_file(hub, f) for f in m.files]
    weights = next((w for w in (hub_file(hub, f) for f in m.weights_choice) if w is not None), None)
    if weights is None or any(f is None for f in found):
        return None
    return (found[0] if found else weights).parent


def _hub_where(name: str) -> str | None:
    """Where a hub model's weights are: its fetched folder, else the Hugging Face cache; None when neither."""
    if is_fetched(name):
        return str(model_dir(name))
    snap = _hub_snapshot(CATALOGUE[name].source)
    return None if snap is None else f"{CATALOGUE[name].source} (Hugging Face cache, {snap})"


def _voice_where() -> str | None:
    return _hub_where(VOICE_MODEL)


def model_status() -> list[ModelStatus]:
    """The models of the ``best`` preset — face (HSEmotion), voice (audEERING), face AU (py-feat), in this order —
    each found or missing (nothing is loaded or downloaded)."""
    face, voice, pf = CATALOGUE[FACE_MODEL], CATALOGUE[VOICE_MODEL], CATALOGUE[PYFEAT_MODEL]
    face_file = model_dir(FACE_MODEL) / face.files[0]
    no_ort = face_file.is_file() and importlib.util.find_spec("onnxruntime") is None
    vw = _voice_where()
    pw = _hub_where(PYFEAT_MODEL)
    no_timm = pw is not None and importlib.util.find_spec("timm") is None
    return [
        ModelStatus("face", FACE_MODEL, face_file.is_file() and not no_ort, str(model_dir(FACE_MODEL)), face.licence,
                    face.non_commercial, "face expressions come from the offline default (face-api), no face "
                    "valence / arousal",
                    'ONNX Runtime is not installed (pip install "affectfuse[onnx]")' if no_ort else ""),
        ModelStatus("voice", VOICE_MODEL, vw is not None, vw or str(model_dir(VOICE_MODEL)), voice.licence,
                    voice.non_commercial, "no voice columns"),
        ModelStatus("face AU", PYFEAT_MODEL, pw is not None and not no_timm, pw or str(model_dir(PYFEAT_MODEL)),
                    pf.licence, pf.non_commercial, "no action-unit columns and no py-feat valence / arousal",
                    "timm is not installed (pip install \"affectfuse[timm]\")" if no_timm else ""),
    ]


@contextlib.contextmanager
def models_env(folder: str | Path | None) -> Iterator[None]:
    """``$AFFECTFUSE_MODELS`` set to ``folder`` for the duration (worker processes inherit it)."""
    if folder is None:
        yield
        return
    old = os.environ.get(MODELS_ENV)
    os.environ[MODELS_ENV] = str(Path(folder).expanduser().resolve())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(MODELS_ENV, None)
        else:
            os.environ[MODELS_ENV] = old


def _hash_record(path: Path, recorded: dict[str, Any] | None = None) -> dict[str, Any]:
    rec = recorded or {}
    sha = rec.get("sha256")
    if sha is None and path.is_file() and path.stat().st_size <= _FULL_HASH:
        sha = sha256_file(path)
    return {"path": str(path), "sha256": sha, "verified": rec.get("verified")}


def _face_weights() -> dict[str, Any]:
    m = CATALOGUE[FACE_MODEL]
    p = model_dir(FACE_MODEL) / m.files[0]
    rec = read_manifest(FACE_MODEL).get("files", {}).get(m.files[0])
    return {**_hash_record(p, rec), "source": m.urls[0][0], "revision": None}


def _hub_weights(name: str) -> dict[str, Any]:
    """The weights record of a hub model: its fetched folder's file (manifest SHA-256 and revision), else the
    Hugging Face cache's (blob name as SHA-256, snapshot as revision)."""
    m = CATALOGUE[name]
    if is_fetched(name):
        d = model_dir(name)
        man = read_manifest(name)
        w = next(d / f for f in m.weights_choice if (d / f).is_file())
        return {**_hash_record(w, man.get("files", {}).get(w.name)), "source": f"https://huggingface.co/{m.source}",
                "revision": man.get("revision")}
    snap = _hub_snapshot(m.source)
    w = next(snap / f for f in m.weights_choice if (snap / f).exists())
    blob = Path(os.path.realpath(w)).name  # the hub cache names an LFS file's blob by its SHA-256
    sha = blob if len(blob) == 64 and all(c in "0123456789abcdef" for c in blob) else None
    return {"path": str(w), "sha256": sha, "verified": None, "source": m.source, "revision": snap.name}


def _faceapi_weights() -> dict[str, Any]:
    from affectfuse.assets import ASSETS, asset_path

    return {**_hash_record(asset_path("face-api", "face_expression_model.bin")),
            "source": f"npm {ASSETS['face-api'].package}", "revision": None}


def _silero() -> dict[str, Any] | None:
    """The Silero VAD weights record (the installed ``silero-vad`` package's file, else the ``silero-vad`` asset), or
    None when neither can be had."""
    from importlib.metadata import PackageNotFoundError, version

    from affectfuse.assets import ASSETS
    from affectfuse.extractors.audio.vad import silero_jit_path

    try:
        p = silero_jit_path()
    except FileNotFoundError:
        return None
    try:
        source = f"PyPI silero-vad=={version('silero-vad')}"
    except PackageNotFoundError:  # the asset: the same file out of the PyPI wheel, SHA-256 checked
        source = f"PyPI {ASSETS['silero-vad'].package} (asset silero-vad)"
    return {**_hash_record(p), "source": source, "revision": None}


def detector_record(name: str) -> dict[str, Any]:
    from affectfuse.io.faces import create_face_detector

    cfg = dict(create_face_detector(name).config)
    lic = "Apache-2.0 (MediaPipe face detection models)" if cfg.get("name") == "mediapipe" else \
        "see the detector's package"
    return {"model": f"face detector {cfg.get('name', name)}", "extractor": None, "licence": lic,
            "weights": {"config": cfg}}


def face_record() -> dict[str, Any]:
    """``{model, extractor, licence, weights}`` of the HSEmotion model in the models folder."""
    m = CATALOGUE[FACE_MODEL]
    return {"model": FACE_MODEL, "extractor": "hsemotion", "licence": m.licence, "weights": _face_weights()}


def _voice_weights() -> dict[str, Any]:
    return _hub_weights(VOICE_MODEL)


def faceapi_record() -> dict[str, Any]:
    """The same for the offline default's face-api expression net."""
    from affectfuse.assets import ASSETS

    return {"model": "face-api FaceExpressionNet (offline default)", "extractor": "faceapi_expression",
            "licence": f"MIT ({ASSETS['face-api'].package})", "weights": _faceapi_weights()}


def voice_record() -> dict[str, Any]:
    """The same for the audEERING model (its folder, or the Hugging Face cache)."""
    m = CATALOGUE[VOICE_MODEL]
    return {"model": VOICE_MODEL, "extractor": "audeering_dim", "licence": m.licence, "weights": _voice_weights()}


def pyfeat_record() -> dict[str, Any]:
    """The same for py-feat's multitask model (its folder, or the Hugging Face cache)."""
    m = CATALOGUE[PYFEAT_MODEL]
    return {"model": PYFEAT_MODEL, "extractor": "pyfeat_multitask", "licence": m.licence,
            "weights": _hub_weights(PYFEAT_MODEL)}


def silero_record() -> dict[str, Any] | None:
    """The same for Silero VAD, or None when its weights can be had neither from the package nor as the asset."""
    w = _silero()
    return None if w is None else {"model": "Silero VAD", "extractor": "silero_vad", "licence": "MIT (silero-vad)",
                                   "weights": w}
