"""What to process: files, folders and lists of media files → ``(video_id, path)`` pairs."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable

__all__ = ["list_inputs", "VIDEO_EXTENSIONS", "AUDIO_EXTENSIONS", "IMAGE_EXTENSIONS", "MEDIA_EXTENSIONS"]

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts"}
AUDIO_EXTENSIONS = {".wav", ".mp3", ".m4a", ".flac", ".ogg", ".aac", ".opus"}
#: still images: a one-frame video to the decoder; taken from folders only when asked (``images=True``, as
#: ``predict`` does), since corpora keep extracted frames as JPEGs beside their videos
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | AUDIO_EXTENSIONS


def list_inputs(inputs: Iterable[str | Path], *, images: bool = False) -> list[tuple[str, Path]]:
    """Expand files, folders (recursively, media extensions) and CSV / text lists into (video_id, path).

    A CSV list has a ``path`` column and optionally ``video_id``; a ``.txt`` list has one path per line
    (relative paths are relative to the list's folder). Ids are file stems for files given directly and
    paths relative to the folder (without extension) for folder contents. Derived ids that two different files
    would share get the file's extension (``clip.mp4``, ``clip.avi``), then, if still shared, the name of its
    folder (``day1/clip.mp4``): the same name in two containers or folders never stops a run.

    Args:
        inputs: files, folders and lists.
        images: folders also give their images (:data:`IMAGE_EXTENSIONS`); an image named directly is always
            taken.

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: two inputs map to the same explicit id (a CSV list's ``video_id``), or a list file is malformed.
    """
    wanted = MEDIA_EXTENSIONS | (IMAGE_EXTENSIONS if images else set())
    pairs: list[tuple[str, Path]] = []
    explicit: set[int] = set()  # indices of pairs whose id a CSV list gave
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in wanted:
                    pairs.append((f.relative_to(p).with_suffix("").as_posix(), f))
        elif p.suffix.lower() == ".csv":
            with open(p, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                if not reader.fieldnames or "path" not in reader.fieldnames:
                    raise ValueError(f"{p}: a CSV input list needs a 'path' column, got columns {reader.fieldnames}")
                for i, row in enumerate(reader, start=2):
                    if not (row.get("path") or "").strip():
                        raise ValueError(f"{p} row {i}: empty 'path'")
                    f = Path(row["path"].strip())
                    f = f if f.is_absolute() else p.parent / f
                    if (row.get("video_id") or "").strip():
                        explicit.add(len(pairs))
                    pairs.append(((row.get("video_id") or "").strip() or f.stem, f))
        elif p.suffix.lower() == ".txt":
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
                line = line.strip()
                if line and not line.startswith("#"):
                    f = Path(line)
                    pairs.append((f.stem, f if f.is_absolute() else p.parent / f))
        else:
            pairs.append((p.stem, p))
    pairs = _distinct(pairs, explicit)
    seen: dict[str, Path] = {}
    for vid, f in pairs:
        if vid in seen and seen[vid] != f:
            raise ValueError(f"video id {vid!r} is used by two inputs: {seen[vid]} and {f}; give ids in a CSV list")
        seen[vid] = f
    return list(seen.items())


def _distinct(pairs: list[tuple[str, Path]], explicit: set[int]) -> list[tuple[str, Path]]:
    """Derived ids shared by different files: add the extension, then the folder name (see :func:`list_inputs`)."""
    for widen in (lambda vid, f: f"{vid}{f.suffix}", lambda vid, f: f"{f.parent.name}/{vid}"):
        files: dict[str, set[Path]] = {}
        for vid, f in pairs:
            files.setdefault(vid, set()).add(f.resolve())
        pairs = [(widen(vid, f) if len(files[vid]) > 1 and i not in explicit else vid, f)
                 for i, (vid, f) in enumerate(pairs)]
    return pairs
