"""Phases: which state each task is in, from its metrics, with hysteresis over a run.

``reading`` (and ``classify``) reads one measurement's metrics and names the state they point to (the
*candidate*) and the seed it names. ``PhaseTracker`` consumes successive measurements of one run: it adds
velocity, turns a crystal candidate into nucleated / settling / settled using the history, and changes a task's
state only after the same candidate held for ``hold`` consecutive measurements, emitting a transition event; it
keeps the reference a task's change is measured from when the run did not start at the library's base.
Pure Python on plain data: no model, no W&B. Every threshold is a :class:`PhaseConfig` field,
defined and justified in docs/phase-model.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from crystalwatch import metrics
from crystalwatch.answers import Reference
from crystalwatch.errors import check_choice, check_int, check_number


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
    State("liquid", 0, "#9ecae1", "cyan", "no answer is taking over and the answers did not spread out"),
    State("nucleating", 1, "#fee391", "yellow", "an answer a base seed favours is taking over (beyond the noise)"),
    State("nucleated", 2, "#fdae6b", "bold green", "one sharp distribution on answers a seed of the base favours"),
    State("settling", 3, "#f16913", "green", "nucleated and still moving (velocity above epsilon)"),
    State("settled", 4, "#a63603", "green", "nucleated and at rest (velocity below epsilon)"),
    State("foreign", 5, "#9e9ac8", "bold red", "an answer no seed of the base favours has taken over"),
    State("polycrystalline", 6, "#74c476", "magenta", "each prompt sharp, but the prompts disagree"),
    State("no_signal", 7, "#bdbdbd", "dim", "too little mass on valid answers to judge (coverage low)"),
    State("melted", 8, "#fa9fb5", "bold blue", "flatter than the reference, and no answer is gaining a majority"),
)  # fmt: skip
UNKNOWN_CODE = -1  # a state this version does not know (read from a newer file)
UNKNOWN_COLOUR = "#636363"

STATES = tuple(s.name for s in STATE_TABLE)
CRYSTAL = ("nucleated", "settling", "settled")  # collapsed onto a seed of the base
COLLAPSED = (*CRYSTAL, "foreign")  # leaving these for liquid or melted is a remelt
TAKEOVER = ("nucleating", *COLLAPSED)  # an answer (or a seed's answers) has taken over


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
    takeover_level: float = 0.4  # the top answer holds at least this share of the consensus...
    reach_margin: float = 0.1  # ...and this much more than any reference prompt gave it: it is taking over
    start_tolerance: float = 0.01  # a run whose first consensus is this close (JSD bits) to the base's starts there
    reference: str = "auto"  # "auto": a run starting away from the base measures change from its start; "base": never
    collapse_low: float = 0.2  # collapse (signed, consensus entropy gone) at or above this, and sharp:...
    sharp_consensus: float = 0.45  # consensus entropy (H/log K) at or below this: sharp (a crystal)
    move_min: float = 0.1  # ...or sharp and this far from the reference's consensus (bits): collapsed
    melt: float = 0.1  # collapse at or below -melt: melted (the consensus this much flatter than the reference's)
    entropy_floor: float = 0.05  # the reference's consensus entropy counts as at least this in collapse
    evidence_share: float = 0.25  # seed evidence above this share of log2 K: on a seed; else foreign
    support_level: float = 0.9  # a seed's support = its smallest outcome set with this much mass (seed_support_mass)
    permutations: int = 200  # label permutations behind seed_pvalue (all of them when K! is smaller)
    sharp_entropy: float = 0.35  # polycrystalline: variants this sharp (mean normalised entropy)...
    poly_diversity: float = 0.2  # ...that disagree by at least this much (bits)
    velocity_eps: float = 3e-3  # mass moved per step: faster is settling, slower is settled
    velocity_window: int = 20  # velocity is measured over at least this many steps (not measurements)
    warn_spread: float = 0.1  # early warning: the prompts disagree this much more on the top answer than at the start
    hold: int = 2  # consecutive measurements a new state (or a warning) needs

    def __post_init__(self) -> None:
        for name in ("min_coverage", "takeover_level", "reach_margin", "start_tolerance", "collapse_low",
                     "sharp_consensus", "move_min", "melt", "support_level"):  # fmt: skip
            check_number(f"PhaseConfig.{name}", getattr(self, name), 0, 1)
        for name in ("entropy_floor", "sharp_entropy", "poly_diversity", "velocity_eps", "warn_spread"):
            check_number(f"PhaseConfig.{name}", getattr(self, name), 0, math.inf)
        check_number("PhaseConfig.evidence_share", self.evidence_share, 0, 1)
        check_int("PhaseConfig.hold", self.hold, 1)
        check_choice("PhaseConfig.reference", self.reference, ("auto", "base"))
        check_int("PhaseConfig.velocity_window", self.velocity_window, 1)
        check_int("PhaseConfig.permutations", self.permutations, 1)


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def collapsed(m: dict[str, Any], config: PhaseConfig) -> bool:
    """Is the consensus collapsed: sharp (consensus entropy at most ``sharp_consensus``) and changed from the
    reference's (sharper by ``collapse_low``, or moved ``move_min`` bits away: onto another answer)?"""
    if _missing(m.get("consensus_entropy")) or m["consensus_entropy"] > config.sharp_consensus:
        return False
    moved = not _missing(m.get("base_distance")) and m["base_distance"] >= config.move_min
    return m["collapse"] >= config.collapse_low or moved


