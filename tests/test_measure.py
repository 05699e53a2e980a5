"""measure(): exact vs sampled agreement, distributions, coverage, audit records, restored state."""

from __future__ import annotations

import numpy as np
import pytest
from brute import brute_force_logprob

from crystalwatch import load_task, measure
from crystalwatch.scoring import build_requests, parse_answer, terminator_ids

WEIGHTS = np.array([0.02, 0.05, 0.30, 0.03, 0.10, 0.05, 0.25, 0.05, 0.10, 0.05])


@pytest.fixture(scope="module")
def trained(tokenizer):
    from tiny import build_model, train_to_answer

    model = build_model("llama", len(tokenizer), seed=3)
    task = load_task("integer_1_10")
    requests = build_requests(task, tokenizer, "chat", terminator_ids(tokenizer, "boundary"))
    return train_to_answer(model, tokenizer, requests, WEIGHTS, steps=300)


def test_exact_and_sampled_agree_within_sampling_error(trained, tokenizer):
    exact = measure(trained, tokenizer, ["integer_1_10"]).tasks["integer_1_10"]
    sampled = measure(trained, tokenizer, ["integer_1_10"], estimator="sampled", samples=2000, seed=1)
    sampled = sampled.tasks["integer_1_10"]
    assert exact.coverage.min() > 0.9, "the trained model should answer with a number"
    for e, s in zip(exact.variants, sampled.variants):
        tv = 0.5 * np.abs(e.probs - s.probs).sum()
        assert tv < 0.05, f"{e.request.variant}: TV {tv:.3f}"
        assert s.counts.sum() + s.invalid == 2000
        assert abs(e.coverage - s.coverage) < 0.05
    # The model learnt the weights, so both estimators see them.
    assert 0.5 * np.abs(exact.consensus - WEIGHTS).sum() < 0.1


def test_sampling_is_seeded_and_keeps_global_rng(trained, tokenizer):
    import torch

    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = measure(trained, tokenizer, ["coin_flip"], estimator="sampled", samples=50, seed=7)
    after = torch.rand(1)
    assert before == after, "sampling must not consume the caller's RNG"
    b = measure(trained, tokenizer, ["coin_flip"], estimator="sampled", samples=50, seed=7)
    assert [v.counts.tolist() for v in a.tasks["coin_flip"].variants] == [
        v.counts.tolist() for v in b.tasks["coin_flip"].variants
    ]


def test_parse_answer(tokenizer):
    task = load_task("integer_1_10")
    (request,) = build_requests(task, tokenizer, "completion", terminator_ids(tokenizer, "boundary"))[:1]
    assert request.prompt.endswith("A:")
    assert parse_answer(request, " 10", True, "boundary") == 9
    assert parse_answer(request, " 1.", False, "boundary") == 0
    assert parse_answer(request, " 1, 2", False, "boundary") == 0
    assert parse_answer(request, " seven apples", False, "boundary") == 6
    assert parse_answer(request, " 12", False, "boundary") is None
    assert parse_answer(request, " 1 to 10", False, "boundary") is None  # a range is not an answer
    assert parse_answer(request, " 7 or 8", False, "boundary") is None
    assert parse_answer(request, " 3-5", False, "boundary") is None
    assert parse_answer(request, " 7 is mine", False, "boundary") == 6
    assert parse_answer(request, " 1", False, "boundary") is None  # cut by length: could be 10
    assert parse_answer(request, " 1\n", False, "line") == 0
    assert parse_answer(request, " 1.", False, "line") is None
    assert parse_answer(request, " 1", True, "eot") == 0
    assert parse_answer(request, "7", True, "boundary") is None  # the space is part of the answer


def test_measure_result_and_audit(llama, tokenizer):
    llama.train()
    result = measure(llama, tokenizer, ["coin_flip", "integer_1_10"], model_name="tiny-llama")
    assert llama.training, "measure restores train mode"
    llama.eval()
    r = result.tasks["integer_1_10"]
    assert r.kind == "chat" and r.matrix.shape == (7, 10)
    np.testing.assert_allclose(r.matrix.sum(axis=1), 1.0)
    assert set(r.metrics) == {"entropy", "diversity", "coverage", "consensus_entropy", "top_prob", "spread"}
    audit = result.to_json()
    assert audit["schema"] == "crystalwatch.measurement/1" and audit["model"] == "tiny-llama"
    term = audit["terminators"]["ids"]
    assert audit["terminators"]["name"] == "boundary" and len(term) > 10
    variant = audit["tasks"]["integer_1_10"]["variants"][0]
    assert set(variant) >= {"prompt", "prompt_ids", "continuations", "probs", "coverage"}
    assert tokenizer.encode(variant["prompt"], add_special_tokens=False) == variant["prompt_ids"]
    # Re-check the audit record from its own contents: brute force over the listed continuations.
    mass = {
        o: sum(np.exp(brute_force_logprob(llama, variant["prompt_ids"], c["ids"], term)) for c in conts)
        for o, conts in variant["continuations"].items()
    }
    total = sum(mass.values())
    assert total == pytest.approx(variant["coverage"], rel=1e-4)
    for o, p in variant["probs"].items():
        assert mass[o] / total == pytest.approx(p, abs=1e-5)
    assert variant["continuations"]["7"][0] == {"text": "7", "ids": tokenizer.encode("7"), "terminator": "boundary"}


def test_completion_prompts_and_errors(llama, tokenizer):
    result = measure(llama, tokenizer, ["yes_no"], kind="completion")
    variants = result.tasks["yes_no"].variants
    assert len(variants) == 10 and all(v.request.kind == "completion" for v in variants)
    assert variants[0].request.candidates[0].text.startswith(" ")
    with pytest.raises(ValueError, match="unknown estimator"):
        measure(llama, tokenizer, ["yes_no"], estimator="greedy")  # type: ignore[arg-type]
