"""Known answers on the committed gemma-3-270m library: every state read right on all 15 tasks.

A known answer is a run that starts at the base (its own chat variants and coverage, step 0) and then moves to a
synthetic state known in advance (every variant given the same distribution, coverage 0.2, measured ``n`` times
through the public API): melted (uniform), a takeover of each base seed's top answer, of the answer no seed
favours, sharp prompts that split, and a run that starts somewhere else than the base.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic import measurement, peaked, task_result

from crystalwatch.phases import CRYSTAL, PhaseConfig, PhaseTracker, favoured
from crystalwatch.seeds import SeedLibrary
from crystalwatch.trajectory import observe

LIBRARY = SeedLibrary.load(Path(__file__).parent.parent / "docs" / "real" / "gemma-3-270m.seeds.json.gz")
TASKS = sorted(LIBRARY.tasks)


def chat_variants(task: str) -> list:
    return [v for v in LIBRARY.tasks[task].variants if v.kind == "chat"]


def base_result(task: str, coverage: float | None = None):
    """The base's own chat variants: where a run of the base starts."""
    vs = chat_variants(task)
    cov = np.array([v.coverage for v in vs]) if coverage is None else coverage
    return task_result(task, np.stack([v.probs for v in vs]), cov)


def records(task: str, matrices: list, coverage: float | np.ndarray = 0.2, start=None, every: int = 10) -> list:
    """The records of a run that starts at ``start`` (default: the base) and is then measured on ``matrices``,
    ``every`` steps apart."""
    tracker = PhaseTracker(PhaseConfig())
    results = [start or base_result(task)] + [task_result(task, p, coverage) for p in matrices]
    return [observe(measurement(r), LIBRARY, tracker, step=every * i, index=i)[0] for i, r in enumerate(results)]


def final(task: str, matrix: np.ndarray, n: int = 4, coverage: float | np.ndarray = 0.2):
    """The last record of a run from the base measured ``n`` times on ``matrix``."""
    return records(task, [matrix] * n, coverage)[-1]


def reach(task: str) -> np.ndarray:
    """The most any base chat prompt gives each answer."""
    return np.stack([v.probs for v in chat_variants(task)]).max(axis=0)


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
    r = final(task, base_result(task).matrix, coverage=base_result(task).coverage)
    assert r.state == "liquid" and r.reference == "base", (r.state, r.metrics["collapse"])
    assert abs(r.metrics["collapse"]) < 1e-9  # the base on its own prompts: nothing gone, nothing added
    assert r.metrics["top_gain"] == pytest.approx(0, abs=1e-9) and r.metrics["top_excess"] <= 0


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


def run_states(task: str, matrices: list, every: int = 10) -> list[str]:
    return [r.state for r in records(task, matrices, every=every)]


@pytest.mark.parametrize("task", TASKS)
def test_too_little_coverage_reads_no_signal(task):
    assert final(task, base_result(task).matrix, coverage=1e-5).state == "no_signal"


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
    masses = [0.9, 0.9, 0.93, 0.96, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99, 0.99]  # 0.09 of mass in 15 steps
    states = run_states(task, [np.array([peaked(k, top, m)] * 7) for m in masses], every=5)[1:]
    first = next(i for i, s in enumerate(states) if s in CRYSTAL)  # 0.9 is not yet a crystal on a binary task
    assert states[first] == "nucleated" and all(s in CRYSTAL for s in states[first:]), states
    assert "settling" in states and states[-1] == "settled", states


def least_reached_seed_answer(task: str) -> int:
    """The answer some seed favours whose reach (the most any base prompt gives it) is lowest."""
    t = LIBRARY.tasks[task]
    k = len(t.outcomes)
    seeded = [o for o in range(k) if favoured(t.centroids[:, o].max(), k, PhaseConfig())]
    return min(seeded, key=lambda o: reach(task)[o])


