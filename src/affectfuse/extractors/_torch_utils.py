"""Small helpers shared by torch-based extractors: dtypes, input checks, tensors, batching, weights.

Everything here is generic (no model-specific code). torch is imported inside the functions so that
``import affectfuse.extractors`` stays fast.

Typical use inside an extractor::

    class MyExtractor(TorchExtractor):
        def __init__(self, *, dtype="float32", batch_size=32, device="cpu"):
            super().__init__({"dtype": dtype})
            self.setup_runtime(dtype=dtype, batch_size=batch_size, device=device)
            ...
        def load(self):
            self.module = prepare_module(build(), self.torch_dtype, self.device)
        def encode(self, x):          # (B, 3, S, S) -> (B, D)
            return self.module(x)
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from affectfuse.extractors.base import Extractor, ExtractorInput

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "DTYPES",
    "check_dtype",
    "check_batch_size",
    "torch_dtype",
    "batch_slices",
    "require_images",
    "require_clips",
    "images_to_tensor",
    "clips_to_tensor",
    "load_state_dict",
    "load_weights_into",
    "file_fingerprint",
    "fast_cpu_bf16",
    "prepare_module",
    "TorchExtractor",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

#: dtype names extractors accept. ``"bfloat16"`` casts the weights (not autocast): about 4x faster at
#: about 1% relative error on a CPU with AMX / AVX512-BF16 (design/platform.md §5.3) or on a GPU, but
#: 5-50x SLOWER than float32 on an AVX2-only CPU (measured on this dev box: MobileNetV2 11x, R(2+1)D-18
#: 48x); :func:`prepare_module` warns there.
DTYPES = ("float32", "bfloat16")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_dtype(dtype: str) -> str:
    """Validate a dtype name (no torch import). Raises ``ValueError`` naming the accepted ones."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return dtype


def check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return batch_size


