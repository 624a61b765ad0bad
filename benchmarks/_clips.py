"""Generated benchmark clips shared by the benchmark scripts (cached in bench_out/)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench_out"


def make_clip(seconds: float) -> Path:
    """A 30 fps 640x480 H.264 + AAC clip of the astronaut's face moving on grey, with a tone; made once."""
    from skimage import data

    from affectfuse.io.synthetic import write_video

    OUT.mkdir(exist_ok=True)
    p = OUT / f"extract_{int(seconds)}s_640x480.mp4"
    if not p.exists():
        t = time.time()
        part = p.with_suffix(".part.mp4")
        write_video(part, duration=seconds, fps=30, size=(640, 480), audio=True,
                    face=data.astronaut()[30:250, 140:340], face_size=240)
        part.rename(p)
        print(f"  (generated {p.name} in {time.time() - t:.0f} s)", file=sys.stderr)
    return p
