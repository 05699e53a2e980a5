"""Measuring on every rank of a multi-process training run, in lockstep.

Under DeepSpeed ZeRO-3 and FSDP each rank holds a shard of the weights, and a module's forward starts
with a collective that gathers its full weights from all ranks. A rank that calls the model more often,
or in another order, than the others waits in that collective for ever: training deadlocks. So every
rank takes part in every call:

- every rank packs ALL requests the same way (the packing is deterministic) and takes batches
  ``rank, rank + world, ...`` (``score_requests(..., shard=(rank, world))``);
- each round every rank makes one body forward and the same number of LM-head calls; a rank with no
  batch left runs a small padding forward and discards it. Every rank makes ``ceil(n_batches / world)``
  body forwards;
- the partial results are merged with ``all_gather_object`` (gloo and NCCL), so every rank ends with
  every score and can take the same decisions afterwards.

Wrap the call in :func:`gathered_parameters` under ZeRO-3 / FSDP (``exact.score_all`` does): it gathers the
weights that the scorer uses directly (the LM head, the embeddings). Only the gloo path on CPU is
tested here; the ZeRO-3 and FSDP branches of :func:`gathered_parameters` are untested (no DeepSpeed, no
GPUs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch


def _initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def context() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group; ``(0, 1)`` without one."""
    if not _initialized():
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def all_agree(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on every rank (a collective when there are several processes).

    Used when setting up: a rank whose setup failed (a file missing on its node) makes every rank stop
    measuring, instead of leaving the others waiting for it in a collective.
    """
    if context()[1] == 1:
        return flag
    flags: list[Any] = [None] * context()[1]
    torch.distributed.all_gather_object(flags, bool(flag))
    return all(flags)


def broadcast(value: Any) -> Any:
    """The main process's ``value`` on every rank (a collective when there are several processes)."""
    if context()[1] == 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def gather_scores(local: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
    """Merge every rank's partial ``score_requests(..., shard=...)`` results; every rank gets all ``n``.

    A collective: every rank must call it. Only the requests a rank scored travel (as ``{index: scores}``).
    """
    if len(local) != n:
        raise ValueError(f"expected {n} results, got {len(local)}")
    _, world = context()
    if world == 1:
        return list(local)
    parts: list[Any] = [None] * world
    torch.distributed.all_gather_object(parts, {i: s for i, s in enumerate(local) if len(s)})
    merged = [np.zeros(0)] * n  # a request without candidates stays empty, as in score_requests
    for part in parts:
        for i, scores in part.items():
            merged[i] = scores
    return merged


@contextlib.contextmanager
def gathered_parameters(model: Any) -> Iterator[None]:
    """Full weights on every rank for the duration, read-only; a no-op unless ZeRO-3 or FSDP (v1) shards them.

    - DeepSpeed ZeRO-3 (parameters carry ``ds_id``): ``deepspeed.zero.GatheredParameters`` over all
      parameters, as TRL does around generation.
    - torch FSDP v1: ``FullyShardedDataParallel.summon_full_params(model, recurse=False, writeback=False)``,
      as TRL does: the root unit (embeddings, LM head, which the scorer calls outside the root's forward)
      is materialised; inner units (decoder layers) still gather in their own forward, in lockstep.
    - FSDP v2 (``fully_shard``) is not handled. Neither ZeRO-3 nor FSDP is tested here (CPU, no DeepSpeed).
    """
    first = next(iter(model.parameters()), None)
    if first is not None and hasattr(first, "ds_id"):
        import deepspeed  # optional: only present when training runs under DeepSpeed

        with deepspeed.zero.GatheredParameters(list(model.parameters())):
            yield
        return
    if _initialized():
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        if any(isinstance(m, FSDP) for m in model.modules()):
            with FSDP.summon_full_params(model, recurse=False, writeback=False):
                yield
            return
    yield
