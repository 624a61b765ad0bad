"""Reading real sample media in tests (shared by the MediaPipe parity tests)."""

from __future__ import annotations

import av
import numpy as np


def video_frames(path, every: int = 10, most: int = 12) -> list[np.ndarray]:
    """Every ``every``-th decoded frame of a video as RGB uint8, at most ``most`` of them.

    Shape:
        each ``(H, W, 3)`` uint8.
    """
    out = []
    with av.open(str(path)) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i % every == 0:
                out.append(fr.to_ndarray(format="rgb24"))
            if len(out) == most:
                break
    return out
