"""WandbSink against real offline W&B runs, read back with ``wandb leet inspect`` (tests/wandb_run.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import wandb
from wandb_run import latest_run_dir, read_offline_run

from crystalwatch.actions import MAX_ALERTS, Actions, Reading
from crystalwatch.bars import BAR_COLUMNS
from crystalwatch.phases import STATES, state_code
from crystalwatch.records import Record
from crystalwatch.sinks.base import RunInfo
from crystalwatch.sinks.scalars import TABLE_COLUMNS
from crystalwatch.sinks.wandb import TABLE_KEY, WandbSink

SETTINGS = {"console": "off", "x_disable_stats": True, "x_disable_machine_info": True, "x_save_requirements": False}
OUTCOMES = ["1", "2", "3"]
BASE_METRICS = {
    "entropy": 1.0, "diversity": 0.5, "coverage": 0.9, "collapse": 0.1, "seed_distance": 0.2, "seed_margin": 0.05,
    "seed_support_mass": 0.9, "temperature": 1.0, "tempered_distance": 0.1, "seed_pvalue": 0.5, "velocity": 0.01,
}  # fmt: skip


def record(task: str, step: int, state: str, *, events=(), seed="s0", consensus=(0.5, 0.3, 0.2), **metrics) -> Record:
    """A trajectory record (docs/trajectory.md); keyword arguments override metrics (None = null)."""
    return Record.from_json({
        "schema": "crystalwatch.trajectory/1", "run": "t", "index": step // 10, "step": step, "label": "sft",
        "model": "m", "task": task, "kind": "chat", "estimator": "exact", "terminators": "boundary",
        "library": "abc", "outcomes": OUTCOMES, "consensus": list(consensus), "seed": seed,
        "seed_centroid": [0.4, 0.4, 0.2], "metrics": {**BASE_METRICS, **metrics}, "candidate": state,
        "state": state, "events": list(events), "variants": {},
    })  # fmt: skip


def event(task: str, step: int, frm: str, to: str, seed: str = "s0") -> dict:
    return {"step": step, "task": task, "from": frm, "to": to, "seed": seed, "since": step, "remelt": False}


MEASUREMENTS = {  # step -> records of the 2 tasks
    0: [record("count", 0, "liquid", velocity=None), record("coin", 0, "liquid", velocity=None, temperature=None)],
    10: [
        record("count", 10, "nucleating"),
        record("coin", 10, "foreign", events=[event("coin", 10, "liquid", "foreign")], seed_distance=0.6),
    ],
    20: [
        record("count", 20, "nucleated", events=[event("count", 20, "liquid", "nucleated", "s1")], seed="s1",
               seed_distance=0.01, consensus=(0.9, 0.05, 0.05)),
        record("coin", 20, "foreign", events=[event("coin", 20, "liquid", "foreign")], seed_distance=0.7),
    ],
}  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def start_run(tmp_path):
    """An offline run set up like HF's WandbCallback does."""
    run = wandb.init(project="t", dir=tmp_path, settings=wandb.Settings(**SETTINGS))
    run.define_metric("train/global_step")
    run.define_metric("*", step_metric="train/global_step", step_sync=True)
    return run


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One offline run: train/loss rows interleaved with 3 measurements of 2 tasks; read back after finish."""
    tmp = tmp_path_factory.mktemp("wandb-sink")
    library = tmp / "seeds.json"
    library.write_text(json.dumps({"tasks": {}}))
    trajectory = tmp / "t.jsonl"
    trajectory.write_text("".join(json.dumps(r.to_json()) + "\n" for rs in MEASUREMENTS.values() for r in rs))
    run = start_run(tmp)
    sink = WandbSink()
    actions = Actions(alert_min_interval_s=300, clock=(clock := Clock()))  # the Monitor's planner of alerts
    try:
        sink.start(info(tmp, library, trajectory))
        for step, records in MEASUREMENTS.items():
            if step:
                for s in (step - 5, step):
                    run.log({"train/loss": 1.0 / s, "train/global_step": s})
            sink.write(actions.decide(records), step, {"errors": 0, "measure_seconds": 1.5})
            clock.now += 60  # the repeated coin -> foreign at step 20 is 60 s after the first: not re-alerted
        sink.close()
    finally:
        wandb.finish()
    return read_offline_run(latest_run_dir(tmp)), "0123456789abcdef"


def info(tmp: Path, library: Path | None = None, trajectory: Path | None = None) -> RunInfo:
    return RunInfo("t", tmp, {"tasks": ["count", "coin"], "every": 10}, str(library) if library else None,
                   "0123456789abcdef", "org/base-model", "sft", trajectory)  # fmt: skip


def measurement_rows(history: list[dict]) -> list[dict]:
    return [row for row in history if "crystal/summary/transitions" in row]


def test_scalars_at_their_global_step(logged):
    data, _ = logged
    rows = measurement_rows(data["history"])
    assert [row["train/global_step"] for row in rows] == [0, 10, 20]
    first, second, third = rows
    assert "crystal/count/velocity" not in first and "crystal/coin/temperature" not in first  # null: not logged
    assert first["crystal/count/entropy"] == 1.0 and first["crystal/count/seed_pvalue"] == 0.5
    assert second["crystal/count/velocity"] == pytest.approx(0.01)
    assert first["crystal/count/state"] == state_code("liquid") == 0
    assert second["crystal/coin/state"] == STATES.index("foreign") == 5 == state_code("foreign")
    assert third["crystal/count/state"] == STATES.index("nucleated") == 2
    assert third["crystal/count/top_prob"] == pytest.approx(0.9)
    assert third["crystal/count/seed_distance"] == pytest.approx(0.01)
    assert all(row["crystal/summary/measure_seconds"] == 1.5 and row["crystal/summary/errors"] == 0 for row in rows)


def test_no_row_dropped_or_out_of_order(logged):
    history = logged[0]["history"]
    assert [row["_step"] for row in history] == list(range(len(history)))  # 3 measurements + 4 loss rows
    assert len(history) == 7 and sum("train/loss" in row for row in history) == 4
    steps = [row["train/global_step"] for row in history]
    assert steps == sorted(steps)
    metric = {m.get("glob_name"): m for m in logged[0]["metrics"]}["crystal/*"]
    assert metric["step_metric"] == "train/global_step"


def test_summary_counts(logged):
    data, _ = logged
    rows = measurement_rows(data["history"])
    for row, expected in zip(rows, ({"liquid": 2}, {"nucleating": 1, "foreign": 1}, {"nucleated": 1, "foreign": 1})):
        assert {s: row[f"crystal/summary/{s}"] for s in STATES} == {s: expected.get(s, 0) for s in STATES}
    assert [row["crystal/summary/transitions"] for row in rows] == [0, 1, 2]
    summary = data["summary"]
    assert summary["crystal/summary/foreign"] == 1 and summary["train/global_step"] == 20
    assert summary["crystal/count/state"] == 2


def test_alerts_once_per_transition(logged):
    alerts = logged[0]["alerts"]
    assert [(a["title"], a["level"]) for a in alerts] == [
        ("crystalwatch: coin foreign", "WARN"),
        ("crystalwatch: count nucleated", "INFO"),
    ]
    text = "task coin: liquid -> foreign at step 10 (seed s0, seed distance 0.6); first seen at step 10"
    assert alerts[0]["text"] == text
    assert "liquid -> nucleated at step 20 (seed s1, seed distance 0.01)" in alerts[1]["text"]
    assert alerts[0]["wait_duration_ms"] == 1000  # crystalwatch rate-limits (test_actions.py), not W&B


def test_library_and_trajectory_artifacts_and_config(logged):
    data, digest = logged
    libraries = [a for a in data["artifacts"] if a["type"] == "seed-library"]
    assert [(a["name"], a["files"]) for a in libraries] == [("seed-library-org-base-model", ["seeds.json"])]
    assert f"digest-{digest}" in libraries[0]["aliases"] and libraries[0]["metadata"]["base_model"] == "org/base-model"
    config = data["config"]["crystalwatch"]
    assert config["tasks"] == ["count", "coin"] and config["every"] == 10
    assert config["seed_library"] == f"seed-library-org-base-model:digest-{digest}"
    assert config["seed_library_digest"] == digest
    [traj] = [a for a in data["artifacts"] if a["type"] == "crystalwatch-trajectory"]
    assert traj["name"] == "crystalwatch-t" and "t.jsonl" in traj["files"]
    assert not any(f.startswith("report/") for f in traj["files"])  # the report is not rendered on the training path


def test_phase_table(logged):
    table = logged[0]["tables"][TABLE_KEY]
    assert table["columns"] == list(TABLE_COLUMNS)
    rows = [dict(zip(table["columns"], row)) for row in table["data"]]
    assert [(r["step"], r["task"], r["state"]) for r in rows] == [
        (0, "count", "liquid"), (0, "coin", "liquid"), (10, "count", "nucleating"), (10, "coin", "foreign"),
        (20, "count", "nucleated"), (20, "coin", "foreign"),
    ]  # fmt: skip
    assert rows[1]["temperature"] is None and rows[1]["seed_distance"] == 0.2 and rows[4]["seed"] == "s1"
    assert all(r["label"] == "sft" and r["candidate"] == r["state"] for r in rows)


def test_bar_charts(logged):
    """``crystal/<task>/bars``: W&B's native bar chart (no image) of consensus and seed side by side per outcome."""
    data, _ = logged
    rows = measurement_rows(data["history"])
    assert rows[-1]["crystal/count/bars_table._type"] == "table-file"
    table = data["tables"]["crystal/count/bars_table"]  # the last one drawn: step 20, seed s1
    assert table["columns"] == list(BAR_COLUMNS)
    assert table["data"][:2] == [["1 · consensus", 0.9, "1", "consensus"], ["1 · seed s1", 0.4, "1", "seed s1"]]
    assert len(table["data"]) == 2 * len(OUTCOMES)
    chart = data["charts"]["crystal/count/bars"]
    assert chart["panelDefId"] == "wandb/bar/v0"
    assert chart["fieldSettings"] == {"label": "bar", "value": "probability"}
    assert chart["stringSettings"]["title"] == "count: step 20 (sft), consensus vs seed s1"


