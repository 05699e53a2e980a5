"""The examples that use the Monitor in loops of their own, run end to end on a tiny model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from crystalwatch import read_trajectory

EXAMPLES = Path(__file__).parent.parent / "examples"


def example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_accelerate_loop(tmp_path):
    """An Accelerate + PyTorch SFT loop: measured at 0, every 3 steps and at the end; TensorBoard events written."""
    out = tmp_path / "acc"
    traj = example("accelerate_loop").main(["--tiny", "--steps", "7", "--every", "3", "--out", str(out),
                                            "--report-to", "tensorboard"])  # fmt: skip
    records = read_trajectory(traj)
    assert [(r.step, r.task) for r in records] == [(s, t) for s in (0, 3, 6, 7) for t in ("integer_1_10", "coin_flip")]
    assert {r.run for r in records} == {"acc"} and all(r.library for r in records)
    assert (out / "crystalwatch" / "seeds.json.gz").is_file()  # built from the starting model
    assert list((out / "runs" / "crystalwatch").glob("events.out.tfevents.*"))


def test_reinforce_loop(tmp_path):
    """A loop that samples, rewards and updates the policy itself; the Monitor measures between updates."""
    traj = example("reinforce_loop").main(["--tiny", "--steps", "8", "--every", "4", "--samples", "4",
                                           "--out", str(tmp_path / "rl")])  # fmt: skip
    records = read_trajectory(traj)
    assert [(r.step, r.label) for r in records] == [(0, "rl"), (4, "rl"), (8, "rl")]
    assert records[0].consensus != records[-1].consensus  # the policy moved between measurements
    assert records[0].trainer == {} and set(records[1].trainer) == {"reward"}  # its reward, beside the readings


def test_reinforce_loop_acts_on_the_readings_transitions(tmp_path, capsys):
    """The reward pulls integer_1_10 onto 7 within 40 steps; the loop reads each reading's transitions and, with
    every state but liquid in --save-on and --stop-on, saves the policy and stops at the first transition's step
    (whichever state the phase model names: the test is about the loop acting, not the reading)."""
    from crystalwatch.phases import STATES

    states = ",".join(s for s in STATES if s != "liquid")
    out = tmp_path / "rl"
    traj = example("reinforce_loop").main(["--tiny", "--steps", "40", "--every", "4", "--samples", "8", "--lr", "3e-3",
                                           "--out", str(out), "--save-on", states, "--stop-on", states])  # fmt: skip
    records = read_trajectory(traj)
    [event] = [e for r in records for e in r.events]  # the run ended at its first transition
    assert records[-1].step == event.step < 40 and event.from_state == "liquid"
    said = capsys.readouterr().out
    assert f"transition: step {event.step}: integer_1_10 liquid -> {event.to_state}" in said
    assert f"stopping: step {event.step}: integer_1_10 liquid -> {event.to_state} (stop: stop_on)" in said
    assert [p.name for p in out.glob("policy-*")] == [f"policy-{event.step}"]
