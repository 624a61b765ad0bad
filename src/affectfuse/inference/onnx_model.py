"""Fusion models on ONNX Runtime: a run's model exported with its masks as inputs, run in place of PyTorch.

``export_onnx(run)`` writes ``RUN/model.onnx`` and, next to it, ``RUN/model.onnx.json`` (model name, task, input
widths, config, the fingerprint of the weights, opset, torch / onnx / onnxruntime versions, the graph's inputs
and outputs and the parity measured). :class:`OnnxModel` takes the same :class:`~affectfuse.types.Batch` and
returns the same :class:`~affectfuse.types.ModelOutput` as the torch model, so ``Run`` prediction switches
backend by swapping ``run.model`` (``load_run(path, backend="onnx")``, ``affectfuse predict --backend onnx``).

The graph (the torch.export-based exporter, so a shape or a branch that would be frozen at the example's value
fails the export instead of giving a silently wrong graph):

* inputs, per modality of the model in ``input_dims`` order: ``<modality>`` float32 ``(batch, time, D_m)`` and
  ``<modality>_mask`` bool ``(batch, time)``; every modality shares the one ``time`` axis;
* outputs: ``preds``, then ``logits`` and ``embedding`` where the model gives them, then ``extras.<name>``;
* ``batch`` and ``time`` are dynamic, except for models that read a fixed number of steps (``abaw5_eri`` with
  the authors' ``pooling="flatten"``: time is its ``steps``).

:class:`OnnxModel` prepares a batch as the models do themselves: modalities aligned with
:func:`~affectfuse.models.layers.align_modalities` (the shorter ones padded with invalid rows for clip-level
tasks), a modality absent from the batch given as zeros with an all-False mask (the model contract: the same
output as leaving it out, tested per model, for every sample with data in some modality; a sample with no data at
all gets from ``late_fusion`` the plain mean of all its branches, where eager averages the branches the batch
carries — batches of a run's dataset always carry every modality), fixed-step models cut / padded to their steps
(as the model does). Extras are computed for every modality of the model (an absent one as all-masked).

End-to-end models (``e2e_cross``: raw frames and waveforms) are refused: HuBERT runs on each sample's own valid
samples, in groups of equal length, because its group norm makes zero padding change the output; one static
graph cannot reproduce that without changing the outputs.

Every export is checked against eager PyTorch on generated batches of two sizes with padded steps and a
modality missing for some samples (max abs difference <= 1e-4 relative to the outputs' scale), or not written.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from affectfuse.extractors._runtime import PARITY, OnnxNet, onnx_available, weights_fingerprint
from affectfuse.inference.run_folder import RunFolder
from affectfuse.models.base import present_modalities
from affectfuse.models.layers import align_modalities
from affectfuse.types import Batch, ModelOutput

__all__ = ["FILE", "OPSET", "FORMAT", "BACKENDS", "export_onnx", "export_model", "OnnxModel", "onnx_file",
           "meta_file", "read_meta", "is_current", "check_exportable", "load_onnx_model", "resolve_model_backend"]

FILE = "model.onnx"
OPSET = 18  # the torch.export-based exporter's opset
FORMAT = 1  # bump when the graph's interface or the export changes: older files are re-made
BACKENDS = ("torch", "onnx", "auto")
OUTPUTS = ("preds", "logits", "embedding")


def onnx_file(run_dir: str | Path) -> Path:
    """``RUN/model.onnx``."""
    return RunFolder(run_dir).path / FILE


def meta_file(path: str | Path) -> Path:
    """The metadata record next to an exported graph: ``<file>.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def read_meta(path: str | Path) -> dict[str, Any] | None:
    """The metadata of an exported graph, or None when there is no readable record."""
    try:
        return json.loads(meta_file(path).read_text())
    except (OSError, ValueError):
        return None


def _model_name(model: torch.nn.Module) -> str:
    return str(getattr(model, "onnx_name", None) or type(model).__name__)


