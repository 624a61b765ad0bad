"""Local engines: :class:`InlineEngine` (this process) and :class:`ProcessEngine` (worker processes).

:class:`ProcessEngine` keeps one job per worker process and streams the job's parts back through a pipe of
its own (a worker killed mid-message tears only that pipe), so a frame-level video of any length flows window
by window and a many-clip run holds at most ``ahead`` (2) finished parts per worker beside the ones being
prepared. It knows which job each worker holds:
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
import threading
import traceback
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.reduction import ForkingPickler
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


class _Sender:
    """A worker's way back to the caller: its own pipe, written by a thread so the worker prepares the next part
    while the last one travels. At most ``ahead`` parts wait in the worker (memory stays bounded); a part that
    cannot be pickled raises in :meth:`put`, in the job that made it."""

    def __init__(self, conn, ahead: int = 2) -> None:
        self.conn = conn
        self.waiting: queue.Queue = queue.Queue(maxsize=ahead)
        self.thread = threading.Thread(target=self._send, daemon=True, name="affectfuse-sender")
        self.thread.start()

    def put(self, kind: str, payload: Any = None) -> None:
        self.waiting.put(ForkingPickler.dumps((kind, payload)))

    def _send(self) -> None:
        while True:
            data = self.waiting.get()
            if data is None:
                return
            try:
                self.conn.send_bytes(data)
            except OSError:  # the caller went away (it stopped the run): nothing left to do here
                os._exit(0)

    def close(self) -> None:
        self.waiting.put(None)
        self.thread.join()
        self.conn.close()


def _worker_main(prepare: Callable[[Job], Iterable[Any]], inbox, conn, ahead: int) -> None:
    """A worker's loop: take a job from ``inbox``, send its parts, then its end; None stops."""
    _single_thread()
    out = _Sender(conn, ahead)
    warm = getattr(prepare, "warm", None)
    if callable(warm):
        try:
            warm()  # load the models while the caller loads its own
        except Exception:  # noqa: BLE001 - a model that cannot load fails the first job, with its message
            pass
    while True:
        job = inbox.get()
        if job is None:
            break
        out.put("start")  # the time limit counts from here, not from the worker's start-up
        try:
            for part in prepare(job):
                out.put("part", part)
        except Exception as e:  # noqa: BLE001
            msg = f"{job.path}: {type(e).__name__}: {e}"
            if os.environ.get("AFFECTFUSE_DEBUG"):
                msg += "\n" + traceback.format_exc()
            out.put("lost", msg)
            continue
        out.put("end")
    out.close()


@dataclass
class _Worker:
    proc: Any
    inbox: Any
    conn: Any  # the reading end of the worker's own pipe
    job: Job | None = None
    since: float = 0.0  # monotonic time of the worker's last sign of progress on its job
    started: bool = False  # the worker has taken its job (start-up time does not count against the limit)


