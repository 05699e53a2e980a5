"""Metric invariants (hypothesis) and known values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from crystalwatch import metrics


def dists(k_min=2, k_max=8, v_min=1, v_max=6):
    @st.composite
    def build(draw):
        k = draw(st.integers(k_min, k_max))
        v = draw(st.integers(v_min, v_max))
        raw = draw(arrays(float, (v, k), elements=st.floats(0, 1, allow_nan=False)))
        raw = raw + 1e-9
        return raw / raw.sum(axis=1, keepdims=True)

    return build()


@given(dists())
@settings(max_examples=200, deadline=None)
def test_entropy_bounds_and_extremes(p):
    h = metrics.normalized_entropy(p)
    assert np.all((h >= 0) & (h <= 1))
    k = p.shape[1]
    assert metrics.normalized_entropy(np.full(k, 1 / k)) == pytest.approx(1.0)
    assert metrics.normalized_entropy(np.eye(k)[0]) == pytest.approx(0.0)
    assert 0 <= metrics.entropy(p) <= 1


@given(dists(v_min=2, v_max=2))
@settings(max_examples=200, deadline=None)
def test_jsd_is_a_bounded_symmetric_divergence(p):
    a, b = p
    d = metrics.jsd(a, b)
    assert 0 <= d <= 1
    assert d == pytest.approx(metrics.jsd(b, a), abs=1e-12)
    assert metrics.jsd(a, a) == pytest.approx(0.0, abs=1e-12)


def test_jsd_known_values():
    assert metrics.jsd(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)
    # JSD([1,0],[.5,.5]) = H(.75,.25) - .5*H(.5,.5) in bits
    h = -(0.75 * np.log2(0.75) + 0.25 * np.log2(0.25))
    assert metrics.jsd(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == pytest.approx(h - 0.5)


@given(dists(v_min=2))
@settings(max_examples=200, deadline=None)
def test_diversity_invariants(p):
    d = metrics.diversity(p)
    assert 0 <= d <= 1
    assert metrics.diversity(p[::-1]) == pytest.approx(d)  # order of variants does not matter
    assert metrics.diversity(p[:, ::-1]) == pytest.approx(d)  # nor the order of outcomes
    assert metrics.diversity(np.repeat(p[:1], len(p), axis=0)) == pytest.approx(0.0, abs=1e-12)


def test_diversity_of_disagreeing_certain_variants_is_one():
    assert metrics.diversity(np.eye(3)) == pytest.approx(1.0)
    assert metrics.diversity(np.eye(3)[:1]) == 0.0


@given(dists(), st.data())
@settings(max_examples=200, deadline=None)
def test_consensus_is_a_distribution_in_the_hull(p, data):
    w = np.array(data.draw(st.lists(st.floats(0, 1), min_size=len(p), max_size=len(p))))
    c = metrics.consensus(p, w)
    assert c.sum() == pytest.approx(1.0)
    assert np.all(c >= p.min(axis=0) - 1e-9) and np.all(c <= p.max(axis=0) + 1e-9)


def test_consensus_weights_by_coverage():
    p = np.array([[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(metrics.consensus(p, np.array([0.3, 0.1])), [0.75, 0.25])
    np.testing.assert_allclose(metrics.consensus(p, np.array([0.0, 0.0])), [0.5, 0.5])


@given(dists(v_min=2, v_max=2), st.floats(0.5, 100))
@settings(max_examples=100, deadline=None)
def test_velocity(p, steps):
    v = metrics.velocity(p[0], p[1], steps)
    assert v >= 0
    assert v * steps == pytest.approx(0.5 * np.abs(p[0] - p[1]).sum())  # mass moved
    assert metrics.velocity(p[0], p[0], steps) == pytest.approx(0.0, abs=1e-12)


def test_velocity_does_not_depend_on_the_cadence():
    # A steady drift from "1" toward "10": measured every step or every 10 steps, the same mass per step.
    a, b = np.array([0.9, 0.1]), np.array([0.1, 0.9])
    path = [a + (b - a) * i / 100 for i in range(101)]
    dense = np.mean([metrics.velocity(path[i], path[i + 1], 1) for i in range(100)])
    sparse = np.mean([metrics.velocity(path[i], path[i + 10], 10) for i in range(0, 100, 10)])
    assert dense == pytest.approx(sparse, rel=1e-9)
    jsd_dense = np.mean([metrics.jsd(path[i], path[i + 1]) for i in range(100)])
    jsd_sparse = np.mean([metrics.jsd(path[i], path[i + 10]) / 10 for i in range(0, 100, 10)])
    assert jsd_sparse > 5 * jsd_dense  # why not JSD per step: it grows with the gap


def test_velocity_rejects_bad_steps():
    with pytest.raises(ValueError, match="steps must be positive"):
        metrics.velocity(np.array([0.5, 0.5]), np.array([0.5, 0.5]), 0)


def test_task_metrics_and_coverage():
    p = np.array([[0.5, 0.5], [1.0, 0.0]])
    m = metrics.task_metrics(p, np.array([0.2, 0.4]))
    assert m["coverage"] == pytest.approx(0.3)
    assert m["entropy"] == pytest.approx(0.5)
    assert m["diversity"] == pytest.approx(metrics.jsd(p[0], p[1]))
    c = metrics.consensus(p, np.array([0.2, 0.4]))
    assert m["consensus_entropy"] == pytest.approx(metrics.normalized_entropy(c))
    assert m["top_prob"] == pytest.approx(c.max())


@given(base=st.floats(0.0, 1.0), now=st.floats(0.0, 1.0), floor=st.floats(0.01, 0.2))
def test_collapse_is_signed_with_fixed_points(base, now, floor):
    c = metrics.collapse(now, base, floor)
    assert c <= 1.0
    assert (c < 0) == (now > max(base, floor))  # flatter than the base: negative, not clipped
    if base >= floor:
        assert metrics.collapse(base, base, floor) == 0.0  # the base against itself
    assert metrics.collapse(0.0, base, floor) == pytest.approx(1.0)


def test_seed_evidence_in_bits():
    seeds = np.array([[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    np.testing.assert_allclose(metrics.seed_evidence(np.array([1.0, 0, 0, 0]), seeds), [1.0, 0.0])
    np.testing.assert_allclose(metrics.seed_evidence(np.array([[0, 0, 1.0, 0]]), seeds), [[-np.inf, 0.0]])


def test_spread_is_the_weighted_std_of_one_outcome():
    p = np.array([[0.9, 0.1], [0.1, 0.9]])
    assert metrics.spread(p, np.array([1.0, 1.0]), 0) == pytest.approx(0.4)
    assert metrics.spread(p, np.array([1.0, 0.0]), 0) == pytest.approx(0.0)


@settings(max_examples=60, deadline=None)
@given(p=dists(3, 12, 1, 1), t=st.floats(0.1, 5.0))
def test_fit_temperature_recovers_a_tempered_distribution(p, t):
    p = p[0]
    p = np.clip(p, 1e-6, None)
    p /= p.sum()
    assume(metrics.jsd(p, np.full(len(p), 1 / len(p))) > 1e-3)  # a flat seed has no temperature
    target = metrics.temper(p, t)
    fitted, distance = metrics.fit_temperature(target, p)
    assert distance < 1e-6
    assert metrics.jsd(metrics.temper(p, fitted), target) < 1e-6


@given(p=dists(2, 30, 1, 1), level=st.floats(0.05, 0.99))
def test_support_is_the_smallest_set_with_the_mass(p, level):
    p = p[0]
    mask = metrics.support(p, level)
    assert p[mask].sum() >= level - 1e-9
    smallest_in = p[mask].min()
    assert p[mask].sum() - smallest_in < level + 1e-9  # dropping its smallest member loses the level
    assert metrics.support_mass(p, p, level) == pytest.approx(p[mask].sum())