def check_exportable(model: torch.nn.Module, name: str | None = None) -> None:
    """Raise ``ValueError`` naming the model and the reason when it cannot be exported faithfully."""
    from affectfuse.models import FusionModel

    name = name or _model_name(model)
    if not isinstance(model, FusionModel):
        raise ValueError(f"model {name!r}: ONNX export takes a fusion model (affectfuse.models), got "
                         f"{type(model).__name__}")
    if getattr(model, "raw_inputs", None):
        raise ValueError(
            f"model {name!r} cannot be exported to ONNX faithfully: it reads raw media, and its HuBERT encoder runs on "
            "each sample's own valid samples, batched by length (group norm makes padding change the output), a "
            "data-dependent loop one static graph cannot hold; use the torch backend")


def _fixed_steps(model: torch.nn.Module) -> int | None:
    """The fixed time length a model reads (``abaw5_eri`` flatten pooling: its ``steps``), else None (dynamic)."""
    if getattr(model, "flatten", False) is True and hasattr(model.config, "steps"):
        return int(model.config.steps)
    return None


def _named_outputs(out: ModelOutput) -> dict[str, torch.Tensor]:
    named = {k: getattr(out, k) for k in OUTPUTS if torch.is_tensor(getattr(out, k))}
    named.update({f"extras.{k}": v for k, v in out.extras.items() if torch.is_tensor(v)})
    return named


