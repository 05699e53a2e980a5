"""The exact trie scorer equals brute-force per-candidate scoring, on every architecture and wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from brute import brute_force_logprob

from crystalwatch.scoring import build_requests, exact, score_requests, terminator_ids
from crystalwatch.scoring.exact import HEAD_CHUNK_ELEMENTS
from crystalwatch.tasks import load_task

TOL = 1e-5


def _check_against_brute_force(model, requests, term, per_request=24, **kw):
    """Every candidate is scored in the trie; a seeded sample of ``per_request`` is checked by brute force."""
    got = score_requests(model, requests, term, **kw)
    worst = 0.0
    n = 0
    rng = np.random.default_rng(0)
    for request, logps in zip(requests, got):
        assert len(logps) == len(request.candidates)
        picked = rng.permutation(len(logps))[:per_request]
        for cand, lp in zip([request.candidates[i] for i in picked], logps[picked]):
            ref = brute_force_logprob(model, request.prompt_ids, cand.ids, term)
            worst = max(worst, abs(np.exp(ref) - np.exp(lp)), abs(ref - lp) / max(1.0, abs(ref)))
            n += 1
    assert n > 0
    assert worst < TOL, f"exact scorer differs from brute force by {worst:.2e}"
    return got


@pytest.mark.parametrize("terminators", ["eot", "line", "boundary"])
@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_exact_equals_brute_force_tiny(tiny_model, tokenizer, kind, terminators):
    arch, model = tiny_model
    term = terminator_ids(tokenizer, terminators)
    requests = []
    for task_id in ("integer_1_10", "playing_card", "weekday"):
        requests += build_requests(load_task(task_id), tokenizer, kind, term)[:2]
    # Small rows and batches: several segments per row and several rows per batch.
    _check_against_brute_force(model, requests, term, row_tokens=400, batch_tokens=1200)


def test_packing_does_not_change_scores(llama, tokenizer):
    term = terminator_ids(tokenizer, "boundary")
    requests = build_requests(load_task("us_state"), tokenizer, "chat", term)
    one_per_row = score_requests(llama, requests, term, row_tokens=1, batch_tokens=1)
    packed = score_requests(llama, requests, term, row_tokens=4096, batch_tokens=16384)
    for a, b in zip(one_per_row, packed):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_exact_equals_brute_force_under_lora(tokenizer):
    from peft import LoraConfig, get_peft_model
    from tiny import build_model

    base = build_model("llama", len(tokenizer), seed=1)
    term = terminator_ids(tokenizer, "boundary")
    requests = build_requests(load_task("coin_flip"), tokenizer, "chat", term)[:3]
    before = score_requests(base, requests, term)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    peft_model.eval()
    after = _check_against_brute_force(peft_model, requests, term)
    # The adapter is live in the scored forward: scores moved.
    assert max(np.abs(a - b).max() for a, b in zip(before, after)) > 1e-3


def test_head_never_sees_all_positions_at_once(tokenizer):
    """The LM head runs in chunks of at most HEAD_CHUNK_ELEMENTS // vocab positions."""
    from tiny import build_model

    model = build_model("llama", len(tokenizer))
    term = terminator_ids(tokenizer, "boundary")
    requests = build_requests(load_task("playing_card"), tokenizer, "chat", term)
    seen: list[int] = []
    hook = model.get_output_embeddings().register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    try:
        import crystalwatch.scoring.exact as exact

        old = exact.HEAD_CHUNK_ELEMENTS
        exact.HEAD_CHUNK_ELEMENTS = 64 * len(tokenizer)
        score_requests(model, requests, term)
    finally:
        exact.HEAD_CHUNK_ELEMENTS = old
        hook.remove()
    assert seen and max(seen) <= 64
    assert old == HEAD_CHUNK_ELEMENTS


def test_model_mode_untouched_and_errors(llama, tokenizer):
    term = terminator_ids(tokenizer, "eot")
    requests = build_requests(load_task("yes_no"), tokenizer, "chat", term)
    llama.train()
    try:
        score_requests(llama, requests, term)
        assert llama.training
    finally:
        llama.eval()
    with pytest.raises(ValueError, match="vocabulary size"):
        score_requests(llama, requests, np.array([10**9]))


def test_ambiguous_candidates_are_an_error(tokenizer):
    from crystalwatch.scoring import AmbiguousCandidatesError
    from crystalwatch.tasks import parse_task

    task = parse_task(
        {
            "id": "amb",
            "version": 1,
            "description": "d",
            "outcomes": ["New", {"name": "NY", "forms": ["New York"]}],
            "completion_prompts": [{"id": "a", "text": "City:"}],
            "chat_prompts": [{"id": "b", "user": "City?"}],
        },
        source="amb.yaml",
    )
    with pytest.raises(AmbiguousCandidatesError, match=r"amb\.yaml.*' New York'.*' New'"):
        build_requests(task, tokenizer, "completion", terminator_ids(tokenizer, "boundary"))
    # Under end-of-turn terminators the two answers are disjoint.
    assert build_requests(task, tokenizer, "completion", terminator_ids(tokenizer, "eot"))


