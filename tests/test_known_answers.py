"""Known answers on the committed gemma-3-270m library: every state read right on all 15 tasks.

Synthetic measurements of the chat prompts (every variant given the same distribution, coverage 0.2, four
measurements through the public API) with a state known in advance: melted (uniform), a sharp collapse (0.95) onto
each base seed's top answer, onto the answer no seed favours, and the base's own chat variants.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic import measurement, peaked, task_result

from crystalwatch.phases import CRYSTAL, PhaseConfig, PhaseTracker
from crystalwatch.seeds import SeedLibrary
from crystalwatch.trajectory import observe

LIBRARY = SeedLibrary.load(Path(__file__).parent.parent / "docs" / "real" / "gemma-3-270m.seeds.json.gz")
TASKS = sorted(LIBRARY.tasks)


def final(task: str, matrix: np.ndarray, n: int = 4, coverage: float | np.ndarray = 0.2):
    """The last record after ``n`` identical measurements of ``matrix`` on ``task``."""
    tracker = PhaseTracker(PhaseConfig())
    for i in range(n):
        (record,) = observe(measurement(task_result(task, matrix, coverage)), LIBRARY, tracker, step=10 * i, index=i)
    return record


def chat_variants(task: str) -> list:
    return [v for v in LIBRARY.tasks[task].variants if v.kind == "chat"]


def test_the_library_has_all_15_tasks():
    assert len(TASKS) == 15


@pytest.mark.parametrize("task", TASKS)
def test_melted_model_reads_melted(task):
    k = len(LIBRARY.tasks[task].outcomes)
    r = final(task, np.full((7, k), 1 / k))
    assert r.state == "melted", (r.state, r.metrics["collapse"])
    assert r.metrics["collapse"] < -0.1  # signed: flatter than the base shows, not clipped at 0


@pytest.mark.parametrize("task", TASKS)
def test_base_own_variants_read_liquid(task):
    vs = chat_variants(task)
    r = final(task, np.stack([v.probs for v in vs]), coverage=np.array([v.coverage for v in vs]))
    assert r.state == "liquid", (r.state, r.metrics["collapse"])
    assert abs(r.metrics["collapse"]) < 1e-9  # the base on its own prompts: nothing gone, nothing added


@pytest.mark.parametrize("task", TASKS)
def test_sharp_collapse_onto_each_seed_top_answer_reads_crystal_on_that_seed(task):
    t = LIBRARY.tasks[task]
    k = len(t.outcomes)
    for seed in t.seeds:
        top = int(np.argmax(seed.centroid))
        r = final(task, np.array([peaked(k, top, 0.95)] * 7))
        assert r.state in CRYSTAL, (seed.id, t.outcomes[top], r.state, r.metrics["collapse"])
        named = LIBRARY.seed(task, r.seed)
        # The seed named is the one that gives the crystal's answer most mass: this seed, or one that gives it more.
        assert named.centroid[top] == t.centroids[:, top].max()
        assert r.metrics["seed_evidence"] > PhaseConfig().evidence_share * np.log2(k)


@pytest.mark.parametrize("task", TASKS)
def test_sharp_collapse_onto_the_answer_no_seed_favours(task):
    t = LIBRARY.tasks[task]
    k = len(t.outcomes)
    least = int(np.argmin(t.centroids.max(axis=0)))
    r = final(task, np.array([peaked(k, least, 0.95)] * 7))
    if k >= 3:
        assert r.state == "foreign", (t.outcomes[least], r.state, r.metrics["seed_evidence"])
        assert r.metrics["seed_evidence"] <= 0  # no seed gives it even the uniform share
    else:  # both answers of a 2-outcome task are some seed's favourite here: foreign cannot be read
        assert r.state in CRYSTAL


def test_seed_pvalue_of_a_one_answer_crystal_is_the_share_of_answers_as_favoured():
    t = LIBRARY.tasks["integer_1_100"]
    top = int(np.argmax(t.centroids.max(axis=0)))  # the answer some seed gives the most mass
    r = final("integer_1_100", np.array([peaked(100, top, 0.999)] * 7), n=1)
    assert r.metrics["seed_pvalue"] <= 0.05  # one answer of 100, the most favoured: p near its floor 1/100
    assert r.metrics["seed_chance"] == pytest.approx((t.centroids.max(axis=0) > 100 ** -0.75).mean())


def test_seed_chance_on_the_library():
    """The documented false-"seed" rate of a one-answer crystal per task (docs/phase-model.md)."""
    chance = {}
    for task in TASKS:
        vs = chat_variants(task)
        chance[task] = final(task, np.stack([v.probs for v in vs]), n=1,
                             coverage=np.array([v.coverage for v in vs])).metrics["seed_chance"]  # fmt: skip
    assert chance["coin_flip"] == chance["yes_no"] == 1.0 and chance["integer_1_100"] == pytest.approx(0.07)
    assert chance["integer_1_10"] == pytest.approx(0.2) and sum(chance.values()) == pytest.approx(5.68, abs=0.01)


def run_states(task: str, matrices: list, steps: list[int], coverage: float = 0.2) -> list[str]:
    tracker = PhaseTracker(PhaseConfig())
    states = []
    for i, (p, step) in enumerate(zip(matrices, steps)):
        (record,) = observe(measurement(task_result(task, p, coverage)), LIBRARY, tracker, step=step, index=i)
        states.append(record.state)
    return states


def base_entropy(task: str) -> float:
    from crystalwatch import metrics

    return float(metrics.normalized_entropy(LIBRARY.tasks[task].base_consensus("chat")))


@pytest.mark.parametrize("task", TASKS)
def test_too_little_coverage_reads_no_signal(task):
    vs = chat_variants(task)
    assert final(task, np.stack([v.probs for v in vs]), coverage=1e-5).state == "no_signal"


@pytest.mark.parametrize("task", TASKS)
def test_sharp_prompts_that_disagree_read_polycrystalline(task):
    k = len(LIBRARY.tasks[task].outcomes)
    split = np.array([peaked(k, 0, 0.97)] * 4 + [peaked(k, 1, 0.97)] * 4)
    assert final(task, split).state == "polycrystalline"


@pytest.mark.parametrize("task", TASKS)
def test_a_crystal_that_keeps_sharpening_is_settling_then_settled(task):
    t = LIBRARY.tasks[task]
    k = len(t.outcomes)
    top = int(np.argmax(t.seeds[0].centroid))
    masses = [0.93, 0.93, 0.96, 0.99, 0.99, 0.99, 0.99]
    states = run_states(task, [np.array([peaked(k, top, m)] * 7) for m in masses], list(range(len(masses))))
    assert states[:2] == ["nucleated"] * 2 and "settling" in states and states[-1] == "settled", states


@pytest.mark.parametrize("task", [t for t in TASKS if base_entropy(t) > 0.45 / 0.8 + 0.02])
def test_half_way_to_a_crystal_reads_nucleating(task):
    """Sharper than the base by a third of its consensus entropy, not yet sharp: nucleating. (Tasks whose base
    consensus entropy is below sharp_consensus / (1 - collapse_low) = 0.56 have no such range: 1-10, 1-100,
    rock-paper-scissors and yes/no go from liquid to a crystal directly; docs/phase-model.md.)"""
    from crystalwatch import metrics

    t = LIBRARY.tasks[task]
    k = len(t.outcomes)
    top = int(np.argmax(t.base_consensus("chat")))
    goal = max(0.67 * base_entropy(task), 0.5)
    masses = np.linspace(1 / k, 0.999, 2000)
    m = masses[np.argmin([abs(metrics.normalized_entropy(peaked(k, top, x)) - goal) for x in masses])]
    r = final(task, np.array([peaked(k, top, m)] * 7))
    assert r.state == "nucleating", (r.metrics["collapse"], r.metrics["consensus_entropy"])


def test_four_tasks_have_no_nucleating_range():
    assert sorted(t for t in TASKS if base_entropy(t) <= 0.45 / 0.8) == [
        "integer_1_10", "integer_1_100", "rock_paper_scissors", "yes_no"]  # fmt: skip


def test_one_metric_table_for_records_trackers_report_and_docs():
    """METRIC_TABLE names exactly the metrics a real record carries; the sinks' and the report's tables are its
    table columns; docs/phase-model.md shows the same table, row for row."""
    import re

    from crystalwatch.metrics import METRIC_TABLE, table_metrics
    from crystalwatch.report.data import TABLE_METRICS as REPORT
    from crystalwatch.sinks.scalars import TABLE_COLUMNS

    record = final("integer_1_10", np.full((len(chat_variants("integer_1_10")), 10), 0.1))
    assert sorted(record.metrics) == sorted(m.name for m in METRIC_TABLE)
    assert TABLE_COLUMNS[6:] == REPORT == table_metrics() and len(table_metrics()) == 8
    doc = (Path(__file__).parent.parent / "docs" / "phase-model.md").read_text()
    block = doc.split("<!-- metric table: generated from METRIC_TABLE -->\n")[1].split("\n<!--")[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()[2:]]
    assert rows == [[f"`{m.name}`", m.unit, m.meaning, "yes" if m.table else ""] for m in METRIC_TABLE]
    explained = doc.split("## The metric table")[0]
    assert [m.name for m in METRIC_TABLE if not re.search(rf"`{m.name}`", explained)] == []  # each one explained
