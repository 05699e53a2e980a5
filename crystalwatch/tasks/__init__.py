"""Stochastic tasks: specs, loading and validation."""

from crystalwatch.tasks.spec import (
    ChatPrompt,
    CompletionPrompt,
    Outcome,
    Task,
    TaskSpecError,
    builtin_task_ids,
    load_task,
    load_tasks,
    parse_task,
)

__all__ = [
    "ChatPrompt",
    "CompletionPrompt",
    "Outcome",
    "Task",
    "TaskSpecError",
    "builtin_task_ids",
    "load_task",
    "load_tasks",
    "parse_task",
]
