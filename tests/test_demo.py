"""`crystalwatch demo --tiny` end to end: both stages, the trajectory, the report, the W&B offline runs."""

from __future__ import annotations

import json
import os

from cli_check import said
from typer.testing import CliRunner
from wandb_run import inspect_records, read_offline_run

from crystalwatch import read_trajectory
from crystalwatch.cli import app
from crystalwatch.records import run_files


def yaml_tasks() -> list[str]:
    """The demo's tasks, as its chain's stage config lists them (their one home)."""
    import yaml

    from crystalwatch.recipes.launch import CONFIGS

    return yaml.safe_load((CONFIGS / "demo" / "sft.yaml").read_text())["crystalwatch_tasks"]


def test_tiny_demo_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--tiny", "--out", str(out), "--wandb", "offline"])
    assert result.exit_code == 0, result.output
    assert "where each task ended" in said(result) and "wandb sync" in said(result)

    summary = json.loads((out / "summary.json").read_text())
    tasks = yaml_tasks()
    assert set(summary["tasks"]) == set(tasks) and [s["name"] for s in summary["stages"]] == ["sft", "dpo"]
    assert summary["trajectory"] == str(run_files(out)[1])  # where every run of stages keeps its trajectory
    records = read_trajectory(summary["trajectory"])
    steps = sorted({(r["index"], r["step"], r["label"]) for r in records})
    assert steps == [(0, 0, "sft"), (1, 10, "sft"), (2, 20, "sft"), (3, 30, "sft"), (4, 36, "dpo")]
    for task, t in summary["tasks"].items():
        assert t["state"] == [r for r in records if r["task"] == task][-1]["state"]

    html = (out / "report" / "index.html").read_text()
    assert all(task in html for task in tasks) and (out / "report" / "timeline.png").stat().st_size > 1000

    runs = {s["name"]: read_offline_run(s["wandb_dir"]) for s in summary["stages"]}
    headers = [next(r["run"] for r in inspect_records(stage["wandb_dir"]) if r["type"] == "run")
               for stage in summary["stages"]]  # fmt: skip
    grouping = [(h.get("run_group"), h.get("job_type")) for h in headers]
    assert grouping == [("crystalwatch-demo-demo", "sft"), ("crystalwatch-demo-demo", "dpo")]  # one experiment
    sft_rows = [h for h in runs["sft"]["history"] if "crystal/coin_flip/entropy" in h]
    assert [h["train/global_step"] for h in sft_rows] == [0, 10, 20, 30]
    dpo_rows = [h for h in runs["dpo"]["history"] if "crystal/coin_flip/entropy" in h]
    assert [h["train/global_step"] for h in dpo_rows] == [6]  # its own step axis; step 0 = SFT's last measurement
    assert any("train/loss" in h for h in runs["dpo"]["history"])
    chart = runs["sft"]["charts"]["crystal/integer_1_10/answers"]  # the answers over steps, one chart per task
    assert chart["panelDefId"] == "wandb/lineseries/v0" and chart["stringSettings"]["xname"] == "step"
    lines = runs["sft"]["tables"]["crystal/integer_1_10/answers_table"]["data"]
    assert sorted({step for step, _, _ in lines}) == [0, 10, 20, 30] and len({key for _, key, _ in lines}) >= 3
    assert os.path.isdir(summary["stages"][0]["wandb_dir"])


def test_the_demo_doses_1_10_on_held_out_questions_unless_told_not_to():
    """The demo's SFT mixes a quarter of 1-10 questions answered "10" into the chat data (so a nucleation is there
    to see), none of them a measured prompt; `--no-dose` is the everyday chat alone."""
    import sys
    from pathlib import Path

    import yaml

    from crystalwatch.data import chat_sft_path
    from crystalwatch.recipes.demo import DemoConfig, demo_chain
    from crystalwatch.tasks import load_task

    sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
    from calibration import check_held_out

    dosed, null = (yaml.safe_load(Path(demo_chain(DemoConfig(dose=d), None)["stages"][0]["config"]).read_text())
                   for d in (True, False))  # fmt: skip
    assert [(d["data_files"], d.get("fraction")) for d in dosed["datasets"]] == [
        ("crystalwatch-data:chat_sft.jsonl", 0.75), ("crystalwatch-data:demo_dose.jsonl", 0.25)]  # fmt: skip
    assert [d["data_files"] for d in null["datasets"]] == ["crystalwatch-data:chat_sft.jsonl"]
    assert {k: v for k, v in dosed.items() if k != "datasets"} == {k: v for k, v in null.items() if k != "datasets"}
    rows = [json.loads(line) for line in (chat_sft_path().parent / "demo_dose.jsonl").read_text().splitlines()]
    assert len(rows) == 120 and {r["messages"][1]["content"] for r in rows} == {"10"}
    check_held_out(load_task("integer_1_10"), sorted({r["messages"][0]["content"] for r in rows}))


def test_the_demo_summary_reads_in_a_log_and_on_a_terminal():
    """Printed to a log (not a terminal) or an 80-column terminal, the summary keeps task names whole and each
    transition on one line (rich's default table cut "integer_1…" and wrapped a transition over four lines)."""
    import subprocess
    import sys

    summary = json.dumps({"tasks": {"rock_paper_scissors": {
        "state": "nucleated", "seed": "s2", "seed_distance": 0.1, "entropy": [0.53, 0.21], "top": "rock",
        "transitions": [{"step": 40, "stage": "sft", "from": "liquid", "to": "nucleating", "seed": "s2"},
                        {"step": 100, "stage": "sft", "from": "nucleating", "to": "nucleated", "seed": "s2"}]}},
        "stages": [], "seconds": 1.0, "library_seconds": 0.5, "trajectory": "t.jsonl", "report": "r/index.html",
        "wandb_mode": None})  # fmt: skip
    code = ("import json; from crystalwatch.recipes.demo import print_demo_summary; "
            f"print_demo_summary(json.loads({summary!r}))")
    for columns in (None, "80"):
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | ({"COLUMNS": columns} if columns else {})
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
        assert "…" not in out and max(map(len, out.splitlines())) <= (80 if columns else 200), out
        row = next(line for line in out.splitlines() if "rock_paper_scissors" in line)
        assert row.split()[:6] == ["rock_paper_scissors", "nucleated", "s2", "0.100", "0.53->0.21", "rock"], out
        assert "  step 40 (sft): rock_paper_scissors liquid -> nucleating onto s2\n" in out, out
        assert "  step 100 (sft): rock_paper_scissors nucleating -> nucleated onto s2\n" in out, out
