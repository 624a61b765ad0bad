"""What the extractors share: config checks, dtypes, input checks, batching, tensors, weights, base classes.

Everything here is generic (no model-specific code), and each job is done once:

* configs — :class:`CheckedConfig` (fields coerced to their annotated types), the ``check_*`` helpers
  that raise ``ValueError`` naming the field, what was expected and what came, and the mixins
  :class:`WeightsFileConfig` (a local weights file: resolved path + content fingerprint in the identity)
  and :class:`SeededConfig` (a seed that matters only for a random init);
* dtypes — :data:`DTYPES`, :func:`torch_dtype`;
* inputs — :func:`require_images`, :func:`require_clips`, :func:`audio_rows`, :func:`on_valid_rows`;
* batching — :func:`batch_slices`, :func:`grouped_batches`;
* tensors — :func:`images_to_tensor`, :func:`clips_to_tensor`;
* weights — :func:`load_state_dict` (the one weight-file reader: ``.safetensors`` or ``torch.load`` with
  ``weights_only=True``), :func:`load_weights_into`, :func:`file_fingerprint`, :func:`prepare_module`;
* bases — :class:`TorchExtractor` (images / clips through a torch module), :class:`AudioExtractor`
  (audio fragments, row by row) and :class:`TorchAudioExtractor` (audio fragments in equal-length batches).

torch is imported inside the functions so that ``import affectfuse.extractors`` stays fast. A torch
image extractor is a :class:`CheckedConfig` subclass with ``dtype`` / ``batch_size = runtime(32)`` /
``device = runtime("cpu")`` fields whose ``validate`` calls :func:`check_torch_runtime`, and a
:class:`TorchExtractor` whose ``_load`` builds ``self.module`` (with :func:`prepare_module`) and whose
``encode`` maps a normalised mini-batch ``(B, 3, S, S)`` to ``(B, dim)``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import typing
import warnings
from collections.abc import Hashable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from affectfuse.extractors._runtime import BACKENDS, OnnxNet, autocast, load_network
from affectfuse.extractors.base import Extractor, ExtractorConfig, ExtractorInput

if TYPE_CHECKING:  # pragma: no cover
    import torch  # annotations only

__all__ = [  # configs, dtypes, inputs, batching, tensors, weights, bases
    "CheckedConfig", "WeightsFileConfig", "SeededConfig", "config_error", "check_choice", "check_positive",
    "check_batch_size", "check_range", "check_torch_runtime", "DTYPES", "IMAGE_DTYPES", "torch_dtype",
    "batch_slices", "grouped_batches", "require_images", "require_clips", "audio_rows", "on_valid_rows",
    "images_to_tensor", "clips_to_tensor", "load_state_dict", "load_weights_into", "file_fingerprint",
    "fast_cpu_bf16", "prepare_module", "TorchExtractor", "AudioExtractor", "TorchAudioExtractor",
    "IMAGENET_MEAN", "IMAGENET_STD",
]

#: weight dtype names. ``"bfloat16"`` casts the weights (not autocast): about 4x faster at about 1%
#: relative error on a CPU with AMX / AVX512-BF16 (design/platform.md §5.3) or on a GPU, but 5-50x
#: SLOWER than float32 on an AVX2-only CPU (measured on this dev box: MobileNetV2 11x, R(2+1)D-18 48x);
#: :func:`prepare_module` warns there. ``"float16"`` is offered by the audio extractors only.
DTYPES = ("float32", "bfloat16", "float16")
#: the dtypes of the image / clip extractors (float16 convolutions have no fast CPU kernels).
IMAGE_DTYPES = DTYPES[:2]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# -- configs --------------------------------------------------------------------------------------
def config_error(cfg: ExtractorConfig, field: str, expected: str, got: Any) -> ValueError:
    """``ValueError("<Config>.<field> must be <expected>, got <got!r>")``."""
    return ValueError(f"{type(cfg).__name__}.{field} must be {expected}, got {got!r}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _coerce(cfg: ExtractorConfig, name: str, tp: Any, v: Any) -> Any:
    """``v`` as the annotated type ``tp`` (``int``, ``float``, ``bool``, ``str``, optionally ``| None``)."""
    args = typing.get_args(tp)
    if args:
        if v is None and type(None) in args:
            return None
        tp = next(a for a in args if a is not type(None))
    if tp is bool and isinstance(v, (bool, np.bool_)):
        return bool(v)
    if tp is int and _is_number(v) and float(v).is_integer():
        return int(v)
    if tp is float and _is_number(v):
        return float(v)
    if tp is str and isinstance(v, (str, os.PathLike)):
        return os.fspath(v)
    if tp in (bool, int, float, str):
        expected = {bool: "True or False", int: "an int", float: "a number", str: "a string"}[tp]
        raise config_error(cfg, name, expected + (" or None" if args else ""), v)
    return v


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@dataclass(frozen=True, kw_only=True)
class CheckedConfig(ExtractorConfig):
    """An extractor config whose fields are coerced to their annotations on creation.

    ``int`` fields take integral numbers (numpy ones too), ``float`` fields any number, ``bool`` fields
    True / False, ``str`` fields strings and paths; anything else is a ``ValueError`` naming the field.
    So ``sample_rate=16000.0`` is stored (and hashed into the store key) as ``16000`` and a
    ``pathlib.Path`` as its string.
    """

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in fields(self):
            v = getattr(self, f.name)
            new = _coerce(self, f.name, hints.get(f.name, Any), v)
            if new is not v:
                object.__setattr__(self, f.name, new)


def check_choice(cfg: ExtractorConfig, field: str, choices: Sequence[Any]) -> None:
    """Raise unless ``cfg.<field>`` is one of ``choices``."""
    v = getattr(cfg, field)
    if v not in choices:
        names = [repr(c) for c in choices]
        listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        raise config_error(cfg, field, f"one of {listed}", v)


def check_positive(cfg: ExtractorConfig, *names: str, what: str = "> 0") -> None:
    """Raise for the first of ``names`` whose value is not > 0."""
    for k in names:
        v = getattr(cfg, k)
        if not v > 0:
            raise config_error(cfg, k, what, v)


def check_batch_size(cfg: ExtractorConfig) -> None:
    """Raise unless ``cfg.batch_size`` is > 0 (its int type is checked on creation)."""
    check_positive(cfg, "batch_size", what="a positive int")


def check_range(cfg: ExtractorConfig, field: str, lo: float, hi: float, closed: str = "[]") -> None:
    """Raise unless ``lo <= / < cfg.<field> <= / < hi``; ``closed`` is two of ``[ ( ] )``."""
    v = getattr(cfg, field)
    above = v >= lo if closed[0] == "[" else v > lo
    below = v <= hi if closed[1] == "]" else v < hi
    if not (above and below):
        raise config_error(cfg, field, f"in {closed[0]}{lo}, {hi}{closed[1]}", v)


def check_torch_runtime(cfg: ExtractorConfig, dtypes: Sequence[str] = DTYPES) -> None:
    """The ``dtype``, ``batch_size`` (and ``backend``) fields every torch extractor has."""
    check_choice(cfg, "dtype", dtypes)
    check_batch_size(cfg)
    if hasattr(cfg, "backend"):
        check_choice(cfg, "backend", BACKENDS)


def _resolved(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


@dataclass(frozen=True, kw_only=True)
class WeightsFileConfig(CheckedConfig):
    """Mixin of configs with an optional local weights file (the field named by ``weights_field``).

    The path is stored resolved (absolute, ``~`` expanded), and the identity carries the file's
    :func:`file_fingerprint` (computed once per config, when it is validated) so that a file replaced
    under the same path gives a new store key.
    """

    weights_field: typing.ClassVar[str] = "weights"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, self.weights_field, _resolved(getattr(self, self.weights_field)))

    @property
    def weights_file(self) -> str | None:
        return getattr(self, self.weights_field)

    @functools.cached_property
    def fingerprint(self) -> str | None:
        """:func:`file_fingerprint` of the weights file (FileNotFoundError when it is missing)."""
        return None if self.weights_file is None else file_fingerprint(self.weights_file)

    def validate(self) -> "WeightsFileConfig":
        _ = self.fingerprint  # a missing file fails now, not at the first batch
        return self

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        return ident if self.fingerprint is None else {**ident, "fingerprint": self.fingerprint}


@dataclass(frozen=True, kw_only=True)
class SeededConfig(CheckedConfig):
    """Mixin of configs with ``weights`` and ``seed`` fields: the seed is part of the identity only
    when there are no weights (it seeds the random init, which weights replace)."""

    def identity(self) -> dict[str, Any]:
        ident = super().identity()
        if getattr(self, "weights") is not None:
            ident.pop("seed", None)
        return ident


# -- dtypes ---------------------------------------------------------------------------------------
def torch_dtype(dtype: str) -> "torch.dtype":
    """``"float32"`` / ``"bfloat16"`` / ``"float16"`` -> the torch dtype."""
    import torch  # heavy: imported on first use, not with the package

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


# -- batching -------------------------------------------------------------------------------------
def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices covering ``range(n)``, each at most ``batch_size`` long."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def grouped_batches(keys: Sequence[Hashable], batch_size: int) -> Iterator[list[int]]:
    """Positions of ``keys`` grouped by equal key (groups in order of first appearance), in chunks of at
    most ``batch_size`` — rows of one chunk can be stacked without padding."""
    groups: dict[Hashable, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    for idx in groups.values():
        for sl in batch_slices(len(idx), batch_size):
            yield idx[sl]


# -- inputs ---------------------------------------------------------------------------------------
def _describe(batch: ExtractorInput, want: str) -> str:
    x = getattr(batch, want)
    if x is not None:
        return f"{want} {tuple(x.shape)} {x.dtype}"
    given = [f for f in ("images", "clips", "audio") if getattr(batch, f) is not None]
    return f"no {want} ({', '.join(given)} given)" if given else f"no {want}"


def require_images(batch: ExtractorInput, who: str, image_size: int | None = None) -> np.ndarray:
    """The batch's ``images`` after checking kind, rank, channels and dtype.

    Args:
        batch: the extractor input.
        who: the extractor's name (for the message).
        image_size: expected side, only quoted in the message (other sizes are resized by the extractors).

    Returns:
        ``(N, H, W, 3)`` uint8.

    Raises:
        ValueError: ``images`` is missing or is not ``(N, H, W, 3)`` uint8.
    """
    s = image_size or "S"
    x = batch.images
    if x is None or x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise ValueError(
            f"extractor {who!r} needs ExtractorInput.images as uint8 RGB (N, {s}, {s}, 3); "
            f"got {_describe(batch, 'images')}"
        )
    return x


def require_clips(batch: ExtractorInput, who: str, clip_len: int, image_size: int | None = None) -> np.ndarray:
    """The batch's ``clips`` after checking kind, rank, clip length, channels and dtype.

    Returns:
        ``(N, L, H, W, 3)`` uint8 with ``L == clip_len``.

    Raises:
        ValueError: ``clips`` is missing or has the wrong layout.
    """
    s = image_size or "S"
    x = batch.clips
    if x is None or x.ndim != 5 or x.shape[1] != clip_len or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise ValueError(
            f"extractor {who!r} needs ExtractorInput.clips as uint8 RGB (N, {clip_len}, {s}, {s}, 3); "
            f"got {_describe(batch, 'clips')}"
        )
    return x


def audio_rows(who: str, batch: ExtractorInput) -> tuple[list[np.ndarray], np.ndarray]:
    """Check an ``audio_fragment`` batch and cut every row to its real samples.

    Args:
        who: the extractor's name (for error messages).
        batch: must carry ``audio (N, L)`` and (optionally) ``audio_lengths (N,)``; without lengths
            every row is taken as L real samples.

    Returns:
        ``(rows, active)``: ``rows[i]`` is ``audio[i, :lengths[i]]`` as float32 (a view, no copy), and
        ``active (N,)`` bool marks the rows worth computing (length > 0 and not ``valid == False``).

    Raises:
        ValueError: the batch holds another input kind, or the arrays have wrong shapes / lengths.
    """
    if batch.audio is None:
        got = [f"{f} {tuple(getattr(batch, f).shape)}" for f in ("images", "clips") if getattr(batch, f) is not None]
        raise ValueError(
            f"extractor {who!r} needs 'audio_fragment' inputs (ExtractorInput.audio (N, L) float32 mono "
            f"with audio_lengths (N,)); got a batch with {', '.join(got) or 'no data'}"
        )
    audio = np.asarray(batch.audio)
    if audio.ndim != 2:
        raise ValueError(f"extractor {who!r}: ExtractorInput.audio must be (N, L) mono, got shape {audio.shape}")
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"extractor {who!r}: ExtractorInput.audio must be float in [-1, 1], got {audio.dtype}")
    n, length = audio.shape
    if batch.audio_lengths is None:
        lengths = np.full(n, length, np.int64)
    else:
        lengths = np.asarray(batch.audio_lengths).astype(np.int64, copy=False)
        if lengths.shape != (n,):
            raise ValueError(f"extractor {who!r}: audio_lengths must be ({n},) for audio {audio.shape}, got {lengths.shape}")
        if n and (lengths.min() < 0 or lengths.max() > length):
            raise ValueError(
                f"extractor {who!r}: audio_lengths must lie in [0, {length}], got min {lengths.min()} max {lengths.max()}"
            )
    audio = audio.astype(np.float32, copy=False)
    rows = [audio[i, : lengths[i]] for i in range(n)]
    active = lengths > 0
    if batch.valid is not None:
        active &= np.asarray(batch.valid, dtype=bool)
    return rows, active


def on_valid_rows(
    batch: ExtractorInput, arr: np.ndarray, dim: int, fn: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """``fn`` on the rows of ``arr`` that ``batch.valid`` keeps; zeros for the others (never computed).

    Shape:
        ``arr (N, ...)``, ``fn: (M, ...) -> (M, dim)``; returns ``(N, dim)`` float32 (NaN from ``fn`` kept).
    """
    n = len(arr)
    out = np.zeros((n, dim), np.float32)
    rows = np.arange(n) if batch.valid is None else np.flatnonzero(np.asarray(batch.valid, bool))
    if len(rows):
        out[rows] = fn(arr[rows] if len(rows) < n else arr)
    return out


# -- tensors --------------------------------------------------------------------------------------
def _normalise(x: "torch.Tensor", mean: Sequence[float], std: Sequence[float], shape: tuple[int, ...]):
    import torch  # heavy: imported on first use, not with the package

    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(shape)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(shape)
    return (x - m) / s


def images_to_tensor(
    images: np.ndarray,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: "torch.dtype | None" = None,
    device: "str | torch.device" = "cpu",
) -> "torch.Tensor":
    """uint8 RGB images -> normalised float tensor, resized to ``size`` when they are not already.

    ``(x / 255 - mean) / std`` is computed in float32, then cast to ``dtype``. Images of another size
    are resized with bilinear, antialiased interpolation (the pipeline normally delivers ``size``).

    Shape:
        images ``(N, H, W, 3)`` uint8 -> ``(N, 3, size, size)``.
    """
    import torch  # heavy: imported on first use, not with the package
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)  # (N, H, W, 3) uint8
    x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (N, 3, H, W)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    x = _normalise(x, mean, std, (1, 3, 1, 1))  # (N, 3, S, S)
    return x.to(dtype or torch.float32).contiguous()


def clips_to_tensor(
    clips: np.ndarray,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: "torch.dtype | None" = None,
    device: "str | torch.device" = "cpu",
) -> "torch.Tensor":
    """uint8 RGB clips -> normalised float video tensor (channels first, then time).

    Shape:
        clips ``(N, L, H, W, 3)`` uint8 -> ``(N, 3, L, size, size)``.
    """
    import torch  # heavy: imported on first use, not with the package

    n, l_, h, w, _ = clips.shape
    x = images_to_tensor(clips.reshape(n * l_, h, w, 3), size, mean, std, torch.float32, device)  # (N*L, 3, S, S)
    x = x.view(n, l_, 3, size, size).permute(0, 2, 1, 3, 4)  # (N, 3, L, S, S)
    return x.to(dtype or torch.float32).contiguous()


# -- weights --------------------------------------------------------------------------------------
def load_state_dict(path: str | Path, *, strip_prefixes: Iterable[str] = ("module.",)) -> dict[str, Any]:
    """Read a state dict from ``.safetensors`` or a torch file (``weights_only=True``, never pickle).

    The one weight-file reader of the project (extractors and models use it). Wrapped checkpoints
    (``{"state_dict": ...}``, ``{"model": ...}``, ``{"model_state_dict": ...}``, ``{"net": ...}``,
    ``{"model_state": ...}``, ``{"state_dict_ema": ...}``) are unwrapped, and each of ``strip_prefixes``
    (DataParallel's ``module.`` by default) is removed while every key carries it.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds no tensor mapping.
    """
    import torch  # heavy: imported on first use, not with the package

    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{p}: weights file not found")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file  # safetensors needs torch: imported with it

        sd: Any = load_file(str(p))
    else:
        try:
            sd = torch.load(str(p), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001  (re-raised with the file name)
            raise ValueError(f"{p}: cannot read as a torch state dict with weights_only=True ({e})") from e
    for k in ("state_dict", "model_state_dict", "model", "net", "model_state", "state_dict_ema"):
        if isinstance(sd, dict) and isinstance(sd.get(k), dict):
            sd = sd[k]
            break
    if not isinstance(sd, dict) or not sd or not all(torch.is_tensor(v) for v in sd.values()):
        raise ValueError(f"{p}: expected a mapping of parameter names to tensors, got {type(sd).__name__}")
    prefixes = tuple(strip_prefixes)
    changed = True
    while changed:
        changed = False
        for pre in prefixes:
            if all(k.startswith(pre) for k in sd):
                sd = {k[len(pre) :]: v for k, v in sd.items()}
                changed = True
    return sd


def load_weights_into(
    module: "torch.nn.Module",
    state: dict[str, Any],
    where: str | Path,
    ignore_prefixes: Iterable[str] = (),
    *,
    layout: str | None = None,
) -> None:
    """Load ``state`` into ``module`` strictly, except keys under ``ignore_prefixes`` (a classifier head)
    and BatchNorm's ``num_batches_tracked`` (unused at inference, absent from old checkpoints).

    Args:
        layout: names the layout the file should have in the message (``"torchvision ResNet"``).

    Raises:
        ValueError: keys are missing or unexpected, or shapes differ; the message names ``where``.
    """
    ign = tuple(ignore_prefixes)
    state = {k: v for k, v in state.items() if not (ign and k.startswith(ign))}
    own = module.state_dict()

    def counts(k: str) -> bool:
        return not (k.endswith("num_batches_tracked") or (ign and k.startswith(ign)))

    missing = sorted(k for k in own if k not in state and counts(k))
    unexpected = sorted(k for k in state if k not in own and counts(k))
    bad = sorted(k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or bad:
        def few(ks: list[str]) -> str:
            return ", ".join(ks[:5]) + (f" (+{len(ks) - 5} more)" if len(ks) > 5 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {few(unexpected)}")
        if bad:
            parts.append(
                "shape mismatch: " + few([f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in bad])
            )
        what = f"does not match the {layout} layout" if layout else f"weights do not fit {type(module).__name__}"
        raise ValueError(f"{where}: {what}: " + "; ".join(parts))
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def file_fingerprint(path: str | Path, chunk: int = 1 << 20) -> str:
    """A cheap content fingerprint of a weights file: size + SHA-1 of its first and last MiB.

    Goes into extractor params so that a file replaced under the same path gives a new store key.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: weights file not found")
    size = p.stat().st_size
    h = hashlib.sha1()
    with open(p, "rb") as f:
        h.update(f.read(chunk))
        if size > chunk:
            f.seek(max(chunk, size - chunk))
            h.update(f.read(chunk))
    return f"{size}-{h.hexdigest()[:12]}"


def fast_cpu_bf16() -> bool:
    """Whether this CPU has native bfloat16 matrix units (AMX or AVX512-BF16)."""
    import torch  # heavy: imported on first use, not with the package

    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:  # older torch: assume yes, as the measured platform
        return True


def prepare_module(
    module: "torch.nn.Module", dtype: "torch.dtype", device: "str | torch.device" = "cpu", channels_last: bool = False
) -> "torch.nn.Module":
    """eval mode, no gradients, cast to ``dtype`` and moved to ``device`` (channels_last for CNNs).

    Warns (``RuntimeWarning``) when bfloat16 is asked for on a CPU without native bf16 units.
    """
    import torch  # heavy: imported on first use, not with the package

    if dtype == torch.bfloat16 and torch.device(device).type == "cpu" and not fast_cpu_bf16():
        warnings.warn(
            f"bfloat16 {type(module).__name__} on a CPU without AMX/AVX512-BF16 "
            f"({torch.backends.cpu.get_cpu_capability()}) runs 5-50x slower than float32; use dtype='float32' here",
            RuntimeWarning,
            stacklevel=2,
        )
    module.eval().requires_grad_(False)
    module = module.to(device=device, dtype=dtype)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module


# -- base classes ---------------------------------------------------------------------------------
class TorchExtractor(Extractor):
    """Base for torch extractors of images (``face`` / ``frame``) or clips (``clip``).

    The config has ``dtype``, ``batch_size`` and ``device``. Subclasses build ``self.module`` in
    :meth:`_load` and implement :meth:`encode`. :meth:`forward` checks the input against
    ``self.contract``, skips rows marked invalid (their output rows are zeros), converts and normalises
    per mini-batch of ``batch_size`` rows and runs :meth:`encode` under ``torch.inference_mode()``.
    """

    channels_last: bool = False

    def __init__(self, config: ExtractorConfig | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.module: Any = None
        self._onnx: OnnxNet | None = None

    @property
    def torch_dtype(self) -> "torch.dtype":
        return torch_dtype(self.config.dtype)

    def encode(self, x: "torch.Tensor") -> "torch.Tensor":
        """Features of one normalised mini-batch.

        Shape:
            ``(B, 3, S, S)`` (images) or ``(B, 3, L, S, S)`` (clips) -> ``(B, dim)``.
        """
        raise NotImplementedError

    def _tensor(self, a: np.ndarray) -> "torch.Tensor":
        """Shape: ``(B, S, S, 3)`` / ``(B, L, S, S, 3)`` uint8 -> normalised ``(B, 3, S, S)`` / ``(B, 3, L, S, S)``."""
        import torch  # heavy: imported on first use, not with the package

        c, dt, dev = self.contract, self.torch_dtype, self.config.device
        if c.kind == "clip":
            return clips_to_tensor(a, c.image_size, c.mean, c.std, dt, dev)
        x = images_to_tensor(a, c.image_size, c.mean, c.std, dt, dev)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def load(self) -> "TorchExtractor":
        """Load the network on the config's backend (:mod:`affectfuse.extractors._runtime`); idempotent."""
        import torch  # heavy: imported on first use, not with the package

        if not self._loaded:
            c = self.contract
            shape = (2, 3, c.clip_len, c.image_size, c.image_size) if c.kind == "clip" else (2, 3, c.image_size, c.image_size)
            self._onnx = load_network(self, lambda: torch.randn(*shape), {0: "batch"})
            self._loaded = True
        return self

    def _encode_all(self, arr: np.ndarray) -> np.ndarray:
        """:meth:`encode` per mini-batch. Shape: ``(M, ...)`` uint8 -> ``(M, dim)`` float32."""
        import torch  # heavy: imported on first use, not with the package

        out = np.zeros((len(arr), self.dim), np.float32)
        with torch.inference_mode(), autocast(self.config.device):
            for sl in batch_slices(len(arr), self.config.batch_size):
                x = self._tensor(arr[sl])  # (B, 3, S, S) / (B, 3, L, S, S)
                out[sl] = self._onnx(x.numpy()) if self._onnx is not None else self.encode(x).float().cpu().numpy()
        return out

    def forward(self, batch: ExtractorInput) -> np.ndarray:
        """Features for every row; rows with ``valid == False`` get zeros and are not computed.

        Shape:
            ``images (N, S, S, 3)`` or ``clips (N, L, S, S, 3)`` uint8 -> ``(N, dim)`` float32.
        """
        c = self.contract
        if c.kind == "clip":
            arr = require_clips(batch, self.name, c.clip_len, c.image_size)
        else:
            arr = require_images(batch, self.name, c.image_size)
        return on_valid_rows(batch, arr, self.dim, self._encode_all)


class AudioExtractor(Extractor):
    """Base for extractors of ``audio_fragment`` inputs.

    :meth:`forward` checks the batch, cuts every row to its real samples (the batch's padding never
    enters) and calls :meth:`embed` on the rows worth computing; the others — empty fragments and rows
    marked invalid — are zeros and come back invalid. Subclasses implement :meth:`embed`.
    """

    modality = "audio"

    def embed(self, rows: list[np.ndarray]) -> np.ndarray:
        """Features of non-empty fragments, each its real samples only.

        Shape:
            ``rows[i] (L_i,)`` float32 -> ``(len(rows), dim)``.
        """
        raise NotImplementedError

    def forward(self, batch: ExtractorInput) -> tuple[np.ndarray, np.ndarray]:
        """Features of every fragment and the rows computed.

        Shape:
            ``batch.audio (N, L)`` -> ``(N, dim)`` float32 and ``(N,)`` bool (False for empty / invalid rows).
        """
        rows, active = audio_rows(self.name, batch)
        out = np.zeros((len(rows), self.dim), np.float32)
        idx = np.flatnonzero(active)
        if len(idx):
            out[idx] = self.embed([rows[i] for i in idx])
        return out, active


class TorchAudioExtractor(AudioExtractor):
    """Audio fragments through a torch network in batches of rows of equal (padded) length.

    The config has ``dtype``, ``batch_size`` and ``device``. Subclasses implement :meth:`prepare` (one
    fragment -> one fixed-shape network input), :meth:`encode` (a stacked batch -> features) and, when
    rows are padded to a minimum, :meth:`padded_length`; rows of equal padded length share a batch, so
    no row is padded to another's length.
    """

    def __init__(self, config: ExtractorConfig | None = None, /, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.net: Any = None

    @property
    def torch_dtype(self) -> "torch.dtype":
        return torch_dtype(self.config.dtype)

    def padded_length(self, n: int) -> int:
        """The length a fragment of ``n`` samples is brought to (rows of equal result share a batch)."""
        return n

    def prepare(self, row: np.ndarray, length: int) -> np.ndarray:
        """The network input of one fragment brought to ``length`` samples.

        Shape:
            ``(L,)`` -> the network's per-row input, float32 (the same for rows of equal ``length``).
        """
        raise NotImplementedError

    def encode(self, x: "torch.Tensor") -> "torch.Tensor":
        """Shape: ``(B, ...)`` stacked :meth:`prepare` outputs in the network's dtype -> ``(B, dim)``."""
        return self.net(x)

    def embed(self, rows: list[np.ndarray]) -> np.ndarray:
        """Shape: ``rows[i] (L_i,)`` -> ``(len(rows), dim)`` float32."""
        import torch  # heavy: imported on first use, not with the package

        out = np.zeros((len(rows), self.dim), np.float32)
        lengths = [self.padded_length(len(r)) for r in rows]
        with torch.inference_mode():
            for chunk in grouped_batches(lengths, self.config.batch_size):
                x = torch.from_numpy(np.stack([self.prepare(rows[i], lengths[i]) for i in chunk]))  # (B, ...)
                out[chunk] = self.encode(x.to(self.config.device, self.torch_dtype)).float().cpu().numpy()  # (B, dim)
        return out
