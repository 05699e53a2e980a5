"""Phases: which state each task is in, from its metrics, with hysteresis over a run.

``classify`` reads one measurement's metrics and names the state they point to (the *candidate*).
``PhaseTracker`` consumes successive measurements of one run: it adds velocity, turns a collapsed
candidate into nucleated / settling / settled using the history, and changes a task's state only
after the same candidate held for ``hold`` consecutive measurements, emitting a transition event.
Pure Python on plain data: no model, no W&B. Every threshold is a :class:`PhaseConfig` field,
defined and justified in docs/phase-model.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from crystalwatch import metrics
from crystalwatch.errors import check_int, check_number


@dataclass(frozen=True)
class State:
    """One phase state: its name, a numeric code that never changes once given (logged as
    ``crystal/<task>/state``), its colour in reports, its console style and what it means."""

    name: str
    code: int
    colour: str
    style: str
    meaning: str


# The one table of states. Sinks, the console, the report and docs read it. A new state gets a new line with
# the next unused code; never renumber a state, or every logged curve changes meaning.
STATE_TABLE: tuple[State, ...] = (
    State("liquid", 0, "#9ecae1", "cyan", "prompts still elicit many different distributions (collapse low)"),
    State("nucleating", 1, "#fee391", "yellow", "collapse rising: the prompts start to agree"),
    State("nucleated", 2, "#fdae6b", "bold green", "collapsed onto one seed of the base (small seed distance)"),
    State("settling", 3, "#f16913", "green", "nucleated and still moving (velocity above epsilon)"),
    State("settled", 4, "#a63603", "green", "nucleated and at rest (velocity below epsilon)"),
    State("foreign", 5, "#9e9ac8", "bold red", "collapsed, but far from every seed (or no closer than chance)"),
    State("polycrystalline", 6, "#74c476", "magenta", "each prompt sharp, but the prompts disagree"),
    State("no_signal", 7, "#bdbdbd", "dim", "too little mass on valid answers to judge (coverage low)"),
    State("melted", 8, "#e7e1ef", "bold blue", "flatter than the base: the answers spread over more outcomes"),
)  # fmt: skip
UNKNOWN_CODE = -1  # a state this version does not know (read from a newer file)
UNKNOWN_COLOUR = "#636363"

STATES = tuple(s.name for s in STATE_TABLE)
CRYSTAL = ("nucleated", "settling", "settled")  # collapsed onto a seed of the base
COLLAPSED = (*CRYSTAL, "foreign")  # leaving these for liquid or melted is a remelt


def state_names() -> tuple[str, ...]:
    """Every state of the table, in table order (read at call time: a state added to the table shows up)."""
    return tuple(s.name for s in STATE_TABLE)


def state_info(name: Any) -> State | None:
    """The table entry of a state, or None for a name the table does not have."""
    return next((s for s in STATE_TABLE if s.name == name), None)


def state_code(name: Any) -> int:
    """The stable numeric code of a state (:data:`UNKNOWN_CODE` for an unknown one)."""
    info = state_info(name)
    return UNKNOWN_CODE if info is None else info.code


@dataclass
class PhaseConfig:
    """Thresholds of the phase model (docs/phase-model.md gives the data behind each default)."""

    min_coverage: float = 1e-3  # mean coverage below this: no_signal (the distribution is mostly noise)
    collapse_low: float = 0.2  # collapse (signed, consensus entropy gone) at or above this: nucleating
    sharp_consensus: float = 0.45  # consensus entropy (H/log K) at or below this, and changed from the base:...
    move_min: float = 0.1  # ...by collapse_low, or this far from the base's consensus (bits): collapsed
    melt: float = 0.1  # collapse at or below -melt: melted (the consensus this much flatter than the base's)
    entropy_floor: float = 0.05  # the base's consensus entropy counts as at least this in collapse
    evidence_share: float = 0.25  # seed evidence above this share of log2 K: nucleated; else foreign
    support_level: float = 0.9  # a seed's support = its smallest outcome set with this much mass (seed_support_mass)
    permutations: int = 200  # label permutations behind seed_pvalue (all of them when K! is smaller)
    sharp_entropy: float = 0.35  # polycrystalline: variants this sharp (mean normalised entropy)...
    poly_diversity: float = 0.2  # ...that disagree by at least this much (bits)
    velocity_eps: float = 3e-3  # mass moved per step: faster is settling, slower is settled
    warn_spread: float = 0.1  # early warning: spread this far above the run's first measurement
    hold: int = 2  # consecutive measurements a new state (or a warning) needs

    def __post_init__(self) -> None:
        for name in ("min_coverage", "collapse_low", "sharp_consensus", "move_min", "melt", "support_level"):
            check_number(f"PhaseConfig.{name}", getattr(self, name), 0, 1)
        for name in ("entropy_floor", "sharp_entropy", "poly_diversity", "velocity_eps", "warn_spread"):
            check_number(f"PhaseConfig.{name}", getattr(self, name), 0, math.inf)
        check_number("PhaseConfig.evidence_share", self.evidence_share, 0, 1)
        check_int("PhaseConfig.hold", self.hold, 1)
        check_int("PhaseConfig.permutations", self.permutations, 1)


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def collapsed(m: dict[str, Any], config: PhaseConfig) -> bool:
    """Is the consensus collapsed: sharp (consensus entropy at most ``sharp_consensus``) and changed from the
    base's (sharper by ``collapse_low``, or moved ``move_min`` bits away: onto another answer)?"""
    if _missing(m.get("consensus_entropy")) or m["consensus_entropy"] > config.sharp_consensus:
        return False
    moved = not _missing(m.get("base_distance")) and m["base_distance"] >= config.move_min
    return m["collapse"] >= config.collapse_low or moved


