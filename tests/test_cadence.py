"""The cadence's two adaptive rules on simulated runs (crystalwatch/cadence.py): no model, a fake clock."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from crystalwatch.cadence import Cadence


def simulate(total: int | None, steps: int, step_s: float | Callable[[int], float], measure_s: float,
             setup_s: float = 0.4, budget: float = 0.01) -> tuple[list[int], float, float]:  # fmt: skip
    """A run of ``steps`` steps: setup and the starting measurement, then each step's training (``step_s``, or
    ``step_s(step)``) and, when due, a measurement; the final one at the end. Returns (steps measured during
    training, own seconds, training seconds)."""
    time_of = step_s if callable(step_s) else (lambda step: step_s)
    cadence = Cadence(lambda: 0.0, None, budget)
    cadence.new_run(0, total)
    cadence.seconds = setup_s + measure_s
    cadence.measure_seconds = measure_s
    measured, last = [], 0
    for step in range(1, steps):
        cadence.trained(time_of(step))
        if cadence.due(step, last):
            measured.append(step)
            last = step
            cadence.seconds += measure_s
    cadence.trained(time_of(steps))
    return measured, cadence.seconds + measure_s, cadence.train_seconds


@pytest.mark.parametrize("step_s,measure_s", [(0.163, 0.8), (0.163, 0.1), (1.0, 3.0), (0.05, 0.02)])
def test_front_loaded_keeps_the_budget_and_looks_early(step_s, measure_s):
    """Known length: the whole cost stays within 1% of the training time (the run pays its fixed part), the
    measurements are log-spaced (each gap at least the one before), and the first comes far earlier than under the
    pay-as-you-go rule on the same run."""
    front, spent, trained = simulate(2000, 2000, step_s, measure_s)
    old, old_spent, _ = simulate(None, 2000, step_s, measure_s)
    assert spent <= 0.01 * trained + 1e-9
    assert old_spent <= 0.01 * trained + 1e-9
    gaps = [b - a for a, b in zip([0, *front], front)]
    assert all(b >= a - 1 for a, b in zip(gaps, gaps[1:])), front  # rounding to whole steps: within one step
    if old:
        assert front and front[0] < old[0] / 10, (front, old)
    # it spends what 90% of the budget allows: one more measurement would not fit
    assert spent + measure_s > 0.9 * 0.01 * trained - measure_s


def test_front_loaded_spacing_is_log_uniform_on_a_known_case():
    """Budget 1/8 of 13 one-second steps, planned at 90% (1.4625 s), measurements of 0.25 s and no setup: 3
    affordable after the start and the final one, due when log(1 + step) has covered 1/(n + 1) of the way to
    log(14): steps 1, 3, 7."""
    measured, spent, trained = simulate(13, 13, 1.0, 0.25, setup_s=0.0, budget=0.125)
    assert measured == [1, 3, 7] and spent == pytest.approx(1.25) and trained == 13.0
    assert math.log1p(1) >= math.log1p(13) / 4 > math.log1p(0)


def test_too_short_a_run_measures_only_at_its_ends_and_an_unknown_length_pays_as_it_goes():
    assert simulate(2000, 2000, 0.001, 1.0)[0] == []  # 2 s of training cannot pay for one more measurement
    cadence = Cadence(lambda: 0.0, None, 0.01)
    cadence.new_run(5, 5)  # a resumed run already at its end: no length left, the old rule
    assert cadence.total_steps is None
    assert str(Cadence(lambda: 0.0, 4, 0.01)) == "every 4 steps"
    c = Cadence(lambda: 0.0, None, 0.01)
    c.new_run(0, 100)
    assert str(c) == "adaptively (front-loaded over 100 steps, measuring <= 1% of training time)"


def test_slow_first_steps_do_not_buy_measurements_on_credit():
    """Warm-up: the first 3 steps take 10 times as long. Projecting the run from the mean time per step so far
    would count on many times the training there is, and spend it early; the remainder is projected at the lower
    of the mean and the last step's time, and the whole cost stays within 1%. (A warm-up of many slow steps still
    buys a few measurements on credit: with 10 such steps this case spends 1.3%; docs/callback.md says so.)"""
    measured, spent, trained = simulate(2000, 2000, lambda step: 1.25 if step <= 3 else 0.125, 0.25)
    assert spent <= 0.01 * trained and measured[:3] == [1, 2, 3], (measured, spent, trained)
