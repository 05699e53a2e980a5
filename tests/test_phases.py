"""The phase model: classify and PhaseTracker on synthetic trajectories built to pass through each state."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic import base_matrix, peaked, task_result

from crystalwatch import metrics
from crystalwatch.answers import Reference
from crystalwatch.phases import PhaseConfig, PhaseTracker, classify
from crystalwatch.seeds import SeedLibrary, task_seeds

TASK = "integer_1_10"


@pytest.fixture(scope="module")
def library() -> SeedLibrary:
    return SeedLibrary({TASK: task_seeds([task_result(TASK, base_matrix(), kind="chat")])})


def run(library, matrices, steps=None, config=None, coverage=0.2, reference=None):
    """Feed one matrix per measurement through compare (against ``reference``, default the library's base) and the
    tracker; return (states, candidates, events, tracker)."""
    tracker = PhaseTracker(config or PhaseConfig())
    states, candidates, events = [], [], []
    for i, p in enumerate(matrices):
        step = steps[i] if steps else 10 * i
        r = task_result(TASK, p, coverage=coverage)
        seed, m = library.compare(r, reference=reference)
        u = tracker.update(step, TASK, m, r.consensus, seed.id)
        states.append(u.state)
        candidates.append(u.candidate)
        events += u.events
    return states, candidates, events, tracker


def toward(library, a, seed="s1", rows_seed=1, t=0.5):
    """Every prompt moved a share ``a`` of the way onto the seed sharpened to temperature ``t``."""
    target = metrics.temper(library.seed(TASK, seed).centroid, t)
    return (1 - a) * base_matrix(rows_seed) + a * target


def tempered(library, t, seed="s1", n=5):
    target = next(s for s in library.tasks[TASK].seeds if s.id == seed).centroid
    return np.array([metrics.temper(target, t)] * n)


def test_library_has_the_three_prompt_families_as_seeds(library):
    seeds = library.tasks[TASK].seeds
    assert [len(s.members) for s in seeds] == [4, 4, 3]
    assert np.argmax(seeds[0].centroid) == 0 and np.argmax(seeds[1].centroid) == 9  # "1" and "10"


def test_liquid_nucleating_nucleated_settling_settled(library):
    # "10" already gets 0.55 from a family of base prompts (its reach): halfway to the sharpened "10" seed (0.59 of
    # the consensus) is still within what reweighting the base's prompts gives; 0.6 and 0.7 of the way (0.65, 0.72)
    # are beyond it by the margin, not yet sharp: nucleating.
    matrices = [toward(library, a) for a in (0, 0, 0.6, 0.7, 0.95, 1.0, 1.0)]
    matrices += [tempered(library, t) for t in (0.6, 0.7, 0.7, 0.7, 0.7, 0.7)]  # moving within the seed, then not
    states, candidates, events, _ = run(library, matrices)
    assert candidates[:7] == ["liquid", "liquid", "nucleating", "nucleating", "nucleated", "nucleated", "nucleated"]
    assert states == [
        "liquid", "liquid", "liquid", "nucleating", "nucleating", "nucleated", "nucleated",
        "nucleated", "settling", "settling", "settling", "settled", "settled",
    ]  # fmt: skip  (velocity over 20 steps: at rest is read 20 steps after the last move)
    path = [(e.from_state, e.to_state, e.step, e.since, e.seed) for e in events]
    assert path == [
        ("liquid", "nucleating", 30, 20, "s1"),  # a takeover names the seed that favours its answer
        ("nucleating", "nucleated", 50, 40, "s1"),
        ("nucleated", "settling", 80, 70, "s1"),
        ("settling", "settled", 110, 100, "s1"),
    ]
    assert not any(e.remelt for e in events)


def jittering_crystal(library, steps: int, seed: int = 0) -> list:
    """A crystal at rest that jitters: each step 0.006 of mass moves at random between its top answer and another
    (the step-to-step noise of SGD), no drift."""
    rng = np.random.default_rng(seed)
    crystal = toward(library, 1.0)
    out = []
    for _ in range(steps):
        m = crystal.copy()
        e = 0.006 * rng.choice([-1, 1])
        m[:, 9] += e
        m[:, 2] -= e
        out.append(m)
    return out


@pytest.mark.parametrize("every", [1, 5, 10])
def test_velocity_over_a_window_of_steps_does_not_depend_on_the_cadence(library, every):
    """A jittering crystal at rest reads nucleated (never settling) whether measured every step or every 10; v3's
    velocity between successive measurements (a window of 1 step) read the dense cadence as settling."""
    matrices = jittering_crystal(library, 61)[::every]
    steps = list(range(0, 61, every))
    states, _, _, tracker = run(library, matrices, steps=steps)
    assert "settling" not in states and states[-1] == "nucleated", states
    gap_states, _, _, _ = run(library, matrices, steps=steps, config=PhaseConfig(velocity_window=1))
    assert ("settling" in gap_states) == (every == 1), gap_states


def test_a_steady_drift_reads_the_same_velocity_at_every_cadence(library):
    """A takeover of "10" sharpening steadily (0.005 of mass per step, above velocity_eps: 0.55 at step 0, 0.95 at
    80) reads velocity 0.005 and settling at step 80 at every cadence."""
    for every in (1, 5, 10):
        tracker = PhaseTracker()
        for step in range(0, 81, every):
            r = task_result(TASK, np.array([peaked(10, 9, 0.55 + 0.005 * step)] * 5))
            u = tracker.update(step, TASK, library.compare(r)[1], r.consensus, "s1")
        assert u.state == "settling" and u.velocity == pytest.approx(0.005, rel=1e-6), (every, u)


def test_hysteresis_ignores_a_single_blip(library):
    matrices = [toward(library, a) for a in (0, 0, 1.0, 0, 0)]
    states, candidates, events, _ = run(library, matrices)
    assert candidates[2] == "nucleated"
    assert set(states) == {"liquid"} and events == []
    # With hold=1 the blip is a transition and its return a remelt.
    states, _, events, _ = run(library, matrices, config=PhaseConfig(hold=1))
    assert states == ["liquid", "liquid", "nucleated", "liquid", "liquid"]
    assert [(e.to_state, e.remelt) for e in events] == [("nucleated", False), ("liquid", True)]


def test_foreign_when_collapsed_far_from_every_seed(library):
    # Every prompt answers the outcome every seed gives less than the uniform share: collapsed, foreign.
    least = int(np.argmin(library.tasks[TASK].centroids.max(axis=0)))
    assert library.tasks[TASK].centroids[:, least].max() < 0.1
    sharp = np.array([peaked(10, least, 0.9)] * 6)
    states, candidates, events, _ = run(library, [base_matrix(1), sharp, sharp])
    assert candidates[1:] == ["foreign", "foreign"] and states[-1] == "foreign"
    assert events[0].to_state == "foreign"


def test_remelt_from_a_collapsed_state(library):
    matrices = [toward(library, a) for a in (0, 1.0, 1.0, 1.0, 0, 0)]
    _, _, events, _ = run(library, matrices)
    assert [(e.from_state, e.to_state, e.remelt) for e in events] == [
        ("liquid", "nucleated", False), ("nucleated", "liquid", True),
    ]  # fmt: skip


def test_no_signal_when_coverage_is_too_low_or_metrics_missing(library):
    states, candidates, _, _ = run(library, [base_matrix(1)] * 3, coverage=1e-5)
    assert candidates == ["no_signal"] * 3 and states == ["no_signal"] * 3
    m = {"entropy": 0.5, "diversity": 0.1, "coverage": 0.3, "collapse": float("nan"), "seed_evidence": 1.0}
    assert classify(m, 10, PhaseConfig()) == "no_signal"


def test_polycrystalline_when_variants_are_sharp_but_disagree(library):
    # Half the prompts became certain of "1", half of "10" (seen on a real model with heads/tails).
    poly = np.array([peaked(10, 0, 0.97)] * 3 + [peaked(10, 9, 0.97)] * 3)
    states, candidates, _, _ = run(library, [base_matrix(1), poly, poly])
    assert candidates[1:] == ["polycrystalline"] * 2 and states[-1] == "polycrystalline"


def test_reseeding_onto_another_seed_is_a_transition(library):
    matrices = [toward(library, 1.0, "s1")] * 2 + [toward(library, 1.0, "s0")] * 2
    states, _, events, tracker = run(library, matrices)
    assert [(e.to_state, e.seed) for e in events] == [("nucleated", "s0")]
    assert tracker.state_dict()["tasks"][TASK]["seed"] == "s0"


def test_flat_prompts_that_agree_read_melted_not_nucleated(library):
    flat = np.array([np.full(10, 0.1)] * 5)
    states, candidates, _, _ = run(library, [flat] * 3)
    _, m = library.compare(task_result(TASK, flat))
    assert m["collapse"] < -0.1 and m["diversity"] == 0  # every prompt agrees, on nothing
    assert candidates == ["melted"] * 3 and states == ["melted"] * 3


def test_melting_after_a_crystal_is_a_remelt(library):
    flat = np.array([np.full(10, 0.1)] * 5)
    _, _, events, _ = run(library, [toward(library, 1.0)] * 2 + [flat] * 2)
    assert [(e.from_state, e.to_state, e.remelt) for e in events] == [("nucleated", "melted", True)]


def test_early_warning_fires_once_when_prompts_split_before_a_collapse(library):
    # A run that starts with every prompt leaning to "1": the spread of "10" between its prompts is 0. Half the
    # prompts take up "10" while the others stay: the spread of "10", now the top answer, rises; then the crystal.
    agree = np.array([peaked(10, 0, 0.5)] * 10)
    start = Reference.of(agree, np.full(10, 0.2), "start")
    split = [np.vstack([agree[:5], np.array([peaked(10, 9, m)] * 5)]) for m in (0.6, 0.7)]
    matrices = [agree, *split, toward(library, 1.0, t=0.3), toward(library, 1.0, t=0.3)]
    _, _, events, _ = run(library, matrices, reference=start)
    warnings = [e for e in events if e.kind == "warning"]
    assert [(e.step, e.since) for e in warnings] == [(20, 10)]
    crystal = [e for e in events if e.to_state == "nucleated"]
    assert crystal and crystal[0].step > warnings[0].step


def test_early_warning_compares_the_same_answer_at_the_start(library):
    """The top answer changes from "1" (every prompt agreed on it: spread 0) to "10", which the prompts already
    disagreed on as much at the start: the spread of "10" did not rise, so no warning (v2 compared it with the
    spread of "1" at the start and warned)."""
    start_rows = np.vstack([[peaked(10, 0, 0.5)] * 5, [peaked(10, 9, 0.45)] * 5])  # "10": half 0.45, half 0.06
    start = Reference.of(start_rows, np.full(10, 0.2), "start")
    later = np.vstack([[peaked(10, 9, 0.7)] * 5, [peaked(10, 9, 0.3)] * 5])  # "10" on top, as spread as before
    _, _, events, _ = run(library, [start_rows, later, later, later], reference=start)
    r = task_result(TASK, later)
    _, m = library.compare(r, reference=start)
    assert r.consensus.argmax() == 9 and abs(m["spread_rise"]) < 0.1
    assert [e for e in events if e.kind == "warning"] == []


def test_state_dict_round_trip_continues_identically(library):
    matrices = [toward(library, a) for a in (0, 0.5, 0.55, 0.95, 1.0)] + [tempered(library, t) for t in (0.6, 0.7)]
    _, _, _, full = run(library, matrices)
    first = PhaseTracker()
    for i, p in enumerate(matrices[:3]):
        r = task_result(TASK, p)
        seed, m = library.compare(r)
        first.update(10 * i, TASK, m, r.consensus, seed.id)
    import json

    resumed = PhaseTracker.from_state_dict(json.loads(json.dumps(first.state_dict())))
    for i, p in enumerate(matrices[3:], start=3):
        r = task_result(TASK, p)
        seed, m = library.compare(r)
        resumed.update(10 * i, TASK, m, r.consensus, seed.id)
    assert resumed.state_dict() == full.state_dict()


def test_config_is_validated():
    with pytest.raises(ValueError, match="collapse_low"):
        PhaseConfig(collapse_low=1.5)
    with pytest.raises(ValueError, match="hold"):
        PhaseConfig(hold=0)
