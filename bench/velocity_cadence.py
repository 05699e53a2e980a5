"""Does the velocity depend on how often one measures? (docs/experiments/rl-crystal.md, the cadence check)

    python bench/velocity_cadence.py

Re-reads every committed first-part RL arm (measured every 5 steps) and every SFT calibration arm (every 10) at
its own cadence and subsampled to every 10 and every 20 steps, with v3's velocity (between successive
measurements: ``velocity_window=1``) and v3.1's (over at least 20 steps), and compares the velocities at the steps
every cadence measured (multiples of 20). Writes docs/experiments/velocity_cadence.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import ARMS as SFT_ARMS  # noqa: E402 (bench/)
from calibration import LIBRARY, ROOT  # noqa: E402
from calibration import OUT as SFT_OUT  # noqa: E402
from heldout_table import library_at  # noqa: E402
from rl_calibration import ARMS as RL_ARMS  # noqa: E402
from rl_calibration import OUT as RL_OUT  # noqa: E402

from crystalwatch.files import write_atomic  # noqa: E402
from crystalwatch.phases import PhaseConfig  # noqa: E402
from crystalwatch.records import read_trajectory  # noqa: E402
from crystalwatch.trajectory import reread  # noqa: E402

WINDOWS = {"v3 (between measurements)": 1, "v3.1 (over 20 steps)": 20}


def trajectories() -> dict[str, tuple[Path, int]]:
    """Arm name -> (trajectory, cadence) for the committed arms measured at a fixed cadence."""
    out = {}
    for name, arm in RL_ARMS.items():
        if arm["trainer"] != "sft" and "start" not in arm and (RL_OUT / name / "trajectory.jsonl").is_file():
            out[name] = (RL_OUT / name / "trajectory.jsonl", 5)
    for name, arm in SFT_ARMS.items():
        if "model" not in arm and (SFT_OUT / name / "trajectory.jsonl").is_file():
            out[name] = (SFT_OUT / name / "trajectory.jsonl", 10)
    return out


def velocities(path: Path, every: int, window: int) -> dict[tuple[str, int], float]:
    """(task, step) -> velocity at the steps that are multiples of 20, re-read measuring every ``every`` steps."""
    records = [r for r in read_trajectory(path) if r.step % every == 0]
    out = {}
    for r in reread(records, library_at(LIBRARY), PhaseConfig(velocity_window=window)):
        if r.step % 20 == 0 and r.step > 0 and r.metrics.get("velocity") is not None:
            out[(r.task, r.step)] = r.metrics["velocity"]
    return out


def main() -> None:
    lines = ["# Velocity against cadence (written by `python bench/velocity_cadence.py`)", "",
             "Median velocity (mass per step) of every task at the steps all cadences measured (multiples of 20), "
             "each arm re-read at its own cadence and subsampled; the ratio is the own cadence's median over the "
             "every-20 median (1 = the cadence does not matter).", "",
             "| arms (own cadence) | velocity | own cadence | every 10 | every 20 | own / every 20 | "
             "task-steps where own > 1.25 × every 20 |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    arms = trajectories()
    for group, cadence in (("first-part RL arms", 5), ("SFT calibration arms", 10)):
        paths = [p for p, c in arms.values() if c == cadence]
        for label, window in WINDOWS.items():
            got = {every: {} for every in sorted({cadence, 10, 20})}
            for i, path in enumerate(paths):
                for every in got:
                    got[every].update({(i, *k): v for k, v in velocities(path, every, window).items()})
            keys = sorted(set.intersection(*(set(g) for g in got.values())))
            med = {e: float(np.median([got[e][k] for k in keys])) for e in got}
            faster = sum(got[cadence][k] > 1.25 * got[20][k] for k in keys)
            lines.append(f"| {group} ({len(paths)}, every {cadence}) | {label} | {med[cadence]:.4f} | "
                         f"{med.get(10, float('nan')):.4f} | {med[20]:.4f} | {med[cadence] / med[20]:.2f} | "
                         f"{faster} of {len(keys)} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    write_atomic(ROOT / "docs" / "experiments" / "velocity_cadence.md", text)
    print(text)


if __name__ == "__main__":
    main()
