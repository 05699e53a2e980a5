"""`crystalwatch demo --tiny` end to end: both stages, the trajectory, the report, the W&B offline runs."""

from __future__ import annotations

import json
import os

from cli_check import said
from typer.testing import CliRunner
from wandb_run import inspect_records, read_offline_run

from crystalwatch import read_trajectory
from crystalwatch.cli import app
from crystalwatch.demo import DEMO_TASKS
from crystalwatch.records import run_files


def test_tiny_demo_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--tiny", "--out", str(out), "--wandb", "offline"])
    assert result.exit_code == 0, result.output
    assert "where each task ended" in said(result) and "wandb sync" in said(result)

    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["tasks"]) == set(DEMO_TASKS) and [s["name"] for s in summary["stages"]] == ["sft", "dpo"]
    assert summary["trajectory"] == str(run_files(out)[1])  # where every run of stages keeps its trajectory
    records = read_trajectory(summary["trajectory"])
    steps = sorted({(r["index"], r["step"], r["label"]) for r in records})
    assert steps == [(0, 0, "sft"), (1, 10, "sft"), (2, 20, "sft"), (3, 30, "sft"), (4, 36, "dpo")]
    for task, t in summary["tasks"].items():
        assert t["state"] == [r for r in records if r["task"] == task][-1]["state"]

    html = (out / "report" / "index.html").read_text()
    assert all(task in html for task in DEMO_TASKS) and (out / "report" / "timeline.png").stat().st_size > 1000

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
    assert os.path.isdir(summary["stages"][0]["wandb_dir"])
