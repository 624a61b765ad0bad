"""Make torchvision (and so timm) importable next to a CPU-only torch build.

Every torchvision wheel on PyPI links the CUDA torch libraries; next to the CPU build of torch its
``_C.so`` cannot load, and ``torchvision/_meta_registrations.py`` then crashes on import because it
registers fake kernels for ``torchvision::nms`` / ``qnms`` without checking that the operators exist.
``transformers`` imports torchvision whenever it is installed, so the crash also breaks ViT, WavLM,
Perceiver and friends.

:func:`prepare_torchvision` must run before the first ``import torchvision`` in a process;
``affectfuse/__init__.py`` installs an import hook that calls it then (so importing affectfuse costs no torch). Where torchvision's compiled ops load (a matching CUDA or CPU
build), it does nothing. Otherwise it defines the two operator schemas and registers a pure-torch
greedy NMS as their CPU kernel, which is all that timm, torchvision's models/transforms and MTCNN use.
Everything else in ``torchvision.ops`` that needs compiled kernels (``roi_align``, ...) stays missing.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_STATE: dict[str, object] = {"prepared": False, "native": None}


def nms(boxes, scores, iou_threshold: float):
    """Greedy non-maximum suppression in plain torch (same contract as ``torchvision.ops.nms``).

    Args:
        boxes: ``(N, 4)`` float boxes ``(x1, y1, x2, y2)``.
        scores: ``(N,)`` float.
        iou_threshold: boxes overlapping a kept box by more than this IoU are dropped.

    Returns:
        int64 indices of kept boxes, by decreasing score.
    """
    import torch

    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    order = scores.argsort(descending=True)
    keep = []
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    xx1, yy1, xx2, yy2, ar = x1[order], y1[order], x2[order], y2[order], areas[order]
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(order[i])
        w = (torch.minimum(xx2[i], xx2[i + 1 :]) - torch.maximum(xx1[i], xx1[i + 1 :])).clamp(min=0)
        h = (torch.minimum(yy2[i], yy2[i + 1 :]) - torch.maximum(yy1[i], yy1[i + 1 :])).clamp(min=0)
        inter = w * h
        iou = inter / (ar[i] + ar[i + 1 :] - inter).clamp(min=1e-12)
        suppressed[i + 1 :] |= iou > iou_threshold
    return torch.stack(keep).to(torch.int64)


def prepare_torchvision() -> bool | None:
    """Make ``import torchvision`` safe in this process. Idempotent.

    Returns:
        None if torchvision is not installed, True if its compiled ops load natively, False if the
        pure-torch NMS stand-in was installed.
    """
    if _STATE["prepared"]:
        return _STATE["native"]  # type: ignore[return-value]
    _STATE["prepared"] = True
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    if "torchvision" in sys.modules:  # somebody imported it already: it worked, or it is too late
        _STATE["native"] = True
        return True
    import torch

    pkg = Path(list(spec.submodule_search_locations)[0])
    lib = next(iter(sorted(pkg.glob("_C*.so"))), None)
    if lib is not None:
        try:
            torch.ops.load_library(str(lib))
            _STATE["native"] = True
            return True
        except (OSError, RuntimeError):
            pass
    tv = torch.library.Library("torchvision", "DEF")
    tv.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    tv.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    tv.impl("nms", nms, "CPU")
    _STATE["lib"] = tv  # keep the Library object alive
    _STATE["native"] = False
    return False


class _PrepareOnImport:
    """A ``sys.meta_path`` finder that runs :func:`prepare_torchvision` just before the first ``import
    torchvision`` of the process (whoever imports it: transformers, timm, facenet-pytorch, the user), then steps
    aside. So ``import affectfuse`` does not import torch, and torchvision still never crashes."""

    def find_spec(self, name, path=None, target=None):
        if name != "torchvision":
            return None
        uninstall_hook()
        prepare_torchvision()
        return None  # the normal finders import it


_HOOK = _PrepareOnImport()


def install_hook() -> None:
    """Prepare torchvision lazily: on its first import (idempotent; nothing to do once it is imported)."""
    if "torchvision" not in sys.modules and not _STATE["prepared"] and _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)


def uninstall_hook() -> None:
    try:
        sys.meta_path.remove(_HOOK)
    except ValueError:
        pass


def import_torchvision():
    """``import torchvision`` after :func:`prepare_torchvision`, with the NMS stand-in enabled.

    Raises:
        ImportError: torchvision is not installed (``pip install 'affectfuse[timm]'``).
    """
    native = prepare_torchvision()
    if native is None:
        raise ImportError(
            "torchvision is not installed; install it with `pip install 'affectfuse[timm]'` "
            "(affectfuse makes it importable next to a CPU-only torch)"
        )
    import torchvision

    if native is False:
        torchvision.extension._has_ops = lambda: True  # nms now has a CPU kernel
    return torchvision


def import_timm():
    """``import timm`` safely (it imports torchvision).

    Raises:
        ImportError: timm or torchvision is not installed.
    """
    import_torchvision()
    try:
        import timm
    except ImportError as e:
        raise ImportError(f"timm is not installed; install it with `pip install 'affectfuse[timm]'` ({e})") from None
    return timm


def mediapipe_or_port(requested: str, env_var: str, port: str) -> str:
    """What runs a MediaPipe graph: ``"mediapipe"`` (its own solution) or ``port`` (affectfuse's port of it).

    ``requested`` ``"auto"`` defers to ``$env_var``; ``"auto"`` there too takes ``"mediapipe"`` where the package's
    legacy solutions are importable (found without importing them) and ``port`` otherwise.

    Raises:
        ValueError: ``$env_var`` names neither.
    """
    import importlib.util
    import os

    rt = requested if requested != "auto" else os.environ.get(env_var, "auto")
    if rt == "auto":
        try:
            has_mp = importlib.util.find_spec("mediapipe.python.solutions") is not None
        except (ImportError, ValueError):  # a broken mediapipe install
            has_mp = False
        rt = "mediapipe" if has_mp else port
    if rt not in ("mediapipe", port):
        raise ValueError(f"{env_var} must be 'mediapipe', {port!r} or 'auto'; got {rt!r}")
    return rt

