"""Log crystalwatch measurements into the active W&B run (format of the records: docs/trajectory.md).

:class:`WandbSink` writes, per measurement, ONE ``run.log`` call keyed by ``train/global_step`` (never ``step=``,
which would drop rows whose step is below wandb's internal counter):

* ``crystal/<task>/<metric>`` for every non-null metric, ``crystal/<task>/state`` (index in
  :data:`crystalwatch.phases.STATES`, -1 for an unknown state) and ``crystal/<task>/top_prob``;
* ``crystal/summary/<state>`` (tasks per state, zeros included), ``crystal/summary/transitions`` and the
  caller's ``extra`` values under ``crystal/summary/``;
* ``crystal/phase_table``: one INCREMENTAL ``wandb.Table`` per run, one row per (measurement, task);
* ``crystal/<task>/bars``: a ``wandb.Image`` of the consensus against its nearest seed (``images=True``).

Transitions into ``alert_states`` raise ``run.alert`` (rate-limited per (task, state), at most
:data:`MAX_ALERTS` per measurement). ``start`` puts the configuration into the run config and uploads the
seed library as an artifact. Without an active run (``wandb.run is None``, or ``WANDB_MODE=disabled``) every
method does nothing.
A W&B failure propagates as an ordinary exception; rows not yet logged stay queued for the next call.
The sink never initialises or finishes the run: the Trainer (or the user) owns it. See docs/wandb.md.
"""

from __future__ import annotations

import io
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wandb

from crystalwatch.phases import STATES
from crystalwatch.seeds.codec import file_digest
from crystalwatch.sinks.jsonl import json_safe

__all__ = ["MAX_ALERTS", "STATE_CODES", "TABLE_COLUMNS", "TABLE_KEY", "Alert", "WandbSink", "state_code"]

STEP_KEY = "train/global_step"
PREFIX = "crystal"
SUMMARY = f"{PREFIX}/summary"
TABLE_KEY = f"{PREFIX}/phase_table"
TABLE_COLUMNS = (
    "step", "label", "task", "state", "candidate", "seed",
    "seed_distance", "temperature", "tempered_distance", "collapse", "entropy", "coverage",
)  # fmt: skip
TABLE_METRICS = TABLE_COLUMNS[6:]
STATE_CODES = {state: code for code, state in enumerate(STATES)}
UNKNOWN_STATE = -1
MAX_ALERTS = 5  # per measurement
TITLE_LIMIT = 63  # wandb.alert titles must be shorter than 64 characters


def state_code(state: Any) -> int:
    """The integer logged as ``crystal/<task>/state``: the index in ``STATES``, -1 for anything else."""
    return STATE_CODES.get(state, UNKNOWN_STATE)


def _number(value: Any) -> float | None:
    """A finite float, or None for null, NaN, inf, booleans and non-numbers."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _fmt(value: Any) -> str:
    x = _number(value)
    return "n/a" if x is None else f"{x:.3g}"


# -- what one measurement logs ------------------------------------------------------------------------------------


def task_scalars(record: dict[str, Any]) -> dict[str, float | int]:
    """``crystal/<task>/...`` scalars of one record: its non-null metrics, state code and top probability."""
    base = f"{PREFIX}/{record['task']}"
    out: dict[str, float | int] = {}
    for name, value in (record.get("metrics") or {}).items():
        x = _number(value)
        if x is not None:
            out[f"{base}/{name}"] = x
    out[f"{base}/state"] = state_code(record.get("state"))
    probs = [p for p in map(_number, record.get("consensus") or ()) if p is not None]
    if probs:
        out[f"{base}/top_prob"] = max(probs)
    return out


def summary_scalars(records: Sequence[dict[str, Any]], extra: dict[str, Any] | None) -> dict[str, float | int]:
    """``crystal/summary/...``: tasks per state (every state of ``STATES``), transitions, the caller's extras."""
    counts = Counter(r.get("state") for r in records)
    out: dict[str, float | int] = {f"{SUMMARY}/{s}": counts.pop(s, 0) for s in STATES}
    out.update({f"{SUMMARY}/{s}": n for s, n in counts.items() if isinstance(s, str)})
    out[f"{SUMMARY}/transitions"] = sum(len(r.get("events") or ()) for r in records)
    for key, value in (extra or {}).items():
        x = _number(value)
        if x is not None:
            out[f"{SUMMARY}/{key}"] = x
    return out


