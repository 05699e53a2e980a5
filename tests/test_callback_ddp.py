"""Two training processes (torchrun, gloo, CPU): no deadlock, every value written and logged exactly once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from crystalwatch.callback import trajectory_of


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_measure_in_lockstep_and_log_once(tmp_path, tokenizer):
    from tiny import build_model, save
    from wandb_run import latest_run_dir, read_offline_run

    folder = save(build_model("llama", len(tokenizer), seed=0), tokenizer, tmp_path / "tiny")
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_DIR": str(tmp_path / "wandb")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           str(Path(__file__).parent / "ddp_sft.py"), str(folder), str(out)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "rank 0: errors=0 measured=4" in done.stdout and "rank 1: errors=0 measured=4" in done.stdout
    records = trajectory_of(out)
    assert [(r["step"], r["task"]) for r in records] == [
        (s, t) for s in (0, 2, 4, 6) for t in ("integer_1_10", "coin_flip", "yes_no")
    ]  # written once, by the main process only
    run = read_offline_run(latest_run_dir(tmp_path / "wandb" / "wandb"))
    rows = [h for h in run["history"] if "crystal/yes_no/entropy" in h]
    assert [h["train/global_step"] for h in rows] == [0, 2, 4, 6]  # logged once per measurement
