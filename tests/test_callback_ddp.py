"""Two training processes (torchrun, gloo, CPU): no deadlock, every value written and logged exactly once."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

from crystalwatch.callback import trajectory_of

CONFIGS = Path(__file__).parent.parent / "recipes" / "accelerate_configs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(config: str, script: str, *args: str, env: dict | None = None, fails: bool | None = False
           ) -> subprocess.CompletedProcess:  # fmt: skip
    """``accelerate launch --config_file recipes/accelerate_configs/<config>.yaml``, as users launch,
    on 2 CPU processes (the shipped configs are for GPUs: the process count and mixed precision are overridden).
    The run must succeed (``fails``: must fail; None: either). The timeout guards against a hang only; no test
    waits on it."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / f"{config}.yaml"),
           "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(_free_port()),
           str(Path(__file__).parent / script), *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "PYTHONFAULTHANDLER": "1",
           "TORCH_SHOW_CPP_STACKTRACES": "1", **(env or {})}  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert fails is None or (done.returncode != 0) == fails, done.stdout[-3000:] + _shown(done.stderr)[-6000:]
    return done


def _shown(stderr: str) -> str:
    """stderr without faulthandler's list of extension modules, which would push the threads' stacks out of view."""
    return re.sub(r"Extension modules:.*?\(total: \d+\)", "[extension modules]", stderr, flags=re.S)


def _torchrun(tmp_path, tokenizer, *args: str) -> subprocess.CompletedProcess:
    from tiny import build_model, save

    folder = save(build_model("llama", len(tokenizer), seed=0), tokenizer, tmp_path / "tiny")
    return launch("ddp", "ddp_sft.py", str(folder), str(tmp_path / "out"), *args,
                  env={"WANDB_DIR": str(tmp_path / "wandb")})  # fmt: skip


def test_two_processes_measure_in_lockstep_and_log_once(tmp_path, tokenizer):
    from wandb_run import latest_run_dir, read_offline_run

    done = _torchrun(tmp_path, tokenizer)
    out = tmp_path / "out"
    assert "rank 0: errors=0 measured=4" in done.stdout and "rank 1: errors=0 measured=4" in done.stdout
    records = trajectory_of(out)
    assert [(r["step"], r["task"]) for r in records] == [
        (s, t) for s in (0, 2, 4, 6) for t in ("integer_1_10", "coin_flip", "yes_no")
    ]  # written once, by the main process only
    run = read_offline_run(latest_run_dir(tmp_path / "wandb" / "wandb"))
    rows = [h for h in run["history"] if "crystal/yes_no/entropy" in h]
    assert [h["train/global_step"] for h in rows] == [0, 2, 4, 6]  # logged once per measurement


def test_adaptive_cadence_is_decided_once_for_all_ranks(tmp_path, tokenizer):
    """The ranks' clocks disagree (tests/ddp_sft.py), so each rank's own budget arithmetic says "measure" at other
    steps. The main process decides and broadcasts: both ranks measure at rank 0's steps, no deadlock."""
    done = _torchrun(tmp_path, tokenizer, "adaptive")
    counts = re.findall(r"rank (\d): errors=0 measured=(\d+)", done.stdout)
    assert sorted(rank for rank, _ in counts) == ["0", "1"], done.stdout[-2000:]
    assert counts[0][1] == counts[1][1]
    steps = [r["step"] for r in trajectory_of(tmp_path / "out")][::3]
    assert steps == sorted(set(steps)) and steps[0] == 0 and steps[-1] == 12
    assert steps == [0, 1, 3, 7, 12] and int(counts[0][1]) == 5  # rank 0's clock (front-loaded: 12 steps known)


def test_a_library_missing_on_one_rank_turns_measuring_off_everywhere(tmp_path, tokenizer):
    """Rank 1 cannot read the seed library: every rank agrees to measure nothing, says why, and trains on."""
    from tiny import build_model

    from crystalwatch import build_seed_library

    library = tmp_path / "lib.json"
    build_seed_library(build_model("llama", len(tokenizer)), tokenizer, ["coin_flip"]).save(library)
    done = _torchrun(tmp_path, tokenizer, "one-library", str(library))
    assert "rank 0: errors=0 measured=0" in done.stdout and "rank 1: errors=1 measured=0" in done.stdout
    said = " ".join((done.stdout + done.stderr).split())
    assert "setting up failed on rank 1 (SeedLibraryError: " in said and "lib.json.not-on-this-node: cannot" in said
    assert said.count("measuring is off on every process and training goes on") == 2  # said by both ranks
    assert not (tmp_path / "out" / "crystalwatch" / "trajectory.jsonl").exists()
    assert (tmp_path / "out").is_dir()  # the training itself ran to its end


