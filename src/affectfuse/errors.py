"""Errors that name the file and say what was expected and what came."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator


class AffectfuseError(Exception):
    """Base class of affectfuse's own errors."""


class MediaError(AffectfuseError):
    """A media file cannot be used: corrupt, truncated, not a video, no stream of the needed kind...

    Attributes:
        path: the file.
        reason: what was wrong, in words a user can act on.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class NoAudioError(MediaError):
    """The file has no (decodable) audio track."""


class NoVideoError(MediaError):
    """The file has no (decodable) video track."""


class LabelError(AffectfuseError):
    """A label file row is unusable; the message names the file, the row and the problem."""


class TrainingError(AffectfuseError):
    """Training cannot go on: the loss or the gradients are not finite (NaN / Inf).

    Nothing of the failed epoch is written; the run folder keeps the state after the last finished epoch.

    Attributes:
        run: the run folder.
        epoch: the failed epoch, 1-based as ``history.csv`` counts.
        step: the failed optimiser step of that epoch, 1-based (the ``step``-th batch).
    """

    def __init__(self, message: str, *, run: str | Path | None = None, epoch: int | None = None,
                 step: int | None = None) -> None:
        self.run = None if run is None else Path(run)
        self.epoch = epoch
        self.step = step
        super().__init__(message)


class StoreError(AffectfuseError):
    """A feature store cannot be opened or written: disk full, read-only, no permission, locked, damaged.

    The failed write is rolled back: entries written before it are intact and readable.

    Attributes:
        path: the store folder.
        reason: what went wrong, in words ("no space left on device").
    """

    def __init__(self, message: str, *, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(message)


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Name ``path`` in an ``OSError`` raised while writing it without a file name (ENOSPC on ``write``)."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


__all__ = ["AffectfuseError", "MediaError", "NoAudioError", "NoVideoError", "LabelError", "StoreError", "TrainingError",
           "writing"]
