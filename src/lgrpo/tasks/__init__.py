"""lgrpo.tasks: one :class:`Task` interface and a registry (:mod:`lgrpo.tasks.task`), the tasks, and math answers."""

from lgrpo.tasks.task import TASKS, PromptFormat, Task, build_task, register_task

__all__ = ["TASKS", "PromptFormat", "Task", "build_task", "register_task"]
