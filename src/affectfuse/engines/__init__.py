"""Where the per-video work of an extraction runs: this process, local worker processes, or Ray actors.

An engine takes a picklable ``prepare(job) -> iterator of parts`` and the jobs, runs ``prepare`` somewhere and
hands every part back to the caller, which runs the backbones and writes the store (one writer). See
:class:`affectfuse.engines.base.Engine` for the contract.
"""

from affectfuse.engines.base import Engine, Job, Result
from affectfuse.engines.local import InlineEngine, ProcessEngine, create_engine
from affectfuse.engines.ray import RayEngine  # imports Ray only when a run starts

__all__ = ["Engine", "Job", "Result", "InlineEngine", "ProcessEngine", "RayEngine", "create_engine"]
