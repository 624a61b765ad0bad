"""``affectfuse submit RUN --format F --out DIR``: the files a challenge asks for, from a run's test predictions.

RUN is a run folder, a multi-seed folder (its ensemble) or a predictions CSV (``affectfuse predict --run``).
Every check runs before anything is written; a refusal lists what is missing and exits with code 2.
``affectfuse submit --list`` prints the formats with their sources.
"""

from __future__ import annotations

import sys


def _conf(p) -> None:
    p.add_argument("run_dir", metavar="RUN", nargs="?", default=None,
                   help="a run folder, a multi-seed folder, or a predictions CSV (RUN layout)")
    p.add_argument("--format", dest="fmt", default=None, help="submission format (see --list)")
    p.add_argument("--out", default=None, help="folder to write (must be empty; --force replaces a submission there)")
    p.add_argument("--split", default="test", help="which split's predictions (default test)")
    p.add_argument("--ids", default=None, metavar="FILE",
                   help="the ids the organisers expect: one per line, or a table with an id column "
                        "(File_ID / video_id / Vid_name; a split column is filtered to --split)")
    p.add_argument("--frames", default=None, metavar="FILE",
                   help="frame level: the organisers' sample file (image_location column) or a table of "
                        "video id + n_frames; default: the frame counts in the feature store, if recorded")
    p.add_argument("--clip", action="store_true", help="clip values into the format's range instead of refusing")
    p.add_argument("--fill", choices=("none", "nearest"), default="none",
                   help="frames without a prediction: refuse (none, default) or take the nearest predicted frame's")
    p.add_argument("--force", action="store_true", help="replace a previous submission in --out")
    p.add_argument("--list", action="store_true", help="list the formats with their sources and exit")


def _list() -> int:
    from affectfuse.inference.submission_formats import list_formats

    for f in list_formats():
        print(f"{f.name:14s} {f.challenge}: {f.resolution} level, {f.layout}, header {f.header!r}")
        for s in f.sources:
            print(f"{'':14s}   source: {s}")
        for n in f.notes:
            print(f"{'':14s}   note: {n}")
    return 0


def _run(args) -> int:
    if args.list:
        return _list()
    missing = [n for n, v in (("RUN", args.run_dir), ("--format", args.fmt), ("--out", args.out)) if not v]
    if missing:
        raise ValueError(f"needs {', '.join(missing)} (or --list to see the formats)")
    from affectfuse.inference.submission import write_submission

    sub = write_submission(args.run_dir, args.fmt, args.out, split=args.split, expected_ids=args.ids,
                           frame_counts=args.frames, clip=args.clip, fill=args.fill, overwrite=args.force)
    c = sub.record["counts"]
    extra = [f"{c[k]} {k.replace('_', ' ')}" for k in ("clipped_values", "filled_frames", "unused_ids", "unused_rows")
             if c.get(k)]
    print(f"wrote {sub.format.name} to {sub.out}: {c['files']} file(s), {c['ids']} id(s), {c['rows']} row(s)"
          + (f" ({', '.join(extra)})" if extra else "") + f"; ids from {sub.record['ids_source']}"
          + (f"; frames from {sub.record['frames_source']}" if "frames_source" in sub.record else ""),
          file=sys.stderr)
    for n in sub.format.notes:
        if n.startswith("UNCONFIRMED"):
            print(f"note: {n}", file=sys.stderr)
    return 0


def add_parser(sub, name: str) -> None:
    text = "write a challenge's submission files from a run's test predictions (checked first)"
    p = sub.add_parser(name, help=text, description=text)
    _conf(p)
    p.set_defaults(run=_run)
