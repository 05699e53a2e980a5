"""Metrics on answer distributions: pure functions on numpy arrays.

Conventions: a distribution matrix ``P`` has one row per prompt variant and one column per outcome
(K = number of outcomes); rows sum to 1. Jensen-Shannon divergence is in bits, so it lies in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metric:
    """One metric of a record: its name (the key in ``record.metrics`` and in ``crystal/<task>/<name>``), its unit,
    what it means, and whether it is a column of the phase table (W&B and TensorBoard tables, the report)."""

    name: str
    unit: str
    meaning: str
    table: bool = False


# The one table of metrics (docs/phase-model.md shows it and a test holds the two together). Every tracker gets
# each numeric metric as ``crystal/<task>/<name>``; ``table`` picks the phase table's columns, in this order.
METRIC_TABLE: tuple[Metric, ...] = (
    Metric("seed_distance", "JSD, bits", "JSD of the consensus to its nearest seed", True),
    Metric("temperature", "T", "the temperature that brings the nearest seed closest to the consensus", True),
    Metric("tempered_distance", "JSD, bits", "JSD of the consensus to the nearest seed at that temperature", True),
    Metric("collapse", "share, signed", "share of the base's consensus entropy gone (negative: melting)", True),
    Metric("entropy", "share of log K", "mean normalised entropy of the prompts' distributions", True),
    Metric("diversity", "JSD, bits", "mean pairwise JSD between the prompts' distributions", True),
    Metric("coverage", "share", "mean probability mass on valid answers before renormalising", True),
    Metric("seed_evidence", "bits", "log2(K x consensus mass the evidence seed predicts); 0 = chance", True),
    Metric("consensus_entropy", "share of log K", "normalised entropy of the coverage-weighted consensus"),
    Metric("top_prob", "probability", "the consensus's largest probability"),
    Metric("spread", "probability", "between-prompt spread of the top answer's probability (early warning)"),
    Metric("base_consensus_entropy", "share of log K", "the consensus entropy of the reference (base or start)"),
    Metric("base_distance", "JSD, bits", "JSD of the consensus to the reference's consensus"),
    Metric("top_share", "share", "coverage-weighted share of the prompts whose own top answer is the top answer"),
    Metric("top_gain", "probability", "the top answer's probability minus the reference's"),
    Metric("top_excess", "probability", "the top answer's probability minus the most any reference prompt gave it"),
    Metric("top_seed", "seed id", "the seed that gives the top answer the most mass"),
    Metric("top_seed_mass", "probability", "the mass that seed gives the top answer (favoured above K^-0.75)"),
    Metric("rising", "answer", "the answer that gained the most probability since the reference"),
    Metric("rising_gain", "probability", "how much it gained"),
    Metric("rising_excess", "probability", "its probability minus the most any reference prompt gave it"),
    Metric("spread_rise", "probability", "spread of the top answer minus the reference prompts' spread of it"),
    Metric("seed_margin", "JSD, bits", "distance to the second-nearest seed minus the nearest's"),
    Metric("seed_support_mass", "share", "consensus mass on the nearest seed's 90% support"),
    Metric("temperature_bound", "-1, 0, 1", "the fitted temperature is at the low end, inside, at the high end"),
    Metric("evidence_seed", "seed id", "the seed of largest evidence (names a crystal)"),
    Metric("seed_pvalue", "p-value", "share of label permutations with at least the seed evidence"),
    Metric("seed_chance", "share", "share of answers on which a one-answer crystal would read as a seed"),
    Metric("velocity", "TV mass per step", "probability mass the consensus moved per training step"),
)


def table_metrics() -> tuple[str, ...]:
    """The metrics that are columns of the phase table, in order."""
    return tuple(m.name for m in METRIC_TABLE if m.table)


def normalized_entropy(p: np.ndarray) -> np.ndarray:
    """H(p) / log K for each row of ``p`` (or for a single distribution): 0 = certain, 1 = uniform."""
    p = np.asarray(p, dtype=float)
    k = p.shape[-1]
    if k < 2:
        raise ValueError("entropy needs at least two outcomes")
    with np.errstate(divide="ignore", invalid="ignore"):
        q = p / p.sum(axis=-1, keepdims=True)  # a row that is all zeros or has a NaN gives NaN, as it should
        h = -np.sum(np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), np.where(np.isnan(q), np.nan, 0.0)), axis=-1)
    return np.clip(h / np.log(k), 0.0, 1.0)


def jsd(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence between two distributions, in bits (0 = identical, 1 = disjoint)."""
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    return float(jsd_rows(p / p.sum(), q / q.sum()))


