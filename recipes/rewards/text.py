"""Shared helpers for the rewards: completion text, per-example columns and number equality."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):  # multimodal parts: [{"type": "text", "text": ...}, ...]
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text":
                parts.append(str(part.get("text", "")))
        return "".join(parts)
    return str(content)


def completion_text(completion: Any) -> str:
    """The text of one completion, standard (``str``) or conversational (list of ``{"role", "content"}`` messages).

    For a message list, the last assistant message is used (the last message if none is marked assistant).
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _content_text(completion.get("content"))
    if isinstance(completion, (list, tuple)):
        messages = [m for m in completion if isinstance(m, dict)]
        if not messages:
            return "".join(str(m) for m in completion)
        assistant = [m for m in messages if m.get("role") == "assistant"]
        return _content_text((assistant or messages)[-1].get("content"))
    raise TypeError(f"Unsupported completion type {type(completion).__name__}: expected str or a list of messages")


def _column(name: str, values: Any, n: int) -> list:
    """A per-example column as a list of length ``n`` (a scalar is broadcast)."""
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, Sequence):
        return [values] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"Column {name!r} has {len(values)} values for {n} completions")
    return values


def _numbers_equal(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
