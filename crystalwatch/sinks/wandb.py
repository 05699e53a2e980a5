"""The W&B sink: live phases in a Weights & Biases run (keys: docs/wandb.md).

Per measurement ONE ``run.log`` keyed by ``train/global_step`` (never ``step=``, which drops rows whose step
is below wandb's internal counter): the scalars of :mod:`crystalwatch.sinks.scalars`, the
``crystal/phase_table`` (one INCREMENTAL ``wandb.Table`` per run), ``crystal/<task>/answers`` (W&B's native
line-series chart of the task's leading answers over the run's steps, with the nearest seed's probability of the
top answer as a flat reference line, redrawn at every measurement) and ``crystal/<task>/bars``, W&B's native bar
chart of a small table (:func:`crystalwatch.bars.bar_rows`). No image is drawn. The measurement's alerts
(planned by :mod:`crystalwatch.actions`: transitions into ``alert_states``, rate-limited, and a stop) become
``run.alert`` calls.

Artifacts: the seed library is used by every stage as ``seed-library-<base model>`` (one artifact per base
model, a new version per content digest, aliased ``digest-<digest>``), so W&B's lineage shows which library
each run was judged against; at the end the trajectory is logged as ``crystalwatch-<run>`` (``crystalwatch
report`` renders it; ``report=True`` renders the report at close and adds it, ~5 s on the training path).
The sink uses the active run (the Trainer's, or one the user started); without one it starts a run named
after the crystalwatch run and finishes it when closed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import wandb
import wandb.plot

from crystalwatch.bars import BAR_COLUMNS, bar_rows, title
from crystalwatch.records import Record, report_folder
from crystalwatch.sinks.base import RunInfo
from crystalwatch.sinks.scalars import PREFIX, TABLE_COLUMNS, Scalars, imaged, table_row

if TYPE_CHECKING:  # the type of what write() receives; nothing of it runs here
    from crystalwatch.actions import Reading

__all__ = ["TABLE_KEY", "WandbSink", "finish_stage"]

STEP_KEY = "train/global_step"
TABLE_KEY = f"{PREFIX}/phase_table"


def _current_run() -> Any:
    """``wandb.run``, or None when there is none or it is the no-op run of ``WANDB_MODE=disabled``."""
    run = wandb.run
    return None if run is None or getattr(run, "disabled", False) else run


def _offline(run: Any) -> bool:
    settings = getattr(run, "settings", None)
    return bool(getattr(run, "offline", False)) or getattr(settings, "mode", None) in ("offline", "dryrun")


def finish_stage() -> str | None:
    """End one stage of a chain in W&B: finish the active run (a Trainer leaves it open) and tear the session down,
    since W&B reads its environment (``WANDB_RUN_GROUP``, ``WANDB_JOB_TYPE``) once per session and the next
    stage's job type needs a new one. Returns the run's folder; None without a run."""
    run = _current_run()
    folder = None
    if run is not None:
        folder = str(Path(run.dir).parent)
        wandb.finish()
    wandb.teardown()
    return folder


def library_artifact_name(base_model: str | None) -> str:
    """``seed-library-<base model>``: one artifact per base model; its versions are the library contents."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", base_model or "unknown").strip("-.") or "unknown"
    return f"seed-library-{slug}"[:120]


def answers_chart(history: Sequence[Record], answers: Sequence[str]) -> Any:
    """One task's ``answers`` over the steps of ``history`` (its records so far) as W&B's native line-series chart,
    plus a flat line at the probability the latest record's nearest seed gives its top answer (where the task
    would settle if it crystallised onto that seed), titled with the latest state."""
    last = history[-1]
    xs = [r.step for r in history]
    ys = [[_prob(r, a) for r in history] for a in answers]
    keys = list(answers)
    if last.seed and len(last.seed_centroid) == len(last.outcomes) and last.consensus:
        top = max(range(len(last.consensus)), key=lambda i: last.consensus[i])
        ys.append([float(last.seed_centroid[top])] * len(xs))
        keys.append(f"seed {last.seed}: {last.outcomes[top]}")
    onto = f" onto {last.seed}" if last.seed and last.state not in ("liquid", "melted") else ""
    return wandb.plot.line_series(xs=xs, ys=ys, keys=keys, xname="step",
                                  title=f"{last.task}: answers over steps (now {last.state}{onto})")  # fmt: skip


CHART_POINTS = 100  # measurements drawn per answers chart at most: a long run's chart is thinned, not its data


def thinned(history: Sequence[Record], points: int = CHART_POINTS) -> list[Record]:
    """At most ``points`` records of ``history``, evenly spread, the first and the latest kept: each redraw of a
    task's answers chart stays small however long the run (the scalars keep every measurement)."""
    n = len(history)
    if n <= points:
        return list(history)
    return [history[round(i * (n - 1) / (points - 1))] for i in range(points)]


def _prob(record: Record, answer: str) -> float:
    try:
        return float(record.consensus[record.outcomes.index(answer)])
    except (ValueError, IndexError, TypeError):
        return float("nan")


def bars_chart(record: Record) -> Any:
    """The task's consensus against its nearest seed as W&B's native bar chart (a ``wandb.plot.bar`` of
    :func:`crystalwatch.bars.bar_rows`, titled by :func:`crystalwatch.bars.title`)."""
    table = wandb.Table(columns=list(BAR_COLUMNS), data=bar_rows(record))
    return wandb.plot.bar(table, "bar", "probability", title=title(record))


