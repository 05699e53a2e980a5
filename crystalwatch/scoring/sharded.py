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

Only the Monitor measures in lockstep (inside :func:`lockstep`, entered alike on every rank). A plain
``measure()`` called on one rank measures alone: replicated weights score locally, sharded weights are refused
at once (their forwards would wait for ranks that are not coming).

Faults: a rank whose scoring raises still joins the gather, carrying its error instead of scores, so every
rank raises the same :class:`RankFault` and the Monitor turns measuring off everywhere. Under a sharded engine
the other ranks are already waiting inside a weight gather that cannot be unwound: the failing rank raises a
fatal :class:`RankFault` that stops the run (the launcher then ends the other ranks) instead of joining a
collective the others are not in.

Run the scoring through :func:`call_gathered` (``exact.score_all`` does): under ZeRO-3 and FSDP2 it gathers
the weights that the scorer uses directly (the LM head, the embeddings). DDP, FSDP2 and ZeRO-2/3 are tested
on CPU with gloo, 2 processes (docs/distributed.md).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator, Sequence
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


_LOCKSTEP = [False]  # inside lockstep(): scoring is split over the ranks and gathered


@contextlib.contextmanager
def lockstep() -> Iterator[None]:
    """Measure together: inside, scoring is split over every rank of the process group (every rank must enter)."""
    was, _LOCKSTEP[0] = _LOCKSTEP[0], True
    try:
        yield
    finally:
        _LOCKSTEP[0] = was


class RankFault(CrystalwatchError):
    """Work that every rank does together failed on some rank; ``fatal``: the run cannot go on."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


def failures(error: str | None) -> dict[int, str]:
    """Every rank's error (``None``: it worked), gathered on every rank: ``{rank: error}`` of those that failed.

    A collective when there are several processes. Each stage of the Monitor ends with it, so a rank whose work
    failed (a file missing on its node, an out-of-memory) makes every rank stop measuring alike, instead of
    leaving the others waiting for it in a collective.
    """
    rank, world = context()
    if world == 1:
        return {} if error is None else {rank: error}
    errors: list[Any] = [None] * world
    torch.distributed.all_gather_object(errors, error)
    return {r: e for r, e in enumerate(errors) if e is not None}


def describe(failed: dict[int, str]) -> str:
    """``rank 1 (RuntimeError: ...)``, or ``every rank (...)`` when all failed alike, for messages."""
    if len(failed) > 1 and len(failed) == context()[1] and len(set(failed.values())) == 1:
        return f"every rank ({next(iter(failed.values()))})"
    return "; ".join(f"rank {r} ({e})" for r, e in sorted(failed.items()))


def broadcast(value: Any) -> Any:
    """The main process's ``value`` on every rank (a collective when there are several processes)."""
    if context()[1] == 1:
        return value
    box = [value]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def scored_together(model: Any, work: Callable[[tuple[int, int]], Sequence[np.ndarray]], n: int) -> list[np.ndarray]:
    """Every rank runs ``work(shard)`` (``score_requests(..., shard=shard)``) on its share, through
    :func:`call_gathered`, and every rank gets all ``n`` results.

    Outside :func:`lockstep` (or with one process) the whole of ``work`` runs here alone; sharded weights are then
    refused at once. Inside, a collective: only the requests a rank scored travel (as ``{index: scores}``), and a
    rank that failed sends its error instead, so that every rank raises the same :class:`RankFault`. Under a
    sharded engine a failure cannot be unwound (the other ranks wait inside a weight gather): the failing rank
    raises a fatal :class:`RankFault` at once, without joining another collective.
    """
    rank, world = context()
    kind = check_engine(model)
    if world == 1 or not _LOCKSTEP[0]:
        if world > 1 and kind != "replicated":
            raise UnsupportedEngineError(
                f"cannot measure on rank {rank} alone: the model is sharded over {world} processes ({kind}) and "
                "each forward gathers weights from every rank; measure through a Monitor (monitor.measure), "
                "called on every rank"
            )
        return list(call_gathered(model, lambda: work((0, 1))))
    try:
        local = call_gathered(model, lambda: work((rank, world)))
        if len(local) != n:
            raise ValueError(f"expected {n} results, got {len(local)}")
        mine: Any = {i: s for i, s in enumerate(local) if len(s)}
    except Exception as err:
        cause = f"{type(err).__name__}: {err}"
        if kind != "replicated":
            raise RankFault(
                f"measuring failed on rank {rank} of {world} inside a {kind} forward ({cause}); the other ranks "
                "wait in a weight gather that cannot be unwound, so the run stops here (measure less at once: "
                "lower batch_tokens, or fewer tasks)", fatal=True,
            ) from err  # fmt: skip
        mine = cause
    parts: list[Any] = [None] * world
    torch.distributed.all_gather_object(parts, mine)
    failed = {r: p for r, p in enumerate(parts) if isinstance(p, str)}
    if failed:
        raise RankFault(f"scoring failed on {describe(failed)}")
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


def check_engine(model: Any, estimator: str = "exact") -> str:
    """The engine (see :func:`engine`); FSDP v1 is refused with what to use instead, and so is the sampled
    estimator on sharded weights (``generate`` runs a different number of forwards on each rank)."""
    kind = engine(model)
    if kind == "fsdp1":
        raise UnsupportedEngineError(
            "FSDP v1 (FullyShardedDataParallel) is not supported: use FSDP2 (accelerate `fsdp_version: 2`, "
            "torch's `fully_shard`) or DeepSpeed ZeRO-3; measuring is off for this run"
        )
    if estimator == "sampled" and kind != "replicated" and context()[1] > 1:
        raise UnsupportedEngineError(
            f"estimator 'sampled' cannot measure a model sharded over several processes ({kind}): use "
            "estimator 'exact' (the default)"
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
