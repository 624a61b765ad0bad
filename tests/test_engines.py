"""Engines: parts in order, every job ends once, bounded work in flight, a dying worker loses only its file."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from affectfuse.engines import InlineEngine, Job, ProcessEngine, create_engine

# prepare functions must be importable by spawned workers: they live in a module written to a folder on sys.path
_MODULE = '''
import os, threading, time
def parts(job):
    """Three parts per job; 'crash' kills the worker, 'boom' raises, 'slow' sleeps first, 'torn' dies while
    it streams 4 MiB parts (so, almost surely, in the middle of sending one)."""
    if job.video_id.startswith("torn"):
        threading.Timer(0.5, lambda: os._exit(9)).start()
        for k in range(100000):
            yield (job.video_id, k, b"x" * (4 << 20))
    if job.video_id == "crash":
        os._exit(7)
    if job.video_id == "boom":
        raise OSError("decoder exploded")
    if job.video_id.startswith("slow"):
        time.sleep(0.3)
    if job.video_id == "hang":
        yield (job.video_id, 0, os.getpid())
        time.sleep(3600)
    for k in range(3):
        yield (job.video_id, k, os.getpid())
'''


@pytest.fixture
def prep(tmp_path, monkeypatch):
    (tmp_path / "engine_jobs.py").write_text(textwrap.dedent(_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    import engine_jobs

    return engine_jobs.parts


def _jobs(*names):
    return [Job(n, Path(f"/data/{n}.mp4")) for n in names]


def _collect(engine, prepare, jobs):
    parts, ends = {}, {}
    for r in engine.run(prepare, jobs):
        assert r.job.video_id not in ends, "no event after a job's end"
        if r.part is not None:
            parts.setdefault(r.job.video_id, []).append(r.part[1])
        if r.end:
            ends[r.job.video_id] = r.lost
    return parts, ends


@pytest.mark.parametrize("engine", [InlineEngine(), ProcessEngine(2)], ids=["inline", "process"])
def test_every_job_ends_once_with_its_parts_in_order(engine, prep):
    parts, ends = _collect(engine, prep, _jobs("a", "slow1", "b", "c", "slow2"))
    assert set(ends) == {"a", "slow1", "b", "c", "slow2"} and all(v is None for v in ends.values())
    assert all(p == [0, 1, 2] for p in parts.values())


def test_a_raising_prepare_loses_only_its_job(prep):
    for engine in (InlineEngine(), ProcessEngine(1)):
        parts, ends = _collect(engine, prep, _jobs("a", "boom", "b"))
        assert ends["a"] is None and ends["b"] is None
        assert "/data/boom.mp4" in ends["boom"] and "decoder exploded" in ends["boom"]
        assert "boom" not in parts


def test_a_dying_worker_is_replaced_and_its_file_recorded(prep):
    import os

    parts, ends = _collect(ProcessEngine(2), prep, _jobs("a", "crash", "b", "c", "crash2", "d"))
    assert "/data/crash.mp4" in ends["crash"] and "died" in ends["crash"] and "exit code 7" in ends["crash"]
    assert all(ends[v] is None for v in ("a", "b", "c", "crash2", "d"))
    assert all(parts[v] == [0, 1, 2] for v in ("a", "b", "c", "crash2", "d"))
    ran_in = {r.part[2] for r in ProcessEngine(1).run(prep, _jobs("x")) if r.part is not None}
    assert ran_in and os.getpid() not in ran_in, "the caller's process never prepares a job"


def test_a_worker_killed_in_the_middle_of_a_message_loses_only_its_file(prep):
    """A worker dying while its part is half sent (SIGKILL, the OOM killer) must not stall the run: with one
    queue shared by all workers it left the queue's lock held and the caller waited forever."""
    t0 = time.time()
    parts, ends = _collect(ProcessEngine(1), prep, _jobs("torn1", "a", "torn2", "b"))
    assert time.time() - t0 < 60
    assert "died (exit code 9)" in ends["torn1"] and "/data/torn2.mp4" in ends["torn2"]
    assert ends["a"] is None and ends["b"] is None and parts["a"] == parts["b"] == [0, 1, 2]
    assert len(parts["torn1"]) > 3 and parts["torn1"] == list(range(len(parts["torn1"]))), "whole parts, in order"


def test_jobs_start_in_order_and_work_in_flight_is_bounded(prep):
    """With one worker, a job is only taken when the previous one ended: events come strictly job by job."""
    order = [r.job.video_id for r in ProcessEngine(1).run(prep, _jobs("a", "b", "c")) if r.end]
    assert order == ["a", "b", "c"]
    eng = ProcessEngine(3)
    assert eng.in_flight == 3 and eng.ahead == 2
    with pytest.raises(ValueError, match="ahead >= 1"):
        ProcessEngine(1, ahead=0)


def test_stopping_the_iteration_stops_the_workers(prep):
    import multiprocessing as mp

    gen = ProcessEngine(2).run(prep, _jobs(*[f"slow{i}" for i in range(20)]))
    next(gen)
    gen.close()  # the caller stops early (an exception, Ctrl-C)
    deadline = time.time() + 10
    while time.time() < deadline and [p for p in mp.active_children() if p.name.startswith("affectfuse-worker")]:
        time.sleep(0.1)
    assert not [p for p in mp.active_children() if p.name.startswith("affectfuse-worker")]


def test_create_engine():
    assert isinstance(create_engine(0), InlineEngine)
    assert isinstance(create_engine(3), ProcessEngine) and create_engine(3).workers == 3
    with pytest.raises(ValueError, match="workers must be >= 0"):
        create_engine(-1)


def test_a_hanging_file_is_stopped_after_the_time_limit_and_the_run_goes_on(prep):
    t0 = time.time()
    parts, ends = _collect(ProcessEngine(1, timeout=1.5), prep, _jobs("a", "hang", "b"))
    assert time.time() - t0 < 30
    assert "/data/hang.mp4" in ends["hang"] and "no progress for 2 s" in ends["hang"]
    assert parts["hang"] == [0], "what the file gave before it hung reached the caller"
    assert ends["a"] is None and ends["b"] is None and parts["b"] == [0, 1, 2]
