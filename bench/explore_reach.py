"""Exploratory, not judged: would a tighter noise bound than the reach read high-reach answers on time?

    python bench/explore_reach.py     # writes docs/experiments/explore_reach.md

v3 calls an answer a takeover when it holds 0.4 and 0.1 more than its *reach* (the most any one reference prompt
gives it): what any reweighting of the prompts could give it. Answers a prompt already gave half of (red 0.55,
Sunday 0.51 at the RL arms' start) must then pass 0.6-0.65, and were read late in every arm. Training does not
reweight the prompts without limit: if each prompt's share of the answering (its coverage) changes by at most a
factor ``c`` relative to the others, the most the consensus can give an answer is the *bound*

    max over w_i in [cov_i / c, cov_i * c] of  sum_i w_i p_i(o) / sum_i w_i

(attained with the prompts above the bound at their highest weight and the rest at their lowest). This script
re-reads every committed SFT (fitting and held-out) and RL arm with the takeover test "top answer >= 0.4 and >=
bound_c + 0.1, at two measurements in a row" for a few ``c`` and prints, per ``c``: crossing targets read no later
than one measurement after the crossing, and null task-runs with such a reading. It chooses nothing: every arm
here has been looked at, so a ``c`` picked from this table must be judged on new arms.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import ARMS, HELDOUT  # noqa: E402
from heldout_table import CROSS, FIT_NULLS, HELD_NULLS, reference_prompts  # noqa: E402
from heldout_table import arm_records as sft_records  # noqa: E402
from rl_calibration import ARMS as RL_ARMS  # noqa: E402
from rl_table import NULLS as RL_NULLS  # noqa: E402
from rl_table import judged_arm  # noqa: E402
from rl_table import load as rl_records  # noqa: E402

from crystalwatch import metrics  # noqa: E402
from crystalwatch.files import write_atomic  # noqa: E402
from crystalwatch.phases import PhaseConfig  # noqa: E402

FACTORS = (3.0, 10.0, 30.0, float("inf"))  # inf: the reach (v3)
GAINS = (0.2, 0.25, 0.3)  # the other candidate: the top answer's gain over the reference consensus
OUT = Path(__file__).resolve().parent.parent / "docs" / "experiments" / "explore_reach.md"


def bound(p: np.ndarray, cov: np.ndarray, c: float) -> float:
    """The most a consensus can give an answer whose prompts give it ``p`` when each prompt's coverage may change by
    a factor up to ``c`` (``inf``: the largest ``p``)."""
    if not np.isfinite(c):
        return float(p.max())
    order = np.argsort(-p)
    best = 0.0
    for k in range(len(p) + 1):  # the first k prompts (largest p) at cov * c, the rest at cov / c
        w = cov[order] / c
        w[:k] = cov[order][:k] * c
        best = max(best, float((w * p[order]).sum() / w.sum()))
    return best


def first_takeover(rs, library, test: tuple[str, float], answer: str | None, config: PhaseConfig) -> int | None:
    """The step of the second of two measurements in a row whose top answer (``answer`` if given) passes the test:
    ("bound", c) above the reweighting bound by ``reach_margin``, or ("gain", g) above the reference consensus by g."""
    p, cov = reference_prompts(rs[0], library)
    kind, x = test
    if kind == "bound":
        bounds = {o: bound(p[:, i], cov, x) + config.reach_margin for i, o in enumerate(rs[0].outcomes)}
    else:
        mean = metrics.consensus(p, cov)
        bounds = {o: float(mean[i]) + x for i, o in enumerate(rs[0].outcomes)}
    held = 0
    for r in rs:
        top, prob = r.top
        ok = (answer is None or top == answer) and prob >= config.takeover_level and \
            prob >= bounds[top]  # fmt: skip
        held = held + 1 if ok else 0
        if held >= config.hold:
            return r.step
    return None


def arms():
    """(name, arm in the judged shape, records by task and library, null?) for every arm that has run."""
    config = PhaseConfig()
    for name, arm in {**ARMS, **HELDOUT}.items():
        got = sft_records(name, config)
        if got:
            yield name, arm, got, name in FIT_NULLS + HELD_NULLS
    for name, arm in RL_ARMS.items():
        got = rl_records(name, config) if name != "sft_start" else None
        if got:
            yield name, judged_arm(arm), got, name in RL_NULLS


def main() -> str:
    config = PhaseConfig()
    rows = []
    seen = list(arms())
    tests = [("bound", c) for c in FACTORS] + [("gain", g) for g in GAINS]
    for test in tests:
        on_time = crossing = false = null_runs = 0
        late = []
        for name, arm, (by, library), null in seen:
            for task, rs in by.items():
                answer = arm["targets"].get(task)
                if answer and answer != "uniform":
                    probs = [r.consensus[r.outcomes.index(answer)] for r in rs]
                    cross = next((r.step for r, q in zip(rs, probs) if q >= CROSS), None)
                    if cross is None:
                        continue
                    crossing += 1
                    read = first_takeover(rs, library, test, answer, config)
                    gap = rs[1].step - rs[0].step
                    if read is not None and read <= cross + gap:
                        on_time += 1
                    else:
                        late.append(f"{name} {answer}")
                elif null:
                    null_runs += 1
                    false += first_takeover(rs, library, test, None, config) is not None
        kind, x = test
        name = f"gain over the reference consensus ≥ {x:g}" if kind == "gain" else \
            "the reach + 0.1 (v3)" if not np.isfinite(x) else f"reweighting bound, coverage factor {x:g}, + 0.1"
        rows.append(f"| {name} | {on_time} of {crossing} | "
                    f"{false} of {null_runs} | {', '.join(late) or '-'} |")  # fmt: skip
    text = "\n".join([
        "# Exploratory: a reweighting bound instead of the reach (written by `python bench/explore_reach.py`)", "",
        "Not a judged result: every arm below has been looked at (see the script's docstring). The takeover test "
        "only (top answer ≥ 0.4 and ≥ bound + 0.1 at two measurements in a row), not the whole state machine; "
        "on time = no later than one measurement after the answer crosses 0.5. All SFT arms (fitting and "
        "held-out) and the RL arms that have run.", "",
        "| takeover test (with top answer ≥ 0.4) | crossing targets on time | null task-runs with a takeover | "
        "late or missed |",
        "|---|---|---|---|", *rows, ""])  # fmt: skip
    write_atomic(OUT, text)
    print(text)
    return text


if __name__ == "__main__":
    main()
