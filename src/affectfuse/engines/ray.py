"""The Ray engine: :class:`RayEngine` prepares videos in Ray actors, on this machine or across a cluster.

Each actor is one Ray worker process that receives the ``prepare`` callable once, when it is created (the
callable is put in the object store once per run, and every actor fetches it from there), so a
:class:`~affectfuse.extraction.prepare.Preparer` loads its face detector once per actor, not once per video.

Parts are *pulled*, one call per part: ``actor.step(seq, job)`` returns the next part of the job the actor
holds (``("part", part)``), then ``("end", None)`` when ``prepare`` is exhausted, or ``("lost", message)``
when it raised. The driver asks for the next part as soon as one arrives, before handing it to the caller,
so an actor prepares while the driver runs the extractors, and at most one finished part per actor waits in
the object store. This works on every way of reaching Ray, Ray Client (``ray://``) included, which does not
run streaming generators (``num_returns="streaming"``). It costs one round trip per part: a part is a whole
clip-level video or a window of frames, which takes tens to hundreds of milliseconds to prepare.

Each actor holds one job at a time, so ``in_flight`` equals ``actors`` and the jobs start in the order given.
An actor that dies while it holds a job (a decoder crash, the out-of-memory killer, a lost node:
``RayActorError``) ends that job with a message naming the file and is replaced. So is an actor whose job
makes no progress for ``timeout`` seconds, counted from when the actor is ready, so its start-up does not
count. The file is never retried. Parts reach the caller as private, writable copies, so the object store
frees each part as soon as it has been read. Only the driver writes the feature store.

Ray is optional (``pip install "affectfuse[distributed]"``). It is imported when a run starts, never when
this module is imported, so ``import affectfuse`` and the local engines never import it.
"""

from __future__ import annotations

import copy
import os
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from affectfuse.engines.base import Job, Result

__all__ = ["RayEngine", "import_ray"]

_POLL_S = 0.2  # how often a waiting driver checks time limits
_DEBUG_ENV = "AFFECTFUSE_DEBUG"


def import_ray():
    """The ``ray`` module.

    Raises:
        ImportError: when Ray is not installed. The message names the extra to install.
    """
    try:
        import ray  # the optional extra: imported only when a Ray run starts
    except ImportError as e:
        raise ImportError('the Ray engine needs Ray: pip install "affectfuse[distributed]"') from e
    return ray


def _set_threads(n: int) -> None:
    """Native libraries run ``n`` threads in the actor (two actors x two BLAS threads on two cores is 8x slower)."""
    os.environ["OMP_NUM_THREADS"] = str(n)
    try:
        import cv2  # imported in the actor, after the thread setting

        cv2.setNumThreads(n)
    except ImportError:  # pragma: no cover - cv2 is a core dependency
        pass
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:  # pragma: no cover - torch is a core dependency
        pass


class _Preparing:
    """The actor: holds ``prepare`` and the iterator of the job it is preparing.

    Args:
        prepare: the engine's ``prepare(job) -> iterator of parts`` (sent once, at creation).
        threads: native threads (OpenMP, OpenCV, torch) the actor may use.
    """

    def __init__(self, prepare: Callable[[Job], Iterable[Any]], threads: int) -> None:
        _set_threads(max(1, int(threads)))
        self.prepare = prepare
        self.seq = -1
        self.parts: Iterator[Any] | None = None

    def ready(self) -> int:
        """The actor's process id, once it has started."""
        return os.getpid()

    def step(self, seq: int, job: Job) -> tuple[str, Any]:
        """The next event of job ``seq``: ``("part", part)``, ``("end", None)`` or ``("lost", message)``.

        A new ``seq`` drops the job held before (if any) and starts ``job``.
        """
        try:
            if seq != self.seq:
                self._drop()
                self.seq, self.parts = seq, iter(self.prepare(job))
            if self.parts is None:
                return ("end", None)
            try:
                return ("part", next(self.parts))
            except StopIteration:
                self.parts = None
                return ("end", None)
        except Exception as e:  # noqa: BLE001 - prepare should not raise; if it does, only its job is lost
            self.parts = None
            msg = f"{job.path}: {type(e).__name__}: {e}"
            if os.environ.get(_DEBUG_ENV):
                msg += "\n" + traceback.format_exc()
            return ("lost", msg)

    def _drop(self) -> None:
        close = getattr(self.parts, "close", None)
        self.parts = None
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - the job being dropped failed while closing: nothing to report
                pass


