"""The layout of a measurement for the exact scorer: one prefix trie over all prompts and their candidates.

Prompts of one measurement share long prefixes (the chat template's opening, system prompts, a task's first
words), and every prompt ends in a trie of candidate answers. All of them form one token trie: a node is a
token in the context of its ancestors, so two requests that share a prefix share its nodes, and a node's
hidden state (and next-token distribution) is computed once. The trie is cut into blocks of at most
``row_tokens`` nodes (a block is one row of a forward pass: a node attends to its ancestors only, the tree
attention mask); each request goes into the block that shares most of its prefix and has room, so a prefix
is computed once per block instead of once per request, and blocks are nearly full (little padding). A
request longer than ``row_tokens`` gets a block of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from crystalwatch.scoring.prompts import Request


@dataclass
class Block:
    """One row of a forward: a sub-trie holding several requests' prompts and candidates."""

    index: int
    tokens: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # depth: the position id of the token
    parents: list[int] = field(default_factory=list)  # offset of the parent node, -1 for a first token
    # (request index, offset of its prompt's last token, offset of each candidate's last token)
    requests: list[tuple[int, int, list[int]]] = field(default_factory=list)
    scored: set[int] = field(default_factory=set)  # candidate nodes: their token's log-probability is needed
    terminals: set[int] = field(default_factory=set)  # candidates' last nodes: their terminator mass is needed
    _node: dict[tuple[int, int], int] = field(default_factory=dict, repr=False)

    @property
    def length(self) -> int:
        return len(self.tokens)

    @property
    def needed(self) -> list[int]:
        """Offsets where the LM head runs: parents of candidate nodes, and candidates' last nodes."""
        return sorted({self.parents[n] for n in self.scored} | self.terminals)

    @property
    def child_targets(self) -> list[tuple[int, int, int]]:
        """(parent offset, token, node offset) of every candidate node."""
        return [(self.parents[n], self.tokens[n], n) for n in sorted(self.scored)]

    def _child(self, node: int, token: int) -> int:
        """The node for ``token`` after ``node`` (-1: the root), added if it is not there yet."""
        key = (node, token)
        nxt = self._node.get(key)
        if nxt is None:
            nxt = self._node[key] = len(self.tokens)
            self.tokens.append(token)
            self.positions.append(0 if node < 0 else self.positions[node] + 1)
            self.parents.append(node)
        return nxt

    def cost(self, request: Request) -> int:
        """How many nodes adding ``request`` would add (at most: candidates' new nodes are not deduplicated)."""
        node = -1
        prompt = [int(t) for t in request.prompt_ids]
        for k, tok in enumerate(prompt):
            nxt = self._node.get((node, tok))
            if nxt is None:
                return len(prompt) - k + sum(len(c.ids) for c in request.candidates)
            node = nxt
        new = 0
        for cand in request.candidates:
            at = node
            for k, tok in enumerate(cand.ids):
                nxt = self._node.get((at, int(tok)))
                if nxt is None:
                    new += len(cand.ids) - k
                    break
                at = nxt
        return new

    def add(self, index: int, request: Request) -> None:
        prompt_end = -1
        for tok in request.prompt_ids:
            prompt_end = self._child(prompt_end, int(tok))
        ends = []
        for cand in request.candidates:
            node = prompt_end
            for tok in cand.ids:
                node = self._child(node, int(tok))
                self.scored.add(node)
            ends.append(node)
        self.terminals.update(ends)
        self.requests.append((index, prompt_end, ends))

    def mask(self) -> np.ndarray:
        """Boolean [L, L] tree attention mask: each node sees its ancestors and itself."""
        n = self.length
        allowed = np.zeros((n, n), dtype=bool)
        for i, parent in enumerate(self.parents):
            if parent >= 0:
                allowed[i] = allowed[parent]
            allowed[i, i] = True
        return allowed


def _check(request: Request) -> None:
    if not request.prompt_ids:
        raise ValueError(f"task {request.task_id}, variant {request.variant}: the prompt has no tokens")
    for cand in request.candidates:
        if not cand.ids:
            raise ValueError(
                f"task {request.task_id}, variant {request.variant}: candidate {cand.text!r} has no tokens"
            )


def layout(requests: Sequence[Request], row_tokens: int) -> list[Block]:
    """Cut the trie of all requests into blocks of at most ``row_tokens`` nodes (deterministic: every rank of a
    sharded measurement gets the same blocks).

    Requests are taken in the order of their prompt tokens; each goes into the open block where it adds the
    fewest nodes (the one sharing most of its prefix) among those it fits in, else into a new block. Blocks
    therefore fill up (small requests fill the room large ones leave) and shared prefixes stay together.
    """
    for r in requests:
        _check(r)
    order = sorted(range(len(requests)), key=lambda i: (list(requests[i].prompt_ids), i))
    blocks: list[Block] = []
    for i in order:
        best: tuple[int, Block] | None = None
        for block in blocks:
            cost = block.cost(requests[i])
            if block.length + cost <= row_tokens and (best is None or cost < best[0]):
                best = (cost, block)
        if best is None:
            blocks.append(Block(len(blocks)))
            target = blocks[-1]
        else:
            target = best[1]
        target.add(i, requests[i])
    return blocks


def batches(blocks: list[Block], batch_tokens: int) -> list[list[Block]]:
    """Blocks (longest first) into batches whose padded size (rows × longest row) stays within ``batch_tokens``."""
    out: list[list[Block]] = []
    current: list[Block] = []
    width = 0
    for block in sorted(blocks, key=lambda b: (-b.length, b.index)):
        width = max(width, block.length)
        if current and width * (len(current) + 1) > batch_tokens:
            out.append(current)
            current, width = [], block.length
        current.append(block)
    if current:
        out.append(current)
    return out


def unique_tokens(requests: Sequence[Request]) -> int:
    """Nodes of the one trie over all requests: the tokens a measurement must run through the model at least."""
    whole = Block(0)
    for i, r in enumerate(requests):
        whole.add(i, r)
    return whole.length
