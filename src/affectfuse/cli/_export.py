"""``affectfuse export RUN --format onnx [--out FILE]``: a trained run's fusion model as an ONNX graph.

Writes ``RUN/model.onnx`` (or ``--out``) with the model's modality tensors and masks as named inputs and a record
``<file>.json`` beside it (model, config, weights fingerprint, opset, versions, parity against PyTorch);
``affectfuse predict --run RUN --backend onnx`` runs it on ONNX Runtime.
"""

from __future__ import annotations

import sys
from pathlib import Path

FORMATS = ("onnx",)


def _conf(p) -> None:
    p.add_argument("run_dir", metavar="RUN", help="a run folder from `affectfuse train`")
    p.add_argument("--format", default="onnx", help="export format (onnx)")
    p.add_argument("--out", default=None, help="file to write (default RUN/model.onnx)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's, 18)")


def _run(args) -> int:
    if args.format not in FORMATS:
        raise ValueError(f"unsupported format {args.format!r}; supported: {', '.join(FORMATS)}")
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    from affectfuse.inference.onnx_model import OPSET, export_onnx, read_meta

    path = export_onnx(run_dir, args.out, opset=args.opset or OPSET)
    meta = read_meta(path) or {}
    par = meta.get("parity", {})
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB): {meta.get('model')} for {meta.get('task')}, "
          f"inputs {', '.join(i['name'] for i in meta.get('inputs', []))}; outputs "
          f"{', '.join(o['name'] for o in meta.get('outputs', []))}; opset {meta.get('opset')} ({meta.get('exporter')}); "
          f"max |ONNX - torch| {par.get('max_abs_diff', float('nan')):.2g} (limit {par.get('limit', float('nan')):.2g})",
          file=sys.stderr)
    return 0


def add_parser(sub, name: str) -> None:
    text = "export a trained run's model (ONNX, masks as inputs)"
    p = sub.add_parser(name, help=text, description=text)
    _conf(p)
    p.set_defaults(run=_run)