def classify(m: dict[str, Any], n_outcomes: int, config: PhaseConfig) -> str:
    """The state one measurement's metrics point to; collapsed onto a seed is reported as ``nucleated``.

    Needs ``entropy``, ``diversity``, ``coverage``, ``collapse`` and ``seed_evidence`` (``consensus_entropy``
    when present); see docs/phase-model.md. ``n_outcomes`` is K (the evidence threshold is a share of log2 K).
    """
    needed = ("entropy", "diversity", "coverage", "collapse", "seed_evidence")
    if any(_missing(m.get(k)) for k in needed) or m["coverage"] < config.min_coverage:
        return "no_signal"
    if m["entropy"] <= config.sharp_entropy and m["diversity"] >= config.poly_diversity:
        return "polycrystalline"
    if m["collapse"] <= -config.melt:
        return "melted"
    if collapsed(m, config):
        return "nucleated" if m["seed_evidence"] > config.evidence_share * math.log2(n_outcomes) else "foreign"
    if m["collapse"] >= config.collapse_low:
        return "nucleating"
    return "liquid"


def verdict(m: dict[str, Any], n_outcomes: int, config: PhaseConfig | None = None) -> str:
    """One-shot state of a single checkpoint (no history).

    It can tell liquid, nucleating, nucleated (collapsed onto a seed), foreign, melted, polycrystalline and
    no_signal; it cannot tell settling from settled (they need velocity) nor see a remelt.
    """
    return classify(m, n_outcomes, config or PhaseConfig())


@dataclass
class Event:
    """A confirmed transition of one task."""

    step: int
    task: str
    from_state: str
    to_state: str
    seed: str | None
    since: int  # step where the new state (or the warning's condition) first appeared
    remelt: bool
    kind: str = "transition"  # or "warning": the early-warning signal fired (the state did not change)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "task": self.task, "from": self.from_state, "to": self.to_state,
                "seed": self.seed, "since": self.since, "remelt": self.remelt, "kind": self.kind}  # fmt: skip

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Event:
        """An event as stored in a trajectory (``from``/``to``; ``since``, ``remelt``, ``kind`` may be missing in
        older files). Raises KeyError or TypeError on anything else; records.py names the file and line."""
        return cls(step=int(raw["step"]), task=str(raw["task"]), from_state=str(raw["from"]), to_state=str(raw["to"]),
                   seed=raw.get("seed"), since=int(raw.get("since", raw["step"])), remelt=bool(raw.get("remelt")),
                   kind=str(raw.get("kind", "transition")))  # fmt: skip

    @property
    def warning(self) -> bool:
        """The early-warning signal (the state did not change), not a transition."""
        return self.kind == "warning"

    def __getitem__(self, key: str) -> Any:  # reads like the stored object: ``event["to"]``
        return self.to_json()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_json().get(key, default)


