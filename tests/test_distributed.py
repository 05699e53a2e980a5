"""Multi-process measuring: ranks score in lockstep (same module calls) and all get the single-process scores."""

from __future__ import annotations

import contextlib
import datetime
import math
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from crystalwatch.scoring import build_requests, exact, score_requests, split_model, terminator_ids, trie
from crystalwatch.scoring.exact import score_all
from crystalwatch.scoring.sharded import RankFault, context, lockstep
from crystalwatch.tasks import load_task

WORLD = 2
TIMEOUT_S = 900  # a guard against a hang only: the ranks finish in seconds, also on a loaded 2-core machine
# A rank out of lockstep waits in a collective its peer never joins: gloo raises after this long, the rank fails, and
# the test learns it then (ranks doing the same work never wait this long for each other, even on a busy machine).
COLLECTIVE_TIMEOUT = datetime.timedelta(seconds=120)
KW = {"row_tokens": 300, "batch_tokens": 600}  # several batches
HEAD_POSITIONS = 16  # positions per LM-head call: batches need different numbers of head calls


@pytest.fixture
def requests_and_term(tokenizer, monkeypatch):
    monkeypatch.setattr(exact, "HEAD_CHUNK_ELEMENTS", HEAD_POSITIONS * len(tokenizer))
    term = terminator_ids(tokenizer, "eot")
    requests = []
    for task_id in ("integer_1_10", "playing_card", "weekday"):
        requests += build_requests(load_task(task_id), tokenizer, "chat", term)
    return requests, term


def _plan(requests) -> list[int]:
    """LM-head calls per batch of the global packing."""
    packed = trie.batches(trie.layout(requests, KW["row_tokens"]), KW["batch_tokens"])
    return [exact._head_calls(b, HEAD_POSITIONS) for b in packed]


@contextlib.contextmanager
def _recording(model) -> Iterator[list[str]]:
    """The order of body forwards and LM-head calls, recorded by forward hooks."""
    calls: list[str] = []
    body, head, _ = split_model(model)
    hooks = [m.register_forward_hook(lambda *_, n=n: calls.append(n)) for n, m in (("body", body), ("head", head))]
    try:
        yield calls
    finally:
        for hook in hooks:
            hook.remove()


def _rank(rank: int, model, cases, head_elements: int, folder: Path) -> None:
    torch.set_num_threads(1)
    exact.HEAD_CHUNK_ELEMENTS = head_elements
    torch.distributed.init_process_group("gloo", init_method=f"file://{folder / 'store'}", rank=rank, world_size=WORLD,
                                         timeout=COLLECTIVE_TIMEOUT)  # fmt: skip
    try:
        # As under ZeRO-3 / FSDP: every body forward and LM-head call starts with a collective.
        body, head, _ = split_model(model)
        for module in (body, head):
            module.register_forward_pre_hook(lambda *_: torch.distributed.all_reduce(torch.ones(1)))
        results = []
        for requests, term in cases:
            with _recording(model) as calls, lockstep():
                results.append((score_all(model, requests, term, **KW), calls))
        (folder / f"rank{rank}.pkl").write_bytes(pickle.dumps(results))
    finally:
        torch.distributed.destroy_process_group()


