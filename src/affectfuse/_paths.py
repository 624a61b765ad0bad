"""File names made from ids that come from users' files: video ids, label ids, split names.

An id is free text (a CSV list's ``video_id`` column, ``sub/clip`` for a folder's contents, a label file's
``File_ID``): ``../../etc/x``, ``/abs/path``, ``a\\b``, a NUL, 300 characters, ``Émotion``. Nothing that turns one
into a file name may leave its folder, so every such name goes through this module:

* :func:`safe_name` — one id, one name, collision-free on its own: an id made only of ``[A-Za-z0-9._-]``
  (no leading dot, at most :data:`MAX_LEN` characters, not a Windows device name) is its own name; any other id
  is the kept characters (every run of other characters becomes ``_``) plus ``-`` and a hash of the whole id.
* :func:`unique_names` — the names of a set of ids written into one folder, as readable as can be (no hash):
  ``clip one`` → ``clip_one``; ids that would clash (also by case, for case-insensitive disks) get ``_2``, ``_3``...

Example:
    >>> safe_name("clip_01"), safe_name("../../etc/x")
    ('clip_01', 'etc_x-56da1a2ef2')
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Iterable

__all__ = ["MAX_LEN", "safe_name", "unique_names"]

#: the longest name made (a prefix such as ``timeline_`` and a suffix such as ``.png`` still fit in 255 bytes)
MAX_LEN = 120
_HASH_LEN = 10
_BAD = re.compile(r"[^A-Za-z0-9._-]+")
_RUNS = re.compile(r"[._]*_[._]*")
_HASHED = re.compile(rf"-[0-9a-f]{{{_HASH_LEN}}}$")  # what a hash suffix looks like
# names Windows gives devices, with any extension ("con.txt" is the console too)
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def _readable(text: str, limit: int) -> str:
    """``text`` with every run of characters outside ``[A-Za-z0-9._-]`` as ``_``, no dots at the ends, at most
    ``limit`` characters; empty when nothing is left.

    Where something had to change, runs of ``.`` and ``_`` around a replaced character become one ``_`` and the
    ends lose their ``.`` and ``_`` (``../../etc/x`` → ``etc_x``, not ``_.._etc_x``); accents are dropped
    (``Émotion`` → ``Emotion``).
    """
    plain = text if text.isascii() else "".join(  # "Émotion" -> "Emotion"; other letters become "_"
        c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    name = _BAD.sub("_", plain)
    if name != text or name.startswith(".") or name.endswith("."):
        name = _RUNS.sub("_", name).strip("._")
    return name[:limit].rstrip(".")


def _reserved(name: str) -> bool:
    return name.split(".", 1)[0].lower() in _RESERVED


def safe_name(id: object) -> str:
    """A file name for ``id`` that stays inside its folder and differs for different ids.

    Args:
        id: a video id, label id or any other text (``str()`` is taken).

    Returns:
        ``id`` itself when it is made of ``[A-Za-z0-9._-]`` only, has no leading or trailing dot, is at most
        :data:`MAX_LEN` characters, is not a Windows device name (``con``, ``nul``, ...) and does not end like a
        hash suffix; else its readable part (at most ``MAX_LEN - 12`` characters, other characters as ``_``)
        followed by ``-`` and the first 10 hex digits of the SHA-256 of the id. Never empty, never ``.`` or
        ``..``, never a path separator.

    Two different ids give two different names: a name without a hash suffix is the id itself, and a name with
    one carries the hash of the id it came from.
    """
    text = str(id)
    name = _readable(text, MAX_LEN)
    if name == text and name and not _reserved(name) and not _HASHED.search(name):
        return name
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_LEN]
    stem = _readable(text, MAX_LEN - _HASH_LEN - 2) or "id"
    if _reserved(stem):
        stem = "_" + stem  # "NUL.txt-..." is still the device NUL
    return f"{stem}-{digest}"


def unique_names(ids: Iterable[object], *, limit: int = MAX_LEN) -> dict[str, str]:
    """Readable file names for ids that go into one folder, distinct from each other (also ignoring case).

    Args:
        ids: the ids, in the order they are written (the first of a clashing group keeps the plain name).
        limit: the longest name (a ``_k`` counter included).

    Returns:
        ``{str(id): name}``; a name is the id with every run of characters outside ``[A-Za-z0-9._-]`` as ``_``,
        no dots at the ends, cut to ``limit``; ``id`` when nothing is left; ``_`` in front of a Windows device
        name (``con``, ``nul.txt``); ``_2``, ``_3``... appended where it would equal (ignoring case) a name given
        before.
    """
    out: dict[str, str] = {}
    used: set[str] = set()
    for raw in ids:
        text = str(raw)
        if text in out:
            continue
        base = _readable(text, limit) or "id"
        if _reserved(base):
            base = ("_" + base)[:limit]
        name, k = base, 1
        while name.lower() in used:
            k += 1
            tail = f"_{k}"
            name = base[: limit - len(tail)].rstrip(".") + tail
        used.add(name.lower())
        out[text] = name
    return out