def taking_over(m: dict[str, Any], config: PhaseConfig) -> bool:
    """Is the consensus's top answer taking over: it holds at least ``takeover_level`` of the consensus and
    ``reach_margin`` more than any reference prompt gave it (no reweighting of the reference prompts explains it)?"""
    if any(_missing(m.get(k)) for k in ("top_prob", "top_excess")):
        return False
    return m["top_prob"] >= config.takeover_level and m["top_excess"] >= config.reach_margin


def favoured(mass: float, n_outcomes: int, config: PhaseConfig) -> bool:
    """Does a seed that gives an answer ``mass`` favour it: a one-answer crystal on it would carry more than
    ``evidence_share`` of log2 K bits of seed evidence (mass above K^(evidence_share - 1))?"""
    return mass > n_outcomes ** (config.evidence_share - 1)


def majority_gaining(m: dict[str, Any]) -> bool:
    """Does the top answer hold half the consensus or more while gaining on the reference? Such a consensus is
    moving to that answer, not melting, whatever its entropy says (``melted`` is never read then)."""
    return not any(_missing(m.get(k)) for k in ("top_prob", "top_gain")) and m["top_prob"] >= 0.5 and m["top_gain"] > 0


def reading(m: dict[str, Any], n_outcomes: int, config: PhaseConfig) -> tuple[str, str | None]:
    """The state one measurement's metrics point to and the seed it names (None: no seed named); a crystal onto a
    seed is reported as ``nucleated`` (the tracker tells settling and settled by history). See docs/phase-model.md.

    In order: too little coverage; the top answer taking over (onto the seed that favours it most, or foreign)
    unless the prompts are sharp and split with it leading on half of them or less; each prompt sharp but the
    prompts disagreeing; sharp and changed without a takeover (the prompts agreeing on what some of them already
    said); flatter than the reference while no majority answer gains; else liquid.
    """
    needed = ("entropy", "diversity", "coverage", "collapse", "seed_evidence")
    if any(_missing(m.get(k)) for k in needed) or m["coverage"] < config.min_coverage:
        return "no_signal", None
    sharp = not _missing(m.get("consensus_entropy")) and m["consensus_entropy"] <= config.sharp_consensus
    poly = m["entropy"] <= config.sharp_entropy and m["diversity"] >= config.poly_diversity
    split = poly and not (m.get("top_share") or 0.0) > 0.5  # sharp prompts split, the top answer leads on half or less
    if taking_over(m, config) and not split:
        if not favoured(m.get("top_seed_mass") or 0.0, n_outcomes, config):
            return "foreign", None
        return ("nucleated" if sharp else "nucleating"), m.get("top_seed")
    if poly:
        return "polycrystalline", None
    if collapsed(m, config):
        if m["seed_evidence"] > config.evidence_share * math.log2(n_outcomes):
            return "nucleated", m.get("evidence_seed")
        return "foreign", None
    if m["collapse"] <= -config.melt and not majority_gaining(m):
        return "melted", None
    return "liquid", None