def torch_dtype(dtype: str) -> "torch.dtype":
    """``"float32"`` / ``"bfloat16"`` -> the torch dtype."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[check_dtype(dtype)]


def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices covering ``range(n)``, each at most ``batch_size`` long."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def _describe(batch: ExtractorInput) -> str:
    given = [
        f"{f} {tuple(getattr(batch, f).shape)} {getattr(batch, f).dtype}"
        for f in ("images", "clips", "audio")
        if getattr(batch, f) is not None
    ]
    return ", ".join(given) or "no array"


def require_images(batch: ExtractorInput, who: str, image_size: int | None = None) -> np.ndarray:
    """The batch's ``images`` after checking kind, rank, channels and dtype.

    Args:
        batch: the extractor input.
        who: the extractor's name (for the message).
        image_size: expected side, only quoted in the message (other sizes are resized by
            :func:`images_to_tensor`).

    Returns:
        ``(N, H, W, 3)`` uint8.

    Raises:
        ValueError: ``images`` is missing or is not ``(N, H, W, 3)`` uint8.
    """
    s = image_size or "S"
    want = f"ExtractorInput.images as uint8 RGB (N, {s}, {s}, 3)"
    x = batch.images
    if x is None:
        raise ValueError(f"extractor {who!r} needs {want}; got {_describe(batch)}")
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise ValueError(f"extractor {who!r} needs {want}; got images {tuple(x.shape)} {x.dtype}")
    return x


def require_clips(batch: ExtractorInput, who: str, clip_len: int, image_size: int | None = None) -> np.ndarray:
    """The batch's ``clips`` after checking kind, rank, clip length, channels and dtype.

    Returns:
        ``(N, L, H, W, 3)`` uint8 with ``L == clip_len``.

    Raises:
        ValueError: ``clips`` is missing or has the wrong layout.
    """
    s = image_size or "S"
    want = f"ExtractorInput.clips as uint8 RGB (N, {clip_len}, {s}, {s}, 3)"
    x = batch.clips
    if x is None:
        raise ValueError(f"extractor {who!r} needs {want}; got {_describe(batch)}")
    if x.ndim != 5 or x.shape[1] != clip_len or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise ValueError(f"extractor {who!r} needs {want}; got clips {tuple(x.shape)} {x.dtype}")
    return x


def _normalise(x: "torch.Tensor", mean: Sequence[float], std: Sequence[float], shape: tuple[int, ...]):
    import torch

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
    import torch
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
    import torch

    n, l_, h, w, _ = clips.shape
    x = images_to_tensor(clips.reshape(n * l_, h, w, 3), size, mean, std, torch.float32, device)  # (N*L, 3, S, S)
    x = x.view(n, l_, 3, size, size).permute(0, 2, 1, 3, 4)  # (N, 3, L, S, S)
    return x.to(dtype or torch.float32).contiguous()


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
    import torch

    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{p}: weights file not found")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

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
) -> None:
    """Load ``state`` into ``module`` strictly, except keys under ``ignore_prefixes`` (a classifier head).

    Raises:
        ValueError: keys are missing or unexpected, or shapes differ; the message names ``where``.
    """
    ign = tuple(ignore_prefixes)
    state = {k: v for k, v in state.items() if not (ign and k.startswith(ign))}
    own = module.state_dict()
    missing = sorted(k for k in own if k not in state and not (ign and k.startswith(ign)))
    unexpected = sorted(k for k in state if k not in own)
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
                "shape mismatch: "
                + few([f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in bad])
            )
        raise ValueError(f"{where}: weights do not fit {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(state, strict=False)


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
    import torch

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
    import torch

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


class TorchExtractor(Extractor):
    """Base for torch extractors of images (``face``/``frame``) or clips (``clip``).

    Subclasses call :meth:`setup_runtime` in ``__init__``, build ``self.module`` in ``load()`` and
    implement :meth:`encode`. :meth:`forward` checks the input against ``self.contract``, skips rows
    marked invalid (their output rows are zeros), converts and normalises per mini-batch of
    ``batch_size`` rows and runs :meth:`encode` under ``torch.inference_mode()``.
    """

    channels_last: bool = False

    def setup_runtime(self, *, dtype: str, batch_size: int, device: str) -> None:
        self.dtype_name = check_dtype(dtype)
        self.batch_size = check_batch_size(batch_size)
        self.device = str(device)
        self.module: Any = None

    @property
    def torch_dtype(self) -> "torch.dtype":
        return torch_dtype(self.dtype_name)

    def encode(self, x: "torch.Tensor") -> "torch.Tensor":
        """Features of one normalised mini-batch.

        Shape:
            ``(B, 3, S, S)`` (images) or ``(B, 3, L, S, S)`` (clips) -> ``(B, dim)``.
        """
        raise NotImplementedError

    def _arrays(self, batch: ExtractorInput) -> tuple[np.ndarray, Callable[[np.ndarray], Any]]:
        c = self.contract
        if c.kind == "clip":
            arr = require_clips(batch, self.name, c.clip_len, c.image_size)
            return arr, lambda a: clips_to_tensor(a, c.image_size, c.mean, c.std, self.torch_dtype, self.device)
        arr = require_images(batch, self.name, c.image_size)

        def conv(a: np.ndarray) -> Any:
            import torch

            x = images_to_tensor(a, c.image_size, c.mean, c.std, self.torch_dtype, self.device)
            return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

        return arr, conv

    def forward(self, batch: ExtractorInput) -> np.ndarray:
        """Features for every row; rows with ``valid == False`` get zeros and are not computed.

        Shape:
            returns ``(N, dim)`` float32.
        """
        import torch

        arr, conv = self._arrays(batch)
        n = len(arr)
        out = np.zeros((n, self.dim), np.float32)
        if batch.valid is not None and len(batch.valid) != n:
            raise ValueError(f"extractor {self.name!r}: valid has {len(batch.valid)} rows, inputs have {n}")
        rows = np.arange(n) if batch.valid is None else np.flatnonzero(np.asarray(batch.valid, bool))
        if len(rows) == 0:
            return out
        with torch.inference_mode():
            for sl in batch_slices(len(rows), self.batch_size):
                idx = rows[sl]
                sub = arr[idx] if len(rows) < n else arr[sl]
                y = self.encode(conv(sub))  # (B, dim)
                out[idx] = y.float().cpu().numpy()
        return out
