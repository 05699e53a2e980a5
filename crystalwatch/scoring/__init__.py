"""Scoring: rendering prompts, the scorer backends (exact trie scoring, sampling), multi-process sharding.
Only this package calls the model.

The names below load their module on first use: ``prompts`` and ``backend`` (the settings' checks) need no
torch, so settings and the commands that read files stay light; ``exact``, ``model`` and ``sampled`` import it."""

import importlib
from typing import Any

_HOMES = {
    "score_all": "exact", "score_requests": "exact",
    "PromptTooLongError": "model", "check_context": "model", "context_length": "model", "split_model": "model",
    "DEFAULT_TERMINATORS": "prompts", "TERMINATOR_SETS": "prompts", "AmbiguousCandidatesError": "prompts",
    "Candidate": "prompts", "Request": "prompts", "build_requests": "prompts", "prompt_kind_for": "prompts",
    "render_chat": "prompts", "terminator_ids": "prompts",
    "parse_answer": "sampled", "sample_requests": "sampled",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"crystalwatch.scoring.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'crystalwatch.scoring' has no attribute {name!r}")


__all__ = sorted(_HOMES)
