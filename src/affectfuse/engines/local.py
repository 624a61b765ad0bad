"""Local engines: :class:`InlineEngine` (this process) and :class:`ProcessEngine` (worker processes).

:class:`ProcessEngine` keeps one job per worker process and streams the job's parts back through one
bounded queue, so a frame-level video of any length flows window by window and a many-clip run holds at
most ``2 * workers`` finished parts beside the ones being prepared. It knows which job each worker holds:
a worker that dies (a decoder crash, the out-of-memory killer) ends that job with a message naming the
file and is replaced; the file is never retried, and never in the caller's process. Workers are started
with ``spawn`` (MediaPipe and torch are not fork-safe once loaded) and run single-threaded
(``OMP_NUM_THREADS=1``, one torch and one OpenCV thread): on a 2-core machine two processes with two BLAS
threads each run 8x slower (design/platform.md §8).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from affectfuse.engines.base import Engine, Job, Result

__all__ = ["InlineEngine", "ProcessEngine", "create_engine"]

_POLL_S = 0.2  # how often a waiting caller checks that the busy workers are still alive


class InlineEngine:
    """Prepares one job at a time in this process (``workers=0``: debugging, tiny runs)."""

    in_flight = 1

    def run(self, prepare: Callable[[Job], Iterable[Any]], jobs: Iterable[Job]) -> Iterator[Result]:
        for job in jobs:
            try:
                for part in prepare(job):
                    yield Result(job, part)
            except Exception as e:  # noqa: BLE001 - prepare should not raise; if it does, the job is lost
                yield Result(job, end=True, lost=f"{job.path}: {type(e).__name__}: {e}")
                continue
            yield Result(job, end=True)


def _single_thread() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import cv2  # heavy native libraries: imported in the worker, after the thread settings
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _worker_main(wid: int, prepare: Callable[[Job], Iterable[Any]], inbox, results) -> None:
    """A worker's loop: take ``(seq, job)`` from ``inbox``, send its parts, then its end; None stops."""
    _single_thread()
    warm = getattr(prepare, "warm", None)
    if callable(warm):
        try:
            warm()  # load the models while the caller loads its own
        except Exception:  # noqa: BLE001 - a model that cannot load fails the first job, with its message
            pass
    while True:
        item = inbox.get()
        if item is None:
            return
        seq, job = item
        results.put(("start", wid, seq, None))  # the time limit counts from here, not from the worker's start-up
        try:
            for part in prepare(job):
                results.put(("part", wid, seq, part))
        except Exception as e:  # noqa: BLE001
            msg = f"{job.path}: {type(e).__name__}: {e}"
            if os.environ.get("AFFECTFUSE_DEBUG"):
                msg += "\n" + traceback.format_exc()
            results.put(("lost", wid, seq, msg))
            continue
        results.put(("end", wid, seq, None))


@dataclass
class _Worker:
    proc: Any
    inbox: Any
    job: Job | None = None
    seq: int = -1
    since: float = 0.0  # monotonic time of the worker's last sign of progress on its job
    started: bool = False  # the worker has taken its job (start-up time does not count against the limit)