def classify(m: dict[str, Any], n_outcomes: int, config: PhaseConfig) -> str:
    """The state one measurement's metrics point to (see :func:`reading`)."""
    return reading(m, n_outcomes, config)[0]


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
    history: list[tuple[int, list[float]]] = field(default_factory=list)  # (step, consensus) within the window
    warn: int = 0  # consecutive measurements with the warning's condition
    warn_since: int = 0
    inside: list[int] = field(default_factory=list)  # a collapsed state's answers: its seed's favoured ones
    outside: float = 1.0  # the least mass outside them since the state was read


def inside_answers(centroid: Any, consensus: np.ndarray, config: PhaseConfig) -> list[int]:
    """The answers a collapsed state keeps: those its seed favours (``favoured``), and the consensus's top answer
    (the only one, for ``foreign`` or without a centroid)."""
    top = int(np.argmax(consensus))
    if centroid is None or len(centroid) != len(consensus):
        return [top]
    return sorted({top, *(i for i, x in enumerate(centroid) if favoured(float(x), len(consensus), config))})


def outside_mass(inside: list[int], consensus: np.ndarray) -> float:
    """The consensus's mass on answers not among ``inside``."""
    return 1.0 - float(consensus[inside].sum())


def holds(t: _TaskState, consensus: np.ndarray, config: PhaseConfig) -> bool:
    """Does a collapsed state hold: the top answer is still one of its answers and the mass outside them has not
    risen ``reach_margin`` above the least it had since the state was read? (Else the crystal is leaving.)"""
    if t.state not in COLLAPSED or not t.inside or np.isnan(consensus).any():
        return False
    top = int(np.argmax(consensus))
    return top in t.inside and outside_mass(t.inside, consensus) < t.outside + config.reach_margin


_TASK_FIELDS = {f.name for f in fields(_TaskState)}


@dataclass
class Update:
    """What one measurement of one task did to the tracker."""

    candidate: str
    state: str
    seed: str | None
    velocity: float | None
    events: list[Event]


