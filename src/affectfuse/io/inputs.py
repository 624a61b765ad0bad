"""What to process: files, folders and lists of media files → ``(video_id, path)`` pairs."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable

__all__ = ["list_inputs", "VIDEO_EXTENSIONS", "AUDIO_EXTENSIONS", "MEDIA_EXTENSIONS"]

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts"}
AUDIO_EXTENSIONS = {".wav", ".mp3", ".m4a", ".flac", ".ogg", ".aac", ".opus"}
MEDIA_EXTENSIONS = VIDEO_EXTENSIONS | AUDIO_EXTENSIONS


def list_inputs(inputs: Iterable[str | Path]) -> list[tuple[str, Path]]:
    """Expand files, folders (recursively, media extensions) and CSV / text lists into (video_id, path).

    A CSV list has a ``path`` column and optionally ``video_id``; a ``.txt`` list has one path per line
    (relative paths are relative to the list's folder). Ids are file stems for files given directly and
    paths relative to the folder (without extension) for folder contents.

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: two inputs map to the same video id, or a list file is malformed.
    """
    pairs: list[tuple[str, Path]] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in MEDIA_EXTENSIONS:
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
                    pairs.append(((row.get("video_id") or "").strip() or f.stem, f))
        elif p.suffix.lower() == ".txt":
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
                line = line.strip()
                if line and not line.startswith("#"):
                    f = Path(line)
                    pairs.append((f.stem, f if f.is_absolute() else p.parent / f))
        else:
            pairs.append((p.stem, p))
    seen: dict[str, Path] = {}
    for vid, f in pairs:
        if vid in seen and seen[vid] != f:
            raise ValueError(f"video id {vid!r} is used by two inputs: {seen[vid]} and {f}; give ids in a CSV list")
        seen[vid] = f
    return list(seen.items())
