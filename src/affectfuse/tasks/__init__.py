"""Task specifications, losses and metrics."""

from affectfuse.tasks.spec import TASKS, TaskSpec, get_task

__all__ = ["TASKS", "TaskSpec", "get_task"]