class WandbSink:
    """Sends measurements to a W&B run; see the module docstring."""

    name = "wandb"

    def __init__(self, *, images: str | bool = "transitions", report: bool = False) -> None:
        self.images = {True: "all", False: "none"}.get(images, images) if isinstance(images, bool) else images
        self.report = report  # render the report at close (seconds, on the training path) and log it too
        self._info: RunInfo | None = None
        self._owned = False  # this sink started the run, so it finishes it
        self._reset(None)

    def _reset(self, run: Any) -> None:
        """Per-run state: a new run gets a new table."""
        self._run = run
        self._table: wandb.Table | None = None
        self._logged_rows = 0  # rows of _table that reached a successful log call
        self._last_step = 0
        self._imaged: set[str] = set()  # tasks whose bars this run has drawn
        self._scalars = Scalars()  # answers kept per task: the same lines in the scalars and the answers chart
        self._history: dict[str, list[Record]] = {}  # task -> its records so far (the answers chart's data)

    def _bind(self) -> Any:
        """The active run; on a new run, define the step metric of the ``crystal/*`` keys."""
        run = _current_run()
        if run is not None and run is not self._run:
            run.define_metric(f"{PREFIX}/*", step_metric=STEP_KEY)
            self._reset(run)
        return run

    # -- start ----------------------------------------------------------------------------------------------------
    def start(self, run: RunInfo) -> None:
        """Bind to (or start) the run, put the settings under ``crystalwatch`` in its config, use the library."""
        self._info = run
        if _current_run() is None and wandb.run is None:
            wandb.init(name=run.name, job_type=run.label or None, config={})
            self._owned = True
        active = self._bind()
        if active is None:
            return
        entry = dict(run.config)
        if run.library_path and Path(run.library_path).is_file():
            entry["seed_library"] = self._use_library(active, run)
        entry["seed_library_digest"] = run.library_digest
        active.config.update({"crystalwatch": entry}, allow_val_change=True)

    def _use_library(self, active: Any, run: RunInfo) -> str:
        """The library file as an input of this run (lineage), one artifact per base model."""
        name = library_artifact_name(run.library_model)
        file = Path(str(run.library_path))
        meta = {"digest": run.library_digest, "base_model": run.library_model, "file": file.name}
        artifact = wandb.Artifact(name, type="seed-library", metadata=meta)
        artifact.add_file(str(file))
        aliases = [f"digest-{run.library_digest}", "latest"]
        if _offline(active):  # offline runs cannot use artifacts: log it (`wandb sync` uploads it, one version)
            active.log_artifact(artifact, aliases=aliases)
        else:
            active.use_artifact(artifact, aliases=aliases)
        return f"{name}:digest-{run.library_digest}"

    # -- write ----------------------------------------------------------------------------------------------------
    def write(self, reading: Reading, step: int, extra: dict[str, float]) -> None:
        """Log one measurement (one record per task) at training step ``step``; then send the reading's alerts."""
        run = self._bind()
        if run is None:
            return
        payload: dict[str, Any] = {STEP_KEY: int(step), **self._scalars(reading, extra)}
        payload.update({f"{PREFIX}/{r.task}/bars": bars_chart(r) for r in imaged(reading, self.images, self._imaged)})
        for r in reading if self.images != "none" else ():
            history = self._history.setdefault(r.task, [])
            history.append(Record(r.run, r.index, r.step, r.task, r.outcomes, r.consensus, {}, r.state, label=r.label,
                                  seed=r.seed, seed_centroid=r.seed_centroid))  # fmt: skip  (without its variants)
            if r.consensus:
                payload[f"{PREFIX}/{r.task}/answers"] = answers_chart(thinned(history),
                                                                      self._scalars.kept.get(r.task, ()))
        self._add_rows(reading)
        self._send(run, payload, int(step))
        for alert in reading.alerts:  # rate-limited by crystalwatch, so W&B's own wait is 1 s
            run.alert(title=alert.title, text=alert.text, level=alert.level, wait_duration=1)

    def _add_rows(self, records: Sequence[Record]) -> None:
        rows = [table_row(r) for r in records]  # built first: a bad record adds nothing
        if rows and self._table is None:
            self._table = wandb.Table(columns=list(TABLE_COLUMNS), log_mode="INCREMENTAL")
        for row in rows:
            self._table.add_data(*row)

    def _send(self, run: Any, payload: dict[str, Any], step: int) -> None:
        """The one ``run.log`` of a measurement, with the table when it has rows not logged yet."""
        pending = self._table is not None and len(self._table.data) > self._logged_rows
        if pending:
            payload[TABLE_KEY] = self._table
        self._last_step = max(self._last_step, step)  # close() re-logs pending rows at this step
        run.log(payload)
        if pending:
            self._logged_rows = len(self._table.data)

    # -- close ----------------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Log table rows a failed ``log`` left behind, the trajectory (and report) artifact; finish an owned run."""
        run = _current_run()
        if run is None or run is not self._run:
            return
        if self._table is not None and len(self._table.data) > self._logged_rows:
            self._send(run, {STEP_KEY: self._last_step}, self._last_step)
        info = self._info
        if info is not None and info.trajectory is not None and Path(info.trajectory).is_file():
            artifact = wandb.Artifact(f"crystalwatch-{info.name}"[:120], type="crystalwatch-trajectory",
                                      metadata={"run": info.name, "label": info.label})  # fmt: skip
            artifact.add_file(str(info.trajectory))
            if self.report:
                from crystalwatch.report import render_report

                folder = report_folder(info.trajectory)
                render_report(info.trajectory, folder)
                artifact.add_dir(str(folder), name="report")
            run.log_artifact(artifact)
        if self._owned:
            wandb.finish()
            self._owned = False
