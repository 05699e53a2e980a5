"""Scoring: rendering prompts, the scorer backends (exact trie scoring, sampling), multi-process sharding.
Only this package calls the model."""

from crystalwatch.scoring.exact import score_all, score_requests
from crystalwatch.scoring.model import PromptTooLongError, check_context, context_length, split_model
from crystalwatch.scoring.prompts import (
    DEFAULT_TERMINATORS,
    TERMINATOR_SETS,
    AmbiguousCandidatesError,
    Candidate,
    Request,
    build_requests,
    prompt_kind_for,
    render_chat,
    terminator_ids,
)
from crystalwatch.scoring.sampled import parse_answer, sample_requests

__all__ = [
    "DEFAULT_TERMINATORS",
    "TERMINATOR_SETS",
    "AmbiguousCandidatesError",
    "Candidate",
    "PromptTooLongError",
    "Request",
    "build_requests",
    "check_context",
    "context_length",
    "parse_answer",
    "prompt_kind_for",
    "render_chat",
    "sample_requests",
    "score_all",
    "score_requests",
    "split_model",
    "terminator_ids",
]
