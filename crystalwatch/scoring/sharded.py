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

Run the scoring through :func:`call_gathered` (``exact.score_all`` does): under ZeRO-3 and FSDP2 it gathers
the weights that the scorer uses directly (the LM head, the embeddings). DDP, FSDP2 and ZeRO-2/3 are tested
on CPU with gloo, 2 processes (docs/distributed.md).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from crystalwatch.errors import CrystalwatchError

T = TypeVar("T")


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


def engine(model: Any) -> str:
    """How the model's weights are held: ``"zero3"`` (DeepSpeed ZeRO-3: parameters carry ``ds_id``),
    ``"fsdp2"`` (``torch.distributed.fsdp.fully_shard``), ``"fsdp1"`` (``FullyShardedDataParallel``), or
    ``"replicated"`` (one process, DDP, DeepSpeed ZeRO-1/2: every rank has the full weights)."""
    first = next(iter(model.parameters()), None)
    if first is not None and hasattr(first, "ds_id"):
        return "zero3"
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    modules = list(model.modules())
    if any(isinstance(m, FSDPModule) for m in modules):
        return "fsdp2"
    if any(isinstance(m, FSDP) for m in modules):
        return "fsdp1"
    return "replicated"


class UnsupportedEngineError(CrystalwatchError):
    """The model is sharded in a way crystalwatch cannot measure."""


def check_engine(model: Any) -> str:
    """The engine (see :func:`engine`); FSDP v1 is refused with what to use instead."""
    kind = engine(model)
    if kind == "fsdp1":
        raise UnsupportedEngineError(
            "FSDP v1 (FullyShardedDataParallel) is not supported: use FSDP2 (accelerate `fsdp_version: 2`, "
            "torch's `fully_shard`) or DeepSpeed ZeRO-3; measuring is off for this run"
        )
    return kind


def call_gathered(model: Any, work: Callable[[], T]) -> T:
    """Run ``work`` (which calls the model's body and head itself) with the weights it needs whole on every rank.

    The scorer calls the decoder body and the LM head directly, never the model's top-level forward, so:

    - DeepSpeed ZeRO-3: ``deepspeed.zero.GatheredParameters`` over all parameters (read-only), as TRL does
      around generation;
    - FSDP2: ``work`` runs as a forward method of the outermost ``fully_shard`` unit
      (``register_fsdp_forward_method``, as FSDP2 asks for ``generate``): its pre-forward initialises FSDP
      from the root (a decoder layer run first would break the next training step) and unshards the
      embeddings, final norm and LM head; decoder layers unshard in their own forward; the root is
      resharded afterwards, so the parameters are DTensors again;
    - FSDP v1: refused (:func:`check_engine`); replicated weights: ``work()`` as it is.

    Every rank must call it (the gathers are collectives).
    """
    kind = check_engine(model)
    if kind == "zero3":
        import deepspeed  # optional: only present when training runs under DeepSpeed

        with deepspeed.zero.GatheredParameters(list(model.parameters())):
            return work()
    if kind == "fsdp2":
        from torch.distributed.fsdp import FSDPModule, register_fsdp_forward_method

        root = next(m for m in model.modules() if isinstance(m, FSDPModule))
        if not hasattr(root, "_crystalwatch_forward"):
            root._crystalwatch_forward = types.MethodType(lambda self, fn: fn(), root)
            register_fsdp_forward_method(root, "_crystalwatch_forward")
        try:
            return root._crystalwatch_forward(work)
        finally:
            root.reshard()
    return work()
