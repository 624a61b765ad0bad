"""Errors that name the file and say what was expected and what came."""

from __future__ import annotations

from pathlib import Path


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


__all__ = ["AffectfuseError", "MediaError", "NoAudioError", "NoVideoError", "LabelError"]
