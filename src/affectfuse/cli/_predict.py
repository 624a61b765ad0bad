"""``affectfuse predict``: emotion scores for videos, with a trained run or the offline default."""

from __future__ import annotations

import sys
from types import SimpleNamespace


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def _add(sub, name, help_text, conf, run):
    p = sub.add_parser(name, help=help_text, description=help_text)
    conf(p)
    p.set_defaults(run=run)


# -- predict --------------------------------------------------------------------------------------
def _predict_conf(p):
    p.add_argument("videos", nargs="+", help="video files, folders or lists")
    p.add_argument("--run", required=True, help="a run folder from `affectfuse train`")
    p.add_argument("--out", default="predictions.csv", help="CSV file")
    p.add_argument("--features", help="feature store to extract into and keep (default: temporary)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--quiet", action="store_true")


def _predict_run(args) -> int:
    from affectfuse.inference.predictor import predict_videos

    _, report = predict_videos(args.videos, args.run, args.out, features=args.features, workers=args.workers,
                               progress=not args.quiet, log=_log)
    if report.failed or report.warnings:
        print(report.text())
    return 1 if report.failed else 0


predict_cmd = SimpleNamespace(add_parser=lambda sub, name: _add(sub, name, "predict emotions of videos", _predict_conf,
                                                                  _predict_run))
