"""Brute-force reference scoring: one full forward of the whole model per continuation."""

from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def brute_force_logprob(model, prompt_ids, cont_ids, terminators) -> float:
    """log P(cont | prompt) + log P(any terminator | prompt, cont), from the model's own logits."""
    ids = torch.tensor([list(prompt_ids) + list(cont_ids)])
    logits = model(input_ids=ids).logits[0].double()  # the normalisation in fp64: the reference adds no error
    lsm = torch.log_softmax(logits, dim=-1)
    p = len(prompt_ids)
    total = sum(lsm[p - 1 + i, t].item() for i, t in enumerate(cont_ids))
    return total + torch.logsumexp(lsm[-1, torch.as_tensor(np.asarray(terminators))], dim=0).item()
