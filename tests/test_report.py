"""The HTML/PNG report of a trajectory: built from synthetic trajectories written with TrajectoryWriter."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crystalwatch.records import Record, TrajectoryError, read_trajectory
from crystalwatch.report import render_report
from crystalwatch.sinks.jsonl import TrajectoryWriter

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ODD = "<b>&\"odd\"</b> $5"  # HTML special characters (and a mathtext dollar) in data


def _dist(k: int, peak: int, mass: float) -> list[float]:
    p = np.full(k, (1 - mass) / (k - 1))
    p[peak] = mass
    return p.tolist()


def _record(run, index, task, outcomes, state, *, step=None, label="", seed=True, events=(), metrics=None):
    k = len(outcomes)
    base = {"entropy": 1.0 - 0.1 * index, "diversity": 0.5, "coverage": 0.4, "collapse": 0.1 * index,
            "seed_distance": 0.2, "seed_margin": 0.1, "seed_support_mass": 0.9, "temperature": 1.0 / (index + 1),
            "tempered_distance": 0.05, "seed_pvalue": 0.5, "velocity": None if index == 0 else 0.01}  # fmt: skip
    return Record(**{
        "run": run, "index": index, "step": index * 10 if step is None else step, "label": label,
        "model": "tiny/model", "time": f"2026-11-21T10:{index:02d}:00Z", "task": task, "kind": "chat",
        "estimator": "exact", "terminators": "boundary", "library": "abc" if seed else None,
        "outcomes": outcomes, "consensus": _dist(k, 0, 0.2 + 0.1 * index),
        "seed": "s1" if seed else None, "seed_centroid": _dist(k, 0, 0.6) if seed else None,
        "metrics": {**base, **(metrics or {})}, "candidate": state, "state": state, "events": list(events),
    })  # fmt: skip


def _event(step, task, old, new, seed="s1"):
    return {"step": step, "task": task, "from": old, "to": new, "seed": seed, "since": step - 10, "remelt": False}


def _write(path: Path, records: list[dict]) -> Path:
    TrajectoryWriter(path).write(records)
    return path


def _two_tasks() -> list[dict]:
    """Two tasks, 6 measurements: integer_1_10 nucleates at step 30; the odd task has no seed library."""
    numbers = [str(i) for i in range(1, 11)]
    records = []
    for i in range(6):
        state = "liquid" if i < 3 else "nucleated"
        events = [_event(30, "integer_1_10", "liquid", "nucleated")] if i == 3 else []
        nulls = {"temperature": None, "seed_distance": None} if i == 2 else {}
        records.append(_record("run-a", i, "integer_1_10", numbers, state, events=events, metrics=nulls))
        seedless = {"seed_distance": None, "tempered_distance": None, "temperature": None, "seed_margin": None}
        records.append(_record("run-a", i, ODD, [ODD, "tails"], "no_signal", seed=False, metrics=seedless))
    return records


def _ladder() -> list[dict]:
    """A checkpoint ladder with labels over a 52-outcome task."""
    cards = [f"{rank} of {suit}" for suit in ("Spades", "Hearts", "Diamonds", "Clubs") for rank in
             ("Ace", *map(str, range(2, 11)), "Jack", "Queen", "King")]  # fmt: skip
    cards[11] = ODD
    labels = ["base", "sft", f"dpo {ODD}", "final"]
    states = ["liquid", "nucleating", "settling", "settled"]
    return [
        _record("ladder", i, "playing_card", cards, states[i], step=[0, 100, 250, 400][i], label=labels[i],
                events=[_event([0, 100, 250, 400][i], "playing_card", states[i - 1], states[i])] if i else [])
        for i in range(4)
    ]  # fmt: skip


def _images(index: Path) -> list[str]:
    text = index.read_text(encoding="utf-8")
    return re.findall(r"<img src='([^']+)'", text)


def _check_pngs(index: Path) -> list[str]:
    names = _images(index)
    assert names, "the report shows no images"
    for name in names:
        path = index.parent / name
        assert path.is_file(), f"{name} is linked but missing"
        assert path.read_bytes()[:8] == PNG_MAGIC
        with Image.open(path) as img:
            width, height = img.size
        assert width > 100 and height > 100
        assert path.stat().st_size < 300_000, f"{name} is too large ({path.stat().st_size} bytes)"
    return names


def test_two_tasks_report(tmp_path):
    traj = _write(tmp_path / "traj.jsonl", _two_tasks())
    index = render_report(traj, tmp_path / "report" / "nested")
    assert index == tmp_path / "report" / "nested" / "index.html"
    names = _check_pngs(index)
    assert "timeline.png" in names
    assert len([n for n in names if n.startswith("task-")]) == 2
    assert len([n for n in names if n.startswith("answers-")]) == 2  # each task's answers over steps
    assert len([n for n in names if n.startswith("bars-")]) == 2
    assert sorted(p.name for p in index.parent.glob("*.png")) == sorted(names)
    text = index.read_text(encoding="utf-8")
    assert "run-a" in text and "6 measurements" in text and "tiny/model" in text
    table = text.split("<table>")[1].split("</table>")[0]
    assert "nucleated" in table and "no_signal" in table
    assert "liquid→nucleated @30 (s1)" in table
    assert ODD not in text  # escaped everywhere, never raw
    assert "&lt;b&gt;&amp;&quot;odd&quot;&lt;/b&gt; $5" in text
    # overwriting an existing report is fine, and a title can be given
    assert render_report(traj, tmp_path / "report" / "nested", title="T <1>") == index
    assert "<h1>T &lt;1&gt;</h1>" in index.read_text(encoding="utf-8")


def test_ladder_with_52_outcomes(tmp_path):
    traj = _write(tmp_path / "ladder.jsonl", _ladder())
    index = render_report(traj, tmp_path / "out")
    names = _check_pngs(index)
    assert {"timeline.png", "task-playing_card.png", "bars-playing_card.png"} <= set(names)
    text = index.read_text(encoding="utf-8")
    assert "settled" in text.split("<table>")[1]
    assert "nucleating→settling @250 (s1)" in text
    assert ODD not in text
    assert "dpo &lt;b&gt;&amp;&quot;odd&quot;&lt;/b&gt; $5 @250" in text  # the label, escaped
    assert "Ace of Spades" in text  # the top outcome


def test_several_runs_from_records(tmp_path):
    records = _two_tasks() + [replace(r, run="run-b", step=r.step + 5) for r in _two_tasks()[:6]]
    index = render_report(records, tmp_path)
    names = _check_pngs(index)
    assert len([n for n in names if n.startswith("bars-")]) == 4  # one per (task, run)
    assert {"timeline-run-a.png", "timeline-run-b.png"} <= set(names)  # one per run
    assert "run-a, run-b" in index.read_text(encoding="utf-8")


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="no records"):
        render_report([], tmp_path)
    with pytest.raises(TrajectoryError):
        render_report(tmp_path / "missing.jsonl", tmp_path)
    (tmp_path / "bad.jsonl").write_text("not json\n{}\n", encoding="utf-8")
    with pytest.raises(TrajectoryError):
        render_report(tmp_path / "bad.jsonl", tmp_path)


@pytest.mark.parametrize("committed", ["docs/demo/trajectory.jsonl", "docs/real/ladder.jsonl"])
def test_committed_trajectories_still_load_and_render(committed, tmp_path):
    """Files written before the Record type existed read and render unchanged."""
    path = Path(__file__).parent.parent / committed
    records = read_trajectory(path)
    index = render_report(path, tmp_path)
    html = index.read_text()
    assert all(r.task in html for r in records) and (tmp_path / "timeline.png").stat().st_size > 1000
    assert [json.loads(line)["consensus"] for line in path.read_text().splitlines()] == [r.consensus for r in records]


def test_the_timeline_shows_the_trainers_own_signals_under_the_readings(tmp_path):
    """A GRPO run's reward and entropy (``Record.trainer``) are drawn column by column under the phase timeline."""
    from crystalwatch.report.figures import trainer_signals

    plain = _two_tasks()
    rl = [replace(r, trainer={} if r.index == 0 else {"reward": 0.1 * r.index, "entropy": 2 - 0.2 * r.index,
                                                     "loss": 0.5, "kl": 0.01})
          for r in plain]  # fmt: skip
    signals = trainer_signals(rl, sorted({r.step for r in rl}))
    assert list(signals) == ["reward", "entropy", "kl"]  # the three first in SIGNAL_ORDER, not loss
    assert np.isnan(signals["reward"][0]) and signals["reward"][1:] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    heights = []
    for name, records in (("plain", plain), ("rl", rl)):
        index = render_report(records, tmp_path / name)
        _check_pngs(index)
        with Image.open(index.parent / "timeline.png") as img:
            heights.append(img.size[1])
    assert heights[1] > heights[0] + 150  # three signal rows under the tasks' rows
    again = read_trajectory(_write(tmp_path / "rl.jsonl", rl))  # the field survives the file
    assert again[2].trainer == {"reward": 0.1, "entropy": 1.8, "loss": 0.5, "kl": 0.01}


