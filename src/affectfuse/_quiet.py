"""Third-party chatter off unless asked for: native libraries' log lines and hub download bars.

MediaPipe's TFLite runtime writes lines such as ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU`` and
absl ``W0000 ... inference_feedback_manager.cc`` warnings from C++ straight to file descriptor 2, where no Python
logging setting reaches; :func:`native_stderr_quiet` points that descriptor at ``/dev/null`` while such a
library sets itself up. ``affectfuse <command> --verbose`` (``AFFECTFUSE_VERBOSE=1``, inherited by worker
processes) keeps everything.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

__all__ = ["VERBOSE_ENV", "verbose", "native_stderr_quiet", "quiet_libraries"]

VERBOSE_ENV = "AFFECTFUSE_VERBOSE"


def verbose() -> bool:
    """Whether third-party output is wanted (``AFFECTFUSE_VERBOSE`` set to anything but 0 / false / no / off)."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


@contextlib.contextmanager
def native_stderr_quiet() -> Iterator[None]:
    """File descriptor 2 goes to ``/dev/null`` inside the block (Python's ``sys.stderr`` is flushed first and
    shares the descriptor, so keep the block short: a model's construction or first call), unless verbose."""
    if verbose():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real descriptor 2 (embedded interpreters): nothing to do
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_libraries() -> None:
    """Before the libraries load: hub download bars, transformers' weight-loading bars and its info lines off,
    TensorFlow-style native logging at errors only (environment, so spawned workers inherit it); no-op when
    verbose."""
    if verbose():
        return
    for k, v in (("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TRANSFORMERS_VERBOSITY", "error"),
                 ("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1"), ("TF_CPP_MIN_LOG_LEVEL", "2"), ("GLOG_minloglevel", "2")):
        os.environ.setdefault(k, v)
    if "transformers" in sys.modules:  # already imported: its own switches
        with contextlib.suppress(Exception):
            from transformers.utils import logging as tlog

            tlog.set_verbosity_error()
            tlog.disable_progress_bar()