def table_row(record: dict[str, Any]) -> list[Any]:
    """One ``crystal/phase_table`` row, in :data:`TABLE_COLUMNS` order (null metrics stay None)."""
    metrics = record.get("metrics") or {}
    text = [record.get("candidate"), record.get("seed")]
    return [
        int(record["step"]),
        str(record.get("label") or ""),
        str(record["task"]),
        str(record.get("state")),
        *(None if t is None else str(t) for t in text),
        *(_number(metrics.get(m)) for m in TABLE_METRICS),
    ]


def bars_image(record: dict[str, Any]) -> wandb.Image:
    """The report's consensus-vs-seed bar chart of one record as a ``wandb.Image``."""
    from PIL import Image

    from crystalwatch.report import bars_png  # matplotlib: imported only when images are logged

    png = bars_png(str(record["task"]), record, record.get("run"))
    seed = record.get("seed")
    caption = f"step {record['step']}: consensus" + (f" vs seed {seed}" if seed else "")
    with Image.open(io.BytesIO(png)) as img:
        return wandb.Image(img, caption=caption)  # saved to a media file here, palette kept (~5 kB)


# -- alerts -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """One ``run.alert`` call; ``key`` = (task, state) is what the rate limit is keyed by."""

    key: tuple[str, str]
    title: str
    text: str
    level: str


def _alert_for(record: dict[str, Any], event: dict[str, Any], step: int) -> Alert:
    task, to = str(record["task"]), str(event.get("to"))
    seed = event.get("seed") or record.get("seed")
    distance = _fmt((record.get("metrics") or {}).get("seed_distance"))
    text = (
        f"task {task}: {event.get('from')} -> {to} at step {event.get('step', step)}"
        f" (seed {seed or 'none'}, seed distance {distance})"
    )
    if event.get("since") is not None:
        text += f"; first seen at step {event['since']}"
    title = f"crystalwatch: {task} {to}"
    if len(title) > TITLE_LIMIT:
        title = title[: TITLE_LIMIT - 3] + "..."
    return Alert((task, to), title, text, "WARN" if to == "foreign" else "INFO")


def _current_run() -> Any:
    """``wandb.run``, or None when there is none or it is the no-op run of ``WANDB_MODE=disabled``."""
    run = wandb.run
    return None if run is None or getattr(run, "disabled", False) else run


def finish_run() -> str | None:
    """Finish the active W&B run (a Trainer leaves it open) and return its folder; None without one."""
    run = _current_run()
    if run is None:
        return None
    folder = str(Path(run.dir).parent)
    wandb.finish()
    return folder


# -- the sink -----------------------------------------------------------------------------------------------------


