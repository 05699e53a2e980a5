"""The benchmarks' own code: scoring.py and scaling.py end to end in their --smoke modes (tiny models, seconds), the
two lower bounds' token accounting, callback.py's timers and statistics, and scaling.py's fit and docs block."""

from __future__ import annotations

import importlib
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).parent.parent / "bench"
sys.path.insert(0, str(BENCH))


def _run(script: str, out: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, str(BENCH / script), "--smoke", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def test_scoring_smoke(tmp_path):
    _run("scoring.py", tmp_path)
    res = json.loads((tmp_path / "scoring.json").read_text())
    smol = res["models"]["smollm2"]
    assert res["smoke"] and res["runs"] == 1
    for key in ("exact_over_layout_bound", "exact_over_global_bound"):
        assert smol[key] > 0 and res[key] == {smol["model"]: smol[key]}
    for method in ("exact", "layout_bound", "global_bound", "naive"):
        assert len(smol[method]["runs"]) == 1 and smol[method]["min_s"] <= smol[method]["median_s"]
    assert smol["naive_max_abs_diff"] < 1e-4
    w = smol["workload"]
    assert w["global_tokens"] <= w["layout_tokens"] <= w["layout_padded_tokens"]
    text = (tmp_path / "scoring.md").read_text()
    assert "exact ÷ global bound" in text and "Smoke run" in text


def test_scaling_smoke(tmp_path):
    _run("scaling.py", tmp_path)
    res = json.loads((tmp_path / "scaling.json").read_text())
    assert {p["axis"] for p in res["points"]} == {"vocabulary", "model", "tasks", "prompts"}
    assert res["fit"]["points"] >= 3 and res["example"] is None
    assert (tmp_path / "scaling.png").stat().st_size > 10_000


@pytest.fixture(scope="module")
def requests_2_tasks(tokenizer):
    from crystalwatch.scoring import build_requests, terminator_ids
    from crystalwatch.tasks import load_tasks

    term = terminator_ids(tokenizer, "boundary")
    return [r for t in load_tasks()[:2] for kind in ("chat", "completion") for r in build_requests(t, tokenizer, kind,
                                                                                                   term)]  # fmt: skip


def test_bounds_run_each_trie_node_once(requests_2_tasks, llama):
    scoring = importlib.import_module("scoring")
    from crystalwatch.scoring import trie

    requests = requests_2_tasks
    whole = scoring.global_trie(requests)
    packed = scoring.global_batches(requests)
    assert torch.cat([ids.flatten() for ids, _, _ in packed]).tolist() == whole.tokens  # every node once, no padding
    assert all(ids.shape[1] <= scoring.ROW_TOKENS for ids, _, _ in packed)
    assert sum(len(rows) for _, rows, _ in packed) == len(whole.needed)
    blocks = trie.layout(requests, scoring.ROW_TOKENS)
    by_layout = scoring.layout_batches(requests)
    exacts = trie.batches(blocks, scoring.BATCH_TOKENS)  # what score_requests runs: the same blocks, same batches
    assert len(by_layout) == len(exacts)
    for (ids, rows, cols), batch in zip(by_layout, exacts):
        assert [ids[r, : b.length].tolist() for r, b in enumerate(batch)] == [b.tokens for b in batch]
        assert list(zip(rows.tolist(), cols.tolist())) == [(r, o) for r, b in enumerate(batch) for o in b.needed]
    w = scoring.workload(requests)
    assert w["global_tokens"] == trie.unique_tokens(requests) <= w["layout_tokens"]
    scoring.lower_bound(llama, packed)  # runs on a real (tiny) model
    scoring.lower_bound(llama, by_layout)


def test_callback_timers_count_nested_monitor_calls_once():
    callback = importlib.import_module("callback")

    class Fake:
        def start(self):
            self.measure()

        def measure(self):
            return 1

    timers, fake = callback.Timers(), Fake()
    for name in ("start", "measure"):
        timers.wrap(fake, name, f"monitor.{name}", monitor=True)
    fake.start()
    fake.measure()
    assert timers.calls["monitor.measure"] == 2 and timers.calls["monitor.measure@start"] == 1
    assert timers.calls["own"] == 2  # start (with its measurement) and the lone measurement
    outer = timers.seconds["monitor.start"] + timers.seconds["monitor.measure@top"]
    assert timers.seconds["own"] == pytest.approx(outer)


def _fake_run(arm: str, wall: float) -> dict:
    seconds = {
        "own": 2.0,
        "monitor.measure": 1.5,
        "monitor.measure@start": 0.5,
        "monitor.start": 0.7,
        "scoring (measure.run)": 1.0,
        "bars: W&B native chart (bars_chart)": 0.2,
        "sink wandb.write": 0.3,
    }
    seconds = seconds if arm == "with" else {}
    return {"arm": arm, "wall_s": wall, "seconds": seconds, "calls": {k: 1 for k in seconds}, "child_cpu_s": 0.1,
            "other_cpu_cores": 0.0, "measurements": 3, "errors": 0}  # fmt: skip


def test_callback_statistics_and_report(tmp_path):
    import argparse

    callback = importlib.import_module("callback")
    walls = [(100.0, 101.0), (102.0, 104.0), (99.0, 100.5)]
    runs = []
    for i, (a, b) in enumerate(walls):  # the order flips every other pair, as in main()
        pair = [_fake_run("without", a), _fake_run("with", b)]
        runs += pair if i % 2 == 0 else pair[::-1]
    opts = argparse.Namespace(quick=True, steps=100, save_steps=50, tasks=2)
    r = callback.analyse(runs, opts, 1.0)
    diffs = [b - a for a, b in walls]
    assert r["paired_diff_s"] == diffs
    assert r["callback_wall_share"] == pytest.approx(statistics.fmean(diffs) / statistics.fmean(a for a, _ in walls))
    low, high = r["callback_wall_share_ci95"]
    assert low < r["callback_wall_share"] < high
    assert r["callback_own_share"] == pytest.approx(statistics.median(2.0 / (b - 2.0) for _, b in walls))
    parts = r["breakdown_s"]
    assert parts["measurements: bar charts (W&B native, TensorBoard image)"] == pytest.approx(0.2)
    assert parts["measurements: sink writes without images"] == pytest.approx(0.1)
    callback.write(r, tmp_path)
    text = (tmp_path / "callback.md").read_text()
    assert "wall-time share" in text and "own-time share" in text and "Quick run" in text


def test_scaling_fit_recovers_a_known_formula_and_writes_the_docs_block(tmp_path, monkeypatch):
    scaling = importlib.import_module("scaling")
    truth = {"body_flops": 1e-11, "head_flops": 2e-11, "head_elements": 1e-9, "body_tokens": 1e-5, "layer_calls": 1e-3}
    rng = np.random.default_rng(0)
    points = []
    for i in range(12):
        scale = rng.uniform(0.5, 2.0, len(truth)) / np.array(list(truth.values()))  # every term matters
        feats = {k: float(v) for k, v in zip(truth, scale)}
        t = sum(truth[k] * feats[k] for k in truth)
        w = {"requests": i, "padded_tokens": 1000, "head_positions": 300, "unique_tokens": 900}
        points.append({"axis": "tasks", "value": 15 if i == 0 else i, "label": f"p{i}", "kind": "chat", "workload": w,
                       "features": feats, "timing": {"median_s": t}})  # fmt: skip
    model_fit = scaling.fit(points)
    assert model_fit["relative_rms_error"] < 1e-6
    for k, v in truth.items():
        assert model_fit["coefficients"][k] == pytest.approx(v, rel=1e-4)
    points[0]["workload"].update(attention_rows_l2=8 * 512**2, batches=3)
    points.append({**points[1], "value": "gemma-3-270m"})
    result = {"fit": model_fit, "points": points, "example": scaling.example(points, model_fit),
              "machine": {"cores": 2, "cpu": "CPU"}}  # fmt: skip
    assert result["example"]["seconds"] > 0 and result["example"]["steps_equivalent"] > 0
    doc = tmp_path / "callback.md"
    doc.write_text(f"# title\n\nbefore\n\n{scaling.BEGIN}\nold\n{scaling.END}\n\nafter\n")
    monkeypatch.setattr(scaling, "DOCS", doc)
    scaling.update_docs(result)
    text = doc.read_text()
    assert text.startswith("# title\n\nbefore\n\n" + scaling.BEGIN) and text.endswith(scaling.END + "\n\nafter\n")
    assert "old" not in text and "Extrapolation, not measured" in text


def test_callback_reads_the_errors_the_callback_reported():
    callback = importlib.import_module("callback")
    log = ("crystalwatch: error while writing to the trackio sink (training continues; strict=True raises):\n"
           "Traceback (most recent call last):\n  File \"x.py\", line 1, in f\n    g()\nRuntimeError: no run\n"
           "{'loss': 1.0}\ncrystalwatch: error while closing the mlflow sink: ValueError: bad\n")  # fmt: skip
    assert callback.reported_errors(log) == [
        "crystalwatch: error while writing to the trackio sink (training continues; strict=True raises): "
        "RuntimeError: no run",
        "crystalwatch: error while closing the mlflow sink: ValueError: bad",
    ]


def test_calibration_training_data_holds_out_the_measured_prompts():
    """bench/calibration.py: every built-in paraphrase shares no 4-word span with its task's prompts; a question
    that does is refused with its words; the injected share and answers are as asked."""
    calibration = importlib.import_module("calibration")
    from crystalwatch.tasks import load_task

    for task_id, questions in calibration.PARAPHRASES.items():
        calibration.check_held_out(load_task(task_id), questions)
    with pytest.raises(SystemExit, match="shares 'a random number between'"):
        calibration.check_held_out(load_task("integer_1_10"), ["Give me a random number between 1 and 10."])
    rows = calibration.training_rows({"integer_1_10": "10", "weekday": "uniform"}, 0.25, 400, 0, None)
    injected = [r for r in rows if r["messages"][0]["content"] in
                calibration.PARAPHRASES["integer_1_10"] + calibration.PARAPHRASES["weekday"]]  # fmt: skip
    assert len(rows) == 400 and len(injected) == 100
    answers = [r["messages"][1]["content"] for r in injected]
    assert answers.count("10") == 50 and len(set(answers) - {"10"}) >= 5  # weekday's answers drawn uniformly


def test_calibration_table_rereads_a_trajectory(tmp_path):
    """calibration_table reads an arm's trajectory back with the checkout's phase model."""
    table = importlib.import_module("calibration_table")
    arm = tmp_path / "null"
    arm.mkdir()
    source = BENCH.parent / "docs" / "experiments" / "calibration" / "null" / "trajectory.jsonl"
    arm.joinpath("trajectory.jsonl").write_text("".join(source.read_text().splitlines(True)[:45]))
    result = table.summarise(tmp_path, {"null": {"fraction": 0.0, "targets": {}, "seed": 0}})
    tasks = result["arms"]["null"]["tasks"]
    assert len(tasks) == 15 and all(t["steps"] == [0, 10, 20] for t in tasks.values())
    assert all(abs(t["collapse"][0]) < 1e-6 for t in tasks.values())  # the base against its own library
    assert "## Target tasks" in table.markdown(result)


def test_the_committed_crystal_and_real_tables_are_what_the_code_prints():
    """docs/experiments/rl/crystal_results.md and docs/real/reread.md are generated, never retyped: re-reading the
    committed trajectories with today's phase model prints them again, to the character."""
    import real_reread
    import rl_crystal_table

    root = BENCH.parent / "docs"
    assert real_reread.table() == (root / "real" / "reread.md").read_text()
    result, lines, _ = rl_crystal_table.results()
    assert "\n".join(lines) + "\n" == (root / "experiments" / "rl" / "crystal_results.md").read_text()
    assert result["pass"]["holds"] == "5 of 5" and result["pass"]["settling_on_time"] == "3 of 3"
