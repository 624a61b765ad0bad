"""``affectfuse predict``: emotion scores for videos, with a trained run or the offline default."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

from affectfuse.cli._common import progress_bars

# the inference modules import torch: imported when a command runs, so that ``--help`` stays fast


def _log(msg: str) -> None:
    print(msg, file=sys.stderr)


def _add(sub, name, help_text, conf, run):
    p = sub.add_parser(name, help=help_text, description=help_text)
    conf(p)
    p.set_defaults(run=run)


# -- predict --------------------------------------------------------------------------------------
_OFFLINE_ONLY = ("json", "report", "fps", "preset", "require_all", "models")


def _predict_conf(p):
    p.add_argument("videos", nargs="+", help="video files, folders or lists")
    # dest is not "run": `set_defaults(run=...)` holds the command function under that name
    p.add_argument("--run", dest="run_dir", default=None,
                   help="a run folder from `affectfuse train`, or a folder of `train --seeds` (the mean of its "
                        "seeds' predictions); without it, the offline default scores facial expressions per frame "
                        "(MediaPipe faces + face-api expression net, no training needed)")
    p.add_argument("--seed", type=int, default=None, help="with a --run folder of `train --seeds`: this seed only")
    p.add_argument("--out", default="predictions.csv", help="CSV file")
    p.add_argument("--features", help="feature store to extract into and keep (default: temporary; with --run)")
    p.add_argument("--workers", type=int, default=1, help="processes that decode and detect faces (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or progress lines")
    p.add_argument("--json", action="store_true",
                   help="without --run: also write OUT.json (per video: summary and frames; with --preset best also "
                        "each column's model, licence and weights)")
    p.add_argument("--report", metavar="DIR", default=None, help="without --run: write an HTML/plot report to DIR")
    p.add_argument("--fps", type=float, default=None, help="without --run: sampled frames per second (default 5)")
    p.add_argument("--preset", default=None, metavar="default|best",
                   help="without --run: default (the offline default) or best (published affect models where their "
                        "weights are present: HSEmotion face expressions + valence/arousal, py-feat's 20 action units + "
                        "valence/arousal, audEERING voice arousal/dominance/valence; `affectfuse fetch-models --list`), saying first which are missing "
                        "and how to get them (default: default)")
    p.add_argument("--require-all", action="store_true",
                   help="with --preset best: fail (exit 2) when a published model is missing instead of falling back")
    p.add_argument("--models", metavar="DIR", default=None,
                   help="with --preset best: a folder of models, DIR/<name>/ as fetch-models fills it (default: "
                        "$AFFECTFUSE_MODELS, else $AFFECTFUSE_CACHE/models)")
    p.add_argument("--backend", default=None, metavar="torch|onnx|auto",
                   help="with --run: what runs the model: torch (default), onnx (ONNX Runtime on RUN/model.onnx, "
                        "exported when missing or stale) or auto (onnx when installed and exported, else torch)")


def _predict_run(args) -> int:

    offline = args.run_dir is None
    if offline and args.backend is not None:
        raise ValueError("--backend applies to predicting with a trained run (--run RUN)")
    if args.backend is not None and args.backend not in ("torch", "onnx", "auto"):
        raise ValueError(f"--backend must be torch, onnx or auto; got {args.backend!r}")
    if offline and args.features:
        raise ValueError("--features applies to predicting with a trained run (--run RUN); the offline default "
                         "keeps no feature store")
    if not offline:
        given = [f"--{o.replace('_', '-')}" for o in _OFFLINE_ONLY if getattr(args, o) not in (None, False)]
        if given:
            raise ValueError(f"{', '.join(given)} apply to predicting without --run (the offline default / a preset); "
                             "with --run the predictions go to --out only")
    preset = args.preset or "default"
    kw = ({"json": args.json, "fps": 5.0 if args.fps is None else args.fps, "preset": preset} if offline
          else {"features": args.features, "backend": args.backend or "torch", "seed": args.seed})
    if offline and args.seed is not None:
        raise ValueError("--seed chooses one run of a --run folder of `train --seeds`")
    from affectfuse.inference.preset import check_preset

    check_preset(preset)
    if preset != "best" and (args.require_all or args.models):
        raise ValueError(f"{'--require-all' if args.require_all else '--models'} applies to --preset best")
    if preset == "best":
        kw.update(require_all=args.require_all, models=args.models)
    from affectfuse.inference.predictor import predict
    from affectfuse.inference.preset import preset_report
    from affectfuse.reporting import prediction_report

    res = predict(args.videos, args.run_dir, out=args.out, workers=args.workers, progress=progress_bars(args), log=_log, **kw)
    if offline and args.report and res.preset is not None:
        res.written.append(preset_report(res.preset, Path(args.report)))
    elif offline and args.report:
        res.written.append(prediction_report(res.prediction.to_frame(res.prediction.FRAME_TABLE), Path(args.report),
                                             summary=res.summary, value_columns=list(res.prediction.names),
                                             failures=res.failures,
                                             title="affectfuse predict: facial expressions (offline default)"))
    if offline and len(res.summary):
        print(res.summary_text())
    for f in res.failures:
        print(f"FAILED {f.video_id}: {f.message}", file=sys.stderr)
    rows = len(res.prediction)
    scored = len(res.summary) if res.summary is not None else len(set(res.prediction.video_ids))
    _log(f"scored {scored} video(s) ({rows} rows), {len(res.failures)} failed; wrote "
         + ", ".join(str(w) for w in res.written))
    return 1 if res.failures else 0


predict_cmd = SimpleNamespace(add_parser=lambda sub, name: _add(sub, name, "predict emotions of videos", _predict_conf,
                                                                  _predict_run))
