"""Extraction speed and memory: a 12 s and a 10 min clip, 30 fps 640x480 with audio (not a test).

Each measurement runs ``affectfuse extract`` in a fresh process and reports wall time, videos/s, seconds of
video per second and the child's peak RSS. Target: the 10 min clip's peak RSS within 1.2x of the 12 s clip's
(decoding streams; nothing holds all frames).

    .venv/bin/python benchmarks/extract.py [--extractors a,b] [--level clip|frame] [--fps 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _clips import OUT, ROOT, make_clip  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def run_child(video: Path, extractors: str, extra: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) of a fresh `affectfuse extract` process, its exit code."""
    with tempfile.TemporaryDirectory() as tmp:
        code = (
            "import resource, sys\n"
            "from affectfuse.cli import main\n"
            "rc = main(sys.argv[1:])\n"
            "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
            "sys.exit(rc)\n"
        )
        cmd = [sys.executable, "-c", code, "extract", str(video), "--out", str(Path(tmp) / "store"),
               "--extractors", extractors, "--workers", "0", "--quiet", *extra]
        t = time.time()
        res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wall = time.time() - t
        peak = next((int(line.split()[1]) for line in res.stderr.splitlines() if line.startswith("PEAK_RSS_KB")), 0)
        if res.returncode != 0:
            print(res.stdout[-2000:], res.stderr[-2000:], file=sys.stderr)
        return wall, peak / 1024, res.returncode


def main() -> None:
    from affectfuse.extraction import DEFAULT_EXTRACTORS

    ap = argparse.ArgumentParser()
    ap.add_argument("--extractors", default=",".join(DEFAULT_EXTRACTORS))
    ap.add_argument("--level", default="clip", choices=["clip", "frame"])
    ap.add_argument("--fps", default="5", help="frame level: frames per second")
    ap.add_argument("--long", type=float, default=600.0, help="seconds of the long clip")
    ap.add_argument("--many", type=int, default=20, help="12 s clips extracted in one run (steady-state speed)")
    args = ap.parse_args()
    extra = ["--level", args.level] + (["--fps", args.fps] if args.level == "frame" else [])
    print(f"affectfuse extract, {args.level} level, extractors {args.extractors}, 1 process, "
          f"{os.cpu_count()} cores")
    print(f"{'clip':>10s} {'wall s':>8s} {'videos/s':>9s} {'video s/s':>10s} {'peak RSS MiB':>13s}")
    rss = {}
    for secs in (12.0, args.long):
        clip = make_clip(secs)
        wall, peak, rc = run_child(clip, args.extractors, extra)
        rss[secs] = peak
        flag = "" if rc == 0 else f"  (exit {rc})"
        print(f"{secs:>9.0f}s {wall:8.2f} {1 / wall:9.3f} {secs / wall:10.1f} {peak:13.0f}{flag}")
    # steady state: many clips in one process (start-up and model loading amortised), decoding in a worker
    clip = make_clip(12.0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "many"
        folder.mkdir()
        for i in range(args.many):
            (folder / f"clip_{i:03d}.mp4").symlink_to(clip)
        wall, peak, rc = run_child(folder, args.extractors, extra + ["--workers", "1"])
    print(f"{args.many:>3d} x 12s {wall:8.2f} {args.many / wall:9.3f} {12 * args.many / wall:10.1f} {peak:13.0f}"
          f"  (one process, 1 decoding worker)")
    ratio = rss[args.long] / max(rss[12.0], 1)
    print(f"peak RSS ratio long/short: {ratio:.2f} (target <= 1.2): {'OK' if ratio <= 1.2 else 'OVER'}")


if __name__ == "__main__":
    main()