def test_answers_over_steps_chart(logged):
    """``crystal/<task>/answers``: W&B's native line-series chart of the task's answers over every step so far, redrawn
    at each measurement, with the nearest seed's probability of the top answer as a flat reference line."""
    data, _ = logged
    rows = measurement_rows(data["history"])
    assert all(row["crystal/count/answers_table._type"] == "table-file" for row in rows)  # every measurement
    table = data["tables"]["crystal/count/answers_table"]  # the last drawn: steps 0, 10, 20
    assert table["columns"] == ["step", "lineKey", "lineVal"]
    lines: dict[str, list] = {}
    for step, key, value in table["data"]:
        lines.setdefault(key, []).append((step, value))
    assert lines == {"1": [(0, 0.5), (10, 0.5), (20, 0.9)], "2": [(0, 0.3), (10, 0.3), (20, 0.05)],  # fmt: skip
                     "3": [(0, 0.2), (10, 0.2), (20, 0.05)], "seed s1: 1": [(0, 0.4), (10, 0.4), (20, 0.4)]}
    chart = data["charts"]["crystal/count/answers"]
    assert chart["panelDefId"] == "wandb/lineseries/v0"
    assert chart["stringSettings"] == {"title": "count: answers over steps (now nucleated onto s1)", "xname": "step"}