@dataclass
class _TaskState:
    state: str
    seed: str | None
    pending: tuple[str, str | None] | None = None
    count: int = 0
    since: int = 0
    consensus: list[float] = field(default_factory=list)
    step: int = 0
    spread0: float | None = None  # the early-warning signal at the run's first measurement
    warn: int = 0  # consecutive measurements with the warning's condition
    warn_since: int = 0


@dataclass
class Update:
    """What one measurement of one task did to the tracker."""

    candidate: str
    state: str
    seed: str | None
    velocity: float | None
    events: list[Event]


class PhaseTracker:
    """Per-task states over one run, with hysteresis; serialisable for checkpoint resume."""

    def __init__(self, config: PhaseConfig | None = None) -> None:
        self.config = config or PhaseConfig()
        self._tasks: dict[str, _TaskState] = {}

    def state(self, task: str) -> str | None:
        t = self._tasks.get(task)
        return t.state if t else None

    def _candidate(self, t: _TaskState | None, base: str, seed: str | None, velocity: float | None) -> tuple:
        """Turn a collapsed-near-seed candidate into nucleated / settling / settled using the history."""
        if base != "nucleated":
            return base, None
        if t is None or t.state not in CRYSTAL or t.seed != seed:
            return "nucleated", seed
        if velocity is None:
            return t.state, seed
        if velocity > self.config.velocity_eps:
            return "settling", seed
        return ("settled" if t.state == "settling" else t.state), seed

    def update(self, step: int, task: str, m: dict[str, Any], consensus: np.ndarray, seed: str | None) -> Update:
        """Feed one measurement of one task (metrics with the seed metrics, consensus, nearest seed id).

        A collapsed consensus is put on the seed of largest evidence (``m["evidence_seed"]``) when the metrics
        have it, else on ``seed``.
        """
        t = self._tasks.get(task)
        velocity = None
        if t is not None and t.consensus and len(t.consensus) == len(consensus) and not np.isnan(consensus).any():
            velocity = metrics.velocity(np.array(t.consensus), consensus, max(step - t.step, 1))
        base = classify({**m, "velocity": velocity}, len(consensus), self.config)
        candidate = self._candidate(t, base, m.get("evidence_seed") or seed, velocity)
        events: list[Event] = []
        if t is None:
            t = self._tasks[task] = _TaskState(candidate[0], candidate[1], since=step)
        elif candidate == (t.state, t.seed):
            t.pending, t.count = None, 0
        else:
            if candidate == t.pending:
                t.count += 1
            else:
                t.pending, t.count, t.since = candidate, 1, step
            if t.count >= self.config.hold:
                remelt = t.state in COLLAPSED and candidate[0] in ("liquid", "melted")
                events.append(Event(step, task, t.state, candidate[0], candidate[1], t.since, remelt))
                t.state, t.seed, t.pending, t.count = candidate[0], candidate[1], None, 0
        warning = self._warning(t, step, m)
        if warning:
            events.append(Event(step, task, t.state, t.state, t.seed, t.warn_since, False, kind="warning"))
        if not np.isnan(consensus).any():
            t.consensus, t.step = [float(x) for x in consensus], step
        return Update(candidate[0], t.state, t.seed, velocity, events)

    def _warning(self, t: _TaskState, step: int, m: dict[str, Any]) -> bool:
        """Early warning: the spread between prompts of the top answer stayed ``warn_spread`` above the run's
        first measurement for ``hold`` measurements while the task was not collapsed (fires once per rise)."""
        spread = m.get("spread")
        if _missing(spread):
            return False
        if t.spread0 is None:
            t.spread0 = float(spread)
            return False
        rising = spread - t.spread0 >= self.config.warn_spread and t.state not in COLLAPSED
        t.warn, t.warn_since = (t.warn + 1, t.warn_since if t.warn else step) if rising else (0, step)
        return t.warn == self.config.hold

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: config, per-task state, pending candidate, counters, last consensus."""
        return {"config": asdict(self.config), "tasks": {k: asdict(v) for k, v in self._tasks.items()}}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> PhaseTracker:
        known = {f.name for f in fields(PhaseConfig)}  # thresholds of an older phase model are dropped
        tracker = cls(PhaseConfig(**{k: v for k, v in state["config"].items() if k in known}))
        for task, t in state["tasks"].items():
            pending = tuple(t["pending"]) if t.get("pending") else None
            tracker._tasks[task] = _TaskState(**{**t, "pending": pending})
        return tracker
