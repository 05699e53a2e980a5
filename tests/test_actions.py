"""Actions on what the monitor sees (crystalwatch/actions.py): transitions, alerts (cap, rate limit), save and stop,
the user's function; no model needed (records are built by hand)."""

from __future__ import annotations

import logging

import pytest

from crystalwatch import CrystalWatchConfig
from crystalwatch.actions import MAX_ALERTS, Actions, Reading
from crystalwatch.errors import CrystalwatchError
from crystalwatch.guard import Guard
from crystalwatch.phases import Event
from crystalwatch.records import Record


def record(task: str, step: int, state: str, *events: tuple[str, str, str]) -> Record:
    """A record of ``task`` at ``step`` carrying events (from, to, kind)."""
    return Record(run="r", index=0, step=step, label="", model="m", time="", task=task, kind="chat",
                  estimator="exact", terminators="boundary", library=None, outcomes=["a", "b"], consensus=[0.9, 0.1],
                  seed="s1", seed_centroid=[0.9, 0.1], metrics={"seed_distance": 0.02}, candidate=None, state=state,
                  events=[Event(step, task, f, t, "s1", step, False, kind) for f, t, kind in events],
                  variants={})  # fmt: skip


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_save_on_stop_on_and_the_users_function_each_ask_with_their_reason():
    seen = []

    def user(t):
        seen.append((t.task, t.from_state, t.to_state, t.step, t.record.task))
        return "save" if t.task == "b" else None

    actions = Actions(save_on=("nucleated",), stop_on=("foreign",), on_transition=user)
    reading = actions.decide([record("a", 10, "nucleated", ("liquid", "nucleated", "transition")),
                              record("b", 10, "liquid", ("liquid", "liquid", "warning")),
                              record("c", 10, "liquid")])  # fmt: skip
    assert isinstance(reading, list) and [r.task for r in reading] == ["a", "b", "c"]  # the records themselves
    assert seen == [("a", "liquid", "nucleated", 10, "a"), ("b", "liquid", "liquid", 10, "b")]  # once per transition
    assert reading.save and not reading.stop
    assert reading.reasons == ["step 10: a liquid -> nucleated (save: save_on)",
                               "step 10: b early warning (liquid) (save: on_transition)"]  # fmt: skip
    foreign = actions.decide([record("a", 20, "foreign", ("nucleated", "foreign", "transition"))])
    assert foreign.stop and not foreign.save
    assert foreign.why("stop") == "step 20: a nucleated -> foreign (stop: stop_on)"
    assert foreign.alerts[0].title == "crystalwatch: training stopped" and foreign.alerts[0].level == "ERROR"
    assert foreign.alerts[0].text == foreign.why("stop")
    assert Reading().transitions == [] and not Reading().save


def test_alerts_are_capped_and_rate_limited_per_task_and_state(caplog):
    """At most MAX_ALERTS per measurement (the last one says how many were left out, and those are not marked as
    alerted); a (task, state) is alerted again only after alert_min_interval_s; each alert is also a log line."""
    tasks = [f"t{i}" for i in range(MAX_ALERTS + 2)]
    clock = Clock()
    actions = Actions(alert_min_interval_s=300, clock=clock)

    def measure(step):
        return [record(t, step, "foreign", ("liquid", "foreign", "transition")) for t in tasks]

    with caplog.at_level(logging.WARNING, logger="crystalwatch"):
        first = actions.decide(measure(0)).alerts
    assert [a.key[0] for a in first] == tasks[:MAX_ALERTS]
    assert first[-1].text.endswith("(+2 more transition(s) not alerted; see the trajectory)")
    assert first[0].level == "WARN" and first[0].title == "crystalwatch: t0 foreign"
    assert first[0].text == ("task t0: liquid -> foreign at step 0 (seed s1, seed distance 0.02); first seen at "
                             "step 0")  # fmt: skip
    assert sum("crystalwatch alert: task" in m for m in caplog.messages) == MAX_ALERTS
    clock.now = 100
    assert [a.key[0] for a in actions.decide(measure(10)).alerts] == tasks[MAX_ALERTS:]  # the 2 left out
    clock.now = 299
    assert actions.decide(measure(20)).alerts == []  # everything alerted within 300 s
    clock.now = 300
    assert [a.key[0] for a in actions.decide(measure(30)).alerts] == tasks[:MAX_ALERTS]
    assert Actions(alert_states=()).decide(measure(0)).alerts == []  # alerts=False


def test_a_bad_answer_or_an_error_in_the_users_function_is_reported_not_raised(caplog):
    guard = Guard()
    answers = iter(["stop please", RuntimeError("boom"), ("save", "stop")])

    def user(t):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    actions = Actions(on_transition=user, guard=guard)
    event = ("liquid", "nucleated", "transition")
    with caplog.at_level(logging.WARNING, logger="crystalwatch"):
        assert not actions.decide([record("a", 5, "nucleated", event)]).stop
        assert not actions.decide([record("a", 6, "nucleated", event)]).stop
        both = actions.decide([record("a", 7, "nucleated", event)])
    assert guard.errors == 2 and "RuntimeError: boom" in guard.last_error
    assert "on_transition returned 'stop please': return None, 'save', 'stop' or ('save', 'stop')" in caplog.text
    assert both.save and both.stop
    with pytest.raises(RuntimeError, match="boom"):
        Actions(on_transition=lambda t: (_ for _ in ()).throw(RuntimeError("boom")), guard=Guard(strict=True)).decide(
            [record("a", 5, "nucleated", event)])


def test_save_on_and_stop_on_are_checked_when_made():
    assert CrystalWatchConfig(save_on="nucleated", stop_on=["foreign", "warning"]).stop_on == ("foreign", "warning")
    with pytest.raises(CrystalwatchError, match=r"unknown stop_on 'foriegn' \(did you mean 'foreign'\?\)"):
        CrystalWatchConfig(stop_on=["foriegn"])
