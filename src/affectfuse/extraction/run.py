"""``extract(inputs, store, config)``: media files → feature store, resumable, never stopped by one bad file.

Per run: the streams are created and loaded (an extractor that cannot load stops the run before any video is
touched), the plan is made, the videos that still need work are submitted to the engine (local worker
processes by default), and the :class:`~affectfuse.extraction.write.Writer` runs the backbones on batches that
mix rows of several videos and writes every finished video at once.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from affectfuse._config import make_config, to_dict
from affectfuse._versions import versions
from affectfuse.engines.base import Engine, Job
from affectfuse.engines.local import create_engine
from affectfuse.engines.ray import RayEngine
from affectfuse.extraction.config import ExtractConfig, ExtractReport
from affectfuse.extraction.plan import make_plan, make_streams
from affectfuse.extraction.prepare import Preparer
from affectfuse.extraction.write import Writer
from affectfuse.extractors.base import Extractor
from affectfuse.features.store import FeatureStore
from affectfuse.io.inputs import list_inputs

__all__ = ["extract"]


def _load(streams) -> None:
    for s in streams:  # a model that cannot load is a set-up error: stop before touching any video
        try:
            s.extractor.load()
        except Exception as e:  # noqa: BLE001
            raise RuntimeError(f"extractor {s.name!r} could not be loaded: {type(e).__name__}: {e}") from e


class _Bar:
    """A tqdm bar over videos on a terminal (nothing otherwise, or when ``progress`` is False)."""

    def __init__(self, total: int, progress: bool) -> None:
        self.bar = None
        if progress:
            from tqdm.auto import tqdm  # only when a bar is shown

            self.bar = tqdm(total=total, desc="extract", unit="video", dynamic_ncols=True, disable=None,
                            file=sys.stderr)

    def video(self, video_id: str, part) -> None:
        if self.bar is not None and part is not None and part.rows and part.indices is not None:
            self.bar.set_postfix_str(f"{video_id}: frame {int(part.indices[-1]) + 1}/{part.video.get('n_frames', 0)}",
                                     refresh=False)

    def done(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def extract(
    inputs: Iterable[str | Path] | list[tuple[str, Path]],
    store: FeatureStore | str | Path,
    config: ExtractConfig | None = None,
    *,
    progress: bool = True,
    extractors: list[Extractor] | None = None,
    on_video: Callable[[str], None] | None = None,
    engine: Engine | None = None,
    **overrides: Any,
) -> ExtractReport:
    """Extract features of many media files into a store.

    Args:
        inputs: files, folders, CSV/text lists (see :func:`affectfuse.io.inputs.list_inputs`), or
            ``(video_id, path)`` pairs.
        store: a :class:`FeatureStore` or its folder.
        config: an :class:`ExtractConfig`; keyword ``overrides`` change single fields.
        progress: show a progress bar (on a terminal).
        extractors: ready extractor objects (instead of creating ``config.extractors`` by name).
        on_video: called with each video id when it is finished (written or failed).
        engine: where videos are prepared (default: from ``config.engine``: ``config.workers`` local processes or
            Ray actors).

    Returns:
        an :class:`ExtractReport`; failures are in the report and the store's manifest, never raised. The run
        is recorded in ``STORE/runs/extract-<time>.yaml`` (config, keys, versions, counts).

    Raises:
        RuntimeError: an extractor cannot be loaded (nothing was written).
        KeyError / TypeError / ValueError: an unknown extractor, parameter or value.
    """
    cfg = make_config(ExtractConfig, overrides, base=config) if (config is None or overrides) else config.validate()
    items = list(inputs)
    pairs = items if items and isinstance(items[0], tuple) else list_inputs(items)  # type: ignore[arg-type]
    if not isinstance(store, FeatureStore):
        store = FeatureStore(store, create=True, dtype="float16" if cfg.float16 else "float32")
    streams = make_streams(cfg, extractors)
    report = ExtractReport()
    writer = Writer(streams, store, cfg, report)
    t0 = time.time()
    jobs: list[Job] = []
    for vid, path in pairs:
        todo = writer.pending(vid, path)
        keys = {s.key for s in todo}
        report.skipped += [(vid, s.key) for s in streams if s.key not in keys]
        if todo:
            writer.start(vid, todo)
            jobs.append(Job(vid, Path(path)))
    bar = _Bar(len(jobs), progress)

    def finished(vid: str) -> None:
        bar.done()
        if on_video is not None:
            on_video(vid)

    writer.on_video = finished
    workers = cfg.workers if cfg.workers is not None else (1 if cfg.engine == "ray" else default_workers(len(jobs)))
    engine = engine or _engine(cfg, workers)
    preparer = Preparer(make_plan(streams, cfg))
    if jobs and hasattr(engine, "prestart"):
        engine.prestart(preparer)  # the workers start up while this process loads the models
    try:
        _load(streams)
    except BaseException:
        getattr(engine, "close", lambda: None)()
        bar.close()
        raise
    try:
        for r in engine.run(preparer, jobs):
            if r.part is not None:
                bar.video(r.job.video_id, r.part)
                writer.add(r.part)
            if r.lost:
                writer.fail(r.job.video_id, str(r.job.path), r.lost)
        writer.flush()
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        bar.close()
        report.seconds = time.time() - t0
        report.stages = dict(writer.seconds)
    _record(store, cfg, report, len(pairs))
    return report


def default_workers(videos: int, cores: int | None = None) -> int:
    """The decoding / face processes of ``ExtractConfig(workers=None)``: none for a single video (no process
    start-up for one short clip), else half the cores, at least 2 and at most 8, and never more than the videos.

    On 2 cores, 24 clips of 12 s with the default extractors took 13.6-14.1 s with 2 workers against 15.4-16.4 s
    with 1 (benchmarks/RESULTS.md): one worker decodes and finds faces on one thread while the backbones cannot
    keep both cores busy. Larger machines get more workers without a measurement behind the number.
    """
    if videos <= 1:
        return 0
    cores = cores if cores is not None else (os.cpu_count() or 1)
    return min(videos, max(2, min(8, cores // 2)))


def _engine(cfg: ExtractConfig, workers: int) -> Engine:
    """The engine ``cfg.engine`` names, with ``workers`` workers (local processes or Ray actors)."""
    if cfg.engine == "ray":
        return RayEngine(max(1, workers), timeout=cfg.timeout, address=cfg.address)
    return create_engine(workers, timeout=cfg.timeout)


def _record(store: FeatureStore, cfg: ExtractConfig, report: ExtractReport, inputs: int) -> Path:
    """``STORE/runs/extract-<time>.yaml``: the config, keys and versions a run used, and what it did."""
    record = {"command": "extract", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "config": to_dict(cfg),
              "keys": report.keys, "versions": versions(), "inputs": inputs, "done": len(report.done),
              "skipped": len(report.skipped), "failed": len(report.failed), "interrupted": report.interrupted,
              "seconds": round(report.seconds, 3)}
    runs = store.path / "runs"
    runs.mkdir(exist_ok=True)
    path = runs / f"extract-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6:06d}.yaml"
    path.write_text(yaml.safe_dump(record, sort_keys=False))
    return path
