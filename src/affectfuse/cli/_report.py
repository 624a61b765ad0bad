"""``affectfuse report RUN [--out DIR]``: figures and an HTML page of a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace



def _report_conf(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN", help="run folder written by `affectfuse train` (or --seeds)")
    p.add_argument("--out", help="report folder (default: RUN/report)")


def _report_run(args: argparse.Namespace) -> int:
    from affectfuse.reporting import report  # matplotlib, torch: when the command runs

    files = report(args.run_dir, args.out)
    index = files[-1]
    pngs = sum(1 for f in files if Path(f).suffix == ".png")
    print(f"wrote {len(files)} files ({pngs} figures); open {Path(index).resolve()}")
    return 0


def _add(sub, name: str) -> None:
    text = "HTML report of a run: training curves, scores per target, predicted vs true, confusion matrices"
    p = sub.add_parser(name, help=text, description=text)
    _report_conf(p)
    p.set_defaults(run=_report_run)


report_cmd = SimpleNamespace(add_parser=_add)