class _Graph(torch.nn.Module):
    """The model as a function of flat tensors: (values, mask) per modality → the named outputs, in order."""

    def __init__(self, model: torch.nn.Module, outputs: list[str]) -> None:
        super().__init__()
        self.model = model
        self.mods = list(model.input_dims)
        self.outputs = list(outputs)

    def forward(self, *flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = Batch(inputs={m: flat[2 * i] for i, m in enumerate(self.mods)},
                      masks={m: flat[2 * i + 1] for i, m in enumerate(self.mods)})
        named = _named_outputs(self.model(batch))
        return tuple(named[k] for k in self.outputs)


def _probe(dims: dict[str, int], b: int, t: int, seed: int) -> list[torch.Tensor]:
    """Generated flat inputs: padded tails of several lengths, one modality missing for sample 1, garbage padding.

    Shape:
        → ``[values (B, T, D_m), mask (B, T)]`` per modality.
    """
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([t - (i * 2) % max(1, t - 1) for i in range(b)]).clamp(min=1)  # (B,)
    flat = []
    for j, (m, d) in enumerate(dims.items()):
        x = torch.randn(b, t, d, generator=g)
        mask = torch.arange(t)[None, :] < lengths[:, None]  # (B, T)
        if b > 1 and j == len(dims) - 1 and len(dims) > 1:
            mask[1] = False  # the last modality missing for sample 1
        x = torch.where(mask.unsqueeze(-1), x, 50.0 * torch.randn(b, t, d, generator=g))  # invalid rows: garbage
        flat += [x, mask]
    return flat


def _check(session, graph: _Graph, names: list[str], probes: list[list[torch.Tensor]]) -> tuple[float, float]:
    """Max abs difference ONNX Runtime vs eager over the probes, and the limit (PARITY × outputs' scale)."""
    diff, scale = 0.0, 1.0
    for flat in probes:
        with torch.no_grad():
            ref = [r.float().numpy() for r in graph(*flat)]
        got = session.run(graph.outputs, {n: v.numpy() for n, v in zip(names, flat)})
        for r, o in zip(ref, got):
            if r.shape != o.shape:
                raise RuntimeError(f"output shape {o.shape} from ONNX Runtime, {r.shape} from PyTorch")
            if r.size:
                diff = max(diff, float(np.abs(o - r).max()))
                scale = max(scale, float(np.abs(r).max()))
    return diff, PARITY * scale


def _export(graph: _Graph, example: list[torch.Tensor], names: list[str], outputs: list[str], shapes: tuple,
            path: Path, *, opset: int, name: str) -> tuple[str, int]:
    """Write the graph to ``path``; returns the exporter used and its opset.

    ``torch.export`` first: it fails where a dynamic axis would be frozen to the example's size. Where it cannot
    capture the model (``muse_lstm`` frame level: the LSTM's decomposition unrolls time), the TorchScript tracer,
    whose graph keeps ``aten::lstm`` as one ONNX LSTM; the parity probes (other batch sizes and lengths) then
    prove that its axes are dynamic.
    """
    try:
        program = torch.export.export(graph, tuple(example), dynamic_shapes=(shapes,), strict=False)
        onnx_program = torch.onnx.export(program, input_names=names, output_names=outputs, dynamo=True,
                                         opset_version=opset, verbose=False)
        onnx_program.save(str(path))
        return "torch.export", opset
    except Exception as e:  # noqa: BLE001 - the exporters raise many kinds; fall back, then name the cause
        first_error = e
    axes = {n: ({0: "batch"} if shapes[i].get(1) is None else {0: "batch", 1: "time"}) for i, n in enumerate(names)}
    try:
        torch.onnx.export(graph, tuple(example), str(path), input_names=names, output_names=outputs,
                          dynamic_axes=axes, opset_version=min(opset, 17), dynamo=False)
        return "torchscript", min(opset, 17)
    except Exception as e:  # noqa: BLE001
        msg = (str(first_error).strip().splitlines() or [type(first_error).__name__])[0]
        raise RuntimeError(f"model {name!r}: the ONNX export failed (torch.export: {type(first_error).__name__}: "
                           f"{msg}; TorchScript: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]})") from e


def export_model(model: torch.nn.Module, path: str | Path, *, name: str | None = None, opset: int = OPSET,
                 extra_meta: dict[str, Any] | None = None) -> Path:
    """Export a fusion model (eval mode, CPU) to ``path``, check it against eager, write its metadata record.

    Args:
        model: a :class:`~affectfuse.models.FusionModel`.
        path: the ``.onnx`` file to write (atomically; the record goes to ``<path>.json``).
        name: the registered name (for messages and the record).
        opset: ONNX opset of the graph.
        extra_meta: more fields for the record (a run's config, its model record).

    Returns:
        ``path``.

    Raises:
        ValueError: the model cannot be exported faithfully (:func:`check_exportable`), or is not on the CPU.
        RuntimeError: the exporter fails, or ONNX Runtime differs from eager by more than the parity limit.
    """
    import onnx  # optional extra: affectfuse[onnx]
    from torch.export import Dim

    name = name or _model_name(model)
    check_exportable(model, name)
    if not onnx_available():
        raise ValueError('exporting to ONNX needs ONNX Runtime for the parity check: pip install "affectfuse[onnx]"')
    devices = {p.device.type for p in model.parameters()}
    if devices - {"cpu"}:
        raise ValueError(f"model {name!r}: export from the CPU (its parameters are on {sorted(devices)})")
    path = Path(path)
    was_training = model.training
    model.eval()
    dims = dict(model.input_dims)
    fixed = _fixed_steps(model)
    t0, t1 = (fixed, fixed) if fixed else (8, 5)
    probes = [_probe(dims, 3, t0, 0), _probe(dims, 1, t1, 1), _probe(dims, 5, t1 if fixed else 11, 2)]
    with torch.no_grad():
        eager = model(Batch(inputs={m: probes[0][2 * i] for i, m in enumerate(dims)},
                            masks={m: probes[0][2 * i + 1] for i, m in enumerate(dims)}))
    outputs = list(_named_outputs(eager))
    graph = _Graph(model, outputs).eval()
    names = [n for m in dims for n in (m, f"{m}_mask")]
    batch_dim, time_dim = Dim("batch", min=1), (None if fixed else Dim("time", min=1))
    shapes = tuple({0: batch_dim, 1: time_dim} if time_dim is not None else {0: batch_dim} for _ in names)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes and deprecations
            exporter, opset = _export(graph, probes[0], names, outputs, shapes, tmp, opset=opset, name=name)
        net = OnnxNet(tmp)
        diff, limit = _check(net.session, graph, names, probes)
        if not diff <= limit:
            raise RuntimeError(f"model {name!r}: ONNX Runtime differs from PyTorch by {diff:.3g} (limit {limit:.3g})")
        from affectfuse._config import to_dict

        meta = {
            "format": FORMAT, "model": name, "class": type(model).__name__, "task": model.task.name,
            "resolution": model.task.resolution, "input_dims": dims, "config": to_dict(model.config),
            "weights": weights_fingerprint(model), "opset": opset, "torch": torch.__version__,
            "onnx": onnx.__version__, "onnxruntime": net.version,
            "time": fixed if fixed else "dynamic", "exporter": exporter,
            "inputs": [{"name": n, "modality": n[:-5] if n.endswith("_mask") else n,
                        "dtype": "bool" if n.endswith("_mask") else "float32",
                        "shape": ["batch", fixed or "time"] + ([] if n.endswith("_mask") else [dims[n]])}
                       for n in names],
            "outputs": [{"name": k, "shape": ["batch", *(["time"] if v.dim() == 3 else []), int(v.shape[-1])]}
                        for k, v in _named_outputs(eager).items()],
            "parity": {"max_abs_diff": diff, "limit": limit, "probes": [list(p[0].shape[:2]) for p in probes]},
            "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **(extra_meta or {}),
        }
        meta_file(path).write_text(json.dumps(meta, indent=1, default=str))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        model.train(was_training)
    return path


def _run_of(run: Any):
    from affectfuse.inference.run import Run, load_run

    return run if isinstance(run, Run) else load_run(run)


def export_onnx(run: Any, out: str | Path | None = None, *, opset: int = OPSET) -> Path:
    """Export a run's model: ``RUN/model.onnx`` (or ``out``) and its record ``<file>.json``.

    Args:
        run: a run folder or a loaded :class:`~affectfuse.inference.run.Run` (torch backend).
        out: where to write (default ``RUN/model.onnx``).
        opset: ONNX opset.

    Raises:
        FileNotFoundError: not a finished run folder (names the missing file).
        ValueError / RuntimeError: see :func:`export_model`.
    """
    run = _run_of(run)
    if isinstance(run.model, OnnxModel):
        raise ValueError(f"{run.path}: the run is loaded on the ONNX backend; export from load_run(path) (torch)")
    record = RunFolder(run.path).read_model() or {}
    name = record.get("name") or _model_name(run.model)
    extra = {"run": str(run.path), "overrides": record.get("overrides", {})}
    return export_model(run.model, Path(out) if out is not None else onnx_file(run.path), name=name, opset=opset,
                        extra_meta=extra)


def is_current(path: str | Path, model: torch.nn.Module) -> bool:
    """Whether ``path`` holds an export of exactly these weights in today's format."""
    meta = read_meta(path)
    return (Path(path).is_file() and meta is not None and meta.get("format") == FORMAT
            and meta.get("input_dims") == dict(model.input_dims) and meta.get("weights") == weights_fingerprint(model))


class OnnxModel:
    """An exported fusion model on ONNX Runtime, called like the torch model: ``Batch`` → ``ModelOutput``.

    Args:
        path: the ``.onnx`` file (its ``.json`` record beside it).
        threads: intra-op threads (default: torch's thread count).

    Attributes:
        input_dims: modality → width, as the model's.
        meta: the export's record.
    """

    device = torch.device("cpu")
    training = False

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        self.path = Path(path)
        meta = read_meta(self.path)
        if meta is None or meta.get("format") != FORMAT:
            raise ValueError(f"{self.path}: no current export record ({meta_file(self.path).name}); export again "
                             "(affectfuse export RUN --format onnx)")
        self.meta = meta
        self.name = str(meta["model"])
        self.input_dims = {m: int(d) for m, d in meta["input_dims"].items()}
        self.frame_level = meta["resolution"] == "frame"
        self.fixed = meta["time"] if isinstance(meta["time"], int) else None
        self.outputs = [o["name"] for o in meta["outputs"]]
        self.session = OnnxNet(self.path, threads=threads).session

    def __repr__(self) -> str:
        return f"OnnxModel({self.name!r}, {self.path})"

    @property
    def modalities(self) -> list[str]:
        return list(self.input_dims)

    def eval(self) -> "OnnxModel":
        return self

    def train(self, mode: bool = True) -> "OnnxModel":
        if mode:
            raise RuntimeError(f"{self}: an ONNX Runtime model is for inference only")
        return self

    def to(self, device: Any) -> "OnnxModel":
        if torch.device(device).type != "cpu":
            raise ValueError(f"{self}: runs on the CPU (ONNX Runtime); got device {device!r}")
        return self

    def feeds(self, batch: Batch) -> dict[str, np.ndarray]:
        """The graph's inputs for a batch (aligned, absent modalities all-masked, fixed steps cut / padded).

        Shape:
            → ``{m: (B, T, D_m) float32, m_mask: (B, T) bool}`` for every modality of the model.
        """
        mods = present_modalities(self.name, self.input_dims, batch)
        inputs, masks, t = align_modalities(batch, mods, frame_level=self.frame_level, owner=self.name)
        b = int(inputs[mods[0]].shape[0])
        feeds: dict[str, np.ndarray] = {}
        for m, d in self.input_dims.items():
            if m in inputs:
                x = inputs[m].detach().to("cpu", torch.float32).numpy()
                k = masks[m].detach().to("cpu", torch.bool).numpy()
            else:
                x, k = np.zeros((b, t, d), np.float32), np.zeros((b, t), bool)
            if self.fixed is not None:  # the model reads exactly `fixed` steps (it cuts longer sequences itself)
                x, k = x[:, : self.fixed], k[:, : self.fixed]
                pad = self.fixed - x.shape[1]
                if pad > 0:
                    x = np.pad(x, ((0, 0), (0, pad), (0, 0)))
                    k = np.pad(k, ((0, 0), (0, pad)))
            feeds[m], feeds[f"{m}_mask"] = np.ascontiguousarray(x), np.ascontiguousarray(k)
        return feeds

    def __call__(self, batch: Batch) -> ModelOutput:
        """Shape: as the torch model (``preds (B, K)`` or ``(B, T, K)``, ...), float32 CPU tensors."""
        got = dict(zip(self.outputs, self.session.run(self.outputs, self.feeds(batch))))
        t = {k: torch.from_numpy(v) for k, v in got.items()}
        return ModelOutput(preds=t["preds"], logits=t.get("logits"), embedding=t.get("embedding"),
                           extras={k[len("extras."):]: v for k, v in t.items() if k.startswith("extras.")})


def load_onnx_model(run: Any, path: str | Path | None = None, *, export: bool = True,
                    threads: int | None = None) -> OnnxModel:
    """A run's model on ONNX Runtime: ``RUN/model.onnx`` (or ``path``), (re-)exported when missing or made from
    other weights (the fingerprint in its record) when ``export`` is True.

    Raises:
        ValueError: the export is missing / stale and ``export`` is False, or the model cannot be exported.
    """
    run = _run_of(run)
    path = Path(path) if path is not None else onnx_file(run.path)
    if not is_current(path, run.model):
        if not export:
            raise ValueError(f"{path}: missing or made from other weights; export it (affectfuse export "
                             f"{run.path} --format onnx)")
        export_onnx(run, path)
    return OnnxModel(path, threads=threads)


def resolve_model_backend(backend: str, run: Any) -> str:
    """``"torch"`` or ``"onnx"`` for a run: ``auto`` is ONNX when ONNX Runtime is installed and a current export
    of the run's weights exists (``RUN/model.onnx``), else torch.

    Raises:
        ValueError: an unknown backend, or ``onnx`` without ONNX Runtime.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if backend == "onnx" and not onnx_available():
        raise ValueError('backend "onnx" needs ONNX Runtime: pip install "affectfuse[onnx]"')
    if backend == "auto":
        ok = onnx_available() and not getattr(run.model, "raw_inputs", None) and is_current(onnx_file(run.path), run.model)
        return "onnx" if ok else "torch"
    return backend
