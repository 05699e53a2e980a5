"""Every sink, read back from what it wrote: TensorBoard event files, MLflow's local file store, trackio's local
store, an offline W&B run, the console; the choice of sinks from report_to; the one state table."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_wandb_sink import info, measurement_rows, record
from wandb_run import read_offline_run

from crystalwatch import Monitor, phases
from crystalwatch.actions import Reading
from crystalwatch.errors import CrystalwatchError
from crystalwatch.phases import STATE_TABLE, State, state_code
from crystalwatch.sinks.base import tracker_names

TASKS = ["coin_flip", "yes_no"]


def tensorboard_run(folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def mlflow_run(name: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()],
                               filter_string=f"attributes.run_name = '{name}'")  # fmt: skip
    return client, run


def trackio_rows(name: str, project: str = "crystalwatch") -> list[dict]:
    from trackio import SQLiteStorage

    return SQLiteStorage.get_logs(project, name)


@pytest.fixture(scope="module")
def session(tmp_path_factory, tokenizer):
    """One Monitor session in a loop of our own on a tiny model, measured at steps 0, 1, 2, every tracker on."""
    import wandb
    from tiny import build_model

    out = tmp_path_factory.mktemp("sinks")
    model = build_model("llama", len(tokenizer))
    monitor = Monitor(tasks=TASKS, every_n_steps=1, report_to=["tensorboard", "mlflow", "trackio", "wandb"],
                      run_name="every-sink")  # fmt: skip
    assert monitor.start(model, tokenizer, output_dir=out)
    wandb_dir = Path(wandb.run.dir).parent
    for step in (1, 2):
        monitor.step(model, step)
    monitor.close()
    assert monitor.errors == 0 and wandb.run is None  # the sink started W&B's run, so it finished it
    return out, monitor, wandb_dir


def test_sinks_follow_report_to(session):
    _, monitor, _ = session
    assert [s.name for s in monitor.sinks] == ["jsonl", "console", "tensorboard", "mlflow", "trackio", "wandb"]
    assert tracker_names("none") == [] and tracker_names(None) == []
    assert tracker_names(["tensorboard", "codecarbon"]) == ["tensorboard"]  # other integrations are ignored
    assert set(tracker_names("all")) == {"wandb", "tensorboard", "trackio", "mlflow"}
    with pytest.raises(CrystalwatchError, match="did you mean 'tensorboard'"):
        tracker_names(["tensorbord"])


def test_tensorboard_read_back(session):
    from crystalwatch import read_trajectory

    out, _, _ = session
    events = tensorboard_run(out / "runs" / "crystalwatch")
    tags = events.Tags()
    assert [e.step for e in events.Scalars("crystal/coin_flip/entropy")] == [0, 1, 2]
    assert {e.value for e in events.Scalars("crystal/yes_no/state")} <= {float(s.code) for s in STATE_TABLE}
    assert [e.value for e in events.Scalars("crystal/summary/errors")] == [0.0, 0.0, 0.0]
    assert {"crystal/coin_flip/bars", "crystal/yes_no/bars"} <= set(tags["images"])
    coin = [r for r in read_trajectory(session[1].trajectory) if r.task == "coin_flip"]
    drawn = [r.step for i, r in enumerate(coin) if i == 0 or r.events]  # images="transitions": first + transitions
    assert [e.step for e in events.Images("crystal/coin_flip/bars")] == drawn
    table = events.Tensors("crystal/phase_table/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert table.startswith("| step | label | task | state |") and "| 2 |  | yes_no |" in table
    from tensorboard.plugins.custom_scalar import layout_pb2  # Custom Scalars: one chart per task, answers together

    raw = events.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0]
    charts = {c.title: list(c.multiline.tag) for cat in layout_pb2.Layout.FromString(raw).category for c in cat.chart}
    assert charts == {t: [f"^crystal/{t}/answer/"] for t in TASKS}
    matched = sorted(t for t in tags["scalars"] if re.match(charts["coin_flip"][0], t))
    assert matched == ["crystal/coin_flip/answer/heads", "crystal/coin_flip/answer/tails"]


def test_mlflow_read_back(session):
    client, run = mlflow_run("every-sink")
    history = client.get_metric_history(run.info.run_id, "crystal/coin_flip/entropy")
    assert [m.step for m in history] == [0, 1, 2]
    assert run.data.params["crystalwatch.tasks"] == str(TASKS) and run.data.params["crystalwatch.every_n_steps"] == "1"
    assert run.info.status == "FINISHED"  # the sink started the run, so it ended it
    artifacts = client.list_artifacts(run.info.run_id, "crystalwatch")
    assert [a.path for a in artifacts] == ["crystalwatch/trajectory.jsonl"]


def test_trackio_read_back(session):
    rows = [r for r in trackio_rows("every-sink") if "crystal/coin_flip/entropy" in r]
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(r["crystal/summary/transitions"] >= 0 and "crystal/yes_no/state" in r for r in rows)


def test_wandb_and_jsonl_agree(session):
    _, monitor, wandb_dir = session
    from crystalwatch import read_trajectory

    records = read_trajectory(monitor.trajectory)
    rows = measurement_rows(read_offline_run(wandb_dir)["history"])
    assert [row["train/global_step"] for row in rows] == [0, 1, 2]
    for row, step in zip(rows, (0, 1, 2)):
        [coin] = [r for r in records if r.step == step and r.task == "coin_flip"]
        assert row["crystal/coin_flip/entropy"] == pytest.approx(coin.metrics["entropy"])
        assert row["crystal/coin_flip/state"] == state_code(coin.state)


def test_a_state_added_to_the_table_reaches_every_sink_with_its_own_code(tmp_path, monkeypatch, capsys):
    """One line in the table: a new state appears in every sink with its own code; the others keep theirs."""
    import wandb

    from crystalwatch.report import render_report
    from crystalwatch.sinks.console import ConsoleSink
    from crystalwatch.sinks.mlflow import MLflowSink
    from crystalwatch.sinks.tensorboard import TensorBoardSink
    from crystalwatch.sinks.trackio import TrackioSink
    from crystalwatch.sinks.wandb import WandbSink

    before = {s.name: s.code for s in STATE_TABLE}
    monkeypatch.setattr(phases, "STATE_TABLE", (*STATE_TABLE, State("supercooled", 8, "#123456", "bold blue", "x")))
    event = {"step": 20, "task": "count", "from": "liquid", "to": "supercooled", "seed": "s0", "since": 20,
             "remelt": False}  # fmt: skip
    records = [record("count", 20, "supercooled", events=[event]), record("coin", 20, "liquid")]
    run = dataclasses.replace(info(tmp_path), name="supercooled")
    sinks = [ConsoleSink(), TensorBoardSink(images=False), MLflowSink(), TrackioSink(), WandbSink(images=False)]
    for sink in sinks:
        sink.start(run)
        if isinstance(sink, WandbSink):
            wandb_dir = Path(wandb.run.dir).parent
        sink.write(Reading(records), 20, {})
        sink.close()

    assert {s.name: s.code for s in phases.STATE_TABLE if s.name in before} == before
    assert "count liquid -> supercooled" in " ".join(capsys.readouterr().out.split())
    tb = tensorboard_run(tmp_path / "runs" / "crystalwatch")
    client, ml = mlflow_run("supercooled")
    scalars = {
        "tensorboard": {t: tb.Scalars(t)[-1].value for t in tb.Tags()["scalars"]},
        "mlflow": ml.data.metrics,
        "trackio": [r for r in trackio_rows("supercooled") if "crystal/count/state" in r][-1],
        "wandb": measurement_rows(read_offline_run(wandb_dir)["history"])[-1],
    }
    for name, got in scalars.items():
        assert got["crystal/count/state"] == 8 and got["crystal/coin/state"] == before["liquid"] == 0, name
        assert got["crystal/summary/supercooled"] == 1 and got["crystal/summary/liquid"] == 1, name
    index = render_report(records, tmp_path / "report")
    assert "#123456" in index.read_text()  # the report colours the new state from the table


def test_report_to_tensorboard_without_wandb_installed(tmp_path, monkeypatch):
    """A Trainer run with report_to=["tensorboard"] in a world without wandb: TensorBoard gets the crystal
    scalars, nothing tries W&B."""
    import sys

    from test_callback import load, sft_config, sft_data
    from tiny import build_model, build_tokenizer, save
    from trl import SFTTrainer

    from crystalwatch import CrystalWatchCallback

    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` fails; find_spec says it is not there
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    tokenizer = build_tokenizer()
    folder = save(build_model("llama", len(tokenizer)), tokenizer, tmp_path / "m")
    model, tok = load(str(folder))
    cb = CrystalWatchCallback(tasks=["coin_flip"], every_n_steps=2)
    args = sft_config(tmp_path, max_steps=4, report_to=["tensorboard"])
    SFTTrainer(model=model, args=args, train_dataset=sft_data(), processing_class=tok, callbacks=[cb]).train()
    assert cb.errors == 0 and [s.name for s in cb.monitor.sinks] == ["jsonl", "console", "tensorboard"]
    events = tensorboard_run(tmp_path / "tb" / "crystalwatch")
    assert [e.step for e in events.Scalars("crystal/coin_flip/entropy")] == [0, 2, 4]
    assert not any(p.name == "wandb" for p in tmp_path.rglob("*")) and not os.environ.get("WANDB_RUN_ID")
    assert sys.modules["wandb"] is None


def test_the_last_measurement_reaches_trackers_the_trainer_closes_first(tmp_path):
    """The Trainer's MLflow and trackio callbacks end their runs in on_train_end, before ours: the last measurement
    is taken (and the sinks closed) at the last step, so it lands in their runs, and no stray run is started."""
    from test_callback import load, sft_config, sft_data
    from tiny import build_model, build_tokenizer, save
    from trl import SFTTrainer

    from crystalwatch import CrystalWatchCallback

    tokenizer = build_tokenizer()
    folder = save(build_model("llama", len(tokenizer)), tokenizer, tmp_path / "m")
    model, tok = load(str(folder))
    cb = CrystalWatchCallback(tasks=["coin_flip"], every_n_steps=2)
    args = sft_config(tmp_path, max_steps=5, report_to=["mlflow", "trackio"], run_name="last-step",
                      project="crystalwatch-tests")  # fmt: skip
    SFTTrainer(model=model, args=args, train_dataset=sft_data(), processing_class=tok, callbacks=[cb]).train()
    assert cb.errors == 0
    client, run = mlflow_run("last-step")  # exactly one run of that name: no stray one
    history = client.get_metric_history(run.info.run_id, "crystal/coin_flip/entropy")
    assert [m.step for m in history] == [0, 2, 4, 5]
    rows = [r for r in trackio_rows("last-step", "crystalwatch-tests") if "crystal/coin_flip/entropy" in r]
    assert [r["step"] for r in rows] == [0, 2, 4, 5]


def test_early_warning_reaches_scalars_console_and_alerts(capsys):
    """A warning event: ``crystal/<task>/warning`` = 1 in every tracker's scalars, a console line, and an alert when
    ``warning`` is among the alert states (it is not by default: docs/phase-model.md, the early warning measured)."""
    from crystalwatch.actions import Actions
    from crystalwatch.sinks.console import print_events
    from crystalwatch.sinks.scalars import task_scalars

    warning = {"step": 30, "task": "count", "from": "liquid", "to": "liquid", "seed": None, "since": 20,
               "remelt": False, "kind": "warning"}  # fmt: skip
    warned, quiet = record("count", 30, "liquid", events=[warning]), record("coin", 30, "liquid")
    assert task_scalars(warned)["crystal/count/warning"] == 1 and task_scalars(quiet)["crystal/coin/warning"] == 0
    print_events([warned])
    assert "count early warning" in " ".join(capsys.readouterr().out.split())
    alerts = Actions(alert_states=("nucleated", "warning")).decide([warned]).alerts
    assert [a.key for a in alerts] == [("count", "warning")] and "crystalwatch: count warning" == alerts[0].title
    assert Actions().decide([warned]).alerts == []  # not a default alert


def test_trackio_gets_the_measurements_alerts_and_the_stop(tmp_path):
    """trackio has alerts: the sink sends a reading's alerts (a transition's, and the stop's first, as ERROR) with
    trackio.alert, stored with the run in trackio's local database."""
    from test_wandb_sink import event
    from trackio import SQLiteStorage

    from crystalwatch.actions import Actions
    from crystalwatch.sinks.trackio import TrackioSink

    sink = TrackioSink()
    sink.start(info(tmp_path))  # no run yet: the sink starts one named "t" in project crystalwatch
    name = __import__("trackio").context_vars.current_run.get().name
    reading = Actions(stop_on=["foreign"]).decide([record("coin", 10, "foreign", events=[event("coin", 10, "liquid",
                                                                                                  "foreign")])])
    sink.write(reading, 10, {"errors": 0})
    sink.close()
    alerts = {a["title"]: a for a in SQLiteStorage.get_alerts("crystalwatch", run_name=name)}
    assert {t: a["level"] for t, a in alerts.items()} == {"crystalwatch: training stopped": "error",
                                                         "crystalwatch: coin foreign": "warn"}  # fmt: skip
    assert alerts["crystalwatch: training stopped"]["text"] == "step 10: coin liquid -> foreign (stop: stop_on)"


