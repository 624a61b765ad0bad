"""What every command shares: when progress bars are drawn."""

from __future__ import annotations

import sys

__all__ = ["progress_bars"]


def progress_bars(args) -> bool:
    """Progress bars only on a terminal and without ``--quiet``: a redirected log (a cluster job's file, a CI
    log) gets the summary lines, not thousands of carriage-return updates."""
    if getattr(args, "quiet", False):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # closed or replaced stderr
        return False
