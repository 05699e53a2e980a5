"""From measurements to trajectory records: seed metrics, phase tracking, one record per (measurement, task).

``observe`` is the one step every measurement goes through (the Monitor calls it): it compares a
:class:`~crystalwatch.measure.Measurement` with the seed library, feeds the tracker and returns the
records of docs/trajectory.md; ``reread`` reads a run's records again with another phase model.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np

from crystalwatch import metrics
from crystalwatch.answers import Reference, starts_at
from crystalwatch.errors import CrystalwatchError
from crystalwatch.measure import Measurement, TaskResult, VariantResult
from crystalwatch.phases import PhaseConfig, PhaseTracker, verdict
from crystalwatch.records import Record
from crystalwatch.scoring import Request
from crystalwatch.seeds import SeedLibrary
from crystalwatch.tasks import load_task


def _rounded(p: np.ndarray) -> list[float]:
    return [float(f"{x:.6g}") for x in p]


def seed_metrics(
    measurement: Measurement, library: SeedLibrary, config: PhaseConfig, tracker: PhaseTracker | None = None
) -> dict[str, tuple]:
    """Per task: (nearest seed, all metrics including the seed and answer metrics, the reference's origin).

    Change is measured from the library's base on the same prompt kind, unless ``tracker``'s run did not start
    there: a task the run measures for the first time whose consensus is more than ``start_tolerance`` from the
    base's makes this measurement (the run's start) its reference, kept in the tracker for the rest of the run
    (unless ``config.reference`` is "base": a checkpoint post-trained from the base, whose start is a reading)."""
    out = {}
    for tid, r in measurement.tasks.items():
        reference = library.tasks[tid].reference(r.kind)
        if tracker is not None:
            away = config.reference == "auto" and not starts_at(r.consensus, reference, config.start_tolerance)
            if not tracker.seen(tid) and away:
                tracker.set_reference(tid, Reference.of(r.matrix, r.coverage, "start"))
            reference = tracker.reference(tid) or reference
        seed, sm = library.compare(r, reference=reference, config=config)
        out[tid] = (seed, sm, reference.origin)
    return out


def one_shot(measurement: Measurement, library: SeedLibrary, config: PhaseConfig | None = None) -> dict[str, dict]:
    """A single checkpoint's seed metrics and verdict per task, against the library's base (no history: see
    ``phases.verdict``)."""
    config = config or PhaseConfig()
    return {
        tid: {"seed": seed.id, "state": verdict(m, len(seed.centroid), config), "metrics": m}
        for tid, (seed, m, _) in seed_metrics(measurement, library, config).items()
    }


def observe(
    measurement: Measurement,
    library: SeedLibrary,
    tracker: PhaseTracker,
    *,
    step: int,
    index: int,
    run: str = "",
    label: str = "",
    model: str = "",
) -> list[Record]:
    """Feed one measurement to the tracker; return its trajectory records (one per task)."""
    time = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    records = []
    for tid, (seed, m, origin) in seed_metrics(measurement, library, tracker.config, tracker).items():
        r = measurement.tasks[tid]
        consensus = r.consensus
        centroids = {s.id: s.centroid for s in library.tasks[tid].seeds}
        update = tracker.update(step, tid, m, consensus, seed.id, centroids)
        if update.seed is not None and update.seed != seed.id:  # a reading names the seed of its answer
            seed = library.seed(tid, update.seed)
        records.append(Record(
            run=run, index=index, step=step, label=label, model=model or measurement.model,
            time=time, task=tid, kind=r.kind, estimator=measurement.estimator,
            terminators=measurement.terminators, library=library.digest or None,
            outcomes=r.task.outcome_names, consensus=_rounded(consensus),
            seed=seed.id, seed_centroid=_rounded(seed.centroid),
            metrics={**m, "velocity": update.velocity},
            candidate=update.candidate, state=update.state, reference=origin,
            events=list(update.events),
            variants={v.request.variant: {"probs": _rounded(v.probs), "coverage": float(f"{v.coverage:.6g}")}
                      for v in r.variants},
        ))  # fmt: skip
    return records


def reread(records: Sequence[Record], library: SeedLibrary, config: PhaseConfig | None = None) -> list[Record]:
    """The records of one or more runs read again with a phase model (another version or other thresholds).

    Every record keeps each prompt variant's distribution and coverage, so metrics, states and events are
    recomputed from them, measurement by measurement, one tracker per run. Tasks are the built-in ones, or a
    task file's, by id; a task whose outcomes changed since the run is an error.
    """
    trackers: dict[str, PhaseTracker] = {}
    groups: dict[tuple[str, int], list[Record]] = {}
    for r in records:
        groups.setdefault((r.run, r.index), []).append(r)
    out: list[Record] = []
    for (run, index), recs in groups.items():
        results = {}
        for r in recs:
            task = load_task(r.task)
            if task.outcome_names != list(r.outcomes):
                raise CrystalwatchError(f"run '{run}' record {index}: task '{r.task}' has other outcomes now than "
                                        "when it was measured; re-read with the task file of the run")  # fmt: skip
            variants = [VariantResult(Request(r.task, name, r.kind, "", (), ()), np.array(v["probs"], dtype=float),
                                      float(v["coverage"])) for name, v in (r.variants or {}).items()]  # fmt: skip
            result = TaskResult(task, r.kind, variants)
            result.metrics = metrics.task_metrics(result.matrix, result.coverage)
            results[r.task] = result
        first = recs[0]
        tracker = trackers.setdefault(run, PhaseTracker(config or PhaseConfig()))
        measurement = Measurement(first.estimator, first.terminators, [], results, first.model)
        out += observe(measurement, library, tracker, step=first.step, index=index, run=run, label=first.label,
                       model=first.model)  # fmt: skip
    return out


def check_ladder(models: Sequence[str], labels: Sequence[str] | None, steps: Sequence[int] | None) -> None:
    """One label and one step per checkpoint (when given), steps increasing."""
    if not models:
        raise CrystalwatchError("no checkpoints given: name the models of the ladder in order")
    for name, given in (("labels", labels), ("steps", steps)):
        if given is not None and len(given) != len(models):
            raise CrystalwatchError(f"{len(models)} models but {len(given)} {name}: give one per model, in order")
    if steps is not None and any(b <= a for a, b in zip(steps, steps[1:])):
        raise CrystalwatchError(f"steps {list(steps)} must increase from one checkpoint to the next")