class _Pool:
    """The worker processes of one :meth:`ProcessEngine.run` and the jobs they hold.

    Each worker answers on a pipe of its own: a worker killed in the middle of a message (SIGKILL, the
    out-of-memory killer) tears only its own pipe, which the caller reads as the end of that worker. (With one
    queue shared by all workers, such a death leaves the queue's lock held and half a message in it, and the
    whole run waits forever.)
    """

    def __init__(self, engine: "ProcessEngine", prepare: Callable[[Job], Iterable[Any]]) -> None:
        self.ctx = mp.get_context("spawn")
        self.engine, self.prepare = engine, prepare
        self.workers: dict[int, _Worker] = {}
        self.jobs: Iterator[Job] = iter(())
        self.next_wid = 0
        for _ in range(engine.workers):
            self.start()

    def start(self) -> _Worker:
        inbox = self.ctx.Queue()
        reader, writer = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=_worker_main, args=(self.prepare, inbox, writer, self.engine.ahead),
                                daemon=True, name=f"affectfuse-worker-{self.next_wid}")
        proc.start()
        writer.close()  # the worker holds the only writing end: its death reads as end of file here
        w = self.workers[self.next_wid] = _Worker(proc, inbox, reader)
        self.next_wid += 1
        return w

    def assign(self, w: _Worker) -> None:
        w.job = next(self.jobs, None)
        if w.job is not None:
            w.since, w.started = time.monotonic(), False
            w.inbox.put(w.job)

    def serve(self, jobs: Iterable[Job]) -> Iterator[Result]:
        self.jobs = iter(jobs)
        for w in list(self.workers.values()):
            self.assign(w)
        while True:
            busy = {w.conn: wid for wid, w in self.workers.items() if w.job is not None}
            if not busy:
                return
            for conn in wait(list(busy), timeout=_POLL_S):
                yield from self.receive(busy[conn])
            yield from self.reap()

    def receive(self, wid: int) -> Iterator[Result]:
        w = self.workers[wid]
        try:
            kind, payload = w.conn.recv()
        except (EOFError, OSError):  # the worker died, perhaps in the middle of a message
            w.proc.join(timeout=5.0)
            yield from self.replace(wid, "the worker process preparing this file died (exit code "
                                         f"{w.proc.exitcode}); it was not retried")
            return
        w.since = time.monotonic()
        if kind == "start":
            w.started = True
        elif kind == "part":
            yield Result(w.job, payload)
        else:
            job = w.job
            self.assign(w)
            yield Result(job, end=True, lost=payload if kind == "lost" else None)

    def reap(self) -> Iterator[Result]:
        """Busy workers that stalled (or died without closing their pipe): end their jobs as lost, replace them."""
        now, timeout = time.monotonic(), self.engine.timeout
        for wid, w in list(self.workers.items()):
            if w.job is None or w.conn.poll():  # idle, or it has said something not read yet
                continue
            if not w.proc.is_alive():
                yield from self.replace(wid, f"the worker process preparing this file died (exit code "
                                             f"{w.proc.exitcode}); it was not retried")
            elif timeout and w.started and now - w.since > timeout:
                yield from self.replace(wid, f"no progress for {timeout:.0f} s (the decoder hangs on this file?): "
                                             "its worker was stopped and the file recorded as failed")

    def replace(self, wid: int, why: str) -> Iterator[Result]:
        w = self.workers.pop(wid)
        if w.proc.is_alive():
            w.proc.kill()
            w.proc.join(timeout=5.0)
        w.conn.close()
        self.assign(self.start())
        yield Result(w.job, end=True, lost=f"{w.job.path}: {why}")

    def stop(self) -> None:
        for w in self.workers.values():
            if w.job is None and w.proc.is_alive():
                try:
                    w.inbox.put_nowait(None)  # an idle worker ends its loop
                except Exception:  # noqa: BLE001 - a broken queue: terminated below
                    pass
            else:
                w.proc.terminate()  # a busy one holds parts nobody will read
        for w in self.workers.values():
            w.proc.join(timeout=2.0)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=2.0)
            w.conn.close()


class ProcessEngine:
    """Prepares jobs in ``workers`` spawned processes (see the module docstring).

    Args:
        workers: processes (>= 1).
        ahead: finished parts a worker may hold for the caller while it prepares the next (default 2).
        timeout: seconds a job may go without producing a part before its worker is stopped (killed and
            replaced) and the job ends as lost; 0 = no limit. A decoder that hangs on a file ends that file only.
    """

    def __init__(self, workers: int, *, ahead: int = 2, timeout: float = 0.0) -> None:
        if workers < 1:
            raise ValueError(f"ProcessEngine needs workers >= 1, got {workers}")
        if not timeout >= 0:
            raise ValueError(f"ProcessEngine timeout must be >= 0 seconds, got {timeout}")
        self.workers = int(workers)
        self.in_flight = self.workers
        if ahead < 1:
            raise ValueError(f"ProcessEngine needs ahead >= 1 parts, got {ahead}")
        self.ahead = int(ahead)
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
