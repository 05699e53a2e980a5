"""bench/gpu.py is ready to run on a GPU: its --smoke mode runs the same code on tiny shapes on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_gpu_benchmark_runs_in_smoke_mode(tmp_path):
    script = Path(__file__).parent.parent / "bench" / "gpu.py"
    done = subprocess.run([sys.executable, str(script), "--smoke", "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "gpu.json").read_text())
    assert [s["shape"] for s in result["scorer"]] == ["olmo2-1b", "gemma3-270m"]
    assert all(s["exact_s"] > 0 and s["lower_bound_s"] > 0 for s in result["scorer"])
    callback = result["callback"]
    assert callback["errors"] == 0 and callback["measurements"] == 5 and 0 < callback["callback_share_of_wall"] < 1
    text = (tmp_path / "gpu.md").read_text()
    assert "TRL SFT, 20 steps, batch 8 × 512 tokens, 15 tasks measured every 5 steps" in text
