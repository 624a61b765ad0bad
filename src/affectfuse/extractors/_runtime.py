"""Where an extractor's network runs: eager PyTorch (CPU, or CUDA under autocast) or ONNX Runtime.

``backend`` (a runtime field of every torch extractor's config, outside its identity: the features are the same
to 1e-4) is one of

* ``"torch"`` — the eager module (fine-tuning, parity, debugging); on a CUDA device under autocast;
* ``"onnx"`` — the module exported to ONNX once, cached, and run on ONNX Runtime; an error when that fails;
* ``"auto"`` (default) — ONNX Runtime on the CPU for float32 when ``onnxruntime`` is installed
  (``affectfuse[onnx]``), else PyTorch.

Measured on this 2-core AVX2 machine (``design/platform.md``): MobileNetV2 35 ms/image eager against 9.4 ms in
ONNX Runtime, outputs within 6e-6.

The exported graph is cached in ``$AFFECTFUSE_CACHE/onnx/<name>-<hash>.onnx`` (next to the assets), keyed by
the extractor's name, identity, input contract, the fingerprint of the weights loaded (SHA-1 of every tensor),
the torch version and the opset, with a JSON sidecar. It is checked against the eager module when it is written
(max abs difference <= 1e-4 relative to the output's scale).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
import contextlib
import dataclasses
from typing import Any, Callable, Iterator

import numpy as np

from affectfuse.assets import cache_dir

__all__ = ["BACKENDS", "OPSET", "onnx_available", "resolve_backend", "OnnxNet", "onnx_path", "export_onnx", "load_network",
           "weights_fingerprint", "autocast"]

BACKENDS = ("auto", "torch", "onnx")
OPSET = 17
PARITY = 1e-4  # max abs difference, relative to the reference output's scale
_FORMAT = 1  # bump when the cache layout or the export changes


def onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401  (optional extra: affectfuse[onnx])
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: str, dtype: str) -> str:
    """``"torch"`` or ``"onnx"`` for a config's ``backend``, ``device`` and ``dtype``.

    Raises:
        ValueError: ``backend="onnx"`` where ONNX Runtime cannot serve (not installed, not a CPU, not float32).
    """
    cpu = str(device).split(":")[0] == "cpu"
    if backend == "torch" or (backend == "auto" and not (cpu and dtype == "float32" and onnx_available())):
        return "torch"
    if backend == "onnx":
        if not onnx_available():
            raise ValueError('backend="onnx" needs ONNX Runtime: pip install "affectfuse[onnx]"')
        if not cpu or dtype != "float32":
            raise ValueError(f'backend="onnx" runs float32 on the CPU; got device={device!r}, dtype={dtype!r} '
                             '(use backend="torch" for CUDA or bfloat16)')
    return "onnx"


def onnx_path(name: str, spec: dict[str, Any]) -> Path:
    """The cache file of an exported network (``spec``: everything the graph depends on)."""
    import torch  # heavy: the cache key names the torch version

    full = {**spec, "name": name, "torch": torch.__version__, "opset": OPSET, "format": _FORMAT}
    digest = hashlib.sha1(json.dumps(full, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return cache_dir() / "onnx" / f"{name}-{digest}.onnx"


class OnnxNet:
    """An exported network on ONNX Runtime (one input ``x``, one output ``y``).

    Args:
        path: the ``.onnx`` file.
        threads: intra-op threads (default: torch's current thread count, 1 in extraction workers).
    """

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        import onnxruntime as ort  # optional extra: affectfuse[onnx]
        import torch  # heavy: only to match its thread setting

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # no busy-waiting between calls: spinning threads would take the cores the decoding workers need
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        self.version = ort.__version__

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Shape: the exported input (batch first), float32 -> ``(B, D)`` float32."""
        return self.session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})[0]