@pytest.mark.parametrize("task", TASKS)
def test_a_seed_answer_beyond_its_reach_but_not_sharp_reads_nucleating_onto_its_seed(task):
    """Every task has a range where a seed's answer has taken over (0.4 of the consensus, 0.1 beyond the most any
    base prompt gave it) without the consensus being sharp: nucleating, onto the seed that favours it most."""
    t = LIBRARY.tasks[task]
    k = len(t.outcomes)
    o = least_reached_seed_answer(task)
    mass = max(PhaseConfig().takeover_level, reach(task)[o] + PhaseConfig().reach_margin) + 0.02
    r = final(task, np.array([peaked(k, o, mass)] * 7))
    assert r.metrics["consensus_entropy"] > PhaseConfig().sharp_consensus
    assert r.state == "nucleating", (t.outcomes[o], mass, r.state, r.metrics["top_excess"])
    assert r.seed == t.seeds[int(np.argmax(t.centroids[:, o]))].id
    just_below = final(task, np.array([peaked(k, o, reach(task)[o] + PhaseConfig().reach_margin - 0.03)] * 7))
    assert just_below.state not in ("nucleating", "foreign"), just_below.state  # within the noise: not read


@pytest.mark.parametrize("task", [t for t in TASKS if len(LIBRARY.tasks[t].outcomes) > 2])
def test_a_foreign_answer_taking_over_reads_foreign_before_it_is_sharp(task):
    t = LIBRARY.tasks[task]
    k = len(t.outcomes)
    least = int(np.argmin(t.centroids.max(axis=0)))
    r = final(task, np.array([peaked(k, least, 0.5)] * 7))
    assert r.metrics["consensus_entropy"] > PhaseConfig().sharp_consensus or k == 3
    assert r.state == "foreign" and r.top[0] == t.outcomes[least], (r.state, r.metrics["top_excess"])


@pytest.mark.parametrize("task", ["coin_flip", "yes_no"])
def test_a_binary_task_flattening_onto_its_other_answer_is_not_melted(task):
    """The base's minority answer gains a majority but stays within its reach: the answer is gaining, so no melt
    (and no takeover: a base prompt already gave it that much)."""
    t = LIBRARY.tasks[task]
    minority = int(np.argmin(t.base_consensus("chat")))
    mass = max(0.52, min(reach(task)[minority], 0.6))  # a majority, less than the reach plus the margin
    assert mass < reach(task)[minority] + PhaseConfig().reach_margin
    rs = records(task, [np.array([peaked(2, minority, mass)] * 7)] * 4)
    assert rs[-1].metrics["collapse"] <= -PhaseConfig().melt  # flatter than the base...
    assert [r.state for r in rs] == ["liquid"] * 5  # ...but an answer holding half the consensus is gaining


def test_a_melt_ends_at_once_when_a_majority_answer_gains():
    """1-10 melts (every prompt flat), then "10" takes half the consensus: no melted reading from that measurement
    on, without waiting for hysteresis."""
    k = 10
    flat = np.full((7, k), 1 / k)
    rising = np.array([peaked(k, 9, 0.5)] * 7)
    rs = records("integer_1_10", [flat, flat, rising, rising])
    assert [r.state for r in rs] == ["liquid", "liquid", "melted", "nucleating", "nucleating"]
    assert rs[3].events[0].from_state == "melted" and rs[3].events[0].since == 30


def test_a_run_that_starts_away_from_the_base_measures_change_from_its_start():
    """The base measured through another chat template put 0.93 on "1" of 1-10 before any training: the run's start
    reads liquid (not a crystal) and says so; a melt and a takeover are then read against that start."""
    k = 10
    start = task_result("integer_1_10", np.array([peaked(k, 0, 0.93)] * 7))
    rs = records("integer_1_10", [np.array([peaked(k, 0, 0.93)] * 7)] * 2, start=start)
    assert [(r.state, r.reference) for r in rs] == [("liquid", "start")] * 3
    from_base = final("integer_1_10", np.array([peaked(k, 0, 0.93)] * 7))
    assert from_base.reference == "base" and from_base.state in CRYSTAL  # the same model measured from the base
    melting = records("integer_1_10", [np.array([peaked(k, 0, 0.5)] * 7)] * 2, start=start)
    assert melting[-1].state == "melted" and melting[-1].metrics["collapse"] < -0.1  # flatter than its start
    seed_10 = records("integer_1_10", [np.array([peaked(k, 9, 0.95)] * 7)] * 2, start=start)
    assert seed_10[-1].state == "nucleated" and LIBRARY.seed("integer_1_10", seed_10[-1].seed).centroid.argmax() == 9


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