class _Pool:
    """The worker processes of one :meth:`ProcessEngine.run`, the jobs they hold and the queue they answer on."""

    def __init__(self, engine: "ProcessEngine", prepare: Callable[[Job], Iterable[Any]]) -> None:
        self.ctx = mp.get_context("spawn")
        self.engine, self.prepare = engine, prepare
        self.results = self.ctx.Queue(maxsize=engine.queue_size)
        self.workers: dict[int, _Worker] = {}
        self.jobs: Iterator[Job] = iter(())
        self.seq = 0
        self.next_wid = 0
        for _ in range(engine.workers):
            self.start()

    def start(self) -> _Worker:
        inbox = self.ctx.Queue()
        proc = self.ctx.Process(target=_worker_main, args=(self.next_wid, self.prepare, inbox, self.results),
                                daemon=True, name=f"affectfuse-worker-{self.next_wid}")
        proc.start()
        w = self.workers[self.next_wid] = _Worker(proc, inbox)
        self.next_wid += 1
        return w

    def assign(self, w: _Worker) -> None:
        w.job = next(self.jobs, None)
        if w.job is not None:
            w.seq, self.seq = self.seq, self.seq + 1
            w.since, w.started = time.monotonic(), False
            w.inbox.put((w.seq, w.job))

    def serve(self, jobs: Iterable[Job]) -> Iterator[Result]:
        self.jobs = iter(jobs)
        for w in list(self.workers.values()):
            self.assign(w)
        checked = time.monotonic()
        while any(w.job is not None for w in self.workers.values()):
            if time.monotonic() - checked > _POLL_S:
                checked = time.monotonic()
                yield from self.reap()
            try:
                kind, wid, seq, payload = self.results.get(timeout=_POLL_S)
            except queue.Empty:
                yield from self.reap()
                continue
            w = self.workers.get(wid)
            if w is None or w.job is None or seq != w.seq:
                continue  # a message of a job that already ended (its worker was replaced)
            w.since = time.monotonic()
            if kind == "start":
                w.started = True
                continue
            if kind == "part":
                yield Result(w.job, payload)
                continue
            job = w.job
            self.assign(w)
            yield Result(job, end=True, lost=payload if kind == "lost" else None)

    def reap(self) -> Iterator[Result]:
        """Busy workers that died or stalled: end their jobs as lost, replace them, give the new ones work."""
        now, timeout = time.monotonic(), self.engine.timeout
        for wid, w in list(self.workers.items()):
            if w.job is None:
                continue
            if w.proc.is_alive():
                if not timeout or not w.started or now - w.since <= timeout:
                    continue
                w.proc.kill()
                w.proc.join(timeout=5.0)
                why = (f"no progress for {timeout:.0f} s (the decoder hangs on this file?): its worker was stopped "
                       "and the file recorded as failed")
            else:
                why = f"the worker process preparing this file died (exit code {w.proc.exitcode}); it was not retried"
            job = w.job
            del self.workers[wid]
            self.assign(self.start())
            yield Result(job, end=True, lost=f"{job.path}: {why}")

    def stop(self) -> None:
        try:  # parts nobody will read: drained so that no worker blocks on a full queue
            while True:
                self.results.get_nowait()
        except (queue.Empty, OSError, ValueError):
            pass
        for w in self.workers.values():
            if w.proc.is_alive():
                try:
                    w.inbox.put_nowait(None)
                except Exception:  # noqa: BLE001 - a broken queue: terminate below
                    pass
        for w in self.workers.values():
            w.proc.join(timeout=2.0)
            if w.proc.is_alive():
                w.proc.terminate()
                w.proc.join(timeout=2.0)


class ProcessEngine:
    """Prepares jobs in ``workers`` spawned processes (see the module docstring).

    Args:
        workers: processes (>= 1).
        queue_size: finished parts that may wait for the caller (default ``2 * workers``).
        timeout: seconds a job may go without producing a part before its worker is stopped (killed and
            replaced) and the job ends as lost; 0 = no limit. A decoder that hangs on a file ends that file only.
    """

    def __init__(self, workers: int, *, queue_size: int | None = None, timeout: float = 0.0) -> None:
        if workers < 1:
            raise ValueError(f"ProcessEngine needs workers >= 1, got {workers}")
        if not timeout >= 0:
            raise ValueError(f"ProcessEngine timeout must be >= 0 seconds, got {timeout}")
        self.workers = int(workers)
        self.in_flight = self.workers
        self.queue_size = int(queue_size or 2 * self.workers)
        self.timeout = float(timeout)
        self._pool: _Pool | None = None

    def prestart(self, prepare: Callable[[Job], Iterable[Any]]) -> None:
        """Start the workers now: they import what ``prepare`` needs and warm it up (``prepare.warm()``, e.g. the
        face detector) while the caller loads its own models; the next :meth:`run` with the same ``prepare`` uses
        them."""
        if self._pool is None:
            self._pool = _Pool(self, prepare)

    def close(self) -> None:
        """Stop workers started by :meth:`prestart` and not used by a run."""
        if self._pool is not None:
            self._pool.stop()
            self._pool = None

    def run(self, prepare: Callable[[Job], Iterable[Any]], jobs: Iterable[Job]) -> Iterator[Result]:
        if self._pool is not None and self._pool.prepare is not prepare:
            self.close()  # started for another prepare
        pool, self._pool = self._pool or _Pool(self, prepare), None
        try:
            yield from pool.serve(jobs)
        finally:
            pool.stop()


def create_engine(workers: int, *, timeout: float = 0.0) -> Engine:
    """The local engine for ``workers`` processes (0 = this process, where no time limit can be enforced).

    Raises:
        ValueError: ``workers`` is negative.
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0 = prepare in this process), got {workers}")
    return InlineEngine() if workers == 0 else ProcessEngine(workers, timeout=timeout)