def jsd_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """JSD (bits) between one distribution ``p`` [K] and each row of ``q`` [..., K], vectorised."""
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(a > 0, a * np.log2(np.where(a > 0, a, 1) / np.where(m > 0, m, 1)), 0.0).sum(-1)

    return np.clip((kl(np.broadcast_to(p, q.shape)) + kl(q)) / 2, 0.0, 1.0)


def pairwise_jsd(p: np.ndarray) -> np.ndarray:
    """Symmetric [V, V] matrix of Jensen-Shannon divergences (bits) between the rows of ``p``."""
    from scipy.spatial.distance import pdist, squareform  # scipy's JS distance is sqrt(JSD in nats)

    p = np.asarray(p, dtype=float)
    if len(p) < 2:
        return np.zeros((len(p), len(p)))
    distance = np.nan_to_num(pdist(p, "jensenshannon"), nan=0.0)  # nan: sqrt of a rounding-negative 0
    return np.clip(squareform(distance**2 / np.log(2)), 0.0, 1.0)


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
    """Probability mass moved per training step: total-variation distance between two successive consensus
    distributions, divided by the steps between them.

    Total variation grows linearly with a steady drift, so the rate does not depend on how often one measures;
    JSD grows with the square of a small move, so JSD per step would shrink with a denser cadence.
    """
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")
    a, b = np.asarray(previous, dtype=float), np.asarray(current, dtype=float)
    return float(0.5 * np.abs(a / a.sum() - b / b.sum()).sum() / steps)


def spread(p: np.ndarray, coverage: np.ndarray, outcome: int) -> float:
    """Coverage-weighted standard deviation, between prompt variants, of the probability of one outcome.

    Rising spread of the consensus's top answer is the early-warning signal (docs/phase-model.md): before the
    prompts agree on an answer, some of them take it up and others not yet.
    """
    p = np.asarray(p, dtype=float)
    w = np.asarray(coverage, dtype=float)
    w = w / w.max() if w.max() > 0 else np.ones(len(p))
    x = p[:, outcome]
    mean = float(np.average(x, weights=w))
    return float(np.sqrt(np.average((x - mean) ** 2, weights=w)))


def task_metrics(p: np.ndarray, coverage: np.ndarray) -> dict[str, float]:
    """The metrics that need no seed library, for one task's [V, K] matrix and per-variant coverage."""
    c = consensus(p, coverage)
    return {
        "entropy": entropy(p),
        "diversity": diversity(p),
        "coverage": mean_coverage(coverage),
        "consensus_entropy": float(normalized_entropy(c)),
        "top_prob": float(c.max()),
        "spread": spread(p, coverage, int(np.argmax(c))),
    }


def collapse(entropy_now: float, entropy_base: float, floor: float = 0.05) -> float:
    """Signed share of the base's consensus entropy that is gone: 1 - H(c) / max(H_base(c), floor).

    H(c), the normalised entropy of the consensus, is the prompts' mean entropy plus their disagreement
    (information radius), so it falls when each prompt sharpens and when the prompts agree. 0: as spread out as
    the base on the same prompts; 1: one certain answer everywhere; negative: flatter than the base (melting).
    Not clipped: melting must show. The floor keeps an already-certain base from turning noise into collapse.
    """
    return float(1.0 - entropy_now / max(entropy_base, floor))


