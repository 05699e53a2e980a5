"""The report's view of a trajectory: records grouped by task and run, series, labels, colours (no drawing)."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Any

import numpy as np

from crystalwatch.metrics import table_metrics
from crystalwatch.phases import UNKNOWN_COLOUR, state_info
from crystalwatch.records import Record

OTHER_COLOUR = UNKNOWN_COLOUR  # a state the table does not know
MISSING_COLOUR = "#ffffff"  # no measurement at that step (timeline)
PANELS = (  # (title, primary metric, secondary metric or None, log y)
    ("entropy", "entropy", None, False),
    ("consensus entropy / collapse (dashed)", "consensus_entropy", "collapse", False),
    ("seed distance / tempered distance (dashed)", "seed_distance", "tempered_distance", False),
    ("temperature", "temperature", None, True),
)
TABLE_METRICS = table_metrics()  # crystalwatch.metrics.METRIC_TABLE
DPI = 100

Runs = dict[str, list[Record]]  # run -> its records for one task, sorted by index


def _group(records: list[Record]) -> dict[str, Runs]:
    """task -> run -> records sorted by index; tasks and runs in order of first appearance."""
    order = {run: i for i, run in enumerate(dict.fromkeys(r.run for r in records))}
    tasks: dict[str, Runs] = defaultdict(lambda: defaultdict(list))
    for r in sorted(records, key=lambda r: (order[r.run], r.index)):
        tasks[r.task][r.run].append(r)
    return {task: dict(runs) for task, runs in tasks.items()}


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._") or "x"


def _slugs(names) -> dict[str, str]:
    """A distinct file-name-safe slug per name."""
    slugs: dict[str, str] = {}
    for name in names:
        base = slug = _slug(name)
        n = 2
        while slug in slugs.values():
            slug, n = f"{base}-{n}", n + 1
        slugs[name] = slug
    return slugs


def _num(value: Any) -> float:
    """A metric as a float; null (or anything not a finite number) becomes NaN, which plots as a gap."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def _series(recs: list[Record], metric: str) -> np.ndarray:
    return np.array([_num((r.metrics or {}).get(metric)) for r in recs], dtype=float)


def _colour(state: str) -> str:
    info = state_info(state)
    return info.colour if info else OTHER_COLOUR


def _text(s: Any) -> str:
    """Data text safe for matplotlib: a '$' must not start mathtext."""
    return str(s).replace("$", r"\$")


def _step_labels(recs: list[Record]) -> dict[float, str]:
    """step -> its tick label: the records' labels where given (with the step when labels repeat), else the step.
    A step whose records carry different labels (runs side by side, each labelled by its arm) shows the step alone."""
    labels: dict[float, set[str]] = {}
    for r in recs:
        labels.setdefault(r.step, set()).add(r.label or "")
    texts = {step: next(iter(names)) if len(names) == 1 else "" for step, names in sorted(labels.items())}
    if len(set(texts.values())) == 1:  # one label throughout (the run's stage or arm): the steps say more
        return {step: f"{step:g}" for step in texts}
    if len(set(texts.values())) < len(texts):  # stage labels repeat (a training run): show the step too
        return {step: f"{step:g} {text}".strip() for step, text in texts.items()}
    return {step: text or f"{step:g}" for step, text in texts.items()}


def _transitions(recs: list[Record]) -> list[str]:
    out = []
    for r in recs:
        for e in r.events or []:
            seed = f" ({e.seed})" if e.seed else ""
            remelt = " remelt" if e.remelt else ""
            if e.warning:
                out.append(f"early warning @{e.step}")
                continue
            out.append(f"{e.from_state}→{e.to_state} @{e.step}{seed}{remelt}")
    return out
