"""Metrics on answer distributions: pure functions on numpy arrays.

Conventions: a distribution matrix ``P`` has one row per prompt variant and one column per outcome
(K = number of outcomes); rows sum to 1. Jensen-Shannon divergence is in bits, so it lies in [0, 1].
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as _entropy


def normalized_entropy(p: np.ndarray) -> np.ndarray:
    """H(p) / log K for each row of ``p`` (or for a single distribution): 0 = certain, 1 = uniform."""
    p = np.asarray(p, dtype=float)
    k = p.shape[-1]
    if k < 2:
        raise ValueError("entropy needs at least two outcomes")
    return np.clip(_entropy(p, axis=-1) / np.log(k), 0.0, 1.0)


def jsd(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence between two distributions, in bits (0 = identical, 1 = disjoint)."""
    return float(np.clip(jensenshannon(p, q, base=2) ** 2, 0.0, 1.0))


def pairwise_jsd(p: np.ndarray) -> np.ndarray:
    """Symmetric [V, V] matrix of Jensen-Shannon divergences (bits) between the rows of ``p``."""
    p = np.asarray(p, dtype=float)
    v = len(p)
    out = np.zeros((v, v))
    for i in range(v):
        for j in range(i + 1, v):
            out[i, j] = out[j, i] = jsd(p[i], p[j])
    return out


def entropy(p: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean normalised entropy over the variants (rows) of ``p``, optionally weighted."""
    return float(np.average(normalized_entropy(p), weights=weights))


def diversity(p: np.ndarray) -> float:
    """Mean pairwise JSD (bits) between variants: how many different distributions the prompts elicit."""
    v = len(p)
    if v < 2:
        return 0.0
    return float(pairwise_jsd(p)[np.triu_indices(v, 1)].mean())


def consensus(p: np.ndarray, coverage: np.ndarray | None = None) -> np.ndarray:
    """Coverage-weighted mean distribution over variants (plain mean when every coverage is 0)."""
    p = np.asarray(p, dtype=float)
    w = np.ones(len(p)) if coverage is None else np.asarray(coverage, dtype=float)
    if not w.sum() > 0:
        w = np.ones(len(p))
    w = w / w.max()  # scale first: tiny (even subnormal) coverages must not underflow to zero mass
    c = w @ p
    return c / c.sum()


def mean_coverage(coverage: np.ndarray) -> float:
    """Mean over variants of the mass the model put on valid outcomes before renormalising."""
    return float(np.mean(coverage))


def velocity(previous: np.ndarray, current: np.ndarray, steps: float = 1.0) -> float:
    """JSD (bits) between two successive consensus distributions, per training step."""
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    return jsd(previous, current) / steps


def task_metrics(p: np.ndarray, coverage: np.ndarray) -> dict[str, float]:
    """The metrics that need no seed library, for one task's [V, K] matrix and per-variant coverage."""
    return {
        "entropy": entropy(p),
        "diversity": diversity(p),
        "coverage": mean_coverage(coverage),
    }