class PhaseTracker:
    """Per-task states over one run, with hysteresis, and the reference each task's change is measured from;
    serialisable for checkpoint resume."""

    def __init__(self, config: PhaseConfig | None = None) -> None:
        self.config = config or PhaseConfig()
        self._tasks: dict[str, _TaskState] = {}
        self._references: dict[str, Reference] = {}

    def state(self, task: str) -> str | None:
        t = self._tasks.get(task)
        return t.state if t else None

    def seen(self, task: str) -> bool:
        """Has this run measured the task before?"""
        return task in self._tasks

    def reference(self, task: str) -> Reference | None:
        """The run's own start as the task's reference, when the run did not start at the library's base (None:
        the library's base is the reference)."""
        return self._references.get(task)

    def set_reference(self, task: str, reference: Reference) -> None:
        """Measure the task's change from ``reference`` (kept only when it is the run's start, not the base)."""
        if reference.origin != "base":
            self._references[task] = reference

    def _candidate(self, t: _TaskState | None, base: str, seed: str | None, velocity: float | None,
                   consensus: np.ndarray) -> tuple:  # fmt: skip
        """The candidate (state, seed): a collapsed state that holds (``holds``) stays, whatever this measurement's
        reading; a crystal onto its seed becomes nucleated / settling / settled by velocity."""
        if t is not None and base != "no_signal" and holds(t, consensus, self.config):
            if t.state == "foreign":
                return t.state, t.seed
            base, seed = "nucleated", t.seed
        if base == "nucleating":
            return base, seed
        if base != "nucleated":
            return base, None
        if t is None or t.state not in CRYSTAL or t.seed != seed:
            return "nucleated", seed
        if velocity is None:
            return t.state, seed
        if velocity > self.config.velocity_eps:
            return "settling", seed
        return ("settled" if t.state == "settling" else t.state), seed

    def _velocity(self, t: _TaskState | None, step: int, consensus: np.ndarray) -> float | None:
        """Mass moved per step since the latest measurement at least ``velocity_window`` steps back (the oldest kept
        when none is that old), divided by at least the window: a denser cadence adds points, not speed (jitter is
        divided by the window, not the gap), and a move early in a run counts as spread over the whole window."""
        if t is None or not t.history or len(t.history[0][1]) != len(consensus) or np.isnan(consensus).any():
            return None
        older = [h for h in t.history if h[0] <= step - self.config.velocity_window]
        then, previous = older[-1] if older else t.history[0]
        return metrics.velocity(np.array(previous), consensus, max(step - then, self.config.velocity_window))

    def _enter(self, t: _TaskState, consensus: np.ndarray, centroid: Any) -> None:
        t.inside = inside_answers(None if t.state == "foreign" else centroid, consensus, self.config)
        t.outside = outside_mass(t.inside, consensus)

    def update(self, step: int, task: str, m: dict[str, Any], consensus: np.ndarray, seed: str | None,
               centroids: dict[str, Any] | None = None) -> Update:  # fmt: skip
        """Feed one measurement of one task (metrics with the seed and answer metrics, consensus, nearest seed id,
        and the seeds' centroids by id, which name a crystal's answers).

        The seed a reading names (the one favouring the answer taking over, or of largest evidence for a crystal
        without a takeover) comes from the metrics; ``seed`` is the fallback.
        """
        t = self._tasks.get(task)
        velocity = self._velocity(t, step, consensus)
        base, named = reading({**m, "velocity": velocity}, len(consensus), self.config)
        candidate = self._candidate(t, base, named or seed, velocity, consensus)
        events: list[Event] = []
        entered = False
        if t is None:
            t = self._tasks[task] = _TaskState(candidate[0], candidate[1], since=step)
            entered = True
        elif candidate == (t.state, t.seed):
            t.pending, t.count = None, 0
        else:
            if candidate == t.pending:
                t.count += 1
            else:
                t.pending, t.count, t.since = candidate, 1, step
            if t.count >= self.config.hold or (t.state == "melted" and majority_gaining(m)):  # no melt is held then
                remelt = t.state in COLLAPSED and candidate[0] in ("liquid", "melted")
                entered = t.state not in COLLAPSED or t.seed != candidate[1] or candidate[0] == "foreign"
                events.append(Event(step, task, t.state, candidate[0], candidate[1], t.since, remelt))
                t.state, t.seed, t.pending, t.count = candidate[0], candidate[1], None, 0
        if self._warning(t, step, m):
            events.append(Event(step, task, t.state, t.state, t.seed, t.warn_since, False, kind="warning"))
        if not np.isnan(consensus).any():  # a measurement without a consensus leaves the history as it was
            if entered and t.state in COLLAPSED:
                self._enter(t, consensus, (centroids or {}).get(t.seed))
            elif t.state in COLLAPSED and t.inside:
                t.outside = min(t.outside, outside_mass(t.inside, consensus))
            cut = step - self.config.velocity_window  # keep the window, and the latest measurement before it
            older = [h for h in t.history if h[0] <= cut][-1:]
            t.history = [*older, *(h for h in t.history if h[0] > cut), (step, [float(x) for x in consensus])]
        return Update(candidate[0], t.state, t.seed, velocity, events)

    def _warning(self, t: _TaskState, step: int, m: dict[str, Any]) -> bool:
        """Early warning: the prompts disagreed on the top answer ``warn_spread`` more than the reference prompts
        did on that same answer, for ``hold`` measurements, while no answer had taken over (fires once per rise)."""
        rise = m.get("spread_rise")
        rising = not _missing(rise) and rise >= self.config.warn_spread and t.state not in TAKEOVER
        t.warn, t.warn_since = (t.warn + 1, t.warn_since if t.warn else step) if rising else (0, step)
        return t.warn == self.config.hold

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: config, per-task state, pending candidate, counters, last consensus, and
        the references of tasks whose run did not start at the base."""
        return {"config": asdict(self.config), "tasks": {k: asdict(v) for k, v in self._tasks.items()},
                "references": {k: r.to_json() for k, r in self._references.items()}}  # fmt: skip

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> PhaseTracker:
        """A tracker from :meth:`state_dict`; thresholds and fields of an older phase model are dropped."""
        known = {f.name for f in fields(PhaseConfig)}
        tracker = cls(PhaseConfig(**{k: v for k, v in state["config"].items() if k in known}))
        for task, t in state["tasks"].items():
            pending = tuple(t["pending"]) if t.get("pending") else None
            history = [(int(s), list(c)) for s, c in t.get("history", [])]
            if not history and t.get("consensus"):  # a tracker saved before the velocity window
                history = [(int(t.get("step", 0)), list(t["consensus"]))]
            tracker._tasks[task] = _TaskState(**{**{k: v for k, v in t.items() if k in _TASK_FIELDS},
                                                 "pending": pending, "history": history})  # fmt: skip
        for task, raw in state.get("references", {}).items():
            tracker._references[task] = Reference.from_json(raw)
        return tracker
