"""The engine contract: submit videos, get their prepared parts back, in order, with bounded work in flight.

::

    engine = create_engine(workers=2)        # affectfuse.engines.local
    for r in engine.run(prepare, jobs):        # prepare(job) yields the job's parts (one at clip level,
        if r.part is not None: use(r.part)     # windows at frame level)
        if r.end: finish(r.job, lost=r.lost)   # every job ends exactly once; ``lost`` says why it ended early

Guarantees every engine gives:

* the parts of one job arrive in the order ``prepare`` yielded them, then one ``end`` result;
* jobs are started in the order given; at most ``in_flight`` jobs are being prepared at a time and at most a
  bounded number of finished parts wait for the caller, so memory stays flat however many videos there are;
* ``prepare`` is expected to turn its own failures into parts (a failed video is a result, not an
  exception); when it raises anyway, or the process running it dies, the job ends with ``lost`` set to a
  message naming the file, and the other jobs go on;
* stopping the iteration (an exception in the caller, Ctrl-C) stops the workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

__all__ = ["Job", "Result", "Engine"]


@dataclass(frozen=True)
class Job:
    """One video to prepare.

    Attributes:
        video_id: its id.
        path: the media file.
    """

    video_id: str
    path: Path


@dataclass
class Result:
    """One event of :meth:`Engine.run`.

    Attributes:
        job: the job it belongs to.
        part: a part ``prepare`` yielded, or None for the end event.
        end: True on the job's last event.
        lost: on an end event, why the job ended without finishing (its worker died, ``prepare`` raised).
    """

    job: Job
    part: Any = None
    end: bool = False
    lost: str | None = None


class Engine(Protocol):
    """Runs ``prepare`` over jobs (see the module docstring for the guarantees)."""

    in_flight: int

    def run(self, prepare: Callable[[Job], Iterable[Any]], jobs: Iterable[Job]) -> Iterator[Result]:
        ...  # pragma: no cover - protocol