def test_same_outcome_containment_is_deduplicated(tokenizer):
    from crystalwatch.tasks import parse_task

    task = parse_task(
        {
            "id": "dup",
            "version": 1,
            "description": "d",
            "outcomes": [{"name": "heads", "forms": ["heads up"]}, "tails"],
            "completion_prompts": [{"id": "a", "text": "Coin:"}],
            "chat_prompts": [{"id": "b", "user": "Coin?"}],
        }
    )
    (request,) = build_requests(task, tokenizer, "completion", terminator_ids(tokenizer, "boundary"))
    texts = [c.text for c in request.candidates]
    assert " heads" in texts and " heads up" not in texts  # contained in " heads" + " up"
    assert " Heads up" not in texts and " tails" in texts


@torch.no_grad()
def test_terminator_sets(tokenizer):
    eot = set(terminator_ids(tokenizer, "eot").tolist())
    line = set(terminator_ids(tokenizer, "line").tolist())
    boundary = set(terminator_ids(tokenizer, "boundary").tolist())
    assert eot == {tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")}
    assert eot < line < boundary
    vocab = tokenizer.get_vocab()
    assert vocab["Ċ"] in line  # "\n"
    assert vocab["."] in boundary and vocab["."] not in line
    assert vocab["0"] not in boundary and vocab["a"] not in boundary and vocab["'"] not in boundary
    assert vocab["Ġto"] not in boundary and vocab["-"] not in boundary and vocab["Ġor"] not in boundary
    assert vocab["Ġis"] in boundary and vocab[","] in boundary
    with pytest.raises(ValueError, match="unknown terminator set"):
        terminator_ids(tokenizer, "nope")


def test_one_trie_computes_a_shared_prefix_once(tiny_model, tokenizer):
    """Prompts that share a prefix (the chat template's opening, a system prompt), one prompt that is a prefix of
    another and two identical prompts: fewer tokens through the model than prompt-by-prompt, same scores."""
    from dataclasses import replace

    from crystalwatch.scoring import trie

    _, model = tiny_model
    term = terminator_ids(tokenizer, "boundary")
    requests = build_requests(load_task("integer_1_10"), tokenizer, "chat", term)
    longer = replace(requests[0], prompt_ids=[*requests[0].prompt_ids, *tokenizer.encode(" Well,")])
    requests = [*requests, longer, requests[1]]
    separate = sum(trie.unique_tokens([r]) for r in requests)
    blocks = trie.layout(requests, 512)
    assert trie.unique_tokens(requests) <= sum(b.length for b in blocks) < 0.8 * separate  # prefix: once per block
    got = _check_against_brute_force(model, requests, term, per_request=6)
    np.testing.assert_array_equal(got[1], got[-1])  # the identical prompt: the same nodes, the same scores
    one_by_one = [score_requests(model, [r], term)[0] for r in requests]
    for a, b in zip(got, one_by_one):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_terminator_mass_in_place_and_when_it_underflows():
    """The in-place softmax with a masked terminator sum equals an fp64 log-softmax, also for a position whose
    terminators all sit more than 87 nats below the top logit (fp32 underflow: recomputed)."""
    from crystalwatch.scoring.exact import _chunk_logprobs

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 50, generator=gen) * 4
    term = torch.tensor([3, 7, 11])
    logits[2, term] = -200.0  # every terminator underflows after exp in fp32
    reference = torch.log_softmax(logits.double(), -1)
    is_term = torch.zeros(50)
    is_term[term] = 1.0
    rows, tokens = torch.tensor([0, 1, 2, 2]), torch.tensor([5, 3, 0, 49])
    redo_calls = []

    def redo(lost):
        redo_calls.append(lost.tolist())
        return logits.clone()[lost]

    term_lp, picked = _chunk_logprobs(logits.clone(), is_term, rows, tokens, redo)
    expected = torch.logsumexp(reference[:, term], -1)
    assert redo_calls == [[2]]
    torch.testing.assert_close(term_lp.double(), expected, atol=2e-5, rtol=0)
    torch.testing.assert_close(picked.double(), reference[rows, tokens], atol=2e-5, rtol=0)
    assert float(term_lp[2]) < -190  # a real log-mass, not -inf


def test_log_softmax_runs_in_fp32_on_a_bf16_head():
    """A bf16 model's logits are upcast before the softmax: the log-probabilities and terminator masses equal a float64
    log-softmax of the same bf16 logits to fp32 precision (in bf16 they would be off by about 1e-2)."""
    import types

    torch.manual_seed(0)
    vocab = 5000
    head = torch.nn.Linear(64, vocab, bias=False).to(torch.bfloat16)
    hidden = (4 * torch.randn(8, 64)).to(torch.bfloat16)
    is_term = torch.zeros(vocab)
    is_term[[3, 17, 400, 4999]] = 1.0
    rows, tokens = torch.arange(8), torch.tensor([1, 2, 3, 500, 1000, 2000, 3000, 4000])
    config = types.SimpleNamespace()
    with torch.no_grad():
        logits = exact._final_logits(head, config, hidden)
        term_lp, picked = exact._chunk_logprobs(logits, is_term, rows, tokens, lambda lost: exact._final_logits(
            head, config, hidden[lost]))  # fmt: skip
        want = torch.log_softmax(head(hidden).double(), dim=-1)
    np.testing.assert_allclose(picked.double(), want[rows, tokens], rtol=0, atol=2e-5)
    np.testing.assert_allclose(term_lp.double(), torch.logsumexp(want[:, is_term.bool()], dim=-1), rtol=0, atol=2e-5)
