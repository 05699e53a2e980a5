"""Sampled answer distributions: N seeded generations per prompt, parsed to outcomes by surface form.

A generation counts for an outcome when its text starts with one of the outcome's candidate texts
(the same texts the exact scorer uses) and the answer then ends the way the terminator set says
(end of generation; a line break; or any non-alphanumeric character). Everything else is invalid.
Sampling is plain ancestral sampling (temperature 1, no top-k/top-p), so it estimates the same
quantity as the exact scorer, up to tokenisations other than the canonical one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from crystalwatch.scoring.backend import Options, Scored
from crystalwatch.scoring.prompts import Request, answer_ends, end_token_ids
from crystalwatch.scoring.sharded import check_engine


def parse_answer(request: Request, text: str, ended: bool, terminators: str) -> int | None:
    """The outcome index a generated ``text`` answers, or ``None`` when it is invalid.

    ``ended`` says whether the generation stopped by itself (an end token) rather than by length.
    """
    best: tuple[int, int] | None = None
    for cand in request.candidates:
        if text.startswith(cand.text) and (best is None or len(cand.text) > best[0]):
            rest = text[len(cand.text) :]
            if (rest or ended) and answer_ends(rest, terminators):
                best = (len(cand.text), cand.outcome)
    return None if best is None else best[1]


EXTRA_TOKENS = 3  # generated beyond the longest answer, to see its terminator


@torch.no_grad()
def sample_requests(
    model: Any,
    tokenizer: Any,
    requests: Sequence[Request],
    terminators: str,
    *,
    samples: int = 2000,
    seed: int = 0,
    batch_size: int = 500,
) -> list[tuple[np.ndarray, int]]:
    """Per request: (counts per outcome, number of invalid answers) over ``samples`` generations.

    The global RNG state is saved and restored, so sampling never disturbs a training run.
    """
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    end_ids = end_token_ids(tokenizer)  # eos included
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end_ids[0]
    results = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for r, request in enumerate(requests):
            torch.manual_seed(seed + r)
            longest = max(len(c.ids) for c in request.candidates)
            config = GenerationConfig(
                do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=longest + EXTRA_TOKENS,
                eos_token_id=end_ids, pad_token_id=pad,
            )  # fmt: skip
            n_outcomes = 1 + max(c.outcome for c in request.candidates)
            counts, invalid = np.zeros(n_outcomes, dtype=np.int64), 0
            prompt = torch.tensor([request.prompt_ids], device=device)
            done = 0
            while done < samples:
                n = min(batch_size, samples - done)
                out = model.generate(
                    input_ids=prompt.expand(n, -1),
                    attention_mask=torch.ones(n, prompt.shape[1], dtype=torch.long, device=device),
                    generation_config=config,
                )
                for row in out[:, prompt.shape[1] :].tolist():
                    stop = next((i for i, t in enumerate(row) if t in end_ids), None)
                    ended = stop is not None
                    row = row[:stop]
                    text = tokenizer.decode(row, skip_special_tokens=False)
                    outcome = parse_answer(request, text, ended, terminators)
                    if outcome is None:
                        invalid += 1
                    else:
                        counts[outcome] += 1
                done += n
            results.append((counts, invalid))
    return results


class SampledBackend:
    """``estimator="sampled"``: ``options.samples`` seeded generations per prompt, parsed to outcomes."""

    name = "sampled"
    extra_tokens = EXTRA_TOKENS

    def score(self, model: Any, tokenizer: Any, requests: Sequence[Request], n_outcomes: Sequence[int], *,
              terminators: str, terminator_ids: np.ndarray, options: Options) -> list[Scored]:  # fmt: skip
        check_engine(model, "sampled")
        out = []
        drawn = sample_requests(model, tokenizer, requests, terminators, samples=options.samples, seed=options.seed)
        for n, (counts, invalid) in zip(n_outcomes, drawn):
            counts = np.pad(counts, (0, n - len(counts)))
            valid = counts.sum()
            probs = counts / valid if valid else np.full(n, 1.0 / n)
            out.append(Scored(probs, float(valid / options.samples), counts, invalid))
        return out


BACKEND = SampledBackend()
