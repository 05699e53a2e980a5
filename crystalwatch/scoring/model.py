"""The parts of a causal LM the scorers use (decoder body, LM head, config) and the context it can read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from crystalwatch.errors import CrystalwatchError
from crystalwatch.scoring.prompts import Request


def split_model(model: Any) -> tuple[torch.nn.Module, torch.nn.Module, Any]:
    """(decoder body, LM head, config) of a causal LM, through PEFT and DDP wrappers."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module  # DistributedDataParallel and similar
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()  # PEFT: the LoRA layers stay injected in the base model
    body = getattr(model, getattr(model, "base_model_prefix", "model"), None)
    head = model.get_output_embeddings()
    if body is None or head is None:
        raise TypeError(f"{type(model).__name__} is not a causal LM with a decoder body and an LM head")
    return body, head, model.config


class PromptTooLongError(CrystalwatchError):
    """A prompt with its longest answer does not fit in the model's context."""


_CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length")


def context_length(model: Any) -> int | None:
    """The number of positions the model can read (from its config), or None when the config does not say."""
    _, _, config = split_model(model)
    config = getattr(config, "text_config", None) or config
    for name in _CONTEXT_FIELDS:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def check_context(model: Any, requests: Sequence[Request], extra: int = 0) -> None:
    """Raise :class:`PromptTooLongError` before scoring if a prompt plus its longest answer (plus ``extra``
    generated tokens) is longer than the model's context; scoring past it is wrong or crashes."""
    limit = context_length(model)
    if limit is None:
        return
    for r in requests:
        need = len(r.prompt_ids) + max((len(c.ids) for c in r.candidates), default=0) + extra
        if need > limit:
            raise PromptTooLongError(
                f"task '{r.task_id}', prompt '{r.variant}': {len(r.prompt_ids)} prompt tokens plus its answer need "
                f"{need} positions, but the model reads at most {limit}; shorten that prompt in the task file "
                "or leave the task out"
            )