def test_the_start_tolerance_keeps_bf16_at_the_base_and_another_template_away():
    """docs/phase-model.md: a base consensus moved by a TV distance of 0.015 (what bf16 does to a prompt) stays
    within 0.0055 bits; 1-10 with 0.93 on "1" (the base through another chat template) is 0.12 bits away."""
    from crystalwatch import metrics

    tolerance, worst = PhaseConfig().start_tolerance, 0.0
    for task in TASKS:
        base, rng = LIBRARY.tasks[task].base_consensus("chat"), np.random.default_rng(0)
        for _ in range(200):
            d = rng.normal(size=len(base))
            d -= d.mean()
            moved = np.clip(base + d * 0.03 / np.abs(d).sum(), 1e-9, None)
            worst = max(worst, metrics.jsd(base, moved / moved.sum()))
    assert worst == pytest.approx(0.0055, abs=5e-5) and worst < tolerance
    other = metrics.jsd(peaked(10, 0, 0.93), LIBRARY.tasks["integer_1_10"].base_consensus("chat"))
    assert other == pytest.approx(0.12, abs=0.005) and other > 10 * tolerance


def crystal_seed(task: str, answer: int):
    """The seed a crystal on ``answer`` is named onto (the one giving it the most mass) and the answers it favours."""
    t = LIBRARY.tasks[task]
    seed = t.seeds[int(np.argmax(t.centroids[:, answer]))]
    k = len(t.outcomes)
    return seed, [o for o in range(k) if favoured(float(seed.centroid[o]), k, PhaseConfig())]


def mixed(k: int, a: int, b: int, share_b: float, mass: float = 0.95) -> np.ndarray:
    """Every prompt gives ``mass`` to answers a and b, a share ``share_b`` of it to b; the rest spread evenly."""
    p = np.full(k, (1 - mass) / (k - 2))
    p[a], p[b] = mass * (1 - share_b), mass * share_b
    return np.array([p] * 7)


def two_answer_crystals() -> list[tuple[str, int, int]]:
    """(task, top answer, another answer its crystal's seed favours) for every task whose seed's top has one."""
    out = []
    for task in TASKS:
        t = LIBRARY.tasks[task]
        for s in t.seeds:
            a = int(np.argmax(s.centroid))
            seed, inside = crystal_seed(task, a)
            others = [o for o in inside if o != a]
            if others and len(t.outcomes) > 2 and (task, a) not in [x[:2] for x in out]:
                out.append((task, a, others[0]))
    return out


@pytest.mark.parametrize(("task", "a", "b"), two_answer_crystals())
def test_a_crystal_moving_inside_its_seed_holds_and_reads_settling(task, a, b):
    """v3.1: mass moving from the crystal's answer to another its seed favours is settling on the same seed —
    never a new nucleation onto the seed that favours b most, never a remelt on the way (0.5/0.5 included)."""
    k = len(LIBRARY.tasks[task].outcomes)
    seed, _ = crystal_seed(task, a)
    path = [mixed(k, a, b, s) for s in (0, 0, 0, 0.2, 0.4, 0.5, 0.6, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9)]
    rs = records(task, path, every=5)[1:]
    assert rs[1].state in CRYSTAL and rs[1].seed == seed.id, (rs[1].state, rs[1].seed)
    after = rs[1:]
    assert all(r.state in CRYSTAL and r.seed == seed.id for r in after), [(r.step, r.state, r.seed) for r in after]
    assert "settling" in [r.state for r in after] and after[-1].state in ("settling", "settled")


def test_some_tasks_have_a_seed_with_two_favoured_answers():
    assert {t for t, _, _ in two_answer_crystals()} >= {"prime_below_50", "die_d20", "letter", "us_state"}


@pytest.mark.parametrize("task", [t for t in TASKS if len(LIBRARY.tasks[t].outcomes) > 2])
def test_a_crystal_leaving_for_an_answer_no_seed_favours_leaves_in_time(task):
    """v3.1: a crystal whose mass goes to the answer no seed favours leaves its seed no later than one measurement
    after that answer crosses 0.5, and ends `foreign`; no `melted` while it holds the majority and gains."""
    t = LIBRARY.tasks[task]
    k = len(t.outcomes)
    a = int(np.argmax(t.seeds[0].centroid))
    f = int(np.argmin(t.centroids.max(axis=0)))
    shares = (0, 0, 0, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 0.9)
    rs = records(task, [mixed(k, a, f, s) for s in shares], every=5)[1:]
    crossed = next(i for i, s in enumerate(shares) if 0.95 * s >= 0.5)
    seed = rs[2].seed
    assert rs[2].state in CRYSTAL
    left = [i for i, r in enumerate(rs) if not (r.state in CRYSTAL and r.seed == seed)]
    assert left and left[0] <= crossed + 1, [(r.step, r.state) for r in rs]
    assert rs[-1].state == "foreign"
    assert not any(r.state == "melted" and 0.95 * s >= 0.5 for r, s in zip(rs, shares))