def test_noop_on_a_disabled_run(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the sink used a disabled run")

    disabled = SimpleNamespace(disabled=True, log=fail, alert=fail, define_metric=fail, log_artifact=fail)
    monkeypatch.setattr(wandb, "run", disabled)  # WANDB_MODE=disabled: a no-op run
    sink = WandbSink()
    sink.start(info(tmp_path, tmp_path / "missing.json"))  # the file is never read
    sink.write(Reading([record("a", 3, "liquid")]), 3, {"errors": 1})
    sink.close()
    assert not any(tmp_path.iterdir())


def test_without_a_run_the_sink_starts_and_finishes_its_own(tmp_path):
    """A loop of the user's own with report_to=["wandb"] and no wandb.init: the sink's run holds the rows; asked
    to (``report=True``), it renders the report at close into the trajectory artifact."""
    trajectory = tmp_path / "t.jsonl"
    trajectory.write_text("".join(json.dumps(r.to_json()) + "\n" for r in MEASUREMENTS[0]))
    sink = WandbSink(images=False, report=True)
    sink.start(info(tmp_path, trajectory=trajectory))
    assert wandb.run is not None and wandb.run.name == "t"
    folder = Path(wandb.run.dir).parent
    sink.write(Reading(MEASUREMENTS[0]), 0, {})
    sink.close()
    assert wandb.run is None
    data = read_offline_run(folder)
    assert [row["train/global_step"] for row in measurement_rows(data["history"])] == [0]
    [artifact] = [a for a in data["artifacts"] if a["type"] == "crystalwatch-trajectory"]
    assert {"t.jsonl", "report/index.html", "report/timeline.png"} <= set(artifact["files"])


def test_a_failed_log_loses_no_row_and_alerts_go_out_with_the_next(tmp_path, monkeypatch):
    """A failed log raises and loses no row (the next log re-sends it); a measurement's alerts (at most
    MAX_ALERTS, the last saying how many were left out) reach the run as ``alert`` records."""
    tasks = [f"t{i}" for i in range(MAX_ALERTS + 2)]

    def measure(step):
        return [record(t, step, "foreign", events=[event(t, step, "liquid", "foreign")]) for t in tasks]

    run = start_run(tmp_path)
    sink = WandbSink(images=False)
    actions = Actions(alert_min_interval_s=300, clock=(clock := Clock()))
    real_log = run.log

    def broken_log(*args, **kwargs):
        raise RuntimeError("W&B is down")

    try:
        sink.write(actions.decide(measure(0)), 0, {})  # 5 alerts: the last one says 2 more were not alerted
        monkeypatch.setattr(run, "log", broken_log)
        with pytest.raises(RuntimeError, match="W&B is down"):
            sink.write(Reading(measure(10)), 10, {})  # nothing logged
        monkeypatch.setattr(run, "log", real_log)
        clock.now += 100
        sink.write(actions.decide(measure(20)), 20, {})  # re-sends step 10's rows; alerts the 2 not alerted yet
        clock.now += 300
        monkeypatch.setattr(run, "log", broken_log)
        with pytest.raises(RuntimeError):
            sink.write(Reading(measure(30)), 30, {})
        monkeypatch.setattr(run, "log", real_log)
        sink.close()  # flushes step 30's rows
    finally:
        monkeypatch.setattr(run, "log", real_log)
        wandb.finish()
    data = read_offline_run(latest_run_dir(tmp_path))
    alerts = data["alerts"]
    assert [a["title"].split()[1] for a in alerts] == tasks  # 5 at step 0, the other 2 at step 20
    assert alerts[MAX_ALERTS - 1]["text"].endswith("(+2 more transition(s) not alerted; see the trajectory)")
    table = data["tables"][TABLE_KEY]["data"]
    assert [row[0] for row in table] == [step for step in (0, 10, 20, 30) for _ in tasks]
    assert [row["train/global_step"] for row in data["history"]] == [0, 20, 30]


def test_images_on_a_tasks_first_measurement_and_its_transitions(logged):
    """images="transitions" (the default): step 0 draws both tasks, step 10 only coin (liquid -> foreign), step 20
    both (count nucleated, coin foreign again)."""
    rows = measurement_rows(logged[0]["history"])
    drawn = [sorted(t for t in ("count", "coin") if f"crystal/{t}/bars_table._type" in row) for row in rows]
    assert drawn == [["coin", "count"], ["coin"], ["coin", "count"]]


def test_a_long_runs_answers_chart_is_thinned_not_its_history():
    """Each redraw of a task's answers chart holds at most CHART_POINTS measurements, evenly spread, the first and
    the latest kept (the scalars keep every one)."""
    from crystalwatch.sinks.wandb import CHART_POINTS, thinned

    history = [record("count", 10 * i, "liquid") for i in range(250)]
    drawn = thinned(history)
    assert len(drawn) == CHART_POINTS and drawn[0] is history[0] and drawn[-1] is history[-1]
    assert [r.step for r in drawn] == sorted({r.step for r in drawn})  # in order, no measurement twice
    assert thinned(history[:40]) == history[:40]
