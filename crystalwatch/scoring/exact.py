"""Exact answer probabilities: one forward per batch of prompts, candidates scored as a token trie.

For a request with prompt tokens ``x`` and candidate token sequences ``c`` (one per surface form), the
score of a candidate is ``log P(c | x) + log sum_{t in T} P(t | x, c)``: the form, then any terminator
token ``t`` (see ``prompts.TERMINATOR_SETS``). Each prompt and its candidates' trie are laid out as one
segment ``[x, trie nodes]``; a node sits at position ``len(x) - 1 + depth`` and attends to the prompt
and its own ancestors only (tree attention mask). Segments are packed into rows (block-diagonal
masks), so every unique token goes through the model exactly once. The LM head runs only at the
positions whose next-token distribution is needed (the prompt's last token and the trie nodes), in
chunks, with log-softmax in fp32: full-vocabulary logits are never held for a whole sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.special import logsumexp

from crystalwatch.scoring.backend import Options, Scored
from crystalwatch.scoring.model import split_model
from crystalwatch.scoring.prompts import Request
from crystalwatch.scoring.sharded import call_gathered, context, gather_scores

HEAD_CHUNK_ELEMENTS = 1 << 25  # positions x vocabulary per LM-head chunk (128 MiB of fp32 logits)


@dataclass
class _Segment:
    """One request laid out for the forward: prompt then trie nodes."""

    index: int
    tokens: list[int]
    positions: list[int]
    parents: list[int]  # per trie node: the segment offset of the token it follows
    needed: list[int] = field(default_factory=list)  # segment offsets where the head is applied
    child_targets: list[tuple[int, int, int]] = field(default_factory=list)  # (offset of parent, token, node)
    terminal_offsets: list[int] = field(default_factory=list)  # per candidate: offset of its last token

    @property
    def length(self) -> int:
        return len(self.tokens)


def _layout(index: int, request: Request) -> _Segment:
    prompt = list(request.prompt_ids)
    if not prompt:
        raise ValueError(f"task {request.task_id}, variant {request.variant}: the prompt has no tokens")
    p = len(prompt)
    seg = _Segment(index, list(prompt), list(range(p)), [])
    node_of: dict[tuple[int, int], int] = {}
    for cand in request.candidates:
        if not cand.ids:
            raise ValueError(
                f"task {request.task_id}, variant {request.variant}: candidate {cand.text!r} has no tokens"
            )
        parent = p - 1
        for tok in cand.ids:
            key = (parent, tok)
            if key not in node_of:
                offset = len(seg.tokens)
                node_of[key] = offset
                seg.tokens.append(tok)
                seg.positions.append(seg.positions[parent] + 1)
                seg.parents.append(parent)
                seg.child_targets.append((parent, tok, offset))
            parent = node_of[key]
        seg.terminal_offsets.append(parent)
    seg.needed = sorted({parent for parent, _, _ in seg.child_targets} | set(seg.terminal_offsets))
    return seg


def _tree_mask(seg: _Segment) -> np.ndarray:
    """Boolean [L, L] mask: causal over the prompt; each trie node sees the prompt and its ancestors."""
    n = seg.length
    p = n - len(seg.parents)
    allowed = np.zeros((n, n), dtype=bool)
    allowed[:p, :p] = np.tril(np.ones((p, p), dtype=bool))
    for k, parent in enumerate(seg.parents):
        row = p + k
        if parent < p:
            allowed[row, : parent + 1] = True
        else:
            allowed[row] = allowed[parent]
        allowed[row, row] = True
    return allowed


def _pack(segments: list[_Segment], row_tokens: int, batch_tokens: int) -> list[list[list[_Segment]]]:
    """Greedy packing: segments (longest first) into rows of at most ``row_tokens``, rows into batches."""
    rows: list[list[_Segment]] = []
    lengths: list[int] = []
    for seg in sorted(segments, key=lambda s: -s.length):
        for r, used in enumerate(lengths):
            if used + seg.length <= row_tokens:
                rows[r].append(seg)
                lengths[r] += seg.length
                break
        else:
            rows.append([seg])
            lengths.append(seg.length)
    batches: list[list[list[_Segment]]] = []
    current: list[list[_Segment]] = []
    width = 0
    for row, used in sorted(zip(rows, lengths), key=lambda x: -x[1]):
        width = max(width, used)
        if current and width * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, width = [], used
        current.append(row)
    if current:
        batches.append(current)
    return batches


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


def _final_logits(head: torch.nn.Module, config: Any, hidden: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()
    cap = getattr(config, "final_logit_softcapping", None) or getattr(
        getattr(config, "text_config", None), "final_logit_softcapping", None
    )
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits


def _batch_inputs(
    batch: list[list[_Segment]],
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, list[tuple[int, int, _Segment]]]:
    """Token ids, position ids and the boolean [B, L, L] mask of a batch of packed rows."""
    width = max(sum(s.length for s in row) for row in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    pos = torch.zeros(len(batch), width, dtype=torch.long)
    allowed = np.zeros((len(batch), width, width), dtype=bool)
    allowed[:, np.arange(width), np.arange(width)] = True  # padding rows see themselves: no NaN
    where: list[tuple[int, int, _Segment]] = []  # (row, start, segment)
    for r, row in enumerate(batch):
        start = 0
        for seg in row:
            end = start + seg.length
            ids[r, start:end] = torch.tensor(seg.tokens)
            pos[r, start:end] = torch.tensor(seg.positions)
            allowed[r, start:end, start:end] = _tree_mask(seg)
            where.append((r, start, seg))
            start = end
    return ids, pos, allowed, where


def _head_chunk(head: torch.nn.Module) -> int:
    """Positions per LM-head call."""
    return max(1, HEAD_CHUNK_ELEMENTS // _vocab(head))


def _vocab(head: torch.nn.Module) -> int:
    """Vocabulary size; a ZeRO-3 partitioned weight keeps its full shape in ``ds_shape``."""
    weight: Any = head.weight
    return int(getattr(weight, "ds_shape", weight.shape)[0])


def _needed_logprobs(
    hidden: torch.Tensor,
    head: torch.nn.Module,
    config: Any,
    where: list[tuple[int, int, _Segment]],
    term: torch.Tensor,
) -> tuple[dict[tuple[int, int], float], dict[tuple[int, int], float]]:
    """Apply the LM head at the needed positions only, in chunks, and keep what the candidates use.

    Returns ``(terminal, node)``: for each (segment, offset) where the head ran, the log terminator
    mass after that token; for each trie node (segment, offset), the log-probability of its token.
    """
    device = hidden.device
    slots = [(r, start, seg.index, o) for r, start, seg in where for o in seg.needed]
    slot_of = {(i, o): k for k, (_, _, i, o) in enumerate(slots)}
    rows = torch.tensor([r for r, _, _, _ in slots], device=device)
    cols = torch.tensor([start + o for _, start, _, o in slots], device=device)
    children = [(slot_of[(seg.index, parent)], tok, (seg.index, node)) for _, _, seg in where
                for parent, tok, node in seg.child_targets]  # fmt: skip
    child_slot = torch.tensor([c[0] for c in children])
    child_token = torch.tensor([c[1] for c in children])
    child_lp = torch.empty(len(children), dtype=torch.float64)
    term_lp = torch.empty(len(slots), dtype=torch.float64)
    chunk = _head_chunk(head)
    for lo in range(0, len(slots), chunk):
        hi = min(len(slots), lo + chunk)
        lp = torch.log_softmax(_final_logits(head, config, hidden[rows[lo:hi], cols[lo:hi]]), dim=-1)
        term_lp[lo:hi] = torch.logsumexp(lp[:, term], dim=-1).double().cpu()
        sel = ((child_slot >= lo) & (child_slot < hi)).nonzero().flatten()
        if len(sel):
            child_lp[sel] = lp[(child_slot[sel] - lo).to(device), child_token[sel].to(device)].double().cpu()
    terminal = {(i, o): v for (_, _, i, o), v in zip(slots, term_lp.tolist())}
    node = {c[2]: v for c, v in zip(children, child_lp.tolist())}
    return terminal, node


def _candidate_scores(
    seg: _Segment, terminal: dict[tuple[int, int], float], node: dict[tuple[int, int], float]
) -> np.ndarray:
    """Per candidate: its terminator mass plus the log-probabilities along its path up the trie."""
    p = seg.length - len(seg.parents)
    scores = np.zeros(len(seg.terminal_offsets))
    for c, o in enumerate(seg.terminal_offsets):
        total = terminal[(seg.index, o)]
        while o >= p:
            total += node[(seg.index, o)]
            o = seg.parents[o - p]
        scores[c] = total
    return scores


def _head_calls(batch: list[list[_Segment]], chunk: int) -> int:
    """How many LM-head calls ``_needed_logprobs`` makes for a batch."""
    return -(-sum(len(seg.needed) for row in batch for seg in row) // chunk)


def _body_forward(
    body: torch.nn.Module, config: Any, dtype: torch.dtype, device: Any, batch: list[list[_Segment]]
) -> tuple[torch.Tensor, list[tuple[int, int, _Segment]]]:
    ids, pos, allowed, where = _batch_inputs(batch)
    mask = _attention_mask(allowed, pos, config, dtype)
    mask = {k: m.to(device) for k, m in mask.items()} if isinstance(mask, dict) else mask.to(device)
    hidden = body(
        input_ids=ids.to(device), attention_mask=mask, position_ids=pos.to(device), use_cache=False
    ).last_hidden_state
    return hidden, where


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
    it is (train/eval mode untouched: callers put it in eval mode to disable dropout).

    ``shard=(rank, world_size)`` scores only this rank's part, in lockstep with the other ranks (see
    ``crystalwatch.scoring.sharded``): the packing of all requests, identical on every rank, is dealt out
    round-robin (rank r runs batches r, r + world, ...). In every round each rank makes one body forward
    and as many LM-head calls as the round's largest batch needs; a rank without a batch of its own in
    the last round runs a one-prompt padding forward and discards it. So every rank calls the model's
    modules in the same order, ``ceil(n_batches / world_size)`` body forwards in all. Requests of other
    ranks' batches are left as empty arrays.
    """
    body, head, config = split_model(model)
    device = head.weight.device
    vocab = _vocab(head)
    term = torch.as_tensor(np.asarray(terminators), dtype=torch.long, device=device)
    if term.numel() == 0 or int(term.max()) >= vocab:
        raise ValueError(f"terminator ids must be non-empty and below the vocabulary size {vocab}")
    dtype = next(body.parameters()).dtype
    segments = [_layout(i, r) for i, r in enumerate(requests)]
    out: list[np.ndarray] = [np.zeros(0)] * len(requests)
    batches = _pack(segments, row_tokens, batch_tokens)
    rank, world = shard or (0, 1)
    if not 0 <= rank < world:
        raise ValueError(f"shard {shard}: the rank must be in [0, world_size)")
    chunk = _head_chunk(head)
    for start in range(0, len(batches), world):
        rnd = batches[start : start + world]
        own = rank < len(rnd)
        batch = rnd[rank] if own else [[min(segments, key=lambda s: s.length)]]
        hidden, where = _body_forward(body, config, dtype, device, batch)
        calls = 0
        if own:
            terminal, node = _needed_logprobs(hidden, head, config, where, term)
            for _, _, seg in where:
                out[seg.index] = _candidate_scores(seg, terminal, node)
            calls = _head_calls(batch, chunk)
        for _ in range(max(_head_calls(b, chunk) for b in rnd) - calls):
            head(hidden[0, :1])  # padding call, discarded: the same module calls as on the other ranks
    return out


def score_all(
    model: Any, requests: Sequence[Request], terminators: np.ndarray | torch.Tensor, **kw: Any
) -> list[np.ndarray]:
    """``score_requests`` split over all ranks, in lockstep, and gathered: every rank gets every score.

    A collective: every rank must call it with the same requests and keywords. Without a process group
    (or with one rank) it is plain ``score_requests``.
    """
    rank, world = context()
    if world == 1:
        return call_gathered(model, lambda: score_requests(model, requests, terminators, **kw))
    local = call_gathered(model, lambda: score_requests(model, requests, terminators, shard=(rank, world), **kw))
    return gather_scores(local, len(requests))


def distribution(request: Request, logp: np.ndarray, n_outcomes: int) -> Scored:
    """Sum candidate probabilities per outcome (in log space), renormalise, keep the coverage."""
    per_outcome = np.full(n_outcomes, -np.inf)
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