def test_a_run_from_a_post_trained_crystal_reads_it_with_the_base_as_reference():
    """phases={"reference": "base"}: a start already collapsed onto prime "2" (an SFT checkpoint) reads `nucleated`
    at step 0 and holds; with "auto" the same start becomes the reference and reads liquid."""
    k = 15
    start = task_result("prime_below_50", np.array([peaked(k, 0, 0.9)] * 7))
    same = [np.array([peaked(k, 0, 0.9)] * 7)] * 3
    auto = records("prime_below_50", same, start=start)
    assert [(r.state, r.reference) for r in auto] == [("liquid", "start")] * 4
    tracker = PhaseTracker(PhaseConfig(reference="base"))
    rs = [observe(measurement(task_result("prime_below_50", p)), LIBRARY, tracker, step=10 * i, index=i)[0]
          for i, p in enumerate([start.matrix, *same])]  # fmt: skip
    assert [(r.state, r.reference) for r in rs] == [("nucleated", "base")] * 4 and rs[0].seed == "s0"


@pytest.mark.parametrize("task", TASKS)
def test_a_crystal_that_melts_with_its_answer_still_on_top_remelts(task):
    """v3.1: the crystal holds only while the mass outside its seed's answers stays within 0.1 of its least; a
    crystal spreading out with its answer still on top is leaving, read as a remelt (liquid or melted)."""
    t = LIBRARY.tasks[task]
    k = len(t.outcomes)
    a = int(np.argmax(t.seeds[0].centroid))
    m = 0.55 if k == 2 else max(2 / k, min(0.45, reach(task)[a] - 0.05))  # within its reach: no takeover
    spread = np.full(k, (1 - m) / (k - 1))
    spread[a] = m
    rs = records(task, [np.array([peaked(k, a, 0.95)] * 7)] * 3 + [np.array([spread] * 7)] * 3, every=5)[1:]
    assert rs[2].state in CRYSTAL
    assert rs[-1].state in ("liquid", "melted"), [(r.step, r.state) for r in rs]
    assert any(e.remelt for r in rs for e in r.events)


def test_a_continued_run_replays_its_crystal_and_its_answers(tmp_path):
    """The trajectory alone restores the tracker (what a resumed run or a new chain stage starts from): a crystal's
    inside answers, the least mass outside them and the velocity window come back from the records."""
    from crystalwatch.sinks.jsonl import JsonlSink

    k = 15
    tracker = PhaseTracker(PhaseConfig(reference="base"))
    sink = JsonlSink(tmp_path / "t.jsonl")
    path = [mixed(k, 0, 2, s) for s in (0, 0, 0.3, 0.6, 0.9)] + [mixed(k, 0, 3, 0.6)]  # "2" -> "5", then "7"
    for i, p in enumerate(path):
        sink.writer.write(observe(measurement(task_result("prime_below_50", p)), LIBRARY, tracker, step=5 * i,
                                  index=i, run="r"))  # fmt: skip
    replayed = PhaseTracker(PhaseConfig(reference="base"))
    sink.replay("r", replayed)
    live, back = (t.state_dict()["tasks"]["prime_below_50"] for t in (tracker, replayed))
    rounded = ("history", "outside")  # records keep 6 significant digits
    assert {k: v for k, v in back.items() if k not in rounded} == {k: v for k, v in live.items() if k not in rounded}
    assert back["outside"] == pytest.approx(live["outside"], abs=1e-5)
    assert [s for s, _ in back["history"]] == [s for s, _ in live["history"]]
    assert np.allclose([c for _, c in back["history"]], [c for _, c in live["history"]], atol=1e-5)
    assert live["inside"] == [0, 1, 2] and live["state"] == "settling"  # s0 favours 2, 3 and 5
