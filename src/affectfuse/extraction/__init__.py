"""Extraction: from raw media files to a feature store.

``extract(inputs, store, config)`` runs, per video::

    sample (io.sampling: clip N frames / frame-level windows, audio fragments)   ┐ in the engine's
      → faces (detect once, crop at each extractor's size)                      ┘ workers
      → every extractor, batched across videos → FeatureStore.put               (this process, one writer)

Bad input never stops the run: a video that cannot be read is recorded as failed (with a message naming the
file and the problem) and the run goes on; a missing stream (no audio, no video) or a video without any face
gives features whose rows are all invalid, with a warning. Finished (video, extractor) pairs are skipped on a
re-run unless ``overwrite``; every write is atomic, so an interrupted run resumes where it stopped.

Modules: ``config`` (ExtractConfig, named sets, the report), ``plan`` (streams, store keys, what to prepare),
``prepare`` (one video, in a worker), ``write`` (backbones and store), ``run`` (``extract``).
"""

from affectfuse.extraction.config import (
    DEFAULT_EXTRACTORS,
    EXTRACTOR_SETS,
    ExtractConfig,
    ExtractReport,
    expand_extractors,
)
from affectfuse.extraction.plan import Stream, make_plan, make_streams
from affectfuse.extraction.run import extract

__all__ = ["extract", "ExtractConfig", "ExtractReport", "expand_extractors", "DEFAULT_EXTRACTORS", "EXTRACTOR_SETS",
           "Stream", "make_streams", "make_plan"]
