"""The `crystalwatch` command on a tiny local model folder and a user's own task file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from cli_check import refused
from typer.testing import CliRunner

from crystalwatch.cli import app

runner = CliRunner()


def test_tasks_lists_the_builtin_tasks():
    result = runner.invoke(app, ["tasks"])
    assert result.exit_code == 0, result.output
    for task_id in ("integer_1_10", "playing_card", "us_state", "yes_no"):
        assert task_id in result.output
    assert "52" in result.output  # playing cards


def test_measure_local_folder_with_user_task(tmp_path, llama, tokenizer):
    from tiny import save

    folder = save(llama, tokenizer, tmp_path / "tiny")
    task = {
        "id": "fruit",
        "version": 2,
        "description": "Name a fruit.",
        "outcomes": ["apple", "banana", "cherry"],
        "completion_prompts": [{"id": "qa", "text": "Q: Name a fruit.\nA:"}],
        "chat_prompts": [
            {"id": "plain", "user": "Name a fruit."},
            {"id": "pre", "user": "Fruit?", "prefill": "I say"},
        ],
    }
    task_path = tmp_path / "fruit.yaml"
    task_path.write_text(yaml.safe_dump(task))
    out = tmp_path / "out" / "m.json"
    result = runner.invoke(app, ["measure", str(folder), "--tasks", f"coin_flip,{task_path}", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "fruit" in result.output and "coin_flip" in result.output
    audit = json.loads(out.read_text())
    fruit = audit["tasks"]["fruit"]
    assert fruit["version"] == 2 and fruit["outcomes"] == ["apple", "banana", "cherry"]
    assert [v["variant"] for v in fruit["variants"]] == ["plain", "pre"]
    assert fruit["variants"][1]["prompt"].endswith("I say")
    assert fruit["variants"][1]["continuations"]["apple"][0]["text"] == " apple"


def test_measure_sampled_and_completion(tmp_path, llama, tokenizer):
    from tiny import save

    folder = save(llama, tokenizer, tmp_path / "tiny")
    args = ["measure", str(folder), "--tasks", "yes_no", "--estimator", "sampled", "--samples", "20", "--kind"]
    result = runner.invoke(app, [*args, "completion", "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    variant = json.loads((tmp_path / "s.json").read_text())["tasks"]["yes_no"]["variants"][0]
    assert sum(variant["counts"].values()) + variant["invalid"] == 20


def test_clear_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: bad\nversion: 1\n")
    result = runner.invoke(app, ["tasks", "--tasks", str(bad)])
    refused(result, "bad.yaml", "description")
    result = runner.invoke(app, ["measure", str(tmp_path / "nowhere.gguf")])
    refused(result, "GGUF file not found")


def test_ctrl_c_is_one_line_and_other_errors_pass_through(monkeypatch, capsys, tmp_path):
    """main(): typer's Abort (Ctrl-C) is "error: aborted", exit 130; an unexpected exception reaches the caller as
    itself (main once failed on its own `except` clause, typer keeping Abort outside its vendored click)."""
    import typer

    import crystalwatch.report
    from crystalwatch.cli import main

    trajectory = str(Path(__file__).parent.parent / "docs" / "demo" / "trajectory.jsonl")

    def abort(*args, **kwargs):
        raise typer.Abort()

    monkeypatch.setattr(crystalwatch.report, "render_report", abort)
    with pytest.raises(SystemExit) as exit_:
        main(["report", trajectory, "--out", str(tmp_path)])
    said = capsys.readouterr()
    assert exit_.value.code == 130 and "error: aborted" in said.out + said.err

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(crystalwatch.report, "render_report", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["report", trajectory, "--out", str(tmp_path)])


@pytest.mark.parametrize("width", [80, 120, 200])
def test_verdict_table_prints_every_cell_whole_at_terminal_widths(width, monkeypatch):
    """On an 80-column terminal the one-checkpoint table leaves columns out (and says which), never cuts a task
    name, a state or a number to an ellipsis."""
    from crystalwatch.cli.tables import VERDICT_COLUMNS, print_verdicts
    from crystalwatch.sinks.console import console

    m = {"seed_distance": 0.0123, "seed_margin": 0.0456, "seed_support_mass": 0.93, "temperature": 0.71,
         "tempered_distance": 0.0101, "seed_pvalue": 0.005, "collapse": -0.12, "coverage": 0.0123}  # fmt: skip
    verdicts = {"rock_paper_scissors": {"state": "polycrystalline", "seed": "s12", "metrics": m},
                "integer_1_100": {"state": "nucleating", "seed": "s1", "metrics": m}}  # fmt: skip
    monkeypatch.setattr(console, "width", width)
    with console.capture() as out:
        print_verdicts(verdicts, "pypi:smollm2-135m-instruct against gemma-3-270m.seeds.json.gz")
    text = out.get()
    assert "…" not in text and max(map(len, text.splitlines())) <= width
    for word in ("rock_paper_scissors", "polycrystalline", "integer_1_100", "nucleating", "0.012", "-0.12", "0.0123"):
        assert word in text
    header = text.splitlines()[1].split()
    assert header[:4] == ["task", "state", "seed", "distance"]
    assert (width == 200) == (header == list(VERDICT_COLUMNS)) and ("left out" in text) == (width < 200)