def test_a_tracker_that_fails_to_start_is_reported_and_the_trajectory_still_written(tmp_path, tokenizer, monkeypatch):
    """Choosing the sinks happens on the main process only: if a tracker's sink cannot be made (a broken package),
    raising there would leave the other ranks waiting. It is reported, counted, and the trajectory is written."""
    from tiny import build_model

    import crystalwatch.sinks as sinks_module
    from crystalwatch.records import read_trajectory

    def broken(name, **options):
        raise RuntimeError(f"{name} is broken")

    monkeypatch.setattr(sinks_module, "tracker_sink", broken)
    monitor = Monitor(tasks=["coin_flip"], every_n_steps=0, report_to="tensorboard", console=False)
    assert monitor.start(build_model("llama", len(tokenizer)), tokenizer, output_dir=tmp_path)
    monitor.close()
    assert monitor.errors == 1 and [s.name for s in monitor.sinks] == ["jsonl"]
    assert [r.task for r in read_trajectory(tmp_path / "crystalwatch" / "trajectory.jsonl")] == ["coin_flip"]


def test_every_tracker_gets_the_answers_over_steps():
    """The consensus's three most likely answers and the rising one, as crystal/<task>/answer/<answer>, in keys every
    tracker accepts."""
    from crystalwatch.records import Record
    from crystalwatch.sinks.scalars import task_scalars

    r = Record(run="t", index=1, step=10, task="card", outcomes=["Ace of Clubs", "2+2?", "x", "y", "z"],
               consensus=[0.4, 0.3, 0.15, 0.1, 0.05], metrics={"rising": "z", "rising_gain": 0.04}, state="liquid")
    got = {k: v for k, v in task_scalars(r).items() if "/answer/" in k}
    assert got == {"crystal/card/answer/Ace of Clubs": 0.4, "crystal/card/answer/2_2_": 0.3,
                   "crystal/card/answer/x": 0.15, "crystal/card/answer/z": 0.05}  # fmt: skip