def seed_evidence(p: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Per seed, log2(K * sum_o p_o s_o): how much more of ``p``'s mass the seed predicts than a uniform guess.

    ``p`` is one distribution [K] (result [S]) or a batch [..., K] (result [..., S]).

    In bits, at most log2 K (all of ``p`` on the seed's only answer); 0 when the seed does no better than chance
    on ``p``'s answers, negative when it gives them less than the uniform share.
    """
    p = np.asarray(p, dtype=float)
    centroids = np.asarray(centroids, dtype=float)
    with np.errstate(divide="ignore"):
        return np.log2(p.shape[-1] * ((p / p.sum(axis=-1, keepdims=True)) @ centroids.T))


def temper(p: np.ndarray, temperature: float) -> np.ndarray:
    """The tempered distribution p^(1/T) / Z (T < 1 sharpens, T > 1 flattens); zeros stay zero."""
    with np.errstate(divide="ignore"):
        logp = np.log(np.asarray(p, dtype=float)) / temperature
    top = logp.max()
    return np.exp(logp - (top + np.log(np.exp(logp - top).sum())))


TEMPERATURE_BOUNDS = (0.02, 50.0)  # the fit's range; a fit at an end means "this sharp/flat or more"


def temperature_bound(t: float | None, bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> int:
    """+1 when a fitted temperature sits at the upper bound (flatter than the fit can say), -1 at the lower
    bound (sharper), 0 inside: a value at a bound is a limit, not a measurement."""
    if t is None or not np.isfinite(t):
        return 0
    if t >= bounds[1] * (1 - 1e-3):
        return 1
    if t <= bounds[0] * (1 + 1e-3):
        return -1
    return 0


def temperature_text(m: dict, fmt: str = ".2f") -> str:
    """A fitted temperature for people: ``≥50`` / ``≤0.02`` at the fit's bounds, ``-`` when missing."""
    t = m.get("temperature")
    if t is None or not np.isfinite(t):
        return "-"
    side = m.get("temperature_bound")
    side = temperature_bound(t) if side is None or not np.isfinite(side) else side
    if side > 0:
        return f"≥{TEMPERATURE_BOUNDS[1]:g}"
    if side < 0:
        return f"≤{TEMPERATURE_BOUNDS[0]:g}"
    return format(t, fmt)


def fit_temperature(
    target: np.ndarray, seed: np.ndarray, bounds: tuple[float, float] = TEMPERATURE_BOUNDS
) -> tuple[float, float]:
    """The T that makes temper(seed, T) closest to ``target`` in JSD, and that distance (1-D bounded fit).

    Settling as the theory predicts it (pi proportional to pi_ref^gamma) shows as T = 1/gamma < 1 with
    a small tempered distance; mass moved to other outcomes leaves the tempered distance large.
    """
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    from scipy.optimize import minimize_scalar  # imported here: reading trajectories needs no scipy

    res = minimize_scalar(lambda x: jsd(target, temper(seed, float(np.exp(x)))), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-4})  # fmt: skip
    best_x, best = float(res.x), float(res.fun)
    for x in (lo, 0.0, hi):  # the fit is 1-D but not always unimodal: keep the ends and T = 1 as candidates
        d = jsd(target, temper(seed, float(np.exp(x))))
        if d < best - 1e-12:
            best_x, best = x, d
    return float(np.exp(best_x)), best


def support(p: np.ndarray, level: float) -> np.ndarray:
    """Boolean mask of the smallest set of outcomes holding at least ``level`` of ``p``'s mass."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(-p, kind="stable")
    n = int(np.searchsorted(np.cumsum(p[order]), level - 1e-12) + 1)
    mask = np.zeros(len(p), dtype=bool)
    mask[order[: min(n, len(p))]] = True
    return mask


def support_mass(p: np.ndarray, seed: np.ndarray, level: float) -> float:
    """Mass of ``p`` on the seed's ``level`` support: did the distribution stay on the seed's options?"""
    return float(np.asarray(p, dtype=float)[support(seed, level)].sum())