class WandbSink:
    """Sends measurements to the active W&B run; a no-op while no run is active (see the module docstring)."""

    def __init__(
        self,
        *,
        alerts: bool = True,
        alert_states: tuple[str, ...] = ("nucleated", "foreign"),
        alert_min_interval_s: float = 300.0,
        images: bool = True,
    ) -> None:
        self.alerts = alerts
        self.alert_states = tuple(alert_states)
        self.alert_min_interval_s = float(alert_min_interval_s)
        self.images = images
        self._clock = time.monotonic  # replaceable in tests
        self._reset(None)

    def _reset(self, run: Any) -> None:
        """Per-run state: a new run gets a new table and fresh rate limits."""
        self._run = run
        self._table: wandb.Table | None = None
        self._logged_rows = 0  # rows of _table that reached a successful log call
        self._last_step = 0
        self._last_alert: dict[tuple[str, str], float] = {}
        self._library: str | None = None

    @property
    def active(self) -> bool:
        """Whether a W&B run is active (``wandb.run is not None`` and not a ``WANDB_MODE=disabled`` no-op run)."""
        return _current_run() is not None

    def _bind(self) -> Any:
        """The active run (None without one); on a new run, define the step metric of the ``crystal/*`` keys."""
        run = _current_run()
        if run is not None and run is not self._run:
            run.define_metric(f"{PREFIX}/*", step_metric=STEP_KEY)
            self._reset(run)
        return run

    # -- start ----------------------------------------------------------------------------------------------------

    def start(self, config: dict[str, Any], library_path: str | None, library_digest: str | None) -> None:
        """Put ``config`` under ``crystalwatch`` in the run config; upload the seed library as an artifact."""
        run = self._bind()
        if run is None:
            return
        entry = json_safe(dict(config))
        if library_path:
            digest = library_digest or file_digest(library_path)
            entry["seed_library"] = self._log_library(run, Path(library_path), digest)
            entry["seed_library_digest"] = digest
        elif library_digest:
            entry["seed_library"] = entry["seed_library_digest"] = library_digest
        run.config.update({"crystalwatch": entry}, allow_val_change=True)

    def _log_library(self, run: Any, path: Path, digest: str) -> str:
        """Log the library file as artifact ``seed-library-<digest>`` (once per run); return its name."""
        name = f"seed-library-{digest}"
        if self._library != name:
            artifact = wandb.Artifact(name, type="seed-library", metadata={"digest": digest, "file": path.name})
            artifact.add_file(str(path))
            run.log_artifact(artifact)
            self._library = name
        return name

    # -- log ------------------------------------------------------------------------------------------------------

    def log(self, records: list[dict[str, Any]], step: int, extra: dict[str, float] | None = None) -> None:
        """Log one measurement (one record per task) at training step ``step``; then send its alerts."""
        run = self._bind()
        if run is None:
            return
        payload: dict[str, Any] = {STEP_KEY: int(step)}
        for record in records:
            payload.update(task_scalars(record))
        payload.update(summary_scalars(records, extra))
        if self.images:
            payload.update({f"{PREFIX}/{r['task']}/bars": bars_image(r) for r in records if r.get("consensus")})
        planned = self.plan_alerts(records, step) if self.alerts else []
        self._add_rows(records)
        self._send(run, payload, int(step))
        for alert in planned:
            run.alert(title=alert.title, text=alert.text, level=alert.level, wait_duration=self.alert_min_interval_s)
            self._last_alert[alert.key] = self._clock()

    def _add_rows(self, records: Sequence[dict[str, Any]]) -> None:
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
        self._last_step = max(self._last_step, step)  # finish() re-logs pending rows at this step
        run.log(payload)
        if pending:
            self._logged_rows = len(self._table.data)

    def plan_alerts(self, records: Sequence[dict[str, Any]], step: int) -> list[Alert]:
        """The alerts of one measurement: one per (task, state) reached, rate-limited, at most MAX_ALERTS."""
        now = self._clock()
        wanted: dict[tuple[str, str], Alert] = {}
        for record in records:
            for event in record.get("events") or ():
                if event.get("to") not in self.alert_states:
                    continue
                alert = _alert_for(record, event, step)
                last = self._last_alert.get(alert.key)
                if alert.key not in wanted and (last is None or now - last >= self.alert_min_interval_s):
                    wanted[alert.key] = alert
        alerts = list(wanted.values())
        if len(alerts) > MAX_ALERTS:
            rest = len(alerts) - MAX_ALERTS
            last = alerts[MAX_ALERTS - 1]
            note = f" (+{rest} more transition(s) not alerted; see {TABLE_KEY})"
            alerts = [*alerts[: MAX_ALERTS - 1], Alert(last.key, last.title, last.text + note, last.level)]
        return alerts

    # -- finish ---------------------------------------------------------------------------------------------------

    def finish(self) -> None:
        """Log table rows a failed ``log`` left behind. Does not finish the run (its owner does)."""
        run = _current_run()
        if run is None or run is not self._run or self._table is None:
            return
        if len(self._table.data) > self._logged_rows:
            self._send(run, {STEP_KEY: self._last_step}, self._last_step)