def test_an_answer_once_logged_stays_logged():
    """Each tracker's lines are unbroken: an answer that led once is logged at every later measurement, falling
    included (up to KEPT answers per task); a fresh Scalars (another run) starts again."""
    from crystalwatch.records import Record
    from crystalwatch.sinks.scalars import KEPT, Scalars

    def measured(step, probs):
        outcomes = [f"a{i}" for i in range(len(probs))]
        return [Record(run="t", index=step, step=step, task="n", outcomes=outcomes, consensus=list(probs), metrics={},
                       state="liquid")]  # fmt: skip

    scalars = Scalars()
    first = scalars(measured(0, [0.4, 0.3, 0.2, 0.1, 0.0, 0.0]))
    later = scalars(measured(10, [0.0, 0.0, 0.1, 0.2, 0.3, 0.4]))
    answers = lambda got: {k.rsplit("/", 1)[1]: v for k, v in got.items() if "/answer/" in k}  # noqa: E731
    assert answers(first) == {"a0": 0.4, "a1": 0.3, "a2": 0.2}
    assert answers(later) == {"a0": 0.0, "a1": 0.0, "a2": 0.1, "a3": 0.2, "a4": 0.3, "a5": 0.4}
    assert scalars.kept == {"n": ["a0", "a1", "a2", "a5", "a4", "a3"]}
    many = Scalars()
    for step in range(10):
        many(measured(step, [1.0 if i // 3 == step else 0.0 for i in range(30)]))
    assert len(many.kept["n"]) == KEPT
    assert answers(Scalars()(measured(20, [0.0, 0.0, 0.1, 0.2, 0.3, 0.4]))) == {"a5": 0.4, "a4": 0.3, "a3": 0.2}