def test_runs_side_by_side_from_files_and_run_folders(tmp_path):
    """`crystalwatch report A B`: two trajectories (a file, and a run folder holding crystalwatch/trajectory.jsonl)
    whose runs share a name are told apart by their folders, and each task's answers are drawn per run."""
    from typer.testing import CliRunner

    from crystalwatch.cli import app
    from crystalwatch.report.figures import leading_answers

    a = _write(tmp_path / "dose" / "traj.jsonl", _two_tasks())
    (tmp_path / "control" / "crystalwatch").mkdir(parents=True)
    _write(tmp_path / "control" / "crystalwatch" / "trajectory.jsonl", _two_tasks())
    done = CliRunner().invoke(app, ["report", str(a), str(tmp_path / "control"), "--out", str(tmp_path / "out")])
    assert done.exit_code == 0, done.output
    index = tmp_path / "out" / "index.html"
    names = _check_pngs(index)
    assert {"timeline-dose_run-a.png", "timeline-control_run-a.png", "answers-integer_1_10.png"} <= set(names)
    assert "dose/run-a, control/run-a" in index.read_text(encoding="utf-8")
    recs = [Record.from_json(r.to_json()) for r in _two_tasks() if r.task == "integer_1_10"]
    assert leading_answers({"r": recs})[0] == 0  # the answer that rose to 0.7 comes first