def export_onnx(fn: Callable[[Any], Any], module: Any, example: Any, path: Path, *, name: str,
                dynamic: dict[int, str], spec: dict[str, Any]) -> OnnxNet:
    """Export ``fn`` (a function of one tensor using ``module``) to ``path``, check it, return it running.

    The file is written atomically with a sidecar (``<path>.json``: the spec, versions and the parity measured).

    Raises:
        RuntimeError: the export fails, or ONNX Runtime's output differs from the eager one by more than
            :data:`PARITY` (relative to the output's scale).
    """
    import torch  # heavy: exporting needs it

    class _Encode(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = module  # registered, so that the exporter sees the parameters

        def forward(self, x):
            return fn(x)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
    wrapper = _Encode().eval()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes
        ref = wrapper(example).float().numpy()
        torch.onnx.export(wrapper, (example,), str(tmp), input_names=["x"], output_names=["y"], opset_version=OPSET,
                          dynamic_axes={"x": dynamic, "y": {0: dynamic.get(0, "batch")}}, dynamo=False)
    net = OnnxNet(tmp)
    got = net(example.numpy())
    diff = float(np.abs(got - ref).max()) if ref.size else 0.0
    scale = max(1.0, float(np.abs(ref).max()) if ref.size else 1.0)
    if not diff <= PARITY * scale:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{name}: ONNX Runtime differs from PyTorch by {diff:.3g} (limit {PARITY * scale:.3g})")
    meta = {"spec": spec, "name": name, "torch": torch.__version__, "onnxruntime": net.version, "opset": OPSET,
            "max_abs_diff": diff}
    path.with_name(path.name + ".json").write_text(json.dumps(meta, indent=1, default=str))
    os.replace(tmp, path)
    return OnnxNet(path)


def load_network(ex: Any, example: Callable[[], Any], dynamic: dict[int, str], *,
                 encode: Callable[[], Callable[[Any], Any]] | None = None,
                 module: Callable[[], Any] | None = None) -> OnnxNet | None:
    """Load an extractor's network on its backend: the ONNX Runtime net, or None for eager PyTorch.

    ``ex`` has ``config`` (``backend``; ``device`` and ``dtype`` when it has them), ``name``, ``params``,
    ``contract`` and ``_load()`` (builds the eager network). The exported function is ``encode()`` (default
    ``ex.encode``) of ``module()`` (default ``ex.module``), read after ``_load``. The export is cached under the
    fingerprint of the weights actually loaded (so a random init, a re-saved folder or a replaced file never
    reuses another network's graph); with ``backend="auto"`` a failed export falls back to PyTorch with a
    warning.
    """
    cfg = ex.config
    device, dtype = getattr(cfg, "device", "cpu"), getattr(cfg, "dtype", "float32")
    ex._load()
    if resolve_backend(cfg.backend, device, dtype) == "torch":
        return None
    fn = encode() if encode is not None else ex.encode
    net = module() if module is not None else ex.module
    spec = {"params": ex.params, "contract": dataclasses.asdict(ex.contract), "weights": weights_fingerprint(net)}
    path = onnx_path(ex.name, spec)
    if path.exists():
        try:
            return OnnxNet(path)
        except Exception:  # noqa: BLE001 - a damaged cache file: export again
            path.unlink(missing_ok=True)
    try:
        return export_onnx(fn, net, example(), path, name=ex.name, dynamic=dynamic, spec=spec)
    except Exception as e:  # noqa: BLE001
        if cfg.backend == "onnx":
            raise RuntimeError(f"extractor {ex.name!r}: the ONNX export failed ({type(e).__name__}: {e})") from e
        warnings.warn(f"extractor {ex.name!r}: ONNX export failed ({type(e).__name__}: {e}); running in PyTorch",
                      RuntimeWarning, stacklevel=2)
        return None


def weights_fingerprint(module: Any) -> str:
    """SHA-1 of a module's parameters and buffers (names, shapes, dtypes, values): the weights an export holds."""
    import torch  # heavy: only for a built module

    h = hashlib.sha1()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update((t.view(torch.uint8) if t.dtype == torch.bfloat16 else t).numpy().tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def autocast(device: str) -> Iterator[None]:
    """float16 autocast on a CUDA device (eager PyTorch on a GPU); nothing elsewhere."""
    import torch  # heavy: only around a forward pass

    if str(device).startswith("cuda"):
        with torch.autocast("cuda", dtype=torch.float16):
            yield
    else:
        yield
