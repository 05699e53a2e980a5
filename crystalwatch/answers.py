"""Answers against a reference: which answer is gaining, and whether its rise is beyond the noise.

A run's readings measure change from a :class:`Reference`: the prompts' distributions where the run stands at the
start, i.e. the library's base on the same prompt kind (the usual case), or the run's own first measurement when it
does not start at the base (another chat template, a checkpoint already post-trained). Per answer the reference
gives its consensus probability, its *reach* (the most any one reference prompt gives it) and its spread between
the prompts. The consensus is a coverage-weighted mean of the prompts, so training that only changes how much each
prompt answers at all (coverage: the chat format being learnt) moves the consensus inside the prompts' range and
never takes an answer past its reach; an answer beyond its reach is one the prompts themselves moved toward.
Pure numpy; definitions and the data behind the thresholds: docs/phase-model.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from crystalwatch import metrics


@dataclass
class Reference:
    """Where one task's readings measure change from (see the module docstring)."""

    origin: str  # "base" or "start"
    consensus: np.ndarray  # [K] the reference prompts' coverage-weighted consensus
    reach: np.ndarray  # [K] the most any one reference prompt gives each answer
    spread: np.ndarray  # [K] each answer's coverage-weighted standard deviation between the reference prompts

    @classmethod
    def of(cls, matrix: np.ndarray, coverage: np.ndarray, origin: str) -> Reference:
        """The reference of a [V, K] matrix of prompt distributions with their coverage."""
        p = np.asarray(matrix, dtype=float)
        c = metrics.consensus(p, coverage)
        w = np.asarray(coverage, dtype=float)
        w = w / w.max() if w.max() > 0 else np.ones(len(p))
        spread = np.sqrt(np.average((p - np.average(p, axis=0, weights=w)) ** 2, axis=0, weights=w))
        return cls(origin, c, p.max(axis=0), spread)

    @property
    def consensus_entropy(self) -> float:
        return float(metrics.normalized_entropy(self.consensus))

    def to_json(self) -> dict[str, Any]:
        return {"origin": self.origin, "consensus": [float(x) for x in self.consensus],
                "reach": [float(x) for x in self.reach], "spread": [float(x) for x in self.spread]}  # fmt: skip

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Reference:
        return cls(str(raw["origin"]), *(np.array(raw[k], dtype=float) for k in ("consensus", "reach", "spread")))


def starts_at(start: np.ndarray, base: Reference, tolerance: float) -> bool:
    """Does a run whose first consensus is ``start`` start at the base (JSD at most ``tolerance`` bits)?"""
    return metrics.jsd(start, base.consensus) <= tolerance


def answer_metrics(
    consensus: np.ndarray, matrix: np.ndarray, coverage: np.ndarray, ref: Reference, centroids: np.ndarray
) -> dict[str, Any]:
    """Answer-level readings of one measurement against its reference (names as in ``metrics.METRIC_TABLE``).

    ``top_*`` describe the consensus's top answer: the coverage-weighted share of prompts whose own top answer it
    is, its gain over the reference, its excess over its reach, the seed that gives it the most mass (``top_seed``,
    an index into ``centroids``) and that mass; ``rising*`` the answer that gained most (an index), by how much,
    and how far beyond its reach; ``spread_rise`` how much more the prompts disagree on the top answer than the
    reference prompts did on that same answer (the early warning compares like with like).
    """
    c = np.asarray(consensus, dtype=float)
    gain = c - ref.consensus
    top, rising = int(np.argmax(c)), int(np.argmax(gain))
    seed = int(np.argmax(centroids[:, top]))
    w = np.asarray(coverage, dtype=float)
    leads = np.asarray(matrix).argmax(axis=1) == top
    return {
        "top_share": float(w[leads].sum() / w.sum()) if w.sum() > 0 else float(leads.mean()),
        "top_gain": float(gain[top]),
        "top_excess": float(c[top] - ref.reach[top]),
        "top_seed": seed,
        "top_seed_mass": float(centroids[seed, top]),
        "rising": rising,
        "rising_gain": float(gain[rising]),
        "rising_excess": float(c[rising] - ref.reach[rising]),
        "spread_rise": metrics.spread(matrix, coverage, top) - float(ref.spread[top]),
    }
