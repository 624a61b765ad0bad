"""py-feat's multitask face model (``Detectorv2``): 20 AU probabilities, 7 emotions, valence and arousal per face.

The model is py-feat's current AU / emotion / valence-arousal detector: ``face_multitask_v28.safetensors`` of the hub
repository ``py-feat/face_multitask_v2`` (``affectfuse fetch-models pyfeat-multitask-v28``), a ConvNeXt-V2-tiny
backbone (timm) with ME-GraphAU-style AU heads, an emotion / valence-arousal head and gaze, head-pose, 478-point mesh
and blendshape heads. Its **weights are for non-commercial research only** (py-feat's ``LICENSES/PYFEAT-V2.md``: the
CC-BY-NC-4.0 ConvNeXt-V2 ImageNet weights it was initialised from, Gaze360 / ETH-XGaze terms, img2pose as a
CC-BY-NC-4.0 teacher); the licence is recorded in the extractor's identity and logged when the model loads.

**The network is py-feat's own code**: the MIT files ``feat/multitask/{__init__,model_v2,heads_v3,heads_v26}.py`` of
the PyPI wheel ``py-feat==2.1.5``, fetched as the asset ``pyfeat-multitask`` (SHA-256 pinned; checked again before
they are executed) and run as the modules ``feat.multitask.*`` *without* py-feat's ``feat/__init__.py`` or any other
part of the package (whose metadata pulls torchcodec and others that break next to a CPU torch). They import only
torch, timm and ``torchvision.ops.roi_align`` (``pip install 'affectfuse[timm]'``). While they are imported or run
they sit in ``sys.modules`` under ``feat``, ``feat.multitask``, ...; whatever was there before (an installed py-feat)
is put back afterwards.

Loading follows py-feat's ``MultitaskModel`` (``feat/multitask/inference.py``): the ``ModelV2Config`` is the JSON of
the safetensors metadata key ``config``, filtered to the dataclass's fields, built with ``pretrained=False`` (the file
holds every weight); the state dict must match exactly (missing or unexpected keys are an error naming the file). The
file is read with ``safetensors`` only; pickles (py-feat's legacy ``.pt``) are refused. Columns follow the
checkpoint's head sizes as py-feat does: 20 AUs / 7 emotions (v2.4 and later, the shipped model) or 24 / 8 (v2.3).

Outputs (``output=``), in py-feat's Fex column names:

* ``"au_emotion"`` (default, 27 columns) — the AU probabilities ``AU01`` ... ``AU43`` (``p_au``: the SC head's
  cosine scores, clamped to [0, 1]), then the softmax of the emotion logits ``Neutral, Happy, Sad, Surprise, Fear,
  Disgust, Anger``: the 20 AU activations + 7 emotion scores of ViPER's FAU stream (§3.4);
* ``"au"`` — the AU probabilities only; ``"va"`` — ``valence, arousal`` (tanh, in [-1, 1]);
* ``"all"`` — AUs, emotions, valence, arousal (29 columns).

Rows without a face are invalid (the extraction's mask), never zeros-as-data. The whole network runs as in py-feat (its
forward pass computes every head; the gaze, pose, mesh and blendshape outputs are not kept). py-feat's v2.6
``gaze_eye_roi`` flag uses ``torchvision.ops.roi_align``; where torchvision's compiled ops do not load (a CUDA
torchvision next to a CPU torch) torchvision's own pure-torch ``roi_align`` runs instead. The model runs in float32
(py-feat's default on the CPU; on CUDA py-feat autocasts to bfloat16, which it reports to match float32 within model
noise).

**Pre-processing.** py-feat (``Detectorv2.detect_faces`` + ``MultitaskModel.preprocess``) cuts a 256×256 chip with
``extract_face_square_pad_torch(frame / 255, box, face_size=256, expand_bbox=1.2)`` — the square of side
``1.2 × max(w, h)`` centred on the RetinaFace box, sampled bilinearly (``grid_sample``), with off-frame pixels
*reflected* — then resizes the whole chip (no centre crop) to 224 with antialiased bilinear interpolation and applies
the ImageNet mean / std. Here the extractor asks for 256×256 face crops (:class:`InputContract` ``image_size=256``)
and does the rest exactly as py-feat (:func:`pyfeat_preprocess`: /255, bilinear to 256 if a crop has another size,
antialiased bilinear to 224, ImageNet normalisation). The crop itself is affectfuse's
(:func:`affectfuse.io.faces.crop_faces`), which differs from py-feat's chip in these ways:

* framing: py-feat's 1.2× square is ``face_margin=0.1`` (``affectfuse extract --margin 0.1``; side
  ``max(w, h) × (1 + 2 × 0.1)``, rounded to whole pixels); the extraction default is 0.25 (1.5×), so set it;
* the box comes from affectfuse's face detector (MediaPipe BlazeFace by default, or MTCNN), not RetinaFace, whose
  boxes sit differently on the face;
* off-frame parts of the square are black here, reflected in py-feat (the v2.5+ weights were trained on reflected
  chips; this matters only for faces at the frame's edge);
* the window is cut at whole pixels and resized with OpenCV (area when shrinking, bilinear when enlarging) into a
  uint8 chip, where py-feat samples the sub-pixel square bilinearly into a float chip.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
import sys
import threading
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from affectfuse.extractors._catalogue import CATALOGUE, announce_licence, missing_model_error, model_dir, verify_fetched
from affectfuse.extractors._torch_utils import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CheckedConfig,
    batch_slices,
    check_batch_size,
    check_choice,
    config_error,
    file_fingerprint,
    on_valid_rows,
    require_images,
)
from affectfuse.extractors.base import Extractor, ExtractorInput, InputContract, register_extractor, runtime

__all__ = ["PYFEAT_AUS", "PYFEAT_AUS_20", "PYFEAT_EMOTIONS", "PYFEAT_EMOTIONS_7", "PYFEAT_MODEL", "PyFeatMultitask",
           "PyFeatMultitaskConfig", "pyfeat_modules", "pyfeat_namespace", "pyfeat_preprocess", "read_pyfeat_config",
           "load_pyfeat_model"]

#: py-feat's 24 AUs (``feat.multitask.model_v2.AU_NAMES``, the v2.3 head).
PYFEAT_AUS: tuple[str, ...] = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU11", "AU12", "AU14",
                               "AU15", "AU16", "AU17", "AU18", "AU20", "AU23", "AU24", "AU25", "AU26", "AU27", "AU28",
                               "AU43", "AU45")
#: the 20 AUs of the v2.4+ head, the shipped model (``AU_NAMES_V24``: without AU16, AU18, AU27, AU45).
PYFEAT_AUS_20: tuple[str, ...] = tuple(a for a in PYFEAT_AUS if a not in ("AU16", "AU18", "AU27", "AU45"))
#: py-feat's 8 emotions (``feat.multitask.EMOTION_NAMES``, the v2.3 head).
PYFEAT_EMOTIONS: tuple[str, ...] = ("Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt")
#: the 7 of the v2.4+ head (``EMOTION_NAMES_V24``: without Contempt).
PYFEAT_EMOTIONS_7: tuple[str, ...] = PYFEAT_EMOTIONS[:7]
#: the catalogue name of the published checkpoint (``affectfuse fetch-models pyfeat-multitask-v28``).
PYFEAT_MODEL = "pyfeat-multitask-v28"

_ASSET = "pyfeat-multitask"
_FILES = ("heads_v3.py", "heads_v26.py", "model_v2.py", "__init__.py")  # in the order they are executed
_CHIP = 256  # py-feat's CHIP_SIZE: extract_face_square_pad_torch(face_size=256)
_MODEL_INPUT = 224  # py-feat's MODEL_INPUT: the chip is resized (not cropped) to this
_OUTPUTS = ("au_emotion", "au", "va", "all")
_PICKLES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle", ".tar")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_UNKNOWN_LICENCE = "unknown (a checkpoint given by path or hub id: check its publisher's terms)"
_LOCK = threading.RLock()
_MODULES: dict[str, types.ModuleType] = {}


# -- py-feat's modules ----------------------------------------------------------------------------
def _import_timm() -> None:
    from affectfuse._compat import import_timm

    try:
        import_timm()  # timm imports torchvision, which needs affectfuse's shim next to a CPU torch
    except ImportError as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0]
        raise ImportError("extractor 'pyfeat_multitask' builds py-feat's ConvNeXt-V2 model with timm and torchvision: "
                          f"pip install 'affectfuse[timm]' ({reason})") from None


def pyfeat_modules() -> dict[str, types.ModuleType]:
    """py-feat's ``feat.multitask`` modules, executed from the ``pyfeat-multitask`` asset (once per process).

    Each file's SHA-256 is checked against the asset's pin before it runs. ``sys.modules`` is left as it was.

    Returns:
        ``{"feat": ..., "feat.multitask": ..., "feat.multitask.model_v2": ..., ...}``.

    Raises:
        ImportError: timm / torchvision are not installed (the message names the extra).
        FileNotFoundError: the asset is not fetched and cannot be (the message says how).
        RuntimeError: a file in the cache differs from the pinned one.
    """
    with _LOCK:
        if _MODULES:
            return dict(_MODULES)
        from affectfuse.assets import ASSETS, asset_path

        _import_timm()
        pins = dict(ASSETS[_ASSET].sha256)
        sources = {}
        for f in _FILES:
            p = asset_path(_ASSET, f)
            data = p.read_bytes()
            got = hashlib.sha256(data).hexdigest()
            if got != pins[f]:
                raise RuntimeError(f"{p} has SHA-256 {got}, expected {pins[f]} (py-feat 2.1.5's file); fetch it again "
                                   f"with `affectfuse fetch-assets --force {_ASSET}`")
            sources[f] = (p, data)
        from importlib.machinery import ModuleSpec

        root = types.ModuleType("feat", "bare stand-in for py-feat's package: only feat.multitask, from its files")
        root.__path__ = []
        root.__spec__ = ModuleSpec("feat", None, is_package=True)
        mods: dict[str, types.ModuleType] = {"feat": root}
        for f in ("__init__.py", *_FILES[:-1]):
            name = "feat.multitask" if f == "__init__.py" else f"feat.multitask.{f[:-3]}"
            m = types.ModuleType(name)
            m.__file__ = str(sources[f][0])
            m.__spec__ = ModuleSpec(name, None, origin=m.__file__, is_package=f == "__init__.py")
            if f == "__init__.py":
                m.__path__ = []  # a package that finds nothing: only these pinned files are ever run
            m.__package__ = "feat.multitask"
            mods[name] = m
        root.multitask = mods["feat.multitask"]
        with _swapped(mods):
            for f in _FILES:
                name = "feat.multitask" if f == "__init__.py" else f"feat.multitask.{f[:-3]}"
                path, data = sources[f]
                exec(compile(data, str(path), "exec"), mods[name].__dict__)  # noqa: S102 - the pinned MIT files
                if name != "feat.multitask":
                    setattr(mods["feat.multitask"], f[:-3], mods[name])
        _MODULES.update(mods)
        return dict(_MODULES)


_ABSENT = object()


@contextlib.contextmanager
def _swapped(mods: dict[str, types.ModuleType]) -> Iterator[None]:
    saved = {k: sys.modules.get(k, _ABSENT) for k in mods}
    sys.modules.update(mods)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is _ABSENT:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v  # type: ignore[assignment]


@contextlib.contextmanager
def pyfeat_namespace() -> Iterator[dict[str, types.ModuleType]]:
    """py-feat's modules in ``sys.modules`` as ``feat.multitask.*`` for the duration (their lazy imports need it);
    what was there before is restored. Yields :func:`pyfeat_modules`."""
    mods = pyfeat_modules()
    with _LOCK, _swapped(mods):
        yield mods


# -- the checkpoint -------------------------------------------------------------------------------
def read_pyfeat_config(path: str | Path) -> dict[str, Any]:
    """The saved ``ModelV2Config`` of a py-feat multitask safetensors file (its metadata key ``config``, JSON).

    Only the file's header is read.

    Raises:
        ValueError: not a safetensors file, no ``config`` in its metadata, or not a JSON object (the message names
            the file).
    """
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{p}: not a readable safetensors file ({e})") from None
    if "config" not in meta:
        raise ValueError(f"{p}: the safetensors metadata has no 'config' (keys: {sorted(meta) or 'none'}); expected "
                         "py-feat's multitask checkpoint, whose ModelV2Config is JSON under metadata['config']")
    try:
        cfg = json.loads(meta["config"])
    except ValueError as e:
        raise ValueError(f"{p}: metadata['config'] is not JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{p}: metadata['config'] is a JSON {type(cfg).__name__}, expected an object of "
                         "ModelV2Config fields")
    return cfg


def _head_sizes(saved: dict[str, Any], path: Path | str) -> tuple[int, int]:
    """``(n_au, n_emotion)`` of a saved config (ModelV2Config's defaults 24 / 8 where absent)."""
    n_au, n_emo = int(saved.get("n_au", len(PYFEAT_AUS))), int(saved.get("n_emotion", len(PYFEAT_EMOTIONS)))
    if n_au not in (20, 24) or n_emo not in (7, 8):
        raise ValueError(f"{path}: the checkpoint has {n_au} AUs and {n_emo} emotions; py-feat names only 20 or 24 "
                         "AUs and 7 or 8 emotions")
    return n_au, n_emo


def load_pyfeat_model(path: str | Path, device: str = "cpu") -> tuple[Any, Any]:
    """py-feat's ``MEGraphAUv2`` with the weights of a safetensors checkpoint, as ``MultitaskModel`` loads it.

    The saved config is filtered to ``ModelV2Config``'s fields, ``pretrained=False``; every weight must be in the
    file and every tensor of the file must be a weight (else ``ValueError``). The model is in eval mode, without
    gradients, on ``device``; call it inside :func:`pyfeat_namespace` (its gaze head imports lazily).

    Returns:
        ``(model, cfg)``, cfg the ``ModelV2Config``.

    Raises:
        ValueError: a pickle / non-safetensors file, no config, or the weights do not match the architecture.
    """
    import torch
    from safetensors.torch import load_file

    p = Path(path)
    if p.suffix.lower() != ".safetensors":
        raise ValueError(_pickle_refusal(p) if p.suffix.lower() in _PICKLES else
                         f"{p}: expected a .safetensors file (py-feat's face_multitask_v28.safetensors)")
    saved = read_pyfeat_config(p)
    _head_sizes(saved, p)
    with pyfeat_namespace() as mods:
        mv2 = mods["feat.multitask.model_v2"]
        valid = set(mv2.ModelV2Config.__dataclass_fields__)
        kept = {k: v for k, v in saved.items() if k in valid and k not in ("pretrained", "use_head_v2")}
        try:
            cfg = mv2.ModelV2Config(**kept, pretrained=False, use_head_v2=saved.get("use_head_v2", False))
            model = mv2.MEGraphAUv2(cfg)
        except Exception as e:  # noqa: BLE001 - e.g. a backbone name timm does not know
            raise ValueError(f"{p}: cannot build py-feat's model from its config ({type(e).__name__}: {e})") from None
    state = load_file(str(p), device="cpu")
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shapes that differ from the architecture the config describes
        first = str(e).strip().splitlines()
        raise ValueError(f"{p}: the weights do not fit the architecture of its config: "
                         f"{' '.join(x.strip() for x in first[:3])}") from None
    if missing or unexpected:
        parts = [f"lacks {len(missing)} weight(s) (e.g. {', '.join(sorted(missing)[:3])})"] if missing else []
        if unexpected:
            parts.append(f"has {len(unexpected)} unknown tensor(s) (e.g. {', '.join(sorted(unexpected)[:3])})")
        raise ValueError(f"{p}: the checkpoint {' and '.join(parts)}; expected every weight of py-feat's MEGraphAUv2 "
                         f"for its saved config (backbone {cfg.backbone!r}) and nothing else")
    model.eval().requires_grad_(False)
    return model.to(device), cfg


def _pickle_refusal(p: Path) -> str:
    return (f"{p}: a {p.suffix} file is a pickle, which is never loaded (it can run code); py-feat distributes its "
            "multitask weights as face_multitask_v28.safetensors — use that, or save a state dict with "
            "safetensors.torch.save_file(state, path, metadata={'config': json.dumps(config)})")


def pyfeat_preprocess(images: np.ndarray, device: str = "cpu") -> "Any":
    """RGB uint8 face chips → the network input, as py-feat's ``MultitaskModel.preprocess``.

    /255; chips that are not 256×256 are first resized to it (bilinear, as py-feat); then the whole chip is resized to
    224 (bilinear, antialiased: torchvision's ``resize(..., antialias=True)``) and normalised with the ImageNet mean /
    std.

    Shape:
        images ``(N, H, W, 3)`` uint8 → returns ``(N, 3, 224, 224)`` float32 tensor.
    """
    import torch
    import torch.nn.functional as F

    a = np.asarray(images)
    if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise ValueError(f"pyfeat_multitask expects uint8 RGB chips (N, H, W, 3), got {a.shape} {a.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(a)).to(device).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W)
    if x.shape[-2:] != (_CHIP, _CHIP):
        x = F.interpolate(x, size=(_CHIP, _CHIP), mode="bilinear", align_corners=False)
    x = F.interpolate(x, size=(_MODEL_INPUT, _MODEL_INPUT), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


# -- the extractor --------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class PyFeatMultitaskConfig(CheckedConfig):
    """Parameters of :class:`PyFeatMultitask`.

    Attributes:
        model: the catalogue name ``pyfeat-multitask-v28`` (default: the folder ``affectfuse fetch-models`` fills,
            else the hub file in the Hugging Face cache), a hub id (``py-feat/face_multitask_v2``: read from the
            Hugging Face cache, downloaded there when missing and the hub can be reached), a local folder holding
            the ``.safetensors`` file, or the file itself (paths are stored absolute).
        file: the ``.safetensors`` file in a hub repository or folder (default ``face_multitask_v28.safetensors``;
            in a folder without it, its only ``.safetensors`` file).
        output: ``"au_emotion"`` (AU probabilities + emotion probabilities, default), ``"au"``, ``"va"`` (valence,
            arousal) or ``"all"`` (AUs, emotions, valence, arousal).
        pad_to: 0 (default: the outputs as they are) or a width to reach with constant zero columns ``pad_1``,
            ``pad_2``, ... after them: ViPER's authors zero-pad the 27 AU + emotion values to 32 (§3.4), which makes
            their per-frame tokens 768 + 512 + 768 + 32 = 2080 wide; ``pad_to=32`` reproduces that layout.
        batch_size: faces per forward pass (not in the identity).
        device: torch device (not in the identity).
    """

    model: str = PYFEAT_MODEL
    file: str | None = None
    output: str = "au_emotion"
    pad_to: int = 0
    batch_size: int = runtime(16)
    device: str = runtime("cpu")

    def __post_init__(self) -> None:
        super().__post_init__()
        p = Path(self.model).expanduser()
        if self.model not in CATALOGUE and p.exists():
            object.__setattr__(self, "model", str(p.resolve()))

    # -- where the weights are ------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """``"catalogue"``, ``"file"``, ``"folder"``, ``"hub"`` or ``"missing"`` (a path that does not exist)."""
        if self.model in CATALOGUE:
            return "catalogue"
        p = Path(self.model)
        if p.is_file():
            return "file"
        if p.is_dir():
            return "folder"
        looks_local = p.is_absolute() or self.model.startswith((".", "~")) or p.suffix.lower() in (".safetensors",
                                                                                                  *_PICKLES)
        return "hub" if _HUB_ID.fullmatch(self.model) and not looks_local else "missing"

    @property
    def entry(self):
        """The catalogue entry (by name, or by its hub id), or None."""
        if self.model in CATALOGUE:
            return CATALOGUE[self.model]
        return next((m for m in CATALOGUE.values() if m.kind == "hub" and m.source == self.model
                     and m.extractor == "pyfeat_multitask"), None)

    @property
    def file_name(self) -> str:
        """The checkpoint's file name."""
        if self.kind == "file":
            return Path(self.model).name
        if self.file is not None:
            return self.file
        if self.kind == "folder":
            d = Path(self.model)
            default = CATALOGUE[PYFEAT_MODEL].weights_choice[0]
            found = sorted(f.name for f in d.glob("*.safetensors"))
            return default if default in found or len(found) != 1 else found[0]
        entry = self.entry or CATALOGUE[PYFEAT_MODEL]
        return entry.weights_choice[0]

    @property
    def hub_id(self) -> str | None:
        return CATALOGUE[self.model].source if self.kind == "catalogue" else self.model if self.kind == "hub" else None

    def local_path(self) -> Path | None:
        """The checkpoint file on this machine (fetched folder, Hugging Face cache, or the given path), or None."""
        from affectfuse.extractors._hf import hub_file

        kind, f = self.kind, self.file_name
        if kind == "file":
            return Path(self.model)
        if kind == "folder":
            p = Path(self.model) / f
            return p if p.is_file() else None
        if kind == "catalogue":
            p = model_dir(self.model) / f
            if p.is_file():
                return p
        return hub_file(self.hub_id, f) if self.hub_id is not None else None

    @functools.cached_property
    def saved_config(self) -> dict[str, Any] | None:
        """The checkpoint's saved ``ModelV2Config`` (header only), or None when the file is not on this machine."""
        p = self.local_path()
        return None if p is None else read_pyfeat_config(p)

    @property
    def head_sizes(self) -> tuple[int, int]:
        """``(n_au, n_emotion)``: the checkpoint's, or the published model's 20 / 7 before it is fetched."""
        saved = self.saved_config
        return (len(PYFEAT_AUS_20), len(PYFEAT_EMOTIONS_7)) if saved is None else _head_sizes(saved, self.local_path())

    @property
    def licence(self) -> str:
        """The catalogue's licence for the published model (by name, hub id, or a local copy's file name)."""
        entry = self.entry
        if entry is None and self.kind in ("file", "folder"):
            entry = next((m for m in CATALOGUE.values() if m.extractor == "pyfeat_multitask"
                          and self.file_name in m.weights_choice), None)
        return entry.licence if entry is not None else _UNKNOWN_LICENCE

    @functools.cached_property
    def fingerprint(self) -> str | None:
        """:func:`file_fingerprint` of a local file / folder's checkpoint (catalogue and hub models: None)."""
        if self.kind not in ("file", "folder"):
            return None
        p = self.local_path()
        return None if p is None else file_fingerprint(p)

    def validate(self) -> "PyFeatMultitaskConfig":
        check_choice(self, "output", _OUTPUTS)
        check_batch_size(self)
        kind, suffix = self.kind, Path(self.model).suffix.lower()
        if self.file is not None and not self.file.endswith(".safetensors"):
            raise config_error(self, "file", "the name of a .safetensors file", self.file)
        if kind in ("file", "missing") and suffix in _PICKLES:
            raise ValueError(f"PyFeatMultitaskConfig.model: {_pickle_refusal(Path(self.model))}")
        if kind == "file" and suffix != ".safetensors":
            raise config_error(self, "model", "a .safetensors file (py-feat's face_multitask_v28.safetensors)",
                               self.model)
        if kind == "missing":
            raise FileNotFoundError(f"PyFeatMultitaskConfig.model: {self.model}: no such file or folder; expected the "
                                    f"catalogue name {PYFEAT_MODEL!r}, a hub id such as 'py-feat/face_multitask_v2', a "
                                    "folder holding the .safetensors checkpoint, or the file")
        if kind == "folder" and self.local_path() is None:
            found = sorted(f.name for f in Path(self.model).glob("*.safetensors"))
            raise FileNotFoundError(f"PyFeatMultitaskConfig.model: {self.model} holds no {self.file_name}"
                                    + (f" (its .safetensors files: {', '.join(found)}; name one with file=...)"
                                       if found else " and no other .safetensors file"))
        _ = self.head_sizes, self.fingerprint  # a local file without config fails now, not at the first batch
        n_au, n_emo = self.head_sizes
        width = {"au_emotion": n_au + n_emo, "au": n_au, "va": 2, "all": n_au + n_emo + 2}[self.output]
        if not isinstance(self.pad_to, int) or isinstance(self.pad_to, bool) or (self.pad_to and self.pad_to < width):
            raise config_error(self, "pad_to", f"0 or an int >= the {width} columns of output={self.output!r}",
                               self.pad_to)
        return self

    def identity(self) -> dict[str, Any]:
        entry = self.entry
        weights: dict[str, Any] = {"source": entry.source if entry is not None else self.model,
                                   "file": self.file_name, "revision": entry.revision if entry is not None else None,
                                   "sha256": entry.pinned(self.file_name) if entry is not None else None,
                                   "licence": self.licence}
        if self.fingerprint is not None:
            weights["fingerprint"] = self.fingerprint
        return {**super().identity(), "weights": weights}


@register_extractor
class PyFeatMultitask(Extractor):
    """py-feat's multitask model (Detectorv2): AU probabilities, emotion probabilities, valence / arousal per face.

    Parameters: :class:`PyFeatMultitaskConfig`. Columns (py-feat's names): ``AU01`` ... ``AU43`` then ``Neutral`` ...
    ``Anger`` (``"au_emotion"``), the AUs (``"au"``), ``valence, arousal`` (``"va"``), or all of them (``"all"``).
    Input: face crops ``(N, 256, 256, 3)`` uint8 RGB (other sizes are resized as py-feat does); rows with
    ``valid == False`` are not computed.

    Shape:
        output ``(N, 27)`` (``au_emotion``), ``(N, 20)`` (``au``), ``(N, 2)`` (``va``), ``(N, 29)`` (``all``) float32
        for the published model (v2.3 checkpoints: 24 AUs and 8 emotions).
    """

    name = "pyfeat_multitask"
    weights_from = "fetch"
    modality = "fau"
    Config = PyFeatMultitaskConfig

    def __init__(self, config: PyFeatMultitaskConfig | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        n_au, n_emo = self.config.head_sizes
        self._aus = PYFEAT_AUS_20 if n_au == 20 else PYFEAT_AUS
        self._emotions = PYFEAT_EMOTIONS_7 if n_emo == 7 else PYFEAT_EMOTIONS
        self.dim = len(self.columns)
        self.contract = InputContract(kind="face", image_size=_CHIP, mean=IMAGENET_MEAN, std=IMAGENET_STD)
        self.net: Any = None
        self.path: Path | None = None
        self.model_config: Any = None  # py-feat's ModelV2Config of the loaded checkpoint

    @property
    def columns(self) -> list[str]:
        aus, emo, va = list(self._aus), list(self._emotions), ["valence", "arousal"]
        cols = {"au_emotion": aus + emo, "au": aus, "va": va, "all": aus + emo + va}[self.config.output]
        return cols + [f"pad_{i + 1}" for i in range(max(self.config.pad_to - len(cols), 0))]

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "licence": self.config.licence}

    def _resolve(self) -> Path:
        """The local checkpoint file; a hub id missing from the Hugging Face cache is downloaded there."""
        c = self.config
        p = c.local_path()
        if p is not None:
            if c.kind == "catalogue" and p.parent == model_dir(c.model):
                verify_fetched(c.model, p.name, p)
            return p
        if c.kind == "catalogue":
            raise missing_model_error(c.model)
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(c.model, c.file_name))
        except Exception as e:  # noqa: BLE001 - offline, unknown repository or file: one line naming them
            why = (str(e).splitlines() or [""])[0][:200]
            raise FileNotFoundError(f"extractor {self.name!r}: {c.file_name} of the hub repository {c.model} is not in "
                                    f"the Hugging Face cache and could not be downloaded ({type(e).__name__}: {why}); "
                                    f"fetch it with `affectfuse fetch-models {PYFEAT_MODEL}` or pass a local "
                                    ".safetensors file") from None

    def _load(self) -> None:
        c = self.config
        path = self._resolve()
        model, cfg = load_pyfeat_model(path, c.device)
        names = pyfeat_modules()["feat.multitask"]
        aus = tuple(names.AU_NAMES_V24 if cfg.n_au == 20 else names.AU_NAMES)
        emotions = tuple(names.EMOTION_NAMES_V24 if cfg.n_emotion == 7 else names.EMOTION_NAMES)
        if (aus, emotions) != (self._aus, self._emotions):
            raise ValueError(f"{path}: the checkpoint has {len(aus)} AUs and {len(emotions)} emotions, but extractor "
                             f"{self.name!r} was created for {len(self._aus)} and {len(self._emotions)} (its columns); "
                             "create it again now that the file is on this machine")
        announce_licence(f"py-feat multitask model {c.model}", c.licence)
        self.net, self.path, self.model_config = model, path, cfg

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The configured outputs for RGB uint8 face chips of any size.

        Shape:
            images ``(N, H, W, 3)``; returns ``(N, dim)`` float32.
        """
        import torch

        self.load()
        c = self.config
        out = np.zeros((len(images), self.dim), np.float32)
        with torch.inference_mode(), pyfeat_namespace():
            for sl in batch_slices(len(images), c.batch_size):
                y = self.net(pyfeat_preprocess(images[sl], c.device))
                au = y["p_au"].float()  # (B, n_au) in [0, 1]
                emo = torch.softmax(y["emotion_logits"].float(), dim=-1)  # (B, n_emotion)
                va = y["va"].float()  # (B, 2) in [-1, 1]
                parts = {"au_emotion": (au, emo), "au": (au,), "va": (va,), "all": (au, emo, va)}[c.output]
                y = torch.cat(parts, dim=1).cpu().numpy()  # (B, width); columns past it stay the zeros of pad_to
                out[sl, : y.shape[1]] = y
        return out

    def forward(self, batch: ExtractorInput) -> np.ndarray:
        """Shape: ``batch.images (N, 256, 256, 3)`` uint8 → ``(N, dim)`` float32 (zeros for invalid rows)."""
        images = require_images(batch, self.name, _CHIP)
        return on_valid_rows(batch, images, self.dim, self.predict)