def test_report_rereads_old_runs_with_todays_phase_model_and_picks_tasks(tmp_path):
    """`crystalwatch report --seeds LIB --tasks T`: the calibration arms were written by phase model v2 (1-10 `liquid`
    to the end of `seed25` as stored); re-read against the gemma library, the page shows today's readings."""
    from typer.testing import CliRunner

    from crystalwatch.cli import app

    root = Path(__file__).parent.parent
    arms = [root / "docs" / "experiments" / "calibration" / arm for arm in ("null", "seed25")]
    library = root / "docs" / "real" / "gemma-3-270m.seeds.json.gz"
    written = [r.state for r in read_trajectory(arms[1] / "trajectory.jsonl") if r.task == "integer_1_10"]
    assert set(written) == {"liquid"}  # as written on 2026-12-02
    run = CliRunner().invoke(app, ["report", *map(str, arms), "--seeds", str(library), "--tasks", "integer_1_10",
                                   "--out", str(tmp_path / "r")])  # fmt: skip
    assert run.exit_code == 0, run.output
    page = (tmp_path / "r" / "index.html").read_text()
    assert "nucleating→nucleated @110 (s2)" in page and "weekday" not in page
    assert sorted(p.name for p in (tmp_path / "r").glob("answers-*.png")) == ["answers-integer_1_10.png"]
    bad = CliRunner().invoke(app, ["report", str(arms[0]), "--tasks", "integer_1_10,nope", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "no records of task(s) nope" in bad.output and "Traceback" not in bad.output


def test_a_runs_report_folder():
    from crystalwatch.records import report_folder

    assert report_folder("out/crystalwatch/trajectory.jsonl") == Path("out/report")  # a run folder's (run_files)
    assert report_folder("ladder.jsonl") == Path("report")
    assert report_folder("/home/u/crystalwatch/run.jsonl") == Path("/home/u/crystalwatch/report")  # not a run folder