@dataclass
class _Slot:
    """One actor as the driver sees it."""

    actor: Any
    ready: Any  # the ``ready()`` reference until the actor has started, then None
    job: Job | None = None
    seq: int = -1
    call: Any = None  # the reference of the outstanding ``step`` call
    since: float = 0.0  # monotonic time of the last progress (or of the actor becoming ready)


class RayEngine:
    """Prepares jobs in ``actors`` Ray actors (see the module docstring).

    Args:
        actors: actors (>= 1), each preparing one video at a time.
        num_cpus: CPUs each actor asks Ray for. This is also the number of native threads it runs.
        num_gpus: GPUs each actor asks Ray for. None (auto) gives each actor an equal share of the cluster's
            GPUs (at most one) where the cluster has any, and 0 elsewhere. The project's face detectors run on
            the CPU, so today this only decides where the actors are placed.
        timeout: seconds a job may go without producing a part before its actor is killed and replaced and
            the job ends as lost; 0 means no limit.
        address: the Ray cluster to connect to (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``). None
            connects to the cluster this process is already connected to, or else starts a local instance
            with ``actors * num_cpus`` CPUs, no dashboard and ``object_store_memory`` bytes of object store.
            The engine shuts down only an instance it started, at the end of each run.
        object_store_memory: the object store of a local instance the engine starts.
        start_timeout: seconds to wait for the first actor to start before giving up (the cluster has no room
            for actors of this size, or the nodes cannot import ``affectfuse``).

    Raises:
        ValueError: a count or time is out of range.
    """

    def __init__(self, actors: int = 2, *, num_cpus: float = 1.0, num_gpus: float | None = None,
                 timeout: float = 0.0, address: str | None = None, object_store_memory: int = 512 << 20,
                 start_timeout: float = 300.0) -> None:
        if actors < 1:
            raise ValueError(f"RayEngine needs actors >= 1, got {actors}")
        if not num_cpus > 0 or (num_gpus is not None and not num_gpus >= 0):
            raise ValueError(f"RayEngine: num_cpus > 0 and num_gpus >= 0 expected, got {num_cpus}, {num_gpus}")
        if not timeout >= 0 or not start_timeout > 0:
            raise ValueError(f"RayEngine: timeout >= 0 and start_timeout > 0 expected, got {timeout}, {start_timeout}")
        self.actors = int(actors)
        self.in_flight = self.actors
        self.num_cpus = float(num_cpus)
        self.num_gpus = num_gpus
        self.timeout = float(timeout)
        self.address = address
        self.object_store_memory = int(object_store_memory)
        self.start_timeout = float(start_timeout)

    # -- connection -----------------------------------------------------------------------------
    def _connect(self, ray) -> bool:
        """Connect to (or start) Ray; True when this call started the instance (and must shut it down)."""
        if ray.is_initialized():
            return False
        if self.address:
            ray.init(address=self.address, logging_level="WARNING")
            return True  # the connection is ours: ray.shutdown() disconnects and leaves the cluster running
        cpus = max(1, int(round(self.actors * self.num_cpus)))
        ray.init(num_cpus=cpus, include_dashboard=False, object_store_memory=self.object_store_memory,
                 logging_level="WARNING")
        return True

    def _gpus(self, ray) -> float:
        if self.num_gpus is not None:
            return float(self.num_gpus)
        total = float(ray.cluster_resources().get("GPU", 0.0))
        return min(1.0, total / self.actors) if total > 0 else 0.0

    # -- the run --------------------------------------------------------------------------------
    def run(self, prepare: Callable[[Job], Iterable[Any]], jobs: Iterable[Job]) -> Iterator[Result]:
        """Prepare ``jobs`` with ``prepare`` in Ray actors (see :class:`~affectfuse.engines.base.Engine`)."""
        ray = import_ray()
        started = self._connect(ray)
        slots: list[_Slot] = []
        try:
            gpus = self._gpus(ray)
            options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": gpus, "max_restarts": 0,
                                       "max_task_retries": 0}
            if os.environ.get(_DEBUG_ENV):
                options["runtime_env"] = {"env_vars": {_DEBUG_ENV: os.environ[_DEBUG_ENV]}}
            actor_cls = ray.remote(**options)(_Preparing)
            prepare_ref = ray.put(prepare)  # one copy in the object store; each actor fetches it once
            threads = max(1, int(self.num_cpus))
            yield from self._loop(ray, lambda: actor_cls.remote(prepare_ref, threads), iter(jobs), slots,
                                  {"CPU": self.num_cpus, "GPU": gpus})
        finally:
            for s in slots:
                _kill(ray, s.actor)
            if started:
                ray.shutdown()

    def _loop(self, ray, new_actor: Callable[[], Any], jobs: Iterator[Job], slots: list[_Slot],
              resources: dict[str, float]) -> Iterator[Result]:
        seq = 0
        t0 = checked = time.monotonic()
        any_ready = False

        def spawn() -> _Slot:
            actor = new_actor()
            slot = _Slot(actor, actor.ready.remote())
            slots.append(slot)
            return slot

        def assign(s: _Slot) -> None:
            nonlocal seq
            s.job = next(jobs, None)
            if s.job is not None:
                s.seq, seq = seq, seq + 1
                s.since = time.monotonic()
                s.call = s.actor.step.remote(s.seq, s.job)  # queued behind ready(): sent now, runs once started

        def replace(s: _Slot) -> None:
            _kill(ray, s.actor)
            slots.remove(s)
            assign(spawn())

        for _ in range(self.actors):
            spawn()
        for s in list(slots):
            assign(s)
        while any(s.job is not None for s in slots):
            waiting: dict[Any, tuple[_Slot, bool]] = {}
            for s in slots:
                if s.job is not None:
                    waiting[s.ready if s.ready is not None else s.call] = (s, s.ready is not None)
            done, _ = ray.wait(list(waiting), num_returns=1, timeout=_POLL_S)
            if done:
                s, is_ready = waiting[done[0]]
                if is_ready:  # the actor has started: its job's time limit counts from now
                    try:
                        ray.get(s.ready)
                    except ray.exceptions.RayError as e:  # its constructor failed: a set-up error, not a file's
                        raise RuntimeError(f"a Ray actor could not start: {_first_line(e)}") from e
                    s.ready, s.since, any_ready = None, time.monotonic(), True
                else:
                    yield from self._event(ray, s, assign, replace)
            now = time.monotonic()
            if now - checked > _POLL_S:
                checked = now
                yield from self._reap(ray, slots, replace, now, t0, any_ready, resources)

    @staticmethod
    def _event(ray, s: _Slot, assign, replace) -> Iterator[Result]:
        """The result of slot ``s``'s finished ``step`` call, as engine results."""
        job = s.job
        assert job is not None
        try:
            kind, payload = ray.get(s.call)
        except ray.exceptions.RayActorError as e:
            replace(s)
            yield Result(job, end=True, lost=f"{job.path}: the Ray actor preparing this file died "
                                             f"({_first_line(e)}); it was not retried")
            return
        except ray.exceptions.RayError as e:  # e.g. a part that could not be sent back: the actor lives on
            assign(s)
            yield Result(job, end=True, lost=f"{job.path}: {type(e).__name__}: {_first_line(e)}")
            return
        s.since = time.monotonic()
        if kind == "part":
            part, payload = _owned(payload), None  # the object store's copy is released here
            s.call = s.actor.step.remote(s.seq, job)  # the actor prepares on while the caller works
            yield Result(job, part)
            return
        assign(s)
        yield Result(job, end=True, lost=payload if kind == "lost" else None)

    def _reap(self, ray, slots: list[_Slot], replace, now: float, t0: float, any_ready: bool,
              resources: dict[str, float]) -> Iterator[Result]:
        """Jobs over the time limit end as lost (their actors are replaced); actors that never start stop the run."""
        if not any_ready and now - t0 > self.start_timeout:
            raise RuntimeError(
                f"no Ray actor started in {self.start_timeout:.0f} s: each asks for {resources}, the cluster has "
                f"{ray.cluster_resources()} ({ray.available_resources()} free); check that every node has room "
                'for the actors and affectfuse installed (pip install "affectfuse[distributed]")')
        if not self.timeout:
            return
        for s in list(slots):
            if s.job is None or s.ready is not None or now - s.since <= self.timeout:
                continue
            job = s.job
            replace(s)
            yield Result(job, end=True, lost=f"{job.path}: no progress for {self.timeout:.0f} s (the decoder hangs "
                                             "on this file?): its Ray actor was stopped and the file recorded as failed")


def _kill(ray, actor) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # noqa: BLE001 - already dead, or the connection is gone
        pass


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _owned(part: Any) -> Any:
    """A private, writable copy of a part (Ray returns read-only arrays backed by the object store, which stay
    pinned there while any view of them lives)."""
    return copy.deepcopy(part)
