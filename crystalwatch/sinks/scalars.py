"""The scalars every tracker logs for one measurement, under the same keys (docs/wandb.md).

* ``crystal/<task>/<metric>`` for every finite metric, ``crystal/<task>/state`` (the state's stable code
  from :data:`crystalwatch.phases.STATE_TABLE`, -1 for an unknown state), ``crystal/<task>/top_prob``,
  ``crystal/<task>/answer/<answer>`` (the probability of the consensus's three most likely answers and of the
  answer that gained most since the reference; with :class:`Scalars`, an answer once logged stays logged, so
  each is one unbroken line);
* ``crystal/summary/<state>`` (tasks per state, every state of the table, zeros included),
  ``crystal/summary/transitions`` and the caller's extras (errors, measure_seconds) under ``crystal/summary/``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from crystalwatch.metrics import table_metrics
from crystalwatch.phases import state_code, state_names
from crystalwatch.records import Record, number

PREFIX = "crystal"
SUMMARY = f"{PREFIX}/summary"
TABLE_METRICS = table_metrics()  # crystalwatch.metrics.METRIC_TABLE
TABLE_COLUMNS = ("step", "label", "task", "state", "candidate", "seed", *TABLE_METRICS)
ANSWERS = 3  # the most likely answers per task whose probability every tracker gets (plus the rising one)
KEPT = 8  # at most this many answers per task stay logged once they have been (key count stays bounded)


def task_scalars(record: Record, kept: Sequence[str] = ()) -> dict[str, float | int]:
    """``crystal/<task>/...`` scalars of one record: its finite metrics, state code, top probability and the
    probability of its :func:`logged_answers` and of the answers in ``kept``."""
    base = f"{PREFIX}/{record.task}"
    out: dict[str, float | int] = {}
    for name, value in (record.metrics or {}).items():
        x = number(value)
        if x is not None:
            out[f"{base}/{name}"] = x
    out[f"{base}/state"] = state_code(record.state)
    out[f"{base}/warning"] = int(any(e.warning for e in record.events))
    probs = [p for p in map(number, record.consensus or ()) if p is not None]
    if probs:
        out[f"{base}/top_prob"] = max(probs)
    for answer in dict.fromkeys([*kept, *logged_answers(record)]):
        if answer in record.outcomes:
            out[f"{base}/answer/{key_safe(answer)}"] = number(record.consensus[record.outcomes.index(answer)]) or 0.0
    return out


def key_safe(name: str) -> str:
    """An answer as part of a metric key every tracker accepts (MLflow allows letters, digits, ``_-. :/``)."""
    return re.sub(r"[^A-Za-z0-9_\-. :]", "_", name)


def logged_answers(record: Record, n: int = ANSWERS) -> list[str]:
    """The answers whose probability every tracker gets: the consensus's ``n`` most likely and the answer that gained
    the most since the reference (``rising``), in that order."""
    probs = [number(p) or 0.0 for p in record.consensus or ()]
    top = sorted(range(len(probs)), key=lambda i: -probs[i])[:n]
    names = [str(record.outcomes[i]) for i in top]
    rising = (record.metrics or {}).get("rising")
    return names + ([rising] if rising in record.outcomes and rising not in names else [])


def summary_scalars(records: Sequence[Record], extra: dict[str, Any] | None = None) -> dict[str, float | int]:
    """``crystal/summary/...``: tasks per state (every state of the table), transitions, the caller's extras."""
    counts = Counter(r.state for r in records)
    out: dict[str, float | int] = {f"{SUMMARY}/{s}": counts.pop(s, 0) for s in state_names()}
    out.update({f"{SUMMARY}/{s}": n for s, n in counts.items() if isinstance(s, str)})
    out[f"{SUMMARY}/transitions"] = sum(len(r.events or ()) for r in records)
    for key, value in (extra or {}).items():
        x = number(value)
        if x is not None:
            out[f"{SUMMARY}/{key}"] = x
    return out


class Scalars:
    """Every scalar of each measurement of one run (a sink's own): each task's, then the summary. An answer logged
    once for a task (up to :data:`KEPT` per task) is logged at every later measurement, so that a tracker draws it
    as one line from the step it first led to the end, falling included."""

    def __init__(self) -> None:
        self.kept: dict[str, list[str]] = {}  # task -> answers logged so far, in the order they were first logged

    def __call__(self, records: Sequence[Record], extra: dict[str, Any] | None = None) -> dict[str, float | int]:
        out: dict[str, float | int] = {}
        for record in records:
            kept = self.kept.setdefault(record.task, [])
            out.update(task_scalars(record, kept))
            kept += [a for a in logged_answers(record) if a not in kept][: max(0, KEPT - len(kept))]
        out.update(summary_scalars(records, extra))
        return out


def imaged(records: Sequence[Record], mode: str, seen: set[str]) -> list[Record]:
    """The records whose bar image a tracker draws: every one (``"all"``), none, or (``"transitions"``) a task's
    first measurement and the ones with a transition. ``seen`` keeps the tasks drawn once (the sink's own)."""
    if mode == "none":
        return []
    chosen = [r for r in records if r.consensus and (mode == "all" or r.events or r.task not in seen)]
    seen.update(r.task for r in chosen)
    return chosen


def table_row(record: Record) -> list[Any]:
    """One phase-table row, in :data:`TABLE_COLUMNS` order (null metrics stay None)."""
    metrics = record.metrics or {}
    text = [record.candidate, record.seed]
    return [
        int(record.step),
        str(record.label or ""),
        str(record.task),
        str(record.state),
        *(None if t is None else str(t) for t in text),
        *(number(metrics.get(m)) for m in TABLE_METRICS),
    ]
