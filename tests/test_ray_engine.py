"""The Ray engine on a local Ray instance with 2 CPUs: the engine contract of the local engines, and the same
features as the local engine."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from affectfuse.engines import Job, RayEngine  # noqa: E402
from affectfuse.extraction import ExtractConfig, extract  # noqa: E402
from affectfuse.features.store import FeatureStore  # noqa: E402
from affectfuse.io.synthetic import write_video  # noqa: E402

_MODULE = '''
import os, time
def parts(job):
    """Three parts per job; 'crash' kills the actor, 'boom' raises, 'hang' stops after one part."""
    if job.video_id.startswith("crash"):
        os._exit(7)
    if job.video_id == "boom":
        raise OSError("decoder exploded")
    if job.video_id == "hang":
        yield (job.video_id, 0, os.getpid())
        time.sleep(3600)
    for k in range(3):
        yield (job.video_id, k, os.getpid())
'''


@pytest.fixture(scope="module")
def local_ray():
    """One local instance for the module (start-up costs seconds); the engine connects to it."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 << 20, logging_level="ERROR",
             log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def prep(tmp_path, monkeypatch, local_ray):
    """A prepare function from a module only the driver can import, sent to the actors by value."""
    (tmp_path / "ray_jobs.py").write_text(textwrap.dedent(_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    import ray_jobs
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(ray_jobs)
    yield ray_jobs.parts
    cloudpickle.unregister_pickle_by_value(ray_jobs)


def _jobs(*names):
    return [Job(n, Path(f"/data/{n}.mp4")) for n in names]


def _collect(engine, prepare, jobs):
    parts, ends, pids = {}, {}, set()
    for r in engine.run(prepare, jobs):
        assert r.job.video_id not in ends, "no event after a job's end"
        if r.part is not None:
            parts.setdefault(r.job.video_id, []).append(r.part[1])
            pids.add(r.part[2])
        if r.end:
            ends[r.job.video_id] = r.lost
    return parts, ends, pids


def test_every_job_ends_once_with_its_parts_in_order_in_actors(prep):
    import os

    parts, ends, pids = _collect(RayEngine(2), prep, _jobs("a", "b", "c", "d", "e"))
    assert ends == {v: None for v in "abcde"}
    assert all(p == [0, 1, 2] for p in parts.values())
    assert os.getpid() not in pids and 1 <= len(pids) <= 2, "parts are prepared in (at most 2) actors"


def test_a_raising_prepare_or_a_dying_actor_loses_only_its_file(prep):
    parts, ends, pids = _collect(RayEngine(2), prep, _jobs("a", "boom", "crash", "b", "crash2", "c"))
    assert "/data/boom.mp4: OSError: decoder exploded" in ends["boom"]
    for v in ("crash", "crash2"):
        assert f"/data/{v}.mp4" in ends[v] and "Ray actor preparing this file died" in ends[v]
        assert v not in parts
    assert all(ends[v] is None and parts[v] == [0, 1, 2] for v in "abc"), "the replaced actors go on"


def test_a_hanging_file_is_stopped_after_the_time_limit(prep):
    t0 = time.time()
    parts, ends, _ = _collect(RayEngine(1, timeout=1.5), prep, _jobs("a", "hang", "b"))
    assert time.time() - t0 < 60
    assert "/data/hang.mp4" in ends["hang"] and "no progress for 2 s" in ends["hang"]
    assert parts["hang"] == [0] and ends["b"] is None and parts["b"] == [0, 1, 2]


def test_config_checks():
    with pytest.raises(ValueError, match="actors >= 1"):
        RayEngine(0)
    with pytest.raises(ValueError, match="engine must be one of local, ray"):
        ExtractConfig(engine="spark").validate()
    with pytest.raises(ValueError, match="address .* is for engine='ray'"):
        ExtractConfig(address="auto").validate()
    with pytest.raises(ValueError, match="needs workers >= 1"):
        ExtractConfig(engine="ray", workers=0).validate()


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from skimage import data

    d = tmp_path_factory.mktemp("ray_videos")
    face = data.astronaut()[30:250, 140:340]
    for k in range(3):
        write_video(d / f"v{k}.mp4", duration=1.5 + 0.5 * k, fps=10, size=(320, 240), face=face, face_size=160,
                    tone_hz=300.0 + 100 * k)
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    return sorted(d.iterdir())


def test_ray_extraction_equals_the_local_engine(videos, tmp_path, local_ray):
    """Same store keys and features within 1e-4 (clip level, faces and audio), the broken file recorded alike;
    only the driver writes the store."""
    cfg = dict(extractors=("faceapi_expression", "logmel_stats"), frames=6,
               extractor_params={"faceapi_expression": {"output": "probs"}})
    local = extract(videos, tmp_path / "local", ExtractConfig(**cfg, workers=0), progress=False)
    remote = extract(videos, tmp_path / "ray", ExtractConfig(**cfg, workers=2, engine="ray"), progress=False)
    assert local.keys == remote.keys
    assert local.failed_videos == remote.failed_videos == ["broken"]
    assert all("broken.mp4" in m for _, _, m in remote.failed)
    a, b = FeatureStore(tmp_path / "local", create=True), FeatureStore(tmp_path / "ray", create=True)
    for name, key in local.keys.items():
        ids = a.video_ids(key)
        assert ids == b.video_ids(key) and len(ids) == 3
        for vid in ids:
            fa, fb = a.get(vid, key), b.get(vid, key)
            np.testing.assert_array_equal(fa.valid, fb.valid)
            np.testing.assert_allclose(fa.values, fb.values, atol=1e-4, err_msg=f"{name} {vid}")
