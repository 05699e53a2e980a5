"""What the monitor does about what it sees: transitions, alerts, and requests to save a checkpoint or stop.

Every measurement's records go through :meth:`Actions.decide` on the main process, which returns a
:class:`Reading`: the records themselves (it is a list of them), the transitions they carry, the alerts to send
(one per (task, state) reached, rate-limited, at most :data:`MAX_ALERTS`), and whether to save a checkpoint or stop
training, with the reasons. Three settings ask for actions: ``save_on`` and ``stop_on`` (states a task enters, or
``warning`` for the early-warning signal) and ``on_transition``, a function called once per transition with a
:class:`Transition` that may answer ``"save"``, ``"stop"``, both (a tuple) or ``None``. With several processes the
main process decides and the Monitor broadcasts the decision, so that every rank saves or stops alike.

The trackers that have alerts get them (W&B ``run.alert``, ``trackio.alert``); every alert and action is also
one log line on the ``crystalwatch`` logger, for the trackers without alerts and for the run's log.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from crystalwatch.errors import CrystalwatchError
from crystalwatch.phases import Event
from crystalwatch.records import Record, number

ALERT_STATES = ("nucleating", "nucleated", "foreign")  # alerted by default: a takeover, onto a seed or not

logger = logging.getLogger("crystalwatch")

MAX_ALERTS = 5  # per measurement
ACTIONS = ("save", "stop")
STOP_KEY = ("", "stop")  # the stop's alert (never rate-limited)


@dataclass(frozen=True)
class Alert:
    """One alert: ``key`` = (task, state) is what the rate limit is keyed by; ``level`` INFO, WARN or ERROR."""

    key: tuple[str, str]
    title: str
    text: str
    level: str


@dataclass(frozen=True)
class Transition:
    """A task entered a state (or raised the early warning) at a measurement: the event and its record."""

    event: Event
    record: Record

    task = property(lambda self: self.event.task)
    from_state = property(lambda self: self.event.from_state)
    to_state = property(lambda self: self.event.to_state)
    step = property(lambda self: self.event.step)
    seed = property(lambda self: self.event.seed or self.record.seed)

    @property
    def name(self) -> str:
        """What ``save_on``, ``stop_on`` and ``alert_states`` match: the state entered, or ``warning``."""
        return "warning" if self.event.warning else self.event.to_state

    def __str__(self) -> str:
        if self.event.warning:
            return f"step {self.step}: {self.task} early warning ({self.to_state})"
        return f"step {self.step}: {self.task} {self.from_state} -> {self.to_state}"


class Reading(list):
    """One measurement's records (a list of :class:`~crystalwatch.records.Record`) and what it asks for:
    ``transitions``, ``alerts``, ``save``, ``stop`` and the ``reasons`` for them."""

    def __init__(self, records: Iterable[Record] = ()) -> None:
        super().__init__(records)
        self.transitions: list[Transition] = [Transition(e, r) for r in self for e in r.events]
        self.alerts: list[Alert] = []
        self.save = False
        self.stop = False
        self.reasons: list[str] = []

    def why(self, action: str) -> str:
        """The reasons for one action (``save`` or ``stop``), joined."""
        return "; ".join(r for r in self.reasons if f"({action}:" in r)


def alert_for(t: Transition) -> Alert:
    """The alert of one transition: a title under 64 characters (W&B's limit) and a line of detail."""
    distance = number((t.record.metrics or {}).get("seed_distance"))
    text = (f"task {t.task}: {t.from_state} -> {t.name} at step {t.step} (seed {t.seed or 'none'}, seed distance "
            f"{'n/a' if distance is None else f'{distance:.3g}'}); first seen at step {t.event.since}")  # fmt: skip
    title = f"crystalwatch: {t.task} {t.name}"
    if len(title) > 63:
        title = title[:60] + "..."
    return Alert((t.task, t.name), title, text, "WARN" if t.name == "foreign" else "INFO")


@dataclass
class Actions:
    """Decides, measurement by measurement, the alerts and the actions (see the module docstring)."""

    save_on: Sequence[str] = ()
    stop_on: Sequence[str] = ()
    on_transition: Callable[[Transition], Any] | None = None
    alert_states: Sequence[str] = ALERT_STATES  # empty: no alerts
    alert_min_interval_s: float = 300.0
    clock: Callable[[], float] = time.monotonic
    guard: Callable[[str], Any] | None = None  # the Monitor's error policy around on_transition
    _last_alert: dict[tuple[str, str], float] = field(default_factory=dict)

    def decide(self, records: Iterable[Record]) -> Reading:
        """The reading of one measurement: its transitions, the alerts due, and whether to save or stop."""
        reading = Reading(records)
        for t in reading.transitions:
            asked = {}  # action -> the setting that asked for it
            if t.name in self.save_on:
                asked["save"] = "save_on"
            if t.name in self.stop_on:
                asked["stop"] = "stop_on"
            for action in self._call(t) if self.on_transition is not None else ():
                asked.setdefault(action, "on_transition")
            for action, source in sorted(asked.items()):
                setattr(reading, action, True)
                reading.reasons.append(f"{t} ({action}: {source})")
        reading.alerts = self.alerts(reading)
        self._log(reading)
        return reading

    def alerts(self, reading: Reading) -> list[Alert]:
        """One alert per (task, state) reached, rate-limited per key, at most MAX_ALERTS (the last one says how
        many were left out); a stop comes first, as an ERROR, and is never rate-limited."""
        now = self.clock()
        wanted: dict[tuple[str, str], Alert] = {}
        for t in reading.transitions:
            if t.name not in self.alert_states or (t.task, t.name) in wanted:
                continue
            last = self._last_alert.get((t.task, t.name))
            if last is None or now - last >= self.alert_min_interval_s:
                wanted[(t.task, t.name)] = alert_for(t)
        alerts = list(wanted.values())
        if len(alerts) > MAX_ALERTS:
            last = alerts[MAX_ALERTS - 1]
            note = f" (+{len(alerts) - MAX_ALERTS} more transition(s) not alerted; see the trajectory)"
            alerts = [*alerts[: MAX_ALERTS - 1], Alert(last.key, last.title, last.text + note, last.level)]
        for alert in alerts:
            self._last_alert[alert.key] = now
        if reading.stop:
            alerts.insert(0, Alert(STOP_KEY, "crystalwatch: training stopped", reading.why("stop"), "ERROR"))
        return alerts

    def _call(self, t: Transition) -> set[str]:
        """``on_transition(t)``'s answer as a set of actions; an error goes to the guard (reported, or raised when
        strict) and asks for nothing."""
        with self.guard(f"calling on_transition for {t}") if self.guard else contextlib.nullcontext():
            return _actions(self.on_transition(t))  # type: ignore[misc]
        return set()

    def _log(self, reading: Reading) -> None:
        for alert in reading.alerts:
            if alert.key != STOP_KEY:
                logger.warning("crystalwatch alert: %s (%s)", alert.text, alert.level)
        for action in ACTIONS:
            if getattr(reading, action):
                what = "saving a checkpoint" if action == "save" else "stopping training"
                logger.warning("crystalwatch: %s: %s", what, reading.why(action))


def _actions(answer: Any) -> set[str]:
    """``None``, ``"save"``, ``"stop"`` or an iterable of them, as a set; anything else is an error naming it."""
    if answer is None:
        return set()
    items = [answer] if isinstance(answer, str) else answer
    try:
        asked = set(items)
    except TypeError:
        asked = {answer}
    if not asked <= set(ACTIONS):
        raise CrystalwatchError(f"on_transition returned {answer!r}: return None, 'save', 'stop' or ('save', 'stop')")
    return asked
