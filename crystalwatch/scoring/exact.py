"""Exact answer probabilities: one prefix trie over all prompts and candidates, one forward per batch of blocks.

For a request with prompt tokens ``x`` and candidate token sequences ``c`` (one per surface form), the
score of a candidate is ``log P(c | x) + log sum_{t in T} P(t | x, c)``: the form, then any terminator
token ``t`` (see ``prompts.TERMINATOR_SETS``). All prompts and their candidates form one token trie
(``scoring.trie``), cut into blocks; a node sits at position ``depth`` and attends to its ancestors only
(tree attention mask), so a prefix that several prompts share (the chat template, a system prompt) is
computed once per block. The LM head runs only at the positions whose next-token distribution is needed
(the prompts' last tokens and the candidate nodes), in chunks, in fp32, with the softmax in place and the
terminator mass as a masked sum: full-vocabulary logits are never held for a whole sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.special import logsumexp

from crystalwatch.scoring.backend import Options, Scored
from crystalwatch.scoring.model import split_model
from crystalwatch.scoring.prompts import Request
from crystalwatch.scoring.sharded import scored_together
from crystalwatch.scoring.trie import Block, batches, layout

HEAD_CHUNK_ELEMENTS = 1 << 25  # positions x vocabulary per LM-head chunk (128 MiB of fp32 logits)


def _attention_mask(allowed: np.ndarray, pos: torch.Tensor, config: Any, dtype: torch.dtype) -> Any:
    """Additive 4D mask(s) from a boolean [B, L, L] mask; sliding-window layers get their own."""

    def additive(keep: np.ndarray) -> torch.Tensor:
        mask = torch.full(keep.shape, torch.finfo(dtype).min, dtype=dtype)
        return mask.masked_fill_(torch.from_numpy(keep), 0.0)[:, None]

    config = getattr(config, "text_config", None) or config
    window = getattr(config, "sliding_window", None)
    if not window or int(pos.max()) < window:
        return additive(allowed)
    distance = (pos[:, :, None] - pos[:, None, :]).numpy()
    diagonal = np.eye(allowed.shape[1], dtype=bool)[None]
    windowed = additive((allowed & (distance < window)) | diagonal)
    layer_types = set(getattr(config, "layer_types", None) or ["sliding_attention"])
    if layer_types == {"sliding_attention"}:
        return windowed
    return {"full_attention": additive(allowed), "sliding_attention": windowed}


def _final_logits(head: Any, config: Any, hidden: torch.Tensor) -> torch.Tensor:
    """fp32 logits at the given hidden states (softcapped like the model does); ``head`` a module or callable."""
    logits = head(hidden).float()
    cap = getattr(config, "final_logit_softcapping", None) or getattr(
        getattr(config, "text_config", None), "final_logit_softcapping", None
    )
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def _batch_inputs(batch: list[Block]) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Token ids, position ids and the boolean [B, L, L] tree mask of a batch of blocks (one row each)."""
    width = max(b.length for b in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    pos = torch.zeros(len(batch), width, dtype=torch.long)
    allowed = np.zeros((len(batch), width, width), dtype=bool)
    allowed[:, np.arange(width), np.arange(width)] = True  # padding positions see themselves: no NaN
    for r, block in enumerate(batch):
        ids[r, : block.length] = torch.tensor(block.tokens)
        pos[r, : block.length] = torch.tensor(block.positions)
        allowed[r, : block.length, : block.length] = block.mask()
    return ids, pos, allowed


def _head_chunk(head: torch.nn.Module) -> int:
    """Positions per LM-head call."""
    return max(1, HEAD_CHUNK_ELEMENTS // _vocab(head))


def _vocab(head: torch.nn.Module) -> int:
    """Vocabulary size; a ZeRO-3 partitioned weight keeps its full shape in ``ds_shape``."""
    weight: Any = head.weight
    return int(getattr(weight, "ds_shape", weight.shape)[0])


def _plain_head(head: torch.nn.Module) -> Any:
    """The head as a plain function of its (gathered) weights: a recomputation that calls no module hooks, so
    every rank of a sharded measurement still makes the same module calls."""
    if type(head) is torch.nn.Linear:
        return lambda x: torch.nn.functional.linear(x, head.weight, head.bias)
    return head


def _chunk_logprobs(logits: torch.Tensor, is_term: torch.Tensor, rows: torch.Tensor, tokens: torch.Tensor,
                    redo: Any) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(log terminator mass per position, log-probability of each (row, token)) from fp32 ``logits``, in place.

    The softmax runs in place and the terminator mass is a masked sum: no [positions × terminators] gather
    (gemma's boundary set has 147k tokens). Where every terminator underflows in fp32 (its log-mass below
    about -87 relative to the top logit), ``redo(rows)`` recomputes those rows' logits for a log-softmax.
    """
    picked = logits[rows, tokens]
    top = logits.amax(-1, keepdim=True)
    logits.sub_(top).exp_()
    log_z = logits.sum(-1).log()
    mass = logits.mul_(is_term).sum(-1)
    term_lp = mass.log() - log_z
    lost = (mass == 0).nonzero().flatten()
    if len(lost):
        lp = torch.log_softmax(redo(lost), dim=-1)
        term_lp[lost] = torch.logsumexp(lp[:, is_term.bool()], dim=-1)
    return term_lp, picked - top.squeeze(-1)[rows] - log_z[rows]


Scores = dict[tuple[int, int], float]  # (block index, offset) -> a log-probability


def _needed_logprobs(hidden: torch.Tensor, head: torch.nn.Module, config: Any, batch: list[Block],
                     is_term: torch.Tensor) -> tuple[Scores, Scores]:  # fmt: skip
    """Apply the LM head at the needed positions only, in chunks, and keep what the candidates use.

    Returns ``(terminal, node)``: for each (block, offset) where the head ran, the log terminator mass after
    that token; for each candidate node (block, offset), the log-probability of its token.
    """
    device = hidden.device
    slots = [(r, b.index, o) for r, b in enumerate(batch) for o in b.needed]
    slot_of = {(i, o): k for k, (_, i, o) in enumerate(slots)}
    rows = torch.tensor([r for r, _, _ in slots], device=device)
    cols = torch.tensor([o for _, _, o in slots], device=device)
    children = [(slot_of[(b.index, parent)], tok, (b.index, node)) for b in batch
                for parent, tok, node in b.child_targets]  # fmt: skip
    child_slot = torch.tensor([c[0] for c in children], dtype=torch.long)
    child_token = torch.tensor([c[1] for c in children], dtype=torch.long)
    child_lp = torch.empty(len(children), dtype=torch.float64)
    term_lp = torch.empty(len(slots), dtype=torch.float64)
    plain = _plain_head(head)
    chunk = _head_chunk(head)
    for lo in range(0, len(slots), chunk):
        hi = min(len(slots), lo + chunk)
        at = hidden[rows[lo:hi], cols[lo:hi]]
        sel = ((child_slot >= lo) & (child_slot < hi)).nonzero().flatten()
        terms, picked = _chunk_logprobs(
            _final_logits(head, config, at), is_term, (child_slot[sel] - lo).to(device), child_token[sel].to(device),
            lambda lost, at=at: _final_logits(plain, config, at[lost]),
        )  # fmt: skip
        term_lp[lo:hi] = terms.double().cpu()
        child_lp[sel] = picked.double().cpu()
    terminal = {(i, o): v for (_, i, o), v in zip(slots, term_lp.tolist())}
    node = {c[2]: v for c, v in zip(children, child_lp.tolist())}
    return terminal, node


def _candidate_scores(block: Block, terminal: Scores, node: Scores) -> dict[int, np.ndarray]:
    """Per request of the block: each candidate's terminator mass plus the log-probabilities along its path."""
    out = {}
    for index, prompt_end, ends in block.requests:
        scores = np.zeros(len(ends))
        for c, o in enumerate(ends):
            total = terminal[(block.index, o)]
            while o != prompt_end:
                total += node[(block.index, o)]
                o = block.parents[o]
            scores[c] = total
        out[index] = scores
    return out


def _head_calls(batch: list[Block], chunk: int) -> int:
    """How many LM-head module calls ``_needed_logprobs`` makes for a batch."""
    return -(-sum(len(b.needed) for b in batch) // chunk)


def _body_forward(body: torch.nn.Module, config: Any, dtype: torch.dtype, device: Any,
                  batch: list[Block]) -> torch.Tensor:  # fmt: skip
    ids, pos, allowed = _batch_inputs(batch)
    mask = _attention_mask(allowed, pos, config, dtype)
    mask = {k: m.to(device) for k, m in mask.items()} if isinstance(mask, dict) else mask.to(device)
    out = body(input_ids=ids.to(device), attention_mask=mask, position_ids=pos.to(device), use_cache=False)
    return out.last_hidden_state


@torch.no_grad()
def score_requests(
    model: Any,
    requests: Sequence[Request],
    terminators: np.ndarray | torch.Tensor,
    *,
    row_tokens: int = 512,
    batch_tokens: int = 4096,
    shard: tuple[int, int] | None = None,
) -> list[np.ndarray]:
    """Log-probability of every candidate of every request, followed by any terminator token.

    Returns one float64 array per request, aligned with ``request.candidates``. The model is used as
    it is (train/eval mode untouched: callers put it in eval mode to disable dropout). All requests form one
    prefix trie (``scoring.trie``): shared prompt prefixes are computed once per block.

    ``shard=(rank, world_size)`` scores only this rank's part, in lockstep with the other ranks (see
    ``crystalwatch.scoring.sharded``): the blocks, identical on every rank, are batched and dealt out
    round-robin (rank r runs batches r, r + world, ...). In every round each rank makes one body forward
    and as many LM-head calls as the round's largest batch needs; a rank without a batch of its own in
    the last round runs a one-block padding forward and discards it. So every rank calls the model's
    modules in the same order, ``ceil(n_batches / world_size)`` body forwards in all. Requests of other
    ranks' batches are left as empty arrays.
    """
    body, head, config = split_model(model)
    device = head.weight.device
    vocab = _vocab(head)
    term = torch.as_tensor(np.asarray(terminators), dtype=torch.long, device=device)
    if term.numel() == 0 or int(term.max()) >= vocab:
        raise ValueError(f"terminator ids must be non-empty and below the vocabulary size {vocab}")
    is_term = torch.zeros(vocab, dtype=torch.float32, device=device)
    is_term[term] = 1.0
    dtype = next(body.parameters()).dtype
    blocks = layout(requests, row_tokens)
    out: list[np.ndarray] = [np.zeros(0)] * len(requests)
    todo = batches(blocks, batch_tokens)
    rank, world = shard or (0, 1)
    if not 0 <= rank < world:
        raise ValueError(f"shard {shard}: the rank must be in [0, world_size)")
    chunk = _head_chunk(head)
    for start in range(0, len(todo), world):
        rnd = todo[start : start + world]
        own = rank < len(rnd)
        batch = rnd[rank] if own else [min(blocks, key=lambda b: (b.length, b.index))]
        hidden = _body_forward(body, config, dtype, device, batch)
        calls = 0
        if own:
            terminal, node = _needed_logprobs(hidden, head, config, batch, is_term)
            for block in batch:
                for index, scores in _candidate_scores(block, terminal, node).items():
                    out[index] = scores
            calls = _head_calls(batch, chunk)
        for _ in range(max(_head_calls(b, chunk) for b in rnd) - calls):
            head(hidden[0, :1])  # padding call, discarded: the same module calls as on the other ranks
    return out


def score_all(
    model: Any, requests: Sequence[Request], terminators: np.ndarray | torch.Tensor, **kw: Any
) -> list[np.ndarray]:
    """``score_requests`` with the weights it needs gathered; inside ``sharded.lockstep()`` split over all ranks
    and gathered, so that every rank gets every score (a collective: every rank calls it with the same requests
    and keywords). Outside, or with one process, this rank scores everything alone.
    """
    return scored_together(model, lambda shard: score_requests(model, requests, terminators, shard=shard, **kw),
                           len(requests))  # fmt: skip


def distribution(request: Request, logp: np.ndarray, n_outcomes: int) -> Scored:
    """Sum candidate probabilities per outcome (in log space), renormalise, keep the coverage."""
    per_outcome = np.full(n_outcomes, -np.inf)
    with np.errstate(invalid="ignore"):  # NaN scores (a diverged model) stay NaN: the caller reports no signal
        for cand, lp in zip(request.candidates, logp):
            per_outcome[cand.outcome] = np.logaddexp(per_outcome[cand.outcome], lp)
    total = logsumexp(per_outcome)
    return Scored(np.exp(per_outcome - total), float(np.exp(total)))


class ExactBackend:
    """``estimator="exact"``: the trie scorer, split over the ranks of a process group when there is one."""

    name = "exact"
    extra_tokens = 0

    def score(self, model: Any, tokenizer: Any, requests: Sequence[Request], n_outcomes: Sequence[int], *,
              terminators: str, terminator_ids: np.ndarray, options: Options) -> list[Scored]:  # fmt: skip
        logps = score_all(model, requests, terminator_ids, batch_tokens=options.batch_tokens)
        return [distribution(r, lp, n) for r, lp, n in zip(requests, logps, n_outcomes)]


BACKEND = ExactBackend()
