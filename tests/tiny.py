"""Test helpers on top of crystalwatch.tiny: the same builders, plus training a model to answer."""

from __future__ import annotations

import torch

from crystalwatch.tiny import CHATML, SPECIAL, build_model, build_tokenizer, corpus, save

__all__ = ["CHATML", "SPECIAL", "build_model", "build_tokenizer", "corpus", "save", "train_to_answer"]


def train_to_answer(model, tokenizer, requests, weights, steps: int = 300, seed: int = 0):
    """Teach ``model`` to answer each request with outcome i with probability ``weights[i]`` (then end the turn).

    Plain next-token training on ``prompt + answer + <|im_end|>``; returns the model in eval mode.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    first_form = {}
    for request in requests:
        for cand in request.candidates:
            first_form.setdefault((request.variant, cand.outcome), cand)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        batch = []
        for _ in range(32):
            request = requests[rng.integers(len(requests))]
            cand = first_form[(request.variant, int(rng.choice(len(weights), p=weights)))]
            batch.append(list(request.prompt_ids) + list(cand.ids) + [tokenizer.eos_token_id])
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        for i, seq in enumerate(batch):
            ids[i, : len(seq)] = torch.tensor(seq)
            labels[i, : len(seq)] = torch.tensor(seq)
        loss = model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