def test_a_fault_on_one_rank_mid_measurement_turns_measuring_off_everywhere(tmp_path, tokenizer):
    """Rank 1's scoring raises (as an out-of-memory would) in the measurement of step 4: both ranks agree, measuring
    turns off on both, training reaches its last step, and what was written before is kept."""
    done = _torchrun(tmp_path, tokenizer, "fault")
    for rank in (0, 1):  # both ranks trained to the last step
        assert f"rank {rank}: errors=1 measured=2 trained=6" in done.stdout, done.stdout[-3000:]
    said = " ".join((done.stdout + done.stderr).split())
    assert said.count("measuring at step 4 failed on every rank (scoring failed on rank 1 (RuntimeError: out of "
                      "memory (injected))); measuring is off on every process and training goes on") == 2, said[-3000:]
    records = trajectory_of(tmp_path / "out")
    assert [(r["step"], r["task"]) for r in records] == [
        (s, t) for s in (0, 2) for t in ("integer_1_10", "coin_flip", "yes_no")
    ]


def test_resuming_a_two_process_run_continues_its_trajectory(tmp_path, tokenizer):
    """A 2-process run saves checkpoint-4, measures step 6 and dies; restarted from checkpoint-4, both ranks cut the
    trajectory back to the checkpoint, measure step 6 again, and every record stays written once."""
    _torchrun(tmp_path, tokenizer, "save")
    first = trajectory_of(tmp_path / "out")
    assert [r["step"] for r in first][::3] == [0, 2, 4, 6]
    done = _torchrun(tmp_path, tokenizer, "resume")
    for rank in (0, 1):
        assert f"rank {rank}: errors=0 measured=4 trained=6" in done.stdout, done.stdout[-3000:]
    records = trajectory_of(tmp_path / "out")
    assert [(r["step"], r["index"]) for r in records][::3] == [(0, 0), (2, 1), (4, 2), (6, 3)]
    assert [r["task"] for r in records] == ["integer_1_10", "coin_flip", "yes_no"] * 4
    assert records[:9] == first[:9]  # what the checkpoint covered is kept as it was


def test_a_transition_saves_and_stops_both_ranks_together(tmp_path, tokenizer):
    """Trained on the base's favourite 1-10 answer, the task leaves liquid (with user-only chat rows, the prompts
    with a system prompt or a prefill stay apart: polycrystalline at step 10 here); the main process's on_transition
    asks to save and stop at the first transition. It is called on the main process only, yet both ranks save
    checkpoint-<step> and stop at that step: the decision is broadcast, so no rank saves or stops alone."""
    import numpy as np
    from tiny import build_model

    from crystalwatch import build_seed_library

    library = build_seed_library(build_model("llama", len(tokenizer), seed=0), tokenizer, ["integer_1_10"],
                                 kinds=("chat",))  # fmt: skip
    library.save(tmp_path / "lib.json")
    seed = library.tasks["integer_1_10"].seeds[0]
    answer = library.tasks["integer_1_10"].outcomes[int(np.argmax(seed.centroid))]
    done = _torchrun(tmp_path, tokenizer, "act", str(tmp_path / "lib.json"), answer)
    records = trajectory_of(tmp_path / "out")
    events = [e for r in records for e in r.events]
    [into] = events  # the run ended at its first transition
    assert records[-1].step == into.step < 40 and into.from_state == "liquid"
    said = done.stdout[-3000:]
    assert f"rank 0: errors=0 measured={len(records)} trained={into.step} calls={len(events)}" in said, said
    assert f"rank 1: errors=0 measured={len(records)} trained={into.step} calls=0" in said, said
    assert sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*")) == [f"checkpoint-{into.step}"]
    assert (tmp_path / "out" / f"checkpoint-{into.step}" / "crystalwatch_state.json").is_file()
