"""Trajectories: the JSONL format, observe(), checkpoint ladders, and the seeds/trajectory/report commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_check import refused, said
from synthetic import base_matrix, measurement, task_result
from typer.testing import CliRunner

from crystalwatch import metrics
from crystalwatch.cli import app
from crystalwatch.phases import PhaseTracker
from crystalwatch.records import SCHEMA, Record, TrajectoryError, read_trajectory
from crystalwatch.seeds import SeedLibrary, task_seeds
from crystalwatch.sinks.jsonl import TrajectoryWriter
from crystalwatch.trajectory import observe

runner = CliRunner()


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tokenizer):
    """Two tiny checkpoints: a random one and a second with other weights."""
    from tiny import build_model, save

    root = tmp_path_factory.mktemp("ckpt")
    return [str(save(build_model("llama", len(tokenizer), seed=s), tokenizer, root / f"m{s}")) for s in (0, 7)]


def test_observe_writes_documented_records(tmp_path):
    lib = SeedLibrary({"integer_1_10": task_seeds([task_result("integer_1_10", base_matrix())])}, digest="abc")
    tracker = PhaseTracker()
    writer = TrajectoryWriter(tmp_path / "t.jsonl")
    for i, a in enumerate((0.0, 1.0, 1.0)):
        target = metrics.temper(lib.tasks["integer_1_10"].seeds[1].centroid, 0.4)  # the seed, sharpened
        m = measurement(task_result("integer_1_10", (1 - a) * base_matrix(1) + a * target))
        writer.write(observe(m, lib, tracker, step=10 * i, index=i, run="r", label=f"c{i}"))
    records = read_trajectory(tmp_path / "t.jsonl")
    assert [(r["index"], r["step"], r["label"], r["state"]) for r in records] == [
        (0, 0, "c0", "liquid"), (1, 10, "c1", "liquid"), (2, 20, "c2", "nucleated"),
    ]  # fmt: skip
    r = records[-1]
    assert r["schema"] == SCHEMA and r["library"] == "abc" and r["seed"] == "s1" and r["kind"] == "chat"
    assert r.to_json()["events"] == [{"step": 20, "task": "integer_1_10", "from": "liquid", "to": "nucleated",
                            "seed": "s1", "since": 10, "remelt": False, "kind": "transition"}]  # fmt: skip
    moved = metrics.velocity(np.array(records[0]["consensus"]), np.array(r["consensus"]), 20)  # over >= 20 steps
    assert records[0]["metrics"]["velocity"] is None and r["metrics"]["velocity"] == pytest.approx(moved, abs=1e-5)
    assert set(r["metrics"]) >= {"entropy", "diversity", "coverage", "collapse", "seed_distance", "seed_margin",
                                 "seed_support_mass", "temperature", "tempered_distance", "seed_pvalue",
                                 "seed_evidence", "evidence_seed", "seed_chance", "consensus_entropy", "spread"}
    assert len(r["consensus"]) == len(r["outcomes"]) == len(r["seed_centroid"]) == 10
    assert sum(r["consensus"]) == pytest.approx(1, abs=1e-5) and len(r["variants"]) == 11


def test_reader_skips_a_truncated_last_line_and_rejects_bad_ones(tmp_path):
    path = tmp_path / "t.jsonl"
    good = {"run": "r", "index": 0, "step": 0, "task": "t", "outcomes": ["a", "b"], "consensus": [0.5, 0.5],
            "metrics": {"entropy": float("nan")}, "state": "liquid", "events": []}  # fmt: skip
    TrajectoryWriter(path).write([Record(**good), Record(**{**good, "index": 1})])
    assert json.loads(path.read_text().splitlines()[0])["metrics"]["entropy"] is None  # strict JSON, no NaN
    valid = path.read_text()
    path.write_text(valid + '{"schema": "crystalwatch.traj')
    with pytest.warns(UserWarning, match="truncated last record"):
        assert len(read_trajectory(path)) == 2
    path.write_text(valid + "oops\n" + valid)
    with pytest.raises(TrajectoryError, match=r"t.jsonl:3: not a JSON record"):
        read_trajectory(path)
    path.write_text(json.dumps({"schema": "other/1"}) + "\n")
    with pytest.raises(TrajectoryError, match="expected 'crystalwatch.trajectory/1'"):
        read_trajectory(path)
    path.write_text(json.dumps({"schema": SCHEMA, "run": "r"}) + "\n")
    with pytest.raises(TrajectoryError, match="lacks field"):
        read_trajectory(path)
    with pytest.raises(TrajectoryError, match="cannot read"):
        read_trajectory(tmp_path / "nope.jsonl")


def test_cli_seeds_measure_trajectory_report(folders, tmp_path):
    lib = tmp_path / "lib.json.gz"
    result = runner.invoke(app, ["seeds", "build", folders[0], "--out", str(lib), "--tasks", "integer_1_10,coin_flip"])
    assert result.exit_code == 0, result.output
    assert "seed library written" in said(result)
    result = runner.invoke(app, ["seeds", "show", str(lib)])
    assert result.exit_code == 0 and "integer_1_10" in result.output and "s0" in result.output

    out = tmp_path / "m.json"
    result = runner.invoke(app, ["measure", folders[1], "--seeds", str(lib), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "One checkpoint has no history" in said(result)
    verdicts = json.loads(out.read_text())["seeds"]["tasks"]
    assert set(verdicts) == {"integer_1_10", "coin_flip"}  # the library's tasks by default
    from crystalwatch import SeedLibrary, load_model, measure
    from crystalwatch.phases import PhaseTracker
    from crystalwatch.trajectory import observe, one_shot

    model, tok = load_model(folders[1])  # the same reading through the Python API
    measured = measure(model, tok, list(verdicts))
    once = one_shot(measured, SeedLibrary.load(lib))
    assert {t: v["state"] for t, v in verdicts.items()} == {t: v["state"] for t, v in once.items()}
    # A run that starts at this checkpoint (not the library's base) measures change from its own start: liquid.
    records = observe(measured, SeedLibrary.load(lib), PhaseTracker(), step=0, index=0, run="r", label="", model="m")
    moved = {r.task for r in records if r.reference == "start"}
    states = {r.task: r.state for r in records if r.task in moved}
    assert moved and set(states.values()) <= {"liquid", "no_signal"}, states  # no_signal: too little coverage
    assert any(once[t]["state"] not in ("liquid", "no_signal") for t in moved)  # the one-shot reading, from the base

    traj = tmp_path / "t.jsonl"
    args = ["trajectory", folders[0], folders[1], folders[0], "--seeds", str(lib), "--out", str(traj)]
    result = runner.invoke(app, [*args, "--labels", "base,sft,back", "--steps", "0,100,200", "--run", "ladder"])
    assert result.exit_code == 0, result.output
    records = read_trajectory(traj)
    assert [(r["index"], r["step"], r["label"]) for r in records[::2]] == [(0, 0, "base"), (1, 100, "sft"),
                                                                         (2, 200, "back")]  # fmt: skip
    assert {r["run"] for r in records} == {"ladder"} and {r["library"] for r in records} == {
        SeedLibrary.load(lib).digest
    }
    # The base measured against its own library is judged on its own seeds: the first and last agree.
    assert records[0]["consensus"] == records[4]["consensus"] and records[0]["seed"] == records[4]["seed"]

    report = tmp_path / "report"
    result = runner.invoke(app, ["report", str(traj), "--out", str(report)])
    assert result.exit_code == 0, result.output
    html = (report / "index.html").read_text()
    assert "integer_1_10" in html and (report / "timeline.png").stat().st_size > 1000


def test_trajectory_without_seeds_builds_them_from_the_first_model(folders, tmp_path):
    traj = tmp_path / "t.jsonl"
    result = runner.invoke(app, ["trajectory", *folders, "--out", str(traj), "--tasks", "coin_flip"])
    assert result.exit_code == 0, result.output
    lib = SeedLibrary.load(tmp_path / "t.seeds.json")
    assert lib.provenance["model"] == folders[0] and list(lib.tasks) == ["coin_flip"]
    assert len(read_trajectory(traj)) == 2


def test_cli_errors_name_the_file(tmp_path, folders):
    bad = tmp_path / "lib.json"
    bad.write_text('{"schema": "crystalwatch.seeds/1", "provenance": {}, "tasks": {"coin_flip": ')
    result = runner.invoke(app, ["measure", folders[0], "--seeds", str(bad)])
    refused(result, "lib.json", "truncated")
    result = runner.invoke(app, ["seeds", "show", str(tmp_path / "none.json")])
    refused(result, "cannot read")
    result = runner.invoke(app, ["report", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "r")])
    refused(result, "none.jsonl")
    good = tmp_path / "good.json"
    SeedLibrary({"coin_flip": task_seeds([task_result("coin_flip", np.array([[0.5, 0.5], [0.9, 0.1]]))])}).save(good)
    result = runner.invoke(app, ["measure", folders[0], "--seeds", str(good), "--tasks", "weekday"])
    refused(result, "no seeds for task 'weekday'")
    result = runner.invoke(app, ["trajectory", folders[0], "--seeds", str(good), "--out", str(tmp_path / "x.jsonl"),
                                 "--labels", "a,b"])  # fmt: skip
    refused(result, "1 models but 2 labels")


def test_a_new_run_of_stages_keeps_the_last_runs_trajectory(tmp_path):
    """The demo and a recipe chain start a new trajectory where run_files says; the last run's file is kept
    beside it, not lost."""
    from crystalwatch.records import new_trajectory, run_files

    library, path = run_files(tmp_path)
    home = tmp_path / "crystalwatch"
    assert (library, path) == (home / "seeds.json.gz", home / "trajectory.jsonl")
    ladder = tmp_path / "ladder.jsonl"
    assert run_files(trajectory=ladder) == (tmp_path / "ladder.seeds.json", ladder)
    assert new_trajectory(tmp_path) == path and not list(path.parent.iterdir())
    path.write_text("run 1\n")
    new_trajectory(tmp_path)
    assert [p.name for p in path.parent.iterdir()] == ["trajectory.previous.jsonl"]
    path.write_text("run 2\n")
    new_trajectory(tmp_path)
    assert (path.parent / "trajectory.previous.jsonl").read_text() == "run 2\n"


def test_stored_events_are_read_as_typed_events_and_a_bad_one_is_named(tmp_path):
    """A committed trajectory's events come back as phases.Event (and are written back unchanged); an event that
    lacks a field is one error naming the file and the line."""
    from crystalwatch.phases import Event

    source = Path(__file__).parent.parent / "docs" / "experiments" / "calibration" / "seed25" / "trajectory.jsonl"
    lines = source.read_text().splitlines()
    with_event = next(line for line in lines if '"events": [{' in line)
    (record,) = read_trajectory_lines(tmp_path, [with_event], read_trajectory)
    assert record.events and all(isinstance(e, Event) for e in record.events)
    stored = json.loads(with_event)["events"]  # written before events had a kind: "transition" is the default
    assert record.to_json()["events"] == [{"kind": "transition", **e} for e in stored]
    broken = json.loads(with_event)
    del broken["events"][0]["to"]
    with pytest.raises(TrajectoryError, match=r"broken\.jsonl:1: an event lacks"):
        read_trajectory_lines(tmp_path, [json.dumps(broken)], read_trajectory, name="broken.jsonl")


def read_trajectory_lines(folder, lines, read, name="t.jsonl"):
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return read(path)
