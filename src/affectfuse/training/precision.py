"""Mixed precision for the training loop: autocast, the float16 GradScaler, and which precision runs where.

``TrainConfig.precision``:

* ``"32"`` — float32, no autocast (the default; the one-process float32 path is exactly the plain loop);
* ``"bf16"`` — ``torch.autocast(dtype=torch.bfloat16)`` on CUDA or CPU, no loss scaling. On a CPU without
  AMX / AVX512-BF16 bfloat16 kernels are emulated and *slower* than float32 (a ``RuntimeWarning`` says so,
  see :func:`affectfuse.extractors._torch_utils.fast_cpu_bf16`);
* ``"fp16"`` — ``torch.autocast(dtype=torch.float16)`` with a :class:`torch.amp.GradScaler` (JMT trains
  this way with ``torch.cuda.amp``); CUDA only, refused on CPU.

Autocast covers the model's forward pass only: the outputs are cast back to float32 before the loss, and
the weights, the optimiser state and the EMA stay float32. Evaluation runs in float32.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from typing import Any, ContextManager

import torch

from affectfuse.extractors._torch_utils import fast_cpu_bf16
from affectfuse.types import ModelOutput

__all__ = ["Precision", "check_precision"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device, *, warn: bool = True) -> None:
    """Refuse a precision the device cannot run; warn where bfloat16 is slower than float32.

    Args:
        precision: ``"32"``, ``"bf16"`` or ``"fp16"``.
        device: the resolved training device.
        warn: issue the slow-CPU bfloat16 ``RuntimeWarning`` (once per run: rank 0 only).

    Raises:
        ValueError: ``fp16`` on a device other than CUDA; ``bf16`` on a GPU without bfloat16 support.
    """
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision 'fp16' (float16 autocast with a GradScaler) needs a CUDA device, the run trains "
                         f"on {device}; on CPU use --precision bf16 (bfloat16 autocast) or 32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision 'bf16': {torch.cuda.get_device_name(device)} has no bfloat16 support; use "
                         f"--precision fp16 or 32")
    if precision == "bf16" and device.type == "cpu" and warn and not fast_cpu_bf16():
        warnings.warn(f"precision 'bf16' on a CPU without AMX/AVX512-BF16 ({torch.backends.cpu.get_cpu_capability()}): "
                      f"bfloat16 autocast is emulated there and slower than float32 (--precision 32)", RuntimeWarning,
                      stacklevel=3)


def _as_float(x: Any) -> Any:
    return x.float() if isinstance(x, torch.Tensor) and x.is_floating_point() else x


@dataclasses.dataclass
class Precision:
    """Autocast and loss scaling of one run.

    Attributes:
        device_type: ``"cpu"`` or ``"cuda"``.
        dtype: the autocast dtype, None for float32.
        scaler: the float16 GradScaler (None otherwise).
    """

    device_type: str
    dtype: torch.dtype | None = None
    scaler: Any = None

    @classmethod
    def for_run(cls, precision: str, device: torch.device) -> "Precision":
        """The precision objects of ``precision`` on ``device`` (checked by :func:`check_precision` before)."""
        dtype = _DTYPES.get(precision)
        scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        return cls(device.type, dtype, scaler)

    def autocast(self) -> ContextManager:
        """The context of the forward pass (a no-op for float32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def float_output(self, out: ModelOutput) -> ModelOutput:
        """The model's outputs as float32 for the loss (unchanged for float32 runs)."""
        if self.dtype is None:
            return out
        return dataclasses.replace(out, preds=_as_float(out.preds), logits=_as_float(out.logits),
                                   embedding=_as_float(out.embedding),
                                   extras={k: _as_float(v) for k, v in out.extras.items()})

    def backward(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        """``loss.backward()``; with a scaler: backward of the scaled loss, then unscale the gradients in place
        (so that the gradient norm, its check and clipping see the true gradients)."""
        if self.scaler is None:
            loss.backward()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(opt)

    def step(self, opt: torch.optim.Optimizer, grad_norm: float) -> bool:
        """The optimiser step; returns whether it was taken.

        With a scaler a non-finite gradient norm is an overflow of the float16 loss scale: the step is
        skipped and the scale lowered (as ``GradScaler`` does); without one the caller has refused it before.
        """
        if self.scaler is None:
            opt.step()
            return True
        taken = math.isfinite(grad_norm)
        if taken:
            self.scaler.step(opt)
        self.scaler.update()
        return taken

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