def _spawn(fn, args: tuple, monkeypatch) -> None:
    """Run ``fn(rank, *args)`` on WORLD processes (gloo) and wait for them; a rank that raised fails the test."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    procs = mp.start_processes(fn, args=args, nprocs=WORLD, join=False, start_method="spawn")
    try:
        for _ in range(TIMEOUT_S):
            if procs.join(timeout=1):
                break
        else:
            pytest.fail(f"the ranks did not finish within {TIMEOUT_S} s (deadlock?)")
    finally:
        for p in procs.processes:
            if p.is_alive():
                p.kill()


def test_two_gloo_ranks_score_in_lockstep(llama, requests_and_term, tmp_path, monkeypatch):
    requests, term = requests_and_term
    plan = _plan(requests)
    assert len(plan) % WORLD == 1 and len(set(plan)) > 1  # a padding round; head calls differ between batches
    # Uneven work: 3 tasks (odd batch count), one request (rank 1 only pads), none (no forward at all).
    cases = [(requests, term), (requests[:1], term), ([], term)]
    expected = [score_requests(llama, reqs, t, **KW) for reqs, t in cases]
    _spawn(_rank, (llama, cases, exact.HEAD_CHUNK_ELEMENTS, tmp_path), monkeypatch)
    ranks = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(WORLD)]
    for (reqs, _), want, n_batches, *per_rank in zip(cases, expected, [len(plan), 1, 0], *ranks):
        for got, calls in per_rank:
            assert len(got) == len(reqs)
            for a, b in zip(got, want):
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)  # log-probabilities of -30 to 0: relative
            assert calls.count("body") == math.ceil(n_batches / WORLD)
        assert per_rank[0][1] == per_rank[1][1]  # the same module calls, in the same order


@pytest.mark.parametrize("world", [2, 3, 7])
def test_shards_partition_the_work_in_lockstep(llama, requests_and_term, world):
    """Without a process group: the shards' scores make up the full result; every rank makes the same calls."""
    requests, term = requests_and_term
    full = score_requests(llama, requests, term, **KW)
    n_batches = len(_plan(requests))
    seen = []
    merged = [np.zeros(0)] * len(requests)
    for rank in range(world):
        with _recording(llama) as calls:
            local = score_requests(llama, requests, term, shard=(rank, world), **KW)
        seen.append(calls)
        for i, scores in enumerate(local):
            if len(scores):
                assert not len(merged[i]), "a request scored on two ranks"
                merged[i] = scores
    assert all(s == seen[0] for s in seen)
    assert seen[0].count("body") == math.ceil(n_batches / world)
    for a, b in zip(merged, full):
        np.testing.assert_array_equal(a, b)


def test_single_process_is_plain_score_requests(llama, requests_and_term):
    requests, term = requests_and_term
    assert context() == (0, 1)
    for a, b in zip(score_all(llama, requests, term, **KW), score_requests(llama, requests, term, **KW)):
        np.testing.assert_array_equal(a, b)


def _fault(rank: int, model, requests, term, folder: Path) -> None:
    """Rank 1's scoring raises (as an out-of-memory would) inside a lockstep measurement; then rank 0 measures
    alone, outside lockstep, while rank 1 does not measure at all."""
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{folder / 'store'}", rank=rank, world_size=WORLD,
                                         timeout=COLLECTIVE_TIMEOUT)  # fmt: skip
    said = []
    try:
        real = exact.score_requests
        if rank == 1:
            def broken(*args, **kwargs):
                raise RuntimeError("out of memory (injected)")

            exact.score_requests = broken
        try:
            with lockstep():
                score_all(model, requests, term, **KW)
        except RankFault as err:
            said.append(f"{err} fatal={err.fatal}")
        exact.score_requests = real
        torch.distributed.barrier()  # the ranks still agree: the next collective is the same on both
        if rank == 0:
            said.append(len(score_all(model, requests, term, **KW)))  # alone: rank 1 is not coming
        torch.distributed.barrier()
        (folder / f"rank{rank}.txt").write_text(repr(said))
    finally:
        torch.distributed.destroy_process_group()


def test_a_fault_on_one_rank_is_agreed_on_and_a_lone_rank_measures_alone(llama, requests_and_term, tmp_path,
                                                                          monkeypatch):  # fmt: skip
    requests, term = requests_and_term
    _spawn(_fault, (llama, requests, term, tmp_path), monkeypatch)
    fault = "scoring failed on rank 1 (RuntimeError: out of memory (injected)) fatal=False"
    assert (tmp_path / "rank0.txt").read_text() == repr([fault, len(requests)])
    assert (tmp_path / "rank1.txt").read_text() == repr([fault])
